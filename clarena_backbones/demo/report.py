"""The demo's output: printed tables, results.json and results.png."""

import json
from dataclasses import dataclass
from pathlib import Path

from clarena_backbones.demo.config import DemoConfig
from clarena_backbones.demo.data import Task
from clarena_backbones.demo.metrics import average_accuracy, average_forgetting
from clarena_backbones.demo.training import Run


@dataclass(frozen=True)
class MethodResult:
    """One method's native run and, when compared, its reference run (same seed, same training)."""

    name: str
    description: str
    native: Run
    reference: Run | None

    @property
    def avg_acc(self) -> float:
        return average_accuracy(self.native.acc_matrix)

    @property
    def forgetting(self) -> float:
        return average_forgetting(self.native.acc_matrix)

    @property
    def speedup(self) -> float | None:
        return None if self.reference is None else self.reference.seconds / self.native.seconds

    @property
    def path_gap(self) -> float | None:
        """Largest accuracy difference between the two paths. Not always 0: a native kernel may sum
        in another order than PyTorch, and training (HAT's s_max/s gradient factor above all)
        amplifies those last-bit differences over many steps."""
        if self.reference is None:
            return None
        pairs = zip(_seen(self.native.acc_matrix), _seen(self.reference.acc_matrix))
        return max(abs(native - reference) for native, reference in pairs)

    def as_json(self) -> dict:
        return {
            "acc_matrix": self.native.acc_matrix,
            "avg_acc": self.avg_acc,
            "forgetting": self.forgetting,
            "seconds_native": self.native.seconds,
            "seconds_reference": None if self.reference is None else self.reference.seconds,
            "reference_acc_matrix": None if self.reference is None else self.reference.acc_matrix,
        }


def _seen(matrix) -> list[float]:
    return [acc for row in matrix for acc in row if acc is not None]


def _count_range(counts) -> str:
    counts = sorted(set(counts))
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def format_header(config: DemoConfig, tasks: list[Task], native: bool) -> str:
    title = {"split": "Split Digits", "permuted": "Permuted Digits"}[config.benchmark]
    widths = "-".join(str(size) for size in (tasks[0].x_train.shape[1], *config.hidden))
    lines = [
        f"{title}: {len(tasks)} tasks, {_count_range(len(task.y_train) for task in tasks)} training and "
        f"{_count_range(len(task.y_test) for task in tasks)} test images per task (8x8 digits from scikit-learn), "
        "task-incremental, a head per task",
        "  " + ", ".join(f"T{t} = {task.name}" for t, task in enumerate(tasks, start=1)),
        f"MLP {widths}, {config.optimizer} lr {config.lr:g}, {config.epochs} epochs per task, "
        f"batch {config.batch_size}, seed {config.seed}",
        "native kernels: " + ("loaded" if native else "NOT loaded (both paths run the pure-PyTorch reference)"),
    ]
    return "\n".join(lines)


def format_method(result: MethodResult) -> str:
    matrix = result.native.acc_matrix
    header = "".join(f"{f'T{j}':>7}" for j in range(1, len(matrix) + 1))
    lines = [f"{result.name}: {result.description}", f"  test accuracy (%)  {header}"]
    for t, row in enumerate(matrix, start=1):
        cells = "".join(f"{100 * acc:7.1f}" for acc in row if acc is not None)
        lines.append(f"  after T{t:<13}{cells}")
    lines.append(f"  average accuracy {100 * result.avg_acc:.1f}%, average forgetting {100 * result.forgetting:.1f} points")
    if result.reference is None:
        lines.append(f"  wall time {result.native.seconds:.1f} s")
        return "\n".join(lines)
    lines.append(
        f"  wall time {result.native.seconds:.1f} s native, {result.reference.seconds:.1f} s reference "
        f"(native speed-up {result.speedup:.2f}x)"
    )
    gap = result.path_gap
    lines.append(
        "  the reference path reached the same accuracies"
        if gap == 0
        else f"  the reference path's accuracies differ by up to {100 * gap:.1f} points (sums rounded in another order)"
    )
    return "\n".join(lines)


def format_summary(results: list[MethodResult]) -> str:
    lines = [f"{'method':<10}{'avg acc':>9}{'forgetting':>12}{'native':>9}{'reference':>11}{'speed-up':>10}"]
    for result in results:
        reference = "-" if result.reference is None else f"{result.reference.seconds:.1f} s"
        speedup = "-" if result.speedup is None else f"{result.speedup:.2f}x"
        lines.append(
            f"{result.name:<10}{100 * result.avg_acc:>8.1f}%{100 * result.forgetting:>8.1f} pts"
            f"{result.native.seconds:>7.1f} s{reference:>11}{speedup:>10}"
        )
    return "\n".join(lines)


def write_json(path: Path, config: DemoConfig, tasks: list[Task], native: bool, results: list[MethodResult]) -> None:
    document = {
        "config": config.as_dict(),
        "tasks": [task.name for task in tasks],
        "native_available": native,
        "methods": {result.name: result.as_json() for result in results},
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_png(path: Path, results: list[MethodResult]) -> None:
    """One heat map of the accuracy matrix per method, then the wall times on both paths."""
    # The Figure API renders with Agg and leaves pyplot's global backend alone.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.6 * (len(results) + 1), 3.8), layout="constrained")
    axes = figure.subplots(1, len(results) + 1, squeeze=False)[0]
    for ax, result in zip(axes, results):
        _draw_matrix(ax, result)
    _draw_times(axes[-1], results)
    figure.savefig(path, dpi=120)


def _draw_matrix(ax, result: MethodResult) -> None:
    matrix = result.native.acc_matrix
    size = len(matrix)
    values = [[float("nan") if acc is None else acc for acc in row] for row in matrix]
    ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    for t, row in enumerate(matrix):
        for j, acc in enumerate(row):
            if acc is not None:
                ax.text(j, t, f"{100 * acc:.0f}", ha="center", va="center", fontsize=8, color="white" if acc < 0.6 else "black")
    ticks = range(size)
    ax.set_xticks(ticks, [f"T{j + 1}" for j in ticks])
    ax.set_yticks(ticks, [f"T{t + 1}" for t in ticks])
    ax.set_xlabel("tested on")
    ax.set_ylabel("after training")
    ax.set_title(f"{result.name}: acc {100 * result.avg_acc:.1f}%, forgetting {100 * result.forgetting:.1f} pts", fontsize=9)


def _draw_times(ax, results: list[MethodResult]) -> None:
    positions = range(len(results))
    width = 0.38
    ax.bar([p - width / 2 for p in positions], [r.native.seconds for r in results], width, label="native")
    compared = [(p, r.reference.seconds) for p, r in zip(positions, results) if r.reference is not None]
    if compared:
        ax.bar([p + width / 2 for p, _ in compared], [s for _, s in compared], width, label="reference")
    ax.set_xticks(positions, [r.name for r in results])
    ax.set_ylabel("wall time (s)")
    ax.set_title("time per run (train + test)", fontsize=9)
    ax.legend(fontsize=8)
