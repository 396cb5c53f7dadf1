"""CLArena's own HAT `training_step`, with CLArena's per-step methods and accelerated.

Group `clarena_train_step <arch>`: CLArena 1.1.0's `HAT.training_step` (forward, cross-entropy,
mask-sparsity regulariser, backward, `clip_grad_by_adjustment`,
`compensate_task_embedding_gradients`, SGD step) over this package's HATMaskMLP or
HATMaskResNet18, on the second task (a binary cumulative mask of about half the units), at a
mid-epoch batch. `reference` runs CLArena's methods (this package's backbones and ops, native),
`native` runs them accelerated (`clarena.accelerate.accelerated_clarena()` around each call,
outside the timer). Lightning's Trainer is replaced by the three things `training_step` reads
from it (the optimizer, `manual_backward`, the number of batches), so only the step is timed.
The builders raise ImportError without CLArena (the runners then skip the group).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import torch

import workloads as wl

HAT_BACKBONE = {"mlp": "HATMaskMLP", "resnet18": "HATMaskResNet18"}
MASK_SPARSITY_REG_FACTOR = 0.75  # CLArena's hat.yaml


class ClarenaStepWorkload(wl.Workload):
    @contextlib.contextmanager
    def path(self) -> Iterator[None]:
        """CLArena's methods for `reference`, the fused ones for `native`."""
        from clarena.accelerate import accelerated_clarena

        if self.impl == "native":
            with accelerated_clarena():
                yield
        else:
            yield


def group_clarena_train_step(arch: str) -> str:
    return f"clarena_train_step {wl.ARCHS[arch].label}"


def hat_algorithm(arch_name: str):
    """CLArena's HAT over this package's backbone, set up for task 2 and attached to a stand-in Trainer."""
    from clarena.cl_algorithms import HAT
    from clarena.heads import HeadsTIL

    arch = wl.ARCHS[arch_name]
    backbone = wl.build_backbone(HAT_BACKBONE[arch_name])
    algorithm = HAT(
        backbone, HeadsTIL(backbone.output_dim), adjustment_mode="hat", s_max=wl.S_MAX,
        clamp_threshold=wl.CLAMP_THRESHOLD, mask_sparsity_reg_factor=MASK_SPARSITY_REG_FACTOR,
    )  # fmt: skip
    optimizer_factory = functools.partial(torch.optim.SGD, lr=wl.LEARNING_RATE)
    algorithm.setup_task_id(1, wl.NUM_CLASSES, optimizer_factory, None)
    algorithm.setup_task_id(2, wl.NUM_CLASSES, optimizer_factory, None)
    backbone.initialize_task_embedding("N01")
    algorithm.cumulative_mask_for_previous_tasks = {
        name: wl._binary(layer.weight.size(0)) for name, layer in backbone.named_weighted_layers()
    }
    optimizer = optimizer_factory(algorithm.parameters())
    algorithm.optimizers = lambda: optimizer
    algorithm.manual_backward = lambda loss: loss.backward()
    algorithm._trainer = SimpleNamespace(num_training_batches=arch.num_batches)
    return algorithm


def clarena_train_step(arch_name: str, impl: str) -> ClarenaStepWorkload:
    arch = wl.ARCHS[arch_name]
    algorithm = hat_algorithm(arch_name)
    batch = wl._batch(arch)

    def fn() -> None:
        algorithm.training_step(batch, wl.BATCH_IDX)

    info = {"backbone": HAT_BACKBONE[arch_name], "batch": arch.batch, "algorithm": "clarena.cl_algorithms.HAT"}
    return ClarenaStepWorkload(fn, impl, f"HAT.training_step {HAT_BACKBONE[arch_name]} {arch.label}", info=info)


def all_workloads() -> dict[tuple[str, str], Callable[[], wl.Workload]]:
    return {
        (group_clarena_train_step(arch), impl): (lambda a=arch, i=impl: clarena_train_step(a, i))
        for arch in HAT_BACKBONE
        for impl in ("reference", "native")
    }
