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
  from the unit measures for all layers at once, without a weight-sized tensor except for 'mean'
  aggregation.

A rate is CLArena's expression `formula(m, p)` of a measure `m` and a per-layer parameter `p`
(AdaHAT's `r`, FG-AdaHAT's factor; unused by HAT), evaluated on a layer's measure with its
parameter, or on all layers' padded unit measures with the (layers, 1) column of parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from clarena_backbones.backbones.hat_mask_backbone import anneal_scale
from clarena_backbones.ops import foreach_compensate_embedding_grad_, foreach_scale_grad_by_measure_, parameter_measure

RateFormula = Callable[[Tensor, Any], Tensor]


class AdjustmentRates(Mapping[str, Tensor]):
    """Layer name -> adjustment-rate tensor, each built from the unit measures when first read.

    CLArena's metric callbacks read these tensors every few steps at most; building them every
    step is what made CLArena's adjustment slow. The measures are the tensors held at the step
    (CLArena replaces, never modifies, its cumulative masks).
    """

    def __init__(self) -> None:
        self._specs: dict[str, Callable[[], Tensor]] = {}
        self._built: dict[str, Tensor] = {}

    def add(self, name: str, build: Callable[[], Tensor]) -> None:
        self._specs[name] = build

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._built:
            self._built[name] = self._specs[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)


