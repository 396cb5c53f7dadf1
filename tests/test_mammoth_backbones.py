"""The `clarena-*` Mammoth backbones against Mammoth's backbone contract.

`net(x, returnt)` for 'out' | 'features' | 'both' | 'full', `features()`, the parameter and
gradient flattening, the `device` attribute, and stored masks that follow `state_dict` and `.to()`.
"""

import argparse

import pytest
import torch
from torch import nn

from clarena.backbones import HATMaskMLP, WSNMaskMLP
from clarena.mammoth import BACKBONES, HATAdapter, MammothAdapter, WSNAdapter

MLP_KW = {"input_size": 16, "mlp_hidden_size": 12}


def build(name: str, num_classes: int = 6) -> MammothAdapter:
    return BACKBONES[name](num_classes=num_classes, **(MLP_KW if "mlp" in name else {}))


def inputs(name: str, n: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    shape = (n, 16) if "mlp" in name else (n, 3, 32, 32)
    return torch.randn(shape, generator=generator)


def store_current_task(net: MammothAdapter, task_id: int = 0) -> None:
    """Give task `task_id` a non-trivial stored mask."""
    net.backbone.setup_task_id(task_id)
    if isinstance(net, HATAdapter):
        with torch.no_grad():
            for embedding in net.backbone.task_embedding_t.values():
                embedding.weight.normal_()
        net.backbone.store_mask()
    elif isinstance(net, WSNAdapter):
        net.store_mask(task_id)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_returnt_gives_mammoths_four_results(name):
    net = build(name).eval()
    store_current_task(net)  # masked backbones then reuse the stored masks (and WSN's masked weights)
    x = inputs(name, n=2 if "resnet" in name else 4)
    with torch.no_grad():
        feature = net(x, returnt="features")
        out = net(x)
        both = net(x, returnt="both")
        full = net(x, returnt="full")
    assert out.shape == (x.shape[0], 6)
    torch.testing.assert_close(out, net.classifier(feature))
    torch.testing.assert_close(both[0], out)
    torch.testing.assert_close(both[1], feature)
    torch.testing.assert_close(full[0], out)
    activations = full[1]
    assert isinstance(activations, list)
    assert len(activations) == len(net.backbone.weighted_layer_names)
    assert all(a.shape[0] == x.shape[0] for a in activations)
    torch.testing.assert_close(net.features(x), feature)


@pytest.mark.parametrize("name", ["clarena-mlp", "clarena-hat-mlp", "clarena-wsn-mlp"])
def test_mlp_full_ends_with_the_feature(name):
    net = build(name).eval()
    with torch.no_grad():
        out, activations = net(inputs(name), returnt="full")
        torch.testing.assert_close(activations[-1], net.features(inputs(name)))
    assert activations[0].shape == (4, MLP_KW["mlp_hidden_size"])


def test_unknown_returnt_is_refused_by_name():
    with pytest.raises(ValueError, match="returnt"):
        build("clarena-mlp")(inputs("clarena-mlp"), returnt="all")


@pytest.mark.parametrize("name", ["clarena-mlp", "clarena-hat-mlp", "clarena-wsn-mlp"])
def test_params_round_trip_and_grads_tolerate_missing_ones(name):
    net = build(name)
    params = net.get_params()
    assert params.shape == (sum(p.numel() for p in net.parameters()),)
    net.set_params(torch.zeros_like(params))
    assert all(torch.count_nonzero(p) == 0 for p in net.parameters())
    net.set_params(params)
    torch.testing.assert_close(net.get_params(), params)

    # only the classifier has a gradient: every other slot reads zero, in get_params' layout
    net.classifier(torch.ones(1, net.classifier.in_features)).sum().backward()
    grads = net.get_grads()
    assert grads.shape == params.shape
    offset = 0
    for parameter in net.parameters():
        chunk = grads[offset : offset + parameter.numel()]
        expected = torch.zeros(parameter.numel()) if parameter.grad is None else parameter.grad.reshape(-1)
        torch.testing.assert_close(chunk, expected)
        offset += parameter.numel()
    assert torch.count_nonzero(grads) > 0

    new = torch.arange(params.numel(), dtype=params.dtype)
    net.set_grads(new)
    torch.testing.assert_close(net.get_grads(), new)
    assert all(p.grad is not None for p in net.parameters())


def test_flat_vectors_of_the_wrong_size_are_refused():
    net = build("clarena-mlp")
    with pytest.raises(ValueError, match="new_params"):
        net.set_params(torch.zeros(3))
    with pytest.raises(ValueError, match="new_grads"):
        net.set_grads(torch.zeros(net.get_params().numel() + 1))


@pytest.mark.parametrize(
    ("name", "arguments", "named"),
    [
        ("clarena-mlp", {"num_classes": None}, "num_classes"),
        ("clarena-mlp", {"num_classes": 4, "mlp_hidden_size": 0}, "mlp_hidden_size"),
        ("clarena-resnet18", {"num_classes": 4, "input_channels": -1}, "input_channels"),
        ("clarena-hat-mlp", {"num_classes": 4, "s_max": 0.0}, "s_max"),
        ("clarena-hat-resnet18", {"num_classes": 4, "gate": "tanh"}, "gate"),
        ("clarena-wsn-mlp", {"num_classes": 4, "mask_percentage": 1.5}, "mask_percentage"),
    ],
)
def test_bad_constructor_arguments_are_named(name, arguments, named):
    with pytest.raises(ValueError, match=named):
        BACKBONES[name](**arguments)


def test_adapters_refuse_a_backbone_of_the_other_family():
    with pytest.raises(TypeError, match="HATMaskBackbone"):
        HATAdapter(WSNMaskMLP(16, [8], 8), 4, 400.0)
    with pytest.raises(TypeError, match="WSNMaskBackbone"):
        WSNAdapter(HATMaskMLP(16, [8], 8, gate="sigmoid"), 4, 0.5)


@pytest.mark.parametrize("name", ["clarena-hat-mlp", "clarena-wsn-mlp"])
def test_forward_uses_the_stored_mask_of_the_asked_task(name):
    net = build(name).eval()
    x = inputs(name)
    backbone = net.backbone
    with torch.no_grad():
        store_current_task(net, 0)
        expected_test = net.classifier(
            backbone(x, "test", test_task_id=0)[0]
            if isinstance(net, HATAdapter)
            else backbone(x, "test", net.mask_percentage, test_mask=0)[0]
        )
        torch.testing.assert_close(net(x, task_id=0), expected_test)
        torch.testing.assert_close(net(x), expected_test)  # the current task, stored
        backbone.setup_task_id(1)  # not stored yet: the current embeddings / scores
        expected_live = net.classifier(
            backbone(x, "validation", s_max=net.s_max)[0]
            if isinstance(net, HATAdapter)
            else backbone(x, "validation", net.mask_percentage)[0]
        )
        torch.testing.assert_close(net(x), expected_live)
        torch.testing.assert_close(net(x, task_id=0), expected_test)


@pytest.mark.parametrize("name", ["clarena-hat-mlp", "clarena-hat-resnet18", "clarena-wsn-mlp", "clarena-wsn-resnet18"])
def test_stored_masks_travel_with_state_dict(name):
    net = build(name).eval()
    store_current_task(net, 0)
    state = net.state_dict()
    assert any(".stored_masks." in key for key in state)
    fresh = build(name).eval()
    fresh.load_state_dict(state)
    x = inputs(name, n=2)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, task_id=0), net(x, task_id=0))


