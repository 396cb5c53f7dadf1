"""Residual networks: building blocks, `ResNetBase`, `ResNet18..152` and `CLResNet18..152`.

The layout is CLArena's: an ImageNet stem (7x7 stride-2 conv, 3x3 max-pool), four stages
`conv2x..conv5x` of blocks whose stride sits on the 3x3 conv (`conv2`), no BatchNorm on the
1x1 shortcut convs (`identity_downsample`: weighted layers of the WSN ResNets and, unless
`mask_shortcuts=False`, of the HAT ones), global average pooling and no fully connected layer.

Every family of ResNets (plain, HAT, AmnesiacHAT, WSN) has a `*Base` class that takes the
architecture as arguments, a family class (`ResNet`, `HATMaskResNet`, ...) whose `__init__` has
the signature of its depth classes, and one class per depth that sets only `layout`.
"""

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import batch_normalization_argument
from clarena_backbones.backbones.base import Backbone, CLBackbone, TaskIdForward, activate
from clarena_backbones.backbones.independent_bn import SharedBatchNorm

STAGE_NAMES = ("conv2x", "conv3x", "conv4x", "conv5x")
STAGE_STRIDES = (1, 2, 2, 2)
STAGE_CHANNELS = (64, 128, 256, 512)


class ResNetLayout(NamedTuple):
    """The blocks of one ResNet depth: which block type, and how many in each stage."""

    bottleneck: bool  # bottleneck blocks (three convs), or basic blocks (two)
    building_block_nums: tuple[int, int, int, int]

    @property
    def depth(self) -> int:
        """The depth in the ResNet paper's count: the stem conv, every block conv and the classifier."""
        return 2 + (3 if self.bottleneck else 2) * sum(self.building_block_nums)


RESNET18_LAYOUT = ResNetLayout(bottleneck=False, building_block_nums=(2, 2, 2, 2))
RESNET34_LAYOUT = ResNetLayout(bottleneck=False, building_block_nums=(3, 4, 6, 3))
RESNET50_LAYOUT = ResNetLayout(bottleneck=True, building_block_nums=(3, 4, 6, 3))
RESNET101_LAYOUT = ResNetLayout(bottleneck=True, building_block_nums=(3, 4, 23, 3))
RESNET152_LAYOUT = ResNetLayout(bottleneck=True, building_block_nums=(3, 8, 36, 3))
DEPTHS = {
    layout.depth: layout
    for layout in (RESNET18_LAYOUT, RESNET34_LAYOUT, RESNET50_LAYOUT, RESNET101_LAYOUT, RESNET152_LAYOUT)
}
_ORDINALS = ("1st", "2nd", "3rd")

# computes a weighted conv: (layer name, nn.Conv2d, input) -> output
ConvCall = Callable[[str, nn.Conv2d, Tensor], Tensor]


