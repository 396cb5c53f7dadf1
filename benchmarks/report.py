"""Run the benchmark suite and report the reference/native/limit ratios against the targets.

    python benchmarks/report.py [--quick] [--output DIR] [--profile] ...

Runs `pytest benchmarks --benchmark-json=...` in a subprocess (CPU, float32, 2 threads; see
benchmarks/conftest.py), then prints one row per op group or masked backbone with the median
times, the ratios reference/native and native/limit (native/plain for the training steps and
test forwards), the peak memory allocated per call on each path, and PASS/MISS per target.
Writes DIR/results.json (medians, ratios, peak memory, target verdicts), DIR/ratios.png (the
ratios as bars with the target lines) and DIR/pytest-benchmark.json (the raw timings;
DIR/interleaved.json with --interleave).

The machine is shared and noisy: compare ratios measured in one run, not absolute times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUTPUT = BENCH_DIR / "results"
STEP_PREFIXES = ("train_step", "test_forward")


# ------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    metric: str  # "reference/native", "native/limit", "native/plain" or "peak native<=reference"
    op: str  # ">=" or "<="
    threshold: float
    value: float | None = None
    status: str = "N/A"  # PASS, MISS, or N/A when a median or peak is missing

    def judge(self) -> None:
        if self.value is None or math.isnan(self.value):
            self.status = "N/A"
        elif self.op == ">=":
            self.status = "PASS" if self.value >= self.threshold else "MISS"
        else:
            self.status = "PASS" if self.value <= self.threshold else "MISS"

    def text(self) -> str:
        shown = "-" if self.value is None else f"{self.value:.2f}"
        return f"{self.metric} {shown} {self.op} {self.threshold:g}: {self.status}"


def targets_for(group: str, row: str) -> list[Target]:
    """The speed targets of one report row (`row` is the backbone name for step groups)."""
    if group == "percentile_mask n=2^23":
        return [Target("reference/native", ">=", 10), Target("native/limit", "<=", 3)]
    if group.startswith("percentile_mask cold"):  # limit: clone + sum
        return [Target("reference/native", ">=", 10), Target("native/limit", "<=", 1.5)]
    if group.startswith("percentile_mask warm"):
        return [Target("reference/native", ">=", 10), Target("native/limit", "<=", 1.2)]
    if group.startswith("percentile_masks"):
        return [Target("native/limit", "<=", 1.3)]
    if group.startswith("hat_adjustment"):
        return [Target("reference/native", ">=", 8), Target("native/limit", "<=", 2)]
    if group.startswith("parameter_measure"):
        return [Target("reference/native", ">=", 1)]
    peak = Target("peak native/reference", "<=", 1)
    if group.startswith("clarena_train_step"):  # CLArena's methods (reference) vs accelerated (native)
        return [Target("reference/native", ">=", 1.2 if " mlp " in group else 1.5), peak]
    if group.startswith("train_step mlp"):
        return [Target("native/plain", "<=", 1.15), peak]
    if group.startswith("train_step resnet18"):
        return [Target("native/plain", "<=", 1.10), peak]
    if group.startswith("test_forward"):
        return ([Target("reference/native", ">=", 1.3)] if row.startswith("WSN") else []) + [peak]
    return []


# ---------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    group: str
    row: str  # "-" for op groups, the masked backbone's name for step groups
    comparator: str  # "limit" or "plain"
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


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def build_rows(raw: dict[str, Any]) -> list[Row]:
    """Turn pytest-benchmark's JSON into report rows (one per op group, one per masked backbone)."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}  # (group, row) -> impl -> benchmark
    order: list[tuple[str, str]] = []
    for bench in raw.get("benchmarks", []):
        group = bench.get("group") or bench["name"]
        params = bench.get("params") or {}
        info = bench.get("extra_info") or {}
        impl = params.get("impl") or info.get("impl")
        is_step = group.startswith(STEP_PREFIXES)
        backbone = params.get("backbone") if is_step else None
        keys = [(group, "-")]
        if is_step:
            # the plain baseline belongs to every masked row of its group
            keys = [(group, "*")] if impl == "plain" else [(group, backbone)]
        for key in keys:
            if key not in entries:
                entries[key] = {}
                order.append(key)
            entries[key][impl] = bench

    rows = []
    for group, row_name in order:
        if row_name == "*":
            continue
        impls = dict(entries[(group, row_name)])
        is_step = group.startswith(STEP_PREFIXES)
        comparator = "plain" if is_step else "limit"
        if is_step and (group, "*") in entries:
            impls.update(entries[(group, "*")])
        row = Row(group, row_name, comparator)
        for impl, bench in impls.items():
            row.median_s[impl] = bench["stats"]["median"]
            row.min_s[impl] = bench["stats"]["min"]
            row.rounds[impl] = bench["stats"]["rounds"]
            row.peak_alloc_bytes[impl] = (bench.get("extra_info") or {}).get("peak_alloc_bytes")
            row.page_faults[impl] = (bench.get("extra_info") or {}).get("minor_page_faults")
            if (bench.get("extra_info") or {}).get("reference_refuses"):
                note = "reference (torch.quantile) refuses this size"
                if note not in row.notes:
                    row.notes.append(note)
            if (bench.get("extra_info") or {}).get("reference_cache_dropped") is False:
                row.notes.append("reference could not drop the backbone's test cache")
        med = row.median_s
        row.ratios["reference/native"] = _ratio(med.get("reference"), med.get("native"))
        row.ratios[f"native/{comparator}"] = _ratio(med.get("native"), med.get(comparator))
        low = row.min_s
        row.ratios_of_min["reference/native"] = _ratio(low.get("reference"), low.get("native"))
        row.ratios_of_min[f"native/{comparator}"] = _ratio(low.get("native"), low.get(comparator))
        peaks = row.peak_alloc_bytes
        if peaks.get("native") is not None and peaks.get("reference") is not None:
            if peaks["reference"] > 0:
                row.ratios["peak native/reference"] = peaks["native"] / peaks["reference"]
            else:
                row.ratios["peak native/reference"] = 1.0 if peaks["native"] <= 0 else math.inf
        else:
            row.ratios["peak native/reference"] = None
        row.targets = targets_for(group, row_name)
        for target in row.targets:
            target.value = row.ratios.get(target.metric)
            target.judge()
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- output
def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _x(value: float | None, of_min: float | None = None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.2f}x" + ("" if of_min is None else f" ({of_min:.2f}x)")


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def format_table(rows: list[Row]) -> str:
    header = ["group | backbone", "ref ms", "native ms", "limit/plain ms", "ref/native (min)", "native/limit|plain (min)",
              "peak ref MiB", "peak native MiB", "targets"]  # fmt: skip
    lines = []
    for row in rows:
        comp = row.comparator
        verdicts = "; ".join(f"{t.metric} {t.op} {t.threshold:g}: {t.status}" for t in row.targets) or "-"
        lines.append([
            row.label, _ms(row.median_s.get("reference")), _ms(row.median_s.get("native")),
            _ms(row.median_s.get(comp)) + ("" if comp == "limit" else " (plain)"),
            _x(row.ratios.get("reference/native"), row.ratios_of_min.get("reference/native")),
            _x(row.ratios.get(f"native/{comp}"), row.ratios_of_min.get(f"native/{comp}")),
            _mib(row.peak_alloc_bytes.get("reference")), _mib(row.peak_alloc_bytes.get("native")), verdicts,
        ])  # fmt: skip
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines)]
    rule = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    for line in lines:
        out.append("  ".join(c.ljust(w) if i in (0, 8) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    notes = [f"  note: {row.label}: {note}" for row in rows for note in row.notes]
    legend = ["times are medians; ratios are of the medians (judged), in parentheses of the minima (context)"]
    return "\n".join(out + [""] + legend + notes)


def draw_chart(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("reference / native\n(speed-up, higher is better)", lambda r: "reference/native"),
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


# --------------------------------------------------------------------------------------- profile
def profile_missed(rows: list[Row], output: Path, row_limit: int, threads: int) -> str:
    """torch.profiler key_averages (by self CPU time) of the paths behind every MISS."""
    sys.path.insert(0, str(BENCH_DIR))
    import torch
    from torch.profiler import ProfilerActivity, profile

    import workloads as wl

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    builders = wl.all_workloads()
    profile_dir = output / "profiles"
    profile_dir.mkdir(parents=True, exist_ok=True)
    for stale in profile_dir.glob("*.txt"):  # tables of an earlier run
        stale.unlink()
    texts = []
    for row in rows:
        missed = [t for t in row.targets if t.status == "MISS"]
        if not missed:
            continue
        impls = ["native"]
        for target in missed:
            impls += [impl for impl in ("reference", row.comparator) if impl in target.metric]
        for impl in dict.fromkeys(impls):
            label = impl if row.row == "-" or impl == "plain" else wl.step_label(row.row, impl)
            builder = builders.get((row.group, label))
            if builder is None:
                continue
            torch.manual_seed(0)
            try:
                workload = builder()
            except Exception as error:  # noqa: BLE001
                texts.append(f"== {row.label} [{impl}]: could not build the workload: {error}")
                continue
            with workload.path():
                for _ in range(2):  # warm-up
                    if workload.setup:
                        workload.setup()
                    start = time.perf_counter()
                    workload.fn()
                    elapsed = time.perf_counter() - start
                calls = int(min(200, max(3, 1.0 / max(elapsed, 1e-9))))  # about a second of calls
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(calls):
                        if workload.setup:
                            workload.setup()
                        workload.fn()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)
            heading = f"== {row.label} [{impl}] ({calls} calls; missed: {', '.join(t.metric for t in missed)})"
            texts.append(f"{heading}\n{table}")
            slug = "".join(c if c.isalnum() else "_" for c in f"{row.label}_{impl}").strip("_")
            (profile_dir / f"{slug}.txt").write_text(f"{heading}\n{table}\n")
    return "\n".join(texts) if texts else "no target missed: nothing to profile"


# ------------------------------------------------------------------------------------------ main
class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds (5 minimum, about 0.5 s of timed rounds per benchmark)")
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="seconds of timed rounds aimed at per benchmark (suite default 2.0, 0.5 with --quick)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR",
                        help="where results.json, ratios.png and pytest-benchmark.json go")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="do not run the suite: report on this pytest-benchmark JSON instead")
    parser.add_argument("-k", dest="keyword", default=None, metavar="EXPR",
                        help="run only the benchmarks matching this pytest -k expression")
    parser.add_argument("--threads", type=int, default=2, metavar="N",
                        help="torch threads; the protocol is 2 (1 separates code from contention on a busy machine)")
    parser.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                        help="wall: time.perf_counter (the protocol); cpu: time.process_time, which leaves out "
                             "the time the process waits for a core (use with --threads 1: with 2 threads it "
                             "counts OpenMP spin-waiting)")
    parser.add_argument("--interleave", action="store_true",
                        help="instead of pytest-benchmark's one-test-after-another, time the members of each "
                             "group round-robin in one process, so that they meet the same load on a shared "
                             "machine (same workloads and statistics; -k then selects by substring of "
                             "'<group> <impl>')")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the profiled call that records the peak allocated memory")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, profile the paths of every missed target (torch.profiler "
                             "key_averages by self CPU time) and save them under DIR/profiles/")
    parser.add_argument("--profile-rows", type=int, default=15, metavar="N", help="rows per profile table")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit with status 1 if a target is missed")
    return parser.parse_args(argv)  # fmt: skip