@pytest.mark.parametrize("name", ["clarena-hat-mlp", "clarena-hat-resnet18", "clarena-wsn-mlp"])
def test_stored_masks_travel_with_to(name):
    net = build(name)
    store_current_task(net, 0)
    net.device = None
    assert net.to("cpu").device == torch.device("cpu")
    net.to(torch.device("meta"))
    assert net.device == torch.device("meta")
    assert all(p.device.type == "meta" for p in net.parameters())
    for tensor in _stored_mask_tensors(net):
        assert tensor.device.type == "meta"
    assert net.backbone.masks["0"] is net.backbone.masks[0]  # still looked up by a string task id


def test_dtype_conversion_follows_hat_masks_and_leaves_packed_wsn_masks():
    hat = build("clarena-hat-mlp")
    store_current_task(hat, 0)
    hat.double()
    assert all(t.dtype == torch.float64 for t in _stored_mask_tensors(hat))
    assert hat.device == torch.device("cpu")
    with torch.no_grad():
        assert hat(inputs("clarena-hat-mlp").double(), task_id=0).dtype == torch.float64
    wsn = build("clarena-wsn-mlp")
    store_current_task(wsn, 0)
    wsn.to(torch.float64)
    assert all(t.dtype == torch.uint8 for t in _stored_mask_tensors(wsn))


