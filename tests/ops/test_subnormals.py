"""No subnormal leaves HAT's masking ops: the gate, unit_mask (forward and backward), the
embedding-gradient compensation and AmnesiacHAT's routing write 0 wherever the plain formula's
result has a magnitude below the dtype's smallest normal, natively and on the reference.

Each case computes the plain formula (and its autograd gradient) in the test, flushes it here,
and compares. The cases aim entries at the range where each dtype's results turn subnormal.
"""

import contextlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_helpers import unit_mask_gradient_bound

from clarena import ops
from clarena.backbones.amnesiac_hat_backbone import route

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
PATHS = ["native", "reference"]
SETTINGS = settings(max_examples=60, deadline=None)


def path(name: str):
    return ops.use_reference() if name == "reference" else contextlib.nullcontext()


def subnormals(tensor: torch.Tensor) -> int:
    tensor = tensor.detach()
    return int(((tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)).sum())


def flushed(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    return torch.where(tensor.abs() < torch.finfo(tensor.dtype).tiny, torch.zeros_like(tensor), tensor)


def subnormal_exponents(dtype: torch.dtype) -> tuple[float, float]:
    """The x where exp(x) is subnormal in `dtype` (sigmoid(x), for x << 0, in part of it)."""
    info = torch.finfo(dtype)
    return math.log(info.tiny * info.eps), math.log(info.tiny)


def spread(generator: torch.Generator, shape, dtype: torch.dtype) -> torch.Tensor:
    """N(0, 1) values scaled by powers of two down past the dtype's smallest normal."""
    info = torch.finfo(dtype)
    lowest = math.log2(info.tiny * info.eps)
    exponents = torch.randint(int(lowest) + 4, 4, shape, generator=generator)
    values = torch.randn(shape, generator=generator, dtype=torch.float64) * torch.pow(2.0, exponents.double())
    return values.to(dtype)


dtypes = st.sampled_from(DTYPES)
scales = st.one_of(st.floats(1 / 400, 400), st.sampled_from([1 / 400, 1.0, 400.0]))
seeds = st.integers(0, 2**31 - 1)


@st.composite
def embedding_values(draw, dtype, scale):
    """N(0, 1)-like entries, plus entries whose `scale * e` lands around the gate's subnormal range."""
    low, high = subnormal_exponents(dtype)
    plain = draw(st.lists(st.floats(-4, 4), min_size=1, max_size=24))
    aimed = draw(st.lists(st.floats(low - 3, high + 3), min_size=1, max_size=24))
    return torch.tensor(plain + [x / scale for x in aimed], dtype=torch.float64).to(dtype)


@SETTINGS
@given(data=st.data(), dtype=dtypes, scale=scales, seed=seeds, where=st.sampled_from(PATHS))
def test_gate_and_its_gradient_are_the_plain_ones_flushed(data, dtype, scale, seed, where):
    e = data.draw(embedding_values(dtype, scale))
    upstream = spread(torch.Generator().manual_seed(seed), e.shape, dtype)
    plain = e.clone().requires_grad_()
    expected = torch.sigmoid(scale * plain)
    expected.backward(upstream)

    split = e.numel() // 2
    weights = [e[:split].view(1, -1).clone().requires_grad_(), e[split:].view(1, -1).clone().requires_grad_()]
    with path(where):
        gates = ops.foreach_sigmoid_gate(weights, scale)
    torch.cat(gates).backward(upstream)
    gate, grad = torch.cat(gates).detach(), torch.cat([w.grad.view(-1) for w in weights])
    assert subnormals(gate) == 0 and subnormals(grad) == 0
    # ATen's vectorised sigmoid may differ in the last place between buffers of other lengths
    ulps = dict(rtol=4 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(gate, flushed(expected), **ulps)
    torch.testing.assert_close(grad, flushed(plain.grad), **ulps)


@SETTINGS
@given(
    dtype=dtypes,
    scale=scales,
    seed=seeds,
    shape=st.sampled_from([(16, 12), (3, 5, 4, 4), (2, 7, 3)]),
    relu=st.booleans(),
    gated=st.booleans(),
    where=st.sampled_from(PATHS),
)
def test_unit_mask_and_its_gradients_are_the_plain_ones_flushed(dtype, scale, seed, shape, relu, gated, where):
    generator = torch.Generator().manual_seed(seed)
    units = shape[1]
    x = spread(generator, shape, dtype)
    if gated:  # masks of the plain gate, subnormal entries included
        low, high = subnormal_exponents(dtype)
        aimed = torch.empty(units, dtype=torch.float64).uniform_(low - 3, 3, generator=generator)
        mask = torch.sigmoid(aimed).to(dtype)
    else:
        mask = spread(generator, (units,), dtype)
    upstream = spread(generator, shape, dtype)

    plain_x, plain_mask = x.clone().requires_grad_(), mask.clone().requires_grad_()
    view = (1, units) + (1,) * (len(shape) - 2)
    expected = plain_x * plain_mask.view(view)
    expected = torch.relu(expected) if relu else expected
    expected.backward(upstream)

    new_x, new_mask = x.clone().requires_grad_(), mask.clone().requires_grad_()
    with path(where):
        out = ops.unit_mask(new_x, new_mask, relu)
    out.backward(upstream)
    assert subnormals(out) == 0 and subnormals(new_x.grad) == 0 and subnormals(new_mask.grad) == 0
    assert torch.equal(out.detach(), flushed(expected))
    assert torch.equal(new_x.grad, flushed(plain_x.grad))
    # The mask gradient is a sum, whose order may differ: within the summation bound, plus the flush.
    bound = 2 * unit_mask_gradient_bound(x, mask, upstream, relu) + torch.finfo(dtype).tiny
    error = (new_mask.grad.double() - flushed(plain_mask.grad).double()).abs()
    assert bool((error <= bound).all()), (error - bound).max()


@SETTINGS
@given(data=st.data(), dtype=dtypes, scale=scales, seed=seeds, where=st.sampled_from(PATHS))
def test_compensated_gradient_is_the_plain_one_flushed(data, dtype, scale, seed, where):
    s_max, clamp = 400.0, 50.0
    e = data.draw(embedding_values(dtype, scale))
    grad = spread(torch.Generator().manual_seed(seed), e.shape, dtype)
    expected = grad * (s_max / scale * (torch.cosh(torch.clamp(scale * e, -clamp, clamp)) + 1) / (torch.cosh(e) + 1))
    compensated = grad.clone()
    with path(where):
        ops.foreach_compensate_embedding_grad_([e.view(1, -1)], [compensated.view(1, -1)], scale, s_max, clamp)
    assert subnormals(compensated) == 0
    # The kernels' cosh may differ from ATen's in the last place: a result at the flush boundary
    # may then land on either side, hence the absolute tolerance of one `tiny`.
    tolerance = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(
        compensated, flushed(expected), rtol=tolerance, atol=torch.finfo(dtype).tiny, equal_nan=True
    )


@SETTINGS
@given(dtype=dtypes, seed=seeds, shape=st.sampled_from([(16, 12), (3, 5, 4, 4)]))
def test_routing_and_its_gradients_are_the_plain_ones_flushed(dtype, seed, shape):
    generator = torch.Generator().manual_seed(seed)
    units = shape[1]
    mask = torch.randint(0, 2, (units,), generator=generator).float()
    backup, main, upstream = (spread(generator, shape, dtype) for _ in range(3))
    view = mask.to(dtype).view((1, units) + (1,) * (len(shape) - 2))

    plain_backup, plain_main = backup.clone().requires_grad_(), main.clone().requires_grad_()
    expected = view * plain_backup + (1 - view) * plain_main
    expected.backward(upstream)
    new_backup, new_main = backup.clone().requires_grad_(), main.clone().requires_grad_()
    out = route(mask, new_backup, new_main)
    out.backward(upstream)
    for actual, plain in ((out, expected), (new_backup.grad, plain_backup.grad), (new_main.grad, plain_main.grad)):
        assert subnormals(actual) == 0
        assert torch.equal(actual.detach(), flushed(plain))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_cases_reach_subnormals_that_the_plain_formulas_keep(dtype):
    """The aimed entries do give subnormal plain results, so the tests above can fail."""
    # just below log(tiny): ATen computes 1 / (1 + exp(-x)), which is 0 once exp(-x) overflows
    _, high = subnormal_exponents(dtype)
    e = torch.linspace(high - 1.3, high, 9, dtype=torch.float64)[:-1].to(dtype) / 400.0
    assert subnormals(torch.sigmoid(400.0 * e)) > 0
    assert subnormals(ops.foreach_sigmoid_gate([e.view(1, -1)], 400.0)[0]) == 0
    x = spread(torch.Generator().manual_seed(0), (64, 8), dtype)
    assert subnormals(x) > 0
    assert subnormals(ops.unit_mask(x, torch.ones(8, dtype=dtype))) == 0


def test_flushing_changes_no_floating_point_state():
    """The ops flush their own results; the process keeps computing subnormals elsewhere."""
    ops.foreach_sigmoid_gate([torch.full((1, 4), -0.25)], 400.0)
    ops.unit_mask(torch.randn(4, 3), torch.full((3,), 1e-39), relu=True)
    tiny = torch.finfo(torch.float32).tiny
    assert torch.tensor(tiny) / 4 != 0
