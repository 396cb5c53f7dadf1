"""`HATAdapter`: a HAT-masked backbone as a Mammoth backbone."""

from typing import Any

from torch import Tensor

from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone
from clarena_backbones.backbones.stored_masks import StoredMasks
from clarena_backbones.mammoth.adapter import MammothAdapter, ReturnType, check_positive


class HATAdapter(MammothAdapter):
    """A `HATMaskBackbone` with Mammoth's interface; `s_max` is the gate's final scale.

    A plain `forward` applies the mask of `task_id` (default: the backbone's current task): its
    stored binary mask once `store_mask` has run, before that the current task embeddings gated
    at `s_max`. Training goes through `train_forward`, whose gate is annealed within the epoch.
    """

    backbone: HATMaskBackbone

    def __init__(self, backbone: HATMaskBackbone, num_classes: int, s_max: float) -> None:
        if not isinstance(backbone, HATMaskBackbone):
            raise TypeError(f"`backbone` must be a HATMaskBackbone; got {type(backbone).__name__}.")
        check_positive("s_max", s_max, float)
        super().__init__(backbone, num_classes)
        self.s_max = float(s_max)

    def train_forward(
        self, x: Tensor, batch_idx: int, num_batches: int, returnt: ReturnType = "out"
    ) -> tuple[Any, dict[str, Tensor]]:
        """`(result for returnt, unit mask)` with the gate annealed to batch `batch_idx` (from 1) of `num_batches`."""
        feature, mask, activations = self.backbone(x, "train", self.s_max, batch_idx, num_batches)
        return self.outputs(feature, activations, returnt), mask

    def backbone_forward(self, x: Tensor, task_id: int | None) -> tuple[Tensor, dict[str, Tensor]]:
        if task_id is None:
            task_id = getattr(self.backbone, "task_id", None)
        if task_id in self.backbone.masks:
            feature, _, activations = self.backbone(x, "test", test_task_id=task_id)
        else:
            feature, _, activations = self.backbone(x, "validation", s_max=self.s_max)
        return feature, activations

    def _apply_to_stored_masks(self, fn: Any) -> None:
        # Nested HAT blocks hold the same mask tensors as the root: convert each tensor once.
        converted: dict[int, Tensor] = {}
        for module in self.backbone.modules():
            if isinstance(module, HATMaskBackbone):
                module.masks = StoredMasks(
                    (task_id, {name: _once(converted, fn, mask) for name, mask in task_masks.items()})
                    for task_id, task_masks in module.masks.items()
                )


def _once(converted: dict[int, Tensor], fn: Any, tensor: Tensor) -> Tensor:
    key = id(tensor)
    if key not in converted:
        converted[key] = fn(tensor)
    return converted[key]
