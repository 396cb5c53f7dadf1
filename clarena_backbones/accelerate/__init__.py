"""Give CLArena's own training loops this package's fused per-step work.

CLArena's HAT-family and WSN algorithms adjust gradients themselves, after `backward()`, layer by
layer with weight-sized temporaries. `accelerate_clarena()` replaces those methods on CLArena's
installed classes with fused ones (`clarena.accelerate.fused_methods`) that give the same gradients
and return the same values, the way Liger-Kernel's `apply_liger_kernel_to_*` swaps a library's
slow pieces. From a CLArena config, add `AccelerateCallback` to `callbacks:`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from clarena_backbones.accelerate import fused_methods as fused

# The CLArena releases whose methods the fused versions reproduce.
SUPPORTED_CLARENA_VERSIONS = ("1.1.0",)

# (module, class) -> {method name: fused version}
_REPLACEMENTS: dict[tuple[str, str], dict[str, Callable[..., Any]]] = {
    ("clarena.cl_algorithms.hat", "HAT"): {
        "clip_grad_by_adjustment": fused.hat_clip_grad_by_adjustment,
        "compensate_task_embedding_gradients": fused.compensate_task_embedding_gradients,
    },
    ("clarena.cl_algorithms.adahat", "AdaHAT"): {"clip_grad_by_adjustment": fused.adahat_clip_grad_by_adjustment},
    ("clarena.cl_algorithms.fgadahat", "FGAdaHAT"): {"clip_grad_by_adjustment": fused.fgadahat_clip_grad_by_adjustment},
    ("clarena.cl_algorithms.wsn", "WSN"): {"clip_grad_by_mask": fused.wsn_clip_grad_by_mask},
}

# (class, method name) -> CLArena's method, while replaced.
_originals: dict[tuple[type, str], Callable[..., Any]] = {}


def accelerate_clarena() -> bool:
    """Replace the per-step methods of CLArena's HAT, AdaHAT, FGAdaHAT and WSN with fused ones.

    Idempotent. Returns whether CLArena's methods are now replaced: False, with a warning saying
    why, when CLArena is not installed or is a release these methods were not written for.
    Undo with `restore_clarena()`, or use `accelerated_clarena()` as a context manager.
    """
    classes = _clarena_classes()
    if classes is None:
        return False
    for (cls, name), fused_method in classes.items():
        if (cls, name) not in _originals:
            original = cls.__dict__[name]
            _originals[(cls, name)] = original
            setattr(cls, name, _bind(fused_method, original))
    return True


def restore_clarena() -> None:
    """Put CLArena's own methods back (a no-op when nothing is replaced)."""
    while _originals:
        (cls, name), original = _originals.popitem()
        setattr(cls, name, original)


def is_accelerated() -> bool:
    """Whether CLArena's methods are currently replaced."""
    return bool(_originals)


@contextlib.contextmanager
def accelerated_clarena() -> Iterator[bool]:
    """Fused methods inside the block; CLArena's own after it, unless they were replaced before."""
    already = is_accelerated()
    try:
        yield accelerate_clarena()
    finally:
        if not already:
            restore_clarena()


def _bind(fused_method: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return fused_method(self, original, *args, **kwargs)

    method.__clarena_fused__ = True  # type: ignore[attr-defined]
    return method


def _clarena_classes() -> dict[tuple[type, str], Callable[..., Any]] | None:
    """CLArena's classes and the methods to replace, or None (with a warning) if unusable."""
    try:
        modules = {module: importlib.import_module(module) for module, _ in _REPLACEMENTS}
        version = importlib.metadata.version("clarena")
    except (ImportError, importlib.metadata.PackageNotFoundError) as error:
        warnings.warn(
            f"clarena: CLArena is not installed ({error}); accelerate_clarena() changed nothing.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if version not in SUPPORTED_CLARENA_VERSIONS:
        warnings.warn(
            f"clarena: the fused methods reproduce CLArena {', '.join(SUPPORTED_CLARENA_VERSIONS)}, but CLArena "
            f"{version} is installed; accelerate_clarena() changed nothing.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return {
        (getattr(modules[module], class_name), name): fused_method
        for (module, class_name), methods in _REPLACEMENTS.items()
        for name, fused_method in methods.items()
    }


def __getattr__(name: str) -> Any:
    # The callback subclasses Lightning's Callback, so it is made on first use: importing
    # Lightning (CLArena's dependency, not this package's) takes seconds.
    if name != "AccelerateCallback":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from lightning.pytorch import Callback

    class AccelerateCallback(Callback):
        """A Lightning callback that calls `accelerate_clarena()` when a Trainer is set up.

        In a CLArena experiment config::

            callbacks:
              - _target_: clarena.accelerate.AccelerateCallback

        The replacement is process-wide and stays after training (`restore_clarena()` undoes it).
        """

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            accelerate_clarena()

    AccelerateCallback.__module__, AccelerateCallback.__qualname__ = __name__, name  # importable, picklable
    globals()[name] = AccelerateCallback
    return AccelerateCallback
