"""Helpers shared by the op tests: devices, native/reference runs, clones."""

import pytest
import torch

from clarena import ops

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.needs_cuda)]

requires_native = pytest.mark.skipif(not ops.native_available(), reason="native library not built")


def clone_args(args):
    return [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]


def run_both(fn, args):
    """Run `fn` on fresh copies of `args`, natively and on the reference; returns (native, reference, their args)."""
    native_args = clone_args(args)
    reference_args = clone_args(args)
    native = fn(*native_args)
    with ops.use_reference():
        reference = fn(*reference_args)
    return native, reference, native_args, reference_args


def non_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The same values in a transposed (non-contiguous) layout."""
    if tensor.dim() < 2:
        return tensor.repeat_interleave(2)[::2]
    return tensor.transpose(0, 1).contiguous().transpose(0, 1)


def ops_called(fn) -> set[str]:
    """Names of the operators `fn` dispatches, from the profiler."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.name for event in prof.events()}


def assert_identical(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bit-for-bit equal values, NaN equal to NaN."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
