"""HAT-masked ResNets (and their blocks) against literal re-statements of CLArena's formulas."""

import copy
import io

import pytest
import torch
from backbone_helpers import (
    S_MAX,
    assert_close_dicts,
    assert_native_equals_reference,
    clarena_clip_grad,
    clarena_hat_mask,
    clarena_hat_resnet,
    clone_with_grads,
    finish_hat_task,
    with_finished_tasks,
    grads,
    images,
    param_count,
    prepared_hat,
    randomize_batch_norm,
    randomize_embeddings,
)
from torch import nn

import clarena.backbones as B
from clarena.backbones.hat_mask_resnet import HATMaskResNetBlockLarge, HATMaskResNetBlockSmall

pytestmark = pytest.mark.usefixtures("single_thread")

STAGES = ((1, 64, 2), (2, 128, 2), (3, 256, 2), (4, 512, 2))  # (stage, channels, blocks) of ResNet-18
# the shortcut conv of each stage's first block (stages 3-5) follows that block's convs
SHORTCUTS = ["conv3x/0/identity_downsample", "conv4x/0/identity_downsample", "conv5x/0/identity_downsample"]
RESNET18_LAYERS = ["conv1"] + [
    name
    for stage, _, blocks in STAGES
    for block in range(blocks)
    for name in [f"conv{stage + 1}x/{block}/conv{conv}" for conv in (1, 2)]
    + ([f"conv{stage + 1}x/{block}/identity_downsample"] if stage > 1 and block == 0 else [])
]


CLARENA_LAYERS = [name for name in RESNET18_LAYERS if name not in SHORTCUTS]  # mask_shortcuts=False


def make(batch_normalization=None, cls=B.HATMaskResNet18, mask_shortcuts=True) -> B.HATMaskResNet18:
    torch.manual_seed(0)
    backbone = cls(3, 512, "sigmoid", batch_normalization=batch_normalization, mask_shortcuts=mask_shortcuts)
    return prepared_hat(backbone)


def finish_task(backbone, task_id: int, seed: int) -> None:
    finish_hat_task(backbone, task_id, seed, images(seed=seed))


def stage_bns(backbone, stage, task):
    """CLArena's BN choice: live modules, or the task's copies in the test stages when independent."""
    copies = backbone.batch_normalization == "independent" and stage in ("test", "unlearning_test")

    def pick(module, name):
        if not backbone.batch_normalization:
            return None
        return module._modules[f"{name}s"][f"{task}"] if copies else module._modules[name]

    def block_bns(block):
        if not backbone.batch_normalization:
            return None
        return [pick(block, f"conv_bn{k}") for k in range(1, len(block.conv_layer_names) + 1)]

    return pick(backbone, "conv_bn1"), block_bns


# ---------------------------------------------------------------------------------- construction
def test_resnet18_structure():
    backbone = B.HATMaskResNet18(3, 512, "sigmoid")
    assert param_count(backbone) == 11_170_816 + 128 + 256 + 512  # CLArena's + the shortcut embeddings
    assert backbone.weighted_layer_names == RESNET18_LAYERS
    assert len(backbone.task_embedding_t) == 20
    assert sum(e.weight.numel() for e in backbone.task_embedding_t.values()) == 3_904 + 896
    # block embeddings first, the stem's last; shared with the blocks, not copied
    assert list(backbone.task_embedding_t) == RESNET18_LAYERS[1:] + ["conv1"]
    block = backbone.conv4x[1]
    assert backbone.task_embedding_t["conv4x/1/conv2"] is block.task_embedding_t["conv4x/1/conv2"]
    assert backbone.batch_normalization is None and backbone.batch_normalization_mode is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    downsampled = [b.identity_downsample is not None for b in backbone._iter_blocks()]
    assert downsampled == [False, False, True, False, True, False, True, False]
    assert block.full_1st_layer_name == "conv4x/1/conv1" and block.full_2nd_layer_name == "conv4x/1/conv2"


