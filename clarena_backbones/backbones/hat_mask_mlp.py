"""`HATMaskMLP`: an MLP whose units are gated by HAT task masks."""

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import batch_normalization_argument, hat_batch_normalization
from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone
from clarena_backbones.backbones.independent_bn import IndependentBatchNorm
from clarena_backbones.backbones.mlp import MLP


class HATMaskMLP(IndependentBatchNorm, HATMaskBackbone, MLP):
    """MLP with a HAT unit mask on every layer, applied after BatchNorm and before the activation.

    Every layer `fc/i`, the output layer included, has a task embedding `nn.Embedding(1, width)`.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        gate: str,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: str | None = None,
        bias: bool = True,
        dropout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """`batch_normalization`: None (no BN), 'shared' (one BN set) or 'independent' (a set per task)."""
        batch_normalization = hat_batch_normalization(batch_normalization_argument(batch_normalization, None, kwargs))
        super().__init__(
            input_dim=input_dim,
            hidden_dims=hidden_dims,
            output_dim=output_dim,
            gate=gate,
            activation_layer=activation_layer,
            batch_normalization=bool(batch_normalization),
            bias=bias,
            dropout=dropout,
            **kwargs,
        )
        for name, fc in zip(self.weighted_layer_names, self.fc):
            self.task_embedding_t[name] = nn.Embedding(1, fc.out_features)
        self.batch_normalization = batch_normalization
        self._setup_independent_bn(("fc_bn",))
        self._register_load_state_dict_pre_hook(_drop_unbuilt_batch_norm, with_module=True)

    def get_bn(self, stage: str, test_task_id: int | None) -> nn.ModuleList | None:
        """The BatchNorm set for `stage`: the task's copy in test stages when independent, else `fc_bn`.

        The MLP's one BatchNorm slot is the whole `fc_bn` list, returned itself as CLArena does.
        """
        bns = super().get_bn(stage, test_task_id)
        return None if bns is None else bns[0]

    def _forward_with_unit_masks(
        self, input: Tensor, mask: dict[str, Tensor], stage: str, test_task_id: int | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self._forward_fc(input, self.get_bn(stage, test_task_id), mask)


def _drop_unbuilt_batch_norm(module: HATMaskMLP, state_dict: dict, prefix: str, *args: Any) -> None:
    # CLArena 1.1.0 builds `fc_bn` whatever `batch_normalization` is (its test `== "shared" or
    # "independent"` is always true) and uses it only when asked, so its checkpoints carry unused
    # `fc_bn.*` entries: without BatchNorm they are dropped here, so they load with `strict=True`.
    if not module.batch_normalization:
        for key in [key for key in state_dict if key.startswith(prefix + "fc_bn.")]:
            del state_dict[key]
