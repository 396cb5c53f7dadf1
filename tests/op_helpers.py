"""Helpers shared by the op tests: devices, native/reference runs, clones, tolerances."""

import contextlib

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


def assert_refused_on_both_paths(call, error: type[Exception], message: str) -> None:
    """`call()` raises exactly `error(message)`, natively and under `use_reference()`.

    The whole message is compared: a check missing on one path would surface there as another
    error (from the kernel or from ATen) instead of the named argument.
    """
    for path in ("native", "reference"):
        with ops.use_reference() if path == "reference" else contextlib.nullcontext():
            with pytest.raises(Exception) as raised:
                call()
        assert raised.type is error and str(raised.value) == message, (path, raised.type, str(raised.value))


def summation_tolerance(terms: torch.Tensor, dim) -> torch.Tensor:
    """Bound on the rounding error of summing `terms` over `dim` in their dtype, in any order.

    With L terms, each product and each of the L - 1 additions rounds once, so the error is at
    most (L + 1) * u * sum(|terms|), u the unit roundoff (Higham's bound for recursive summation,
    which also holds for blocked and tree orders). Returned in float64, shaped like the sum.
    """
    dims = [dim] if isinstance(dim, int) else list(dim)
    count = 1
    for d in dims:
        count *= terms.size(d)
    unit_roundoff = torch.finfo(terms.dtype).eps / 2
    return (count + 1) * unit_roundoff * terms.double().abs().sum(dims)


def unit_mask_gradient_bound(x: torch.Tensor, mask: torch.Tensor, grad: torch.Tensor, relu: bool) -> torch.Tensor:
    """Rounding bound of unit_mask's mask gradient: the sum, over all but dim 1, of `grad * x`
    where the unit passes (`x * mask > 0` under the ReLU). Two correct results differ by at
    most twice this."""
    x, mask = x.detach(), mask.detach()
    passes = x * mask.view(1, -1, *[1] * (x.dim() - 2)) > 0 if relu else torch.ones_like(x, dtype=torch.bool)
    return summation_tolerance((grad * x).where(passes, 0), [0, *range(2, x.dim())])
