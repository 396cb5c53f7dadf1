"""CLArena's own HAT training_step, with CLArena's per-step methods and accelerated (clarena_workloads.py)."""

import pytest

pytest.importorskip("clarena.cl_algorithms", reason="CLArena (clarena==1.1.0) is not installed")

import clarena_workloads as cw  # noqa: E402


@pytest.mark.parametrize("impl", ["reference", "native"])
@pytest.mark.parametrize("arch", list(cw.HAT_BACKBONE))
def test_clarena_train_step(run_workload, arch, impl):
    run_workload(cw.clarena_train_step(arch, impl), cw.group_clarena_train_step(arch))