@pytest.mark.parametrize("cls", [B.HATMaskResNet18, B.AmnesiacHATResNet18])
def test_without_shortcut_masks_the_layers_are_clarenas(cls):
    """CLArena's weighted layers (list order, preceding layers), embeddings, parameters and keys."""
    backbone = cls(3, 512, "sigmoid", mask_shortcuts=False)
    assert backbone.mask_shortcuts is False and cls(3, 512, "sigmoid").mask_shortcuts is True
    assert backbone.weighted_layer_names == CLARENA_LAYERS
    assert [name for name, _ in backbone.named_weighted_layers()] == CLARENA_LAYERS
    assert list(backbone.task_embedding_t) == CLARENA_LAYERS[1:] + ["conv1"]
    assert param_count(backbone) == 11_170_816  # CLArena's HATMaskResNet18 [verified on its code]
    # CLArena's preceding layer is the previous name in the list
    for index, name in enumerate(CLARENA_LAYERS):
        assert backbone.preceding_layer_name(name) == (CLARENA_LAYERS[index - 1] if index else None)
    for block in backbone._iter_blocks():
        assert block.shortcut_layer_name is None and block.weighted_layer_names == block.conv_layer_names
    state = backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items() if not k.startswith("backup_")} == expected_keys(
        shortcut_embeddings=False
    )
    _, _, activations = backbone(images(), "train", S_MAX, 2, 10)
    assert list(activations) == CLARENA_LAYERS


def test_mask_shortcuts_must_be_a_bool():
    with pytest.raises(ValueError, match="`mask_shortcuts` must be one of True, False, got 'false'"):
        B.HATMaskResNet18(3, 512, "sigmoid", mask_shortcuts="false")


def test_without_shortcut_masks_every_training_step_method_leaves_the_shortcuts_out():
    """Adjustment, compensation, stored masks and their combination cover CLArena's layers only."""
    backbone = make(mask_shortcuts=False)
    backbone.setup_task_id(1)
    mask_1 = backbone.store_mask()
    assert list(mask_1) == list(backbone.te_to_binary_mask()) == CLARENA_LAYERS
    assert list(backbone.masks[1]) == CLARENA_LAYERS
    assert list(backbone.combine_masks([mask_1, mask_1], "union")) == CLARENA_LAYERS
    backbone.setup_task_id(2)
    feature, _, _ = backbone(images(), "train", S_MAX, 3, 10)
    feature.pow(2).sum().backward()
    unadjusted = grads(backbone)
    expected = clone_with_grads(backbone)
    clarena_clip_grad(expected, mask_1, "min", "hat")
    backbone.clip_grad_by_measure_(mask_1, "min", "hat")
    adjusted = grads(backbone)
    assert_close_dicts(adjusted, grads(expected))
    for shortcut in SHORTCUTS:  # as in CLArena: neither masked nor adjusted
        key = shortcut.replace("/", ".") + ".weight"
        assert torch.equal(adjusted[key], unadjusted[key]) and adjusted[key].abs().sum() > 0
    compensated = [e.weight for e in backbone.task_embedding_t.values()]
    assert len(compensated) == len(CLARENA_LAYERS)
    before = [weight.grad.clone() for weight in compensated]
    backbone.compensate_task_embedding_gradients(S_MAX, 50.0, 3, 10)
    assert all(not torch.equal(weight.grad, old) for weight, old in zip(compensated, before))


def test_outputs_differ_from_the_default_only_through_the_shortcut_masks():
    masked = make("independent")
    plain = make("independent", mask_shortcuts=False)
    plain.load_state_dict({k: v for k, v in masked.state_dict().items() if k in plain.state_dict()}, strict=True)
    masked.setup_task_id(1)
    plain.setup_task_id(1)
    masked.store_mask()
    plain.masks[1] = {name: masked.masks[1][name] for name in plain.weighted_layer_names}
    masked.eval()
    plain.eval()
    inputs = images()
    feature, _, activations = plain(inputs, "test", test_task_id=1)
    expected, expected_activations = masked(inputs, "test", test_task_id=1)[::2]
    assert not torch.allclose(feature, expected)  # the stored shortcut masks hold zeros
    masked.masks[1].update({shortcut: torch.ones_like(masked.masks[1][shortcut]) for shortcut in SHORTCUTS})
    expected, expected_activations = masked(inputs, "test", test_task_id=1)[::2]
    torch.testing.assert_close(feature, expected, rtol=0, atol=0)
    assert_close_dicts(activations, {k: v for k, v in expected_activations.items() if k not in SHORTCUTS}, rtol=0, atol=0)


