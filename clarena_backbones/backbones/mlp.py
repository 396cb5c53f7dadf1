"""Multi-layer perceptrons: `MLP` and its continual-learning version `CLMLP`."""

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import batch_normalization_argument
from clarena_backbones.backbones.base import Backbone, CLBackbone, TaskIdForward, activate

# computes a weighted layer: (layer name, nn.Linear, input) -> pre-activation
LayerCall = Callable[[str, nn.Linear, Tensor], Tensor]


class MLP(Backbone):
    """Fully connected layers `fc/0 ... fc/L-1`, each followed by optional BatchNorm, activation, dropout.

    The last layer (width `output_dim`) gets the same treatment as the hidden ones.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        output_dim: int,
        activation_layer: type[nn.Module] | None = nn.ReLU,
        batch_normalization: bool = False,
        bias: bool = True,
        dropout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """`activation_layer` is a class, instantiated once per layer; `dropout` a probability or None.

        `batch_normalisation` is accepted as an alias of `batch_normalization`.
        """
        batch_normalization = batch_normalization_argument(batch_normalization, False, kwargs)
        super().__init__(output_dim=output_dim, **kwargs)
        self.input_dim: int = input_dim
        self.hidden_dims: Sequence[int] = hidden_dims
        self.num_fc_layers: int = len(hidden_dims) + 1
        self.batch_normalization = batch_normalization
        self.activation: bool = activation_layer is not None
        self.dropout: bool = dropout is not None

        dims = [input_dim, *hidden_dims, output_dim]
        widths = dims[1:]
        self.fc = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=bias) for i in range(self.num_fc_layers))
        if self.batch_normalization:
            self.fc_bn = nn.ModuleList(nn.BatchNorm1d(width) for width in widths)
        if self.activation:
            self.fc_activation = nn.ModuleList(activation_layer() for _ in widths)
        if self.dropout:
            self.fc_dropout = nn.ModuleList(nn.Dropout(dropout) for _ in widths)
        self.weighted_layer_names += [f"fc/{index}" for index in range(self.num_fc_layers)]

    def _fc_layer(
        self,
        index: int,
        x: Tensor,
        bn: Sequence[nn.Module] | None,
        mask: Tensor | None = None,
        layer_call: LayerCall | None = None,
    ) -> Tensor:
        """Layer `index`: linear -> BatchNorm (`bn` set, if any) -> unit mask (if any) -> activation."""
        fc = self.fc[index]
        x = fc(x) if layer_call is None else layer_call(self.weighted_layer_names[index], fc, x)
        if bn is not None:
            x = bn[index](x)
        return activate(x, mask, self.fc_activation[index] if self.activation else None)

    def _forward_fc(
        self,
        input: Tensor,
        bn: Sequence[nn.Module] | None,
        masks: dict[str, Tensor] | None = None,
        layer_call: LayerCall | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The whole MLP; `masks` are HAT unit masks, `layer_call` replaces the plain Linear call."""
        x = input.reshape(input.size(0), -1)
        activations = {}
        dropouts = self.fc_dropout if self.dropout else repeat(None)
        for index, (name, dropout) in enumerate(zip(self.weighted_layer_names, dropouts)):
            x = self._fc_layer(index, x, bn, None if masks is None else masks[name], layer_call)
            activations[name] = x
            if dropout is not None:
                x = dropout(x)
        return x, activations

    def forward(self, input: Tensor, stage: str | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Return `(output_feature (B, output_dim), activations)`; `stage` is not used."""
        return self._forward_fc(input, self.fc_bn if self.batch_normalization else None)


class CLMLP(TaskIdForward, MLP, CLBackbone):
    """`MLP` for continual learning: the same network shared by every task."""


def __getattr__(name: str) -> Any:
    # CLArena defines its masked versions in this module too; here they live in their own modules
    # (importing them here would be circular). Pickles and configs naming them still resolve.
    from clarena_backbones.backbones.clarena_pickles import moved

    return moved(__name__, name)