class _ResNetBlock(SharedBatchNorm, Backbone):
    """A residual block: convs `conv1..convK` (each with optional BN and activation) plus a shortcut.

    The shortcut is added after the last conv's BatchNorm, before its activation (and, in HAT
    blocks, before its unit mask).
    """

    expansion: ClassVar[int]

    def __init__(
        self,
        outer_layer_name: str,
        block_idx: int,
        preceding_output_channels: int,
        input_channels: int,
        overall_stride: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = True,
        bias: bool = False,
        output_dim: int | None = None,
        **kwargs: Any,
    ) -> None:
        """A block of stage `outer_layer_name` (index `block_idx`), `input_channels` wide inside."""
        batch_normalization = batch_normalization_argument(batch_normalization, True, kwargs)
        super().__init__(output_dim=None, **kwargs)
        self.batch_normalization = batch_normalization
        self.activation: bool = activation_layer is not None
        self._layer_name_prefix = f"{outer_layer_name}/{block_idx}/"
        specs = self._conv_specs(preceding_output_channels, input_channels, overall_stride)
        for number, (in_channels, out_channels, kernel, stride) in enumerate(specs, 1):
            name = f"{self._layer_name_prefix}conv{number}"
            setattr(self, f"full_{_ORDINALS[number - 1]}_layer_name", name)
            setattr(self, f"conv{number}", nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=bias))
            self.weighted_layer_names.append(name)
            if self.batch_normalization:
                setattr(self, f"conv_bn{number}", nn.BatchNorm2d(out_channels))
            if self.activation:
                setattr(self, f"conv_activation{number}", activation_layer())
        output_channels = input_channels * self.expansion
        self.identity_downsample: nn.Conv2d | None = (
            nn.Conv2d(preceding_output_channels, output_channels, 1, overall_stride, bias=False)
            if preceding_output_channels != output_channels or overall_stride != 1
            else None
        )
        # a weighted layer of the WSN ResNets and of the HAT ones that mask their shortcuts (which
        # set it to None otherwise); CLArena's plain ResNets keep its layer list
        self.shortcut_layer_name: str | None = (
            None if self.identity_downsample is None else f"{self._layer_name_prefix}identity_downsample"
        )
        numbers = range(1, len(specs) + 1)
        # per conv: (layer name, conv attribute, activation attribute), fixed for the block's life
        self._layer_attributes = tuple(
            (name, f"conv{number}", f"conv_activation{number}")
            for name, number in zip(self.weighted_layer_names, numbers)
        )
        self._live_bns = (
            tuple(self._modules[f"conv_bn{number}"] for number in numbers) if self.batch_normalization else None
        )

    @property
    def conv_layer_names(self) -> list[str]:
        """The names of the block's convs `conv1..convK` (not the shortcut's)."""
        return [name for name, _, _ in self._layer_attributes]

    def _conv_specs(self, preceding: int, channels: int, stride: int) -> list[tuple[int, int, int, int]]:
        """(in, out, kernel, stride) of each conv."""
        raise NotImplementedError

    def _run(
        self,
        input: Tensor,
        bns: Sequence[nn.Module] | None,
        masks: dict[str, Tensor] | None = None,
        conv_call: ConvCall | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The block on `input`: `bns` per conv, HAT unit `masks` by layer name, `conv_call` for masked convs."""
        identity = self._shortcut(input, masks, conv_call)
        modules = self._modules
        last = len(self._layer_attributes) - 1
        activations = {}
        x = input
        for index, (name, conv_attribute, activation_attribute) in enumerate(self._layer_attributes):
            conv = modules[conv_attribute]
            x = conv(x) if conv_call is None else conv_call(name, conv, x)
            if bns is not None:
                x = bns[index](x)
            if index == last:
                x = x + identity
            x = activate(x, None if masks is None else masks[name], modules.get(activation_attribute))
            activations[name] = x
        if self.shortcut_layer_name is not None and (masks is not None or conv_call is not None):
            # a weighted layer of the masked ResNets, so it has an activation (FG-AdaHAT reads it)
            activations[self.shortcut_layer_name] = identity
        return x, activations

    def _shortcut(self, input: Tensor, masks: dict[str, Tensor] | None, conv_call: ConvCall | None) -> Tensor:
        """The shortcut branch: `input` itself, or its 1x1 conv when the block changes shape."""
        conv = self.identity_downsample
        if conv is None:
            return input
        return conv(input) if conv_call is None else conv_call(self.shortcut_layer_name, conv, input)

    def forward(self, input: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return `(output_feature_map, activations)`."""
        return self._run(input, self.get_bn(None, None))


# `ResNetBase`'s architecture arguments, in its order: block type, blocks per stage, and each
# stage's preceding output channels and input channels
Architecture = tuple[type[_ResNetBlock], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class ResNetBlockSmall(_ResNetBlock):
    """Basic block of ResNet-18/34: 3x3 conv, 3x3 conv (strided)."""

    expansion = 1

    def _conv_specs(self, preceding: int, channels: int, stride: int) -> list[tuple[int, int, int, int]]:
        return [(preceding, channels, 3, 1), (channels, channels, 3, stride)]


class ResNetBlockLarge(_ResNetBlock):
    """Bottleneck block of ResNet-50/101/152: 1x1 conv, 3x3 conv (strided), 1x1 conv to 4x width."""

    expansion = 4

    def _conv_specs(self, preceding: int, channels: int, stride: int) -> list[tuple[int, int, int, int]]:
        return [(preceding, channels, 1, 1), (channels, channels, 3, stride), (channels, channels * 4, 1, 1)]


@dataclass(frozen=True)
class ResNetFamily:
    """What sets a family of ResNets apart, read by its classes' one construction path.

    Its BatchNorm policy is the `get_bn` hook its classes inherit (`SharedBatchNorm` or
    `IndependentBatchNorm`).
    """

    basic_block: type[_ResNetBlock]  # ResNet-18/34
    bottleneck_block: type[_ResNetBlock]  # ResNet-50/101/152
    # whether torchvision's BatchNorm entries load with its conv weights; None: the family takes
    # no `pretrained_weights`
    pretrained_batch_norm: bool | None

    def block(self, bottleneck: bool) -> type[_ResNetBlock]:
        return self.bottleneck_block if bottleneck else self.basic_block

    def architecture(self, layout: ResNetLayout) -> Architecture:
        """The architecture arguments of the family's ResNet of `layout`."""
        expansion = 4 if layout.bottleneck else 1
        preceding_output_channels = (64, *(channels * expansion for channels in STAGE_CHANNELS[:3]))
        return self.block(layout.bottleneck), layout.building_block_nums, preceding_output_channels, STAGE_CHANNELS


class ResNetBase(SharedBatchNorm, Backbone):
    """A ResNet given its block type, blocks per stage and channel widths."""

    family: ClassVar[ResNetFamily] = ResNetFamily(ResNetBlockSmall, ResNetBlockLarge, pretrained_batch_norm=True)
    # the blocks of a class of one depth (ResNet18, HATMaskResNet50, ...); None on the others
    layout: ClassVar[ResNetLayout | None] = None

    def __init__(
        self,
        input_channels: int,
        building_block_type: type[_ResNetBlock],
        building_block_nums: tuple[int, int, int, int],
        building_block_preceding_output_channels: tuple[int, int, int, int],
        building_block_input_channels: tuple[int, int, int, int],
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = True,
        bias: bool = False,
        *,
        block_arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """`output_dim` is metadata for the heads (512 for ResNet-18/34, 2048 beyond).

        `block_arguments`: extra constructor arguments of every block (a masked family's, such as
        HAT's gate and BatchNorm mode).
        """
        batch_normalization = batch_normalization_argument(batch_normalization, True, kwargs)
        super().__init__(output_dim=output_dim, **kwargs)
        self.batch_normalization = batch_normalization
        self.activation: bool = activation_layer is not None
        self.conv1 = nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=bias)
        self.weighted_layer_names.append("conv1")
        if self.batch_normalization:
            self.conv_bn1 = nn.BatchNorm2d(64)
            self._live_bns = (self.conv_bn1,)
        if self.activation:
            self.conv_activation1 = activation_layer()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        block_arguments = {"batch_normalization": batch_normalization, **(block_arguments or {})}
        for stage, (name, stride) in enumerate(zip(STAGE_NAMES, STAGE_STRIDES)):
            blocks = self._multiple_blocks(
                name,
                building_block_type,
                building_block_nums[stage],
                building_block_preceding_output_channels[stage],
                building_block_input_channels[stage],
                stride,
                activation_layer,
                bias,
                block_arguments,
            )
            setattr(self, name, blocks)
        self.avepool = nn.AdaptiveAvgPool2d((1, 1))
        self._blocks: list[_ResNetBlock] = [block for name in STAGE_NAMES for block in getattr(self, name)]

    @classmethod
    def architecture(cls) -> Architecture:
        """The architecture arguments of a class of one depth (its family's blocks in its `layout`),
        which `__init__` takes after `input_channels`."""
        if cls.layout is None:
            raise TypeError(
                f"{cls.__name__} has no `layout`: build one of its depth classes (18, 34, 50, 101 or 152 "
                "layers), or give the architecture arguments to its family's *Base class"
            )
        return cls.family.architecture(cls.layout)

    def _load_torchvision_weights(self, pretrained_weights: str | None) -> None:
        """Load torchvision's ImageNet weights named `pretrained_weights` (None: none) into a class of one depth."""
        load_pretrained(self, self.layout.depth, pretrained_weights, self.family.pretrained_batch_norm)

    def _multiple_blocks(
        self,
        layer_name: str,
        building_block_type: type[_ResNetBlock],
        building_block_num: int,
        preceding_output_channels: int,
        input_channels: int,
        overall_stride: int,
        activation_layer: type[nn.Module] | None,
        bias: bool,
        block_arguments: Mapping[str, Any],
    ) -> nn.Sequential:
        """One stage: `building_block_num` blocks, the first one strided and widening."""
        blocks = []
        for block_idx in range(building_block_num):
            block = building_block_type(
                outer_layer_name=layer_name,
                block_idx=block_idx,
                preceding_output_channels=preceding_output_channels,
                input_channels=input_channels,
                overall_stride=overall_stride if block_idx == 0 else 1,
                activation_layer=activation_layer,
                bias=bias,
                **block_arguments,
            )
            blocks.append(block)
            self.weighted_layer_names += block.weighted_layer_names
            preceding_output_channels = input_channels * block.expansion
        return nn.Sequential(*blocks)

    def _iter_blocks(self) -> list[_ResNetBlock]:
        """Every block, input to output."""
        return self._blocks

    def _forward_resnet(
        self,
        input: Tensor,
        stage: str | None = None,
        test_task_id: int | None = None,
        masks: dict[str, Tensor] | None = None,
        conv_call: ConvCall | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole network: BNs chosen for `stage`, HAT unit `masks`, `conv_call` for masked convs."""
        x = self.conv1(input) if conv_call is None else conv_call("conv1", self.conv1, input)
        stem_bns = self.get_bn(stage, test_task_id)
        if stem_bns is not None:
            x = stem_bns[0](x)
        x = activate(x, None if masks is None else masks["conv1"], self._modules.get("conv_activation1"))
        activations = {"conv1": x}
        x = self.maxpool(x)
        for block in self._blocks:
            x, block_activations = block._run(x, block.get_bn(stage, test_task_id), masks, conv_call)
            activations.update(block_activations)
        return self.avepool(x).flatten(1), activations

    def forward(self, input: Tensor, stage: str | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Return `(output_feature (B, 512 or 2048), activations)`; `stage` is not used."""
        return self._forward_resnet(input)


# ------------------------------------------------------------------------------ pretrained weights
def torchvision_resnet18_key(key: str, batch_norm: bool) -> str | None:
    """Our key for a key of torchvision's resnet18 state dict (None: not loaded).

    `batch_norm=False` drops every BatchNorm entry (HAT backbones load conv weights only). The
    classifier `fc` and the shortcut BatchNorm have no counterpart.
    """
    parts = key.split(".")
    if parts[0] == "conv1":
        return key
    if parts[0] == "bn1":
        return "conv_bn1." + ".".join(parts[1:]) if batch_norm else None
    if parts[0] == "fc":
        return None
    if parts[0].startswith("layer") and len(parts) >= 4:
        block = f"conv{int(parts[0][5:]) + 1}x.{parts[1]}"
        part, rest = parts[2], ".".join(parts[3:])
        if part.startswith("conv"):
            return f"{block}.{part}.{rest}"
        if part.startswith("bn"):
            return f"{block}.conv_bn{part[2:]}.{rest}" if batch_norm else None
        if part == "downsample":
            return f"{block}.identity_downsample.{'.'.join(parts[4:])}" if parts[3] == "0" else None
    raise KeyError(f"unexpected key in a torchvision ResNet-18 state dict: '{key}'")


def load_pretrained(backbone: nn.Module, depth: int, pretrained_weights: str | None, batch_norm: bool) -> None:
    """Load torchvision's ImageNet ResNet-18 weights (`pretrained_weights`, e.g. 'IMAGENET1K_V1').

    Only ResNet-18 has them (as in CLArena); for deeper ResNets the argument is ignored with a
    warning. Needs torchvision (not a dependency of this package).
    """
    if pretrained_weights is None:
        return
    if depth != 18:
        warnings.warn(
            f"{type(backbone).__name__}: `pretrained_weights` exist for ResNet-18 only; ignored.",
            UserWarning,
            stacklevel=3,
        )
        return
    try:
        import torchvision
    except ImportError as error:
        raise ImportError("`pretrained_weights` needs torchvision; install it or pass None.") from error
    source = torchvision.models.resnet18(weights=pretrained_weights).state_dict()
    converted = {}
    for key, value in source.items():
        target = torchvision_resnet18_key(key, batch_norm)
        if target is not None:
            converted[target] = value
    backbone.load_state_dict(converted, strict=False)


# ------------------------------------------------------------------------------ one class per depth
class ResNet(ResNetBase):
    """A ResNet of the depth its class's `layout` gives: the family of `ResNet18` ... `ResNet152`."""

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = True,
        bias: bool = False,
        pretrained_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`pretrained_weights`: torchvision's ImageNet weights, e.g. 'IMAGENET1K_V1' (ResNet-18 only)."""
        super().__init__(
            input_channels, *self.architecture(), output_dim, activation_layer, batch_normalization, bias, **kwargs
        )
        self._load_torchvision_weights(pretrained_weights)


class ResNet18(ResNet):
    """ResNet-18: basic blocks, 2 in each stage."""

    layout = RESNET18_LAYOUT


class ResNet34(ResNet):
    """ResNet-34: basic blocks, 3, 4, 6 and 3 in the stages."""

    layout = RESNET34_LAYOUT


class ResNet50(ResNet):
    """ResNet-50: bottleneck blocks, 3, 4, 6 and 3 in the stages."""

    layout = RESNET50_LAYOUT


class ResNet101(ResNet):
    """ResNet-101: bottleneck blocks, 3, 4, 23 and 3 in the stages."""

    layout = RESNET101_LAYOUT


class ResNet152(ResNet):
    """ResNet-152: bottleneck blocks, 3, 8, 36 and 3 in the stages."""

    layout = RESNET152_LAYOUT


# `forward` takes (and ignores) CLArena's `task_id`; one network serves every task
class CLResNet18(TaskIdForward, ResNet18, CLBackbone):
    """ResNet-18 for continual learning."""


class CLResNet34(TaskIdForward, ResNet34, CLBackbone):
    """ResNet-34 for continual learning."""


class CLResNet50(TaskIdForward, ResNet50, CLBackbone):
    """ResNet-50 for continual learning."""


class CLResNet101(TaskIdForward, ResNet101, CLBackbone):
    """ResNet-101 for continual learning."""


class CLResNet152(TaskIdForward, ResNet152, CLBackbone):
    """ResNet-152 for continual learning."""


def __getattr__(name: str) -> Any:
    # CLArena defines its masked versions in this module too; here they live in their own modules
    # (importing them here would be circular). Pickles and configs naming them still resolve.
    from clarena_backbones.backbones.clarena_pickles import moved

    return moved(__name__, name)
