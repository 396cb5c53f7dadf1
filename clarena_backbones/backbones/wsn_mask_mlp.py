"""`WSNMaskMLP`: an MLP whose weights and biases are masked by WSN's score-selected subnetwork."""

import warnings
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.mlp import MLP, LayerCall
from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone


def refuse_batch_normalization(owner: type, kwargs: dict[str, Any]) -> None:
    """WSN masks only weighted layers; a shared BatchNorm would drift across tasks, so none is built."""
    for name in ("batch_normalization", "batch_normalisation"):
        if kwargs.pop(name, None):
            warnings.warn(f"{owner.__name__} has no BatchNorm; `{name}` is ignored.", UserWarning, stacklevel=3)


class WSNMaskMLP(WSNMaskBackbone, MLP):
    """MLP (no BatchNorm) whose every Linear runs with WSN-masked weight and bias."""

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        bias: bool = True,
        dropout: float | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_batch_normalization(type(self), kwargs)
        super().__init__(
            input_dim=input_dim,
            hidden_dims=hidden_dims,
            output_dim=output_dim,
            activation_layer=activation_layer,
            batch_normalization=False,
            bias=bias,
            dropout=dropout,
            **kwargs,
        )
        self._add_parameter_scores()

    def _forward_with_layer_call(
        self, input: Tensor, stage: str, layer_call: LayerCall
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self._forward_fc(input, None, layer_call=layer_call)
