"""CLArena 1.1.0's own training steps: with its per-step methods, accelerated, on its own backbones.

* `clarena_train_step <arch> HAT s=<s>`: one `HAT.training_step` (forward, cross-entropy,
  mask-sparsity regulariser, backward, `clip_grad_by_adjustment`,
  `compensate_task_embedding_gradients`, SGD step) over this package's HATMaskMLP or
  HATMaskResNet18 at the mid-epoch batch of `step_workloads`: `reference` runs CLArena's
  methods, `native` the same accelerated (`accelerated_clarena()` around each call, outside the
  timer).
* the `clarena` and `accelerated` rows of the epoch groups (`epoch_workloads`): CLArena's
  `training_step` over a whole epoch on CLArena's own backbone (`clarena_original`), and on this
  package's backbone accelerated; the `clarena` row of the flush-to-zero group runs CLArena's own
  HATMaskMLP.

Lightning's Trainer is replaced by the three things `training_step` reads from it (the
optimizer, `manual_backward`, the number of batches), so only the step is timed. The builders
raise ImportError without CLArena, and a backbone CLArena cannot build raises its own error: the
runners then report the row as skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch

import epoch_workloads as ew
import step_workloads as sw
from clarena_original import original
from common import DTYPE, KEEP, LEARNING_RATE, NUM_CLASSES, Workload, backbone_kwargs, batch, binary, build_backbone

HAT_ARGUMENTS = dict(s_max=400.0, clamp_threshold=50.0, mask_sparsity_reg_factor=0.75)  # CLArena's hat.yaml
HAT_BACKBONE = {"mlp": "HATMaskMLP", "resnet18": "HATMaskResNet18"}


class ClarenaStepWorkload(Workload):
    @contextlib.contextmanager
    def path(self) -> Iterator[None]:
        """CLArena's methods for `reference` and `clarena`, the fused ones for `native` and `accelerated`."""
        from clarena_backbones.accelerate import accelerated_clarena

        if self.impl in ("native", "accelerated"):
            with accelerated_clarena():
                yield
        else:
            yield


def aliased() -> SimpleNamespace:
    """CLArena's `cl_algorithms` and `heads` as installed, over this package's backbones."""
    import clarena.cl_algorithms
    import clarena.heads

    return SimpleNamespace(cl_algorithms=clarena.cl_algorithms, heads=clarena.heads)


def clarena_algorithm(modules: SimpleNamespace, algorithm: str, backbone: torch.nn.Module, num_batches: int):
    """CLArena's `algorithm` over `backbone`, set up for task 2 and attached to a stand-in Trainer."""
    heads = modules.heads.HeadsTIL(backbone.output_dim)
    algorithms = modules.cl_algorithms
    if algorithm == "WSN":
        model = algorithms.WSN(backbone, heads, mask_percentage=KEEP)
    elif algorithm == "AdaHAT":
        model = algorithms.AdaHAT(backbone, heads, adjustment_mode="adahat", adjustment_intensity=ew.ADJUSTMENT_INTENSITY,
                                  epsilon=ew.EPSILON, **HAT_ARGUMENTS)  # fmt: skip
    else:
        model = algorithms.HAT(backbone, heads, adjustment_mode="hat", **HAT_ARGUMENTS)
    optimizer_factory = functools.partial(torch.optim.SGD, lr=LEARNING_RATE)
    model.setup_task_id(1, NUM_CLASSES, optimizer_factory, None)
    model.setup_task_id(2, NUM_CLASSES, optimizer_factory, None)
    layers = [(name, backbone.get_layer_by_name(name)) for name in backbone.weighted_layer_names]
    if algorithm == "WSN":
        backbone.initialize_parameter_score("default")
        for name, layer in layers:  # task 1's subnetwork, frozen
            model.cumulative_weight_mask_for_previous_tasks[name] = (torch.rand(layer.weight.shape) < KEEP).to(DTYPE)
            bias = None if layer.bias is None else (torch.rand(layer.bias.shape) < KEEP).to(DTYPE)
            model.cumulative_bias_mask_for_previous_tasks[name] = bias
    else:
        backbone.initialize_task_embedding("N01")
        model.cumulative_mask_for_previous_tasks = {name: binary(layer.weight.size(0)) for name, layer in layers}
        if algorithm == "AdaHAT":
            model.summative_mask_for_previous_tasks = dict(model.cumulative_mask_for_previous_tasks)
    optimizer = optimizer_factory(model.parameters())
    model.optimizers = lambda: optimizer
    model.manual_backward = lambda loss: loss.backward()
    model._trainer = SimpleNamespace(num_training_batches=num_batches)
    return model


def group_clarena_train_step(arch: str) -> str:
    return f"clarena_{sw.group_train_step(arch)}"


def clarena_train_step(arch_name: str, impl: str) -> ClarenaStepWorkload:
    arch = sw.ARCHS[arch_name]
    name = HAT_BACKBONE[arch_name]
    model = clarena_algorithm(aliased(), "HAT", build_backbone(name), arch.num_batches)
    data = batch(arch)

    def fn() -> None:
        model.training_step(data, sw.BATCH_IDX)

    info = {"backbone": name, "batch": arch.batch, "s": sw.step_scale(arch), "algorithm": "clarena.cl_algorithms.HAT"}
    return ClarenaStepWorkload(fn, impl, f"HAT.training_step {name} {arch.label}", info=info)


def original_backbone(name: str, mlp_dims=None) -> torch.nn.Module:
    """CLArena's own backbone class `name`, configured as this package's benchmarked one."""
    kwargs = backbone_kwargs(name) if mlp_dims is None else backbone_kwargs(name, mlp_dims)
    return getattr(original().backbones, name)(**kwargs).to(DTYPE)


def clarena_epoch(algorithm: str, arch_name: str, impl: str) -> Workload:
    """CLArena's `training_step` over an epoch: on its own backbone (`clarena`) or accelerated on this package's."""
    arch = ew.EPOCH_ARCHS[arch_name]
    name = ew.BACKBONES[algorithm, arch_name]
    if impl == "clarena":
        model = clarena_algorithm(original(), algorithm, original_backbone(name), arch.num_batches)
    else:
        model = clarena_algorithm(aliased(), algorithm, build_backbone(name), arch.num_batches)
    if algorithm == "WSN":
        def step(data, batch_idx: int) -> Any:
            return model.training_step(data)
    else:
        step = model.training_step
    workload = ew.epoch_workload(step, arch, impl, {"backbone": name, "algorithm": f"CLArena {algorithm}"},
                                 ClarenaStepWorkload)  # fmt: skip
    with workload.path():  # one untimed step, so that a row CLArena cannot train is skipped here
        step(ew.epoch_batches(arch)[0], 1)
    return workload


def clarena_forward_backward(size: str) -> Workload:
    """The flush-to-zero group's row on CLArena's own HATMaskMLP."""
    return ew.hat_forward_backward(original_backbone("HATMaskMLP", ew.FTZ_ARCHS[size][1]), size, "clarena")


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for arch in HAT_BACKBONE:
        for impl in ("reference", "native"):
            table[(group_clarena_train_step(arch), impl)] = lambda a=arch, i=impl: clarena_train_step(a, i)
    for algorithm, arch in ew.EPOCH_GROUPS:
        for impl in ("clarena", "accelerated"):
            table[(ew.group_epoch(algorithm, arch), impl)] = lambda g=algorithm, a=arch, i=impl: clarena_epoch(g, a, i)
    for size in ew.FTZ_ARCHS:
        table[(ew.group_ftz(size), "clarena")] = lambda s=size: clarena_forward_backward(s)
    return table
