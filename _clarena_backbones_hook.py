"""Serve `clarena.backbones` (and this package's other `clarena.*` names) from `clarena_backbones`.

This distribution owns no file under `clarena/`, so installing, upgrading or uninstalling it never
touches CLArena's files. Instead `clarena_backbones.pth` imports this module at interpreter start
and puts `ALIAS_FINDER` first on `sys.meta_path`:

* `clarena.<name>[.<sub>...]` for each `<name>` in `ALIASES` is served as the module
  `clarena_backbones.<name>[.<sub>...]` itself (one module object under two names), whether or
  not CLArena is installed. `backbones` is the point of this package; for every other alias, a
  module of the same name in the installed CLArena wins: the alias is dropped, with a warning;
* `clarena` itself, and then any `clarena.*` name, is served from `clarena_backbones` only when no
  other finder provides a `clarena` package, i.e. when CLArena is not installed.

This module must stay cheap to import and free of torch: every Python start runs it.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings

PACKAGE = "clarena_backbones"
ALIAS = "clarena"
# The `clarena.<name>` names served beside CLArena: `backbones` replaces CLArena's module; the others
# are this package's own and give way to a CLArena module of the same name.
REPLACED = "backbones"
ALIASES = (REPLACED, "ops", "accelerate", "algorithms", "demo", "mammoth")


class _AliasLoader(importlib.abc.Loader):
    """Loads an alias name by importing the real module and handing back that same object."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._own_spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # The import system has just set `__spec__` to the alias's spec; the module keeps its own,
        # so reloading and pickling still see `clarena_backbones.*`.
        alias = module.__spec__.name
        module.__spec__ = self._own_spec
        # The submodules the real package has imported already get their alias names now. Loaded
        # later through this finder instead, `clarena.ops.unit_mask` would be bound as the attribute
        # `unit_mask` of `clarena.ops`, the very object whose `unit_mask` is the re-exported function.
        prefix = self.target + "."
        for name, submodule in list(sys.modules.items()):
            if name.startswith(prefix):
                sys.modules.setdefault(alias + name[len(self.target):], submodule)

    def get_code(self, fullname: str):
        # `python -m clarena` runs `clarena.__main__`'s code itself instead of importing it.
        return importlib.util.find_spec(self.target).loader.get_code(self.target)


class AliasFinder(importlib.abc.MetaPathFinder):
    """The meta-path finder behind the `clarena.*` names of this package (see the module docstring)."""

    def __init__(self) -> None:
        self._dropped: dict[str, bool] = {}

    def dropped(self, name: str) -> bool:
        """True when the installed CLArena has its own `clarena.<name>`: then it is CLArena's (warned once)."""
        if name == REPLACED:
            return False
        if name not in self._dropped:
            clarena = find_other_spec(ALIAS)
            locations = clarena.submodule_search_locations if clarena is not None else None
            theirs = locations is not None and importlib.machinery.PathFinder.find_spec(f"{ALIAS}.{name}", locations)
            self._dropped[name] = bool(theirs)
            if theirs:
                warnings.warn(
                    f"The installed CLArena has its own `{ALIAS}.{name}` ({theirs.origin}): that name is "
                    f"CLArena's now; this package's module stays importable as `{PACKAGE}.{name}`.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self._dropped[name]

    def clarena_is_ours(self) -> bool:
        """True when no other finder provides a `clarena` package (CLArena is not installed)."""
        module = sys.modules.get(ALIAS)
        if module is not None:
            return getattr(module, "__name__", None) == PACKAGE
        return find_other_spec(ALIAS) is None

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        parts = fullname.split(".")
        if not self.clarena_is_ours() and (len(parts) < 2 or parts[1] not in ALIASES or self.dropped(parts[1])):
            return None
        real = ".".join([PACKAGE, *parts[1:]])
        try:
            real_spec = importlib.util.find_spec(real)
        except ModuleNotFoundError:  # a parent of `real` does not exist
            return None
        if real_spec is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname,
            _AliasLoader(real),
            is_package=real_spec.submodule_search_locations is not None,
        )


def find_other_spec(name: str):
    """The spec of `name` from the finders after this one (what Python would import without it)."""
    for finder in sys.meta_path:
        if isinstance(finder, AliasFinder) or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(name, None)
        if spec is not None:
            return spec
    return None


ALIAS_FINDER = AliasFinder()


def install() -> None:
    """Put the alias finder first on `sys.meta_path` (idempotent)."""
    if ALIAS_FINDER in sys.meta_path:
        sys.meta_path.remove(ALIAS_FINDER)
    sys.meta_path.insert(0, ALIAS_FINDER)


def uninstall() -> None:
    """Take the alias finder off `sys.meta_path`; names already imported stay as they are."""
    while ALIAS_FINDER in sys.meta_path:
        sys.meta_path.remove(ALIAS_FINDER)


install()
