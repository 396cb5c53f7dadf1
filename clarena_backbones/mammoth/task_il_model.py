"""`MaskedTaskILModel`: what the HAT and WSN Mammoth models share.

Imported only when registering with Mammoth: it subclasses Mammoth's `ContinualModel`.
"""

from argparse import Namespace

import torch
from models.utils.continual_model import ContinualModel  # Mammoth's
from torch import Tensor, nn

from clarena_backbones.mammoth.adapter import MammothAdapter


class MaskedTaskILModel(ContinualModel):
    """A task-aware model on a masked backbone: evaluated as `model(x, task_id)` with that task's mask.

    Each task trains on its own classes' logits only, so the classifier rows of earlier tasks get
    no gradient; logits outside the task are -inf at test time, as Mammoth's task-IL models give.
    """

    COMPATIBILITY = ["task-il"]
    ADAPTER: type[MammothAdapter]
    BACKBONES: str  # the registered backbones this model drives, for error messages

    def __init__(
        self, backbone: nn.Module, loss: nn.Module, args: Namespace, transform: nn.Module, dataset=None
    ) -> None:
        if not isinstance(backbone, self.ADAPTER):
            raise ValueError(
                f"--model {self.NAME} needs --backbone {self.BACKBONES}; got a {type(backbone).__name__}."
            )
        weight_decay = getattr(args, "optim_wd", 0.0)
        if weight_decay:
            raise ValueError(
                f"--optim_wd must be 0 for --model {self.NAME} (weight decay would move the weights "
                f"earlier tasks rely on); got {weight_decay}."
            )
        super().__init__(backbone, loss, args, transform, dataset)

    def forward(self, x: Tensor, task_label: int | None = None) -> Tensor:
        """Logits through the mask of `task_label` (default: the current task), other tasks' at -inf."""
        out = self.net(x, task_id=task_label)
        if task_label is None:
            return out
        start, end = self.get_offsets(task_label)
        outside = torch.ones(out.size(1), dtype=torch.bool, device=out.device)
        outside[start:end] = False
        return out.masked_fill(outside, float("-inf"))

    def task_loss(self, out: Tensor, labels: Tensor) -> Tensor:
        """The loss over the current task's classes only."""
        start, end = self.n_past_classes, self.n_seen_classes
        return self.loss(out[:, start:end], labels - start)

    def batch_position(self) -> tuple[int, int]:
        """`(batch_idx from 1, num_batches)` of the current step within its epoch."""
        num_batches = len(self.dataset.train_loader)
        return self.epoch_iteration % num_batches + 1, num_batches
