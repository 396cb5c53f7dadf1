"""The backbones' training-step methods that CLArena's algorithms, the demo and Mammoth's models
call: HAT's adjustment rates and network capacity, and WSN's gradient masking.

Gradient scaling itself (`clip_grad_by_measure_`) is tested against CLArena's loop in
test_backbone_hat_mlp.py and test_backbone_hat_resnet.py; these methods are compared with the
same loop's rate tensors, and with CLArena's capacity metric.
"""

import pytest
import torch
from backbone_helpers import S_MAX, clarena_layer_measure, clone_with_grads, grads, randomize_embeddings, vectors

import clarena.backbones as B
from clarena.algorithms.wsn import cumulative_mask
from clarena.backbones.adjustment_rates import AdjustmentRates

RATES = [("hat", None, None), ("hat_const_alpha", 0.3, None), ("adahat", None, 0.05), ("adahat", None, "per-layer")]


def hat_mlp():
    torch.manual_seed(0)
    backbone = B.HATMaskMLP(input_dim=20, hidden_dims=[16, 12], output_dim=8, gate="sigmoid")
    randomize_embeddings(backbone)
    return backbone


def unit_measures(backbone, binary):
    generator = torch.Generator().manual_seed(3)
    measure = {}
    for name, layer in backbone.named_weighted_layers():
        values = torch.rand(layer.weight.size(0), generator=generator)
        measure[name] = (values > 0.5).float() if binary else torch.floor(values * 4)  # AdaHAT's counts
    return measure


def per_layer_r(backbone, r):
    if r != "per-layer":
        return r
    # 0-d tensors, as CLArena's AdaHAT computes them from the network sparsity
    return {name: torch.tensor(0.02 * (index + 1)) for index, name in enumerate(backbone.weighted_layer_names)}


def clarena_rates(backbone, measure, aggregation, rate, alpha, r):
    """CLArena's clip_grad_by_adjustment rates: (weight rates, bias rates for every layer)."""
    formulas = {
        "hat": lambda m, _: 1 - m,
        "hat_const_alpha": lambda m, _: alpha * m + (1 - m),
        "adahat": lambda m, layer_r: layer_r / (m + layer_r),
    }
    weight_rates, bias_rates = {}, {}
    for name in backbone.weighted_layer_names:
        weight_measure, bias_measure = clarena_layer_measure(backbone, measure, name, aggregation)
        layer_r = r[name] if isinstance(r, dict) else r
        weight_rates[name] = formulas[rate](weight_measure, layer_r)
        bias_rates[name] = formulas[rate](bias_measure, layer_r)
    return weight_rates, bias_rates


@pytest.mark.parametrize("rate, alpha, r", RATES)
@pytest.mark.parametrize("aggregation", ["min", "max", "mean"])
def test_rates_and_capacity_equal_clarenas(rate, alpha, r, aggregation):
    backbone = hat_mlp()
    measure = unit_measures(backbone, binary=rate != "adahat")
    r = per_layer_r(backbone, r)
    weight_rates, bias_rates = backbone.adjustment_rates(measure, aggregation, rate, alpha, r)
    expected_weight, expected_bias = clarena_rates(backbone, measure, aggregation, rate, alpha, r)
    assert list(weight_rates) == list(expected_weight) and list(bias_rates) == list(expected_bias)
    for name in expected_weight:
        torch.testing.assert_close(weight_rates[name], expected_weight[name])
        torch.testing.assert_close(bias_rates[name], expected_bias[name])
    # CLArena's metric: the sum of all weight and bias rates over their count
    total = sum(rates.sum() for rates in [*expected_weight.values(), *expected_bias.values()])
    count = sum(rates.numel() for rates in [*expected_weight.values(), *expected_bias.values()])
    torch.testing.assert_close(backbone.network_capacity(measure, aggregation, rate, alpha, r), total / count)


def test_capacity_counts_a_unit_rate_for_layers_without_bias():
    backbone = B.HATMaskResNet18(input_channels=3, output_dim=16, gate="sigmoid")
    measure = unit_measures(backbone, binary=True)
    weight_rates, bias_rates = backbone.adjustment_rates(measure)
    assert not bias_rates  # no conv of the ResNet has a bias
    expected_weight, expected_bias = clarena_rates(backbone, measure, "min", "hat", None, None)
    total = sum(rates.sum() for rates in [*expected_weight.values(), *expected_bias.values()])
    count = sum(rates.numel() for rates in [*expected_weight.values(), *expected_bias.values()])
    capacity = backbone.network_capacity(measure)
    torch.testing.assert_close(capacity, total / count)
    assert 0 < capacity < 1


def test_rates_follow_the_gradient_scaling():
    """The rates returned are the factors `clip_grad_by_measure_` applied."""
    backbone = hat_mlp()
    backbone(vectors(), "train", S_MAX, 3, 10)[0].pow(2).sum().backward()
    before = grads(clone_with_grads(backbone))
    measure = unit_measures(backbone, binary=False)
    r = per_layer_r(backbone, "per-layer")
    backbone.clip_grad_by_measure_(measure, "max", "adahat", r=r)
    weight_rates, bias_rates = backbone.adjustment_rates(measure, "max", "adahat", r=r)
    for name, layer in backbone.named_weighted_layers():
        torch.testing.assert_close(layer.weight.grad, before[f"{layer_key(backbone, name)}.weight"] * weight_rates[name])
        torch.testing.assert_close(layer.bias.grad, before[f"{layer_key(backbone, name)}.bias"] * bias_rates[name])


