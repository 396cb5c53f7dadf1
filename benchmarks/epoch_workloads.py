"""Whole epochs, trained as users train: N batches with `batch_idx` 1..N, so that HAT's gate scale
is annealed from 1/s_max to s_max (400) over the epoch, on a fixed set of N(0, 1) batches (seed 0).

Groups `epoch <algorithm> <arch>`; rows (`impl`):

* `plain`: the CL backbone of the same size (CLMLP, CLResNet18 without BatchNorm): forward,
  cross-entropy on a linear head, backward, SGD step;
* `native`: this package's masked backbone with the algorithm's whole step, the way the demo and
  Mammoth's models run it through the backbone's methods:
  - HAT: forward (annealed), cross-entropy + CLArena's mask-sparsity regulariser (factor 0.75),
    backward, `clip_grad_by_measure_(cumulative, 'min', 'hat')`, the task-embedding gradient
    compensation, SGD step;
  - AdaHAT: the same with the rate `r / (M_sum + r)`, `r = 0.1 / (0.1 + the layer's sparsity)`;
  - WSN: forward with the warm-started gate (keep 0.7), cross-entropy, backward,
    `grad *= 1 - M_1`, SGD step over weights and scores alike (the scores move every batch);
* `clarena` and `accelerated` (`clarena_workloads`, with CLArena 1.1.0 installed): CLArena's
  own `training_step` over CLArena's own backbone, and over this package's backbone with
  `accelerate_clarena()`.

All runs are task 2: HAT's cumulative mask (and AdaHAT's summative one) is binary with about
half the units taken; WSN's task-1 subnetwork is frozen. Group `epoch fwd_bwd_sgd <arch> ftz`:
HATMaskMLP's forward, cross-entropy, backward and SGD only (no adjustment), this package
against CLArena's own backbone, with denormals flushed to zero during the timed call so that
both run the same numerics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clarena_backbones.algorithms import hat
from common import CLAMP_THRESHOLD, DTYPE, KEEP, LEARNING_RATE, MASK_SPARSITY_REG_FACTOR, NUM_CLASSES, S_MAX
from common import Arch, Workload, batch, build_backbone, hat_second_task, wsn_second_task

EPOCH_ARCHS = {
    "mlp": Arch("mlp 784-256-100-64 b128", (784,), 128, 40),
    "resnet18": Arch("resnet18 3x32x32 b32", (3, 32, 32), 32, 8),
}
# (algorithm, arch) of the epoch groups, and the backbone class each algorithm trains
EPOCH_GROUPS = [("HAT", "mlp"), ("HAT", "resnet18"), ("AdaHAT", "mlp"), ("WSN", "mlp"), ("WSN", "resnet18")]
BACKBONES = {
    ("plain", "mlp"): "CLMLP", ("plain", "resnet18"): "CLResNet18",
    ("HAT", "mlp"): "HATMaskMLP", ("HAT", "resnet18"): "HATMaskResNet18",
    ("AdaHAT", "mlp"): "HATMaskMLP", ("WSN", "mlp"): "WSNMaskMLP", ("WSN", "resnet18"): "WSNMaskResNet18",
}  # fmt: skip
ADJUSTMENT_INTENSITY = 0.1  # AdaHAT's adjustment_intensity
EPSILON = 0.1  # AdaHAT's epsilon

# forward + backward + SGD of HATMaskMLP in flush-to-zero mode: the small and large MLPs
FTZ_ARCHS = {
    "small": (Arch("mlp 784-256-100-64 b128", (784,), 128, 40), (784, [256, 100], 64)),
    "large": (Arch("mlp 784-2048-2048-512 b256", (784,), 256, 10), (784, [2048, 2048], 512)),
}

Step = Callable[[tuple[torch.Tensor, torch.Tensor], int], Any]


class FlushDenormalWorkload(Workload):
    """A workload timed with denormals flushed to zero (the process setting restored after)."""

    @contextlib.contextmanager
    def path(self) -> Iterator[None]:
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(False)


def group_epoch(algorithm: str, arch: str) -> str:
    spec = EPOCH_ARCHS[arch]
    return f"epoch {algorithm} {spec.label} x{spec.num_batches}"


def group_ftz(size: str) -> str:
    return f"epoch fwd_bwd_sgd {FTZ_ARCHS[size][0].label} x{FTZ_ARCHS[size][0].num_batches} ftz"


def epoch_batches(arch: Arch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The N batches of an epoch of `arch`, the same for every row (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    return [batch(arch, generator) for _ in range(arch.num_batches)]


def epoch_workload(step: Step, arch: Arch, impl: str, info: dict[str, Any], cls: type[Workload] = Workload) -> Workload:
    """Run `step(batch, batch_idx)` over an epoch of `arch`, batch_idx 1..N."""
    batches = epoch_batches(arch)

    def fn() -> None:
        for batch_idx, data in enumerate(batches, 1):
            step(data, batch_idx)

    info = {"batches": arch.num_batches, "batch": arch.batch, **info}
    return cls(fn, impl, f"{info.get('backbone', '')} {arch.label} x{arch.num_batches}".strip(), info=info)


def sgd_step(backbone: nn.Module, loss_of: Callable[[nn.Module, Any, int], torch.Tensor], adjust) -> Step:
    """zero_grad, `loss_of(head, batch, batch_idx)`, backward, `adjust(batch_idx)`, SGD step."""
    head = nn.Linear(backbone.output_dim, NUM_CLASSES).to(DTYPE)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=LEARNING_RATE)

    def step(data, batch_idx: int) -> None:
        optimizer.zero_grad()
        loss_of(head, data, batch_idx).backward()
        adjust(batch_idx)
        optimizer.step()

    return step


def layer_sparsity(mask: dict[str, torch.Tensor], cumulative: dict[str, torch.Tensor]) -> dict[str, float]:
    """AdaHAT's network sparsity of each layer: the share of its free units this task takes."""
    sparsity = {}
    for name, unit_mask in mask.items():
        free = 1 - cumulative[name]
        available = free.sum()
        sparsity[name] = float((unit_mask * free).sum() / available) if available > 10 else 0.0
    return sparsity


