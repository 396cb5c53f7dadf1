"""WSN's masked layers: parameters multiplied by a 0/1 mask, then ATen's linear or conv2d.

The elementwise masking is the op; its backward gives the weight `grad * mask` and the mask
(straight through to WSN's scores) `grad * weight` in one fused pass. `score_masked_parameters`
runs WSN's gate and the masking of every layer as one autograd step.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clarena_backbones.ops import checks, native, reference
from clarena_backbones.ops.percentile_mask import _check_batch_args, percentile_masks, runs_native_list


def masked_weight(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return `weight * mask` (same shape, same dtype), differentiable in both."""
    _check_args(weight, mask)
    if native.runs_native(weight):
        return torch.ops.clarena.masked_weight(weight, mask)
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


def score_masked_parameters(
    scores: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor], keep: float, state: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`(masks, [p * m for p, m in zip(parameters, masks)])` with `masks = percentile_masks(scores, keep, state)`.

    WSN's training-stage masking of every layer at once: `scores[i]` has the shape of
    `parameters[i]`. The gradients are those of the two ops: each parameter gets `grad * mask`,
    each score `grad * parameter` (straight through the gate) plus any gradient of its mask.
    Natively, in eager mode, the gate and every masked parameter are one autograd node, whose
    backward is one fused pass per parameter; the kernels check the arguments once. Under
    torch.compile and on the reference path it is the two ops, layer by layer.
    """
    count = len(scores) if isinstance(scores, Sequence) else -1
    same_count = isinstance(parameters, (list, tuple)) and len(parameters) == count
    if not runs_native_list(scores, keep) or not same_count or torch.compiler.is_compiling():
        _check_parameter_count(scores, parameters)
        masks = percentile_masks(scores, keep, state)
        return masks, [masked_weight(parameter, mask) for parameter, mask in zip(parameters, masks)]
    *outputs, next_state = native.call_list_op(
        lambda: _ScoreMasked.apply(keep, state, count, *scores, *parameters),
        lambda: _check_score_masked_args(scores, parameters, keep, state),
    )
    state.copy_(next_state)
    return outputs[:count], outputs[count:]


class _ScoreMasked(torch.autograd.Function):
    """The gate over `scores` and the masked `parameters`, as one node (see `score_masked_parameters`)."""

    @staticmethod
    def forward(ctx, keep, state, count, *tensors):
        scores, parameters = list(tensors[:count]), tensors[count:]
        with torch._C._AutoDispatchBelowAutograd():  # straight to the kernels: no autograd of their own
            masks, next_state = torch.ops.clarena.percentile_masks(scores, keep, state)
            masked = [torch.ops.clarena.masked_weight(parameter, mask) for parameter, mask in zip(parameters, masks)]
        ctx.save_for_backward(*parameters, *masks)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(next_state)
        return (*masks, *masked, next_state)

    @staticmethod
    def backward(ctx, *grads):
        count = len(ctx.saved_tensors) // 2
        parameters, masks = ctx.saved_tensors[:count], ctx.saved_tensors[count:]
        grad_masks, grad_masked = grads[:count], grads[count : 2 * count]
        grad_scores, grad_parameters = [], []
        for parameter, mask, grad_mask, grad in zip(parameters, masks, grad_masks, grad_masked):
            grad_parameter = None
            if grad is not None:
                grad_parameter, grad_through = torch.ops.clarena.masked_weight_backward(grad, parameter, mask)
                grad_mask = grad_through if grad_mask is None else grad_through.add_(grad_mask)
            grad_scores.append(grad_mask)
            grad_parameters.append(grad_parameter)
        return (None, None, None, *grad_scores, *grad_parameters)


def _check_score_masked_args(
    scores: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor], keep: float, state: torch.Tensor
) -> None:
    _check_batch_args(scores, keep, state)
    _check_parameter_count(scores, parameters)
    for index, (score, parameter) in enumerate(zip(scores, parameters)):
        checks.check_like(f"parameters[{index}]", parameter, f"scores[{index}]", score)
        checks.check_shape(f"parameters[{index}]", parameter, score.shape, f"`scores[{index}]`")


def _check_parameter_count(scores: Sequence[torch.Tensor], parameters: Sequence[torch.Tensor]) -> None:
    if isinstance(parameters, torch.Tensor) or not isinstance(parameters, Sequence):
        raise TypeError(f"clarena: `parameters` must be a sequence of tensors, got {type(parameters).__name__}")
    if isinstance(scores, Sequence) and len(parameters) != len(scores):
        raise ValueError(f"clarena: `parameters` must hold one tensor per score tensor ({len(scores)}), got {len(parameters)}")


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