def test_checkpoints_round_trip_with_and_across_the_shortcut_switch():
    backbone = with_finished_tasks(make("independent", mask_shortcuts=False), lambda seed: images(seed=seed))
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert not any("identity_downsample" in key for key in state if "task_embedding_t" in key or "stored" in key)
    inputs = images(seed=9)
    outputs = {task: backbone(inputs, "test", test_task_id=task)[0] for task in (1, 2)}
    fresh = B.HATMaskResNet18(3, 512, "sigmoid", batch_normalization="independent", mask_shortcuts=False)
    fresh.load_state_dict(state, strict=True)
    # the default backbone loads it too: each shortcut takes its block's last-conv embedding and
    # stored masks, so every stored task computes what it computed
    default = B.HATMaskResNet18(3, 512, "sigmoid", batch_normalization="independent")
    default.load_state_dict(state, strict=True)
    for shortcut in SHORTCUTS:
        last_conv = shortcut.replace("identity_downsample", "conv2")
        assert torch.equal(default.masks[2][shortcut], default.masks[2][last_conv])
        block = default.get_layer_by_name(shortcut.rsplit("/", 1)[0])
        assert torch.equal(block.masks[2][shortcut], default.masks[2][last_conv])
    for model in (fresh.eval(), default.eval()):
        for task in (1, 2):
            torch.testing.assert_close(model(inputs, "test", test_task_id=task)[0], outputs[task], rtol=0, atol=0)
    # the other way round, the shortcut embeddings have no place
    with pytest.raises(RuntimeError, match="identity_downsample"):
        fresh.load_state_dict(default.state_dict(), strict=True)


def expected_keys(tasks=(), batch_normalization=False, shortcut_embeddings=True) -> dict[str, tuple]:
    """HATMaskResNet18 state_dict keys and shapes; CLArena's without the shortcut embeddings."""
    keys = {"conv1.weight": (64, 3, 7, 7)}
    bn_names = ["conv_bn1"] if batch_normalization else []
    for prefix, channels in [("", 64)]:
        for name in bn_names:
            keys.update(bn_keys(f"{prefix}{name}", channels, tasks))
    preceding = 64
    for stage, channels, blocks in STAGES:
        for block in range(blocks):
            base = f"conv{stage + 1}x.{block}"
            keys[f"{base}.conv1.weight"] = (channels, preceding, 3, 3)
            keys[f"{base}.conv2.weight"] = (channels, channels, 3, 3)
            if batch_normalization:
                for conv in (1, 2):
                    keys.update(bn_keys(f"{base}.conv_bn{conv}", channels, tasks))
            if preceding != channels:
                keys[f"{base}.identity_downsample.weight"] = (channels, preceding, 1, 1)
            for conv in (1, 2):
                keys[f"{base}.task_embedding_t.conv{stage + 1}x/{block}/conv{conv}.weight"] = (1, channels)
            if shortcut_embeddings and preceding != channels:
                keys[f"{base}.task_embedding_t.conv{stage + 1}x/{block}/identity_downsample.weight"] = (1, channels)
            preceding = channels
    for name in RESNET18_LAYERS:
        if shortcut_embeddings or name not in SHORTCUTS:
            channels = 64 if name == "conv1" else int(STAGES[int(name[4]) - 2][1])
            keys[f"task_embedding_t.{name}.weight"] = (1, channels)
    return keys


def bn_keys(name, channels, tasks):
    keys = {}
    for owner in [name] + [f"{name}s.{task}" for task in tasks]:
        for stat in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{owner}.{stat}"] = (channels,)
        keys[f"{owner}.num_batches_tracked"] = ()
    return keys


