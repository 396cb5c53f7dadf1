"""WSN gate workloads beside the one-tensor gate of `workloads.percentile_mask`.

* cold: a gate with no previous threshold, against `clone()` + `sum()` of the scores (a gate
  must write its mask and read the scores at least once more to select);
* warm: `percentile_masks` on scores after one SGD step, warm-started from the threshold of the
  scores before it, against a `clone()`;
* batched: the same over all of WSNMaskResNet18's score tensors at once, against a `clone()`
  of each of them.

The reference is CLArena's gate, `torch.quantile` per tensor. Scores are N(0, 1) (WSN's 'N01'
initialisation); the step moves each by the learning rate times an N(0, 1) gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clarena_backbones import ops
from clarena_backbones.ops.percentile_mask import percentile_masks, percentile_masks_state
from workloads import DTYPE, KEEP, LEARNING_RATE, PERCENTILE_SIZES, Workload, build_backbone

SIZE = "2^23"


def group_gate(kind: str) -> str:
    return f"percentile_mask {kind} n={SIZE}" if kind != "batched" else "percentile_masks WSNMaskResNet18 warm"


def _stepped(scores: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scores after an SGD step, and the gate's state from the step before, as in training: a
    cold gate at the first step, warm ones after (the timed call is the third)."""
    state = percentile_masks_state(len(scores))
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):
        percentile_masks(scores, KEEP, state)
        scores = [score - LEARNING_RATE * torch.randn(score.shape, generator=generator, dtype=DTYPE) for score in scores]
    return scores, state


def _clones(scores: list[torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
    return lambda: [score.clone() for score in scores]


def gate(kind: str, impl: str) -> Workload:
    if kind == "batched":
        backbone = build_backbone("WSNMaskResNet18")
        backbone.initialize_parameter_score("N01")
        layers = backbone.weighted_layer_names
        scores = [backbone.weight_score_t[name].weight.detach() for name in layers]
    else:
        scores = [torch.randn(PERCENTILE_SIZES[SIZE], generator=torch.Generator().manual_seed(0), dtype=DTYPE)]
    shape = f"{len(scores)} tensors, {sum(score.numel() for score in scores)} scores, keep={KEEP}"
    if kind == "cold":
        score = scores[0]
        if impl == "limit":
            def fn() -> torch.Tensor:
                return score.clone().sum()
        else:
            def fn() -> torch.Tensor:
                return ops.percentile_mask(score, KEEP)
        return Workload(fn, impl, shape)
    after, before_state = _stepped(scores)
    state = before_state.clone()
    if impl == "limit":
        return Workload(_clones(after), impl, shape)
    if impl == "reference":
        return Workload(lambda: [ops.percentile_mask(score, KEEP) for score in after], impl, shape)

    def fn() -> list[torch.Tensor]:
        return percentile_masks(after, KEEP, state)

    # every timed call starts from the state of the scores before the step
    return Workload(fn, impl, shape, setup=lambda: state.copy_(before_state))


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    return {
        (group_gate(kind), impl): (lambda k=kind, i=impl: gate(k, i))
        for kind in ("cold", "warm", "batched")
        for impl in ("reference", "native", "limit")
    }
