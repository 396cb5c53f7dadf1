"""Base-class behaviour shared by every backbone: layer names and lookup, constructor arguments."""

import warnings

import pytest
import torch
from backbone_helpers import MLP_ARGS
from torch import nn

import clarena.backbones as B
from clarena.backbones import base

pytestmark = pytest.mark.usefixtures("single_thread")


def test_exports_and_aliases():
    for name in B.__all__:
        assert hasattr(B, name), name
    assert B.ResNet52 is B.ResNet50 and B.CLResNet52 is B.CLResNet50 and B.HATMaskResNet52 is B.HATMaskResNet50
    # CLArena defines every base class in base.py; importing them from there still works
    assert base.HATMaskBackbone is B.HATMaskBackbone
    assert base.WSNMaskBackbone is B.WSNMaskBackbone and base.AmnesiacHATBackbone is B.AmnesiacHATBackbone


def test_class_hierarchy_matches_clarena():
    assert issubclass(B.CLMLP, B.MLP) and issubclass(B.CLMLP, B.CLBackbone)
    assert issubclass(B.CLResNet18, B.ResNet18) and issubclass(B.CLResNet18, B.CLBackbone)
    for cls in (B.HATMaskMLP, B.HATMaskResNet34, B.AmnesiacHATMLP, B.AmnesiacHATResNet50):
        assert issubclass(cls, B.HATMaskBackbone)
    assert issubclass(B.AmnesiacHATMLP, B.HATMaskMLP) and issubclass(B.AmnesiacHATMLP, B.AmnesiacHATBackbone)
    assert issubclass(B.WSNMaskMLP, B.MLP) and issubclass(B.WSNMaskResNet18, B.WSNMaskBackbone)


def test_abstract_forwards_raise():
    with pytest.raises(NotImplementedError):
        B.Backbone(output_dim=3)(torch.zeros(1, 3), "train")
    with pytest.raises(NotImplementedError):
        B.CLBackbone(output_dim=3)(torch.zeros(1, 3), "train")


def test_cl_backbone_task_ids():
    backbone = B.CLMLP(**MLP_ARGS)
    assert backbone.processed_task_ids == []
    backbone.setup_task_id(1)
    backbone.setup_task_id(2)
    assert backbone.task_id == 2 and backbone.processed_task_ids == [1, 2]


def test_preceding_and_next_layer_names():
    backbone = B.MLP(**MLP_ARGS)
    assert backbone.weighted_layer_names == ["fc/0", "fc/1", "fc/2"]
    assert backbone.preceding_layer_name("fc/0") is None
    assert backbone.preceding_layer_name("fc/2") == "fc/1"
    assert backbone.preceding_layer_name(None) is None
    assert backbone.next_layer_name("fc/0") == "fc/1"
    assert backbone.next_layer_name("fc/2") is None
    for method in (backbone.preceding_layer_name, backbone.next_layer_name):
        with pytest.raises(ValueError, match="fc/9"):
            method("fc/9")


def test_get_layer_by_name_is_exact():
    backbone = B.MLP(**MLP_ARGS)
    assert backbone.get_layer_by_name(None) is None
    assert backbone.get_layer_by_name("fc/1") is backbone.fc[1]
    assert backbone.get_layer_by_name("fc") is backbone.fc
    # CLArena's suffix matching returned fc.1 here
    with pytest.raises(ValueError, match="foo/fc/1"):
        backbone.get_layer_by_name("foo/fc/1")
    with pytest.raises(ValueError, match="fc/7"):
        backbone.get_layer_by_name("fc/7")


def test_get_layer_by_name_is_cached_and_rebuilt_on_miss(monkeypatch):
    backbone = B.MLP(**MLP_ARGS)
    backbone.get_layer_by_name("fc/0")
    calls = []
    original = nn.Module.named_modules
    monkeypatch.setattr(nn.Module, "named_modules", lambda self, *a, **k: calls.append(self) or original(self, *a, **k))
    for _ in range(5):
        for name in backbone.weighted_layer_names:
            backbone.get_layer_by_name(name)
    assert calls == []  # hits never scan the modules
    backbone.fc.append(nn.Linear(8, 4))  # added after the table was built
    assert backbone.get_layer_by_name("fc/3") is backbone.fc[3]
    assert calls.count(backbone) == 1
    backbone.extra = nn.Linear(2, 2)  # assignment on the backbone invalidates the table
    assert backbone.get_layer_by_name("extra") is backbone.extra