@pytest.mark.parametrize("batch_normalization", [None, "independent"])
def test_state_dict_keys_and_clarena_checkpoint_loads(batch_normalization):
    backbone = make(batch_normalization)
    tasks = (1,) if batch_normalization else ()
    for task in tasks:
        backbone.setup_task_id(task)
    state = backbone.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_keys(tasks, bool(batch_normalization))
    # a CLArena checkpoint: the same keys (no stored masks), other values; the block embeddings
    # appear twice (outer and block dict) for one shared parameter, so the values come from a model
    source = make(batch_normalization)
    for task in tasks:
        source.setup_task_id(task)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(torch.rand_like(parameter))
    checkpoint = source.state_dict()
    fresh = make(batch_normalization)
    fresh.load_state_dict(checkpoint, strict=True)  # a fresh backbone builds the per-task BN copies
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, checkpoint[key].to(value.dtype))
    # CLArena's checkpoint has no shortcut embeddings: each takes its block's last-conv embedding
    clarena_checkpoint = {key: value for key, value in checkpoint.items() if "task_embedding_t.conv" not in key or not key.endswith("identity_downsample.weight")}
    assert set(clarena_checkpoint) == set(expected_keys(tasks, bool(batch_normalization), shortcut_embeddings=False))
    fresh = make(batch_normalization)
    fresh.load_state_dict(clarena_checkpoint, strict=True)
    for shortcut in SHORTCUTS:
        last_conv = shortcut.replace("identity_downsample", "conv2")
        assert torch.equal(fresh.task_embedding_t[shortcut].weight, checkpoint[f"task_embedding_t.{last_conv}.weight"])
        block = fresh.get_layer_by_name(shortcut.rsplit("/", 1)[0])
        assert block.task_embedding_t[shortcut] is fresh.task_embedding_t[shortcut]


# -------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("mask_shortcuts", [True, False])
@pytest.mark.parametrize("batch_normalization", [None, "shared"])
def test_train_stage_matches_clarena(batch_normalization, mask_shortcuts):
    backbone = make(batch_normalization, mask_shortcuts=mask_shortcuts)
    backbone.setup_task_id(1)
    reference = copy.deepcopy(backbone)
    x = images()
    feature, mask, activations = backbone(x, "train", S_MAX, 2, 10)
    expected_mask = clarena_hat_mask(reference, "train", S_MAX, 2, 10)
    expected, expected_activations = clarena_hat_resnet(reference, x, expected_mask, *stage_bns(reference, "train", 1))
    assert list(mask) == (RESNET18_LAYERS if mask_shortcuts else CLARENA_LAYERS)
    assert_close_dicts(mask, expected_mask)
    torch.testing.assert_close(feature, expected)
    assert_close_dicts(activations, expected_activations)
    feature.pow(2).sum().backward()
    expected.pow(2).sum().backward()
    assert_close_dicts(grads(backbone), grads(reference), rtol=1e-3, atol=1e-5)
    assert backbone.task_embedding_t["conv5x/1/conv2"].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "batch_normalization, mask_shortcuts", [(None, True), ("shared", True), ("independent", True), ("independent", False)]
)
def test_test_stages_match_clarena(batch_normalization, mask_shortcuts):
    backbone = make(batch_normalization, mask_shortcuts=mask_shortcuts)
    backbone = with_finished_tasks(backbone, lambda seed: images(seed=seed), seeds=(31, 32))
    inputs = images()
    for task in (1, 2):
        stored = backbone.masks[task]
        feature, mask, activations = backbone(inputs, "test", test_task_id=task)
        assert list(mask) == list(stored) == backbone.weighted_layer_names
        assert_close_dicts(mask, stored)
        expected, expected_activations = clarena_hat_resnet(backbone, inputs, stored, *stage_bns(backbone, "test", task))
        torch.testing.assert_close(feature, expected)
        assert_close_dicts(activations, expected_activations)
    feature, mask, _ = backbone(inputs, "unlearning_test", test_task_id=2)
    assert all(torch.equal(m, torch.ones_like(m)) for m in mask.values())
    expected, _ = clarena_hat_resnet(backbone, inputs, mask, *stage_bns(backbone, "unlearning_test", 2))
    torch.testing.assert_close(feature, expected)
    feature, mask, _ = backbone(inputs, "validation", s_max=S_MAX)
    expected_mask = clarena_hat_mask(backbone, "validation")
    assert_close_dicts(mask, expected_mask)
    expected, _ = clarena_hat_resnet(backbone, inputs, expected_mask, *stage_bns(backbone, "validation", 2))
    torch.testing.assert_close(feature, expected)


