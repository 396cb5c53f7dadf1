"""`MammothAdapter`: Mammoth's backbone interface around one of this package's backbones.

Mammoth (aimagelab/mammoth) calls its network as `net(x, returnt)` and expects the logits of the
network's own classifier over every class for `returnt='out'`; CLArena's backbones return
features and leave the heads outside. The adapter owns that classifier and maps the rest of
Mammoth's `MammothBackbone` interface (`features`, `get_params`/`set_params`,
`get_grads`/`set_grads`, `device`) onto the wrapped backbone.
"""

from typing import Any, Literal

import torch
from torch import Tensor, nn

from clarena_backbones.ops.checks import check_choice
from clarena_backbones.backbones.base import Backbone

ReturnType = Literal["out", "features", "both", "full"]
RETURN_TYPES: tuple[str, ...] = ("out", "features", "both", "full")


def check_positive(argument: str, value: Any, kind: type = int) -> None:
    """Raise a ValueError naming `argument` unless `value` is a positive `kind` (bool refused)."""
    accepted = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, accepted) or not value > 0:
        raise ValueError(f"`{argument}` must be a positive {kind.__name__}; got {value!r}.")


class MammothAdapter(nn.Module):
    """A Mammoth backbone: `backbone` (features) followed by `classifier` (logits of every class).

    `forward(x, returnt)` gives 'out' (logits), 'features' (the backbone's output feature),
    'both' (`(out, features)`) or 'full' (`(out, [activation of each weighted layer])`).
    Masked subclasses take a `task_id` too, the task whose mask to apply.
    """

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        check_positive("num_classes", num_classes)
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.output_dim, num_classes)
        self.num_classes = num_classes
        self.device = torch.device("cpu")

    def to(self, *args: Any, **kwargs: Any) -> "MammothAdapter":
        """`nn.Module.to`, also recording the device in `device` as Mammoth's backbones do."""
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        super().to(*args, **kwargs)
        if device is not None:
            self.device = device
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> "MammothAdapter":
        # The backbones keep their stored masks in plain dicts (with a state_dict hook); moving
        # them here makes `.to()`, `.cuda()` and `.half()` carry them along with the parameters.
        super()._apply(fn, recurse)
        self._apply_to_stored_masks(fn)
        return self

    def _apply_to_stored_masks(self, fn: Any) -> None:
        """Apply `fn` to every stored mask tensor; nothing to do for unmasked backbones."""

    def backbone_forward(self, x: Tensor, task_id: int | None) -> tuple[Tensor, dict[str, Tensor]]:
        """`(feature, activations)` of the backbone; masked subclasses apply the mask of `task_id`."""
        return self.backbone(x)

    def forward(self, x: Tensor, returnt: ReturnType = "out", task_id: int | None = None) -> Any:
        """Mammoth's forward: what `returnt` asks for (see the class docstring)."""
        check_choice("returnt", returnt, RETURN_TYPES)
        feature, activations = self.backbone_forward(x, task_id)
        return self.outputs(feature, activations, returnt)

    def outputs(self, feature: Tensor, activations: dict[str, Tensor], returnt: ReturnType) -> Any:
        """Map the backbone's `(feature, activations)` to Mammoth's `returnt` result."""
        if returnt == "features":
            return feature
        out = self.classifier(feature)
        if returnt == "out":
            return out
        if returnt == "both":
            return out, feature
        return out, list(activations.values())

    def features(self, x: Tensor) -> Tensor:
        """The feature before the classifier (`forward(x, returnt='features')`)."""
        return self.forward(x, returnt="features")

    def get_params(self) -> Tensor:
        """Every parameter (task embeddings and scores included), flattened into one vector."""
        return nn.utils.parameters_to_vector(self.parameters())

    def set_params(self, new_params: Tensor) -> None:
        """Set every parameter from a vector laid out as `get_params` lays it out."""
        self._check_flat("new_params", new_params)
        nn.utils.vector_to_parameters(new_params, self.parameters())

    def get_grads(self) -> Tensor:
        """Every gradient flattened into one vector; zeros for parameters that have none yet."""
        return torch.cat(
            [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in self.parameters()]
        )

    def set_grads(self, new_grads: Tensor) -> None:
        """Set every parameter's gradient from a vector laid out as `get_grads` lays it out."""
        self._check_flat("new_grads", new_grads)
        offset = 0
        for parameter in self.parameters():
            size = parameter.numel()
            parameter.grad = new_grads[offset : offset + size].view_as(parameter).clone()
            offset += size

    def _check_flat(self, argument: str, vector: Tensor) -> None:
        expected = sum(p.numel() for p in self.parameters())
        if not isinstance(vector, Tensor) or vector.dim() != 1 or vector.numel() != expected:
            shape = tuple(vector.shape) if isinstance(vector, Tensor) else type(vector).__name__
            raise ValueError(f"`{argument}` must be a 1-D tensor of {expected} elements; got {shape}.")
