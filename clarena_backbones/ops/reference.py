"""Pure-PyTorch implementations of every clarena op, with CLArena's semantics.

They are the test oracle, the benchmark baseline, and the fallback when the native library is
missing. Each follows the original code's formula (sort-based quantile, materialised measures),
with CLArena's bugs fixed as documented in docs/differences.md: the gate has its straight-through backward
and 'mean' aggregation averages the two unit measures.
"""

import torch
import torch.nn.functional as F


class _PercentileGate(torch.autograd.Function):
    """mask = score >= quantile(score, 1 - keep); the gradient passes straight through."""

    @staticmethod
    def forward(ctx, score: torch.Tensor, keep: float) -> torch.Tensor:
        if score.numel() == 0:
            return torch.empty_like(score, memory_format=torch.contiguous_format)
        threshold = torch.quantile(score.flatten(), 1.0 - keep)
        return (score >= threshold).to(score.dtype)

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_mask, None


def percentile_mask(score: torch.Tensor, keep: float) -> torch.Tensor:
    return _PercentileGate.apply(score, keep)


def _aggregate(a: torch.Tensor, b: torch.Tensor, aggregation: str) -> torch.Tensor:
    if aggregation == "min":
        return torch.minimum(a, b)
    if aggregation == "max":
        return torch.maximum(a, b)
    return (a + b) / 2


def parameter_measure(a: torch.Tensor, b: torch.Tensor | None, weight_shape, aggregation: str) -> torch.Tensor:
    shape = tuple(weight_shape)
    trailing = (1,) * (len(shape) - 1)
    a_full = a.view(-1, *trailing).expand(shape)
    if b is None:
        return a_full.contiguous()
    b_full = b.view(1, -1, *trailing[1:]).expand(shape)
    return _aggregate(a_full, b_full, aggregation)


def adjustment_rate(measure: torch.Tensor, rate: str, alpha: float, r: float) -> torch.Tensor:
    if rate == "hat":
        return 1 - measure
    if rate == "hat_const_alpha":
        return alpha * measure + (1 - measure)
    return r / (measure + r)


def scale_grad_by_measure_(grad, a, b, aggregation: str, rate: str, alpha: float, r: float) -> None:
    grad.mul_(adjustment_rate(parameter_measure(a, b, grad.shape, aggregation), rate, alpha, r))


def foreach_rate_sums(a, b, weight_shapes, aggregation: str, rate: str, alpha: float, r) -> tuple[torch.Tensor, torch.Tensor]:
    weight_sums = [
        adjustment_rate(parameter_measure(a_l, b_l, shape, aggregation), rate, alpha, r_l).sum()
        for a_l, b_l, shape, r_l in zip(a, b, weight_shapes, r)
    ]
    unit_sums = [adjustment_rate(a_l, rate, alpha, r_l).sum() for a_l, r_l in zip(a, r)]
    return torch.stack(weight_sums), torch.stack(unit_sums)


def masked_weight(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weight * mask


def flush_subnormal(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` with 0 wherever its magnitude is below `torch.finfo(dtype).tiny`, as the kernels write.

    HAT's masking ops flush their results so that no subnormal reaches the matrix multiplies that
    follow (a slow path on CPUs). One vectorised pass: hardshrink zeroes |x| <= the largest
    subnormal and keeps NaN.
    """
    info = torch.finfo(tensor.dtype)
    return F.hardshrink(tensor, info.tiny * (1 - info.eps))


def _over_units(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A unit vector (C,) viewed to broadcast over dim 1 of `like` (N, C, ...)."""
    return mask.view(1, -1, *([1] * (like.dim() - 2)))


# HAT's masking ops flush both their results and the gradients they return; each gradient is
# the plain formula's, flushed (the flush itself is not differentiated).


def unit_mask_forward(input: torch.Tensor, mask: torch.Tensor, relu: bool) -> torch.Tensor:
    masked = input * _over_units(mask, input)
    return flush_subnormal(F.relu(masked) if relu else masked)


def unit_mask_backward(
    grad: torch.Tensor, input: torch.Tensor, mask: torch.Tensor, relu: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    unit_mask = _over_units(mask, input)
    if relu:
        grad = torch.where(input * unit_mask > 0, grad, 0)  # where the ReLU's output is > 0
    grad_mask = (grad * input).sum_to_size(unit_mask.shape).view(mask.shape)
    return flush_subnormal(grad * unit_mask), flush_subnormal(grad_mask)


class _SigmoidGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, embedding: torch.Tensor, scale: float) -> torch.Tensor:
        gate = torch.sigmoid(scale * embedding)
        ctx.save_for_backward(gate)
        ctx.scale = scale
        return flush_subnormal(gate)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gate,) = ctx.saved_tensors
        return flush_subnormal(torch.ops.aten.sigmoid_backward(grad, gate) * ctx.scale), None


def sigmoid_gate(embedding: torch.Tensor, scale: float) -> torch.Tensor:
    """`sigmoid(scale * embedding)`, flushed; its gradient too."""
    return _SigmoidGate.apply(embedding, scale)


def foreach_sigmoid_gate(embeddings, scale: float) -> list[torch.Tensor]:
    return [sigmoid_gate(embedding, scale).reshape(-1) for embedding in embeddings]


def foreach_compensate_embedding_grad_(embeddings, grads, scale: float, s_max: float, clamp_threshold: float) -> None:
    for embedding, grad in zip(embeddings, grads):
        e = embedding.detach()
        num = torch.cosh(torch.clamp(scale * e, -clamp_threshold, clamp_threshold)) + 1
        den = torch.cosh(e) + 1
        grad.copy_(flush_subnormal(grad * (s_max / scale * num / den)))


class _Route(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mask: torch.Tensor, backup: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
        unit_mask = _over_units(mask, main)
        ctx.save_for_backward(unit_mask)
        return flush_subnormal(unit_mask * backup + (1 - unit_mask) * main)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor]:
        (unit_mask,) = ctx.saved_tensors
        return None, flush_subnormal(grad * unit_mask), flush_subnormal(grad * (1 - unit_mask))


def route(mask: torch.Tensor, backup: torch.Tensor, main: torch.Tensor) -> torch.Tensor:
    """AmnesiacHAT's routing `M * backup + (1 - M) * main`, flushed; `mask` (C,) is not differentiated."""
    return _Route.apply(mask, backup, main)
