"""`HATMaskBackbone`: unit masks gated from learnable task embeddings (HAT, AdaHAT, FG-AdaHAT)."""

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from clarena_backbones.backbones import state_hooks
from clarena_backbones.backbones.adjustment_rates import AdjustmentRates
from clarena_backbones.backbones.base import CLBackbone
from clarena_backbones.backbones.stored_masks import StoredMasks
from clarena_backbones.ops import (
    adjustment_rate,
    foreach_compensate_embedding_grad_,
    foreach_rate_sums,
    foreach_scale_grad_by_measure_,
    foreach_sigmoid_gate,
    parameter_measure,
)
from clarena_backbones.ops.checks import check_choice
from clarena_backbones.ops.deprecation import renamed_keywords
from clarena_backbones.ops.parameter_measure import AGGREGATIONS, RATES

# 'masked' and 'unmasked' are accepted by CLArena's HAT algorithm and leave the embeddings as
# they are (like 'last'); they are kept so those configs still run.
_EMBEDDING_INITS = {
    "N01": lambda weight: nn.init.normal_(weight, 0.0, 1.0),
    "U-11": lambda weight: nn.init.uniform_(weight, -1.0, 1.0),
    "U01": lambda weight: nn.init.uniform_(weight, 0.0, 1.0),
    "U-10": lambda weight: nn.init.uniform_(weight, -1.0, 0.0),
    "last": None,
    "masked": None,
    "unmasked": None,
}


# AdaHAT's `r`: one value for every layer, or one per layer name (floats or 0-d tensors).
RateParameter = float | Tensor | Mapping[str, float | Tensor] | None


def _tensors_as_floats(values: Sequence[Any]) -> list[Any]:
    """`values` with each 0-d tensor read as a Python float (one device sync for all of them)."""
    tensors = [value for value in values if isinstance(value, Tensor)]
    if not tensors:
        return list(values)
    read = iter(torch.stack([tensor.detach().reshape(()) for tensor in tensors]).tolist())
    return [next(read) if isinstance(value, Tensor) else value for value in values]


def anneal_scale(s_max: float, batch_idx: int, num_batches: float) -> float:
    """HAT's annealed gate scale (Eq. 3 of the paper, with CLArena's batch indexing).

    `1/s_max + (s_max - 1/s_max) * (batch_idx - 1) / (num_batches - 1)`; a one-batch epoch
    (where CLArena divided by zero) uses `s_max`.
    """
    if num_batches == 1:
        return float(s_max)
    return 1 / s_max + (s_max - 1 / s_max) * (batch_idx - 1) / (num_batches - 1)


