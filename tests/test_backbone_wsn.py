"""WSN-masked backbones: score gate, masked layers, stored packed masks and the test-stage cache."""

import copy
import io
import math

import pytest
import torch
from backbone_helpers import (
    MLP_ARGS,
    assert_close_dicts,
    assert_native_equals_reference,
    clarena_wsn_gate,
    clarena_wsn_masks,
    clarena_wsn_mlp,
    expected_mlp_keys,
    grads,
    images,
    param_count,
    shapes,
    vectors,
)

import clarena
import clarena.backbones as B
from clarena.backbones import wsn_mask_backbone

pytestmark = pytest.mark.usefixtures("single_thread")


def make(bias=True, mode="N01", seed=0, **kwargs) -> B.WSNMaskMLP:
    torch.manual_seed(seed)
    backbone = B.WSNMaskMLP(**MLP_ARGS, bias=bias, **kwargs)
    backbone.initialize_parameter_score(mode)
    return backbone


def expected_keys(bias=True) -> dict[str, tuple]:
    keys = {}
    for i, (fan_in, width) in enumerate(((20, 32), (32, 16), (16, 8))):
        keys[f"weight_score_t.fc/{i}.weight"] = (width, fan_in)
    for i, width in enumerate((32, 16, 8)):
        keys[f"bias_score_t.fc/{i}.weight"] = (1, width)  # built even without biases, as in CLArena
    keys.update(expected_mlp_keys(False, bias=bias))
    return keys


