import pytest
import torch
import torch.nn.functional as F
from op_helpers import DEVICES, assert_refused_on_both_paths, non_contiguous, requires_native, run_both

from clarena import ops

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SHAPES = [(6, 5), (4, 3, 3, 3), (7,), (0, 3)]


def sample_inputs(device="cpu", dtype=torch.float32, requires_grad=False):
    """(weight, mask) pairs: binary masks as WSN makes them, real masks, non-contiguous layouts."""
    samples = []
    for shape in SHAPES:
        weight = torch.randn(shape, device=device, dtype=dtype)
        binary = torch.randint(0, 2, shape, device=device).to(dtype)
        real = torch.rand(shape, device=device, dtype=dtype)
        samples += [(weight, binary), (weight, real), (non_contiguous(weight), non_contiguous(binary))]
    return [(w.requires_grad_(requires_grad), m.requires_grad_(requires_grad)) for w, m in samples]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_and_backward_equal_the_reference(device, dtype):
    for weight, mask in sample_inputs(device, dtype, requires_grad=True):
        native, reference, native_args, reference_args = run_both(ops.masked_weight, [weight, mask])
        assert torch.equal(native, reference)
        grad = torch.randn_like(native)
        native.backward(grad)
        reference.backward(grad)
        for mine, theirs in zip(native_args, reference_args):
            assert torch.equal(mine.grad, theirs.grad)


def test_gradients_are_masked_for_the_weight_and_straight_through_for_the_mask():
    weight = torch.randn(4, 3, requires_grad=True)
    mask = torch.randint(0, 2, (4, 3)).float().requires_grad_()
    grad = torch.randn(4, 3)
    ops.masked_weight(weight, mask).backward(grad)
    assert torch.equal(weight.grad, grad * mask.detach())
    assert torch.equal(mask.grad, grad * weight.detach())


def test_gradcheck_float64():
    for weight, mask in sample_inputs(dtype=torch.float64, requires_grad=True):
        assert torch.autograd.gradcheck(ops.masked_weight, (weight, mask))


def test_masked_linear_equals_linear_on_masked_parameters():
    x = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    weight_mask = torch.randint(0, 2, (4, 5)).double().requires_grad_()
    bias_mask = torch.randint(0, 2, (4,)).double().requires_grad_()
    out = ops.masked_linear(x, weight, bias, weight_mask, bias_mask)
    torch.testing.assert_close(out, F.linear(x, weight * weight_mask, bias * bias_mask))
    assert torch.autograd.gradcheck(ops.masked_linear, (x, weight, bias, weight_mask, bias_mask))
    # no bias mask: the bias is used whole; no bias: none
    torch.testing.assert_close(ops.masked_linear(x, weight, bias, weight_mask), F.linear(x, weight * weight_mask, bias))
    torch.testing.assert_close(ops.masked_linear(x, weight, None, weight_mask), F.linear(x, weight * weight_mask))


def test_masked_conv2d_equals_conv2d_on_masked_parameters():
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    weight_mask = torch.randint(0, 2, weight.shape).double().requires_grad_()
    bias_mask = torch.randint(0, 2, (6,)).double().requires_grad_()
    args = (x, weight, bias, weight_mask, bias_mask, 2, 1, 1, 2)
    expected = F.conv2d(x, weight * weight_mask, bias * bias_mask, stride=2, padding=1, dilation=1, groups=2)
    torch.testing.assert_close(ops.masked_conv2d(*args), expected)
    assert torch.autograd.gradcheck(ops.masked_conv2d, args)


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for requires_grad in (False, True):
        for weight, mask in sample_inputs(device, requires_grad=requires_grad):
            torch.library.opcheck(torch.ops.clarena.masked_weight.default, (weight, mask))
    for weight, mask in sample_inputs(device):
        torch.library.opcheck(torch.ops.clarena.masked_weight_backward.default, (torch.randn_like(weight), weight, mask))


def test_compiles_without_graph_breaks():
    def layer(x, weight, bias, weight_mask, bias_mask):
        return ops.masked_linear(x, weight, bias, weight_mask, bias_mask).relu()

    args = [torch.randn(8, 5), torch.randn(3, 5, requires_grad=True), torch.randn(3, requires_grad=True),
            torch.randint(0, 2, (3, 5)).float().requires_grad_(), torch.ones(3, requires_grad=True)]
    compiled = torch.compile(layer, fullgraph=True)
    eager_args, compiled_args = [a.detach().clone().requires_grad_(a.requires_grad) for a in args], args
    torch.testing.assert_close(compiled(*compiled_args), layer(*eager_args))
    compiled(*compiled_args).sum().backward()
    layer(*eager_args).sum().backward()
    for mine, theirs in zip(compiled_args[1:], eager_args[1:]):
        torch.testing.assert_close(mine.grad, theirs.grad)


@pytest.mark.parametrize(
    "weight, mask, error, message",
    [
        (torch.randn(3, 4), torch.ones(4, 3), ValueError, "clarena: `mask` must have the shape of the weight (3, 4), got (4, 3)"),
        (torch.randn(3, 4), torch.ones(3, 4, dtype=torch.float64), TypeError, "clarena: `mask` must have the dtype of `weight` (torch.float32), got torch.float64"),
        (torch.randn(3, 4), torch.ones(3, 4, dtype=torch.bool), TypeError, "clarena: `mask` must have the dtype of `weight` (torch.float32), got torch.bool"),
        (torch.arange(12).view(3, 4), torch.ones(3, 4), TypeError, "clarena: `weight` must be a floating-point tensor, got torch.int64"),
        (torch.randn(3, 4), torch.ones(3, 4, device="meta"), ValueError, "clarena: `mask` must be on the device of `weight` (cpu), got meta"),
        (torch.randn(3, 4), [[1.0] * 4] * 3, TypeError, "clarena: `mask` must be a torch.Tensor, got list"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(weight, mask, error, message):
    assert_refused_on_both_paths(lambda: ops.masked_weight(weight, mask), error, message)
