"""HAT-masked ResNets: blocks, `HATMaskResNetBase` and `HATMaskResNet18..152`.

The unit mask of a conv multiplies its output channels after BatchNorm (after the residual add
for a block's last conv) and before the activation. The outer backbone computes the mask of
every layer once per forward and hands it to its blocks; a block used on its own computes its
own from the same (shared) embeddings.

A shortcut conv (`identity_downsample`) is a weighted layer too, named `<block>/identity_downsample`
and listed after its block's convs: it has a task embedding and a unit mask (on its output,
before the residual add), so HAT's gradient adjustment protects it like every other conv (in
CLArena it was neither masked nor adjusted, and a later task overwrote it). It reads the block's
input, so its preceding layer is that of the block's first conv. `mask_shortcuts=False` builds
CLArena's network instead: shortcuts that are plain, unmasked convs outside the weighted layers.
"""

from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import batch_normalization_argument, hat_batch_normalization
from clarena_backbones.backbones.base import activate
from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone
from clarena_backbones.backbones.independent_bn import IndependentBatchNorm
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
from clarena_backbones.ops.checks import check_choice


class _PrecedingTable:
    """`preceding_layer_name` read from the table `_preceding` (a shortcut reads its block's input)."""

    _preceding: dict[str, str | None] = {}

    def preceding_layer_name(self, layer_name: str | None) -> str | None:
        if layer_name in self._preceding:
            return self._preceding[layer_name]
        return super().preceding_layer_name(layer_name)


