"""Plain and CL ResNets: CLArena's architecture, state_dict keys, forward, pretrained-weight mapping."""

import inspect
import pickle
import sys
import types

import pytest
import torch
from backbone_helpers import (
    PARAMS,
    WEIGHTED_LAYERS,
    assert_close_dicts,
    clarena_hat_resnet,
    images,
    param_count,
    randomize_batch_norm,
)
from torch import nn

import clarena.backbones as B
from clarena.backbones import amnesiac_hat_resnet, hat_mask_resnet, resnet, wsn_mask_resnet
from clarena.backbones.resnet import DEPTHS, ResNetBlockLarge, ResNetBlockSmall, torchvision_resnet18_key

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_parameter_counts_and_layer_names(depth):
    backbone = getattr(B, f"ResNet{depth}")(3, 512 if depth < 50 else 2048)
    assert param_count(backbone) == PARAMS[depth]
    assert len(backbone.weighted_layer_names) == WEIGHTED_LAYERS[depth]
    assert backbone.weighted_layer_names[:3] == ["conv1", "conv2x/0/conv1", "conv2x/0/conv2"]
    assert backbone.eval()(images(1))[0].shape == (1, 512 if depth < 50 else 2048)


def resnet18_keys() -> set[str]:
    """CLArena's ResNet18 state_dict keys (BatchNorm on)."""
    keys = {"conv1.weight"} | bn("conv_bn1")
    for stage in range(2, 6):
        for block in (0, 1):
            base = f"conv{stage}x.{block}"
            keys |= {f"{base}.conv1.weight", f"{base}.conv2.weight"} | bn(f"{base}.conv_bn1") | bn(f"{base}.conv_bn2")
            if stage > 2 and block == 0:
                keys.add(f"{base}.identity_downsample.weight")
    return keys


def bn(name):
    return {f"{name}.{stat}" for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def test_state_dict_keys_and_clarena_checkpoint_loads():
    backbone = B.ResNet18(3, 512)
    assert set(backbone.state_dict()) == resnet18_keys()
    source = B.CLResNet18(3, 512)
    randomize_batch_norm(source)
    B.ResNet18(3, 512).load_state_dict(source.state_dict(), strict=True)
    without_bn = B.ResNet18(3, 512, batch_normalization=False)
    assert set(without_bn.state_dict()) == {k for k in resnet18_keys() if "bn" not in k}


def test_clarena_layout_on_cifar_images():
    """ImageNet stem, stride on each block's 3x3 conv, shortcut conv without BatchNorm, no FC."""
    backbone = B.ResNet18(3, 512).eval()
    randomize_batch_norm(backbone)
    assert backbone.conv1.kernel_size == (7, 7) and backbone.conv1.stride == (2, 2) and backbone.conv1.padding == (3, 3)
    block = backbone.conv3x[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.identity_downsample.kernel_size == (1, 1) and block.identity_downsample.stride == (2, 2)
    assert not hasattr(backbone, "fc")
    x = images()
    feature, activations = backbone(x)
    sizes = {name: tuple(a.shape[1:]) for name, a in activations.items()}
    assert sizes["conv1"] == (64, 16, 16)
    assert sizes["conv2x/1/conv2"] == (64, 8, 8)
    assert sizes["conv3x/0/conv1"] == (128, 8, 8) and sizes["conv3x/0/conv2"] == (128, 4, 4)
    assert sizes["conv4x/1/conv2"] == (256, 2, 2) and sizes["conv5x/1/conv2"] == (512, 1, 1)
    ones = {name: torch.ones(shape[0]) for name, shape in sizes.items()}
    expected, expected_activations = clarena_hat_resnet(
        backbone, x, ones, backbone.conv_bn1, lambda b: [b.conv_bn1, b.conv_bn2]
    )
    torch.testing.assert_close(feature, expected)
    assert_close_dicts(activations, expected_activations)


def test_bottleneck_block_layout():
    block = ResNetBlockLarge("conv3x", 0, 256, 128, 2)
    assert [tuple(c.weight.shape) for c in (block.conv1, block.conv2, block.conv3)] == [
        (128, 256, 1, 1),
        (128, 128, 3, 3),
        (512, 128, 1, 1),
    ]
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)
    assert block.identity_downsample.weight.shape == (512, 256, 1, 1)
    assert block.weighted_layer_names == ["conv3x/0/conv1", "conv3x/0/conv2", "conv3x/0/conv3"]
    assert block.full_3rd_layer_name == "conv3x/0/conv3"
    output, activations = block.eval()(torch.randn(1, 256, 8, 8))
    assert output.shape == (1, 512, 4, 4) and list(activations) == block.weighted_layer_names
    assert ResNetBlockSmall("conv2x", 1, 64, 64, 1).identity_downsample is None


def test_without_batch_norm_and_activation():
    backbone = B.ResNet18(3, 512, activation_layer=None, batch_normalization=False)
    assert backbone.activation is False and not hasattr(backbone, "conv_activation1")
    feature, activations = backbone(images(1))
    assert (feature < 0).any()  # no ReLU anywhere


def test_cl_resnet_forward_takes_task_id():
    backbone = B.CLResNet18(3, 512).eval()
    backbone.setup_task_id(1)
    feature, activations = backbone(images(1), "train", task_id=1)
    assert feature.shape == (1, 512) and len(activations) == 17


# -------------------------------------------------------------------------------- pretrained
def torchvision_resnet18_keys() -> list[str]:
    """Key names of torchvision's resnet18 state dict."""
    keys = ["conv1.weight", *sorted(bn("bn1")), "fc.weight", "fc.bias"]
    for layer in range(1, 5):
        for block in (0, 1):
            base = f"layer{layer}.{block}"
            keys += [f"{base}.conv1.weight", f"{base}.conv2.weight", *bn(f"{base}.bn1"), *bn(f"{base}.bn2")]
            if layer > 1 and block == 0:
                keys += [f"{base}.downsample.0.weight", *bn(f"{base}.downsample.1")]
    return keys


def test_torchvision_key_mapping_covers_the_backbones():
    mapped = {torchvision_resnet18_key(k, batch_norm=True) for k in torchvision_resnet18_keys()} - {None}
    assert mapped == resnet18_keys()
    assert torchvision_resnet18_key("layer2.0.downsample.0.weight", True) == "conv3x.0.identity_downsample.weight"
    assert torchvision_resnet18_key("layer1.1.bn2.running_var", True) == "conv2x.1.conv_bn2.running_var"
    hat_mapped = {torchvision_resnet18_key(k, batch_norm=False) for k in torchvision_resnet18_keys()} - {None}
    hat_convs = {k for k in B.HATMaskResNet18(3, 512, "sigmoid").state_dict() if "task_embedding_t" not in k}
    assert hat_mapped == hat_convs
    with pytest.raises(KeyError, match="layer9"):
        torchvision_resnet18_key("layer9.0.weird.weight", True)


def fake_torchvision(monkeypatch, source: dict):
    models = types.SimpleNamespace(resnet18=lambda weights: types.SimpleNamespace(state_dict=lambda: source))
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))


