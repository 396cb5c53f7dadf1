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
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # the sibling modules, also when imported from elsewhere

import plot  # noqa: E402
import targets  # noqa: E402
import timing  # noqa: E402
import workloads as wl  # noqa: E402
from interleave import run_interleaved  # noqa: E402
from profiling import profile_missed  # noqa: E402
from rows import build_rows, format_table  # noqa: E402

REPO_ROOT = BENCH_DIR.parent
DEFAULT_OUTPUT = BENCH_DIR / "results"
TIMERS = {"wall": time.perf_counter, "cpu": time.process_time, "thread": time.thread_time}


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
    parser.add_argument("--timer", choices=tuple(TIMERS), default="wall",
                        help="wall: time.perf_counter; cpu: time.process_time, which leaves out the time the "
                             "process waits for a core (with 2 threads it counts OpenMP spin-waiting); thread: "
                             "time.thread_time, the calling thread's CPU time (the epoch protocol: with "
                             "--threads 1 --interleave)")
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
    if args.timer != "wall":
        command.append(f"--benchmark-timer=time.{TIMERS[args.timer].__name__}")
    if args.keyword:
        command += ["-k", args.keyword]
    print("running:", " ".join(command), flush=True)
    return subprocess.call(command, cwd=REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets.check_groups(group for group, _ in wl.all_workloads())
    output: Path = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    status = 0
    started = dt.datetime.now(dt.timezone.utc)
    if args.json is None:
        raw_path = output / ("interleaved.json" if args.interleave else "pytest-benchmark.json")
        if args.interleave:
            policy = timing.RoundsPolicy.of(args.quick, args.budget)
            status = run_interleaved(args.keyword, policy, TIMERS[args.timer], args.threads, not args.no_memory, raw_path)
        else:
            status = run_suite(args, raw_path)
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
    judged = [(row, t) for row in rows for t in row.targets]
    missed = [f"{row.label}: {t.text()}" for row, t in judged if t.status == "MISS"]
    summary = {
        "pass": sum(t.status == "PASS" for _, t in judged),
        "miss": len(missed),
        "n/a": sum(t.status == "N/A" for _, t in judged),
        "missed": missed,
    }
    results = {"meta": meta, "rows": [asdict(row) | {"label": row.label} for row in rows], "summary": summary}
    (output / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    title = (
        f"clarena benchmarks, torch {meta['torch']}, {meta['threads']} threads, {meta['dtype']}, "
        f"timer {meta['timer']}, {meta['mode']}, {meta['date']}"
    )
    if rows:
        plot.draw_chart(rows, output / "ratios.png", title)

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
