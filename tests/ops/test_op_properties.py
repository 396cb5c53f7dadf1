"""Property-based tests: random shapes, values and strides, native against reference.

Sizes are drawn around the kernels' boundaries (vector lanes, 256-row blocks and threads, grain
sizes, selection chunks); large tensors are filled from a small drawn pool of values, which also
gives the gate many non-integer ties.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_helpers import DEVICES, assert_identical, requires_native, run_both, unit_mask_gradient_bound

from clarena import ops

pytestmark = requires_native
SETTINGS = settings(max_examples=60, deadline=None)
# Above this many elements a tensor's values come from a drawn pool instead of one draw each.
POOLED_NUMEL = 256

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 0.1, -0.3, math.inf, -math.inf])
# values one float32 ulp apart share the gate's radix buckets down to the last digit
clustered = st.integers(-40, 40).map(lambda steps: 1.0 + steps * torch.finfo(torch.float32).eps)


@st.composite
def tensors(draw, shape, dtype=torch.float32, values=None):
    """A tensor of `shape` whose values come from `values` (default: finite floats, many repeated),
    laid out contiguously, transposed or sliced with a step."""
    if values is None:
        values = st.one_of(finite, special, clustered)
    numel = math.prod(shape)
    if numel <= POOLED_NUMEL:
        flat = torch.tensor(draw(st.lists(values, min_size=numel, max_size=numel)), dtype=dtype)
    else:
        pool = torch.tensor(draw(st.lists(values, min_size=1, max_size=24)), dtype=dtype)
        generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        flat = pool[torch.randint(len(pool), (numel,), generator=generator)]
    tensor = flat.view(shape)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and tensor.dim() >= 2:
        return tensor.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "strided":
        return torch.stack([tensor, torch.zeros_like(tensor)], dim=-1)[..., 0]
    return tensor


small_shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)
# CPU: 2^16-element histogram chunks and the 4096-candidate switch to nth_element; CUDA:
# 256-thread blocks.
gate_sizes = st.sampled_from([255, 256, 257, 4095, 4096, 4097, 65_535, 65_536, 65_537, 131_073])
gate_shapes = st.one_of(small_shapes, gate_sizes.map(lambda n: (n,)), st.sampled_from([(257, 255), (3, 65_536)]))


@SETTINGS
@pytest.mark.parametrize("device", DEVICES)
@given(data=st.data(), shape=gate_shapes, keep=st.floats(1e-4, 1.0), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_percentile_mask(device, data, shape, keep, dtype):
    score = data.draw(tensors(shape, dtype)).to(device)
    native, reference, _, _ = run_both(ops.percentile_mask, [score, keep])
    assert_identical(native, reference)


# Row lengths around 8 and 16 lanes (AVX2, AVX-512 float32) and rows beyond one CPU grain of 32768
# elements; on CUDA, rows shorter and longer than a 256-thread block.
ALPHA = 0.3
measure_shapes = st.one_of(
    st.tuples(st.integers(1, 9), st.integers(1, 40), st.sampled_from([(), (1, 1), (3, 3), (2, 1)])),
    st.sampled_from([(300, 33, (3, 3)), (1100, 31, ()), (3, 257, ()), (2, 300, (1, 1)), (70_000, 1, ())]),
).map(lambda dims: (dims[0], dims[1], *dims[2]))


@SETTINGS
@pytest.mark.parametrize("device", DEVICES)
@given(
    data=st.data(),
    shape=measure_shapes,
    first_layer=st.booleans(),
    aggregation=st.sampled_from(["min", "max", "mean"]),
    rate=st.sampled_from(["hat", "hat_const_alpha", "adahat"]),
)
def test_parameter_measure_and_scale_grad(device, data, shape, first_layer, aggregation, rate):
    unit = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 5, width=32))
    a = data.draw(tensors(shape[:1], values=unit)).to(device)
    b = None if first_layer else data.draw(tensors(shape[1:2], values=unit)).to(device)
    native, reference, _, _ = run_both(ops.parameter_measure, [a, b, shape, aggregation])
    assert_identical(native, reference)

    grad = data.draw(tensors(shape, values=st.floats(-100, 100, width=32))).to(device)
    native_grad, reference_grad = grad.clone(), grad.clone()
    ops.scale_grad_by_measure_(native_grad, a, b, aggregation, rate, alpha=ALPHA, r=0.7)
    with ops.use_reference():
        ops.scale_grad_by_measure_(reference_grad, a, b, aggregation, rate, alpha=ALPHA, r=0.7)
    # Each path rounds the rate's few operations and the product once each, relative to the
    # terms the rate adds (1, m and alpha * m; r / (m + r) stays within them), so the two may
    # differ by a few ulps of those terms, never by more.
    terms = 1 + reference.abs() * (1 + ALPHA)
    bound = 8 * torch.finfo(grad.dtype).eps / 2 * grad.abs() * terms
    assert bool(((native_grad - reference_grad).abs() <= bound).all())


# around one CPU grain (32768 elements) and whole vectors
masked_shapes = st.one_of(small_shapes, st.sampled_from([(32_767,), (32_768,), (32_769,), (257, 255), (65_537,)]))


@SETTINGS
@pytest.mark.parametrize("device", DEVICES)
@given(data=st.data(), shape=masked_shapes)
def test_masked_weight(device, data, shape):
    weight = data.draw(tensors(shape)).to(device).requires_grad_()
    mask = data.draw(tensors(shape, values=st.sampled_from([0.0, 1.0]))).to(device).requires_grad_()
    native, reference, native_args, reference_args = run_both(ops.masked_weight, [weight, mask])
    assert_identical(native, reference)
    grad = torch.randn(shape, device=device)
    native.backward(grad)
    reference.backward(grad)
    for mine, theirs in zip(native_args, reference_args):
        assert_identical(mine.grad, theirs.grad)


# (N, C): 256-sample blocks of the CPU mask gradient; spatial rows around 8 lanes; CUDA channels
# sliced from 2^15 elements (per channel: batch times spatial size).
unit_shapes = st.one_of(
    st.tuples(st.integers(0, 6), st.integers(1, 9), st.sampled_from([(), (1,), (7,), (8,), (9,), (3, 5), (4, 4), (17,)])),
    st.sampled_from([(255, 7, ()), (256, 7, ()), (257, 7, ()), (513, 130, ()), (257, 3, (9,)), (2, 3, (130, 255)), (1, 5000, (7,))]),
).map(lambda dims: (dims[0], dims[1], *dims[2]))


@SETTINGS
@pytest.mark.parametrize("device", DEVICES)
@given(data=st.data(), shape=unit_shapes, relu=st.booleans())
def test_unit_mask(device, data, shape, relu):
    x = data.draw(tensors(shape, values=st.floats(-10, 10, width=32))) if shape[0] else torch.empty(shape)
    mask = data.draw(tensors(shape[1:2], values=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1, width=32))))
    x, mask = x.to(device).requires_grad_(), mask.to(device).requires_grad_()
    native, reference, native_args, reference_args = run_both(ops.unit_mask, [x, mask, relu])
    assert_identical(native, reference)
    grad = torch.randn(shape, device=device)
    native.backward(grad)
    reference.backward(grad)
    assert_identical(native_args[0].grad, reference_args[0].grad)
    error = (native_args[1].grad.double() - reference_args[1].grad.double()).abs()
    assert bool((error <= 2 * unit_mask_gradient_bound(x, mask, grad, relu)).all())
