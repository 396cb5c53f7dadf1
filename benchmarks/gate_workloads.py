"""WSN's gate, `percentile_mask` and `percentile_masks`.

* one tensor (`percentile_mask n=<size>`): N(0, 1) scores at keep 0.7, against a `clone()`;
* cold: a gate with no previous threshold, against `clone()` + `sum()` of the scores (a gate
  must write its mask and read the scores at least once more to select);
* warm: `percentile_masks` on scores after one SGD step, warm-started from the threshold of the
  scores before it, against a `clone()`;
* batched: the same over all of WSNMaskResNet18's score tensors at once, against a `clone()`
  of each of them.

The reference is CLArena's gate, `torch.quantile` per tensor; at 2^24 + 1 scores torch 2.13's
quantile refuses the input, so only the native kernel (and the limit) run. The step moves each
score by the learning rate times an N(0, 1) gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from clarena_backbones import ops
from clarena_backbones.ops.percentile_mask import percentile_masks, percentile_masks_state
from common import DTYPE, KEEP, LEARNING_RATE, Workload, build_backbone

PERCENTILE_SIZES = {"2^20": 2**20, "2^23": 2**23, "2^24+1": 2**24 + 1}
SIZE = "2^23"  # of the cold and warm groups


def group_percentile_mask(size: str) -> str:
    return f"percentile_mask n={size}"


def percentile_mask(size: str, impl: str) -> Workload:
    """WSN's gate on `size` N(0,1) scores at keep 0.7; the limit is a `clone()` of the scores."""
    score = torch.randn(PERCENTILE_SIZES[size], dtype=DTYPE)
    if impl == "limit":
        fn = score.clone
    else:
        def fn() -> torch.Tensor:
            return ops.percentile_mask(score, KEEP)
    return Workload(fn, impl, f"({score.numel()},) keep={KEEP}")


def reference_refuses(size: str) -> bool:
    """Whether the reference (torch.quantile) refuses a score of `size` elements."""
    score = torch.empty(PERCENTILE_SIZES[size], dtype=DTYPE).uniform_()
    try:
        with ops.use_reference():
            ops.percentile_mask(score, KEEP)
    except RuntimeError:
        return True
    return False


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


def gate(kind: str, impl: str) -> Workload:
    if kind == "batched":
        backbone = build_backbone("WSNMaskResNet18")
        backbone.initialize_parameter_score("N01")
        scores = [backbone.weight_score_t[name].weight.detach() for name in backbone.weighted_layer_names]
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
        return Workload(lambda: [score.clone() for score in after], impl, shape)
    if impl == "reference":
        return Workload(lambda: [ops.percentile_mask(score, KEEP) for score in after], impl, shape)

    def fn() -> list[torch.Tensor]:
        return percentile_masks(after, KEEP, state)

    # every timed call starts from the state of the scores before the step
    return Workload(fn, impl, shape, setup=lambda: state.copy_(before_state))


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for size in PERCENTILE_SIZES:
        impls = ("native", "limit") if size == "2^24+1" else ("reference", "native", "limit")
        for impl in impls:
            table[(group_percentile_mask(size), impl)] = lambda s=size, i=impl: percentile_mask(s, i)
    for kind in ("cold", "warm", "batched"):
        for impl in ("reference", "native", "limit"):
            table[(group_gate(kind), impl)] = lambda k=kind, i=impl: gate(k, i)
    return table
