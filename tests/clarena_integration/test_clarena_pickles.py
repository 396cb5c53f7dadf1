"""Whole modules saved with `torch.save`, as CLArena's `SaveModels` callback saves them:

* pickled by CLArena 1.1.0 alone (`make_clarena_pickles.py`, in a process where this package cannot
  be imported), they load here as this package's classes and compute what CLArena computed;
* pickled by `SaveModels` over this package's backbones, for HAT, AdaHAT, FG-AdaHAT and WSN, they
  load back and compute the run's own outputs.

Skipped unless CLArena 1.1.0 is installed (`.ci/clarena_integration.sh` sets up a venv).
"""

import contextlib
import io
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
from clarena_backbones import backbones as ours
from clarena_runs import run, task1_test_images

HERE = Path(__file__).resolve().parent
SAVED_BY_SAVE_MODELS = ("hat", "adahat", "fgadahat", "wsn")


@pytest.fixture(scope="module")
def clarena_pickles(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("clarena_pickles")
    root = Path(clarena_backbones.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(HERE / "make_clarena_pickles.py"), str(output)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return output


def load(path: Path):
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module")
def expected(clarena_pickles: Path) -> dict[str, torch.Tensor]:
    return torch.load(clarena_pickles / "expected.pt")


def test_every_clarena_backbone_class_path_is_this_packages():
    import clarena.backbones.constants as constants
    import clarena.backbones.mlp as mlp
    import clarena.backbones.resnet as resnet

    for name in ("MLP", "CLMLP", "HATMaskMLP", "WSNMaskMLP"):
        assert getattr(mlp, name) is getattr(ours, name)
    for depth in (18, 34, 50, 101, 152):
        for prefix in ("", "CL", "HATMask"):
            assert getattr(resnet, f"{prefix}ResNet{depth}") is getattr(ours, f"{prefix}ResNet{depth}")
    for name in ("ResNetBlockSmall", "ResNetBlockLarge", "ResNetBase", "HATMaskResNetBlockSmall",
                 "HATMaskResNetBlockLarge", "HATMaskResNetBase"):  # fmt: skip
        assert getattr(resnet, name).__module__.startswith("clarena_backbones.backbones."), name
    assert constants.__name__ == "clarena_backbones.backbones.constants"
    with pytest.raises(AttributeError, match="no attribute 'NoSuchNet'"):
        resnet.NoSuchNet


def test_clarenas_constants_are_its_own(clarena_pickles: Path):
    # CLArena's own module, read from its file, holds the same mappings
    import importlib.util

    clarena_dir = Path(importlib.util.find_spec("clarena").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("clarenas_constants", clarena_dir / "backbones" / "constants.py")
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    from clarena.backbones import constants

    for name in theirs.__all__:
        assert list(getattr(constants, name).items()) == list(getattr(theirs, name).items()), name


@pytest.mark.parametrize("name", ["MLP", "CLMLP"])
def test_clarenas_plain_mlps_load(clarena_pickles: Path, expected: dict, name: str):
    backbone = load(clarena_pickles / f"{name}.pth")
    assert type(backbone) is getattr(ours, name)
    assert not backbone.training
    torch.testing.assert_close(backbone(expected["x"], "test")[0], expected[name])


def test_clarenas_hat_mlp_loads_with_its_stored_masks(clarena_pickles: Path, expected: dict):
    state = torch.random.get_rng_state()
    backbone = load(clarena_pickles / "HATMaskMLP.pth")
    assert torch.equal(torch.random.get_rng_state(), state), "loading consumed random numbers"
    assert type(backbone) is ours.HATMaskMLP
    assert sorted(backbone.masks) == [1, 2] and backbone.masks["2"] is backbone.masks[2]
    masks = torch.cat([mask for task in (1, 2) for mask in backbone.masks[task].values()])
    assert torch.equal(masks, expected["HATMaskMLP/masks"])
    assert 0 < masks.sum() < masks.numel()
    for task_id in (1, 2):
        torch.testing.assert_close(backbone(expected["x"], "test", test_task_id=task_id)[0], expected[f"HATMaskMLP/{task_id}"])
    # this package's state: masks in state_dict, and it trains on
    assert any(key.startswith("stored_masks.2.") for key in backbone.state_dict())
    backbone.train()
    backbone.setup_task_id(3)
    feature, mask, _ = backbone(expected["x"], "train", s_max=400.0, batch_idx=1, num_batches=2)
    feature.sum().backward()
    assert backbone.task_embedding_t["fc/0"].weight.grad is not None


def test_clarenas_wsn_mlp_loads(clarena_pickles: Path, expected: dict):
    backbone = load(clarena_pickles / "WSNMaskMLP.pth")
    assert type(backbone) is ours.WSNMaskMLP
    assert backbone.task_id == 1
    torch.testing.assert_close(backbone(expected["x"], "validation", 0.5)[0], expected["WSNMaskMLP"])


@pytest.mark.parametrize(("name", "backbone_class"), [("HAT module", "HATMaskMLP"), ("WSN module", "WSNMaskMLP")])
def test_a_whole_clarena_module_loads_and_computes_the_same(clarena_pickles: Path, expected: dict, name, backbone_class):
    module = load(clarena_pickles / f"{name}.pth")
    assert type(module.backbone) is getattr(ours, backbone_class)
    module.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        output = module(task1_test_images("mlp"), stage="test", task_id=1)[0]
    torch.testing.assert_close(output, expected[name])


@pytest.mark.parametrize("algorithm", SAVED_BY_SAVE_MODELS)
def test_save_models_saves_and_loads_this_packages_backbones(algorithm: str):
    result = run(algorithm, "mlp")
    module = load(Path(result["saved_model"]))
    assert type(module.backbone).__module__.startswith("clarena_backbones.backbones.")
    module.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        output = module(task1_test_images("mlp"), stage="test", task_id=1)[0]
    torch.testing.assert_close(output, torch.tensor(result["task1_logits"][2]), rtol=0, atol=0)