def weight_rate_sums(
    a: Sequence[Tensor],
    b: Sequence[Tensor | None],
    weight_shapes: Sequence[Sequence[int]],
    aggregation: str,
    formula: RateFormula,
    params: Sequence[float | None],
) -> tuple[Tensor, Tensor]:
    """Per layer, `formula(measure, params[l]).sum()` over its weight's parameter-wise measure,
    and over its unit measure `a` (the bias rates).

    The measure of w[i, j, ...] is `aggregation(a[i], b[j])` (`a[i]` alone when `b` is None).
    For min and max each entry is a[i] or b[j]: with b sorted, the b[j] below (min) or above
    (max) a[i] are a prefix or suffix, so a row's sum is a prefix sum plus a count times
    formula(a[i]). All layers run together, padded to the widest. A mean is neither, so its
    (out, in) table is built, layer by layer (without the kernel dimensions).
    """
    reference = a[0]
    p = None if params[0] is None else torch.tensor(params, dtype=reference.dtype, device=reference.device)[:, None]
    if aggregation == "mean":
        weight_sums = [
            formula(a_l[:, None] if b_l is None else (a_l[:, None] + b_l[None, :]) / 2, p_l).sum()
            * math.prod(shape[1 if b_l is None else 2:])
            for a_l, b_l, shape, p_l in zip(a, b, weight_shapes, params)
        ]
        return torch.stack(weight_sums), torch.stack([formula(a_l, p_l).sum() for a_l, p_l in zip(a, params)])
    is_min = aggregation == "min"
    device = reference.device
    padded_a = torch.nn.utils.rnn.pad_sequence(list(a), batch_first=True)
    # +inf pads sort last and are never below a[i] (min); -inf pads sort first and are never above it (max)
    padded_b = torch.nn.utils.rnn.pad_sequence(
        [reference.new_empty(0) if b_l is None else b_l for b_l in b], batch_first=True, padding_value=math.inf if is_min else -math.inf
    )
    sizes = [(a_l.numel(), 0 if b_l is None else b_l.numel(), math.prod(shape[2:]), math.prod(shape[1:]))
             for a_l, b_l, shape in zip(a, b, weight_shapes)]  # fmt: skip
    outs, ins, inner, per_row = torch.tensor(sizes, device=device).unbind(1)
    real_a = torch.arange(padded_a.size(1), device=device) < outs[:, None]
    rate_a = torch.where(real_a, formula(padded_a, p), 0)
    sorted_b = padded_b.sort(dim=1).values
    pads = padded_b.size(1) - ins
    columns = torch.arange(padded_b.size(1), device=device)
    real_b = columns < ins[:, None] if is_min else columns >= pads[:, None]
    prefix = torch.nn.functional.pad(torch.where(real_b, formula(sorted_b, p), 0).cumsum(1), (1, 0))
    if is_min:
        below = torch.searchsorted(sorted_b, padded_a, side="left")
        rows = prefix.gather(1, below) + (ins[:, None] - below) * rate_a
    else:
        up_to = torch.searchsorted(sorted_b, padded_a, side="right")
        rows = (up_to - pads[:, None]) * rate_a + (prefix[:, -1:] - prefix.gather(1, up_to))
    unit_sums = rate_a.sum(1)
    with_b = torch.where(real_a, rows, 0).sum(1) * inner
    return torch.where(ins > 0, with_b, unit_sums * per_row), unit_sums


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
    formula: RateFormula,
    params: Mapping[str, Tensor | float] | None = None,
    alpha: float | None = None,
    r: Mapping[str, Tensor | float] | None = None,
) -> tuple[AdjustmentRates, AdjustmentRates, Tensor]:
    """Scale every weighted layer's gradients by `formula(measure, params[layer])`, CLArena's way.

    `rate`, `alpha` and `r` (one per layer) name the same rate for the native kernel. Returns
    (weight rates, bias rates of layers with a bias, capacity).
    """
    layers = _layers(algorithm)
    names = [name for name, _, _ in layers]
    layer_params = dict(zip(names, _floats([params[name] for name in names]))) if params is not None else dict.fromkeys(names)
    layer_r = dict(zip(names, _floats([r[name] for name in names]))) if r is not None else dict.fromkeys(names)
    grads, grad_a, grad_b, grad_r = [], [], [], []
    a_list, b_list, shapes = [], [], []
    weight_rates, bias_rates = AdjustmentRates(), AdjustmentRates()
    for name, layer, preceding in layers:
        a = measure[name]
        b = None if preceding is None else measure[preceding]
        shape = tuple(layer.weight.shape)
        p = None if params is None else params[name]
        a_list.append(a)
        b_list.append(b)
        shapes.append(shape)
        a_grad = a.to(layer.weight.grad)
        grads.append(layer.weight.grad)
        grad_a.append(a_grad)
        grad_b.append(None if b is None else b.to(layer.weight.grad))
        grad_r.append(layer_r[name])
        weight_rates.add(name, lambda a=a, b=b, shape=shape, p=p: formula(parameter_measure(a, b, shape, aggregation), p))
        if layer.bias is not None:
            grads.append(layer.bias.grad)
            grad_a.append(a_grad)
            grad_b.append(None)
            grad_r.append(layer_r[name])
            bias_rates.add(name, lambda a=a, p=p: formula(a, p))
    foreach_scale_grad_by_measure_(grads, grad_a, grad_b, aggregation, rate, alpha, grad_r if r is not None else None)
    # CLArena's capacity counts a bias rate for every layer, with or without a bias.
    parameter_list = [layer_params[name] for name in names]
    weight_sums, bias_sums = weight_rate_sums(a_list, b_list, shapes, aggregation, formula, parameter_list)
    count = sum(math.prod(shape) + a.numel() for shape, a in zip(shapes, a_list))
    return weight_rates, bias_rates, (weight_sums + bias_sums).sum().to(torch.get_default_dtype()) / count


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
        weight_rate = formula(parameter_measure(a, b, layer.weight.shape, aggregation), None)
        bias_rate = formula(a, None)
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
        return lambda m, _: 1 - m
    if mode == "hat_const_alpha":
        return lambda m, _: alpha * torch.ones_like(m) * m + (1 - m)
    if mode == "hat_const_1":
        return lambda m, _: torch.ones_like(m) * m + (1 - m)
    return lambda m, _: torch.rand_like(m) * m + (1 - m)  # hat_random


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
    return fused_adjustment(self, measure, "min", rate, _hat_formula(mode, self.alpha), alpha=alpha)


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
    measure = self.summative_mask_for_previous_tasks
    return fused_adjustment(self, measure, "min", "adahat", lambda m, r_layer: torch.div(r_layer, m + r_layer), params=r, r=r)


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
    return fused_adjustment(
        self, self.summative_importance_for_previous_tasks, self.neuron_to_weight_importance_aggregation_mode, "adahat",
        lambda m, factor: torch.div(intensity, (factor * m + intensity)),
        params=factors, r={name: intensity / factor for name, factor in factors.items()},
    )  # fmt: skip


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
