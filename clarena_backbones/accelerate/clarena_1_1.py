"""CLArena 1.1's per-step methods, mapped to the backbone methods that do the same work.

CLArena's HAT-family and WSN algorithms adjust gradients after `backward()` layer by layer, with
weight-sized measure and rate tensors. Each replacement below reads the algorithm's own settings
(`self` is the CLArena algorithm; `original` the method it replaces, called for the cases that
stay CLArena's) and calls the backbone, returning what CLArena's method returns. The math lives
in the backbone methods and the ops; CLArena's names stay here.

`METHODS` maps each method to the digest of the implementation these replacements were written
for (`clarena.accelerate.patching.source_digest` of CLArena 1.1.0's) and to its replacement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


def _adjust(
    self: Any,
    measure: Mapping[str, Tensor],
    aggregation: str,
    rate: str,
    alpha: float | None = None,
    r: float | Mapping[str, Any] | None = None,
) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor], Tensor]:
    """What CLArena's `clip_grad_by_adjustment` returns: weight rates, bias rates, network capacity.

    The gradients are scaled in one call; the rate tensors are built only if a callback reads
    them. CLArena's capacity metric returns the default dtype.
    """
    backbone = self.backbone
    backbone.clip_grad_by_measure_(measure, aggregation, rate, alpha, r)
    weight_rates, bias_rates = backbone.adjustment_rates(measure, aggregation, rate, alpha, r)
    capacity = backbone.network_capacity(measure, aggregation, rate, alpha, r)
    return weight_rates, bias_rates, capacity.to(torch.get_default_dtype())


def hat_clip_grad_by_adjustment(self: Any, original: Any, **kwargs: Any) -> Any:
    """HAT: the rate of the cumulative mask M<t under 'min' aggregation, by `adjustment_mode`."""
    adjustment_mode = self.adjustment_mode
    if adjustment_mode == "hat":
        rate, alpha = "hat", None
    elif adjustment_mode == "hat_const_alpha":
        rate, alpha = "hat_const_alpha", self.alpha
    elif adjustment_mode == "hat_const_1":  # CLArena's `1 * m + (1 - m)`
        rate, alpha = "hat_const_alpha", 1.0
    else:  # 'hat_random' draws its rates; other modes leave the gradients alone
        return original(self, **kwargs)
    return _adjust(self, self.cumulative_mask_for_previous_tasks, "min", rate, alpha=alpha)


def hat_compensate_task_embedding_gradients(self: Any, original: Any, batch_idx: int, num_batches: int) -> None:
    """HAT: the task embeddings' gradient compensation with the algorithm's `s_max` and clamp."""
    self.backbone.compensate_task_embedding_gradients(self.s_max, self.clamp_threshold, batch_idx, num_batches)


def adahat_clip_grad_by_adjustment(self: Any, original: Any, network_sparsity: Mapping[str, Any] | None = None) -> Any:
    """AdaHAT: rate 'adahat' of the summative mask, `r = intensity / (epsilon + sparsity)` per layer."""
    adjustment_mode = self.adjustment_mode
    if adjustment_mode == "adahat":
        names = self.backbone.weighted_layer_names
        r: Any = {name: self.adjustment_intensity / (self.epsilon + network_sparsity[name]) for name in names}
    elif adjustment_mode == "adahat_no_reg":
        r = self.adjustment_intensity / (self.epsilon + 0.0)
    else:  # 'adahat_no_sum' scales each layer by one number; other modes leave the gradients alone
        return original(self, network_sparsity=network_sparsity)
    return _adjust(self, self.summative_mask_for_previous_tasks, "min", "adahat", r=r)


def fgadahat_clip_grad_by_adjustment(self: Any, original: Any, network_sparsity: Mapping[str, Any]) -> Any:
    """FG-AdaHAT: `K / (f * I + K)` is rate 'adahat' of the importance I with `r = K / f`.

    `f` is the layer's sparsity plus `base_mask_sparsity_reg`, times `task_id + base_linear`
    under 'linear_sparsity_reg'. Filtering by the cumulative mask (a product of two measures) and
    the 'summative_mask_sparsity_reg' scheduler stay CLArena's code.
    """
    scheduler = self.importance_scheduler_type
    if self.filter_by_cumulative_mask or scheduler not in ("linear_sparsity_reg", "sparsity_reg"):
        return original(self, network_sparsity=network_sparsity)
    r = {}
    for name in self.backbone.weighted_layer_names:
        factor = network_sparsity[name] + self.base_mask_sparsity_reg
        if scheduler == "linear_sparsity_reg":
            factor = factor * (self.task_id + self.base_linear)
        r[name] = self.adjustment_intensity / factor
    aggregation = self.neuron_to_weight_importance_aggregation_mode
    return _adjust(self, self.summative_importance_for_previous_tasks, aggregation, "adahat", r=r)


def wsn_clip_grad_by_mask(self: Any, original: Any) -> None:
    """WSN: freeze what earlier tasks' subnetworks use (`grad *= 1 - M`, without building `1 - M`)."""
    self.backbone.clip_grad_by_mask_(
        self.cumulative_weight_mask_for_previous_tasks, self.cumulative_bias_mask_for_previous_tasks
    )


# (module, class, method) -> (digest of CLArena 1.1.0's method, replacement)
METHODS = {
    ("clarena.cl_algorithms.hat", "HAT", "clip_grad_by_adjustment"): (
        "4261e0b99245e6d58883c2a91fcebef6ddbdd4cc3a55280157359b510b9eead4",
        hat_clip_grad_by_adjustment,
    ),
    ("clarena.cl_algorithms.hat", "HAT", "compensate_task_embedding_gradients"): (
        "e2d2275bc6f5981b558ac4f921262c7aaba08387761bed3f4fe3f2d6c9a99b16",
        hat_compensate_task_embedding_gradients,
    ),
    ("clarena.cl_algorithms.adahat", "AdaHAT", "clip_grad_by_adjustment"): (
        "7dde4033ce6cf5070ba06708eca7bf4517003d44400f536f24939de4bb6099a4",
        adahat_clip_grad_by_adjustment,
    ),
    ("clarena.cl_algorithms.fgadahat", "FGAdaHAT", "clip_grad_by_adjustment"): (
        "c39a7839ebdfd25a1bb5fcbd02fdef4bd4c872bbcde7f9d73a682c219d94d6bb",
        fgadahat_clip_grad_by_adjustment,
    ),
    ("clarena.cl_algorithms.wsn", "WSN", "clip_grad_by_mask"): (
        "b4511e6f2c44ce94c8f5167d38d412a9ca5636b20b39de630c922eacc5260504",
        wsn_clip_grad_by_mask,
    ),
}
