"""Installing the adapters' replacements on CLArena's classes, for the implementations they fit.

An adapter is a module `clarena_<major>_<minor>` of this package with a `METHODS` table:
`(module, class, method) -> (digest, replacement)`. A method of the installed CLArena is replaced
only when the digest of its source equals an adapter's digest for it: what counts is the code,
not CLArena's version string (CLArena's development tree also calls itself 1.1.0).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import pkgutil
import re
import textwrap
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import clarena_backbones.accelerate as _package

Target = tuple[str, str, str]  # (module, class, method)

# (class, method name) -> CLArena's method, while replaced.
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def source_digest(function: Callable[..., Any]) -> str | None:
    """SHA-256 of the AST dump of `function`'s source without its docstring, or None if its
    source cannot be read. Formatting, comments and the docstring do not change it."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0]
    body = getattr(definition, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        definition.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def adapters() -> list[ModuleType]:
    """The adapter modules of this package (`clarena_1_1`, ...), oldest release first."""
    names = [info.name for info in pkgutil.iter_modules(_package.__path__) if re.fullmatch(r"clarena_\d+_\d+", info.name)]
    names.sort(key=lambda name: tuple(int(part) for part in name.split("_")[1:]))
    return [importlib.import_module(f"{_package.__name__}.{name}") for name in names]


def accelerate_clarena() -> bool:
    """Replace the per-step methods of CLArena's HAT, AdaHAT, FGAdaHAT and WSN with this package's.

    Each method is replaced only if its source is one an adapter was written for; a method whose
    implementation no adapter knows is left alone, with a warning naming it. Idempotent. Returns
    whether any method is now replaced (False, with a warning, when CLArena is not installed).
    Undo with `restore_clarena()`, or use `accelerated_clarena()` as a context manager.
    """
    known = _known_methods()
    modules, error = {}, None
    for module in dict.fromkeys(module for module, _, _ in known):
        try:
            modules[module] = importlib.import_module(module)
        except ImportError as missing:  # a module another release has: its methods are named below
            error = missing
    if not modules:
        warnings.warn(
            f"clarena: CLArena is not installed ({error}); accelerate_clarena() changed nothing.", RuntimeWarning, stacklevel=2
        )
        return False
    for (module, class_name, name), by_digest in known.items():
        cls = getattr(modules.get(module), class_name, None)
        if cls is not None and (cls, name) in _originals:
            continue
        original = None if cls is None else cls.__dict__.get(name)
        match = None if original is None else by_digest.get(source_digest(original))
        if match is None:
            written_for = ", ".join(sorted({adapter for adapter, _ in by_digest.values()}))
            warnings.warn(
                f"clarena: {module}.{class_name}.{name} is not an implementation this package's adapters were written "
                f"for ({written_for}); accelerate_clarena() leaves it as it is.",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        _originals[(cls, name)] = original
        setattr(cls, name, _bind(match[1], original))
    return bool(_originals)


def _known_methods() -> dict[Target, dict[str, tuple[str, Callable[..., Any]]]]:
    """Every method some adapter replaces -> {digest: (adapter name, replacement)}."""
    known: dict[Target, dict[str, tuple[str, Callable[..., Any]]]] = {}
    for adapter in adapters():
        for target, (digest, replacement) in adapter.METHODS.items():
            known.setdefault(target, {})[digest] = (adapter.__name__.rsplit(".", 1)[1], replacement)
    return known


def restore_clarena() -> None:
    """Put CLArena's own methods back (a no-op when nothing is replaced)."""
    while _originals:
        (cls, name), original = _originals.popitem()
        setattr(cls, name, original)


def is_accelerated() -> bool:
    """Whether any of CLArena's methods is currently replaced."""
    return bool(_originals)


def _bind(replacement: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return replacement(self, original, *args, **kwargs)

    method.__clarena_accelerated__ = True  # type: ignore[attr-defined]
    return method
