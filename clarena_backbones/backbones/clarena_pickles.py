"""Backbones pickled by CLArena 1.1.0, loaded as this package's classes.

CLArena's `SaveModels` callback pickles whole LightningModules (`torch.save(model)`). A pickle
names each class by its CLArena path, such as `clarena.backbones.mlp.HATMaskMLP`; with this
package installed `clarena.backbones` is this package's, and `MOVED` leads the names CLArena
defines in `mlp.py` and `resnet.py` to the modules that hold them here (read by those modules'
`__getattr__`). The unpickled object then receives CLArena's attribute dict, whose layout is not
this package's (no state hooks, masks in a plain dict, other caches), so `Backbone.__setstate__`
hands it to `rebuild`: it constructs the class with the arguments the pickled state records and
loads the state's `state_dict` into it.
"""

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from clarena_backbones.backbones.state_hooks import STORED_MASKS

_HAT_RESNET = "clarena_backbones.backbones.hat_mask_resnet"
# module here -> {name CLArena defines in its module of that name: module here that defines it}
MOVED: dict[str, dict[str, str]] = {
    "clarena_backbones.backbones.mlp": {
        "HATMaskMLP": "clarena_backbones.backbones.hat_mask_mlp",
        "WSNMaskMLP": "clarena_backbones.backbones.wsn_mask_mlp",
    },
    "clarena_backbones.backbones.resnet": {
        name: _HAT_RESNET
        for name in (
            "HATMaskResNetBlockSmall",
            "HATMaskResNetBlockLarge",
            "HATMaskResNetBase",
            *(f"HATMaskResNet{depth}" for depth in (18, 34, 50, 101, 152)),
        )
    },
}

# An attribute every backbone of this package has from `Backbone.__init__`, and CLArena's lack.
OWN_STATE_MARKER = "_weighted_layer_cache"


def moved(module: str, name: str) -> Any:
    """`name` of module `module` when CLArena defines it there and this package elsewhere; else AttributeError."""
    home = MOVED.get(module, {}).get(name)
    if home is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def is_clarenas(state: dict[str, Any]) -> bool:
    """True when `state` (an unpickled attribute dict) was pickled by CLArena, not by this package."""
    return OWN_STATE_MARKER not in state


def rebuild(backbone: nn.Module, state: dict[str, Any]) -> None:
    """Make `backbone` (just created by unpickling) this package's equivalent of CLArena's `state`.

    Blocks of a ResNet keep CLArena's state: the ResNet holding them rebuilds them with itself.
    """
    from clarena_backbones.backbones.resnet import ResNetBlockLarge, ResNetBlockSmall

    if isinstance(backbone, (ResNetBlockSmall, ResNetBlockLarge)):
        nn.Module.__setstate__(backbone, state)
        return
    pickled = nn.Module()
    nn.Module.__setstate__(pickled, state)
    state_dict = nn.Module.state_dict(pickled)
    for task_id, task_masks in state.get("masks", {}).items():  # HAT's stored masks
        for name, mask in task_masks.items():
            state_dict[f"{STORED_MASKS}{task_id}.{name}"] = mask
    backbone.__dict__.clear()
    with torch.random.fork_rng(devices=[]):  # the initialisation is overwritten: leave the RNG alone
        type(backbone).__init__(backbone, **_arguments(type(backbone), pickled))
    backbone.to(next(pickled.parameters()).device)
    backbone.load_state_dict(state_dict, strict=True)
    for name in ("task_id", "processed_task_ids"):
        if name in state:
            setattr(backbone, name, state[name])
    backbone.train(pickled.training)


def _arguments(cls: type, pickled: nn.Module) -> dict[str, Any]:
    """The constructor arguments of `cls` that CLArena's pickled backbone `pickled` was built with.

    Most are attributes of the same name; the others are read from the modules (CLArena keeps
    only flags for them: `activation` and `dropout` are booleans there).
    """
    modules = list(pickled.modules())
    weighted = next(m for m in modules if isinstance(m, (nn.Linear, nn.Conv2d)))
    activations = [type(m) for m in modules if type(m).__module__ == nn.ReLU.__module__]
    if pickled.__dict__.get("activation") and not activations:
        raise TypeError(f"Cannot rebuild the {cls.__name__} pickled by CLArena: its activation is not a torch.nn one.")
    from_modules = {
        "activation_layer": activations[0] if pickled.__dict__.get("activation") else None,
        "bias": weighted.bias is not None,
        "dropout": next((m.p for m in modules if isinstance(m, nn.Dropout)), None),
        "input_channels": getattr(weighted, "in_channels", None),
        "pretrained_weights": None,  # the pickled weights replace them
    }
    arguments = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if name in from_modules:
            arguments[name] = from_modules[name]
        elif name in pickled.__dict__:
            arguments[name] = pickled.__dict__[name]
        elif parameter.default is parameter.empty:
            raise TypeError(f"Cannot rebuild the {cls.__name__} pickled by CLArena: its state has no `{name}`.")
    return arguments
