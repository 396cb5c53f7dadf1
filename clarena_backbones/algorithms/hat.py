"""HAT's training-step pieces (Serra et al., 2018), as CLArena's `clarena/cl_algorithms/hat.py` runs them.

A task learns a unit mask per layer (a sigmoid of a task embedding, annealed from 1/s_max to
s_max within each epoch). Weights joining two units that an earlier task uses get no gradient
(`HATMaskBackbone.clip_grad_by_measure_` with the cumulative mask), so earlier tasks keep
computing exactly what they computed.
"""

import torch
from torch import Tensor

from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone


def cumulative_mask(backbone: HATMaskBackbone) -> dict[str, Tensor]:
    """M^{<t}: the union of the stored task masks (zeros before the first task is stored)."""
    if backbone.masks:
        return backbone.combine_masks(list(backbone.masks.values()), "union")
    return {
        name: torch.zeros(layer.weight.shape[0], device=layer.weight.device)
        for name, layer in backbone.named_weighted_layers()
    }


def mask_sparsity(mask: dict[str, Tensor], cumulative: dict[str, Tensor]) -> Tensor:
    """HAT's mask-sparsity regulariser ('original' mode): the share of still-free units this task takes.

    Units earlier tasks already use cost nothing; with 10 or fewer free units left it is 0.
    """
    occupied = available = 0.0
    for name, unit_mask in mask.items():
        free = 1 - cumulative[name].to(unit_mask)
        occupied = occupied + (unit_mask * free).sum()
        available = available + free.sum()
    if available <= 10:
        return torch.zeros(())
    return occupied / available


def adjust_gradients(
    backbone: HATMaskBackbone,
    cumulative: dict[str, Tensor],
    s_max: float,
    clamp_threshold: float,
    batch_idx: int,
    num_batches: int,
) -> None:
    """HAT's step between `backward()` and the optimiser step.

    grad *= 1 - min(M^{<t}[out unit], M^{<t}[in unit]) (a weight is frozen where both of its
    units are taken), then the task embeddings' gradient compensation.
    """
    backbone.clip_grad_by_measure_(cumulative, aggregation="min", rate="hat")
    backbone.compensate_task_embedding_gradients(s_max, clamp_threshold, batch_idx, num_batches)