class _HATMaskBlock(_PrecedingTable, IndependentBatchNorm, HATMaskBackbone):
    """HAT parts of a residual block: a task embedding per conv and per-task BN copies."""

    def __init__(
        self,
        outer_layer_name: str,
        block_idx: int,
        preceding_output_channels: int,
        input_channels: int,
        overall_stride: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = False,
        *,
        mask_shortcuts: bool = True,
        **kwargs: Any,
    ) -> None:
        """`batch_normalization`: None, 'shared' or 'independent' (as `HATMaskMLP`).

        `mask_shortcuts`: whether the shortcut conv is a weighted layer with its own embedding and
        mask (False: CLArena's plain, unmasked shortcut).
        """
        batch_normalization = hat_batch_normalization(batch_normalization_argument(batch_normalization, None, kwargs))
        super().__init__(
            output_dim=None,
            gate=gate,
            outer_layer_name=outer_layer_name,
            block_idx=block_idx,
            preceding_output_channels=preceding_output_channels,
            input_channels=input_channels,
            overall_stride=overall_stride,
            activation_layer=activation_layer,
            batch_normalization=bool(batch_normalization),
            bias=bias,
            **kwargs,
        )
        for number, name in enumerate(self.weighted_layer_names, 1):
            self.task_embedding_t[name] = nn.Embedding(1, self._modules[f"conv{number}"].out_channels)
        self.batch_normalization = batch_normalization
        self._setup_independent_bn(tuple(f"conv_bn{number}" for number in range(1, len(self.weighted_layer_names) + 1)))
        check_choice("mask_shortcuts", mask_shortcuts, (True, False))
        self.mask_shortcuts = mask_shortcuts
        if not mask_shortcuts:
            self.shortcut_layer_name = None  # not a weighted layer: no embedding, no mask, no activation
        if self.shortcut_layer_name is not None:
            self.weighted_layer_names.append(self.shortcut_layer_name)
            self.task_embedding_t[self.shortcut_layer_name] = nn.Embedding(1, self.identity_downsample.out_channels)
        self._preceding = _preceding_names([self], None)
        self._register_load_state_dict_pre_hook(_add_shortcut_embeddings, with_module=True)

    def shortcut_embedding_sources(self) -> dict[str, str]:
        """Shortcut layer name -> the layer whose embedding a CLArena checkpoint's shortcut takes."""
        if self.shortcut_layer_name is None:
            return {}
        return {self.shortcut_layer_name: self.conv_layer_names[-1]}

    def _shortcut(self, input: Tensor, masks: dict[str, Tensor] | None, conv_call: ConvCall | None) -> Tensor:
        identity = super()._shortcut(input, masks, conv_call)
        if masks is None or self.shortcut_layer_name is None:
            return identity
        return activate(identity, masks[self.shortcut_layer_name], None)

    def _forward_with_unit_masks(
        self, input: Tensor, mask: dict[str, Tensor], stage: str, test_task_id: int | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self._run(input, self.get_bn(stage, test_task_id), mask)


class HATMaskResNetBlockSmall(_HATMaskBlock, ResNetBlockSmall):
    """HAT-masked basic block of ResNet-18/34."""


class HATMaskResNetBlockLarge(_HATMaskBlock, ResNetBlockLarge):
    """HAT-masked bottleneck block of ResNet-50/101/152."""


class HATMaskResNetBase(_PrecedingTable, IndependentBatchNorm, HATMaskBackbone, ResNetBase):
    """A HAT-masked ResNet: HAT blocks, plus a task embedding and mask on the stem conv `conv1`.

    The outer `task_embedding_t` holds the blocks' embedding modules themselves (shared, not
    copied) followed by `conv1`'s. HAT ResNets have no BatchNorm unless asked for.
    """

    family = ResNetFamily(HATMaskResNetBlockSmall, HATMaskResNetBlockLarge, pretrained_batch_norm=False)

    def __init__(
        self,
        input_channels: int,
        building_block_type: type[_HATMaskBlock],
        building_block_nums: tuple[int, int, int, int],
        building_block_preceding_output_channels: tuple[int, int, int, int],
        building_block_input_channels: tuple[int, int, int, int],
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = False,
        *,
        mask_shortcuts: bool = True,
        **kwargs: Any,
    ) -> None:
        """`mask_shortcuts`: whether the shortcut convs are weighted layers with their own embedding
        and mask; False builds CLArena's network, whose shortcuts every task trains."""
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
            batch_normalization=bool(batch_normalization),
            bias=bias,
            block_arguments={
                "gate": gate,
                "batch_normalization": batch_normalization,
                "mask_shortcuts": mask_shortcuts,
            },
            **kwargs,
        )
        self.mask_shortcuts = mask_shortcuts
        self.batch_normalization = self.batch_normalization_mode = batch_normalization
        self.update_multiple_blocks_task_embedding()
        self.task_embedding_t["conv1"] = nn.Embedding(1, self.conv1.out_channels)
        self._setup_independent_bn(("conv_bn1",))
        for block in self._blocks:
            block._masks_saved_by_parent = True
        self._preceding = {"conv1": None, **_preceding_names(self._blocks, "conv1")}
        self._register_load_state_dict_pre_hook(_add_shortcut_embeddings, with_module=True)

    def shortcut_embedding_sources(self) -> dict[str, str]:
        """Shortcut layer name -> the layer whose embedding a CLArena checkpoint's shortcut takes."""
        return {name: source for block in self._blocks for name, source in block.shortcut_embedding_sources().items()}

    def _load_stored_mask_state(self, stored: dict[str, Tensor]) -> None:
        # A checkpoint saved with `mask_shortcuts=False` stores no shortcut masks: each shortcut
        # takes its block's last-conv mask, as it takes that embedding, so every stored task
        # computes what it computed there (binary masks: m * (conv + m * shortcut) = m * (conv + shortcut)).
        for task_id in {key.split(".", 1)[0] for key in stored}:
            for shortcut, source in self.shortcut_embedding_sources().items():
                if f"{task_id}.{shortcut}" not in stored and f"{task_id}.{source}" in stored:
                    stored[f"{task_id}.{shortcut}"] = stored[f"{task_id}.{source}"]
        super()._load_stored_mask_state(stored)

    def update_multiple_blocks_task_embedding(self) -> None:
        """Put every block's embedding modules (shared, not copied) in the outer `task_embedding_t`."""
        for block in self._blocks:
            for name, embedding in block.task_embedding_t.items():
                self.task_embedding_t[name] = embedding

    def setup_task_id(self, task_id: int) -> None:
        """Make `task_id` current; with independent BN, also in every block (each keeps BN copies)."""
        super().setup_task_id(task_id)
        if self._independent():
            for block in self._blocks:
                block.setup_task_id(task_id)

    def initialize_independent_bn(self) -> None:
        """Reset the live BN modules of the stem and of every block."""
        super().initialize_independent_bn()
        for block in self._blocks:
            block.initialize_independent_bn()

    def store_bn(self) -> None:
        """Keep copies of the live BN modules of the stem and every block for the current task."""
        super().store_bn()
        for block in self._blocks:
            block.store_bn()

    def _forward_with_unit_masks(
        self, input: Tensor, mask: dict[str, Tensor], stage: str, test_task_id: int | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self._forward_resnet(input, stage, test_task_id, masks=mask)


def _preceding_names(blocks: list[_HATMaskBlock], feed: str | None) -> dict[str, str | None]:
    """The preceding layer of every conv and shortcut of consecutive `blocks`, the first fed by `feed`."""
    preceding: dict[str, str | None] = {}
    for block in blocks:
        block_input = feed
        for name in block.conv_layer_names:
            preceding[name] = feed
            feed = name
        if block.shortcut_layer_name is not None:
            preceding[block.shortcut_layer_name] = block_input
    return preceding


def _add_shortcut_embeddings(module: HATMaskBackbone, state_dict: dict, prefix: str, *args: Any) -> None:
    # A CLArena checkpoint (or one saved with `mask_shortcuts=False`) has no shortcut embeddings.
    # Each takes its block's last-conv embedding: that conv's mask gates the sum the shortcut
    # joins, so with binary masks the network computes exactly what CLArena's did.
    head = prefix + "task_embedding_t."
    for shortcut, source in module.shortcut_embedding_sources().items():
        if head + source + ".weight" in state_dict and head + shortcut + ".weight" not in state_dict:
            state_dict[head + shortcut + ".weight"] = state_dict[head + source + ".weight"].clone()


class HATMaskResNet(HATMaskResNetBase):
    """A HAT-masked ResNet of the depth its class's `layout` gives: the family of `HATMaskResNet18` ... `152`."""

    def __init__(
        self,
        input_channels: int,
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = False,
        pretrained_weights: str | None = None,
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
            mask_shortcuts=mask_shortcuts,
            **kwargs,
        )
        self._load_torchvision_weights(pretrained_weights)


class HATMaskResNet18(HATMaskResNet):
    """HAT-masked ResNet-18."""

    layout = RESNET18_LAYOUT


class HATMaskResNet34(HATMaskResNet):
    """HAT-masked ResNet-34."""

    layout = RESNET34_LAYOUT


class HATMaskResNet50(HATMaskResNet):
    """HAT-masked ResNet-50."""

    layout = RESNET50_LAYOUT


class HATMaskResNet101(HATMaskResNet):
    """HAT-masked ResNet-101."""

    layout = RESNET101_LAYOUT


class HATMaskResNet152(HATMaskResNet):
    """HAT-masked ResNet-152."""

    layout = RESNET152_LAYOUT
