"""`WSNMaskBackbone`: parameter masks selected from learnable scores (WSN, Winning SubNetworks)."""

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clarena_backbones.backbones import state_hooks
from clarena_backbones.backbones.base import CLBackbone
from clarena_backbones.backbones.stored_masks import StoredMasks
from clarena_backbones.ops import masked_conv2d, masked_linear, masked_weight, native, pack_mask, percentile_mask, unpack_mask
from clarena_backbones.ops.checks import check_choice, check_fraction
from clarena_backbones.ops.percentile_mask import forget_thresholds_, percentile_masks, percentile_masks_state

WeightMasks = dict[str, Tensor]
BiasMasks = dict[str, Tensor | None]
SCORE_INIT_MODES = ("default", "N01", "U01")


class _MaskedParameters(NamedTuple):
    """A test-stage cache entry: masked weight and bias and what they were computed from."""

    weight: Tensor
    weight_data: int
    weight_version: int
    weight_mask: Tensor
    bias: Tensor | None
    bias_version: int
    bias_mask: Tensor | None
    masked_weight: Tensor
    masked_bias: Tensor | None

    def matches(self, layer: nn.Module, weight_mask: Tensor, bias_mask: Tensor | None) -> bool:
        weight, bias = layer.weight, layer.bias
        return (
            self.weight is weight
            and self.weight_data == weight.data_ptr()
            and self.weight_version == weight._version
            and self.weight_mask is weight_mask
            and self.bias is bias
            and self.bias_version == (-1 if bias is None else bias._version)
            and self.bias_mask is bias_mask
        )


class PercentileLayerParameterMaskingByScore:
    """WSN's gate as CLArena exposes it (`gate_fn.apply(score, percentage)`), on `percentile_mask`.

    Keeps the top `percentage` of `score` (ties at the threshold kept); gradient straight through.
    """

    @staticmethod
    def apply(score: Tensor, percentage: float) -> Tensor:
        return percentile_mask(score, percentage)


class ParameterScore(nn.Module):
    """A learnable score per element of a parameter of any shape (convolution weights are 4-D).

    Exposes `weight` like the `nn.Embedding` CLArena uses for Linear layers, initialised N(0, 1).
    """

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(shape))


def _float_mask(mask: Tensor, parameter: Tensor) -> Tensor:
    """A float 0/1 mask shaped like `parameter` from a float mask or a `pack_mask` one."""
    if mask.dtype == torch.uint8:
        return unpack_mask(mask.to(parameter.device), parameter.shape, parameter.dtype)
    return mask.to(parameter).view(parameter.shape)


def _forget_gate_thresholds_after_load(module: "WSNMaskBackbone", incompatible_keys: Any) -> None:
    # a module-level function, not a lambda, so that the backbone pickles (torch.save of a module)
    module._forget_gate_thresholds()


