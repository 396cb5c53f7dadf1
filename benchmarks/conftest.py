"""pytest-benchmark suite of clarena's ops and masked backbones: shared settings and the runner.

Protocol (DESIGN.md, Benchmarks): CPU, float32, `torch.set_num_threads(2)`, the reference and
the native path in the same process, the median of at least 5 timed rounds after warm-up.
Run it with `python benchmarks/report.py` (or `pytest benchmarks`; `benchmarks/pytest.ini`
collects `bench_*.py`, which the main `pytest` run, testpaths=tests, never does).

Rounds: each benchmark is called 1-3 times untimed (warm-up, and a probe of its cost: the
fastest of those calls), then `pedantic` runs `rounds = clamp(budget / probe, 7, 2000)` timed
rounds of one call each (5 to 30 with `--bench-quick`), after 0-2 more warm-up rounds.

Peak memory: after timing, one more call runs under `torch.profiler` with `profile_memory=True`;
`peak_alloc_bytes` in `extra_info` is the largest number of bytes that were allocated by torch's
CPU allocator (c10) during the call and were live at the same moment: allocation events add
their size, frees of blocks allocated within the call subtract it. It counts every tensor
allocated through ATen (outputs, temporaries, autograd buffers, the new `.grad` tensors, the
native kernels' `at::empty`); frees of tensors that existed before the call (the previous
step's `.grad` released by `zero_grad`) are not counted, so the number does not depend on what
ran before. Memory that bypasses the allocator (a kernel's `std::vector` scratch, OpenMP or BLAS
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
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from clarena_backbones import ops

NUM_THREADS = 2  # the protocol; --bench-threads overrides it for diagnosis only

torch.set_num_threads(NUM_THREADS)
# Repeated in-place scaling of the same gradients (the `mul_(0.5)` limit) must never reach
# denormals, whose slow path would distort the timings.
torch.set_flush_denormal(True)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("clarena benchmarks")
    group.addoption(
        "--bench-quick",
        action="store_true",
        default=False,
        help="fewer rounds (5 minimum, 0.5 s budget per benchmark): a quick, noisier run",
    )
    group.addoption(
        "--bench-budget",
        type=float,
        default=None,
        help="seconds of timed rounds aimed at per benchmark (default 2.0; 0.5 with --bench-quick)",
    )
    group.addoption(
        "--bench-threads",
        type=int,
        default=NUM_THREADS,
        help="torch threads (the protocol is 2; 1 helps telling code from contention on a busy machine)",
    )
    group.addoption(
        "--bench-no-memory",
        action="store_true",
        default=False,
        help="skip the extra profiled call that records peak allocated memory",
    )


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(config.getoption("--bench-threads"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


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
    """Minor page faults of this process so far: fresh memory the kernel had to map.

    Large blocks come from mmap and go back to the OS when freed, so a path that allocates a
    weight-sized temporary every call also pays its page faults every call.
    """
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
    """Peak of the bytes allocated during one call of `fn` and live at once (see module doc).

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


class Runner:
    """Times a `workloads.Workload` with pytest-benchmark and records its metadata."""

    def __init__(self, benchmark, config: pytest.Config) -> None:
        self.benchmark = benchmark
        quick = config.getoption("--bench-quick")
        budget = config.getoption("--bench-budget")
        self.budget = budget if budget is not None else (0.5 if quick else 2.0)
        self.min_rounds = 5 if quick else 7
        self.max_rounds = 30 if quick else 2000
        self.memory = not config.getoption("--bench-no-memory")

    @staticmethod
    def _probe(workload) -> float:
        """Call `fn` up to 3 times (within about 0.3 s); the fastest call estimates its cost.

        The minimum, because on the shared machine a single call can stall for a whole
        scheduler time slice, which would make a microsecond op look like a millisecond one.
        """
        times: list[float] = []
        while len(times) < 3 and sum(times) < 0.3:
            if workload.setup is not None and times:
                workload.setup()
            start = time.perf_counter()
            workload.fn()
            times.append(time.perf_counter() - start)
        return min(times)

    def __call__(self, workload, group: str, **info: object):
        benchmark = self.benchmark
        benchmark.group = group
        benchmark.extra_info.update(common_info())
        benchmark.extra_info.update(impl=workload.impl, shape=workload.shape, **workload.info, **info)
        with workload.path():
            if workload.setup is not None:
                workload.setup()
            probe = self._probe(workload)  # warm-up and cost estimate
            rounds = int(min(self.max_rounds, max(self.min_rounds, math.ceil(self.budget / max(probe, 1e-9)))))
            warmup = 0 if probe > 0.5 else (1 if probe > 0.05 else 2)
            benchmark.extra_info.update(probe_s=probe, rounds=rounds, warmup_rounds=warmup + 1)
            result = benchmark.pedantic(
                workload.fn, setup=workload.setup, rounds=rounds, iterations=1, warmup_rounds=warmup
            )
            del result
            if self.memory:
                if workload.setup is not None:
                    workload.setup()
                faults = minor_page_faults()
                benchmark.extra_info["peak_alloc_bytes"] = peak_allocated_bytes(workload.fn)
                benchmark.extra_info["minor_page_faults"] = minor_page_faults() - faults


@pytest.fixture
def run_workload(benchmark, request) -> Runner:
    """`run_workload(workload, group, **extra_info)`: time it in `group` and record extra_info."""
    return Runner(benchmark, request.config)
