"""Loading of the native library, and the choice between it and the reference per call."""

import contextlib
import warnings
from collections.abc import Iterator

import torch

try:
    from clarena_backbones import _C  # noqa: F401  (loading it registers torch.ops.clarena.*)

    _LOAD_ERROR: BaseException | None = None
except (ImportError, OSError) as error:  # missing build, or an ABI mismatch with this torch
    _LOAD_ERROR = error
    warnings.warn(
        f"clarena: the native library could not be loaded ({error}); every op runs its pure-PyTorch "
        "reference. Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def _native_device_types() -> frozenset[str]:
    if _LOAD_ERROR is not None:
        return frozenset()
    return frozenset(
        device
        for device in ("cpu", "cuda")
        if torch._C._dispatch_has_kernel_for_dispatch_key("clarena::percentile_mask", device.upper())
    )


# Device types with native kernels; tensors elsewhere (or CUDA tensors with a CPU-only build)
# run the reference.
NATIVE_DEVICE_TYPES = _native_device_types()
_reference_depth = 0


def native_available() -> bool:
    """Whether the native library loaded (its kernels run unless `use_reference` is active)."""
    return _LOAD_ERROR is None


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """Run every clarena op on its pure-PyTorch reference inside this block.

    Benchmarks use it to time both paths in one process; it nests and is not thread-local.
    """
    global _reference_depth
    _reference_depth += 1
    try:
        yield
    finally:
        _reference_depth -= 1


def reference_forced() -> bool:
    """Whether `use_reference` is active (ops built from ATen ops follow it too)."""
    return _reference_depth > 0


def runs_native(tensor: torch.Tensor) -> bool:
    """Whether an op on `tensor` runs its native kernel."""
    return not reference_forced() and tensor.device.type in NATIVE_DEVICE_TYPES
