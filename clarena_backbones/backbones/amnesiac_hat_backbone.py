"""`AmnesiacHATBackbone`: HAT plus backup backbones trained alongside for unlearning compensation."""

from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones import state_hooks
from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone
from clarena_backbones.ops import reference


# (feature, mask, activations), and with backups (feature, backup_features, mask, activations)
HATOutput = tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]
BackupOutput = tuple[Tensor, dict[int, Tensor], dict[str, Tensor], dict[str, Tensor]]


def route(backup_mask: Tensor, backup_output: Tensor, main_output: Tensor) -> Tensor:
    """AmnesiacHAT's routing: backup output on the units of the backed-up task, main output elsewhere.

    `M * backup + (1 - M) * main` with the binary unit mask `M` (C,) broadcast over dim 1; values
    below the dtype's smallest normal, and such gradients, become 0 (as in every HAT masking op).
    """
    return reference.route(backup_mask.to(main_output), backup_output, main_output)


class AmnesiacHATBackbone(HATMaskBackbone):
    """HAT backbone with one backup backbone per unlearnable task.

    In the 'train_with_backup' stage, each backup task `b` runs a parallel stream through the
    network in which units that belong to `b` (its stored mask) take the backup backbone's
    output and the other units the main backbone's; the streams' features train the backups.
    """

    STAGES = HATMaskBackbone.STAGES + ("train_with_backup",)
    # the plain architecture of the backups (MLP or ResNetBase); set by subclasses
    original_backbone_class: type

    def __init__(self, output_dim: int | None, gate: str, disable_unlearning: bool = False, **kwargs: Any) -> None:
        """`disable_unlearning`: build no backups (the plain CL pipeline's reference runs)."""
        super().__init__(output_dim=output_dim, gate=gate, **kwargs)
        self.disable_unlearning: bool = disable_unlearning
        if not disable_unlearning:
            self.backup_backbones: nn.ModuleDict
            self.backup_task_ids: list[int]
            self.backup_state_dicts: dict[tuple[int, int], dict[str, Tensor]] = {}

    def instantiate_backup_backbones(self, backup_task_ids: list[int]) -> None:
        """Build a fresh backup backbone for each of `backup_task_ids` (replacing earlier ones)."""
        self.backup_task_ids = list(backup_task_ids)
        self.backup_backbones = nn.ModuleDict(
            {f"{task_id}": self.original_backbone_class(**self.backup_backbone_kwargs) for task_id in backup_task_ids}
        )

    def _active_backup_task_ids(self) -> list[int]:
        """Backup task IDs of the 'train_with_backup' stage (none before instantiation)."""
        if self.disable_unlearning:
            raise ValueError("The 'train_with_backup' stage needs unlearning enabled (`disable_unlearning=False`).")
        return getattr(self, "backup_task_ids", [])

    def forward(
        self,
        input: Tensor,
        stage: str,
        s_max: float | None = None,
        batch_idx: int | None = None,
        num_batches: int | None = None,
        test_task_id: int | None = None,
    ) -> HATOutput | BackupOutput:
        """`(feature, mask, activations)`, as HAT; 'train_with_backup': `(feature, backup_features, mask, activations)`.

        `backup_features` maps each backup task ID to the feature of its stream.
        """
        if stage != "train_with_backup":
            return super().forward(input, stage, s_max, batch_idx, num_batches, test_task_id)
        backup_task_ids = self._active_backup_task_ids()
        mask = self.get_mask("train", s_max, batch_idx, num_batches)
        feature, backup_features, activations = self._forward_with_backups(input, mask, backup_task_ids)
        return feature, backup_features, mask, activations

    def _forward_with_backups(
        self, input: Tensor, mask: dict[str, Tensor], backup_task_ids: list[int]
    ) -> tuple[Tensor, dict[int, Tensor], dict[str, Tensor]]:
        """Main stream (training mask, live BN) and one backup stream per task; by subclasses."""
        raise NotImplementedError

    def _per_task_module_factories(self) -> state_hooks.ModuleFactories:
        factories = super()._per_task_module_factories()
        if not self.disable_unlearning:
            factories["backup_backbones"] = self._new_backup_backbone
        return factories

    def _new_backup_backbone(self, task_key: str) -> nn.Module:
        """A backup backbone for a checkpoint being loaded (registered as a backup task)."""
        task_ids = self.__dict__.setdefault("backup_task_ids", [])
        if int(task_key) not in task_ids:
            task_ids.append(int(task_key))
        return self.original_backbone_class(**self.backup_backbone_kwargs)
