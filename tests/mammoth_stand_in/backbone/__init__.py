"""Stand-in of Mammoth's `backbone` package: the registry and its argument inference."""

import importlib
import inspect
import os
from typing import Literal, get_args, get_origin

REGISTERED_BACKBONES: dict = {}


def infer_args_from_signature(signature: inspect.Signature) -> dict:
    """Mammoth's rule: type from the annotation, else from the default; Literal gives choices;
    no default means required, except `num_classes` (filled in from the dataset)."""
    parsable = {}
    for name, parameter in signature.parameters.items():
        if name == "self" or name.startswith("_"):
            continue
        default = parameter.default
        tp = str
        if parameter.annotation is not inspect.Parameter.empty:
            tp = parameter.annotation
        elif default is not inspect.Parameter.empty:
            tp = type(default)
        entry = {}
        if get_origin(tp) is Literal:
            entry["choices"] = get_args(tp)
            tp = str
        entry["type"] = tp
        if default is inspect.Parameter.empty and name != "num_classes":
            entry["required"] = True
        else:
            entry["required"] = False
            entry["default"] = None if default is inspect.Parameter.empty else default
        parsable[name] = entry
    return parsable


def register_backbone(name: str):
    name = name.replace("_", "-").lower()

    def register(target):
        if name in REGISTERED_BACKBONES:
            raise ValueError(f"Name {name} already registered!")
        if inspect.isfunction(target):
            signature = inspect.signature(target)
        else:
            signature = inspect.signature(target.__init__)
            if not hasattr(target, "NAME"):
                target.NAME = name
        REGISTERED_BACKBONES[name] = {"class": target, "parsable_args": infer_args_from_signature(signature)}
        return target

    return register


def add_backbone_arguments(parser, name: str) -> None:
    """`--<argument>` for each parsable argument of backbone `name`, as Mammoth's parser adds them."""
    for argument, spec in REGISTERED_BACKBONES[name]["parsable_args"].items():
        options = {"type": spec["type"], "required": spec["required"]}
        if "default" in spec:
            options["default"] = spec["default"]
        if "choices" in spec:
            options["choices"] = spec["choices"]
        parser.add_argument(f"--{argument}", **options)


def get_backbone(args):
    """Call the registered class or factory with exactly its parsable arguments."""
    entry = REGISTERED_BACKBONES[args.backbone.replace("_", "-").lower()]
    return entry["class"](**{argument: getattr(args, argument) for argument in entry["parsable_args"]})


# as Mammoth does: import every file of this folder, whose backbones register themselves
for _file in sorted(os.listdir(os.path.dirname(__file__))):
    if _file.endswith(".py") and _file != "__init__.py":
        importlib.import_module(f"backbone.{_file[:-3]}")