def test_named_weighted_layers_pairs_each_name_with_its_module_and_follows_reassignment():
    backbone = B.HATMaskResNet18(input_channels=3, output_dim=512, gate="sigmoid")
    pairs = backbone.named_weighted_layers()
    assert [name for name, _ in pairs] == backbone.weighted_layer_names
    assert all(module is backbone.get_layer_by_name(name) for name, module in pairs)
    assert any(name.endswith("identity_downsample") for name, _ in pairs)  # the shortcut convs too
    mlp = B.MLP(**MLP_ARGS)
    assert [module for _, module in mlp.named_weighted_layers()] == list(mlp.fc)  # now cached
    mlp.fc = nn.ModuleList(nn.Linear(layer.in_features, layer.out_features) for layer in mlp.fc)
    assert [module for _, module in mlp.named_weighted_layers()] == list(mlp.fc)


def test_block_names_resolve_from_the_outer_backbone():
    backbone = B.HATMaskResNet18(3, 512, "sigmoid")
    block = backbone.conv3x[0]
    assert block.weighted_layer_names == ["conv3x/0/conv1", "conv3x/0/conv2", "conv3x/0/identity_downsample"]
    assert block.get_layer_by_name("conv3x/0/conv2") is block.conv2
    assert backbone.get_layer_by_name("conv3x/0/conv2") is block.conv2
    assert backbone.get_layer_by_name("conv3x/0/identity_downsample") is block.identity_downsample
    with pytest.raises(ValueError):
        block.get_layer_by_name("conv4x/0/conv2")


def test_unknown_keyword_warns_and_disable_unlearning_is_silent():
    with pytest.warns(UserWarning, match="`colour`"):
        backbone = B.MLP(**MLP_ARGS, colour="red")
    assert not hasattr(backbone, "colour")
    with pytest.warns(UserWarning, match="`pretrained`"):
        B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", pretrained=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        B.MLP(**MLP_ARGS, disable_unlearning=True)
        B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", disable_unlearning=False)
        B.WSNMaskMLP(**MLP_ARGS, disable_unlearning=True)


@pytest.mark.parametrize("cls", [B.MLP, B.CLMLP])
def test_batch_normalisation_alias(cls):
    backbone = cls(**MLP_ARGS, batch_normalisation=True)
    assert backbone.batch_normalization is True and len(backbone.fc_bn) == 3
    with pytest.raises(ValueError, match="batch_normalisation"):
        cls(**MLP_ARGS, batch_normalization=True, batch_normalisation=False)


def test_batch_normalisation_alias_on_hat_and_resnet():
    hat = B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalisation="independent")
    assert hat.batch_normalization == "independent"
    assert B.ResNet18(3, 512, batch_normalisation=False).batch_normalization is False
    assert not hasattr(B.ResNet18(3, 512, batch_normalisation=False), "conv_bn1")
    with pytest.warns(UserWarning, match="batch_normalisation"):
        assert B.WSNMaskMLP(**MLP_ARGS, batch_normalisation=True).batch_normalization is False


@pytest.mark.parametrize(
    "make",
    [
        lambda bn: B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=bn),
        lambda bn: B.AmnesiacHATMLP(**MLP_ARGS, gate="sigmoid", batch_normalization=bn),
        lambda bn: B.HATMaskResNet18(3, 512, "sigmoid", batch_normalization=bn),
        lambda bn: B.AmnesiacHATResNet18(3, 512, "sigmoid", batch_normalization=bn),
    ],
)
def test_hat_batch_normalization_true_is_refused(make):
    for bad in (True, "yes"):
        with pytest.raises(ValueError, match="batch_normalization"):
            make(bad)


def test_gate_is_validated():
    with pytest.raises(ValueError, match="gate"):
        B.HATMaskMLP(**MLP_ARGS, gate="tanh")
