"""The root backbone classes: `Backbone` (any paradigm) and `CLBackbone` (continual learning)."""

import importlib
from typing import Any

from torch import Tensor, nn

from clarena_backbones.backbones.arguments import warn_unknown_keywords
from clarena_backbones.ops import unit_mask


def activate(x: Tensor, mask: Tensor | None, activation: nn.Module | None) -> Tensor:
    """`activation(x * mask)` with `mask` (C,) over dim 1; no mask: `activation(x)`; None: identity.

    The HAT unit mask runs through `clarena.ops.unit_mask`, which fuses a plain `nn.ReLU`.
    """
    if mask is None:
        return x if activation is None else activation(x)
    if type(activation) is nn.ReLU:
        return unit_mask(x, mask, relu=True)
    x = unit_mask(x, mask)
    return x if activation is None else activation(x)


class Backbone(nn.Module):
    """Base class of every backbone: a feature extractor whose weighted layers are named.

    `weighted_layer_names` lists the Linear/Conv layers from input to output, as `nn.Module`
    paths with `/` for `.` (so they can key a `ModuleDict`).
    """

    # Prefix that turns a module path inside this backbone into a layer name; blocks nested in
    # a larger backbone name their layers from the outer backbone's root.
    _layer_name_prefix: str = ""

    def __init__(self, output_dim: int | None, **kwargs: Any) -> None:
        """`output_dim`: width of the feature fed to the heads (None for blocks)."""
        warn_unknown_keywords(type(self), kwargs)
        super().__init__()
        self.output_dim: int | None = output_dim
        self.weighted_layer_names: list[str] = []
        self._layer_lookup: dict[str, nn.Module] | None = None
        self._weighted_layer_cache: tuple[tuple[int, int], list[tuple[str, nn.Module]]] | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        # unpickling: a backbone CLArena pickled becomes this package's (see `clarena_pickles`)
        from clarena_backbones.backbones import clarena_pickles

        if clarena_pickles.is_clarenas(state):
            clarena_pickles.rebuild(self, state)
        else:
            super().__setstate__(state)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, nn.Module):  # a (re)assigned submodule makes the lookup stale
            self.__dict__["_layer_lookup"] = None
            self.__dict__["_weighted_layer_cache"] = None
        super().__setattr__(name, value)

    def _build_layer_lookup(self) -> dict[str, nn.Module]:
        lookup: dict[str, nn.Module] = {}
        for path, module in self.named_modules(remove_duplicate=False):
            if path:
                name = path.replace(".", "/")
                lookup[name] = module
                if self._layer_name_prefix:
                    lookup[self._layer_name_prefix + name] = module
        return lookup

    def get_layer_by_name(self, layer_name: str | None) -> nn.Module | None:
        """The submodule named `layer_name` (exact match; None gives None).

        The name table is built once and rebuilt on a miss (modules may be added later); an
        unknown name raises ValueError.
        """
        if layer_name is None:
            return None
        lookup = self._layer_lookup
        if lookup is not None and layer_name in lookup:
            return lookup[layer_name]
        lookup = self._layer_lookup = self._build_layer_lookup()
        if layer_name not in lookup:
            raise ValueError(f"{type(self).__name__} has no layer named '{layer_name}'.")
        return lookup[layer_name]

    def named_weighted_layers(self) -> list[tuple[str, nn.Module]]:
        """`(name, module)` of every weighted layer, input to output (cached; do not modify)."""
        names = self.weighted_layer_names
        key = (id(names), len(names))
        cache = self._weighted_layer_cache
        if cache is None or cache[0] != key:
            cache = self._weighted_layer_cache = (key, [(name, self.get_layer_by_name(name)) for name in names])
        return cache[1]

    def preceding_layer_name(self, layer_name: str | None) -> str | None:
        """The weighted layer before `layer_name` (None for the first layer or a None name)."""
        if layer_name is None:
            return None
        index = self._weighted_layer_index(layer_name)
        return None if index == 0 else self.weighted_layer_names[index - 1]

    def next_layer_name(self, layer_name: str) -> str | None:
        """The weighted layer after `layer_name` (None for the last layer)."""
        index = self._weighted_layer_index(layer_name)
        return None if index == len(self.weighted_layer_names) - 1 else self.weighted_layer_names[index + 1]

    def _weighted_layer_index(self, layer_name: str) -> int:
        try:
            return self.weighted_layer_names.index(layer_name)
        except ValueError:
            raise ValueError(f"'{layer_name}' is not in the weighted layer names of {type(self).__name__}.") from None

    def forward(self, input: Tensor, stage: str) -> tuple[Tensor, dict[str, Tensor]]:
        """Return `(output_feature, activations)`; implemented by subclasses."""
        raise NotImplementedError


class CLBackbone(Backbone):
    """Base class of continual-learning backbones: tracks the current and processed task IDs."""

    def __init__(self, output_dim: int | None, **kwargs: Any) -> None:
        super().__init__(output_dim=output_dim, **kwargs)
        self.task_id: int
        self.processed_task_ids: list[int] = []

    def setup_task_id(self, task_id: int) -> None:
        """Make `task_id` the current task (call before the task's first forward)."""
        self.task_id = task_id
        self.processed_task_ids.append(task_id)

    def forward(self, input: Tensor, stage: str, task_id: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Return `(output_feature, activations)` for data of `task_id`; implemented by subclasses."""
        raise NotImplementedError


class TaskIdForward:
    """Mixin for the CL versions of plain backbones: accept (and ignore) `task_id` in forward."""

    def forward(
        self, input: Tensor, stage: str | None = None, task_id: int | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return super().forward(input, stage)



# CLArena defines every base class in `base.py`; they live in their own modules here.
_MOVED = {
    "HATMaskBackbone": "clarena_backbones.backbones.hat_mask_backbone",
    "AmnesiacHATBackbone": "clarena_backbones.backbones.amnesiac_hat_backbone",
    "WSNMaskBackbone": "clarena_backbones.backbones.wsn_mask_backbone",
    "PercentileLayerParameterMaskingByScore": "clarena_backbones.backbones.wsn_mask_backbone",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
