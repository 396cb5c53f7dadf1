"""The benchmark report's targets name exactly the suite's groups, so a renamed group fails here
instead of losing its verdict; and the suite's modules import one another without a cycle."""

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture
def benchmark_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gate_workloads
    import step_workloads
    import targets
    import workloads

    return targets, workloads, gate_workloads, step_workloads


def test_targets_and_workloads_name_the_same_groups(benchmark_modules):
    targets, workloads, gate_workloads, _ = benchmark_modules
    groups = {group for group, _ in workloads.all_workloads()}
    targets.check_groups(groups)
    with pytest.raises(ValueError, match="groups without an entry"):
        targets.check_groups(groups | {"percentile_mask n=renamed"})
    with pytest.raises(ValueError, match="goals for unknown groups"):
        targets.check_groups(groups - {gate_workloads.group_percentile_mask("2^23")})


def test_an_unknown_group_is_an_error_and_row_goals_apply_to_their_rows(benchmark_modules):
    targets, _, gate_workloads, step_workloads = benchmark_modules
    with pytest.raises(KeyError, match="no entry in targets.GOALS"):
        targets.targets_for("percentile_mask n=renamed", "-")
    test_forward = step_workloads.group_test_forward()
    assert [t.metric for t in targets.targets_for(test_forward, "WSNMaskMLP")] == ["reference/native", "peak native/reference"]
    assert [t.metric for t in targets.targets_for(test_forward, "HATMaskMLP")] == ["peak native/reference"]
    verdict = targets.targets_for(gate_workloads.group_percentile_mask("2^23"), "-")[0]
    verdict.judge(9.0)
    assert verdict.status == "MISS"
    verdict.judge(float("nan"))
    assert verdict.status == "N/A"


def test_the_one_step_groups_name_the_gate_scale_they_use(benchmark_modules):
    _, _, _, step_workloads = benchmark_modules
    for arch in step_workloads.ARCHS:
        assert step_workloads.group_train_step(arch).endswith(f"s={step_workloads.step_scale(step_workloads.ARCHS[arch]):.3g}")


def sibling_imports() -> dict[str, set[str]]:
    """Module -> the benchmark modules it imports (at any depth of its code)."""
    modules = {path.stem: path for path in BENCHMARKS.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        graph[name] = imported & set(modules)
    return graph


def test_benchmark_modules_import_each_other_without_a_cycle_and_stay_short():
    graph = sibling_imports()
    assert graph["gate_workloads"] == {"common"}  # a family imports the shared module, not the registry
    try:
        TopologicalSorter(graph).static_order()
    except CycleError as error:
        pytest.fail(f"the benchmark modules import each other in a cycle: {error.args[1]}")
    assert not [name for name, imported in graph.items() if "workloads" in imported and name.endswith("_workloads")]
    lengths = {path.name: len(path.read_text().splitlines()) for path in BENCHMARKS.glob("*.py")}
    assert max(lengths.values()) <= 300, lengths
