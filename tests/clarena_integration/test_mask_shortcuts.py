"""`mask_shortcuts=False` against CLArena 1.1.0's own HATMaskResNet18, on the same parameters.

CLArena 1.1.0 cannot build its HATMaskResNet18: its blocks read `self.gate` while the parent
constructor builds them, before `HATMaskBackbone` sets it. The reference below is that class with
the one-line fix (`self.gate` set first). Its root alone stores the masks, where its blocks do not
look in the test stage, so the reference also gives each block its slice, as this package does.

Run as a script (`python test_mask_shortcuts.py OUT`, in a new interpreter with the import hook
taken off) it records CLArena's side of one HAT training step into OUT: state_dicts, weighted
layers, masks, outputs, activations, parameter-wise measures and the gradients after CLArena's
own `HAT.clip_grad_by_adjustment` and `HAT.compensate_task_embedding_gradients`. The tests repeat
the step on this package's HATMaskResNet18 and compare at float tolerance. Skipped unless CLArena
1.1.0 is installed (`.ci/clarena_integration.sh` sets up a venv).
"""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

S_MAX, CLAMP_THRESHOLD = 400.0, 50.0
BATCH_IDX, NUM_BATCHES = 3, 10  # a soft training mask
AGGREGATIONS = ("min", "max")  # CLArena's 'mean' raises


def algorithm(backbone: torch.nn.Module, cumulative_mask: dict) -> types.SimpleNamespace:
    """What CLArena's HAT methods read from the algorithm object."""
    return types.SimpleNamespace(
        backbone=backbone,
        cumulative_mask_for_previous_tasks=cumulative_mask,
        adjustment_mode="hat",
        s_max=S_MAX,
        clamp_threshold=CLAMP_THRESHOLD,
        device="cpu",
    )


def spread_embeddings(backbone: torch.nn.Module, seed: int) -> None:
    """Embeddings of both signs and a spread, so soft masks are neither all on nor all off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for embedding in backbone.task_embedding_t.values():
            embedding.weight.copy_(0.02 * torch.randn(embedding.weight.shape, generator=generator))


def training_step(backbone: torch.nn.Module, inputs: torch.Tensor, cumulative_mask: dict) -> dict:
    """A HAT step of task 2: forward, backward, then CLArena's own adjustment and compensation."""
    from clarena.cl_algorithms.hat import HAT

    backbone.zero_grad()
    feature, mask, activations = backbone(inputs, "train", S_MAX, BATCH_IDX, NUM_BATCHES)
    feature.pow(2).sum().backward()
    state = algorithm(backbone, cumulative_mask)
    HAT.clip_grad_by_adjustment(state)
    HAT.compensate_task_embedding_gradients(state, BATCH_IDX, NUM_BATCHES)
    grads = {name: p.grad.clone() for name, p in backbone.named_parameters() if p.grad is not None}
    return {"feature": feature.detach(), "mask": detached(mask), "activations": detached(activations), "grads": grads}


def detached(tensors: dict) -> dict:
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


def record_clarena_reference(path: str) -> None:
    """CLArena's side, written to `path` (run with CLArena's own backbones)."""
    from clarena.backbones import resnet

    class HATMaskResNet18(resnet.HATMaskResNet18):
        def __init__(self, *args, gate: str, **kwargs) -> None:
            self.gate = gate  # the fix: the blocks built by the parent constructor read it
            super().__init__(*args, gate=gate, **kwargs)

    torch.manual_seed(0)
    backbone = HATMaskResNet18(input_channels=3, output_dim=512, gate="sigmoid")
    inputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    record = {"module": resnet.__name__, "inputs": inputs, "weighted_layer_names": list(backbone.weighted_layer_names)}
    record["preceding"] = {name: backbone.preceding_layer_name(name) for name in backbone.weighted_layer_names}

    backbone.setup_task_id(1)
    spread_embeddings(backbone, seed=11)
    record["state_task_1"] = detached(backbone.state_dict())
    record["validation"] = backbone(inputs, "validation", s_max=S_MAX)[0].detach()
    mask_1 = backbone.store_mask()
    for block in (block for stage in ("conv2x", "conv3x", "conv4x", "conv5x") for block in getattr(backbone, stage)):
        block.masks[1] = {name: mask_1[name] for name in block.weighted_layer_names}
    record["mask_1"] = detached(mask_1)
    test_feature, _, test_activations = backbone(inputs, "test", test_task_id=1)
    record["test"] = {"feature": test_feature.detach(), "activations": detached(test_activations)}
    record["measures"] = {
        aggregation: {
            name: backbone.get_layer_measure_parameter_wise(mask_1, name, aggregation)[0].clone()
            for name in backbone.weighted_layer_names
        }
        for aggregation in AGGREGATIONS
    }

    backbone.setup_task_id(2)
    spread_embeddings(backbone, seed=12)
    record["state_task_2"] = detached(backbone.state_dict())
    record["train"] = training_step(backbone, inputs, mask_1)
    torch.save(record, path)


# before the skip below: that import would bring in this package's backbones through the hook
if __name__ == "__main__":
    import _clarena_backbones_hook

    _clarena_backbones_hook.uninstall()
    record_clarena_reference(sys.argv[1])
    sys.exit(0)


try:
    import clarena.cl_algorithms  # noqa: F401
except ImportError as error:
    pytest.skip(
        f"CLArena is not installed ({error}); .ci/clarena_integration.sh runs this suite", allow_module_level=True
    )