class HATMaskBackbone(state_hooks.PerTaskState, CLBackbone):
    """Backbone whose units are gated by per-task hard attention masks.

    Each weighted layer `l` owns a task embedding `task_embedding_t[l]` (`nn.Embedding(1, units)`);
    its mask is `sigmoid(s * embedding)`. Binary masks of finished tasks live in `masks` and are
    saved in `state_dict` (under `stored_masks.`).
    """

    STAGES: tuple[str, ...] = ("train", "validation", "test", "unlearning_test")

    def __init__(self, output_dim: int | None, gate: str, **kwargs: Any) -> None:
        """`gate`: the gate turning embeddings into masks; only 'sigmoid' exists."""
        super().__init__(output_dim=output_dim, **kwargs)
        check_choice("gate", gate, ("sigmoid",))
        self.gate: str = gate
        self.gate_fn: nn.Module = nn.Sigmoid()
        self.task_embedding_t: nn.ModuleDict = nn.ModuleDict()
        self.masks: StoredMasks = StoredMasks()
        # True for blocks inside a larger HAT backbone, whose root saves and loads the masks.
        self._masks_saved_by_parent = False
        self._embedding_cache: tuple[Any, list[nn.Embedding]] | None = None
        self._adjustment_cache: tuple[list[tuple[str, nn.Module]], list[tuple[str, str | None, nn.Module]]] | None = None
        self._ones_cache: dict[Any, Tensor] = {}
        state_hooks.install(self)

    # ----------------------------------------------------------------------------- embeddings
    def initialize_task_embedding(self, mode: str) -> None:
        """Re-initialise every task embedding: 'N01', 'U-11', 'U01', 'U-10', or 'last' (keep)."""
        check_choice("mode", mode, _EMBEDDING_INITS)
        init = _EMBEDDING_INITS[mode]
        if init is not None:
            for embedding in self.task_embedding_t.values():
                init(embedding.weight)

    def _embeddings(self) -> list[nn.Embedding]:
        """Embeddings of `weighted_layer_names` in order (cached)."""
        key = (id(self.weighted_layer_names), len(self.weighted_layer_names), len(self.task_embedding_t))
        cache = self._embedding_cache
        if cache is None or cache[0] != key:
            cache = self._embedding_cache = (key, [self.task_embedding_t[name] for name in self.weighted_layer_names])
        return cache[1]

    def _gated_masks(self, scale: float) -> dict[str, Tensor]:
        """`sigmoid(scale * embedding)` of every layer, in one fused pass over all units."""
        gates = foreach_sigmoid_gate([embedding.weight for embedding in self._embeddings()], scale)
        return dict(zip(self.weighted_layer_names, gates))

    def compensate_task_embedding_gradients(
        self, s_max: float, clamp_threshold: float, batch_idx: int, num_batches: int
    ) -> None:
        """HAT's embedding-gradient compensation (Serra et al., 2018, Sec. 2.5), every layer in one call.

        Scales each task embedding's gradient in place by `s_max / s * (cosh(clamp(s e, -c, c)) + 1)
        / (cosh(e) + 1)` with `s = anneal_scale(s_max, batch_idx, num_batches)` and `c =
        clamp_threshold`, as CLArena's HAT algorithm does after `backward()`.
        """
        weights = [embedding.weight for embedding in self.task_embedding_t.values() if embedding.weight.grad is not None]
        scale = anneal_scale(s_max, batch_idx, num_batches)
        foreach_compensate_embedding_grad_(weights, [weight.grad for weight in weights], scale, s_max, clamp_threshold)

    # ----------------------------------------------------------------------------------- masks
    def get_mask(
        self,
        stage: str,
        s_max: float | None = None,
        batch_idx: int | None = None,
        num_batches: int | None = None,
        test_task_id: int | None = None,
    ) -> dict[str, Tensor]:
        """The unit mask of every weighted layer (shape `(units,)`) for `stage`.

        'train' (and AmnesiacHAT's 'train_with_backup'): annealed soft mask; 'validation':
        `sigmoid(s_max * e)`; 'test': the stored binary mask of `test_task_id`; 'unlearning_test':
        all ones.
        """
        check_choice("stage", stage, self.STAGES)
        if stage in ("train", "train_with_backup"):
            if s_max is None or batch_idx is None or num_batches is None:
                raise ValueError(
                    "The 'train' stage needs `s_max`, `batch_idx` and `num_batches`; got "
                    f"s_max={s_max!r}, batch_idx={batch_idx!r}, num_batches={num_batches!r}."
                )
            return self._gated_masks(anneal_scale(s_max, batch_idx, num_batches))
        if stage == "validation":
            if s_max is None:
                raise ValueError("The 'validation' stage needs `s_max`; got None.")
            return self._gated_masks(s_max)
        if stage == "test":
            if test_task_id is None:
                raise ValueError("The 'test' stage needs `test_task_id`; got None.")
            return self._stored_test_mask(test_task_id)
        return {  # 'unlearning_test'
            name: self._ones(name, layer) for name, layer in self.named_weighted_layers()
        }

    def _stored_test_mask(self, task_id: int) -> dict[str, Tensor]:
        if task_id not in self.masks:
            raise KeyError(f"No stored mask for task {task_id}; stored tasks: {sorted(self.masks)}.")
        stored = self.masks[task_id]
        mask = {}
        for name, layer in self.named_weighted_layers():
            layer_mask = stored[name]
            weight = layer.weight
            if layer_mask.device != weight.device or layer_mask.dtype != weight.dtype:
                layer_mask = stored[name] = layer_mask.to(device=weight.device, dtype=weight.dtype)
            mask[name] = layer_mask
        return mask

    def _ones(self, name: str, layer: nn.Module) -> Tensor:
        weight = layer.weight
        key = (name, weight.device, weight.dtype, weight.size(0))
        ones = self._ones_cache.get(key)
        if ones is None:
            ones = self._ones_cache[key] = torch.ones(weight.size(0), device=weight.device, dtype=weight.dtype)
        return ones

    def te_to_binary_mask(self) -> dict[str, Tensor]:
        """The current task's binary mask: `embedding > 0` (= `sigmoid(s e) > 0.5` for s > 0)."""
        return {
            name: (self.task_embedding_t[name].weight > 0).float().reshape(-1).detach()
            for name in self.weighted_layer_names
        }

    def store_mask(self) -> dict[str, Tensor]:
        """Store the current task's binary mask in `masks` of this and every nested HAT module."""
        mask_t = self.te_to_binary_mask()
        for module in self.modules():
            if isinstance(module, HATMaskBackbone):
                module.masks[self.task_id] = {name: mask_t[name] for name in module.weighted_layer_names}
        return mask_t

    def combine_masks(self, masks: list[dict[str, Tensor]], mode: str) -> dict[str, Tensor]:
        """Element-wise 'intersection' (min) or 'union' (max) of several masks."""
        check_choice("mode", mode, ("intersection", "union"))
        if not masks:
            raise ValueError("`masks` must hold at least one mask.")
        reduce = torch.amin if mode == "intersection" else torch.amax
        return {name: reduce(torch.stack([mask[name] for mask in masks]), dim=0) for name in masks[0]}

    # ------------------------------------------------------------------------------- measures
    def get_layer_measure_parameter_wise(
        self, neuron_wise_measure: dict[str, Tensor], layer_name: str, aggregation_mode: str
    ) -> tuple[Tensor, Tensor]:
        """`(weight_measure, bias_measure)` of `layer_name` from unit-wise measures.

        `weight_measure[i, j, ...] = agg(m[layer][i], m[preceding layer][j])` (agg: 'min', 'max',
        'mean' = average of the two); a first layer broadcasts `m[layer]`. `bias_measure` is
        `m[layer]` itself.
        """
        check_choice("aggregation_mode", aggregation_mode, AGGREGATIONS)
        layer = self.get_layer_by_name(layer_name)
        preceding = self.preceding_layer_name(layer_name)
        measure = neuron_wise_measure[layer_name]
        preceding_measure = None if preceding is None else neuron_wise_measure[preceding]
        weight_measure = parameter_measure(measure, preceding_measure, layer.weight.shape, aggregation_mode)
        return weight_measure, measure

    @renamed_keywords(aggregation_mode="aggregation", mode="rate")
    def clip_grad_by_measure_(
        self, neuron_wise_measure: Mapping[str, Tensor], aggregation: str = "min", rate: str = "hat",
        alpha: float | None = None, r: RateParameter = None,
    ) -> None:
        """Scale the gradients of every weighted layer in place by the adjustment rate of its measure.

        Weight gradients use the parameter-wise measure (see `get_layer_measure_parameter_wise`),
        bias gradients the layer's unit measure; parameters without a gradient are skipped. Rates:
        'hat' `1 - m`, 'hat_const_alpha' `alpha*m + 1 - m`, 'adahat' `r / (m + r)` (`r` one value
        or a mapping by layer name). This is the step of HAT's and AdaHAT's
        `clip_grad_by_adjustment`, in one native call without weight-sized measure or rate
        tensors. (`aggregation` was `aggregation_mode` and `rate` was `mode`; the old keywords
        still work, with a DeprecationWarning.)
        """
        grads, a, b, rates = [], [], [], []
        for _, layer, measure, preceding, layer_r in self._layer_measures(neuron_wise_measure, r):
            measure = measure.to(layer.weight)
            preceding = None if preceding is None else preceding.to(layer.weight)
            for parameter, parameter_b in ((layer.weight, preceding), (layer.bias, None)):
                if parameter is None or parameter.grad is None:
                    continue
                grads.append(parameter.grad)
                a.append(measure)
                b.append(parameter_b)
                rates.append(layer_r)
        foreach_scale_grad_by_measure_(grads, a, b, aggregation, rate, alpha, rates)

    def adjustment_rates(
        self, neuron_wise_measure: Mapping[str, Tensor], aggregation: str = "min", rate: str = "hat",
        alpha: float | None = None, r: RateParameter = None,
    ) -> tuple[AdjustmentRates, AdjustmentRates]:
        """The rates `clip_grad_by_measure_` scales by: `(weight rates, bias rates)` by layer name
        (bias rates only for layers with a bias), each tensor built when first read."""
        check_choice("aggregation", aggregation, AGGREGATIONS)
        check_choice("rate", rate, RATES)
        weight_rates, bias_rates = AdjustmentRates(), AdjustmentRates()
        for name, layer, measure, preceding, layer_r in self._layer_measures(neuron_wise_measure, r):
            rate_args = (aggregation, rate, alpha, layer_r)
            weight_rates.add(name, partial(adjustment_rate, measure, preceding, layer.weight.shape, *rate_args))
            if layer.bias is not None:
                bias_rates.add(name, partial(adjustment_rate, measure, None, measure.shape, *rate_args))
        return weight_rates, bias_rates

    def network_capacity(
        self, neuron_wise_measure: Mapping[str, Tensor], aggregation: str = "min", rate: str = "hat",
        alpha: float | None = None, r: RateParameter = None,
    ) -> Tensor:
        """The mean adjustment rate over the weighted layers' parameters: CLArena's network capacity.

        Every weight counts, and every output unit once (its bias rate) whether or not the layer
        has a bias, as CLArena's capacity metric counts them: 1 when nothing is frozen, 0 when
        everything is (for 'hat'). Summed by `ops.foreach_rate_sums`, without weight-sized
        tensors except under 'mean' aggregation.
        """
        layers = self._layer_measures(neuron_wise_measure, r)
        shapes = [layer.weight.shape for _, layer, _, _, _ in layers]
        weight_sums, unit_sums = foreach_rate_sums(
            [measure for _, _, measure, _, _ in layers], [preceding for _, _, _, preceding, _ in layers], shapes,
            aggregation, rate, alpha, [layer_r for *_, layer_r in layers],
        )  # fmt: skip
        return (weight_sums + unit_sums).sum() / sum(math.prod(shape) + shape[0] for shape in shapes)

    def _layer_measures(
        self, neuron_wise_measure: Mapping[str, Tensor], r: RateParameter
    ) -> list[tuple[str, nn.Module, Tensor, Tensor | None, float | None]]:
        """`(name, layer, measure, preceding layer's measure or None, r)` of every weighted layer.

        `r` is one value for all layers or a mapping by layer name; tensors in it are read with
        one device sync for all of them.
        """
        layers = self._adjustment_layers()
        if isinstance(r, Mapping):
            layer_rs = _tensors_as_floats([r[name] for name, _, _ in layers])
        else:
            layer_rs = _tensors_as_floats([r]) * len(layers)
        return [
            (name, layer, neuron_wise_measure[name], None if preceding is None else neuron_wise_measure[preceding], layer_r)
            for (name, preceding, layer), layer_r in zip(layers, layer_rs)
        ]

    def _adjustment_layers(self) -> list[tuple[str, str | None, nn.Module]]:
        """(name, preceding layer's name, layer) of every weighted layer (cached with the layers)."""
        layers = self.named_weighted_layers()
        cache = self._adjustment_cache
        if cache is None or cache[0] is not layers:
            cache = self._adjustment_cache = (layers, [(n, self.preceding_layer_name(n), l) for n, l in layers])
        return cache[1]

    # ---------------------------------------------------------------------- state_dict hooks
    def _stored_mask_state(self) -> dict[str, Tensor]:
        if self._masks_saved_by_parent:
            return {}
        return {
            f"{task_id}.{name}": mask for task_id, mask_t in self.masks.items() for name, mask in mask_t.items()
        }

    def _load_stored_mask_state(self, stored: dict[str, Tensor]) -> None:
        masks: dict[int, dict[str, Tensor]] = {}
        for key, mask in stored.items():
            task_id, name = key.split(".", 1)
            masks.setdefault(int(task_id), {})[name] = mask
        for module in self.modules():
            if isinstance(module, HATMaskBackbone):
                module.masks = StoredMasks(
                    (task_id, {name: mask_t[name] for name in module.weighted_layer_names if name in mask_t})
                    for task_id, mask_t in masks.items()
                )

    def forward(
        self,
        input: Tensor,
        stage: str,
        s_max: float | None = None,
        batch_idx: int | None = None,
        num_batches: int | None = None,
        test_task_id: int | None = None,
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Return `(output_feature, mask, activations)`; `mask` (from `get_mask`) is computed once."""
        mask = self.get_mask(stage, s_max, batch_idx, num_batches, test_task_id)
        feature, activations = self._forward_with_unit_masks(input, mask, stage, test_task_id)
        return feature, mask, activations

    def _forward_with_unit_masks(
        self, input: Tensor, mask: dict[str, Tensor], stage: str, test_task_id: int | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The network with `mask` on its units (BatchNorm chosen for `stage`); by subclasses."""
        raise NotImplementedError
