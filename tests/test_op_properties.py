"""Property-based tests: random shapes, values and strides, native against reference."""

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_helpers import assert_identical, requires_native, run_both

from clarena import ops

UNIT_MASK_MODULE = importlib.import_module("clarena.ops.unit_mask")  # the package attribute is the function

pytestmark = requires_native
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def tensors(draw, shape, dtype=torch.float32, values=None):
    """A tensor of `shape` whose values come from `values` (default: finite floats, many repeated),
    laid out contiguously, transposed or sliced with a step."""
    numel = math.prod(shape)
    if values is None:
        values = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, width=32), st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, math.inf, -math.inf]))
    flat = draw(st.lists(values, min_size=numel, max_size=numel))
    tensor = torch.tensor(flat, dtype=dtype).view(shape)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and tensor.dim() >= 2:
        return tensor.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "strided":
        return torch.stack([tensor, torch.zeros_like(tensor)], dim=-1)[..., 0]
    return tensor


shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)


@SETTINGS
@given(data=st.data(), shape=shapes, keep=st.floats(1e-4, 1.0, exclude_min=False), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_percentile_mask(data, shape, keep, dtype):
    score = data.draw(tensors(shape, dtype))
    native, reference, _, _ = run_both(ops.percentile_mask, [score, keep])
    assert_identical(native, reference)


@SETTINGS
@given(
    data=st.data(),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    kernel=st.sampled_from([(), (1, 1), (3, 3), (2, 1)]),
    first_layer=st.booleans(),
    aggregation=st.sampled_from(["min", "max", "mean"]),
    rate=st.sampled_from(["hat", "hat_const_alpha", "adahat"]),
)
def test_parameter_measure_and_scale_grad(data, rows, cols, kernel, first_layer, aggregation, rate):
    unit = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 5, width=32))
    a = data.draw(tensors((rows,), values=unit))
    b = None if first_layer else data.draw(tensors((cols,), values=unit))
    shape = (rows, cols, *kernel)
    native, reference, _, _ = run_both(ops.parameter_measure, [a, b, shape, aggregation])
    torch.testing.assert_close(native, reference, rtol=1e-6, atol=1e-6, equal_nan=True)

    grad = data.draw(tensors(shape, values=st.floats(-100, 100, width=32)))
    native_grad, reference_grad = grad.clone(), grad.clone()
    ops.scale_grad_by_measure_(native_grad, a, b, aggregation, rate, alpha=0.3, r=0.7)
    with ops.use_reference():
        ops.scale_grad_by_measure_(reference_grad, a, b, aggregation, rate, alpha=0.3, r=0.7)
    torch.testing.assert_close(native_grad, reference_grad, rtol=1e-5, atol=1e-5, equal_nan=True)


@SETTINGS
@given(data=st.data(), shape=shapes)
def test_masked_weight(data, shape):
    weight = data.draw(tensors(shape)).requires_grad_()
    mask = data.draw(tensors(shape, values=st.sampled_from([0.0, 1.0]))).requires_grad_()
    native, reference, native_args, reference_args = run_both(ops.masked_weight, [weight, mask])
    assert_identical(native, reference)
    grad = torch.randn(shape)
    native.backward(grad)
    reference.backward(grad)
    for mine, theirs in zip(native_args, reference_args):
        assert_identical(mine.grad, theirs.grad)


@pytest.fixture(autouse=True)
def native_unit_mask_at_every_size(monkeypatch):
    monkeypatch.setattr(UNIT_MASK_MODULE, "NATIVE_MIN_NUMEL", 0)


@SETTINGS
@given(data=st.data(), batch=st.integers(0, 6), units=st.integers(1, 8), spatial=st.sampled_from([(), (1,), (3, 2)]), relu=st.booleans())
def test_unit_mask(data, batch, units, spatial, relu):
    shape = (batch, units, *spatial)
    x = data.draw(tensors(shape, values=st.floats(-10, 10, width=32))) if batch else torch.empty(shape)
    mask = data.draw(tensors((units,), values=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1, width=32))))
    x.requires_grad_()
    mask.requires_grad_()
    native, reference, native_args, reference_args = run_both(ops.unit_mask, [x, mask, relu])
    assert_identical(native, reference)
    grad = torch.randn(shape)
    native.backward(grad)
    reference.backward(grad)
    torch.testing.assert_close(native_args[0].grad, reference_args[0].grad, equal_nan=True)
    torch.testing.assert_close(native_args[1].grad, reference_args[1].grad, rtol=1e-4, atol=1e-3, equal_nan=True)
