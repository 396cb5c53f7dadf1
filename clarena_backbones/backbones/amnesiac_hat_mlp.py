"""`AmnesiacHATMLP`: a HAT-masked MLP that trains backup MLPs alongside for AmnesiacHAT."""

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.amnesiac_hat_backbone import AmnesiacHATBackbone, route
from clarena_backbones.backbones.arguments import batch_normalization_argument
from clarena_backbones.backbones.base import activate
from clarena_backbones.backbones.hat_mask_mlp import HATMaskMLP
from clarena_backbones.backbones.mlp import MLP


class AmnesiacHATMLP(AmnesiacHATBackbone, HATMaskMLP):
    """`HATMaskMLP` with AmnesiacHAT's backup streams (stage 'train_with_backup')."""

    original_backbone_class = MLP

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
        disable_unlearning: bool = False,
        **kwargs: Any,
    ) -> None:
        """As `HATMaskMLP`; `disable_unlearning` builds no backups."""
        batch_normalization = batch_normalization_argument(batch_normalization, None, kwargs)
        super().__init__(
            input_dim=input_dim,
            hidden_dims=hidden_dims,
            output_dim=output_dim,
            gate=gate,
            activation_layer=activation_layer,
            batch_normalization=batch_normalization,
            bias=bias,
            dropout=dropout,
            disable_unlearning=disable_unlearning,
            **kwargs,
        )
        if not disable_unlearning:
            self.backup_backbone_kwargs: dict[str, Any] = {
                "input_dim": input_dim,
                "hidden_dims": hidden_dims,
                "output_dim": output_dim,
                "activation_layer": activation_layer,
                "batch_normalization": batch_normalization,
                "bias": bias,
                "dropout": dropout,
            }

    def _forward_with_backups(
        self, input: Tensor, mask: dict[str, Tensor], backup_task_ids: list[int]
    ) -> tuple[Tensor, dict[int, Tensor], dict[str, Tensor]]:
        """Main and backup streams layer by layer (so dropout draws follow CLArena's order).

        A backup stream of task `b` computes, at each layer `l` with `b`'s stored mask `M`,
        `M * BN_b(backup_b(x)) + (1 - M) * BN(fc_l(x))`, then the current training mask, the main
        activation and the main dropout.
        """
        bn = self.get_bn("train", None)
        x = input.reshape(input.size(0), -1)
        streams = {task_id: x for task_id in backup_task_ids}
        activations = {}
        for index, name in enumerate(self.weighted_layer_names):
            x = self._fc_layer(index, x, bn, mask[name])
            activations[name] = x
            dropout = self.fc_dropout[index] if self.dropout else None
            if dropout is not None:
                x = dropout(x)
            activation = self.fc_activation[index] if self.activation else None
            for task_id, x_b in streams.items():
                backup = self.backup_backbones[f"{task_id}"]
                main_out = self.fc[index](x_b)
                backup_out = backup.fc[index](x_b)
                if bn is not None:
                    main_out = bn[index](main_out)
                    if backup.batch_normalization:
                        backup_out = backup.fc_bn[index](backup_out)
                x_b = activate(route(self.masks[task_id][name], backup_out, main_out), mask[name], activation)
                streams[task_id] = x_b if dropout is None else dropout(x_b)
        return x, streams, activations
