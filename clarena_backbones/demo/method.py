"""What every demo method shares: a backbone, one linear head per task, and the training step frame.

A subclass builds its backbone and fills three hooks: `loss` (forward in the training stage plus
any regulariser), `adjust_gradients` (what protects earlier tasks, between backward and the
optimizer step) and `features` (the test-stage forward for a given task). `begin_task` and
`end_task` bracket each task, as Lightning's on_train_start/on_train_end do in CLArena.
"""

import torch
import torch.nn.functional as F
from torch import nn

from clarena_backbones.demo.config import DemoConfig


class Method:
    name = ""
    description = ""

    def __init__(self, input_dim: int, config: DemoConfig):
        self.config = config
        self.backbone = self.build_backbone(input_dim, list(config.hidden[:-1]), config.hidden[-1])
        self.heads = nn.ModuleList()
        self.optimizer: torch.optim.Optimizer | None = None

    def build_backbone(self, input_dim: int, hidden_dims: list[int], output_dim: int) -> nn.Module:
        raise NotImplementedError

    def begin_task(self, task_id: int, num_classes: int) -> None:
        """Set the task up: its head, the method's per-task state, and a fresh optimizer."""
        self.backbone.setup_task_id(task_id)
        self.heads.append(nn.Linear(self.config.hidden[-1], num_classes))
        self.prepare_task(task_id)
        self.backbone.train()
        # A new optimizer per task, as CLArena builds one per task. Only the current head trains:
        # earlier heads stay exactly as their task left them.
        parameters = [*self.backbone.parameters(), *self.heads[-1].parameters()]
        self.optimizer = _make_optimizer(self.config, parameters)

    def prepare_task(self, task_id: int) -> None:
        """Per-task state before training (re-initialised embeddings or scores, cumulative masks)."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int, num_batches: int) -> float:
        """One optimisation step; `batch_idx` counts from 1 within the epoch."""
        self.optimizer.zero_grad()
        loss = self.loss(x, y, batch_idx, num_batches)
        loss.backward()
        # Protection acts on the gradients before the optimizer sees them, as in CLArena's
        # clarena/cl_algorithms/hat.py and wsn.py.
        self.adjust_gradients(batch_idx, num_batches)
        self.optimizer.step()
        return loss.item()

    def loss(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int, num_batches: int) -> torch.Tensor:
        raise NotImplementedError

    def adjust_gradients(self, batch_idx: int, num_batches: int) -> None:
        """Change the gradients in place before the step; no-op by default."""

    def end_task(self, task_id: int) -> None:
        """Store what the task needs at test time; no-op by default."""

    def features(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, task_id: int) -> float:
        """Test accuracy on task `task_id`, through its head (and, for masked backbones, its mask)."""
        self.backbone.eval()
        predictions = self.heads[task_id - 1](self.features(x, task_id)).argmax(dim=1)
        self.backbone.train()
        return (predictions == y).float().mean().item()

    def classification_loss(self, feature: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the current task's head."""
        return F.cross_entropy(self.heads[-1](feature), y)


def _make_optimizer(config: DemoConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    # No weight decay and no momentum: either would move weights whose gradient HAT or WSN zeroed,
    # and those weights would then forget. Adam with fresh state leaves a weight whose gradient is
    # zero at every step of the task exactly where it is.
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=0.0, weight_decay=0.0)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; choose sgd or adam")
