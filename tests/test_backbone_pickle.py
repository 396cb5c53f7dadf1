"""`torch.save` of whole backbones (as CLArena's `SaveModels` saves whole modules) at every stage of
training, loaded back to the same outputs, masks and state."""

import io

import pytest
import torch

from backbone_helpers import MLP_ARGS, S_MAX, images, vectors
from clarena_backbones import backbones as B

MLP = ("MLP", "CLMLP", "HATMaskMLP", "AmnesiacHATMLP", "WSNMaskMLP")
RESNET = ("ResNet18", "CLResNet18", "HATMaskResNet18", "AmnesiacHATResNet18", "WSNMaskResNet18")
STAGES = ("built", "trained a step", "task stored", "tested", "second task")


def build(name: str) -> torch.nn.Module:
    arguments = dict(MLP_ARGS) if name in MLP else {"input_channels": 3, "output_dim": 64}
    if "HAT" in name:
        arguments["gate"] = "sigmoid"
    return getattr(B, name)(**arguments)


def inputs(name: str) -> torch.Tensor:
    return vectors() if name in MLP else images()


def forward(backbone: torch.nn.Module, x: torch.Tensor, stage: str, task_id: int | None = None) -> torch.Tensor:
    if isinstance(backbone, B.HATMaskBackbone):
        return backbone(x, stage, s_max=S_MAX, batch_idx=1, num_batches=2, test_task_id=task_id)[0]
    if isinstance(backbone, B.WSNMaskBackbone):
        return backbone(x, stage, 0.5, test_mask=task_id)[0]
    return backbone(x, stage)[0]


def train_step(backbone: torch.nn.Module, x: torch.Tensor) -> None:
    forward(backbone, x, "train").square().mean().backward()
    with torch.no_grad():
        for parameter in backbone.parameters():
            if parameter.grad is not None:
                parameter -= 0.1 * parameter.grad


def store(backbone: torch.nn.Module) -> None:
    if isinstance(backbone, B.HATMaskBackbone):
        backbone.store_mask()
    elif isinstance(backbone, B.WSNMaskBackbone):
        backbone.store_mask(backbone.task_id, 0.5)


def advance(backbone: torch.nn.Module, x: torch.Tensor, stage: str) -> int | None:
    """Bring `backbone` to `stage`; the task to test it on (None: no stored task)."""
    masked = isinstance(backbone, (B.HATMaskBackbone, B.WSNMaskBackbone))
    if stage == "built":
        return None
    if masked:
        backbone.setup_task_id(1)
    train_step(backbone, x)
    if stage == "trained a step":
        return None
    store(backbone)
    if stage == "task stored":
        return 1 if masked else None
    forward(backbone.eval(), x, "test", 1 if masked else None)
    if stage == "tested":
        return 1 if masked else None
    backbone.train()
    if masked:
        backbone.setup_task_id(2)
    train_step(backbone, x)
    store(backbone)
    return 1 if masked else None


def saved_and_loaded(module: torch.nn.Module) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


# ResNets (slow to build) at the stage that has everything: two tasks stored, test caches filled
CASES = [(name, stage) for name in MLP for stage in STAGES] + [(name, STAGES[-1]) for name in RESNET]


@pytest.mark.parametrize(("name", "stage"), CASES)
def test_a_whole_backbone_saves_and_loads_at_every_stage(name: str, stage: str):
    torch.manual_seed(0)
    backbone = build(name)
    x = inputs(name)
    task_id = advance(backbone, x, stage)
    loaded = saved_and_loaded(backbone)
    assert type(loaded) is type(backbone)
    assert loaded.training == backbone.training
    state, loaded_state = backbone.state_dict(), loaded.state_dict()
    assert list(loaded_state) == list(state)
    for key, tensor in state.items():
        assert torch.equal(loaded_state[key], tensor), key
    if task_id is not None:
        assert sorted(loaded.masks) == sorted(backbone.masks)
        assert loaded.masks["1"] is loaded.masks[1]  # still a StoredMasks
    masked = isinstance(backbone, (B.HATMaskBackbone, B.WSNMaskBackbone))
    stage_name = "validation" if masked and task_id is None else "test"
    backbone.eval(), loaded.eval()
    with torch.no_grad():
        expected = forward(backbone, x, stage_name, task_id)
        torch.testing.assert_close(forward(loaded, x, stage_name, task_id), expected, rtol=0, atol=0)
    # the loaded module trains on, with its hooks: a state_dict round trip through it is exact
    if masked:
        loaded.train()
        loaded.setup_task_id(3)
        train_step(loaded, x)
        fresh = build(name)
        fresh.load_state_dict(loaded.state_dict())
        assert sorted(fresh.masks) == sorted(loaded.masks)

