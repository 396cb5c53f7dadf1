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


def _aggregate(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "min":
        return torch.minimum(a, b)
    if mode == "max":
        return torch.maximum(a, b)
    return (a + b) / 2


def parameter_measure(a: torch.Tensor, b: torch.Tensor | None, weight_shape, mode: str) -> torch.Tensor:
    shape = tuple(weight_shape)
    trailing = (1,) * (len(shape) - 1)
    a_full = a.view(-1, *trailing).expand(shape)
    if b is None:
        return a_full.contiguous()
    b_full = b.view(1, -1, *trailing[1:]).expand(shape)
    return _aggregate(a_full, b_full, mode)


def adjustment_rate(measure: torch.Tensor, rate: str, alpha: float, r: float) -> torch.Tensor:
    if rate == "hat":
        return 1 - measure
    if rate == "hat_const_alpha":
        return alpha * measure + (1 - measure)
    return r / (measure + r)


def scale_grad_by_measure_(grad, a, b, aggregation: str, rate: str, alpha: float, r: float) -> None:
    grad.mul_(adjustment_rate(parameter_measure(a, b, grad.shape, aggregation), rate, alpha, r))


def masked_weight(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weight * mask


def unit_mask(input: torch.Tensor, mask: torch.Tensor, relu: bool) -> torch.Tensor:
    masked = input * mask.view(1, -1, *([1] * (input.dim() - 2)))
    return F.relu(masked) if relu else masked


def foreach_sigmoid_gate(embeddings, scale: float) -> list[torch.Tensor]:
    return [torch.sigmoid(scale * embedding).reshape(-1) for embedding in embeddings]


def foreach_compensate_embedding_grad_(embeddings, grads, scale: float, s_max: float, clamp_threshold: float) -> None:
    for embedding, grad in zip(embeddings, grads):
        e = embedding.detach()
        num = torch.cosh(torch.clamp(scale * e, -clamp_threshold, clamp_threshold)) + 1
        den = torch.cosh(e) + 1
        grad.mul_(s_max / scale * num / den)
