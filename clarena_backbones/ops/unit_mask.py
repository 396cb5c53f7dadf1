"""HAT's unit mask: a layer's pre-activation multiplied by a per-unit mask, with a fused ReLU."""

import torch

from clarena_backbones.ops import checks, native, reference


def unit_mask(input: torch.Tensor, mask: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """Return `act(input * mask)` with `mask` (C,) broadcast over dim 1 of `input` (N, C, ...).

    `act` is ReLU when `relu` is true, else the identity. Differentiable in both `input` and
    `mask` (HAT trains its task embeddings through the mask). Results and gradients below the
    dtype's smallest normal are 0 (`reference.flush_subnormal`).
    """
    _check_args(input, mask)
    return _UnitMask.apply(input, mask, bool(relu), native.runs_native(input))


class _UnitMask(torch.autograd.Function):
    """The op's autograd, over the native kernels or their reference.

    A Python autograd.Function rather than `torch.library.register_autograd` on the kernel: the
    registered autograd cost about 20 us more per call each way (CPU, one thread), as much as the
    kernels themselves on an MLP layer. The kernels are not differentiable themselves. With it,
    native forward and backward take half the reference's time from 8x16 inputs up, so every
    size runs the kernels.
    """

    @staticmethod
    def forward(ctx, input: torch.Tensor, mask: torch.Tensor, relu: bool, native_kernels: bool) -> torch.Tensor:
        ctx.save_for_backward(input, mask)
        ctx.relu, ctx.native_kernels = relu, native_kernels
        if native_kernels:
            return torch.ops.clarena.unit_mask(input, mask, relu)
        return reference.unit_mask_forward(input, mask, relu)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        input, mask = ctx.saved_tensors
        backward = torch.ops.clarena.unit_mask_backward if ctx.native_kernels else reference.unit_mask_backward
        grad_input, grad_mask = backward(grad, input, mask, ctx.relu)
        return (
            grad_input if ctx.needs_input_grad[0] else None,
            grad_mask if ctx.needs_input_grad[1] else None,
            None,
            None,
        )


def _check_args(input: torch.Tensor, mask: torch.Tensor) -> None:
    checks.check_floating("input", input)
    checks.check_like("mask", mask, "input", input)
    if input.dim() < 2:
        raise ValueError(f"clarena: `input` must be (N, C, ...), got shape {tuple(input.shape)}")
    checks.check_shape("mask", mask, input.shape[1:2], "the input's unit dimension")


if native.native_available():
    # The kernels are not differentiable themselves (`_UnitMask` is their autograd): they skip
    # the Autograd key, whose fallback would otherwise warn when a graph runs through them.
    _AUTOGRAD_FALLTHROUGH = torch.library.Library("clarena", "IMPL")
    for _kernel in ("unit_mask", "unit_mask_backward"):
        _AUTOGRAD_FALLTHROUGH.impl(_kernel, torch.library.fallthrough_kernel, "Autograd")

    @torch.library.register_fake("clarena::unit_mask")
    def _unit_mask_fake(input, mask, relu):
        _check_args(input, mask)
        return torch.empty_like(input, memory_format=torch.contiguous_format)

    @torch.library.register_fake("clarena::unit_mask_backward")
    def _unit_mask_backward_fake(grad, input, mask, relu):
        _check_args(input, mask)
        return (
            torch.empty_like(input, memory_format=torch.contiguous_format),
            torch.empty_like(mask, memory_format=torch.contiguous_format),
        )