def layer_key(backbone, name):
    layer = backbone.get_layer_by_name(name)
    return next(key for key, module in backbone.named_modules() if module is layer)


def test_clip_grad_by_measure_accepts_its_old_keywords_with_a_deprecation_warning():
    backbone = hat_mlp()
    backbone(vectors(), "train", S_MAX, 3, 10)[0].pow(2).sum().backward()
    expected = clone_with_grads(backbone)
    measure = unit_measures(backbone, binary=True)
    expected.clip_grad_by_measure_(measure, aggregation="max", rate="hat_const_alpha", alpha=0.5)
    with pytest.warns(DeprecationWarning) as warned:
        backbone.clip_grad_by_measure_(measure, aggregation_mode="max", mode="hat_const_alpha", alpha=0.5)
    messages = sorted(str(warning.message) for warning in warned)
    assert "`aggregation_mode` keyword of HATMaskBackbone.clip_grad_by_measure_() is now `aggregation`" in messages[0]
    assert "`mode` keyword of HATMaskBackbone.clip_grad_by_measure_() is now `rate`" in messages[1]
    for name, grad in grads(expected).items():
        torch.testing.assert_close(grads(backbone)[name], grad, rtol=0, atol=0)


def test_adjustment_rates_refuse_bad_settings_when_called():
    backbone = hat_mlp()
    measure = unit_measures(backbone, binary=True)
    with pytest.raises(ValueError, match="`aggregation` must be one of 'min', 'max', 'mean', got 'avg'"):
        backbone.adjustment_rates(measure, "avg")
    with pytest.raises(ValueError, match="`rate` must be one of 'hat', 'hat_const_alpha', 'adahat', got 'hat_random'"):
        backbone.adjustment_rates(measure, "min", "hat_random")


def test_adjustment_rates_are_built_when_read_and_once():
    built = []

    def build():
        built.append(1)
        return torch.tensor([1.0, 0.0])

    rates = AdjustmentRates()
    rates.add("fc/0", build)
    assert not built and list(rates) == ["fc/0"] and len(rates) == 1
    assert rates["fc/0"].tolist() == [1.0, 0.0]
    assert dict(rates.items())["fc/0"] is rates["fc/0"] and len(built) == 1
    with pytest.raises(KeyError):
        rates["fc/1"]


# ------------------------------------------------------------------------------------------- WSN
def wsn_with_two_stored_tasks():
    torch.manual_seed(0)
    backbone = B.WSNMaskMLP(input_dim=20, hidden_dims=[16, 12], output_dim=8)
    stored = []
    for task_id in (1, 2):
        backbone.setup_task_id(task_id)
        backbone.initialize_parameter_score("default")
        stored.append(backbone.store_mask(task_id, 0.3))
    return backbone, stored


def test_cumulative_mask_is_the_union_of_the_stored_subnetworks():
    backbone, ((weights_1, biases_1), (weights_2, biases_2)) = wsn_with_two_stored_tasks()
    weight_mask, bias_mask = cumulative_mask(backbone)
    for name in backbone.weighted_layer_names:
        assert torch.equal(weight_mask[name], torch.maximum(weights_1[name], weights_2[name]))
        assert torch.equal(bias_mask[name], torch.maximum(biases_1[name], biases_2[name]))
    fresh = B.WSNMaskMLP(input_dim=20, hidden_dims=[16, 12], output_dim=8, bias=False)
    weight_mask, bias_mask = cumulative_mask(fresh)
    assert all(not mask.any() for mask in weight_mask.values()) and set(bias_mask.values()) == {None}


def test_clip_grad_by_mask_zeroes_what_earlier_tasks_use():
    backbone, _ = wsn_with_two_stored_tasks()
    backbone.setup_task_id(3)
    backbone(vectors(), "train", 0.3)[0].pow(2).sum().backward()
    weight_mask, bias_mask = cumulative_mask(backbone)
    assert 0 < weight_mask["fc/0"].mean() < 1
    backbone.fc[1].bias.grad = None
    expected = {name: grad.clone() for name, grad in grads(backbone).items()}
    backbone.clip_grad_by_mask_(weight_mask, bias_mask)
    for name, layer in backbone.named_weighted_layers():
        key = layer_key(backbone, name)
        assert torch.equal(layer.weight.grad, expected[f"{key}.weight"] * (1 - weight_mask[name]))
        if layer.bias.grad is not None:
            assert torch.equal(layer.bias.grad, expected[f"{key}.bias"] * (1 - bias_mask[name]))
    assert backbone.fc[1].bias.grad is None


def test_the_old_wsn_step_functions_still_work_with_a_deprecation_warning():
    from clarena.algorithms.wsn import free_parameters, freeze_used_

    backbone, _ = wsn_with_two_stored_tasks()
    backbone(vectors(), "train", 0.3)[0].pow(2).sum().backward()
    expected = clone_with_grads(backbone)
    expected.clip_grad_by_mask_(*cumulative_mask(expected))
    with pytest.warns(DeprecationWarning, match=r"free_parameters\(backbone\) is deprecated .* use cumulative_mask\(backbone\)"):
        free = free_parameters(backbone)
    with pytest.warns(DeprecationWarning, match=r"freeze_used_\(free\) is deprecated .* use backbone\.clip_grad_by_mask_"):
        freeze_used_(free)
    for name, grad in grads(expected).items():
        torch.testing.assert_close(grads(backbone)[name], grad, rtol=0, atol=0)
