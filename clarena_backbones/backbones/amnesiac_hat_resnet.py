"""AmnesiacHAT ResNets: HAT-masked ResNets that train backup ResNets alongside."""

from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.amnesiac_hat_backbone import AmnesiacHATBackbone, route
from clarena_backbones.backbones.arguments import batch_normalization_argument, hat_batch_normalization
from clarena_backbones.backbones.base import activate
from clarena_backbones.backbones.hat_mask_resnet import (
    HATMaskResNetBase,
    HATMaskResNetBlockLarge,
    HATMaskResNetBlockSmall,
)
from clarena_backbones.backbones.resnet import (
    RESNET18_LAYOUT,
    RESNET34_LAYOUT,
    RESNET50_LAYOUT,
    RESNET101_LAYOUT,
    RESNET152_LAYOUT,
    ResNetBase,
    _ResNetBlock,
)


class AmnesiacHATResNetBase(AmnesiacHATBackbone, HATMaskResNetBase):
    """`HATMaskResNetBase` with AmnesiacHAT's backup streams (stage 'train_with_backup').

    A backup stream of task `b` routes, at every conv (the stem, each block conv, and each
    shortcut: with its own mask, or with its block's last conv's where shortcuts are not masked),
    `M_b * BN_b(backup(x)) + (1 - M_b) * BN(main(x))`, then applies the current training mask and
    the main activation and pooling.
    """

    original_backbone_class = ResNetBase

    def __init__(
        self,
        input_channels: int,
        building_block_type: type[HATMaskResNetBlockSmall] | type[HATMaskResNetBlockLarge],
        building_block_nums: tuple[int, int, int, int],
        building_block_preceding_output_channels: tuple[int, int, int, int],
        building_block_input_channels: tuple[int, int, int, int],
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = False,
        disable_unlearning: bool = False,
        *,
        mask_shortcuts: bool = True,
        **kwargs: Any,
    ) -> None:
        """`mask_shortcuts`: as `HATMaskResNetBase`'s (False: CLArena's unmasked shortcuts)."""
        batch_normalization = hat_batch_normalization(batch_normalization_argument(batch_normalization, None, kwargs))
        super().__init__(
            input_channels=input_channels,
            building_block_type=building_block_type,
            building_block_nums=building_block_nums,
            building_block_preceding_output_channels=building_block_preceding_output_channels,
            building_block_input_channels=building_block_input_channels,
            output_dim=output_dim,
            gate=gate,
            activation_layer=activation_layer,
            batch_normalization=batch_normalization,
            bias=bias,
            disable_unlearning=disable_unlearning,
            mask_shortcuts=mask_shortcuts,
            **kwargs,
        )
        if not disable_unlearning:
            bottleneck = building_block_type.expansion > 1
            self.backup_backbone_kwargs: dict[str, Any] = {
                "input_channels": input_channels,
                "building_block_type": self.original_backbone_class.family.block(bottleneck),
                "building_block_nums": building_block_nums,
                "building_block_preceding_output_channels": building_block_preceding_output_channels,
                "building_block_input_channels": building_block_input_channels,
                "output_dim": output_dim,
                "activation_layer": activation_layer,
                "batch_normalization": bool(batch_normalization),
                "bias": bias,
            }

    def _forward_with_backups(
        self, input: Tensor, mask: dict[str, Tensor], backup_task_ids: list[int]
    ) -> tuple[Tensor, dict[int, Tensor], dict[str, Tensor]]:
        feature, activations = self._forward_resnet(input, "train", None, masks=mask)
        return feature, {task_id: self._backup_stream(task_id, input, mask) for task_id in backup_task_ids}, activations

    def _backup_stream(self, task_id: int, input: Tensor, mask: dict[str, Tensor]) -> Tensor:
        """The feature of task `task_id`'s backup stream."""
        backup = self.backup_backbones[f"{task_id}"]
        backup_mask = self.masks[task_id]
        stem_bns = self.get_bn("train", None)
        backup_stem_bns = backup.get_bn("train", None) if stem_bns is not None else None
        stem_bn, backup_stem_bn = (None, None) if stem_bns is None else (stem_bns[0], backup_stem_bns[0])
        x = _routed(backup_mask["conv1"], self.conv1, backup.conv1, stem_bn, backup_stem_bn, input)
        x = self.maxpool(activate(x, mask["conv1"], self._modules.get("conv_activation1")))
        for block, backup_block in zip(self._blocks, backup._iter_blocks()):
            x = self._backup_block(block, backup_block, backup_mask, mask, x)
        return self.avepool(x).flatten(1)

    @staticmethod
    def _backup_block(
        block: _ResNetBlock,
        backup_block: _ResNetBlock,
        backup_mask: dict[str, Tensor],
        mask: dict[str, Tensor],
        input: Tensor,
    ) -> Tensor:
        """One block of a backup stream."""
        bns = block.get_bn("train", None)
        backup_bns = backup_block.get_bn("train", None) if bns is not None else None
        convs = block.conv_layer_names
        last = len(convs) - 1
        x = input
        for index, name in enumerate(convs):
            conv = f"conv{index + 1}"
            x = _routed(
                backup_mask[name],
                block._modules[conv],
                backup_block._modules[conv],
                None if bns is None else bns[index],
                None if backup_bns is None else backup_bns[index],
                x,
            )
            if index == last:
                shortcut = block.shortcut_layer_name
                shortcuts = (block.identity_downsample, backup_block.identity_downsample)
                identity = _routed(backup_mask[shortcut or name], *shortcuts, None, None, input)
                x = x + (identity if shortcut is None else activate(identity, mask[shortcut], None))
            x = activate(x, mask[name], block._modules.get(f"conv_activation{index + 1}"))
        return x


