"""HAT's parameter-wise measures, as single ops.

* `hat_adjustment <backbone>`: `clip_grad_by_measure_(measure, 'min', 'hat')` over every
  weighted layer of HATMaskMLP or HATMaskResNet18, against one `mul_` pass over the same
  gradients;
* `parameter_measure <layer>`: `ops.parameter_measure(a, b, shape, 'min')` of a layer with a
  preceding layer, against one zero-filled weight-sized allocation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from clarena_backbones import ops
from common import DTYPE, Workload, binary, build_backbone

HAT_BACKBONES = {
    "HATMaskMLP": "HATMaskMLP(784,[256,100],64)",
    "HATMaskResNet18": "HATMaskResNet18(3,512)",
}
MEASURE_SHAPES = {"linear 4096x4096": (4096, 4096), "conv 512x512x3x3": (512, 512, 3, 3)}


def group_hat_adjustment(backbone_name: str) -> str:
    return f"hat_adjustment {HAT_BACKBONES[backbone_name]}"


def weighted_grads(backbone: nn.Module) -> list[torch.Tensor]:
    """`.grad` of every weighted layer's weight and bias (those that exist)."""
    grads = []
    for _, layer in backbone.named_weighted_layers():
        for parameter in (layer.weight, layer.bias):
            if parameter is not None and parameter.grad is not None:
                grads.append(parameter.grad)
    return grads


def hat_adjustment(backbone_name: str, impl: str) -> Workload:
    """`clip_grad_by_measure_(measure, 'min', 'hat')` over all weighted layers.

    The measure is a binary cumulative mask (about half the units 1); gradients are filled once
    with N(0,1). The in-place scaling by rates in {0, 1} keeps them finite across rounds; the
    limit multiplies by -1, so its gradients never shrink towards subnormals either.
    """
    backbone = build_backbone(backbone_name)
    layers = backbone.named_weighted_layers()
    measure = {name: binary(layer.weight.size(0)) for name, layer in layers}
    for _, layer in layers:
        for parameter in (layer.weight, layer.bias):
            if parameter is not None:
                parameter.grad = torch.randn_like(parameter)
    grads = weighted_grads(backbone)
    if impl == "limit":
        def fn() -> None:
            for grad in grads:
                grad.mul_(-1.0)
    else:
        def fn() -> None:
            backbone.clip_grad_by_measure_(measure, "min", "hat")
    numel = sum(grad.numel() for grad in grads)
    info = {"layers": len(layers), "grad_elements": numel}
    return Workload(fn, impl, f"{len(layers)} layers, {numel} gradient elements", info=info)


def group_parameter_measure(kind: str) -> str:
    return f"parameter_measure {kind}"


def parameter_measure(kind: str, impl: str) -> Workload:
    """`ops.parameter_measure(a, b, shape, 'min')`; the limit is `torch.zeros(shape)`: one fresh
    weight-sized allocation written once, the least any materialisation does."""
    shape = MEASURE_SHAPES[kind]
    a, b = binary(shape[0]), binary(shape[1])
    if impl == "limit":
        def fn() -> torch.Tensor:
            return torch.zeros(shape, dtype=DTYPE)
    else:
        def fn() -> torch.Tensor:
            return ops.parameter_measure(a, b, shape, "min")
    return Workload(fn, impl, "x".join(map(str, shape)) + " min")


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for impl in ("reference", "native", "limit"):
        for name in HAT_BACKBONES:
            table[(group_hat_adjustment(name), impl)] = lambda n=name, i=impl: hat_adjustment(n, i)
        for kind in MEASURE_SHAPES:
            table[(group_parameter_measure(kind), impl)] = lambda k=kind, i=impl: parameter_measure(k, i)
    return table