def test_masks_are_computed_once_per_forward(monkeypatch):
    backbone = make()
    calls = []
    original = type(backbone)._gated_masks
    monkeypatch.setattr(type(backbone), "_gated_masks", lambda self, scale: calls.append(self) or original(self, scale))
    for block in backbone._iter_blocks():
        monkeypatch.setattr(block, "get_mask", None)  # blocks must not compute their own
    backbone(images(), "train", S_MAX, 2, 10)
    assert calls == [backbone]


def test_store_mask_gives_each_block_its_slice():
    backbone = make()
    backbone.setup_task_id(1)
    mask_t = backbone.store_mask()
    assert list(backbone.masks[1]) == RESNET18_LAYERS
    for block in backbone._iter_blocks():
        assert list(block.masks[1]) == block.weighted_layer_names
        for name in block.weighted_layer_names:
            assert block.masks[1][name] is mask_t[name]


@pytest.mark.parametrize("block_cls, channels", [(HATMaskResNetBlockSmall, 16), (HATMaskResNetBlockLarge, 8)])
def test_standalone_block_matches_clarena(block_cls, channels):
    torch.manual_seed(0)
    block = block_cls("conv3x", 0, 12, channels, 2, gate="sigmoid", batch_normalization="shared")
    randomize_embeddings(block)
    randomize_batch_norm(block)
    block.setup_task_id(1)
    x = torch.randn(2, 12, 8, 8)
    reference = copy.deepcopy(block)
    output, mask, activations = block(x, "train", S_MAX, 5, 10)
    expected_mask = clarena_hat_mask(reference, "train", S_MAX, 5, 10)
    assert_close_dicts(mask, expected_mask)
    identity = reference.identity_downsample(x) * expected_mask["conv3x/0/identity_downsample"].view(1, -1, 1, 1)
    convs = [reference.conv1, reference.conv2] + ([reference.conv3] if hasattr(reference, "conv3") else [])
    z = x
    for index, (conv, name) in enumerate(zip(convs, reference.conv_layer_names)):
        z = reference._modules[f"conv_bn{index + 1}"](conv(z))
        if index == len(convs) - 1:
            z = z + identity  # the residual add comes before the mask
        z = torch.relu(z * expected_mask[name].view(1, -1, 1, 1))
        torch.testing.assert_close(activations[name], z)
    torch.testing.assert_close(output, z)
    assert output.shape == (2, channels * block_cls.expansion, 4, 4)
    block.store_mask()
    block.eval()
    output, mask, _ = block(x, "test", test_task_id=1)
    assert_close_dicts(mask, block.masks[1])


def test_nested_block_runs_standalone_with_its_slice():
    backbone = make()
    finish_task(backbone, 1, seed=4)
    block = backbone.conv3x[0]
    x = torch.randn(1, 64, 8, 8)
    output, mask, _ = block(x, "test", test_task_id=1)
    assert list(mask) == ["conv3x/0/conv1", "conv3x/0/conv2", "conv3x/0/identity_downsample"]
    assert output.shape == (1, 128, 4, 4)


# ----------------------------------------------------------------------------------- state_dict
def test_state_dict_round_trip_with_independent_bn():
    backbone = make("independent")
    finish_task(backbone, 1, seed=41)
    finish_task(backbone, 2, seed=42)
    backbone.eval()
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    stored = [key for key in state if "stored_masks" in key]
    assert len(stored) == 2 * 20 and all(key.startswith("stored_masks.") for key in stored)  # only at the root
    fresh = B.HATMaskResNet18(3, 512, "sigmoid", batch_normalization="independent")
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    x = images(seed=9)
    for task in (1, 2):
        expected = backbone(x, "test", test_task_id=task)[0]
        torch.testing.assert_close(fresh(x, "test", test_task_id=task)[0], expected, rtol=0, atol=0)
        block = fresh.conv5x[1]
        assert_close_dicts(block.masks[task], {n: backbone.masks[task][n] for n in block.weighted_layer_names})