def hat_epoch(algorithm: str, arch_name: str) -> Workload:
    arch = EPOCH_ARCHS[arch_name]
    name = BACKBONES[algorithm, arch_name]
    backbone = build_backbone(name)
    cumulative = hat_second_task(backbone)
    masks: dict[str, torch.Tensor] = {}

    def loss_of(head, data, batch_idx):
        x, y = data
        feature, mask, _ = backbone(x, "train", s_max=S_MAX, batch_idx=batch_idx, num_batches=arch.num_batches)
        masks.update(mask)
        return F.cross_entropy(head(feature), y) + MASK_SPARSITY_REG_FACTOR * hat.mask_sparsity(mask, cumulative)

    def adjust(batch_idx):
        if algorithm == "HAT":
            hat.adjust_gradients(backbone, cumulative, S_MAX, CLAMP_THRESHOLD, batch_idx, arch.num_batches)
            return
        sparsity = layer_sparsity({layer: mask.detach() for layer, mask in masks.items()}, cumulative)
        r = {layer: ADJUSTMENT_INTENSITY / (EPSILON + value) for layer, value in sparsity.items()}
        backbone.clip_grad_by_measure_(cumulative, "min", "adahat", r=r)
        backbone.compensate_task_embedding_gradients(S_MAX, CLAMP_THRESHOLD, batch_idx, arch.num_batches)

    return epoch_workload(sgd_step(backbone, loss_of, adjust), arch, "native", {"backbone": name})


def wsn_epoch(arch_name: str) -> Workload:
    arch = EPOCH_ARCHS[arch_name]
    name = BACKBONES["WSN", arch_name]
    backbone = build_backbone(name)
    cumulative = wsn_second_task(backbone)

    def loss_of(head, data, batch_idx):
        x, y = data
        return F.cross_entropy(head(backbone(x, "train", mask_percentage=KEEP)[0]), y)

    step = sgd_step(backbone, loss_of, lambda batch_idx: backbone.clip_grad_by_mask_(*cumulative))
    return epoch_workload(step, arch, "native", {"backbone": name})


def plain_epoch(arch_name: str) -> Workload:
    arch = EPOCH_ARCHS[arch_name]
    name = BACKBONES["plain", arch_name]
    backbone = build_backbone(name)

    def loss_of(head, data, batch_idx):
        x, y = data
        return F.cross_entropy(head(backbone(x, stage="train")[0]), y)

    return epoch_workload(sgd_step(backbone, loss_of, lambda batch_idx: None), arch, "plain", {"backbone": name})


def hat_forward_backward(backbone: nn.Module, size: str, impl: str) -> Workload:
    """`backbone`'s annealed HAT forward, cross-entropy, backward and SGD step, in flush-to-zero mode."""
    arch = FTZ_ARCHS[size][0]
    backbone.setup_task_id(1)
    backbone.initialize_task_embedding("N01")

    def loss_of(head, data, batch_idx):
        x, y = data
        feature = backbone(x, "train", s_max=S_MAX, batch_idx=batch_idx, num_batches=arch.num_batches)[0]
        return F.cross_entropy(head(feature), y)

    step = sgd_step(backbone, loss_of, lambda batch_idx: None)
    return epoch_workload(step, arch, impl, {"backbone": "HATMaskMLP"}, FlushDenormalWorkload)


def native_forward_backward(size: str) -> Workload:
    return hat_forward_backward(build_backbone("HATMaskMLP", FTZ_ARCHS[size][1]), size, "native")


def epoch(algorithm: str, arch: str) -> Workload:
    """The `native` row of an epoch group."""
    return wsn_epoch(arch) if algorithm == "WSN" else hat_epoch(algorithm, arch)


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for algorithm, arch in EPOCH_GROUPS:
        table[(group_epoch(algorithm, arch), "plain")] = lambda a=arch: plain_epoch(a)
        table[(group_epoch(algorithm, arch), "native")] = lambda g=algorithm, a=arch: epoch(g, a)
    for size in FTZ_ARCHS:
        table[(group_ftz(size), "native")] = lambda s=size: native_forward_backward(s)
    return table
