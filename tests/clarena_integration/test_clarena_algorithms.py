"""CLArena 1.1.0's own, unchanged algorithms (Finetuning, HAT, AdaHAT, FG-AdaHAT, WSN) over this
package's backbones: they run, match CLArena's own backbones wherever those run, and HAT and WSN
keep task 1. Skipped unless CLArena 1.1.0 is installed (`.ci/clarena_integration.sh` sets up a venv).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

try:
    import clarena.cl_algorithms  # noqa: F401
except ImportError as error:
    pytest.skip(
        f"CLArena is not installed ({error}); .ci/clarena_integration.sh runs this suite", allow_module_level=True
    )

import clarena_backbones
from clarena_runs import ALGORITHMS, BACKBONES, EPOCHS, RESULT_MARKER, backbone_class_name, build_backbone, run, state_dict_cases

HERE = Path(__file__).resolve().parent
# The runs CLArena's own backbones survive (its HATMaskResNet18 cannot be built, its CLResNet18
# forward returns None, its WSN cannot train, and its AdaHAT/FG-AdaHAT stop at KeyError: '1').
RUNS_ON_CLARENAS_BACKBONES = ("finetuning:mlp", "hat:mlp", "hat_const_alpha:mlp")
KEEPS_TASK_1 = ("hat", "hat_const_alpha", "wsn")
# The hard-clipping algorithms freeze every parameter task 1 uses, so its outputs stay exactly.
KEEPS_TASK_1_OUTPUTS = ("hat", "wsn")


def clarena_script(*arguments: str) -> subprocess.CompletedProcess:
    """`clarena_runs.py --original-backbones ...` in a new interpreter (CLArena's own backbones)."""
    root = Path(clarena_backbones.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(HERE / "clarena_runs.py"), "--original-backbones", *arguments]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def clarena_output(*arguments: str):
    stdout = clarena_script(*arguments).stdout
    line = next(line for line in stdout.splitlines() if line.startswith(RESULT_MARKER))
    return json.loads(line[len(RESULT_MARKER) :])


@pytest.fixture(scope="module")
def clarena_results() -> dict:
    return clarena_output("--runs", *RUNS_ON_CLARENAS_BACKBONES)


def test_clarena_algorithms_see_this_package():
    from clarena.cl_algorithms import hat

    assert clarena.backbones is clarena_backbones.backbones
    assert hat.HATMaskBackbone is clarena_backbones.backbones.HATMaskBackbone


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_runs(algorithm: str, backbone: str):
    result = run(algorithm, backbone)
    losses = [loss for task_losses in result["train_loss"].values() for loss in task_losses]
    assert len(losses) == 2 * EPOCHS * 4  # tasks x epochs x batches
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sorted(result["test_acc"][2]) == [1, 2]
    if backbone == "mlp":  # (24 steps are too few for a ResNet-18 to learn from scratch)
        assert result["test_acc"][1][1] > 0.5 and result["test_acc"][2][2] > 0.5, result["test_acc"]


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("algorithm", KEEPS_TASK_1)
def test_keeps_task_1(algorithm: str, backbone: str):
    result = run(algorithm, backbone)
    assert result["test_acc"][2][1] == result["test_acc"][1][1], f"{backbone_class_name(algorithm, backbone)} forgot task 1"
    before, after = (torch.tensor(result["task1_logits"][task]) for task in (1, 2))
    if algorithm in KEEPS_TASK_1_OUTPUTS:
        torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_finetuning_forgets_task_1_outputs():
    # the reference point of the test above: without protection, task 2 changes task 1's outputs
    result = run("finetuning", "mlp")
    before, after = (torch.tensor(result["task1_logits"][task]) for task in (1, 2))
    assert not torch.equal(before, after)


@pytest.mark.parametrize("spec", RUNS_ON_CLARENAS_BACKBONES)
def test_equals_clarenas_own_backbones(spec: str, clarena_results: dict):
    ours = json.loads(json.dumps(run(*spec.split(":"))))  # int keys become strings, as in theirs
    theirs = clarena_results[spec]
    assert ours["test_acc"] == theirs["test_acc"]
    for key in ("train_loss", "test_loss", "task1_logits"):
        torch.testing.assert_close(
            torch.tensor(_flatten(ours[key])), torch.tensor(_flatten(theirs[key])), rtol=1e-5, atol=1e-6
        )


def test_every_clarena_state_dict_loads_strictly():
    layouts = clarena_output("--state-dicts")
    assert sorted(layouts) == sorted(state_dict_cases())
    assert any(key.startswith("fc_bn.") for key in layouts["HATMaskMLP"])  # 1.1.0 always builds it
    generator = torch.Generator().manual_seed(0)
    for label, layout in layouts.items():
        state = {
            key: torch.randn(shape, generator=generator).to(getattr(torch, dtype.removeprefix("torch.")))
            for key, (shape, dtype) in layout.items()
        }
        ours = build_backbone(label)
        ours.load_state_dict(state, strict=True)
        loaded = ours.state_dict()
        for key, tensor in state.items():
            if key in loaded:
                assert torch.equal(loaded[key], tensor), f"{label}: {key}"


def _flatten(value) -> list[float]:
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _flatten(value[key])]
    if isinstance(value, list):
        return [x for item in value for x in _flatten(item)]
    return [float(value)]
