"""Fused versions of the per-step methods of CLArena 1.1.0's HAT, AdaHAT, FG-AdaHAT and WSN.

`clarena.accelerate` installs them on CLArena's algorithm classes. Each takes the algorithm
(`self`) and the method it replaces (`original`, called for the cases it does not fuse), and
returns what CLArena's method returns (CLArena's clarena/cl_algorithms/hat.py, adahat.py,
fgadahat.py, wsn.py):

* gradients scaled by the same adjustment rates, in one native call over all layers, without the
  weight-sized measure and rate tensors CLArena builds per layer per step;
* the adjustment rates as mappings from layer name to tensor whose values are built only when read
  (`AdjustmentRates`), equal to CLArena's;
* the network capacity (mean adjustment rate over all parameters, with CLArena's counting) summed
  from the unit measures, without a weight-sized tensor except for 'mean' aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from clarena.backbones.hat_mask_backbone import anneal_scale
from clarena.ops import foreach_compensate_embedding_grad_, foreach_scale_grad_by_measure_, parameter_measure

RateFormula = Callable[[Tensor], Tensor]


class AdjustmentRates(Mapping[str, Tensor]):
    """Layer name -> adjustment-rate tensor, each built from the unit measures when first read.

    CLArena's metric callbacks read these tensors every few steps at most; building them every
    step is what made CLArena's adjustment slow. The measures are the tensors held at the step
    (CLArena replaces, never modifies, its cumulative masks).
    """

    def __init__(self) -> None:
        self._specs: dict[str, tuple[Callable[[], Tensor], RateFormula]] = {}
        self._built: dict[str, Tensor] = {}

    def add(self, name: str, measure: Callable[[], Tensor], formula: RateFormula) -> None:
        self._specs[name] = (measure, formula)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._built:
            measure, formula = self._specs[name]
            self._built[name] = formula(measure())
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def rate_sum(a: Tensor, b: Tensor | None, weight_shape: Sequence[int], aggregation: str, formula: RateFormula) -> Tensor:
    """`formula(measure).sum()` of a weight's parameter-wise measure, from its unit measures.

    The measure of w[i, j, ...] is `aggregation(a[i], b[j])`. For min and max each entry is a[i]
    or b[j]: with b sorted, the b[j] below (min) or above (max) a[i] are a prefix or suffix, so
    each row's sum is a prefix sum plus a count times formula(a[i]). A mean is neither, so its
    (out, in) table is built (without the kernel dimensions).
    """
    if b is None:
        return formula(a).sum() * (math.prod(weight_shape) // max(weight_shape[0], 1))
    inner = math.prod(weight_shape[2:])
    if aggregation == "mean":
        return formula((a[:, None] + b[None, :]) / 2).sum() * inner
    b_sorted = torch.sort(b).values
    prefix = torch.cat([b_sorted.new_zeros(1), formula(b_sorted).cumsum(0)])
    if aggregation == "min":
        below = torch.searchsorted(b_sorted, a, side="left")
        rows = prefix[below] + (b.numel() - below) * formula(a)
    else:
        up_to = torch.searchsorted(b_sorted, a, side="right")
        rows = up_to * formula(a) + (prefix[-1] - prefix[up_to])
    return rows.sum() * inner


def _layers(algorithm: Any) -> list[tuple[str, torch.nn.Module, str | None]]:
    backbone = algorithm.backbone
    return [
        (name, backbone.get_layer_by_name(name), backbone.preceding_layer_name(name))
        for name in backbone.weighted_layer_names
    ]


def _floats(values: Sequence[Tensor | float]) -> list[float]:
    """Python floats of scalars and 0-d tensors, with one device sync for all the tensors."""
    tensors = [value for value in values if isinstance(value, Tensor)]
    synced = iter(torch.stack([t.detach().reshape(()) for t in tensors]).tolist()) if tensors else iter(())
    return [next(synced) if isinstance(value, Tensor) else float(value) for value in values]


def fused_adjustment(
    algorithm: Any,
    measure: Mapping[str, Tensor],
    aggregation: str,
    rate: str,
    formulas: Mapping[str, RateFormula],
    alpha: float | None = None,
    r: Mapping[str, Tensor | float] | None = None,
) -> tuple[AdjustmentRates, AdjustmentRates, Tensor]:
    """Scale every weighted layer's gradients by `formulas[layer](measure)`, CLArena's way.

    `rate`, `alpha` and `r` name the same rate for the native kernel (`formulas` is CLArena's
    expression of it, for the returned rates and the capacity). Returns (weight rates, bias rates
    of layers with a bias, capacity).
    """
    grads, a_list, b_list, layer_r = [], [], [], []
    weight_rates, bias_rates = AdjustmentRates(), AdjustmentRates()
    capacity_sum, count = None, 0
    r_values = dict(zip(r, _floats(list(r.values())))) if r is not None else {}
    for name, layer, preceding in _layers(algorithm):
        a = measure[name]
        b = None if preceding is None else measure[preceding]
        shape = tuple(layer.weight.shape)
        formula = formulas[name]
        grads.append(layer.weight.grad)
        a_list.append(a.to(layer.weight.grad))
        b_list.append(None if b is None else b.to(layer.weight.grad))
        layer_r.append(r_values.get(name))
        weight_rates.add(name, lambda a=a, b=b, shape=shape: parameter_measure(a, b, shape, aggregation), formula)
        if layer.bias is not None:
            grads.append(layer.bias.grad)
            a_list.append(a_list[-1])
            b_list.append(None)
            layer_r.append(r_values.get(name))
            bias_rates.add(name, lambda a=a: a, formula)
        # CLArena's capacity counts a bias rate for every layer, with or without a bias.
        layer_sum = rate_sum(a, b, shape, aggregation, formula) + formula(a).sum()
        capacity_sum = layer_sum if capacity_sum is None else capacity_sum + layer_sum
        count += math.prod(shape) + a.numel()
    foreach_scale_grad_by_measure_(grads, a_list, b_list, aggregation, rate, alpha, layer_r if r is not None else None)
    capacity = capacity_sum.to(torch.get_default_dtype()) / count
    return weight_rates, bias_rates, capacity


def materialised_adjustment(
    algorithm: Any, measure: Mapping[str, Tensor], aggregation: str, formula: RateFormula
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """CLArena's per-layer adjustment with the native measure, for rates that must be built
    (random ones: the returned rates are the draws, taken in CLArena's order)."""
    weight_rates, bias_rates = {}, {}
    capacity_sum, count = None, 0
    for name, layer, preceding in _layers(algorithm):
        a = measure[name]
        b = None if preceding is None else measure[preceding]
        weight_rate = formula(parameter_measure(a, b, layer.weight.shape, aggregation))
        bias_rate = formula(a)
        layer.weight.grad.mul_(weight_rate)
        weight_rates[name] = weight_rate
        if layer.bias is not None:
            layer.bias.grad.mul_(bias_rate)
            bias_rates[name] = bias_rate
        layer_sum = weight_rate.sum() + bias_rate.sum()
        capacity_sum = layer_sum if capacity_sum is None else capacity_sum + layer_sum
        count += weight_rate.numel() + bias_rate.numel()
    return weight_rates, bias_rates, capacity_sum.to(torch.get_default_dtype()) / count


# --------------------------------------------------------------------------------------- HAT
def _hat_formula(mode: str, alpha: float | None) -> RateFormula:
    """CLArena's HAT rate expression for `mode` (its hat.py, `clip_grad_by_adjustment`)."""
    if mode == "hat":
        return lambda m: 1 - m
    if mode == "hat_const_alpha":
        return lambda m: alpha * torch.ones_like(m) * m + (1 - m)
    if mode == "hat_const_1":
        return lambda m: torch.ones_like(m) * m + (1 - m)
    return lambda m: torch.rand_like(m) * m + (1 - m)  # hat_random


def hat_clip_grad_by_adjustment(self: Any, original: Callable[..., Any], **kwargs: Any):
    """HAT.clip_grad_by_adjustment: rate of the cumulative mask M<t ('min' aggregation)."""
    mode = self.adjustment_mode
    measure = self.cumulative_mask_for_previous_tasks
    if mode == "hat_random":
        return materialised_adjustment(self, measure, "min", _hat_formula(mode, None))
    if mode not in ("hat", "hat_const_alpha", "hat_const_1"):
        return original(self, **kwargs)  # CLArena leaves gradients as they are
    # hat_const_1 is hat_const_alpha with alpha = 1: `1 * m + (1 - m)`, CLArena's expression.
    rate, alpha = ("hat", None) if mode == "hat" else ("hat_const_alpha", 1.0 if mode == "hat_const_1" else self.alpha)
    formula = _hat_formula(mode, self.alpha)
    return fused_adjustment(self, measure, "min", rate, dict.fromkeys(measure, formula), alpha=alpha)


def compensate_task_embedding_gradients(self: Any, original: Callable[..., Any], batch_idx: int, num_batches: int) -> None:
    """HAT.compensate_task_embedding_gradients over every task embedding in one call."""
    weights = [embedding.weight for embedding in self.backbone.task_embedding_t.values()]
    scale = anneal_scale(self.s_max, batch_idx, num_batches)
    foreach_compensate_embedding_grad_(weights, [weight.grad for weight in weights], scale, self.s_max, self.clamp_threshold)


# ------------------------------------------------------------------------------------ AdaHAT
def adahat_clip_grad_by_adjustment(self: Any, original: Callable[..., Any], network_sparsity: Mapping[str, Any] | None = None):
    """AdaHAT.clip_grad_by_adjustment: `r / (M<t,sum + r)` with r from the layer's sparsity."""
    mode = self.adjustment_mode
    if mode not in ("adahat", "adahat_no_reg", "adahat_no_sum"):
        return original(self, network_sparsity=network_sparsity)  # CLArena leaves gradients as they are
    names = self.backbone.weighted_layer_names
    if mode == "adahat_no_reg":
        r = dict.fromkeys(names, self.adjustment_intensity / (self.epsilon + 0.0))
    else:
        r = {name: self.adjustment_intensity / (self.epsilon + network_sparsity[name]) for name in names}
    if mode == "adahat_no_sum":
        return _adahat_no_sum(self, r)
    formulas = {name: (lambda m, r_layer=r_layer: torch.div(r_layer, m + r_layer)) for name, r_layer in r.items()}
    return fused_adjustment(self, self.summative_mask_for_previous_tasks, "min", "adahat", formulas, r=r)


def _adahat_no_sum(self: Any, r: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """One scalar rate `r / (t + r)` per layer; CLArena's capacity counts it as two parameters."""
    weight_rates, bias_rates = {}, {}
    total = None
    for name, layer, _ in _layers(self):
        layer_rate = torch.div(r[name], (self.task_id + r[name]))
        layer.weight.grad.mul_(layer_rate)
        weight_rates[name] = layer_rate
        if layer.bias is not None:
            layer.bias.grad.mul_(layer_rate)
            bias_rates[name] = layer_rate
        total = 2 * layer_rate if total is None else total + 2 * layer_rate
    return weight_rates, bias_rates, total.to(torch.get_default_dtype()) / (2 * len(weight_rates))


# --------------------------------------------------------------------------------- FG-AdaHAT
def fgadahat_clip_grad_by_adjustment(self: Any, original: Callable[..., Any], network_sparsity: Mapping[str, Any]):
    """FGAdaHAT.clip_grad_by_adjustment: `K / (f * I + K)` = `r / (I + r)` with `r = K / f`.

    Filtering by the cumulative mask (a product of two aggregated measures) and the
    'summative_mask_sparsity_reg' scheduler (which fails in CLArena 1.1.0) run CLArena's code.
    """
    if self.filter_by_cumulative_mask or self.importance_scheduler_type not in ("linear_sparsity_reg", "sparsity_reg"):
        return original(self, network_sparsity=network_sparsity)
    intensity = self.adjustment_intensity
    factors = {}
    for name in self.backbone.weighted_layer_names:
        factor = network_sparsity[name] + self.base_mask_sparsity_reg
        if self.importance_scheduler_type == "linear_sparsity_reg":
            factor = factor * (self.task_id + self.base_linear)
        factors[name] = factor
    formulas = {
        name: (lambda m, factor=factor: torch.div(intensity, (factor * m + intensity))) for name, factor in factors.items()
    }
    r = {name: intensity / factor for name, factor in factors.items()}
    aggregation = self.neuron_to_weight_importance_aggregation_mode
    return fused_adjustment(self, self.summative_importance_for_previous_tasks, aggregation, "adahat", formulas, r=r)


# --------------------------------------------------------------------------------------- WSN
def wsn_clip_grad_by_mask(self: Any, original: Callable[..., Any]) -> None:
    """WSN.clip_grad_by_mask: `grad *= 1 - M` as `grad -= grad * M`, one multi-tensor op.

    Equal for binary masks (WSN's cumulative masks are unions of binary gates), and no
    weight-sized `1 - M` is allocated.
    """
    grads, masks = [], []
    for name, layer, _ in _layers(self):
        grads.append(layer.weight.grad)
        masks.append(self.cumulative_weight_mask_for_previous_tasks[name])
        if layer.bias is not None:
            grads.append(layer.bias.grad)
            masks.append(self.cumulative_bias_mask_for_previous_tasks[name])
    torch._foreach_addcmul_(grads, grads, masks, value=-1)