def _routed(
    backup_mask: Tensor,
    main: nn.Module | None,
    backup: nn.Module | None,
    main_bn: nn.Module | None,
    backup_bn: nn.Module | None,
    x: Tensor,
) -> Tensor:
    """`route` of the main and backup layer outputs (None layers are the identity), each after its BN."""
    main_out = x if main is None else main(x)
    backup_out = x if backup is None else backup(x)
    if main_bn is not None:
        main_out = main_bn(main_out)
    if backup_bn is not None:
        backup_out = backup_bn(backup_out)
    return route(backup_mask, backup_out, main_out)


class AmnesiacHATResNet(AmnesiacHATResNetBase):
    """An AmnesiacHAT ResNet of the depth its class's `layout` gives: the family of `AmnesiacHATResNet18` ... `152`."""

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = False,
        pretrained_weights: str | None = None,
        disable_unlearning: bool = False,
        *,
        mask_shortcuts: bool = True,
        **kwargs: Any,
    ) -> None:
        """`pretrained_weights`: torchvision's ImageNet conv weights (ResNet-18 only; no BatchNorm statistics)."""
        super().__init__(
            input_channels,
            *self.architecture(),
            output_dim,
            gate,
            activation_layer,
            batch_normalization,
            bias,
            disable_unlearning,
            mask_shortcuts=mask_shortcuts,
            **kwargs,
        )
        self._load_torchvision_weights(pretrained_weights)


class AmnesiacHATResNet18(AmnesiacHATResNet):
    """AmnesiacHAT ResNet-18."""

    layout = RESNET18_LAYOUT


class AmnesiacHATResNet34(AmnesiacHATResNet):
    """AmnesiacHAT ResNet-34."""

    layout = RESNET34_LAYOUT


class AmnesiacHATResNet50(AmnesiacHATResNet):
    """AmnesiacHAT ResNet-50."""

    layout = RESNET50_LAYOUT


class AmnesiacHATResNet101(AmnesiacHATResNet):
    """AmnesiacHAT ResNet-101."""

    layout = RESNET101_LAYOUT


class AmnesiacHATResNet152(AmnesiacHATResNet):
    """AmnesiacHAT ResNet-152."""

    layout = RESNET152_LAYOUT
