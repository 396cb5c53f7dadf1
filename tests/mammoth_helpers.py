"""Shared helpers of the Mammoth tests: the stand-in on `sys.path`, synthetic tasks, Mammoth's loop."""

import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import torch
import torch.nn.functional as F

STAND_IN = Path(__file__).parent / "mammoth_stand_in"
REPOSITORY = Path(__file__).parent.parent
# modules bound to one import of the stand-in (the models subclass its ContinualModel), the
# models under their real and their `clarena.*` names
_MODEL_MODULES = ("mammoth.task_il_model", "mammoth.hat_model", "mammoth.wsn_model")
BOUND_MODULES = (
    "backbone",
    "models",
    "models.utils",
    "models.utils.continual_model",
    *(f"{package}.{module}" for package in ("clarena", "clarena_backbones") for module in _MODEL_MODULES),
)


def run_python(code: str, *paths: Path) -> str:
    """Run `code` in a fresh interpreter with the repository and `paths` on sys.path; its stdout.

    The interpreter first imports the import hook, as an installed `clarena_backbones.pth` makes
    every interpreter do, so the `clarena.*` names resolve from a source checkout too.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (REPOSITORY, *paths))}
    code = "import _clarena_backbones_hook\n" + code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


class SyntheticTasks:
    """Mammoth-style class-incremental data: `N_TASKS` tasks of 2 Gaussian-cluster classes, 16 features."""

    N_CLASSES_PER_TASK = 2
    N_TASKS = 3
    N_CLASSES = N_CLASSES_PER_TASK * N_TASKS
    SETTING = "class-il"

    def __init__(self, per_class: int = 48, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        centres = 2.5 * torch.randn(self.N_CLASSES, 16, generator=generator)
        labels = torch.arange(self.N_CLASSES).repeat_interleave(per_class)
        self.x = centres[labels] + torch.randn(len(labels), 16, generator=generator)
        self.y = labels
        self.train_loader: list = []

    def get_offsets(self, task: int) -> tuple[int, int]:
        return task * self.N_CLASSES_PER_TASK, (task + 1) * self.N_CLASSES_PER_TASK

    def task_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.get_offsets(task)
        keep = (self.y >= start) & (self.y < end)
        return self.x[keep], self.y[keep]


def model_args(**overrides) -> Namespace:
    values = {"lr": 0.05, "optim_wd": 0.0, "hat_reg": 0.1, "hat_clamp": 50.0}
    values.update(overrides)
    return Namespace(**values)


def learn_task(model, data: SyntheticTasks, task: int, epochs: int = 3, batch_size: int = 16) -> None:
    """One task as Mammoth's training loop runs it: meta_begin_task, meta_observe per batch, meta_end_task."""
    x, y = data.task_data(task)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(task))
    data.train_loader = [(x[i], y[i]) for i in order.split(batch_size)]
    model.meta_begin_task(data)
    model.net.train()
    for epoch in range(epochs):
        for inputs, labels in data.train_loader:
            model.meta_observe(inputs, labels, inputs, epoch=epoch)
    model.meta_end_task(data)


@torch.no_grad()
def task_il_logits(model, data: SyntheticTasks, task: int) -> torch.Tensor:
    """`model(x, task)` on the task's data, in eval mode, as Mammoth evaluates task-aware models."""
    model.net.eval()
    logits = model(data.task_data(task)[0], task)
    model.net.train()
    return logits


def task_il_accuracy(model, data: SyntheticTasks, task: int) -> float:
    labels = data.task_data(task)[1]
    return (task_il_logits(model, data, task).argmax(1) == labels).float().mean().item()


def cross_entropy(out, labels):
    return F.cross_entropy(out, labels)
