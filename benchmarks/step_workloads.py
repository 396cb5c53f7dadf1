"""One training step, and one test-stage forward, of the masked backbones beside the plain ones.

* `train_step <arch> HAT s=<s>`: zero_grad, forward, cross-entropy on a linear head, backward,
  the algorithm's gradient adjustment, SGD step (over backbone and head, as CLArena's
  optimiser), for HATMaskMLP / WSNMaskMLP 784-256-100-64 at batch 128 and HATMaskResNet18 /
  WSNMaskResNet18 on 3x32x32 at batch 64, each on the reference and the native path, beside
  the plain baseline of the same size (CLMLP, CLResNet18 without BatchNorm). HAT's gate runs at
  the one annealed `s` of a mid-epoch batch, named in the group: a whole epoch, from
  `s = 1/s_max` to `s_max`, is `epoch_workloads`.
* `test_forward <arch>`: the test-stage forward with stored masks of HATMaskMLP and WSNMaskMLP
  at batch 128 on both paths, and CLMLP's forward for scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clarena_backbones.algorithms import hat
from clarena_backbones.backbones.hat_mask_backbone import anneal_scale
from common import CLAMP_THRESHOLD, DTYPE, KEEP, LEARNING_RATE, NUM_CLASSES, S_MAX, Arch, Workload, batch
from common import build_backbone, hat_second_task, step_label, wsn_second_task

# PermutedMNIST: 421 batches of 128 per epoch; Split CIFAR-100: 35 batches of 64 (CLArena's
# example experiment configs).
ARCHS = {
    "mlp": Arch("mlp 784-256-100-64 b128", (784,), 128, 421),
    "resnet18": Arch("resnet18 3x32x32 b64", (3, 32, 32), 64, 35),
}
BATCH_IDX = 17  # a mid-epoch batch

# (backbone class name, impl) pairs of the step groups; the plain baselines run once.
STEP_VARIANTS = {
    "mlp": [("CLMLP", "plain"), ("HATMaskMLP", "reference"), ("HATMaskMLP", "native"),
            ("WSNMaskMLP", "reference"), ("WSNMaskMLP", "native")],
    "resnet18": [("CLResNet18", "plain"), ("HATMaskResNet18", "reference"), ("HATMaskResNet18", "native"),
                 ("WSNMaskResNet18", "reference"), ("WSNMaskResNet18", "native")],
}  # fmt: skip
TEST_VARIANTS = [("CLMLP", "plain"), ("HATMaskMLP", "reference"), ("HATMaskMLP", "native"),
                 ("WSNMaskMLP", "reference"), ("WSNMaskMLP", "native")]  # fmt: skip


def step_scale(arch: Arch) -> float:
    """HAT's gate scale at BATCH_IDX of an epoch of `arch`."""
    return anneal_scale(S_MAX, BATCH_IDX, arch.num_batches)


def group_train_step(arch: str) -> str:
    return f"train_step {ARCHS[arch].label} HAT s={step_scale(ARCHS[arch]):.3g}"


