"""`WSNAdapter`: a WSN-masked backbone as a Mammoth backbone."""

from typing import Any

from torch import Tensor

from clarena_backbones.backbones.stored_masks import StoredMasks
from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone
from clarena_backbones.mammoth.adapter import MammothAdapter, ReturnType
from clarena_backbones.ops.checks import check_fraction


class WSNAdapter(MammothAdapter):
    """A `WSNMaskBackbone` with Mammoth's interface; each task keeps `mask_percentage` of every layer.

    A plain `forward` applies the subnetwork of `task_id` (default: the backbone's current task):
    its stored mask once `store_mask` has run, before that the top scores of the current task.
    """

    backbone: WSNMaskBackbone

    def __init__(self, backbone: WSNMaskBackbone, num_classes: int, mask_percentage: float) -> None:
        if not isinstance(backbone, WSNMaskBackbone):
            raise TypeError(f"`backbone` must be a WSNMaskBackbone; got {type(backbone).__name__}.")
        check_fraction("mask_percentage", mask_percentage)
        super().__init__(backbone, num_classes)
        self.mask_percentage = float(mask_percentage)

    def train_forward(self, x: Tensor, returnt: ReturnType = "out") -> Any:
        """The result for `returnt` through the subnetwork of the current scores (gradient reaches them)."""
        feature, _, _, activations = self.backbone(x, "train", self.mask_percentage)
        return self.outputs(feature, activations, returnt)

    def store_mask(self, task_id: int) -> None:
        """Keep the current task's subnetwork (1 bit per parameter) for testing task `task_id`."""
        self.backbone.store_mask(task_id, self.mask_percentage)

    def backbone_forward(self, x: Tensor, task_id: int | None) -> tuple[Tensor, dict[str, Tensor]]:
        if task_id is None:
            task_id = getattr(self.backbone, "task_id", None)
        if task_id in self.backbone.masks:
            feature, _, _, activations = self.backbone(x, "test", self.mask_percentage, test_mask=task_id)
        else:
            feature, _, _, activations = self.backbone(x, "validation", self.mask_percentage)
        return feature, activations

    def _apply_to_stored_masks(self, fn: Any) -> None:
        # packed uint8 masks: a dtype conversion leaves them alone, a device move moves them
        self.backbone.masks = StoredMasks(
            (
                task_id,
                (
                    {name: fn(mask) for name, mask in weight_mask.items()},
                    {name: None if mask is None else fn(mask) for name, mask in bias_mask.items()},
                ),
            )
            for task_id, (weight_mask, bias_mask) in self.backbone.masks.items()
        )
