"""CLArena 1.1.0 as released, on its own backbones, beside the `clarena` that serves this package's.

With this package installed, `clarena.backbones` is `clarena_backbones.backbones` (its import hook),
so the algorithms of `clarena.cl_algorithms` run over this package's backbones and check against
its classes. To time CLArena on CLArena's own backbones in the same process (the protocol
interleaves the rows of a group), `original()` imports CLArena's packages a second time with the
hook taken off and keeps those module objects apart: their classes hold their own module globals,
so CLArena's HAT of that copy checks for, and runs, CLArena's own backbones. The aliased modules
and the hook are put back before it returns.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import SimpleNamespace

import _clarena_backbones_hook as hook

PACKAGES = ("backbones", "cl_algorithms", "heads")


def _clarena_modules() -> list[str]:
    return [name for name in sys.modules if name == "clarena" or name.startswith("clarena.")]


@functools.cache
def original() -> SimpleNamespace:
    """CLArena's `backbones`, `cl_algorithms` and `heads` (attributes), bound to CLArena's own backbones.

    Raises ImportError when CLArena is not installed.
    """
    aliased = {name: sys.modules.pop(name) for name in _clarena_modules()}
    hook.uninstall()
    try:
        loaded = SimpleNamespace(**{name: importlib.import_module(f"clarena.{name}") for name in PACKAGES})
        if loaded.backbones.__name__ != "clarena.backbones":  # served by the hook: not CLArena's own
            raise ImportError(f"clarena.backbones is {loaded.backbones.__name__}, not CLArena's own")
    finally:
        for name in _clarena_modules():
            del sys.modules[name]
        sys.modules.update(aliased)
        hook.install()
    return loaded