def train_step(arch_name: str, backbone_name: str, impl: str) -> Workload:
    """One step; the adjustment is the demo's:

    * plain: none.
    * HAT: task 2 with a binary cumulative mask, train-stage forward at BATCH_IDX, then
      `clarena.algorithms.hat.adjust_gradients` (`clip_grad_by_measure_(cumulative, 'min',
      'hat')` and the task-embedding compensation). No sparsity regulariser.
    * WSN: train-stage forward (mask_percentage 0.7) on fresh scores after task 1's mask is
      stored, then `grad *= 1 - M_1` (`backbone.clip_grad_by_mask_`).
    """
    arch = ARCHS[arch_name]
    backbone = build_backbone(backbone_name)
    head = nn.Linear(backbone.output_dim, NUM_CLASSES).to(DTYPE)
    x, y = batch(arch)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=LEARNING_RATE)
    info: dict[str, Any] = {"backbone": backbone_name, "batch": arch.batch}

    if backbone_name.startswith("HAT"):
        cumulative = hat_second_task(backbone)
        info["s"] = step_scale(arch)

        def forward() -> torch.Tensor:
            return backbone(x, "train", s_max=S_MAX, batch_idx=BATCH_IDX, num_batches=arch.num_batches)[0]

        def adjust() -> None:
            hat.adjust_gradients(backbone, cumulative, S_MAX, CLAMP_THRESHOLD, BATCH_IDX, arch.num_batches)

    elif backbone_name.startswith("WSN"):
        cumulative = wsn_second_task(backbone)

        def forward() -> torch.Tensor:
            return backbone(x, "train", mask_percentage=KEEP)[0]

        def adjust() -> None:
            backbone.clip_grad_by_mask_(*cumulative)

    else:
        def forward() -> torch.Tensor:
            return backbone(x, stage="train")[0]

        def adjust() -> None:
            pass

    def fn() -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(forward()), y)
        loss.backward()
        adjust()
        optimizer.step()

    info["backbone_parameters"] = sum(p.numel() for p in backbone.parameters())
    return Workload(fn, impl, f"{backbone_name} {arch.label}", info=info)


def group_test_forward(arch: str = "mlp") -> str:
    return f"test_forward {ARCHS[arch].label}"


def stored_mask_forward(backbone_name: str, impl: str) -> Workload:
    """Test-stage forward with stored masks, in inference mode (as Lightning's test loop).

    * HAT: the stored binary mask of task 1 (`store_mask` after an N(0,1) embedding init).
    * WSN: `test_mask` is CLArena's tuple of float mask dicts, made by the gate at 0.7 and passed
      every batch as the same objects. The backbone reuses masked weights across test batches;
      CLArena recomputes `W * mask` every batch, so the reference drops that cache before each
      timed call (untimed setup), which is the reference's CLArena behaviour.
    """
    arch = ARCHS["mlp"]
    backbone = build_backbone(backbone_name).eval()
    x, _ = batch(arch)
    setup = None
    info: dict[str, Any] = {"backbone": backbone_name, "batch": arch.batch}

    if backbone_name.startswith("HAT"):
        backbone.setup_task_id(1)
        backbone.initialize_task_embedding("N01")
        backbone.store_mask()

        def forward() -> torch.Tensor:
            return backbone(x, "test", test_task_id=1)[0]

    elif backbone_name.startswith("WSN"):
        backbone.setup_task_id(1)
        backbone.initialize_parameter_score("default")
        with torch.no_grad():
            weight_mask, bias_mask = backbone.get_mask("train", KEEP)
        test_mask = (
            {name: mask.detach().clone() for name, mask in weight_mask.items()},
            {name: None if mask is None else mask.detach().clone() for name, mask in bias_mask.items()},
        )
        if impl == "reference":
            cache = getattr(backbone, "_test_cache", None)
            info["reference_cache_dropped"] = isinstance(cache, dict)
            if isinstance(cache, dict):
                setup = cache.clear

        def forward() -> torch.Tensor:
            return backbone(x, "test", mask_percentage=KEEP, test_mask=test_mask)[0]

    else:
        def forward() -> torch.Tensor:
            return backbone(x, stage="test")[0]

    def fn() -> torch.Tensor:
        with torch.inference_mode():
            return forward()

    return Workload(fn, impl, f"{backbone_name} {arch.label}", setup=setup, info=info)


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for arch, variants in STEP_VARIANTS.items():
        for name, impl in variants:
            table[(group_train_step(arch), step_label(name, impl))] = lambda a=arch, n=name, i=impl: train_step(a, n, i)
    for name, impl in TEST_VARIANTS:
        table[(group_test_forward(), step_label(name, impl))] = lambda n=name, i=impl: stored_mask_forward(n, i)
    return table