def count_calls(monkeypatch, name):
    calls = []
    original = getattr(wsn_mask_backbone, name)
    monkeypatch.setattr(wsn_mask_backbone, name, lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    return calls


# ---------------------------------------------------------------------------------- construction
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_keys_and_clarena_checkpoint_loads(bias):
    backbone = make(bias)
    assert shapes(backbone.state_dict()) == expected_keys(bias)
    checkpoint = {key: torch.randn(shape) for key, shape in expected_keys(bias).items()}
    fresh = make(bias, seed=1)
    fresh.load_state_dict(checkpoint, strict=True)
    assert_close_dicts(fresh.state_dict(), checkpoint)


def test_attributes():
    backbone = make()
    assert backbone.batch_normalization is False and not hasattr(backbone, "fc_bn")
    assert backbone.masks == {} and backbone.weighted_layer_names == ["fc/0", "fc/1", "fc/2"]
    score = torch.randn(7, 9)
    torch.testing.assert_close(backbone.gate_fn.apply(score, 0.4), clarena_wsn_gate(score, 0.4))


@pytest.mark.parametrize("n", [10, 11, 100])
@pytest.mark.parametrize("percentage", [0.3, 0.5, 1.0])
def test_gate_keeps_the_top_fraction(n, percentage):
    backbone = B.WSNMaskMLP(input_dim=n, hidden_dims=[], output_dim=1)
    with torch.no_grad():
        backbone.weight_score_t["fc/0"].weight.copy_(torch.randperm(n).float().view(1, n))
    weight_mask, _ = backbone.get_mask("train", percentage)
    assert int(weight_mask["fc/0"].sum()) == 1 + math.floor(percentage * (n - 1))


def test_initialize_parameter_score_modes():
    backbone = make(mode="default")
    for name, fan_in in zip(backbone.weighted_layer_names, (20, 32, 16)):
        bound = 1 / math.sqrt(fan_in)
        assert backbone.weight_score_t[name].weight.abs().max() <= bound
        assert backbone.bias_score_t[name].weight.abs().max() <= bound
    backbone.initialize_parameter_score("U01")
    assert all(s.weight.min() >= 0 and s.weight.max() <= 1 for s in backbone.weight_score_t.values())
    backbone.initialize_parameter_score("N01")
    assert backbone.weight_score_t["fc/0"].weight.abs().max() > 1
    with pytest.raises(ValueError, match="`mode`.*'default'"):
        backbone.initialize_parameter_score("kaiming")


# -------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("percentage", [0.3, 0.7, 1.0])
@pytest.mark.parametrize("stage", ["train", "validation"])
def test_forward_and_gradients_match_clarena_with_straight_through_scores(percentage, stage):
    """CLArena's gate had no backward at all; the intended straight-through gradient is tested."""
    backbone = make()
    reference = copy.deepcopy(backbone)
    x = vectors()
    feature, weight_mask, bias_mask, activations = backbone(x, stage, percentage)
    expected_weight_mask, expected_bias_mask = clarena_wsn_masks(reference, percentage)
    expected, expected_activations = clarena_wsn_mlp(reference, x, expected_weight_mask, expected_bias_mask)
    assert_close_dicts(weight_mask, expected_weight_mask)
    assert_close_dicts(bias_mask, expected_bias_mask)
    torch.testing.assert_close(feature, expected)
    assert_close_dicts(activations, expected_activations)
    feature.pow(2).sum().backward()
    expected.pow(2).sum().backward()
    assert_close_dicts(grads(backbone), grads(reference))
    for name, fc in zip(backbone.weighted_layer_names, backbone.fc):
        # weights outside the subnetwork get no gradient; the scores get the straight-through one
        assert torch.all(fc.weight.grad[weight_mask[name] == 0] == 0)
        assert backbone.weight_score_t[name].weight.grad.abs().sum() > 0


def test_no_bias_masks_for_bias_less_layers(monkeypatch):
    backbone = make(bias=False)
    calls = count_calls(monkeypatch, "score_masked_parameters")  # one call, a list of score tensors
    _, weight_mask, bias_mask, _ = backbone(vectors(), "train", 0.5)
    assert bias_mask == {"fc/0": None, "fc/1": None, "fc/2": None}
    assert len(calls[0]) == 3  # the weight scores only (CLArena also gated the unused bias scores)
    with_bias = make(bias=True)
    calls.clear()
    with_bias(vectors(), "train", 0.5)
    assert len(calls[0]) == 6


def test_stage_and_argument_errors():
    backbone = make()
    with pytest.raises(ValueError, match="`stage`.*'validation'"):
        backbone(vectors(), "unlearning_test", 0.5)
    with pytest.raises(ValueError, match="`test_mask`"):
        backbone(vectors(), "test", 0.5)
    with pytest.raises(KeyError, match="task 3"):
        backbone(vectors(), "test", 0.5, test_mask=3)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="`mask_percentage`"):
            backbone(vectors(), "train", bad)


# ------------------------------------------------------------------------------- stored masks
def trained_tasks(backbone, percentages=(0.5, 0.3)):
    """Store a mask per task from fresh scores; returns the float masks CLArena's WSN would keep."""
    floats = {}
    for task, percentage in enumerate(percentages, 1):
        backbone.setup_task_id(task)
        backbone.initialize_parameter_score("N01")
        floats[task] = backbone.store_mask(task, percentage)
    return floats


@pytest.mark.parametrize("bias", [True, False])
def test_store_mask_packs_the_gate_of_the_current_scores(bias):
    backbone = make(bias)
    expected_weight, expected_bias = clarena_wsn_masks(backbone, 0.4)
    weight_mask, bias_mask = backbone.store_mask(7, 0.4)
    assert_close_dicts(weight_mask, expected_weight)
    packed_weight, packed_bias = backbone.masks[7]
    for name, fc in zip(backbone.weighted_layer_names, backbone.fc):
        assert packed_weight[name].dtype == torch.uint8
        assert packed_weight[name].numel() == math.ceil(fc.weight.numel() / 8)
        torch.testing.assert_close(clarena.ops.unpack_mask(packed_weight[name], fc.weight.shape), expected_weight[name])
        if bias:
            torch.testing.assert_close(bias_mask[name], expected_bias[name])
            torch.testing.assert_close(clarena.ops.unpack_mask(packed_bias[name], fc.bias.shape), expected_bias[name])
        else:
            assert bias_mask[name] is None and packed_bias[name] is None