import clarena_backbones
from clarena_backbones.backbones import HATMaskResNet18


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """CLArena's record, made in a new interpreter on CLArena's own backbones."""
    path = tmp_path_factory.mktemp("clarena") / "hat_mask_resnet18.pt"
    root = Path(clarena_backbones.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, __file__, str(path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    record = torch.load(path, weights_only=True)
    assert record["module"] == "clarena.backbones.resnet"  # CLArena's own
    return record


def loaded(state: dict, **arguments) -> HATMaskResNet18:
    backbone = HATMaskResNet18(3, 512, "sigmoid", **arguments)
    backbone.load_state_dict(state, strict=True)
    return backbone


def assert_close_dicts(actual: dict, expected: dict, **tolerance) -> None:
    assert list(actual) == list(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **tolerance, msg=lambda m, key=key: f"{key}: {m}")


def test_weighted_layers_and_state_dict_keys_are_clarenas(reference):
    backbone = loaded(reference["state_task_1"], mask_shortcuts=False)
    assert backbone.weighted_layer_names == reference["weighted_layer_names"]
    preceding = {name: backbone.preceding_layer_name(name) for name in backbone.weighted_layer_names}
    assert preceding == reference["preceding"]
    assert list(backbone.state_dict()) == list(reference["state_task_1"])
    default = loaded(reference["state_task_1"])  # shortcut convs are weighted layers with embeddings
    extra = set(default.state_dict()) - set(reference["state_task_1"])
    assert extra and all(key.endswith("identity_downsample.weight") and "task_embedding_t" in key for key in extra)
    assert set(default.weighted_layer_names) - set(reference["weighted_layer_names"]) == {
        f"conv{stage}x/0/identity_downsample" for stage in (3, 4, 5)
    }


def test_masks_outputs_and_measures_are_clarenas(reference):
    inputs = reference["inputs"]
    backbone = loaded(reference["state_task_1"], mask_shortcuts=False)
    backbone.setup_task_id(1)
    torch.testing.assert_close(backbone(inputs, "validation", s_max=S_MAX)[0], reference["validation"])
    assert_close_dicts(backbone.te_to_binary_mask(), reference["mask_1"], rtol=0, atol=0)
    mask_1 = backbone.store_mask()
    feature, mask, activations = backbone(inputs, "test", test_task_id=1)
    assert_close_dicts(mask, reference["mask_1"], rtol=0, atol=0)
    torch.testing.assert_close(feature, reference["test"]["feature"])
    assert_close_dicts(activations, reference["test"]["activations"])
    for aggregation, measures in reference["measures"].items():
        for name, expected in measures.items():
            weight_measure, _ = backbone.get_layer_measure_parameter_wise(mask_1, name, aggregation)
            torch.testing.assert_close(weight_measure, expected, rtol=0, atol=0)


@pytest.mark.parametrize("methods", ["CLArena's HAT methods", "the backbone's own methods"])
def test_a_training_step_is_clarenas(reference, methods):
    """Forward, backward, gradient adjustment and embedding compensation of a task-2 step."""
    backbone = loaded(reference["state_task_1"], mask_shortcuts=False)
    backbone.setup_task_id(1)
    mask_1 = backbone.store_mask()
    backbone.load_state_dict(reference["state_task_2"], strict=True)  # keeps the stored masks
    backbone.setup_task_id(2)
    inputs = reference["inputs"]
    if methods == "CLArena's HAT methods":
        step = training_step(backbone, inputs, mask_1)
    else:
        feature, mask, activations = backbone(inputs, "train", S_MAX, BATCH_IDX, NUM_BATCHES)
        feature.pow(2).sum().backward()
        backbone.clip_grad_by_measure_(mask_1, "min", "hat")
        backbone.compensate_task_embedding_gradients(S_MAX, CLAMP_THRESHOLD, BATCH_IDX, NUM_BATCHES)
        grads = {name: p.grad for name, p in backbone.named_parameters() if p.grad is not None}
        step = {"feature": feature, "mask": mask, "activations": activations, "grads": grads}
    expected = reference["train"]
    torch.testing.assert_close(step["feature"], expected["feature"])
    assert_close_dicts(step["mask"], expected["mask"])
    assert_close_dicts(step["activations"], expected["activations"])
    assert_close_dicts(step["grads"], expected["grads"], rtol=1e-4, atol=1e-6)
    # CLArena adjusts no shortcut conv: their gradients are the plain ones
    shortcut = step["grads"]["conv4x.0.identity_downsample.weight"]
    assert shortcut.abs().sum() > 0


def test_the_default_masks_the_shortcuts_and_keeps_clarenas_stored_tasks(reference):
    """Loaded from CLArena's state, the default backbone computes CLArena's outputs under binary
    (stored) masks, and other outputs under soft training masks, where its shortcut masks act."""
    inputs = reference["inputs"]
    backbone = loaded(reference["state_task_1"])
    backbone.setup_task_id(1)
    backbone.store_mask()
    torch.testing.assert_close(backbone(inputs, "test", test_task_id=1)[0], reference["test"]["feature"])
    backbone.load_state_dict(reference["state_task_2"], strict=True)
    backbone.setup_task_id(2)
    feature = backbone(inputs, "train", S_MAX, BATCH_IDX, NUM_BATCHES)[0]
    assert not torch.allclose(feature, reference["train"]["feature"], rtol=1e-3, atol=1e-5)