# ------------------------------------------------------------------------------ ops and measures
def test_native_path_equals_reference_path():
    backbone = make("shared")
    assert_native_equals_reference(backbone, lambda model: model(images(), "train", S_MAX, 3, 10), rtol=1e-3, atol=1e-5)


def test_clip_grad_by_measure_on_conv_weights_matches_clarena_loop():
    backbone = make()
    feature, _, _ = backbone(images(), "train", S_MAX, 3, 10)
    feature.pow(2).sum().backward()
    generator = torch.Generator().manual_seed(0)
    measure = {
        name: (torch.rand(backbone.get_layer_by_name(name).weight.size(0), generator=generator) > 0.4).float()
        for name in backbone.weighted_layer_names
    }
    expected = clone_with_grads(backbone)
    unadjusted = grads(backbone)
    clarena_clip_grad(expected, measure, "min", "hat")
    backbone.clip_grad_by_measure_(measure, "min", "hat")
    assert_close_dicts(grads(backbone), grads(expected))
    # a shortcut conv is adjusted by its own measure and that of the layer feeding its block
    name = "conv3x.0.identity_downsample.weight"
    rows = measure["conv3x/0/identity_downsample"].view(-1, 1, 1, 1)
    columns = measure["conv2x/1/conv2"].view(1, -1, 1, 1)
    torch.testing.assert_close(grads(backbone)[name], unadjusted[name] * (1 - torch.minimum(rows, columns)))


def test_forward_does_not_scan_modules(monkeypatch):
    backbone = make("independent")
    finish_task(backbone, 1, seed=5)
    backbone(images(), "test", test_task_id=1)

    def fail(*args, **kwargs):
        raise AssertionError("named_modules called during a forward")

    for module in list(backbone.modules()):
        monkeypatch.setattr(module, "named_modules", fail)
    for stage in ("train", "validation", "test", "unlearning_test"):
        backbone(images(), stage, S_MAX, 2, 10, test_task_id=1)


# ---------------------------------------------------------------------------- no forgetting
def train_hat_task(backbone, task_id: int, cumulative: dict | None, skip: tuple[str, ...] = ()) -> dict:
    """Three SGD steps of task `task_id` with CLArena's HAT gradient clipping by `cumulative` (the
    layers in `skip` left alone, as CLArena's HAT ResNet left its shortcuts); returns the new mask."""
    backbone.setup_task_id(task_id)
    backbone.initialize_task_embedding("N01")
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
    inputs = images(seed=50 + task_id)
    for step in range(1, 4):
        optimizer.zero_grad()
        feature, _, _ = backbone(inputs, "train", S_MAX, step, 3)
        feature.pow(2).mean().backward()
        if cumulative is not None:
            kept = {name: layer for name, layer in backbone.named_weighted_layers() if name in skip}
            saved = {name: layer.weight.grad.clone() for name, layer in kept.items()}
            clarena_clip_grad(backbone, cumulative, "min", "hat")
            for name, layer in kept.items():
                layer.weight.grad.copy_(saved[name])
        optimizer.step()
    return backbone.store_mask()


@pytest.mark.parametrize("cls", [B.HATMaskResNet18, B.AmnesiacHATResNet18])
@pytest.mark.parametrize("shortcuts", ["masked", "masked, not adjusted", "not masked"])
def test_task_2_leaves_task_1_test_outputs_unchanged(cls, shortcuts):
    torch.manual_seed(0)
    backbone = cls(3, 512, "sigmoid", mask_shortcuts=shortcuts != "not masked")
    masked = tuple(name for name in backbone.weighted_layer_names if name.endswith("identity_downsample"))
    assert masked == (() if shortcuts == "not masked" else tuple(SHORTCUTS))
    mask_1 = train_hat_task(backbone, 1, None)
    x = images(seed=7)
    backbone.eval()
    before = backbone(x, "test", test_task_id=1)[0]
    backbone.train()
    train_hat_task(backbone, 2, mask_1, skip=masked if shortcuts == "masked, not adjusted" else ())
    backbone.eval()
    after = backbone(x, "test", test_task_id=1)[0]
    if shortcuts == "masked":
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    else:  # the forgetting that masking and adjusting the shortcuts prevents (CLArena's, when not masked)
        assert not torch.equal(after, before)
