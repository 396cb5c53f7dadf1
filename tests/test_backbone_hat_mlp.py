"""HATMaskMLP and the HATMaskBackbone API, against literal re-statements of CLArena's formulas."""

import contextlib
import copy
import io

import pytest
import torch
from backbone_helpers import (
    MLP_ARGS,
    S_MAX,
    assert_close_dicts,
    assert_native_equals_reference,
    clarena_anneal,
    clarena_clip_grad,
    clarena_hat_mask,
    clarena_hat_mlp,
    clarena_layer_measure,
    clone_with_grads,
    expected_mlp_keys,
    finish_hat_task,
    grads,
    prepared_hat,
    randomize_embeddings,
    shapes,
    vectors,
    with_finished_tasks,
)
from torch import nn

import clarena
import clarena.backbones as B

pytestmark = pytest.mark.usefixtures("single_thread")


def make(batch_normalization=None, **kwargs) -> B.HATMaskMLP:
    torch.manual_seed(0)
    backbone = B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=batch_normalization, **kwargs)
    return prepared_hat(backbone)


def finish_task(backbone, task_id: int, seed: int) -> None:
    finish_hat_task(backbone, task_id, seed, vectors(seed=seed))


def expected_hat_keys(batch_normalization, tasks=()) -> dict[str, tuple]:
    keys = expected_mlp_keys(batch_normalization is not None)
    for i, width in enumerate((32, 16, 8)):
        keys[f"task_embedding_t.fc/{i}.weight"] = (1, width)
    for task in tasks:
        for i, width in enumerate((32, 16, 8)):
            for stat in ("weight", "bias", "running_mean", "running_var"):
                keys[f"fc_bns.{task}.{i}.{stat}"] = (width,)
            keys[f"fc_bns.{task}.{i}.num_batches_tracked"] = ()
    return keys


# ---------------------------------------------------------------------------------- construction
@pytest.mark.parametrize("batch_normalization", [None, "shared", "independent"])
def test_state_dict_keys_and_clarena_checkpoint_loads(batch_normalization):
    backbone = make(batch_normalization)
    tasks = (1, 2) if batch_normalization == "independent" else ()
    for task in tasks:
        backbone.setup_task_id(task)
    assert shapes(backbone.state_dict()) == expected_hat_keys(batch_normalization, tasks)
    # a CLArena checkpoint (exactly its keys, no stored masks) loads strictly
    checkpoint = {
        key: torch.randn(shape) if shape else torch.tensor(5)
        for key, shape in expected_hat_keys(batch_normalization, tasks).items()
    }
    fresh = make(batch_normalization)
    fresh.load_state_dict(checkpoint, strict=True)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, checkpoint[key].to(value.dtype))


def test_attributes():
    backbone = make("independent")
    assert backbone.gate == "sigmoid" and isinstance(backbone.gate_fn, nn.Sigmoid)
    assert backbone.masks == {} and backbone.batch_normalization == "independent"
    assert len(backbone.fc_bns) == 0 and set(backbone.original_fc_bn_state_dict) == set(backbone.fc_bn.state_dict())
    assert list(backbone.task_embedding_t) == ["fc/0", "fc/1", "fc/2"]
    assert B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=False).batch_normalization is False
    assert not hasattr(B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=False), "fc_bn")


def test_parameter_count():
    backbone = make()
    assert sum(p.numel() for p in backbone.parameters()) == (20 * 32 + 32) + (32 * 16 + 16) + (16 * 8 + 8) + 56


# -------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("batch_normalization", [None, "shared", "independent"])
@pytest.mark.parametrize("batch_idx", [0, 1, 7])
def test_train_stage_matches_clarena(batch_normalization, batch_idx):
    backbone = make(batch_normalization, dropout=None)
    backbone.setup_task_id(1)
    reference = copy.deepcopy(backbone)
    x = vectors()
    feature, mask, activations = backbone(x, "train", s_max=S_MAX, batch_idx=batch_idx, num_batches=10)
    expected_mask = clarena_hat_mask(reference, "train", S_MAX, batch_idx, 10)
    expected, expected_activations = clarena_hat_mlp(
        reference, x, expected_mask, None if batch_normalization is None else reference.fc_bn
    )
    assert_close_dicts(mask, expected_mask)
    torch.testing.assert_close(feature, expected)
    assert_close_dicts(activations, expected_activations)
    (feature.sum() + sum(m.sum() for m in mask.values())).backward()
    (expected.sum() + sum(m.sum() for m in expected_mask.values())).backward()
    assert_close_dicts(grads(backbone), grads(reference))
    # the task embeddings learn through the masks
    assert all(backbone.task_embedding_t[name].weight.grad.abs().sum() > 0 for name in backbone.weighted_layer_names)


