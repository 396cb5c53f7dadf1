"""Loading of the native library, and the choice between it and the reference per call."""

import contextlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")

try:
    from clarena_backbones import _C  # noqa: F401  (loading it registers torch.ops.clarena.* and the CPU kernels)

    _LOAD_ERROR: BaseException | None = None
except (ImportError, OSError) as error:  # missing build, or a torch older than the library's floor
    _LOAD_ERROR = error
    warnings.warn(
        f"clarena: the native library could not be loaded ({error}); every op runs its pure-PyTorch "
        "reference. Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def _load_cuda_kernels() -> None:
    """Import clarena_backbones._C_cuda, the CUDA kernels, into a CUDA build of torch.

    A CPU wheel has no such module; a CUDA wheel's cannot load into a CPU-only torch (no CUDA
    runtime) and is not tried there. Without it, CUDA tensors run the reference.
    """
    if _LOAD_ERROR is not None or torch.version.cuda is None:
        return
    if importlib.util.find_spec("clarena_backbones._C_cuda") is None:
        if torch.cuda.is_available():
            warnings.warn(
                "clarena: this build has no CUDA kernels, so ops on CUDA tensors run their pure-PyTorch reference; "
                f"install the CUDA wheel (+cu{torch.version.cuda.replace('.', '')}) or build with FORCE_CUDA=1.",
                RuntimeWarning,
                stacklevel=3,
            )
        return
    try:
        from clarena_backbones import _C_cuda  # noqa: F401
    except (ImportError, OSError) as error:  # e.g. built for another CUDA major than this torch's
        warnings.warn(
            f"clarena: the CUDA kernels could not be loaded ({error}); ops on CUDA tensors run their pure-PyTorch "
            f"reference (this torch uses CUDA {torch.version.cuda}).",
            RuntimeWarning,
            stacklevel=3,
        )


_load_cuda_kernels()


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


def call_list_op(call: Callable[[], T], check: Callable[[], None]) -> T:
    """Run a native list op; if its kernel (or torch's schema) refuses the arguments, run `check` before re-raising.

    The kernel checks every entry before it changes any; `check` names the same argument, with
    TypeError for a wrong dtype (a native kernel raises only ValueError). The Python checks thus
    cost nothing on the hot path.
    """
    try:
        return call()
    except (RuntimeError, TypeError, ValueError):
        check()
        raise