def test_packed_masks_take_32_times_less_memory():
    backbone = B.WSNMaskMLP(input_dim=784, hidden_dims=[256, 100], output_dim=64)
    weight_mask, bias_mask = backbone.store_mask(1, 0.7)
    float_bytes = sum(m.numel() * m.element_size() for m in [*weight_mask.values(), *bias_mask.values()])
    packed_weight, packed_bias = backbone.masks[1]
    packed_bytes = sum(m.numel() * m.element_size() for m in [*packed_weight.values(), *packed_bias.values()])
    assert float_bytes == 4 * (232_704 + 420)
    assert float_bytes / packed_bytes >= 31.9


@pytest.mark.parametrize("bias", [True, False])
def test_test_stage_accepts_float_packed_and_task_id_masks(bias):
    backbone = make(bias)
    floats = trained_tasks(backbone)
    x = vectors()
    for task, (weight_mask, bias_mask) in floats.items():
        expected, expected_activations = clarena_wsn_mlp(backbone, x, weight_mask, bias_mask)
        for test_mask in ((weight_mask, bias_mask), backbone.masks[task], task):
            with torch.no_grad():
                feature, *masks, activations = backbone(x, "test", 0.5, test_mask=test_mask)
            torch.testing.assert_close(feature, expected)
            assert_close_dicts(activations, expected_activations)
        assert backbone(x, "test", 0.5, test_mask=task)[1] is backbone.masks[task][0]  # returned as stored


def test_test_stage_reuses_masked_weights_until_something_changes(monkeypatch):
    backbone = make()
    floats = trained_tasks(backbone)
    calls = count_calls(monkeypatch, "masked_weight")
    x = vectors()
    with torch.no_grad():
        first = backbone(x, "test", 0.5, test_mask=1)[0]
        assert len(calls) == 6  # 3 weights + 3 biases
        second = backbone(x, "test", 0.5, test_mask=1)[0]
        assert len(calls) == 6 and torch.equal(first, second)  # reused across batches
        backbone.fc[1].weight.add_(0.5)  # e.g. an optimizer step
        updated = backbone(x, "test", 0.5, test_mask=1)[0]
        assert len(calls) == 8  # only the changed layer (weight and bias) was masked again
        torch.testing.assert_close(updated, clarena_wsn_mlp(backbone, x, *floats[1])[0])
        backbone(x, "test", 0.5, test_mask=2)  # another task's masks
        assert len(calls) == 14
    # with autograd on, nothing is cached and the weights get gradients
    feature = backbone(x, "test", 0.5, test_mask=2)[0]
    feature.sum().backward()
    assert len(calls) == 20 and backbone.fc[0].weight.grad is not None


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trip_with_packed_masks(bias):
    backbone = make(bias=bias)
    trained_tasks(backbone)
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    kinds = ("weight", "bias") if bias else ("weight",)
    assert sorted(k for k in state if k.startswith("stored_masks.")) == sorted(
        f"stored_masks.{task}.{kind}.fc/{i}" for task in (1, 2) for kind in kinds for i in range(3)
    )
    assert all(state[k].dtype == torch.uint8 for k in state if k.startswith("stored_masks."))
    fresh = B.WSNMaskMLP(**MLP_ARGS, bias=bias)
    fresh.load_state_dict(state, strict=True)
    x = vectors()
    with torch.no_grad():
        for task in (1, 2):
            for mine, theirs in zip(fresh.masks[task], backbone.masks[task]):
                assert mine.keys() == theirs.keys()
                for name in theirs:
                    assert (mine[name] is None and theirs[name] is None) or torch.equal(mine[name], theirs[name]), (task, name)
            expected = backbone(x, "test", 0.5, test_mask=task)[0]
            torch.testing.assert_close(fresh(x, "test", 0.5, test_mask=task)[0], expected, rtol=0, atol=0)


