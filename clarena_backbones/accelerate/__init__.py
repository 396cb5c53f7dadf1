"""Give CLArena's own training loops this package's per-step work.

CLArena's HAT-family and WSN algorithms adjust gradients themselves, after `backward()`, layer by
layer with weight-sized temporaries. `accelerate_clarena()` replaces those methods on CLArena's
installed classes with ones that call the backbone's fused methods, give the same gradients and
return the same values, the way Liger-Kernel's `apply_liger_kernel_to_*` swaps a library's slow
pieces. From a CLArena config, add `AccelerateCallback` to `callbacks:`.

Layout: one adapter module per CLArena implementation (`clarena_1_1`: the mapping from its
methods to the backbone's), and `patching` (finding the methods, checking their source,
installing and restoring).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from clarena_backbones.accelerate.patching import accelerate_clarena, is_accelerated, restore_clarena

__all__ = ["AccelerateCallback", "accelerate_clarena", "accelerated_clarena", "is_accelerated", "restore_clarena"]


@contextlib.contextmanager
def accelerated_clarena() -> Iterator[bool]:
    """Replaced methods inside the block; CLArena's own after it, unless they were replaced before."""
    already = is_accelerated()
    try:
        yield accelerate_clarena()
    finally:
        if not already:
            restore_clarena()


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
