"""What every workload family shares: the `Workload` type, the benchmarked configurations, the
backbone builder. The family modules (`gate_workloads`, `hat_workloads`, `step_workloads`,
`epoch_workloads`, `clarena_workloads`) import this module and nothing else of the suite;
`workloads.py` collects them.

Implementations (`impl`) of a workload:

* `reference`: the pure-PyTorch reference of every clarena op (CLArena's formulas);
* `native`: the native kernels (the default path);
* `limit`: a memory-bound operation over the same data that no implementation can beat by much
  (a `clone()` of the scores, one `mul_` pass over the gradients, one zero-filled allocation);
* `plain`: the unmasked baseline backbone (CLMLP, CLResNet18), which uses no clarena op;
* `clarena`, `accelerated` (epoch groups): CLArena's own `training_step` over CLArena's own
  backbone, and over this package's backbone with `accelerate_clarena()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from clarena_backbones import ops

DTYPE = torch.float32
KEEP = 0.7  # WSN's mask_percentage: fraction of parameters kept
S_MAX = 400.0  # HAT's s_max (CLArena's hat.yaml)
CLAMP_THRESHOLD = 50.0  # HAT's clamp_threshold (CLArena's hat.yaml)
MASK_SPARSITY_REG_FACTOR = 0.75  # HAT's mask_sparsity_reg_factor (CLArena's hat.yaml)
NUM_CLASSES = 10  # width of the linear head of the training step
LEARNING_RATE = 0.01
MLP_DIMS = (784, [256, 100], 64)


@dataclass(frozen=True)
class Arch:
    """A network size of the step benchmarks: input shape, batch, batches per epoch (HAT anneal)."""

    label: str
    input_shape: tuple[int, ...]
    batch: int
    num_batches: int


@dataclass
class Workload:
    fn: Callable[[], Any]
    impl: str
    shape: str
    setup: Callable[[], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def path(self) -> Iterator[None]:
        """The op path of this workload: `use_reference()` for the reference, else as is."""
        if self.impl == "reference":
            with ops.use_reference():
                yield
        else:
            yield


def binary(n: int, p_one: float = 0.5) -> torch.Tensor:
    """A binary unit measure with about `p_one` of its entries 1 (a cumulative HAT mask)."""
    return (torch.rand(n) < p_one).to(DTYPE)


def batch(arch: Arch, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs N(0, 1) and labels of one batch of `arch`, drawn on the CPU (as `generator`), then
    moved to the default device (cuda_report.py builds the workloads under `torch.device`)."""
    x = torch.randn(arch.batch, *arch.input_shape, generator=generator, dtype=DTYPE, device="cpu")
    y = torch.randint(0, NUM_CLASSES, (arch.batch,), generator=generator, device="cpu")
    device = torch.get_default_device()
    return x.to(device), y.to(device)


def backbone_kwargs(name: str, mlp_dims: tuple[int, list[int], int] = MLP_DIMS) -> dict[str, Any]:
    """The benchmarked configuration of backbone class `name` (CLArena's typical configs, BN off)."""
    if name.endswith("MLP"):
        input_dim, hidden_dims, output_dim = mlp_dims
        kwargs: dict[str, Any] = dict(input_dim=input_dim, hidden_dims=list(hidden_dims), output_dim=output_dim)
    else:
        kwargs = dict(input_channels=3, output_dim=512)
    if name == "CLResNet18":
        kwargs["batch_normalization"] = False  # the HAT and WSN ResNets have no BN either
    if name.startswith("HAT"):
        kwargs["gate"] = "sigmoid"
    return kwargs


def build_backbone(name: str, mlp_dims: tuple[int, list[int], int] = MLP_DIMS) -> nn.Module:
    """This package's backbone class `name` in its benchmarked configuration."""
    from clarena_backbones import backbones

    return getattr(backbones, name)(**backbone_kwargs(name, mlp_dims)).to(DTYPE)


def hat_second_task(backbone: nn.Module) -> dict[str, torch.Tensor]:
    """Put a HAT backbone on task 2 (embeddings N(0, 1)); returns a binary cumulative mask of task 1
    with about half of each layer's units taken."""
    backbone.setup_task_id(2)
    backbone.initialize_task_embedding("N01")
    return {name: binary(layer.weight.size(0)) for name, layer in backbone.named_weighted_layers()}


def wsn_second_task(backbone: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor | None]]:
    """Store task 1's subnetwork of a WSN backbone and put it on task 2 with fresh scores; returns
    task 1's cumulative mask `M_1` (what `backbone.clip_grad_by_mask_` freezes)."""
    from clarena_backbones.algorithms import wsn

    backbone.setup_task_id(1)
    backbone.initialize_parameter_score("default")
    backbone.store_mask(1, KEEP)
    backbone.setup_task_id(2)
    backbone.initialize_parameter_score("default")
    return wsn.cumulative_mask(backbone)


def step_label(backbone_name: str, impl: str) -> str:
    """The `impl` parameter of a step benchmark: 'plain' or '<backbone>/<path>'."""
    return impl if impl == "plain" else f"{backbone_name}/{impl}"