class WSNMaskBackbone(state_hooks.PerTaskState, CLBackbone):
    """Backbone whose weights and biases are masked per task by the top-scored fraction.

    Every weighted layer `l` has a weight score `weight_score_t[l]` (one score per weight:
    `nn.Embedding(out, in)` for Linear, weight-shaped for convolutions) and a bias score
    `bias_score_t[l]` (`(1, out)`). The mask keeps the `mask_percentage` highest scores of each;
    its gradient reaches the scores straight through. `store_mask` keeps a finished task's masks
    at one bit per parameter in `masks`, which `state_dict` saves (under `stored_masks.`).
    """

    STAGES: tuple[str, ...] = ("train", "validation", "test")

    def __init__(self, output_dim: int | None, **kwargs: Any) -> None:
        super().__init__(output_dim=output_dim, **kwargs)
        self.gate_fn = PercentileLayerParameterMaskingByScore
        self.weight_score_t: nn.ModuleDict = nn.ModuleDict()
        self.bias_score_t: nn.ModuleDict = nn.ModuleDict()
        self.masks: StoredMasks = StoredMasks()
        self._test_cache: dict[str, _MaskedParameters] = {}
        # the gate's last threshold per score tensor (not in state_dict): warm-starts the next step
        self.gate_state: Tensor | None = None
        state_hooks.install(self)
        self.register_load_state_dict_post_hook(_forget_gate_thresholds_after_load)

    def _add_parameter_scores(self) -> None:
        """Create the weight and bias scores of every weighted layer (bias scores always exist).

        Weight scores are `nn.Embedding(out, in)` for Linear layers (as CLArena) and weight-shaped
        `ParameterScore`s for convolutions; bias scores are `nn.Embedding(1, out)`.
        """
        for name, layer in self.named_weighted_layers():
            out_units = layer.weight.size(0)
            if layer.weight.dim() == 2:
                self.weight_score_t[name] = nn.Embedding(out_units, layer.weight.size(1))
            else:
                self.weight_score_t[name] = ParameterScore(layer.weight.shape)
            self.bias_score_t[name] = nn.Embedding(1, out_units)

    def initialize_parameter_score(self, mode: str) -> None:
        """Re-initialise the scores: 'default' (Kaiming-uniform weights, fan-in-uniform biases), 'N01', 'U01'."""
        check_choice("mode", mode, SCORE_INIT_MODES)
        for name, weight_score in self.weight_score_t.items():
            bias_score = self.bias_score_t[name].weight
            if mode == "default":
                nn.init.kaiming_uniform_(weight_score.weight, a=math.sqrt(5))
                fan_in = weight_score.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(bias_score, -bound, bound)
            elif mode == "N01":
                nn.init.normal_(weight_score.weight, 0.0, 1.0)
                nn.init.normal_(bias_score, 0.0, 1.0)
            else:
                nn.init.uniform_(weight_score.weight, 0.0, 1.0)
                nn.init.uniform_(bias_score, 0.0, 1.0)
        self._forget_gate_thresholds()

    def setup_task_id(self, task_id: int) -> None:
        super().setup_task_id(task_id)
        self._forget_gate_thresholds()

    def _forget_gate_thresholds(self) -> None:
        """After the scores jump (re-initialised, loaded, a new task), the last thresholds are no guess."""
        if self.gate_state is not None:
            forget_thresholds_(self.gate_state)

    # ----------------------------------------------------------------------------------- masks
    def _score_masks(self, mask_percentage: float) -> tuple[WeightMasks, BiasMasks]:
        """Masks from the current scores; no bias mask (None) for a layer without bias.

        A float `mask_percentage` goes to the gate's kernel, which checks its range once per step;
        anything else is checked here first, and a refused fraction raises the error that names
        `mask_percentage`.
        """
        keep = mask_percentage if type(mask_percentage) is float else check_fraction("mask_percentage", mask_percentage)
        layers = self.named_weighted_layers()
        names = [name for name, _ in layers]
        with_bias = [name for name, layer in layers if layer.bias is not None]
        scores = [self.weight_score_t[name].weight for name in names]
        scores += [self.bias_score_t[name].weight.view(-1) for name in with_bias]
        if self.gate_state is None or self.gate_state.device != scores[0].device or len(self.gate_state) != len(scores):
            self.gate_state = percentile_masks_state(len(scores), scores[0].device)
        try:
            masks = percentile_masks(scores, keep, self.gate_state)
        except ValueError:
            check_fraction("mask_percentage", mask_percentage)
            raise
        weight_mask: WeightMasks = dict(zip(names, masks))
        bias_mask: BiasMasks = dict.fromkeys(names)
        bias_mask.update(zip(with_bias, masks[len(names) :]))
        return weight_mask, bias_mask

    def get_mask(
        self,
        stage: str,
        mask_percentage: float,
        test_mask: tuple[WeightMasks, BiasMasks] | int | None = None,
    ) -> tuple[WeightMasks, BiasMasks]:
        """`(weight_mask, bias_mask)` for `stage`.

        'train'/'validation': the top `mask_percentage` of each score tensor. 'test': `test_mask`,
        which is CLArena's `(weight_mask, bias_mask)` tuple of float masks, the same tuple with
        `pack_mask` masks, or the int ID of a task stored by `store_mask` (returned packed).
        """
        check_choice("stage", stage, self.STAGES)
        if stage != "test":
            return self._score_masks(mask_percentage)
        if isinstance(test_mask, int) and not isinstance(test_mask, bool):
            if test_mask not in self.masks:
                raise KeyError(f"No stored mask for task {test_mask}; stored tasks: {sorted(self.masks)}.")
            return self._stored_on_device(test_mask)
        if test_mask is None:
            raise ValueError(
                "The 'test' stage needs `test_mask`: a (weight_mask, bias_mask) tuple or a stored task ID; got None."
            )
        weight_mask, bias_mask = test_mask
        return weight_mask, bias_mask

    def _stored_on_device(self, task_id: int) -> tuple[WeightMasks, BiasMasks]:
        """The stored packed masks of `task_id`, moved (once, in place) to the weights' device."""
        weight_mask, bias_mask = self.masks[task_id]
        for name, layer in self.named_weighted_layers():
            device = layer.weight.device
            if weight_mask[name].device != device:
                weight_mask[name] = weight_mask[name].to(device)
            if bias_mask.get(name) is not None and bias_mask[name].device != device:
                bias_mask[name] = bias_mask[name].to(device)
        return weight_mask, bias_mask

    @torch.no_grad()
    def store_mask(self, task_id: int, mask_percentage: float) -> tuple[WeightMasks, BiasMasks]:
        """Store the masks of the current scores for `task_id`, packed at one bit per parameter.

        As CLArena's WSN does at the end of a task: the gate applied to each weight score, and to
        the bias score of layers that have a bias. Returns the float masks `(weight, bias)`.
        """
        weight_mask, bias_mask = self._score_masks(mask_percentage)
        self.masks[task_id] = (
            {name: pack_mask(mask) for name, mask in weight_mask.items()},
            {name: None if mask is None else pack_mask(mask) for name, mask in bias_mask.items()},
        )
        return weight_mask, bias_mask

    # --------------------------------------------------------------------- gradient masking
    @torch.no_grad()
    def clip_grad_by_mask_(self, weight_mask: Mapping[str, Tensor], bias_mask: Mapping[str, Tensor | None]) -> None:
        """Zero the gradients of the parameters that `(weight_mask, bias_mask)` marks with 1.

        WSN's step between `backward()` and the optimizer step, with the union of the earlier
        tasks' subnetworks as the masks (CLArena's cumulative masks, float 0/1 and shaped like
        each weight and bias; None for a layer without a bias mask): `grad *= 1 - M`, computed as
        `grad -= grad * M` in one multi-tensor op over all layers, so no weight-sized `1 - M` is
        built. Parameters without a gradient are skipped.
        """
        grads, masks = [], []
        for name, layer in self.named_weighted_layers():
            for parameter, mask in ((layer.weight, weight_mask[name]), (layer.bias, bias_mask.get(name))):
                if parameter is not None and mask is not None and parameter.grad is not None:
                    grads.append(parameter.grad)
                    masks.append(mask)
        if grads:
            torch._foreach_addcmul_(grads, grads, masks, value=-1)

    # ------------------------------------------------------------------------- masked layers
    def _masked_layer(
        self, name: str, layer: nn.Module, x: Tensor, weight_mask: WeightMasks, bias_mask: BiasMasks, test: bool
    ) -> Tensor:
        """Run Linear/Conv2d `layer` on `x` with its parameters masked.

        Test-stage masks never change, so without autograd the masked parameters are computed once
        and reused until the weight changes (its version) or another mask is given.
        """
        layer_weight_mask, layer_bias_mask = weight_mask[name], bias_mask.get(name)
        if test:
            weight, bias = self._test_parameters(name, layer, layer_weight_mask, layer_bias_mask)
            if isinstance(layer, nn.Conv2d):
                return layer._conv_forward(x, weight, bias)
            return F.linear(x, weight, bias)
        if isinstance(layer, nn.Conv2d):
            return masked_conv2d(
                x, layer.weight, layer.bias, layer_weight_mask, layer_bias_mask,
                layer.stride, layer.padding, layer.dilation, layer.groups,
            )  # fmt: skip
        return masked_linear(x, layer.weight, layer.bias, layer_weight_mask, layer_bias_mask)

    def _test_parameters(
        self, name: str, layer: nn.Module, weight_mask: Tensor, bias_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        # the reference path recomputes, as CLArena does, so benchmarks compare like with like
        reuse = not torch.is_grad_enabled() and native.runs_native(layer.weight)
        entry = self._test_cache.get(name) if reuse else None
        if entry is not None and entry.matches(layer, weight_mask, bias_mask):
            return entry.masked_weight, entry.masked_bias
        weight, bias = layer.weight, layer.bias
        masked_w = masked_weight(weight, _float_mask(weight_mask, weight))
        masked_b = bias if bias is None or bias_mask is None else masked_weight(bias, _float_mask(bias_mask, bias))
        if reuse:
            self._test_cache[name] = _MaskedParameters(
                weight, weight.data_ptr(), weight._version, weight_mask,
                bias, -1 if bias is None else bias._version, bias_mask, masked_w, masked_b,
            )  # fmt: skip
        return masked_w, masked_b

    # ---------------------------------------------------------------------- state_dict hooks
    def _stored_mask_state(self) -> dict[str, Tensor]:
        state = {}
        for task_id, (weight_mask, bias_mask) in self.masks.items():
            for name, packed in weight_mask.items():
                state[f"{task_id}.weight.{name}"] = packed
            for name, packed in bias_mask.items():
                if packed is not None:
                    state[f"{task_id}.bias.{name}"] = packed
        return state

    def _load_stored_mask_state(self, stored: dict[str, Tensor]) -> None:
        masks: dict[int, tuple[WeightMasks, BiasMasks]] = {}
        for key, packed in stored.items():
            task_id, kind, name = key.split(".", 2)
            weight_mask, bias_mask = masks.setdefault(int(task_id), ({}, {}))
            (weight_mask if kind == "weight" else bias_mask)[name] = packed
        for weight_mask, bias_mask in masks.values():
            for name in weight_mask:
                bias_mask.setdefault(name, None)
        self.masks = StoredMasks(masks)

    def forward(
        self,
        input: Tensor,
        stage: str,
        mask_percentage: float,
        test_mask: tuple[WeightMasks, BiasMasks] | int | None = None,
    ) -> tuple[Tensor, WeightMasks, BiasMasks, dict[str, Tensor]]:
        """Return `(output_feature, weight_mask, bias_mask, activations)` (masks from `get_mask`)."""
        weight_mask, bias_mask = self.get_mask(stage, mask_percentage, test_mask)
        layer_call = partial(self._masked_layer, weight_mask=weight_mask, bias_mask=bias_mask, test=stage == "test")
        feature, activations = self._forward_with_layer_call(input, stage, layer_call)
        return feature, weight_mask, bias_mask, activations

    def _forward_with_layer_call(
        self, input: Tensor, stage: str, layer_call: Callable[[str, nn.Module, Tensor], Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The network with every weighted layer computed by `layer_call`; by subclasses."""
        raise NotImplementedError
