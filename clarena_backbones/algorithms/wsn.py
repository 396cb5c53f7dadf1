"""WSN's training-step pieces (Kang et al., 2022), as CLArena's `clarena/cl_algorithms/wsn.py` runs them.

A task learns scores that pick the top `mask_percentage` of every layer's weights (its
subnetwork) and trains those weights, except the ones an earlier task picked: they are frozen.
"""

import torch
from torch import Tensor, nn

from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone
from clarena_backbones.ops import unpack_mask


def masked_parameters(backbone: WSNMaskBackbone) -> dict[tuple[str, str], nn.Parameter]:
    """The parameters WSN masks, keyed ('weight' | 'bias', layer name)."""
    parameters = {}
    for name, layer in backbone.named_weighted_layers():
        parameters["weight", name] = layer.weight
        if layer.bias is not None:
            parameters["bias", name] = layer.bias
    return parameters


@torch.no_grad()
def free_parameters(backbone: WSNMaskBackbone) -> dict[nn.Parameter, Tensor]:
    """1 - M_{t-1} for each masked parameter: 0 where a stored task's subnetwork uses it."""
    free = {}
    for (kind, name), parameter in masked_parameters(backbone).items():
        used = torch.zeros_like(parameter)
        for weight_mask, bias_mask in backbone.masks.values():
            packed = weight_mask[name] if kind == "weight" else bias_mask.get(name)
            if packed is not None:
                used = torch.maximum(used, unpack_mask(packed.to(parameter.device), parameter.shape, parameter.dtype))
        free[parameter] = 1 - used
    return free


@torch.no_grad()
def freeze_used_(free: dict[nn.Parameter, Tensor]) -> None:
    """grad *= 1 - M_{t-1}: what earlier tasks use does not move (parameters without grad skipped)."""
    for parameter, mask in free.items():
        if parameter.grad is not None:
            parameter.grad.mul_(mask)
