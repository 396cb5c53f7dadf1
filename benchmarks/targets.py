"""The report's targets, keyed by the exact ids of the benchmark groups.

Every group of the suite has an entry (an empty list where nothing is judged), and every entry
names a group the workloads define: a renamed or missing group is an error, never a silent
"no target".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import clarena_workloads as cw
import epoch_workloads as ew
import gate_workloads as gw
import hat_workloads as hw
import step_workloads as sw


@dataclass(frozen=True)
class Goal:
    """A target of a group: `metric op threshold`, for the rows named in `rows` (None: every row)."""

    metric: str  # "<impl>/<impl>" of the medians (e.g. "native/plain"), or "peak native/reference"
    op: str  # ">=" or "<="
    threshold: float
    rows: tuple[str, ...] | None = None


@dataclass
class Target:
    """A goal judged on one report row."""

    metric: str
    op: str
    threshold: float
    value: float | None = None
    status: str = "N/A"  # PASS, MISS, or N/A when a median or peak is missing

    def judge(self, value: float | None) -> None:
        self.value = value
        if value is None or math.isnan(value):
            self.status = "N/A"
        elif self.op == ">=":
            self.status = "PASS" if value >= self.threshold else "MISS"
        else:
            self.status = "PASS" if value <= self.threshold else "MISS"

    def text(self) -> str:
        shown = "-" if self.value is None else f"{self.value:.2f}"
        return f"{self.metric} {shown} {self.op} {self.threshold:g}: {self.status}"


PEAK = Goal("peak native/reference", "<=", 1)
GOALS: dict[str, list[Goal]] = {
    gw.group_percentile_mask("2^20"): [],
    gw.group_percentile_mask("2^23"): [Goal("reference/native", ">=", 10), Goal("native/limit", "<=", 3)],
    gw.group_percentile_mask("2^24+1"): [],
    # cold limit: clone + sum (write the mask, read the scores once more); warm and batched: clones
    gw.group_gate("cold"): [Goal("reference/native", ">=", 10), Goal("native/limit", "<=", 1.5)],
    gw.group_gate("warm"): [Goal("reference/native", ">=", 10), Goal("native/limit", "<=", 1.2)],
    gw.group_gate("batched"): [Goal("reference/native", ">=", 10), Goal("native/limit", "<=", 1.3)],
    # limit: one mul_ per gradient
    hw.group_hat_adjustment("HATMaskMLP"): [Goal("reference/native", ">=", 8), Goal("native/limit", "<=", 2)],
    hw.group_hat_adjustment("HATMaskResNet18"): [Goal("reference/native", ">=", 8), Goal("native/limit", "<=", 1.2)],
    **{hw.group_parameter_measure(kind): [Goal("reference/native", ">=", 1)] for kind in hw.MEASURE_SHAPES},
    sw.group_train_step("mlp"): [
        Goal("native/plain", "<=", 1.10, rows=("HATMaskMLP",)),
        Goal("native/plain", "<=", 1.3, rows=("WSNMaskMLP",)),
        PEAK,
    ],
    sw.group_train_step("resnet18"): [
        Goal("native/plain", "<=", 1.05, rows=("HATMaskResNet18",)),
        Goal("native/plain", "<=", 1.2, rows=("WSNMaskResNet18",)),
        PEAK,
    ],
    sw.group_test_forward(): [Goal("reference/native", ">=", 1.3, rows=("WSNMaskMLP",)), PEAK],
    # CLArena's methods (reference) against the accelerated ones (native)
    cw.group_clarena_train_step("mlp"): [Goal("reference/native", ">=", 1.2), PEAK],
    cw.group_clarena_train_step("resnet18"): [Goal("reference/native", ">=", 1.5), PEAK],
    # whole epochs; clarena/accelerated: CLArena's training_step on its own backbone against the
    # same step accelerated on this package's (CLArena cannot build its own HATMaskResNet18)
    ew.group_epoch("HAT", "mlp"): [Goal("native/plain", "<=", 1.25), Goal("clarena/accelerated", ">=", 1.8)],
    ew.group_epoch("HAT", "resnet18"): [Goal("native/plain", "<=", 1.05)],
    ew.group_epoch("AdaHAT", "mlp"): [],
    ew.group_epoch("WSN", "mlp"): [Goal("native/plain", "<=", 1.5)],
    ew.group_epoch("WSN", "resnet18"): [Goal("native/plain", "<=", 1.2)],
    ew.group_ftz("small"): [Goal("native/clarena", "<=", 0.95)],
    ew.group_ftz("large"): [Goal("native/clarena", "<=", 1.02)],
}


def check_groups(groups: Iterable[str]) -> None:
    """Raise ValueError unless GOALS and the workloads' `groups` name the same groups."""
    groups = set(groups)
    unknown, uncovered = sorted(set(GOALS) - groups), sorted(groups - set(GOALS))
    if unknown or uncovered:
        raise ValueError(
            f"targets.GOALS and the workloads disagree: goals for unknown groups {unknown}, "
            f"groups without an entry in GOALS {uncovered}"
        )


def targets_for(group: str, row: str) -> list[Target]:
    """Fresh targets of one report row (`row`: the backbone name in step groups, else '-')."""
    if group not in GOALS:
        raise KeyError(f"benchmark group {group!r} has no entry in targets.GOALS (an empty list if nothing is judged)")
    return [Target(goal.metric, goal.op, goal.threshold) for goal in GOALS[group] if goal.rows is None or row in goal.rows]
