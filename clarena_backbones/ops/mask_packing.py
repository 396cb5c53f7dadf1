"""Stored masks at one bit per parameter (32 times smaller than CLArena's float masks)."""

import torch

from clarena_backbones.ops import checks

_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a mask (nonzero = kept) into a flat uint8 tensor of `ceil(numel / 8)` bytes.

    Element k of the flattened mask is bit `k % 8` (least significant first) of byte `k // 8`.
    Unpack with `unpack_mask(packed, mask.shape)`.
    """
    checks.check_tensor("mask", mask)
    bits = (mask.reshape(-1) != 0).to(torch.uint8)
    bits = torch.nn.functional.pad(bits, (0, (-bits.numel()) % 8)).view(-1, 8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=mask.device)
    return (bits * weights).sum(dim=1, dtype=torch.uint8)


def unpack_mask(packed: torch.Tensor, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `pack_mask`: a 0/1 mask of `shape` and `dtype` on `packed`'s device."""
    checks.check_tensor("packed", packed)
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise TypeError(f"clarena: `packed` must be a 1-D uint8 tensor from pack_mask, got {packed.dtype} {tuple(packed.shape)}")
    size = torch.Size(shape)
    if packed.numel() != (size.numel() + 7) // 8:
        raise ValueError(f"clarena: `packed` holds {packed.numel()} bytes; a mask of shape {tuple(size)} needs {(size.numel() + 7) // 8}")
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed.view(-1, 1) & weights) != 0
    return bits.view(-1)[: size.numel()].view(size).to(dtype)
