"""The continual-learning loop: train the tasks one after another, test every task seen so far."""

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

import clarena_backbones.ops
from clarena_backbones.demo.config import DemoConfig
from clarena_backbones.demo.data import Task
from clarena_backbones.demo.finetune import Finetune
from clarena_backbones.demo.hat import HAT
from clarena_backbones.demo.method import Method
from clarena_backbones.demo.metrics import AccuracyMatrix
from clarena_backbones.demo.wsn import WSN

METHODS: dict[str, type[Method]] = {method.name: method for method in (Finetune, HAT, WSN)}


@dataclass(frozen=True)
class Run:
    acc_matrix: AccuracyMatrix
    seconds: float


def run_method(
    method_name: str, tasks: list[Task], config: DemoConfig, compare_reference: bool = True, progress: bool = True
) -> tuple[Run, Run | None]:
    """Train `method_name` on `tasks` in order; return its native run and, if compared, its reference run.

    The reference run repeats the same training (same seed, same batches) with every clarena op on
    its pure-PyTorch reference. The two runs alternate task by task, so that on a shared machine a
    burst of load from elsewhere slows both paths rather than only the one that happened to run then.
    """
    paths = [_Path(method_name, tasks, config, reference=False)]
    if compare_reference:
        paths.append(_Path(method_name, tasks, config, reference=True))
    for t in range(1, len(tasks) + 1):
        for path in paths:
            path.learn_task(t, progress)
    native, *reference = (Run(path.matrix, path.seconds) for path in paths)
    return native, (reference[0] if reference else None)


def warm_up(method_name: str, tasks: list[Task], config: DemoConfig, compare_reference: bool) -> None:
    """One untimed epoch of the first task, so one-time costs (lazy imports and initialisation in
    torch, first-call allocations) are not charged to whichever path happens to be timed first."""
    run_method(method_name, tasks[:1], replace(config, epochs=1), compare_reference, progress=False)


class _Path:
    """One method trained on one path (native or reference), a task at a time, with its own clock
    and its own random state, so the alternation with the other path changes nothing it computes."""

    def __init__(self, method_name: str, tasks: list[Task], config: DemoConfig, reference: bool):
        self.name, self.tasks, self.config, self.reference = method_name, tasks, config, reference
        self.matrix: AccuracyMatrix = [[None] * len(tasks) for _ in tasks]
        self.seconds = 0.0
        self.batch_order = torch.Generator().manual_seed(config.seed)
        _seed_everything(config.seed)
        self.rng_state = torch.get_rng_state()
        with self._timed():
            self.method = METHODS[method_name](tasks[0].x_train.shape[1], config)

    @contextlib.contextmanager
    def _timed(self):
        torch.set_rng_state(self.rng_state)
        start = time.perf_counter()
        with clarena_backbones.ops.use_reference() if self.reference else contextlib.nullcontext():
            yield
        self.seconds += time.perf_counter() - start
        self.rng_state = torch.get_rng_state()

    def learn_task(self, t: int, progress: bool) -> None:
        """Train task t, then test every task seen so far (row t of the accuracy matrix)."""
        task = self.tasks[t - 1]
        label = f"{self.name} [{'reference' if self.reference else 'native'}] task {t}/{len(self.tasks)}"
        with self._timed():
            self.method.begin_task(t, task.num_classes)
            _train_task(self.method, task, self.config, self.batch_order, label, progress)
            self.method.end_task(t)
            for j, seen in enumerate(self.tasks[:t], start=1):
                self.matrix[t - 1][j - 1] = self.method.accuracy(seen.x_test, seen.y_test, j)


def _train_task(method: Method, task: Task, config: DemoConfig, generator, label: str, progress: bool) -> None:
    num_batches = math.ceil(len(task.y_train) / config.batch_size)
    with tqdm(
        total=config.epochs * num_batches, desc=label, unit="step", file=sys.stderr, leave=False, disable=not progress
    ) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(task.y_train), generator=generator)
            for batch in range(num_batches):
                index = order[batch * config.batch_size : (batch + 1) * config.batch_size]
                loss = method.train_step(task.x_train[index], task.y_train[index], batch + 1, num_batches)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                bar.update()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
