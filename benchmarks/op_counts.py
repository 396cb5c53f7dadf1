"""Count the operators one training step dispatches (ATen and clarena ops, views excluded).

On a GPU each counted op is at least one kernel launch, and launches, not bandwidth, bound the
small layers of these backbones; so the count of ops a HAT step adds over the plain step is its
GPU overhead measured on CPU. Rows: the step of `step_workloads.train_step` (plain CLMLP/CLResNet18,
HATMaskMLP/HATMaskResNet18 on the native path), and, when CLArena is installed, CLArena's own
`HAT.training_step` with its methods and accelerated (`clarena_workloads`). The target for the
HAT step is at most 10 + 3 per masked layer over the plain step.

    python benchmarks/op_counts.py [--output DIR]   # prints the table, writes DIR/op_counts.json
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import step_workloads as sw  # noqa: E402
from common import Workload, build_backbone  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts every dispatched op that is not a view (views alias memory and launch nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_ops(workload: Workload) -> collections.Counter[str]:
    with workload.path():
        workload.fn()  # warm-up: lazily created state (gradients, caches) is not per-step work
        with OpCounter() as counter:
            workload.fn()
    return counter.counts


def rows() -> list[dict[str, object]]:
    table = []
    for arch, (plain, hat) in {"mlp": ("CLMLP", "HATMaskMLP"), "resnet18": ("CLResNet18", "HATMaskResNet18")}.items():
        torch.manual_seed(0)
        plain_ops = count_ops(sw.train_step(arch, plain, "plain"))
        layers = len(build_backbone(hat).weighted_layer_names)
        for impl in ("reference", "native"):
            hat_ops = count_ops(sw.train_step(arch, hat, impl))
            table.append(_row(f"{hat} step ({impl}) vs {plain}", hat_ops, plain_ops, layers))
        try:
            import clarena_workloads as cw

            clarena_ops = {impl: count_ops(cw.clarena_train_step(arch, impl)) for impl in ("reference", "native")}
        except ImportError:
            continue
        table.append(_row(f"CLArena HAT.training_step over {hat}, accelerated vs CLArena's methods",
                          clarena_ops["native"], clarena_ops["reference"], layers, target=False))  # fmt: skip
        table.append(_row(f"CLArena HAT.training_step over {hat}, accelerated vs {plain} step",
                          clarena_ops["native"], plain_ops, layers))  # fmt: skip
    return table


def _row(label, ops, baseline, layers, target=True) -> dict[str, object]:
    total, base = sum(ops.values()), sum(baseline.values())
    added = ops - baseline
    row = {"row": label, "ops": total, "baseline_ops": base, "added": total - base, "masked_layers": layers,
           "top_added": added.most_common(8)}  # fmt: skip
    if target:
        row["limit"] = 10 + 3 * layers
        row["status"] = "PASS" if total - base <= row["limit"] else "MISS"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    table = rows()
    for row in table:
        verdict = f"  limit {row['limit']}: {row['status']}" if "limit" in row else ""
        print(f"{row['row']}: {row['ops']} ops vs {row['baseline_ops']}, {row['added']:+d}{verdict}")
        print("    most added: " + ", ".join(f"{name} x{count}" for name, count in row["top_added"]))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "op_counts.json").write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
