"""`MammothAdapter`: Mammoth's backbone interface around one of this package's backbones.

Mammoth (aimagelab/mammoth) calls its network as `net(x, returnt)` and expects the logits of the
network's own classifier over every class for `returnt='out'`; CLArena's backbones return
features and leave the heads outside. The adapter owns that classifier and maps the rest of
Mammoth's `MammothBackbone` interface (`features`, `get_params`/`set_params`,
`get_grads`/`set_grads`, `set_return_prerelu`, `device`) onto the wrapped backbone.

Mammoth logs a backbone by its class name, so each adapter is an instance of a subclass named
after the backbone it wraps (`HATMaskMLP`, a `HATAdapter`), made once per pair by `adapter_class`.
"""

import contextlib
import functools
import math
from collections.abc import Iterator
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


def xavier_init_(module: nn.Module) -> None:
    """Mammoth's initialisation of its MLPs: every Linear Xavier-uniform (gain 1), biases zero."""
    for linear in module.modules():
        if isinstance(linear, nn.Linear):
            bound = math.sqrt(6.0 / (linear.in_features + linear.out_features))
            nn.init.uniform_(linear.weight, -bound, bound)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)


class PreActivation(nn.Module):
    """An activation module that also hands its input to `sink` (a list), while one is set.

    `set_return_prerelu` puts these in place of the backbone's activation modules, so that
    `returnt='full'` can return every layer's input to its activation, as Mammoth's ResNets do.
    """

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation
        self.sink: list[Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.sink is not None:
            self.sink.append(x)
        return self.activation(x)


class MammothAdapter(nn.Module):
    """A Mammoth backbone: `backbone` (features) followed by `classifier` (logits of every class).

    `forward(x, returnt)` gives 'out' (logits), 'features' (the backbone's output feature),
    'both' (`(out, features)`) or 'full' (`(out, [activation of each weighted layer])`; after
    `set_return_prerelu()`, each activation's input instead). Masked subclasses take a `task_id`
    too, the task whose mask to apply. Construct it as `MammothAdapter(backbone, ...)`: the
    instance's class is `adapter_class(MammothAdapter, type(backbone))`.
    """

    def __new__(cls, backbone: Backbone, *args: Any, **kwargs: Any) -> "MammothAdapter":
        if isinstance(backbone, nn.Module) and not getattr(cls, "_names_backbone", False):
            cls = adapter_class(cls, type(backbone))
        return super().__new__(cls)

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        check_positive("num_classes", num_classes)
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.output_dim, num_classes)
        self.num_classes = num_classes
        self.device = torch.device("cpu")
        self.return_prerelu = False

    def __reduce_ex__(self, protocol: int) -> Any:
        # the class is made at run time: pickle how to make it again
        base = next(cls for cls in type(self).__mro__ if not getattr(cls, "_names_backbone", False))
        return (_new_adapter, (base, type(self)._backbone_type), self.__getstate__())

    def set_return_prerelu(self, enable: bool = True) -> None:
        """Make `returnt='full'` return each activation's input (pre-ReLU), as Mammoth's ResNets can.

        Wraps (or unwraps) the backbone's `torch.nn` activation modules in `PreActivation`.
        """
        if not isinstance(enable, bool):
            raise TypeError(f"`enable` must be a bool; got {type(enable).__name__}.")
        for parent in list(self.backbone.modules()):
            for name, child in list(parent.named_children()):
                if enable and type(child).__module__ == nn.ReLU.__module__:
                    setattr(parent, name, PreActivation(child))
                elif not enable and isinstance(child, PreActivation):
                    setattr(parent, name, child.activation)
        self.return_prerelu = enable

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
        if returnt == "full" and self.return_prerelu:
            with self._recording_pre_activations() as pre_activations:
                feature, _ = self.backbone_forward(x, task_id)
            return self.classifier(feature), pre_activations
        feature, activations = self.backbone_forward(x, task_id)
        return self.outputs(feature, activations, returnt)

    @contextlib.contextmanager
    def _recording_pre_activations(self) -> Iterator[list[Tensor]]:
        recorded: list[Tensor] = []
        recorders = [module for module in self.backbone.modules() if isinstance(module, PreActivation)]
        for recorder in recorders:
            recorder.sink = recorded
        try:
            yield recorded
        finally:
            for recorder in recorders:
                recorder.sink = None

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


@functools.cache
def adapter_class(base: type[MammothAdapter], backbone_type: type) -> type[MammothAdapter]:
    """The subclass of `base` named after `backbone_type`, whose instances wrap such backbones."""
    namespace = {
        "__module__": base.__module__,
        "__qualname__": backbone_type.__name__,
        "__doc__": f"A `{base.__name__}` around a `{backbone_type.__name__}` (named so for Mammoth's log).",
        "_names_backbone": True,
        "_backbone_type": backbone_type,
    }
    return type(backbone_type.__name__, (base,), namespace)


def _new_adapter(base: type[MammothAdapter], backbone_type: type) -> MammothAdapter:
    """An empty instance of `adapter_class(base, backbone_type)`, for unpickling."""
    return nn.Module.__new__(adapter_class(base, backbone_type))
