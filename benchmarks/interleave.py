"""`report.py --interleave`: the members of each group timed round-robin in this process.

pytest-benchmark times one test after another, so on a shared machine the reference, the native
path and the limit of one group can meet very different loads. Here all members of a group are
built first, then timed by `timing.interleaved_samples`, so they sample the same load. Same
workloads, rounds policy and peak-memory measurement as the pytest suite; the result is written
in pytest-benchmark's JSON layout, with the rows that could not be built under "skipped".
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timing
import workloads as wl
from gate_workloads import group_percentile_mask, reference_refuses
from rows import STEP_PREFIXES


def build(builder: Callable[[], Any], report_error: Callable[[str], None]) -> Any:
    """The workload of `builder`, seeded; None (after `report_error(message)`) if it cannot be built."""
    import torch

    torch.manual_seed(0)
    try:
        return builder()
    except Exception as error:  # noqa: BLE001  (CLArena missing, or a backbone CLArena cannot build)
        report_error(f"could not build the workload: {type(error).__name__}: {error}")
        return None


def selected_groups(keyword: str | None) -> dict[str, dict[str, Callable[[], Any]]]:
    """group -> impl label -> builder, for the workloads whose '<group> <impl>' contains `keyword`."""
    groups: dict[str, dict[str, Callable[[], Any]]] = {}
    for (group, label), builder in wl.all_workloads().items():
        if keyword is None or keyword in f"{group} {label}":
            groups.setdefault(group, {})[label] = builder
    return groups


def run_interleaved(keyword: str | None, policy: timing.RoundsPolicy, timer: Callable[[], float], threads: int,
                    memory: bool, raw_path: Path) -> int:  # fmt: skip
    timing.configure(threads)
    benchmarks: list[dict[str, Any]] = []
    skipped: dict[str, list[str]] = {}
    for group, builders in selected_groups(keyword).items():
        print(f"{group}: {', '.join(builders)}", flush=True)
        built = {}
        for label, builder in builders.items():
            def skip(error: str, label: str = label) -> None:
                print(f"  {label}: {error}", flush=True)
                skipped.setdefault(group, []).append(f"{label} ({error})")

            workload = build(builder, skip)
            if workload is not None:
                built[label] = workload
        for label, (values, probe, rounds) in timing.interleaved_samples(built, policy, timer).items():
            workload = built[label]
            info = timing.common_info() | {"impl": workload.impl, "shape": workload.shape, **workload.info}
            info.update(probe_s=probe, rounds=rounds, warmup_rounds=2, mode="interleaved")
            if group == group_percentile_mask("2^24+1"):
                info["reference_refuses"] = reference_refuses("2^24+1")
            if memory:
                info.update(timing.memory_info(workload))
            params = {"impl": workload.impl}
            if group.startswith(STEP_PREFIXES):
                params["backbone"] = workload.info.get("backbone")
            benchmarks.append({
                "name": f"{group}[{label}]", "group": group, "params": params, "extra_info": info,
                "options": {"timer": timer.__name__, "mode": "interleaved"}, "stats": timing.summary_stats(values),
            })  # fmt: skip
        del built
    raw = {"benchmarks": benchmarks, "skipped": skipped, "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
           "machine_info": {"cpu": {"brand_raw": platform.processor()}}}  # fmt: skip
    raw_path.write_text(json.dumps(raw, indent=1) + "\n")
    return 0
