"""The benchmarks' one timing engine: rounds policy, warm-up probe, peak memory, run metadata,
and the interleaved run. The pytest-benchmark suite (conftest.py's `Runner`) and
`report.py --interleave` both time through it.

Rounds: each workload is called 1-3 times untimed (warm-up, and a probe of its cost: the
fastest of those calls), then `rounds = clamp(budget / probe, 7, 2000)` timed rounds of one
call each run (5 to 30 with `quick`), after 0-2 more warm-up rounds.

Peak memory: after timing, one more call runs under `torch.profiler` with `profile_memory=True`;
`peak_alloc_bytes` is the largest number of bytes that were allocated by torch's CPU allocator
(c10) during the call and were live at the same moment: allocation events add their size, frees
of blocks allocated within the call subtract it. It counts every tensor allocated through ATen
(outputs, temporaries, autograd buffers, the new `.grad` tensors, the native kernels'
`at::empty`); frees of tensors that existed before the call (the previous step's `.grad`
released by `zero_grad`) are not counted, so the number does not depend on what ran before.
Memory that bypasses the allocator (a kernel's `std::vector` scratch, OpenMP or BLAS
workspaces) is not seen. `minor_page_faults` counts the page faults of that call: glibc serves
large blocks with mmap and unmaps them when freed, so a path that allocates weight-sized
temporaries pays their page faults every call (a large part of the reference's cost, and
dependent on malloc's state: MALLOC_MMAP_THRESHOLD_ changes it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from clarena_backbones import ops

NUM_THREADS = 2  # the protocol; a runner's threads option overrides it for diagnosis only


def configure(threads: int = NUM_THREADS) -> None:
    """The process settings every run uses: `threads` torch threads.

    Denormals are not flushed: training meets them as users' processes do (HAT's gate at large
    `s`), and the one group that compares both backbones in flush-to-zero mode sets it around its
    own timed calls (`epoch_workloads.FlushDenormalWorkload`).
    """
    torch.set_num_threads(threads)


@dataclass(frozen=True)
class RoundsPolicy:
    """How many timed rounds a workload gets: about `budget` seconds, within [min, max]."""

    budget: float
    min_rounds: int
    max_rounds: int

    @classmethod
    def of(cls, quick: bool, budget: float | None) -> RoundsPolicy:
        default_budget, min_rounds, max_rounds = (0.5, 5, 30) if quick else (2.0, 7, 2000)
        return cls(default_budget if budget is None else budget, min_rounds, max_rounds)

    def rounds(self, seconds_per_call: float) -> int:
        wanted = math.ceil(self.budget / max(seconds_per_call, 1e-9))
        return int(min(self.max_rounds, max(self.min_rounds, wanted)))


def warmup_rounds(probe_seconds: float) -> int:
    """Untimed rounds after the probe: none for slow calls, up to 2 for fast ones."""
    return 0 if probe_seconds > 0.5 else (1 if probe_seconds > 0.05 else 2)


def timed_call(workload, timer: Callable[[], float] = time.perf_counter) -> float:
    """Seconds of one `workload.fn()` call by `timer`, after its untimed `setup`."""
    if workload.setup is not None:
        workload.setup()
    start = timer()
    workload.fn()
    return timer() - start


def probe(workload) -> float:
    """Call the workload up to 3 times (within about 0.3 s); the fastest call estimates its cost.

    The minimum, because on the shared machine a single call can stall for a whole scheduler
    time slice, which would make a microsecond op look like a millisecond one.
    """
    times: list[float] = []
    while len(times) < 3 and sum(times) < 0.3:
        times.append(timed_call(workload))
    return min(times)


@functools.cache
def native_build() -> str | None:
    """Which native library this process loaded: sha256 prefix and modification time of the file."""
    try:
        from clarena_backbones import _C
    except ImportError:
        return None
    path = Path(_C.__file__)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    stamp = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    return f"{path.name} sha256:{digest} mtime:{stamp}"


def common_info() -> dict[str, object]:
    """The `extra_info` every benchmark records: build, torch, threads, machine load."""
    return {
        "native_build": native_build(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "device": "cpu",
        "native_available": ops.native_available(),
        "machine": platform.machine(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _flatten(events):
    stack = list(events)
    while stack:
        event = stack.pop()
        yield event
        stack.extend(event.children)


def minor_page_faults() -> int:
    """Minor page faults of this process so far: fresh memory the kernel had to map."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ side logs every start and stop there."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_allocated_bytes(fn: Callable[[], object]) -> int | None:
    """Peak of the bytes allocated during one call of `fn` and live at once (see the module doc).

    Frees count only for blocks allocated within the call: the profiler reports frees of older
    blocks inconsistently (not at all, or with a size recorded by an earlier profiling session
    for a block that has since been freed and its address reused). None if this torch's profiler
    does not expose allocation events.
    """
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    try:
        from torch._C._profiler import _EventType

        tree = prof.profiler.kineto_results.experimental_event_tree()
        events = sorted(
            (event.start_time_ns, event.extra_fields.alloc_size, event.extra_fields.ptr)
            for event in _flatten(tree)
            if event.tag == _EventType.Allocation and str(event.extra_fields.device).startswith("cpu")
        )
    except (AttributeError, ImportError, RuntimeError):  # private API moved
        return None
    live: dict[int, int] = {}
    running = peak = 0
    for _, size, ptr in events:
        if size > 0:
            live[ptr] = size
            running += size
            peak = max(peak, running)
        elif ptr in live:
            running -= live.pop(ptr)
    return peak


def memory_info(workload) -> dict[str, int | None]:
    """`peak_alloc_bytes` and `minor_page_faults` of one more call (on the workload's path)."""
    with workload.path():
        if workload.setup is not None:
            workload.setup()
        faults = minor_page_faults()
        peak = peak_allocated_bytes(workload.fn)
        return {"peak_alloc_bytes": peak, "minor_page_faults": minor_page_faults() - faults}


def interleaved_samples(
    workloads: dict[str, object], policy: RoundsPolicy, timer: Callable[[], float], seed: int = 0
) -> dict[str, tuple[list[float], float, int]]:
    """Time `workloads` (label -> workload) round-robin: label -> (sorted samples, probe, rounds).

    Every round calls each workload once, in a shuffled order, so that all members of a group
    meet the same load on a shared machine. Round 0 is a warm-up.
    """
    probes = {}
    for label, workload in workloads.items():
        with workload.path():
            probes[label] = probe(workload)
    rounds = policy.rounds(sum(probes.values()) / max(len(probes), 1))
    samples: dict[str, list[float]] = {label: [] for label in workloads}
    order = list(workloads.items())
    rng = random.Random(seed)
    for round_index in range(rounds + 1):
        rng.shuffle(order)
        for label, workload in order:
            with workload.path():
                elapsed = timed_call(workload, timer)
            if round_index:
                samples[label].append(elapsed)
    return {label: (sorted(samples[label]), probes[label], rounds) for label in workloads}


def summary_stats(values: list[float]) -> dict[str, float | int]:
    """pytest-benchmark's `stats` fields of sorted `values`."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"min": values[0], "max": values[-1], "mean": statistics.fmean(values), "median": statistics.median(values),
            "q1": quartiles[0], "q3": quartiles[2], "rounds": len(values)}  # fmt: skip
