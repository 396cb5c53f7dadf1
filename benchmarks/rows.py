"""The report's rows: pytest-benchmark's JSON turned into one row per group (one per masked
backbone in step groups), with the ratios the targets judge, and the text table of them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import targets
from targets import Target

STEP_PREFIXES = ("train_step", "test_forward")
# The ratios every row shows where both of its implementations ran, besides its goals' metrics.
RATIOS = ("reference/native", "clarena/accelerated", "native/limit", "native/plain", "native/clarena")


@dataclass
class Row:
    group: str
    row: str  # "-" for most groups, the masked backbone's name in step groups
    median_s: dict[str, float] = field(default_factory=dict)
    min_s: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    peak_alloc_bytes: dict[str, int | None] = field(default_factory=dict)
    page_faults: dict[str, int | None] = field(default_factory=dict)  # minor faults of one call
    ratios: dict[str, float | None] = field(default_factory=dict)  # of the medians (judged)
    ratios_of_min: dict[str, float | None] = field(default_factory=dict)  # of the minima (context)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.group if self.row == "-" else f"{self.group} | {self.row}"

    @property
    def comparator(self) -> str:
        """What the native path is held against: the plain backbone where it ran, else the limit."""
        return "plain" if "plain" in self.median_s else "limit"

    @property
    def speedup_metric(self) -> str:
        return "clarena/accelerated" if "clarena/accelerated" in self.ratios else "reference/native"


def _ratio(metric: str, values: dict[str, float]) -> float | None:
    """`x/y` of the implementations' `values`; None where one is missing."""
    numerator, denominator = (values.get(impl) for impl in metric.split("/"))
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _peak_ratio(peaks: dict[str, int | None]) -> float | None:
    native, reference = peaks.get("native"), peaks.get("reference")
    if native is None or reference is None:
        return None
    if reference > 0:
        return native / reference
    return 1.0 if native <= 0 else math.inf


def _entries(raw: dict[str, Any]) -> tuple[dict[tuple[str, str], dict[str, Any]], list[tuple[str, str]]]:
    """(group, row) -> impl -> benchmark, in the order met; a step group's plain run is row '*'."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []
    for bench in raw.get("benchmarks", []):
        group = bench.get("group") or bench["name"]
        params = bench.get("params") or {}
        impl = params.get("impl") or (bench.get("extra_info") or {}).get("impl")
        key = (group, "-")
        if group.startswith(STEP_PREFIXES):  # the plain baseline belongs to every masked row
            key = (group, "*") if impl == "plain" else (group, params.get("backbone"))
        if key not in entries:
            entries[key] = {}
            order.append(key)
        entries[key][impl] = bench
    return entries, order


def build_rows(raw: dict[str, Any]) -> list[Row]:
    """Turn pytest-benchmark's JSON into report rows."""
    entries, order = _entries(raw)
    rows = []
    for group, row_name in order:
        if row_name == "*":
            continue
        impls = {**entries.get((group, "*"), {}), **entries[(group, row_name)]}
        row = Row(group, row_name)
        for impl, bench in impls.items():
            info = bench.get("extra_info") or {}
            row.median_s[impl] = bench["stats"]["median"]
            row.min_s[impl] = bench["stats"]["min"]
            row.rounds[impl] = bench["stats"]["rounds"]
            row.peak_alloc_bytes[impl] = info.get("peak_alloc_bytes")
            row.page_faults[impl] = info.get("minor_page_faults")
            if info.get("reference_refuses") and "reference (torch.quantile) refuses this size" not in row.notes:
                row.notes.append("reference (torch.quantile) refuses this size")
            if info.get("reference_cache_dropped") is False:
                row.notes.append("reference could not drop the backbone's test cache")
        for skipped in raw.get("skipped", {}).get(group, []):
            row.notes.append(f"{skipped}: not run")
        row.targets = targets.targets_for(group, row_name)
        metrics = dict.fromkeys([*RATIOS, *(t.metric for t in row.targets if not t.metric.startswith("peak"))])
        for metric in metrics:
            value = _ratio(metric, row.median_s)
            if value is not None or any(t.metric == metric for t in row.targets):
                row.ratios[metric] = value
                row.ratios_of_min[metric] = _ratio(metric, row.min_s)
        row.ratios["peak native/reference"] = _peak_ratio(row.peak_alloc_bytes)
        for target in row.targets:
            target.judge(row.ratios.get(target.metric))
        rows.append(row)
    return rows


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def format_table(rows: list[Row]) -> str:
    """One line per row: medians per implementation, ratios (of the minima), peak memory, verdicts."""
    header = ["group | backbone", "medians ms", "ratios of medians (of minima)", "peak MiB", "targets"]
    lines = []
    for row in rows:
        medians = ", ".join(f"{impl} {_ms(seconds)}" for impl, seconds in row.median_s.items())
        ratios = ", ".join(
            f"{metric} {value:.2f}x" + ("" if row.ratios_of_min.get(metric) is None else f" ({row.ratios_of_min[metric]:.2f}x)")
            for metric, value in row.ratios.items()
            if value is not None and not metric.startswith("peak") and math.isfinite(value)
        )
        peaks = ", ".join(f"{impl} {peak / 2**20:.1f}" for impl, peak in row.peak_alloc_bytes.items() if peak is not None)
        verdicts = "; ".join(f"{t.metric} {t.op} {t.threshold:g}: {t.status}" for t in row.targets) or "-"
        lines.append([row.label, medians or "-", ratios or "-", peaks or "-", verdicts])
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in lines]
    notes = [f"  note: {row.label}: {note}" for row in rows for note in row.notes]
    legend = ["times are medians; ratios are of the medians (judged), in parentheses of the minima (context)"]
    return "\n".join(out + [""] + legend + notes)