def run_suite(args: argparse.Namespace, raw_path: Path) -> int:
    command = [
        sys.executable, "-m", "pytest", str(BENCH_DIR),
        "-c", str(BENCH_DIR / "pytest.ini"), "--rootdir", str(BENCH_DIR),
        f"--benchmark-json={raw_path}", "-q",
    ]  # fmt: skip
    if args.quick:
        command.append("--bench-quick")
    if args.budget is not None:
        command += ["--bench-budget", str(args.budget)]
    if args.no_memory:
        command.append("--bench-no-memory")
    if args.threads != 2:
        command += ["--bench-threads", str(args.threads)]
    if args.timer == "cpu":
        command.append("--benchmark-timer=time.process_time")
    if args.keyword:
        command += ["-k", args.keyword]
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=REPO_ROOT)


def run_interleaved(args: argparse.Namespace, raw_path: Path) -> int:
    """Time the implementations of each group round-robin, in this process (`--interleave`).

    pytest-benchmark times one test after another, so on a shared machine the reference, the
    native path and the limit of one group can meet very different loads. Here all members of a
    group are built first, then every round calls each of them once, in a shuffled order, so
    they sample the same load. Same workloads, rounds policy and peak-memory measurement as the
    pytest suite; the result is written in pytest-benchmark's JSON layout.
    """
    sys.path.insert(0, str(BENCH_DIR))
    import random
    import statistics

    import torch

    import conftest  # sets threads and flush-to-zero; peak memory; the probe
    import workloads as wl

    torch.set_num_threads(args.threads)
    timer = time.process_time if args.timer == "cpu" else time.perf_counter
    budget = args.budget if args.budget is not None else (0.5 if args.quick else 2.0)
    min_rounds, max_rounds = (5, 30) if args.quick else (7, 2000)
    groups: dict[str, list[tuple[str, Any]]] = {}
    for (group, label), builder in wl.all_workloads().items():
        if args.keyword is None or args.keyword in f"{group} {label}":
            groups.setdefault(group, []).append((label, builder))
    rng = random.Random(0)
    benchmarks = []
    for group, members in groups.items():
        print(f"{group}: {', '.join(label for label, _ in members)}", flush=True)
        built = []
        for label, builder in members:
            torch.manual_seed(0)
            try:
                workload = builder()
            except Exception as error:  # noqa: BLE001
                print(f"  {label}: could not build the workload: {error}", flush=True)
                continue
            with workload.path():
                probe = conftest.Runner._probe(workload)
            built.append((label, workload, probe))
        per_round = sum(probe for _, _, probe in built)
        rounds = int(min(max_rounds, max(min_rounds, math.ceil(budget * len(built) / max(per_round, 1e-9)))))
        samples: dict[str, list[float]] = {label: [] for label, _, _ in built}
        for round_index in range(rounds + 1):  # round 0 is a warm-up
            order = list(built)
            rng.shuffle(order)
            for label, workload, _ in order:
                with workload.path():
                    if workload.setup is not None:
                        workload.setup()
                    start = timer()
                    workload.fn()
                    elapsed = timer() - start
                if round_index:
                    samples[label].append(elapsed)
        for label, workload, probe in built:
            values = sorted(samples[label])
            quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
            info = conftest.common_info() | {"impl": workload.impl, "shape": workload.shape, **workload.info}
            info.update(probe_s=probe, rounds=rounds, warmup_rounds=2, mode="interleaved")
            if group == wl.group_percentile_mask("2^24+1"):
                info["reference_refuses"] = wl.reference_refuses("2^24+1")
            if not args.no_memory:
                with workload.path():
                    if workload.setup is not None:
                        workload.setup()
                    faults = conftest.minor_page_faults()
                    info["peak_alloc_bytes"] = conftest.peak_allocated_bytes(workload.fn)
                    info["minor_page_faults"] = conftest.minor_page_faults() - faults
            params = {"impl": workload.impl}
            if group.startswith(STEP_PREFIXES):
                params["backbone"] = workload.info.get("backbone")
            benchmarks.append({
                "name": f"{group}[{label}]", "group": group, "params": params, "extra_info": info,
                "options": {"timer": timer.__name__, "mode": "interleaved"},
                "stats": {"min": values[0], "max": values[-1], "mean": statistics.fmean(values),
                          "median": statistics.median(values), "q1": quartiles[0], "q3": quartiles[2],
                          "rounds": len(values)},
            })  # fmt: skip
        del built
    raw = {"benchmarks": benchmarks, "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
           "machine_info": {"cpu": {"brand_raw": platform.processor()}}}  # fmt: skip
    raw_path.write_text(json.dumps(raw, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    status = 0
    started = dt.datetime.now(dt.timezone.utc)
    if args.json is None:
        raw_path = output / ("interleaved.json" if args.interleave else "pytest-benchmark.json")
        status = run_interleaved(args, raw_path) if args.interleave else run_suite(args, raw_path)
        if not raw_path.exists():
            print(f"the benchmark run wrote no JSON (pytest exit status {status})", file=sys.stderr)
            return status or 1
    else:
        raw_path = args.json
    raw = json.loads(raw_path.read_text())
    rows = build_rows(raw)
    elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()

    first_info = next((b.get("extra_info", {}) for b in raw.get("benchmarks", [])), {})
    first_options = next((b.get("options", {}) for b in raw.get("benchmarks", [])), {})
    meta = {
        "date": raw.get("datetime") or started.isoformat(),
        "command": " ".join(["python", "benchmarks/report.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "timer": first_options.get("timer"),
        "mode": first_options.get("mode", "pytest-benchmark"),
        "suite_seconds": None if args.json else round(elapsed, 1),
        "pytest_exit_status": status,
        "torch": first_info.get("torch"),
        "threads": first_info.get("threads"),
        "dtype": first_info.get("dtype"),
        "native_available": first_info.get("native_available"),
        "native_build": first_info.get("native_build"),
        "machine": (raw.get("machine_info") or {}).get("cpu", {}).get("brand_raw") or platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "peak_memory_method": "torch.profiler(profile_memory=True) over one call: the most bytes allocated by "
        "the c10 CPU allocator during the call and live at once (frees of older blocks not counted); "
        "minor_page_faults per call in the raw JSON",
    }
    builds = sorted({str((b.get("extra_info") or {}).get("native_build")) for b in raw.get("benchmarks", [])})
    if len(builds) > 1:  # someone rebuilt the extension in the middle of the run
        meta["native_build"] = builds
    targets = [(row, t) for row in rows for t in row.targets]
    missed = [f"{row.label}: {t.text()}" for row, t in targets if t.status == "MISS"]
    summary = {
        "pass": sum(t.status == "PASS" for _, t in targets),
        "miss": len(missed),
        "n/a": sum(t.status == "N/A" for _, t in targets),
        "missed": missed,
    }
    results = {"meta": meta, "rows": [asdict(row) | {"label": row.label} for row in rows], "summary": summary}
    (output / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    title = (
        f"clarena benchmarks, torch {meta['torch']}, {meta['threads']} threads, {meta['dtype']}, "
        f"timer {meta['timer']}, {meta['mode']}, {meta['date']}"
    )
    if rows:
        draw_chart(rows, output / "ratios.png", title)

    print()
    print(title)
    print(format_table(rows))
    print()
    if isinstance(meta["native_build"], list):
        print(f"WARNING: the native library changed during the run: {meta['native_build']}")
    print(f"native library: {meta['native_build']}")
    print(f"targets: {summary['pass']} PASS, {summary['miss']} MISS, {summary['n/a']} N/A")
    for line in missed:
        print("  MISS", line)
    print(f"wrote {output / 'results.json'}, {output / 'ratios.png'}, {raw_path}")
    if args.profile:
        print()
        try:
            print(profile_missed(rows, output, args.profile_rows, args.threads))
        except Exception as error:  # noqa: BLE001  (the table above is still the result)
            print(f"profiling failed: {type(error).__name__}: {error}", file=sys.stderr)
    if status == 0 and args.fail_on_miss and missed:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
