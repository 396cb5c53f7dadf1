"""Whole epochs with HAT's annealed gate and WSN's moving scores (epoch_workloads.py): the plain
backbone, this package, and, with CLArena 1.1.0 installed, CLArena's own training_step on its own
backbones and accelerated on this package's. Rows CLArena cannot build are skipped with the reason.
The protocol is `report.py --interleave --timer thread --threads 1`; here they run one after another."""

import pytest

import epoch_workloads as ew


def _clarena_workloads():
    pytest.importorskip("clarena.cl_algorithms", reason="CLArena (clarena==1.1.0) is not installed")
    import clarena_workloads

    return clarena_workloads


def _built(builder):
    try:
        return builder()
    except Exception as error:  # noqa: BLE001  (a backbone CLArena 1.1.0 cannot build)
        pytest.skip(f"could not build: {type(error).__name__}: {error}")


@pytest.mark.parametrize("impl", ["plain", "native", "clarena", "accelerated"])
@pytest.mark.parametrize(("algorithm", "arch"), ew.EPOCH_GROUPS)
def test_epoch(run_workload, algorithm, arch, impl):
    if impl == "plain":
        workload = ew.plain_epoch(arch)
    elif impl == "native":
        workload = ew.epoch(algorithm, arch)
    else:
        cw = _clarena_workloads()
        workload = _built(lambda: cw.clarena_epoch(algorithm, arch, impl))
    run_workload(workload, ew.group_epoch(algorithm, arch))


@pytest.mark.parametrize("impl", ["native", "clarena"])
@pytest.mark.parametrize("size", list(ew.FTZ_ARCHS))
def test_forward_backward_flush_to_zero(run_workload, size, impl):
    if impl == "native":
        workload = ew.native_forward_backward(size)
    else:
        cw = _clarena_workloads()
        workload = _built(lambda: cw.clarena_forward_backward(size))
    run_workload(workload, ew.group_ftz(size))
