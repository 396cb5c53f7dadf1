"""Registering the backbones and models with Mammoth's registries.

Mammoth is not a package: its top-level packages `backbone` (with `register_backbone`) and
`models` (with `register_model`) are importable when its root is on `sys.path`, as it is for its
`main.py`. `register()` imports them and registers everything. `register_when_mammoth_loads()`
(run by `import clarena`) never imports them: it registers with those already imported and, for
the others, waits until Mammoth itself imports them.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

from clarena_backbones.mammoth.backbones import BACKBONES

MODEL_NAMES = ("clarena-hat", "clarena-wsn")


def register_backbones(mammoth_backbone: ModuleType) -> None:
    """Register every `clarena-*` backbone with Mammoth's `backbone` package (again: no-op)."""
    for name, factory in BACKBONES.items():
        if name not in mammoth_backbone.REGISTERED_BACKBONES:
            mammoth_backbone.register_backbone(name)(factory)


def register_models(mammoth_models: ModuleType) -> None:
    """Register the `clarena-hat` and `clarena-wsn` models with Mammoth's `models` package (again: no-op)."""
    # these subclass Mammoth's ContinualModel, so they are imported only now
    from clarena_backbones.mammoth.hat_model import HAT
    from clarena_backbones.mammoth.wsn_model import WSN

    for model in (HAT, WSN):
        if model.NAME not in mammoth_models.REGISTERED_MODELS:
            mammoth_models.register_model(model.NAME)(model)


# Mammoth's package -> (the attribute that tells it is Mammoth's, the function registering with it)
_PACKAGES = {
    "backbone": ("register_backbone", register_backbones),
    "models": ("register_model", register_models),
}


def register() -> None:
    """Register the backbones and models with Mammoth, importing its `backbone` and `models` packages.

    Run from Mammoth's root (or with it on `sys.path`); a repeated call does nothing.
    """
    for package in _PACKAGES:
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError as error:
            if error.name != package:  # Mammoth's own import failed: its message says what is missing
                raise
            raise ImportError(
                f"clarena.mammoth.register() needs Mammoth's `{package}` package on sys.path "
                "(run from Mammoth's root directory)."
            ) from error
        _register_with(package, module)


def _register_with(package: str, module: ModuleType) -> None:
    marker, register_package = _PACKAGES[package]
    if not hasattr(module, marker):
        raise ImportError(f"The importable `{package}` ({module.__file__}) is not Mammoth's: it has no `{marker}`.")
    register_package(module)


def register_when_mammoth_loads() -> None:
    """Register with Mammoth's packages that are imported, and with the others once Mammoth imports them.

    Cheap, and imports nothing: a package already in `sys.modules` (even half-way through its
    own import, as when this runs from a file in Mammoth's `backbone/` folder) is registered with
    at once if it is Mammoth's; a finder on `sys.meta_path` registers with the others right
    after they are executed. Packages of the same names that are not Mammoth's are left alone:
    the finder reads a package's `__init__` source before doing anything, and answers only for
    Mammoth's, whose loader it hands back unchanged once the package has run.
    """
    waiting = []
    for package, (marker, register_package) in _PACKAGES.items():
        module = sys.modules.get(package)
        if module is None:
            waiting.append(package)
        elif hasattr(module, marker):
            register_package(module)
    if waiting and not any(isinstance(finder, _MammothFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MammothFinder(waiting))


def is_mammoths(spec: importlib.machinery.ModuleSpec, package: str) -> bool:
    """True when `spec` is Mammoth's `package`: a package whose `__init__` defines its registry function.

    Reads the source through the spec's own loader (which works for files and zip archives alike)
    and runs nothing.
    """
    marker = _PACKAGES[package][0]
    if spec.loader is None or spec.submodule_search_locations is None:
        return False
    try:
        source = spec.loader.get_source(package)
    except (AttributeError, ImportError, OSError):
        return False
    return source is not None and f"def {marker}(" in source


class _MammothFinder(importlib.abc.MetaPathFinder):
    """Finds Mammoth's packages with the normal path finder and registers once each is executed.

    For any other module, including a `models` or `backbone` that is not Mammoth's, it answers
    None, so the import goes on exactly as without this package.
    """

    def __init__(self, packages: list[str]) -> None:
        self.packages = set(packages)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not is_mammoths(spec, fullname):
            return None
        spec.loader = _RegisteringLoader(spec.loader, self)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    """Runs Mammoth's package with its own loader, registers, then puts that loader back in place."""

    def __init__(self, loader: importlib.abc.Loader, finder: _MammothFinder) -> None:
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # the package runs with its own loader in its spec (resources, get_source, reloads)
        module.__spec__.loader = module.__loader__ = self.loader
        self.loader.exec_module(module)
        package = module.__name__
        marker, register_package = _PACKAGES[package]
        if hasattr(module, marker):
            self.finder.packages.discard(package)
            register_package(module)
