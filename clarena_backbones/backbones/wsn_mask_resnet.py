"""WSN-masked ResNets (not in CLArena): `WSNMaskResNetBase` and `WSNMaskResNet18..152`.

Every weighted conv (every name in `weighted_layer_names`, the 1x1 shortcut convs included as
`<block>/identity_downsample` after their block's convs, so that a later task cannot overwrite
them) runs with WSN-masked weight and bias, exactly as `WSNMaskMLP`'s Linear layers do. A conv's weight
score has the weight's shape, so CLArena's WSN algorithm (`gate_fn.apply(score.weight, p)`,
`grad *= 1 - mask`) drives these backbones unchanged.
"""

from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import batch_normalization_argument
from clarena_backbones.backbones.resnet import (
    RESNET18_LAYOUT,
    RESNET34_LAYOUT,
    RESNET50_LAYOUT,
    RESNET101_LAYOUT,
    RESNET152_LAYOUT,
    ConvCall,
    ResNetBase,
    ResNetBlockLarge,
    ResNetBlockSmall,
    ResNetFamily,
)
from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone


class WSNMaskResNetBase(WSNMaskBackbone, ResNetBase):
    """A ResNet whose weighted convs are masked by WSN. BatchNorm, off by default, is shared by all tasks."""

    family = ResNetFamily(ResNetBlockSmall, ResNetBlockLarge, pretrained_batch_norm=None)

    def __init__(
        self,
        input_channels: int,
        building_block_type: type[ResNetBlockSmall] | type[ResNetBlockLarge],
        building_block_nums: tuple[int, int, int, int],
        building_block_preceding_output_channels: tuple[int, int, int, int],
        building_block_input_channels: tuple[int, int, int, int],
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = False,
        bias: bool = False,
        **kwargs: Any,
    ) -> None:
        batch_normalization = batch_normalization_argument(batch_normalization, False, kwargs)
        super().__init__(
            input_channels=input_channels,
            building_block_type=building_block_type,
            building_block_nums=building_block_nums,
            building_block_preceding_output_channels=building_block_preceding_output_channels,
            building_block_input_channels=building_block_input_channels,
            output_dim=output_dim,
            activation_layer=activation_layer,
            batch_normalization=batch_normalization,
            bias=bias,
            **kwargs,
        )
        self.weighted_layer_names[:] = ["conv1"] + [
            name
            for block in self._blocks
            for name in [*block.weighted_layer_names, block.shortcut_layer_name]
            if name is not None
        ]
        self._add_parameter_scores()

    def _forward_with_layer_call(
        self, input: Tensor, stage: str, layer_call: ConvCall
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self._forward_resnet(input, stage, conv_call=layer_call)


class WSNMaskResNet(WSNMaskResNetBase):
    """A WSN-masked ResNet of the depth its class's `layout` gives: the family of `WSNMaskResNet18` ... `152`."""

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = False,
        bias: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            input_channels, *self.architecture(), output_dim, activation_layer, batch_normalization, bias, **kwargs
        )


class WSNMaskResNet18(WSNMaskResNet):
    """WSN-masked ResNet-18."""

    layout = RESNET18_LAYOUT


class WSNMaskResNet34(WSNMaskResNet):
    """WSN-masked ResNet-34."""

    layout = RESNET34_LAYOUT


class WSNMaskResNet50(WSNMaskResNet):
    """WSN-masked ResNet-50."""

    layout = RESNET50_LAYOUT


class WSNMaskResNet101(WSNMaskResNet):
    """WSN-masked ResNet-101."""

    layout = RESNET101_LAYOUT


class WSNMaskResNet152(WSNMaskResNet):
    """WSN-masked ResNet-152."""

    layout = RESNET152_LAYOUT
