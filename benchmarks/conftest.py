"""pytest-benchmark suite of clarena's ops and masked backbones: options, seeding and the runner.

Protocol: CPU, float32, 2 torch threads, the reference and the native path in the same process,
the median of at least 5 timed rounds after warm-up (the rounds policy, the probe and the
peak-memory measurement are in timing.py). Run it with `python benchmarks/report.py` (or
`pytest benchmarks`; `benchmarks/pytest.ini` collects `bench_*.py`, which the main `pytest`
run, testpaths=tests, never does).
"""

from __future__ import annotations

import pytest
import timing

timing.configure()


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
        default=timing.NUM_THREADS,
        help="torch threads (the protocol is 2; 1 helps telling code from contention on a busy machine)",
    )
    group.addoption(
        "--bench-no-memory",
        action="store_true",
        default=False,
        help="skip the extra profiled call that records peak allocated memory",
    )


def pytest_configure(config: pytest.Config) -> None:
    timing.configure(config.getoption("--bench-threads"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    torch.manual_seed(0)


class Runner:
    """Times a `workloads.Workload` with pytest-benchmark and records its metadata."""

    def __init__(self, benchmark, config: pytest.Config) -> None:
        self.benchmark = benchmark
        self.policy = timing.RoundsPolicy.of(config.getoption("--bench-quick"), config.getoption("--bench-budget"))
        self.memory = not config.getoption("--bench-no-memory")

    def __call__(self, workload, group: str, **info: object):
        benchmark = self.benchmark
        benchmark.group = group
        benchmark.extra_info.update(timing.common_info())
        benchmark.extra_info.update(impl=workload.impl, shape=workload.shape, **workload.info, **info)
        with workload.path():
            probe = timing.probe(workload)  # warm-up and cost estimate
            rounds = self.policy.rounds(probe)
            warmup = timing.warmup_rounds(probe)
            benchmark.extra_info.update(probe_s=probe, rounds=rounds, warmup_rounds=warmup + 1)
            result = benchmark.pedantic(
                workload.fn, setup=workload.setup, rounds=rounds, iterations=1, warmup_rounds=warmup
            )
            del result
        if self.memory:
            benchmark.extra_info.update(timing.memory_info(workload))


@pytest.fixture
def run_workload(benchmark, request) -> Runner:
    """`run_workload(workload, group, **extra_info)`: time it in `group` and record extra_info."""
    return Runner(benchmark, request.config)