def test_pretrained_weights_are_loaded(monkeypatch):
    target = B.ResNet18(3, 512).state_dict()
    source = {}
    for key in torchvision_resnet18_keys():
        mapped = torchvision_resnet18_key(key, batch_norm=True)
        like = torch.zeros(10) if mapped is None else target[mapped]
        source[key] = torch.rand(like.shape).to(like.dtype) if like.is_floating_point() else torch.tensor(7)
    fake_torchvision(monkeypatch, source)
    for cls in (B.ResNet18, B.CLResNet18):
        loaded = cls(3, 512, pretrained_weights="IMAGENET1K_V1").state_dict()
        torch.testing.assert_close(loaded["conv_bn1.running_var"], source["bn1.running_var"])
        torch.testing.assert_close(loaded["conv5x.1.conv2.weight"], source["layer4.1.conv2.weight"])
    hat = B.HATMaskResNet18(3, 512, "sigmoid", batch_normalization="shared", pretrained_weights="IMAGENET1K_V1")
    torch.testing.assert_close(hat.conv3x[0].identity_downsample.weight, source["layer2.0.downsample.0.weight"])
    assert torch.all(hat.conv_bn1.running_var == 1)  # HAT backbones take no BatchNorm statistics


def test_pretrained_weights_need_torchvision_and_resnet18(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match="torchvision"):
        B.ResNet18(3, 512, pretrained_weights="IMAGENET1K_V1")
    with pytest.warns(UserWarning, match="ResNet-18 only"):
        B.CLResNet34(3, 512, pretrained_weights="IMAGENET1K_V1")


# CLArena's constructor arguments of each ResNet family's depth classes, in order, then this
# package's keyword-only ones
VARIANT_ARGUMENTS = {
    "ResNet": ["input_channels", "output_dim", "activation_layer", "batch_normalization", "bias", "pretrained_weights"],
    "CLResNet": ["input_channels", "output_dim", "activation_layer", "batch_normalization", "bias", "pretrained_weights"],
    "HATMaskResNet": [
        "input_channels", "output_dim", "gate", "activation_layer", "batch_normalization", "bias", "pretrained_weights",
    ],
    "AmnesiacHATResNet": [
        "input_channels", "output_dim", "gate", "activation_layer", "batch_normalization", "bias",
        "pretrained_weights", "disable_unlearning",
    ],
    "WSNMaskResNet": ["input_channels", "output_dim", "activation_layer", "batch_normalization", "bias"],
}  # fmt: skip
KEYWORD_ONLY_ARGUMENTS = {"HATMaskResNet": ["mask_shortcuts"], "AmnesiacHATResNet": ["mask_shortcuts"]}
FAMILY_MODULES = {
    "ResNet": resnet,
    "CLResNet": resnet,
    "HATMaskResNet": hat_mask_resnet,
    "AmnesiacHATResNet": amnesiac_hat_resnet,
    "WSNMaskResNet": wsn_mask_resnet,
}


