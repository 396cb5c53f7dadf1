"""Loading of the native library, and the choice between it and the reference per call."""

import contextlib
import importlib.util
import pathlib
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


# Builds the CUDA kernels from the source distribution, against the torch installed.
SOURCE_BUILD = "FORCE_CUDA=1 pip install --no-build-isolation --no-binary clarena-backbones clarena-backbones"


def cuda_kernels_mismatch(built_for: str | None, torch_cuda: str) -> str | None:
    """Why the CUDA kernels, built for CUDA `built_for` (None: not built), cannot load into a torch
    built for CUDA `torch_cuda`; None when they can.

    clarena_backbones._C_cuda links one CUDA major's runtime (libcudart.so.13 for 13.x), which only
    a torch of that major brings.
    """
    if built_for is None:
        return "this build has no CUDA kernels"
    if built_for.split(".")[0] != torch_cuda.split(".")[0]:
        return f"the CUDA kernels were built for CUDA {built_for} and this torch uses CUDA {torch_cuda}"
    return None


def _cuda_kernels_built_for() -> str | None:
    """The CUDA version clarena_backbones._C_cuda was built for (setup.py writes it beside the
    library), or None when this build has no CUDA kernels."""
    spec = importlib.util.find_spec("clarena_backbones._C_cuda")
    if spec is None or spec.origin is None:
        return None
    record = pathlib.Path(spec.origin).with_name("_C_cuda_version.txt")
    return record.read_text().strip() if record.is_file() else None


def _load_cuda_kernels() -> None:
    """Import clarena_backbones._C_cuda, the CUDA kernels, into a torch of the CUDA major it was
    built for. Without them, CUDA tensors run the reference."""
    if _LOAD_ERROR is not None or torch.version.cuda is None:
        return
    mismatch = cuda_kernels_mismatch(_cuda_kernels_built_for(), torch.version.cuda)
    if mismatch is not None:
        if torch.cuda.is_available():  # without a GPU there are no CUDA tensors to run slower
            warnings.warn(f"clarena: {mismatch}, so ops on CUDA tensors run their pure-PyTorch reference; build "
                          f"them for this torch with `{SOURCE_BUILD}`.", RuntimeWarning, stacklevel=3)
        return
    try:
        from clarena_backbones import _C_cuda  # noqa: F401
    except (ImportError, OSError) as error:
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