def test_native_path_equals_reference_path():
    assert_native_equals_reference(make(), lambda model: model(vectors(), "train", 0.6))


# ----------------------------------------------------------------------------------------- ResNet
def masked_plain_copy(backbone, weight_mask, bias_mask):
    """A plain ResNet-18 holding the WSN backbone's weights times their masks."""
    plain = B.ResNet18(3, 512, batch_normalization=False)
    wsn_only = ("weight_score_t", "bias_score_t", "stored_masks")
    state = {k: v for k, v in backbone.state_dict().items() if not k.startswith(wsn_only)}
    for name in backbone.weighted_layer_names:
        key = name.replace("/", ".") + ".weight"
        state[key] = state[key] * weight_mask[name].detach()
    plain.load_state_dict(state)
    return plain


def test_resnet18_structure_and_forward():
    torch.manual_seed(0)
    backbone = B.WSNMaskResNet18(3, 512)
    backbone.initialize_parameter_score("default")
    plain = B.ResNet18(3, 512, batch_normalization=False)
    # the plain layers, with each shortcut conv after its block's convs
    shortcuts = {"conv3x/0/conv2": "conv3x/0/identity_downsample", "conv4x/0/conv2": "conv4x/0/identity_downsample", "conv5x/0/conv2": "conv5x/0/identity_downsample"}
    expected_names = [n for name in plain.weighted_layer_names for n in (name, shortcuts.get(name)) if n]
    assert backbone.weighted_layer_names == expected_names
    conv_weights = sum(backbone.get_layer_by_name(n).weight.numel() for n in backbone.weighted_layer_names)
    assert conv_weights == 10_994_880 + 64 * 128 + 128 * 256 + 256 * 512
    assert param_count(backbone) == param_count(plain) + conv_weights + 3_904 + 128 + 256 + 512
    assert backbone.weight_score_t["conv3x/0/conv1"].weight.shape == (128, 64, 3, 3)
    assert backbone.weight_score_t["conv3x/0/identity_downsample"].weight.shape == (128, 64, 1, 1)
    x = images()
    feature, weight_mask, bias_mask, activations = backbone(x, "train", 0.7)
    assert weight_mask["conv3x/0/conv1"].shape == (128, 64, 3, 3) and set(bias_mask.values()) == {None}
    expected, expected_activations = masked_plain_copy(backbone, weight_mask, bias_mask)(x)
    torch.testing.assert_close(feature, expected)
    assert list(activations) == [name for name in expected_names if name in activations]
    assert_close_dicts({name: activations[name] for name in expected_activations}, expected_activations)
    assert activations.keys() == set(expected_names)
    feature.sum().backward()
    conv = backbone.conv4x[1].conv2
    assert torch.all(conv.weight.grad[weight_mask["conv4x/1/conv2"] == 0] == 0)
    shortcut = backbone.conv4x[0].identity_downsample
    assert torch.all(shortcut.weight.grad[weight_mask["conv4x/0/identity_downsample"] == 0] == 0)
    assert backbone.weight_score_t["conv4x/1/conv2"].weight.grad.abs().sum() > 0
    # test stage from a stored (packed) mask, through the cache
    weight_mask, bias_mask = backbone.store_mask(1, 0.5)
    with torch.no_grad():
        for _ in range(2):
            feature = backbone(x, "test", 0.5, test_mask=1)[0]
            torch.testing.assert_close(feature, masked_plain_copy(backbone, weight_mask, bias_mask)(x)[0])


def test_stored_masks_answer_int_and_string_task_ids():
    backbone = B.WSNMaskMLP(20, [32, 16], 8)
    backbone.setup_task_id(1)
    backbone.store_mask(1, 0.5)
    assert backbone.masks["1"] is backbone.masks[1] and list(backbone.masks) == [1]
    fresh = B.WSNMaskMLP(20, [32, 16], 8)
    fresh.load_state_dict(backbone.state_dict())
    assert "1" in fresh.masks and list(fresh.masks) == [1]