@pytest.mark.parametrize("family", sorted(VARIANT_ARGUMENTS))
@pytest.mark.parametrize("depth", [18, 152])
def test_depth_variants_take_their_family_arguments_in_order(family, depth):
    parameters = inspect.signature(getattr(B, f"{family}{depth}")).parameters.values()
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword_only = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert positional == VARIANT_ARGUMENTS[family]
    assert keyword_only == KEYWORD_ONLY_ARGUMENTS.get(family, [])
    assert [p.name for p in parameters][-1] == "kwargs"
    assert all(p.default is True for p in parameters if p.name == "mask_shortcuts")


def test_depth_variants_bind_positional_arguments_by_name():
    backbone = B.AmnesiacHATResNet18(3, 512, "sigmoid", None, "shared", True, None, True)
    assert backbone.gate == "sigmoid" and not backbone.activation and backbone.batch_normalization == "shared"
    assert backbone.conv1.bias is not None and backbone.disable_unlearning and backbone.mask_shortcuts
    with pytest.raises(TypeError, match="gate"):
        B.HATMaskResNet18(3, 512)
    with pytest.raises(TypeError):  # a switch, never bound by position
        B.HATMaskResNet18(3, 512, "sigmoid", nn.ReLU, None, False, None, False)


@pytest.mark.parametrize("family", sorted(VARIANT_ARGUMENTS))
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_every_depth_class_is_a_class_statement_with_its_layout(family, depth):
    """A reader (or `grep "class HATMaskResNet50"`) finds each class in its module's source."""
    cls = getattr(B, f"{family}{depth}")
    module = FAMILY_MODULES[family]
    assert cls.__module__ == module.__name__ and cls.__qualname__ == cls.__name__ == f"{family}{depth}"
    assert getattr(module, cls.__name__) is cls
    assert inspect.getsource(cls).startswith(f"class {family}{depth}(")
    assert cls.__doc__ and f"ResNet-{depth}" in cls.__doc__
    assert cls.layout is DEPTHS[depth] and cls.layout.depth == depth
    # the constructor is the family's, written out: no signature made up at run time
    assert not hasattr(cls.__init__, "__signature__")
    assert cls.__init__.__qualname__.split(".")[0] in ("ResNet", "HATMaskResNet", "AmnesiacHATResNet", "WSNMaskResNet")


def test_layouts_give_the_resnet_paper_depths():
    assert {depth: (layout.bottleneck, layout.building_block_nums) for depth, layout in DEPTHS.items()} == {
        18: (False, (2, 2, 2, 2)),
        34: (False, (3, 4, 6, 3)),
        50: (True, (3, 4, 6, 3)),
        101: (True, (3, 4, 23, 3)),
        152: (True, (3, 8, 36, 3)),
    }
    block, nums, preceding, channels = hat_mask_resnet.HATMaskResNet50.architecture()
    assert block is hat_mask_resnet.HATMaskResNetBlockLarge and nums == (3, 4, 6, 3)
    assert preceding == (64, 256, 512, 1024) and channels == (64, 128, 256, 512)
    assert wsn_mask_resnet.WSNMaskResNet18.architecture()[0] is ResNetBlockSmall


@pytest.mark.parametrize("family", [resnet.ResNet, hat_mask_resnet.HATMaskResNet, wsn_mask_resnet.WSNMaskResNet])
def test_a_family_class_without_a_layout_names_what_is_missing(family):
    arguments = {"gate": "sigmoid"} if family is hat_mask_resnet.HATMaskResNet else {}
    with pytest.raises(TypeError, match=f"{family.__name__} has no `layout`"):
        family(3, 512, **arguments)


@pytest.mark.parametrize("cls", [B.CLResNet34, B.HATMaskResNet18, B.AmnesiacHATResNet18])
def test_depth_classes_pickle_by_their_name(cls):
    arguments = {} if cls is B.CLResNet34 else {"gate": "sigmoid"}
    backbone = cls(3, 512, **arguments).eval()
    restored = pickle.loads(pickle.dumps(backbone))
    assert type(restored) is cls
    assert_close_dicts(restored.state_dict(), backbone.state_dict())


@pytest.mark.parametrize("base", [hat_mask_resnet.HATMaskResNetBase, amnesiac_hat_resnet.AmnesiacHATResNetBase])
def test_the_hat_bases_take_mask_shortcuts_too(base):
    parameter = inspect.signature(base).parameters["mask_shortcuts"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is True
    architecture = hat_mask_resnet.HATMaskResNet18.architecture()
    for mask_shortcuts in (True, False):
        backbone = base(3, *architecture, 512, "sigmoid", mask_shortcuts=mask_shortcuts)
        shortcuts = [name for name in backbone.weighted_layer_names if name.endswith("identity_downsample")]
        assert len(shortcuts) == (3 if mask_shortcuts else 0)