def _stored_mask_tensors(net: MammothAdapter) -> list[torch.Tensor]:
    tensors = []
    for module in net.modules():
        masks = getattr(module, "masks", None)
        if not isinstance(masks, dict):
            continue
        for task_masks in masks.values():
            for part in task_masks if isinstance(task_masks, tuple) else (task_masks,):
                tensors += [t for t in part.values() if t is not None]
    assert tensors
    return tensors


def test_mammoth_parses_every_backbone_from_its_signature(mammoth):
    backbone_package, _ = mammoth
    registered = backbone_package.REGISTERED_BACKBONES
    assert set(BACKBONES) <= set(registered)
    for name in BACKBONES:
        for argument, spec in registered[name]["parsable_args"].items():
            assert spec["type"] in (int, float, str), (name, argument)
            assert spec["required"] is False, (name, argument)  # num_classes comes from the dataset
    assert registered["clarena-hat-mlp"]["parsable_args"]["gate"]["choices"] == ("sigmoid",)

    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone")
    backbone_package.add_backbone_arguments(parser, "clarena-wsn-mlp")
    args = parser.parse_args(
        ["--backbone", "clarena_wsn_mlp", "--input_size", "16", "--mlp_hidden_size", "20", "--mask_percentage", "0.3"]
    )
    args.num_classes = 6  # Mammoth's main fills it from the dataset
    net = backbone_package.get_backbone(args)
    assert isinstance(net, WSNAdapter) and net.mask_percentage == 0.3
    assert net.backbone.fc[0].weight.shape == (20, 16)
    assert net.classifier.out_features == 6


def test_resnet18_backbones_keep_the_512_feature():
    for name in ("clarena-resnet18", "clarena-hat-resnet18", "clarena-wsn-resnet18"):
        net = build(name, num_classes=3)
        assert isinstance(net.classifier, nn.Linear) and net.classifier.in_features == 512


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_set_return_prerelu_makes_full_return_each_activations_input(name):
    net = build(name).eval()
    store_current_task(net, 0)
    x = inputs(name)
    keys = list(net.state_dict())
    with torch.no_grad():
        out, post = net(x, returnt="full")
        net.set_return_prerelu(True)
        pre_out, pre = net(x, returnt="full")
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(pre_out, out, rtol=0, atol=0)
    assert pre and all((feature < 0).any() for feature in pre), "pre-activation features have negatives"
    if "mlp" in name:  # one activation per layer: ReLU of its input is the layer's activation
        assert len(pre) == len(post)
        for before, after in zip(pre, post):
            torch.testing.assert_close(torch.relu(before), after, rtol=0, atol=0)
    net.set_return_prerelu(False)
    with torch.no_grad():
        _, again = net(x, returnt="full")
    assert all(torch.equal(a, b) for a, b in zip(again, post))
    assert not any(type(m).__name__ == "PreActivation" for m in net.modules())


def test_set_return_prerelu_refuses_a_non_bool():
    with pytest.raises(TypeError, match="`enable` must be a bool"):
        build("clarena-mlp").set_return_prerelu("yes")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_adapter_is_named_after_its_backbone(name):
    import copy

    net = build(name)
    assert type(net).__name__ == type(net.backbone).__name__
    base = {"hat": HATAdapter, "wsn": WSNAdapter}.get(name.split("-")[1], MammothAdapter)
    assert isinstance(net, base) and type(net).__mro__[1] is base
    assert type(build(name)) is type(net)  # one class per pair
    store_current_task(net, 0)
    for copied in (copy.deepcopy(net), _saved_and_loaded(net)):
        assert type(copied) is type(net)
        state, copied_state = net.state_dict(), copied.state_dict()
        assert all(torch.equal(copied_state[key], tensor) for key, tensor in state.items())


def _saved_and_loaded(module: nn.Module) -> nn.Module:
    import io

    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_clarena_mlp_is_initialised_as_mammoths_mlp():
    # Xavier-uniform (gain 1) weights and zero biases on every Linear, the classifier included
    torch.manual_seed(0)
    net = BACKBONES["clarena-mlp"](num_classes=10, input_size=64, mlp_hidden_size=256)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3 and linears[-1] is net.classifier
    for linear in linears:
        bound = (6.0 / (linear.in_features + linear.out_features)) ** 0.5
        assert torch.all(linear.bias == 0)
        assert linear.weight.abs().max() <= bound
        assert linear.weight.abs().max() > 0.95 * bound  # uniform over the whole range
        torch.testing.assert_close(linear.weight.std().item(), bound / 3**0.5, rtol=0.05, atol=0)
