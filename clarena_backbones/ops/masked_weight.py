"""WSN's masked layers: parameters multiplied by a 0/1 mask, then ATen's linear or conv2d.

The elementwise masking is the op; its backward gives the weight `grad * mask` and the mask
(straight through to WSN's scores) `grad * weight` in one fused pass.
"""

import torch
import torch.nn.functional as F

from clarena_backbones.ops import checks, native, reference


def masked_weight(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return `weight * mask` (same shape, same dtype), differentiable in both.

    Natively the kernel checks the arguments; the Python checks run only when it refuses them.
    """
    if isinstance(weight, torch.Tensor) and native.runs_native(weight):
        return native.call_list_op(lambda: torch.ops.clarena.masked_weight(weight, mask), lambda: _check_args(weight, mask))
    _check_args(weight, mask)
    return reference.masked_weight(weight, mask)


def masked_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    weight_mask: torch.Tensor,
    bias_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`F.linear(input, weight * weight_mask, bias * bias_mask)`; an absent bias mask leaves the bias whole."""
    return F.linear(input, masked_weight(weight, weight_mask), _masked_bias(bias, bias_mask))


def masked_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    weight_mask: torch.Tensor,
    bias_mask: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
) -> torch.Tensor:
    """`F.conv2d` with masked weight and bias, arguments as in `F.conv2d`."""
    return F.conv2d(
        input, masked_weight(weight, weight_mask), _masked_bias(bias, bias_mask), stride, padding, dilation, groups
    )


def _masked_bias(bias: torch.Tensor | None, bias_mask: torch.Tensor | None) -> torch.Tensor | None:
    if bias is None or bias_mask is None:
        return bias
    return masked_weight(bias, bias_mask)


def _check_args(weight: torch.Tensor, mask: torch.Tensor) -> None:
    checks.check_floating("weight", weight)
    checks.check_like("mask", mask, "weight", weight)
    checks.check_shape("mask", mask, weight.shape, "the weight")


if native.native_available():

    @torch.library.register_fake("clarena::masked_weight")
    def _masked_weight_fake(weight, mask):
        _check_args(weight, mask)
        return torch.empty_like(weight, memory_format=torch.contiguous_format)

    @torch.library.register_fake("clarena::masked_weight_backward")
    def _masked_weight_backward_fake(grad, weight, mask):
        _check_args(weight, mask)
        out = torch.empty_like(weight, memory_format=torch.contiguous_format)
        return out, torch.empty_like(out)

    def _setup_context(ctx, inputs, output):
        weight, mask = inputs
        ctx.save_for_backward(weight, mask)

    def _masked_weight_backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        grad_weight, grad_mask = torch.ops.clarena.masked_weight_backward(grad, weight, mask)
        return (
            grad_weight if ctx.needs_input_grad[0] else None,
            grad_mask if ctx.needs_input_grad[1] else None,
        )

    torch.library.register_autograd(
        "clarena::masked_weight", _masked_weight_backward, setup_context=_setup_context
    )