def test_anneal_scale_follows_clarena_including_its_batch_offset():
    backbone = make()
    for batch_idx, num_batches in [(0, 421), (1, 421), (420, 421), (0, 35), (5, float("inf"))]:
        scale = clarena_anneal(S_MAX, batch_idx, num_batches)
        mask = backbone.get_mask("train", S_MAX, batch_idx, num_batches)
        expected = torch.sigmoid(backbone.task_embedding_t["fc/1"].weight * scale).view(-1)
        torch.testing.assert_close(mask["fc/1"], expected)
    assert clarena_anneal(S_MAX, 0, 421) < 0  # batch 0 inverts the masks, as in CLArena


def test_one_batch_epoch_uses_s_max():
    """CLArena divided by zero when an epoch has a single batch."""
    backbone = make()
    mask = backbone.get_mask("train", S_MAX, batch_idx=0, num_batches=1)
    torch.testing.assert_close(mask["fc/0"], torch.sigmoid(backbone.task_embedding_t["fc/0"].weight * S_MAX).view(-1))
    feature, _, _ = backbone(vectors(), "train", S_MAX, 0, 1)
    assert torch.isfinite(feature).all()


@pytest.mark.parametrize("batch_normalization", [None, "shared", "independent"])
def test_validation_stage_matches_clarena(batch_normalization):
    backbone = make(batch_normalization).eval()
    backbone.setup_task_id(1)
    x = vectors()
    feature, mask, activations = backbone(x, "validation", s_max=S_MAX)
    expected_mask = clarena_hat_mask(backbone, "validation", S_MAX)
    expected, _ = clarena_hat_mlp(backbone, x, expected_mask, None if batch_normalization is None else backbone.fc_bn)
    assert_close_dicts(mask, expected_mask)
    torch.testing.assert_close(feature, expected)


def bn_for_test(backbone, task):
    if backbone.batch_normalization == "independent":
        return backbone.fc_bns[f"{task}"]
    return backbone.fc_bn if backbone.batch_normalization else None


@pytest.mark.parametrize("batch_normalization", [None, "shared", "independent"])
def test_test_and_unlearning_test_stages(batch_normalization):
    backbone = with_finished_tasks(make(batch_normalization), lambda seed: vectors(seed=seed), seeds=(11, 12))
    x = vectors()
    for task in (1, 2):
        feature, mask, activations = backbone(x, "test", test_task_id=task)
        stored = backbone.masks[task]
        assert_close_dicts(mask, stored)
        bn = bn_for_test(backbone, task)
        expected, expected_activations = clarena_hat_mlp(backbone, x, stored, bn)
        torch.testing.assert_close(feature, expected)
        assert_close_dicts(activations, expected_activations)
    feature, mask, _ = backbone(x, "unlearning_test", test_task_id=1)
    ones = {name: torch.ones(width) for name, width in zip(backbone.weighted_layer_names, (32, 16, 8))}
    assert_close_dicts(mask, ones)
    bn = bn_for_test(backbone, 1)
    torch.testing.assert_close(feature, clarena_hat_mlp(backbone, x, ones, bn)[0])


def test_stored_masks_are_binary_embedding_signs():
    backbone = make()
    backbone.setup_task_id(3)
    stored = backbone.store_mask()
    for name in backbone.weighted_layer_names:
        expected = (backbone.task_embedding_t[name].weight > 0).float().view(-1)
        torch.testing.assert_close(stored[name], expected)
        torch.testing.assert_close(backbone.masks[3][name], expected)
        assert not stored[name].requires_grad
    assert_close_dicts(backbone.te_to_binary_mask(), stored)


