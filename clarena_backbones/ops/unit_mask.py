"""HAT's unit mask: a layer's pre-activation multiplied by a per-unit mask, with a fused ReLU."""

import torch

from clarena_backbones.ops import checks, native, reference

# Inputs smaller than this run the reference's two ATen ops: on such tensors the custom op's
# fixed cost (its Python-registered autograd, about 20 us a call) exceeds the arithmetic it
# saves. Measured on CPU, one thread: alone (forward and backward) native is 0.7x ATen at 128x64,
# 0.9x at 128x512 and 1.6x at 64x64x16x16; inside the HATMaskMLP training step (128x256, 128x100,
# 128x64) it is 2-3% faster than ATen and dispatches 4 ops fewer per layer. A size-gated op
# names its gate NATIVE_MIN_NUMEL: the tests set every such gate to 0 to run the kernels on small
# inputs (the `native_at_every_size` fixture).
NATIVE_MIN_NUMEL = 1 << 13


def unit_mask(input: torch.Tensor, mask: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """Return `act(input * mask)` with `mask` (C,) broadcast over dim 1 of `input` (N, C, ...).

    `act` is ReLU when `relu` is true, else the identity. Differentiable in both `input` and
    `mask` (HAT trains its task embeddings through the mask). The native kernel runs from
    `NATIVE_MIN_NUMEL` elements up.
    """
    _check_args(input, mask)
    if input.numel() >= NATIVE_MIN_NUMEL and native.runs_native(input):
        return torch.ops.clarena.unit_mask(input, mask, bool(relu))
    return reference.unit_mask(input, mask, bool(relu))


def _check_args(input: torch.Tensor, mask: torch.Tensor) -> None:
    checks.check_floating("input", input)
    checks.check_like("mask", mask, "input", input)
    if input.dim() < 2:
        raise ValueError(f"clarena: `input` must be (N, C, ...), got shape {tuple(input.shape)}")
    checks.check_shape("mask", mask, input.shape[1:2], "the input's unit dimension")


if native.native_available():

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

    def _setup_context(ctx, inputs, output):
        input, mask, relu = inputs
        ctx.save_for_backward(input, mask)
        ctx.relu = relu

    def _unit_mask_backward(ctx, grad):
        input, mask = ctx.saved_tensors
        grad_input, grad_mask = torch.ops.clarena.unit_mask_backward(grad, input, mask, ctx.relu)
        return (
            grad_input if ctx.needs_input_grad[0] else None,
            grad_mask if ctx.needs_input_grad[1] else None,
            None,
        )

    torch.library.register_autograd("clarena::unit_mask", _unit_mask_backward, setup_context=_setup_context)
