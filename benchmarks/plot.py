"""The report's chart: per row, the speed-up, the overhead and the peak-memory ratio against the targets."""

from __future__ import annotations

import math
from pathlib import Path


def draw_chart(rows: list, path: Path, title: str) -> None:
    """Write the three-panel bar chart of `rows` (report.Row) to `path` (PNG)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("reference / native or clarena / accelerated\n(speed-up, higher is better)", lambda r: r.speedup_metric),
        ("native / limit or plain\n(overhead, lower is better)", lambda r: f"native/{r.comparator}"),
        ("peak memory native / reference\n(lower is better)", lambda r: "peak native/reference"),
    ]
    labels = [row.label for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(19, 0.45 * len(rows) + 2.4), sharey=True,
                             gridspec_kw={"width_ratios": [3, 3, 2]})  # fmt: skip
    for ax, (panel_title, metric_of) in zip(axes, panels):
        for y, row in enumerate(rows):
            metric = metric_of(row)
            value = row.ratios.get(metric)
            target = next((t for t in row.targets if t.metric == metric), None)
            color = {"PASS": "tab:green", "MISS": "tab:red"}.get(target.status if target else "", "tab:gray")
            if value is not None and math.isfinite(value) and value > 0:
                ax.barh(y, value, color=color, height=0.6)
                ax.text(value, y, f" {value:.2f}", va="center", fontsize=8)
            elif value == 0:  # e.g. an in-place op that allocates nothing on the native path
                ax.text(0.01, y, "0", va="center", fontsize=8, color=color, transform=ax.get_yaxis_transform())
            if target is not None:
                ax.plot([target.threshold] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.axvline(1.0, color="gray", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(panel_title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"{title}\nbars: green PASS, red MISS, gray no target; black ticks: targets", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
