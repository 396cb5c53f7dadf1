"""The demo end to end through its real entry points, on a tiny configuration."""

import json
import subprocess
import sys

import pytest

from clarena.demo.cli import main

METHODS = ("finetune", "hat", "wsn")
TINY = ["--epochs", "1", "--num-tasks", "2", "--hidden", "32,32", "--no-progress"]


def run_demo(tmp_path, *extra: str) -> dict:
    assert main([*TINY, "--output", str(tmp_path), *extra]) == 0
    return json.loads((tmp_path / "results.json").read_text())


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    return directory, run_demo(directory)  # compare-reference is on by default


def test_help_runs_as_a_module():
    # `python -m clarena` is the same module through the import hook (tests/test_clarena_alias.py)
    done = subprocess.run([sys.executable, "-m", "clarena_backbones", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "clarena-demo" in done.stdout and "--compare-reference" in done.stdout


def test_results_json_holds_every_method(tiny_results):
    _, results = tiny_results
    assert results["config"]["num_tasks"] == 2 and len(results["tasks"]) == 2
    assert set(results["methods"]) == set(METHODS)
    for name, method in results["methods"].items():
        assert {"acc_matrix", "avg_acc", "forgetting", "seconds_native", "seconds_reference"} <= set(method), name
        matrix = method["acc_matrix"]
        # Row t: after training task t+1; only tasks seen so far have an accuracy.
        assert len(matrix) == 2 and all(len(row) == 2 for row in matrix), name
        assert matrix[0][1] is None, name
        seen = [matrix[0][0], matrix[1][0], matrix[1][1]]
        assert all(0.0 <= acc <= 1.0 for acc in seen), name
        assert method["avg_acc"] == pytest.approx((matrix[1][0] + matrix[1][1]) / 2), name
        # Two tasks: forgetting is task 1's accuracy after task 1 minus after task 2.
        assert method["forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0]), name
        assert method["seconds_native"] > 0 and method["seconds_reference"] > 0, name


def test_masked_methods_do_not_forget(tiny_results):
    # HAT freezes the weights between units task 1 uses, WSN the weights its subnetwork holds:
    # task 1's test accuracy must not move at all while task 2 trains.
    _, results = tiny_results
    for name in ("hat", "wsn"):
        matrix = results["methods"][name]["acc_matrix"]
        assert matrix[1][0] == matrix[0][0], name


def test_reference_run_repeats_the_same_training(tiny_results):
    # Same seed, same batches on both paths. Finetuning runs no clarena op, so its two runs must
    # agree exactly; the masked methods may differ in the last bits of a summed gradient.
    _, results = tiny_results
    finetune = results["methods"]["finetune"]
    assert finetune["reference_acc_matrix"] == finetune["acc_matrix"]


def test_png_is_written(tiny_results):
    directory, _ = tiny_results
    png = directory / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_results(tmp_path):
    first = run_demo(tmp_path / "first", "--no-compare-reference", "--seed", "3")
    second = run_demo(tmp_path / "second", "--no-compare-reference", "--seed", "3")
    for name in METHODS:
        assert first["methods"][name]["acc_matrix"] == second["methods"][name]["acc_matrix"], name
        assert first["methods"][name]["seconds_reference"] is None