def test_an_embedding_of_exactly_zero_is_masked_out():
    """sigmoid(s * 0) is exactly 0.5: CLArena's `embedding > 0` stores such a unit as 0."""
    backbone = make()
    backbone.setup_task_id(1)
    pattern = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    with torch.no_grad():
        for embedding in backbone.task_embedding_t.values():
            embedding.weight.copy_(pattern.repeat(embedding.weight.numel() // 4).view_as(embedding.weight))
    stored = backbone.store_mask()
    for name in backbone.weighted_layer_names:
        assert stored[name].tolist() == [0.0, 0.0, 1.0, 0.0] * (stored[name].numel() // 4), name


def test_test_mask_moves_to_the_weight_dtype_once():
    backbone = make()
    finish_task(backbone, 1, seed=3)
    backbone.double()
    feature, mask, _ = backbone(vectors().double(), "test", test_task_id=1)
    assert feature.dtype == torch.float64 and backbone.masks[1]["fc/0"].dtype == torch.float64


def test_per_task_batch_norm_lifecycle():
    backbone = make("independent")
    backbone.setup_task_id(1)
    first_copy = backbone.fc_bns["1"]
    backbone.setup_task_id(1)  # CLArena re-copied here (int compared with str keys)
    assert backbone.fc_bns["1"] is first_copy
    with torch.no_grad():
        backbone.fc_bn[0].running_mean.add_(3.0)
    backbone.initialize_independent_bn()
    torch.testing.assert_close(backbone.fc_bn[0].running_mean, backbone.original_fc_bn_state_dict["0.running_mean"])
    with torch.no_grad():
        backbone.fc_bn[1].weight.fill_(7.0)
    backbone.store_bn()
    assert backbone.fc_bns["1"] is not backbone.fc_bn and torch.all(backbone.fc_bns["1"][1].weight == 7.0)
    assert backbone.get_bn("train", 1) is backbone.fc_bn and backbone.get_bn("validation", 1) is backbone.fc_bn
    assert backbone.get_bn("test", 1) is backbone.fc_bns["1"]
    assert backbone.get_bn("unlearning_test", None) is backbone.fc_bns["1"]  # current task by default


# ------------------------------------------------------------------------------------ embeddings
def test_initialize_task_embedding_modes():
    backbone = make()
    ranges = {"U01": (0, 1), "U-10": (-1, 0), "U-11": (-1, 1)}
    for mode, (low, high) in ranges.items():
        backbone.initialize_task_embedding(mode)
        for embedding in backbone.task_embedding_t.values():
            assert embedding.weight.min() >= low and embedding.weight.max() <= high
    backbone.initialize_task_embedding("N01")
    before = {name: e.weight.clone() for name, e in backbone.task_embedding_t.items()}
    assert torch.cat([w.view(-1) for w in before.values()]).abs().max() > 1  # normal, not uniform
    for keep in ("last", "masked", "unmasked"):
        backbone.initialize_task_embedding(keep)
        assert_close_dicts({name: e.weight for name, e in backbone.task_embedding_t.items()}, before)
    with pytest.raises(ValueError, match="`mode`.*'N01'"):
        backbone.initialize_task_embedding("N(0,1)")


# --------------------------------------------------------------------------------------- errors
def test_stage_argument_errors():
    backbone = make()
    x = vectors()
    with pytest.raises(ValueError, match="`num_batches`"):
        backbone(x, "train", s_max=S_MAX, batch_idx=1)
    with pytest.raises(ValueError, match="`s_max`"):
        backbone(x, "validation")
    with pytest.raises(ValueError, match="`test_task_id`"):
        backbone(x, "test")
    with pytest.raises(KeyError, match="task 4"):
        backbone(x, "test", test_task_id=4)
    for stage in ("training", "train_with_backup", None):
        with pytest.raises(ValueError, match="`stage`.*'unlearning_test'"):
            backbone(x, stage, s_max=S_MAX)


# ------------------------------------------------------------------------------------- measures
def measures(backbone, seed=0, binary=True):
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name in backbone.weighted_layer_names:
        width = backbone.get_layer_by_name(name).weight.size(0)
        values = torch.rand(width, generator=generator)
        out[name] = (values > 0.5).float() if binary else values * 3
    return out


@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
def test_layer_measure_matches_clarena(aggregation):
    backbone = make()
    measure = measures(backbone, binary=False)
    for name in backbone.weighted_layer_names:
        weight_measure, bias_measure = backbone.get_layer_measure_parameter_wise(measure, name, aggregation)
        expected_weight, _ = clarena_layer_measure(backbone, measure, name, aggregation)
        torch.testing.assert_close(weight_measure, expected_weight)
        assert bias_measure is measure[name]


def test_mean_aggregation_averages_the_two_units():
    """CLArena called torch.mean(a, b), a TypeError for every layer but the first."""
    backbone = make()
    measure = measures(backbone, binary=False)
    weight_measure, _ = backbone.get_layer_measure_parameter_wise(measure, "fc/1", "mean")
    torch.testing.assert_close(weight_measure, (measure["fc/1"].view(-1, 1) + measure["fc/0"].view(1, -1)) / 2)
    first, _ = backbone.get_layer_measure_parameter_wise(measure, "fc/0", "mean")
    torch.testing.assert_close(first, measure["fc/0"].view(-1, 1).expand(32, 20))
    with pytest.raises(ValueError, match="`aggregation_mode`.*'mean'"):
        backbone.get_layer_measure_parameter_wise(measure, "fc/1", "median")


def backward_once(backbone):
    backbone.zero_grad()
    feature, _, _ = backbone(vectors(), "train", S_MAX, 3, 10)
    feature.pow(2).sum().backward()


@pytest.mark.parametrize(
    "mode, alpha, r",
    [("hat", None, None), ("hat_const_alpha", 0.3, None), ("adahat", None, 0.05), ("adahat", None, "per-layer")],
)
@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
def test_clip_grad_by_measure_matches_clarena_loop(mode, alpha, r, aggregation):
    backbone = make()
    binary = mode != "adahat"  # AdaHAT's measure is the summative mask
    measure = measures(backbone, seed=4, binary=binary)
    if r == "per-layer":
        r = {name: 0.01 * (i + 1) for i, name in enumerate(backbone.weighted_layer_names)}
    backward_once(backbone)
    expected = clone_with_grads(backbone)
    clarena_clip_grad(expected, measure, aggregation, mode, alpha, r)
    backbone.clip_grad_by_measure_(measure, aggregation, mode, alpha=alpha, r=r)
    assert_close_dicts(grads(backbone), grads(expected))


@pytest.mark.parametrize("mode, alpha, r", [("hat", None, None), ("hat_const_alpha", 0.3, None), ("adahat", None, 0.05)])
@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
@pytest.mark.parametrize("path", ["native", "reference"])
def test_clip_grad_by_measure_on_square_layers(mode, alpha, r, aggregation, path):
    """Square weights fit a measure of either orientation, so only the values show that weight
    (i, j) takes unit i of its layer and unit j of the preceding one."""
    torch.manual_seed(0)
    backbone = B.HATMaskMLP(input_dim=12, hidden_dims=[12, 12], output_dim=12, gate="sigmoid")
    randomize_embeddings(backbone)
    measure = measures(backbone, seed=4, binary=False)
    backbone(vectors(dim=12), "train", S_MAX, 3, 10)[0].pow(2).sum().backward()
    expected = clone_with_grads(backbone)
    clarena_clip_grad(expected, measure, aggregation, mode, alpha, r)
    with clarena.ops.use_reference() if path == "reference" else contextlib.nullcontext():
        backbone.clip_grad_by_measure_(measure, aggregation, mode, alpha=alpha, r=r)
    assert_close_dicts(grads(backbone), grads(expected))


def test_clip_grad_skips_parameters_without_gradient_and_validates():
    backbone = make()
    backward_once(backbone)
    backbone.fc[1].weight.grad = None
    backbone.clip_grad_by_measure_(measures(backbone), "min", "hat")
    assert backbone.fc[1].weight.grad is None
    with pytest.raises(ValueError, match="`rate`.*'adahat'"):
        backbone.clip_grad_by_measure_(measures(backbone), "min", "hat_random")
    with pytest.raises(ValueError, match="`aggregation`"):
        backbone.clip_grad_by_measure_(measures(backbone), "avg", "hat")


def test_combine_masks():
    backbone = make()
    a = {"fc/0": torch.tensor([1.0, 0.0, 1.0])}
    b = {"fc/0": torch.tensor([0.0, 0.0, 1.0])}
    torch.testing.assert_close(backbone.combine_masks([a, b], "intersection")["fc/0"], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(backbone.combine_masks([a, b], "union")["fc/0"], torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="`mode`.*'union'"):
        backbone.combine_masks([a, b], "xor")
    with pytest.raises(ValueError, match="`masks`"):
        backbone.combine_masks([], "union")


# ----------------------------------------------------------------------------------- state_dict
def save_and_load(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("batch_normalization", [None, "independent"])
def test_state_dict_round_trip_into_a_fresh_backbone(batch_normalization):
    backbone = with_finished_tasks(make(batch_normalization), lambda seed: vectors(seed=seed), seeds=(21, 22))
    state = save_and_load(backbone.state_dict())
    assert {key for key in state if key.startswith("stored_masks.")} == {
        f"stored_masks.{task}.fc/{i}" for task in (1, 2) for i in range(3)
    }
    fresh = B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=batch_normalization)
    fresh.load_state_dict(state, strict=True)
    fresh.eval()
    assert fresh.masks.keys() == {1, 2}
    x = vectors(seed=5)
    for task in (1, 2):
        assert_close_dicts(fresh.masks[task], backbone.masks[task])
        expected = backbone(x, "test", test_task_id=task)
        actual = fresh(x, "test", test_task_id=task)
        torch.testing.assert_close(actual[0], expected[0], rtol=0, atol=0)


def test_clarena_state_dict_keeps_existing_masks():
    backbone = make()
    finish_task(backbone, 1, seed=1)
    clarena_state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("stored_masks.")}
    backbone.load_state_dict(clarena_state, strict=True)
    assert 1 in backbone.masks


# ------------------------------------------------------------------------------ ops and overhead
@pytest.mark.parametrize("batch_normalization", [None, "shared"])
@pytest.mark.parametrize("activation_layer", [nn.ReLU, nn.Tanh])
def test_native_path_equals_reference_path(batch_normalization, activation_layer):
    backbone = make(batch_normalization, activation_layer=activation_layer)
    assert_native_equals_reference(backbone, lambda model: model(vectors(), "train", S_MAX, 4, 10))


def test_forward_does_not_scan_modules(monkeypatch):
    backbone = make()
    finish_task(backbone, 1, seed=2)
    for stage in ("train", "test", "unlearning_test"):
        backbone(vectors(), stage, S_MAX, 2, 10, test_task_id=1)

    def fail(*args, **kwargs):
        raise AssertionError("named_modules called during a forward")

    monkeypatch.setattr(backbone, "named_modules", fail)
    for stage in ("train", "validation", "test", "unlearning_test"):
        backbone(vectors(), stage, S_MAX, 2, 10, test_task_id=1)


def test_clarena_1_1_checkpoint_with_its_unused_batch_norm_loads_strictly():
    # CLArena 1.1.0's HATMaskMLP builds `fc_bn` whatever `batch_normalization` is: its default
    # checkpoint is the MLP keys with BatchNorm, plus the task embeddings.
    keys = expected_mlp_keys(batch_normalization=True)
    keys.update({f"task_embedding_t.fc/{i}.weight": (1, width) for i, width in enumerate((32, 16, 8))})
    generator = torch.Generator().manual_seed(0)
    checkpoint = {key: torch.rand(shape, generator=generator) for key, shape in keys.items()}
    backbone = B.HATMaskMLP(20, [32, 16], 8, gate="sigmoid")
    backbone.load_state_dict(checkpoint, strict=True)
    state = backbone.state_dict()
    assert set(state) == {key for key in keys if not key.startswith("fc_bn.")}
    for key, value in state.items():
        assert torch.equal(value, checkpoint[key])
    # with BatchNorm the keys are used, so they must fit
    with_bn = B.HATMaskMLP(20, [32, 16], 8, gate="sigmoid", batch_normalization="shared")
    with_bn.load_state_dict(checkpoint, strict=True)
    assert torch.equal(with_bn.fc_bn[1].running_mean, checkpoint["fc_bn.1.running_mean"])
    checkpoint["fc_bn.1.running_mean"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="fc_bn.1.running_mean"):
        with_bn.load_state_dict(checkpoint, strict=True)


def test_stored_masks_answer_int_and_string_task_ids():
    # CLArena 1.1.0's AdaHAT and FG-AdaHAT read `backbone.masks[f"{task_id}"]` at a task's end
    backbone = B.HATMaskMLP(20, [32, 16], 8, gate="sigmoid")
    backbone.setup_task_id(1)
    mask = backbone.store_mask()
    assert backbone.masks["1"] is backbone.masks[1] and backbone.masks["1"]["fc/0"] is mask["fc/0"]
    assert "1" in backbone.masks and 1 in backbone.masks and "2" not in backbone.masks
    assert backbone.masks.get("1") is backbone.masks[1] and backbone.masks.get("2") is None
    assert list(backbone.masks) == [1]
    with pytest.raises(KeyError):
        backbone.masks["2"]
    # the saved keys are unchanged, and a loaded backbone answers both too
    assert "stored_masks.1.fc/0" in backbone.state_dict()
    fresh = B.HATMaskMLP(20, [32, 16], 8, gate="sigmoid")
    fresh.load_state_dict(backbone.state_dict())
    assert torch.equal(fresh.masks["1"]["fc/2"], mask["fc/2"])
