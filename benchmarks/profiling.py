"""`report.py --profile`: torch.profiler tables of the paths behind every missed target."""

from __future__ import annotations

from pathlib import Path

import timing
import workloads as wl
from common import step_label
from interleave import build
from rows import Row


def profile_missed(rows: list[Row], output: Path, row_limit: int, threads: int) -> str:
    """key_averages (by self CPU time) of each implementation a MISS names, saved under output/profiles/."""
    from torch.profiler import ProfilerActivity, profile

    timing.configure(threads)
    builders = wl.all_workloads()
    profile_dir = output / "profiles"
    profile_dir.mkdir(parents=True, exist_ok=True)
    for stale in profile_dir.glob("*.txt"):  # tables of an earlier run
        stale.unlink()
    texts = []
    for row in rows:
        missed = [t for t in row.targets if t.status == "MISS"]
        impls = [impl for target in missed for impl in target.metric.removeprefix("peak ").split("/")]
        for impl in dict.fromkeys(impls):
            label = impl if row.row == "-" or impl == "plain" else step_label(row.row, impl)
            builder = builders.get((row.group, label))
            if builder is None:
                continue
            workload = build(builder, lambda error: texts.append(f"== {row.label} [{impl}]: {error}"))
            if workload is None:
                continue
            with workload.path():
                elapsed = timing.probe(workload)  # also the warm-up
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
