"""Every YAML under configs/backbone instantiates with Hydra into a working backbone of the right size."""

from pathlib import Path

import hydra.utils
import pytest
import torch
from backbone_helpers import PARAMS, WEIGHTED_LAYERS, images, param_count
from omegaconf import OmegaConf

import clarena.backbones as B
from clarena.backbones.resnet import DEPTHS, STAGE_CHANNELS

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "backbone").glob("*.yaml"))
MLP_WEIGHTS, MLP_UNITS = 784 * 256 + 256 * 100 + 100 * 64, 256 + 100 + 64  # 232,704 and 420


def resnet_units(depth: int) -> int:
    """Output channels summed over the weighted convs (= HAT embedding units = BN channels)."""
    bottleneck, nums = DEPTHS[depth]
    per_block = 6 if bottleneck else 2  # c + c + 4c, or c + c
    return 64 + sum(n * per_block * c for n, c in zip(nums, STAGE_CHANNELS))


def resnet_conv_weights(backbone) -> int:
    return sum(backbone.get_layer_by_name(name).weight.numel() for name in backbone.weighted_layer_names)


def test_every_class_has_a_config():
    targets = {OmegaConf.load(path)["_target_"].rsplit(".", 1)[1] for path in CONFIGS}
    # every network class (the ResNet52 names are aliases of the 50-layer classes)
    classes = {name for name in B.__all__ if not name.endswith("Backbone") and getattr(B, name).__name__ == name}
    assert targets == classes


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_instantiates(path):
    config = OmegaConf.load(path)
    backbone = hydra.utils.instantiate(config)
    assert type(backbone).__name__ == config["_target_"].rsplit(".", 1)[1]
    name = type(backbone).__name__
    if "MLP" in name:
        x = torch.randn(2, 1, 28, 28)
        expected = {
            "MLP": MLP_WEIGHTS + MLP_UNITS,
            "HAT": MLP_WEIGHTS + 2 * MLP_UNITS,  # + one embedding unit per unit
            "WSN": 2 * (MLP_WEIGHTS + MLP_UNITS),  # + one score per weight and bias
        }
        if name in ("MLP", "CLMLP"):  # the documentation's example: `batch_normalisation: true`
            assert backbone.batch_normalization is True
            expected_params = expected["MLP"] + 2 * MLP_UNITS
        else:
            expected_params = expected["WSN" if "WSN" in name else "HAT"]
        assert param_count(backbone) == expected_params
    else:
        depth = int(name.rsplit("ResNet", 1)[1])
        x = images(1)
        units = resnet_units(depth)
        # the HAT and WSN ResNets also mask their shortcut convs (weighted layers there)
        shortcuts = [block.identity_downsample for block in backbone._iter_blocks() if block.identity_downsample]
        assert len(shortcuts) == (4 if DEPTHS[depth][0] else 3)
        masked_shortcuts = shortcuts if "HAT" in name or "WSN" in name else []
        shortcut_units = sum(conv.out_channels for conv in masked_shortcuts)
        assert len(backbone.weighted_layer_names) == WEIGHTED_LAYERS[depth] + len(masked_shortcuts)
        if "HAT" in name:  # no BatchNorm, one embedding unit per output channel
            assert backbone.batch_normalization is False
            assert sum(e.weight.numel() for e in backbone.task_embedding_t.values()) == units + shortcut_units
            assert param_count(backbone) == PARAMS[depth] - units + shortcut_units
        elif "WSN" in name:  # no BatchNorm, a score per conv weight and per output channel
            assert param_count(backbone) == PARAMS[depth] - units + shortcut_units + resnet_conv_weights(backbone)
        else:
            assert param_count(backbone) == PARAMS[depth]
    backbone.eval()
    if isinstance(backbone, B.HATMaskBackbone):
        backbone.setup_task_id(1)
        output = backbone(x, "validation", s_max=400.0)
    elif isinstance(backbone, B.WSNMaskBackbone):
        output = backbone(x, "validation", 0.7)
    else:
        output = backbone(x)
    assert output[0].shape == (x.size(0), backbone.output_dim)
