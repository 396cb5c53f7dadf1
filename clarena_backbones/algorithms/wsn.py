"""WSN's training-step pieces (Kang et al., 2022), as CLArena's `clarena/cl_algorithms/wsn.py` runs them.

A task learns scores that pick the top `mask_percentage` of every layer's weights (its
subnetwork) and trains those weights, except the ones an earlier task picked: they are frozen
(`WSNMaskBackbone.clip_grad_by_mask_` with the union of the stored subnetworks).
"""

import warnings

import torch
from torch import Tensor

from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone
from clarena_backbones.ops import unpack_mask


@torch.no_grad()
def cumulative_mask(backbone: WSNMaskBackbone) -> tuple[dict[str, Tensor], dict[str, Tensor | None]]:
    """M_{t-1}: the union of the stored subnetworks as `(weight masks, bias masks)` by layer name.

    Float 0/1 masks shaped like each parameter, on its device (zeros before the first task is
    stored); a layer without a bias has the bias mask None.
    """
    stored = list(backbone.masks.values())  # (packed weight masks, packed bias masks) of each task
    weight_mask: dict[str, Tensor] = {}
    bias_mask: dict[str, Tensor | None] = {}
    for name, layer in backbone.named_weighted_layers():
        weight_mask[name] = _union([weights[name] for weights, _ in stored], layer.weight)
        bias_mask[name] = None if layer.bias is None else _union([biases.get(name) for _, biases in stored], layer.bias)
    return weight_mask, bias_mask


def _union(packed_masks: list[Tensor | None], parameter: Tensor) -> Tensor:
    union = torch.zeros_like(parameter)
    for packed in packed_masks:
        if packed is not None:
            torch.maximum(union, unpack_mask(packed.to(parameter.device), parameter.shape, parameter.dtype), out=union)
    return union


def free_parameters(backbone: WSNMaskBackbone) -> dict[torch.nn.Parameter, Tensor]:
    """Deprecated: `1 - M_{t-1}` by parameter. Use `cumulative_mask` with `clip_grad_by_mask_`."""
    _warn_deprecated("free_parameters(backbone)", "cumulative_mask(backbone)")
    weight_mask, bias_mask = cumulative_mask(backbone)
    free = {}
    for name, layer in backbone.named_weighted_layers():
        free[layer.weight] = 1 - weight_mask[name]
        if layer.bias is not None:
            free[layer.bias] = 1 - bias_mask[name]
    return free


@torch.no_grad()
def freeze_used_(free: dict[torch.nn.Parameter, Tensor]) -> None:
    """Deprecated: `grad *= free` per parameter. Use `WSNMaskBackbone.clip_grad_by_mask_`."""
    _warn_deprecated("freeze_used_(free)", "backbone.clip_grad_by_mask_(*cumulative_mask(backbone))")
    for parameter, mask in free.items():
        if parameter.grad is not None:
            parameter.grad.mul_(mask)


def _warn_deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"clarena: clarena.algorithms.wsn.{old} is deprecated and will be removed in the next release; use {new}.",
        DeprecationWarning,
        stacklevel=3,
    )
