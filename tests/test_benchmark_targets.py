"""The benchmark report's targets name exactly the suite's groups, so a renamed group fails here
instead of losing its verdict."""

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture
def benchmark_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import targets
    import workloads

    return targets, workloads


def test_targets_and_workloads_name_the_same_groups(benchmark_modules):
    targets, workloads = benchmark_modules
    groups = {group for group, _ in workloads.all_workloads()}
    targets.check_groups(groups)
    with pytest.raises(ValueError, match="groups without an entry"):
        targets.check_groups(groups | {"percentile_mask n=renamed"})
    with pytest.raises(ValueError, match="goals for unknown groups"):
        targets.check_groups(groups - {workloads.group_percentile_mask("2^23")})


def test_an_unknown_group_is_an_error_and_row_goals_apply_to_their_rows(benchmark_modules):
    targets, workloads = benchmark_modules
    with pytest.raises(KeyError, match="no entry in targets.GOALS"):
        targets.targets_for("percentile_mask n=renamed", "-")
    test_forward = workloads.group_test_forward()
    assert [t.metric for t in targets.targets_for(test_forward, "WSNMaskMLP")] == ["reference/native", "peak native/reference"]
    assert [t.metric for t in targets.targets_for(test_forward, "HATMaskMLP")] == ["peak native/reference"]
    verdict = targets.targets_for(workloads.group_percentile_mask("2^23"), "-")[0]
    verdict.judge(9.0)
    assert verdict.status == "MISS"
    verdict.judge(float("nan"))
    assert verdict.status == "N/A"
