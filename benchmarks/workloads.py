"""The benchmarked workloads, as plain callables (used by the bench_*.py files and by report.py).

Every builder returns a `Workload`: a zero-argument `fn` to time, an optional `setup` run before
each timed call (untimed), and whether it must run on the reference path (inside
`clarena.ops.use_reference()`). Builders allocate everything up front, so `fn` times only the
op or step itself. Implementations (`impl`):

* `reference`: the pure-PyTorch reference of every clarena op (CLArena's formulas);
* `native`: the native kernels (the default path);
* `limit`: a memory-bound operation over the same data that no implementation can beat by much
  (a `clone()` of the scores, one `mul_` pass over the gradients, one zero-filled allocation);
* `plain`: the unmasked baseline backbone (CLMLP, CLResNet18), which uses no clarena op.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clarena_backbones import ops
from clarena_backbones.algorithms import hat, wsn

DTYPE = torch.float32
KEEP = 0.7  # WSN's mask_percentage: fraction of parameters kept
S_MAX = 400.0  # HAT's s_max (CLArena's hat.yaml)
CLAMP_THRESHOLD = 50.0  # HAT's clamp_threshold (CLArena's hat.yaml)
NUM_CLASSES = 10  # width of the linear head of the training step
LEARNING_RATE = 0.01

PERCENTILE_SIZES = {"2^20": 2**20, "2^23": 2**23, "2^24+1": 2**24 + 1}
MEASURE_SHAPES = {"linear 4096x4096": (4096, 4096), "conv 512x512x3x3": (512, 512, 3, 3)}
MLP_DIMS = (784, [256, 100], 64)


@dataclass(frozen=True)
class Arch:
    """A network size of the step benchmarks: input shape, batch, batches per epoch (HAT anneal)."""

    label: str
    input_shape: tuple[int, ...]
    batch: int
    num_batches: int


# PermutedMNIST: 421 batches of 128 per epoch; Split CIFAR-100: 35 batches of 64 (CLArena's
# example experiment configs).
ARCHS = {
    "mlp": Arch("mlp 784-256-100-64 b128", (784,), 128, 421),
    "resnet18": Arch("resnet18 3x32x32 b64", (3, 32, 32), 64, 35),
}
BATCH_IDX = 17  # a mid-epoch batch (the anneal scale is then positive)

# (backbone class name, impl) pairs of the step groups; the plain baselines run once.
STEP_VARIANTS = {
    "mlp": [("CLMLP", "plain"), ("HATMaskMLP", "reference"), ("HATMaskMLP", "native"),
            ("WSNMaskMLP", "reference"), ("WSNMaskMLP", "native")],
    "resnet18": [("CLResNet18", "plain"), ("HATMaskResNet18", "reference"), ("HATMaskResNet18", "native"),
                 ("WSNMaskResNet18", "reference"), ("WSNMaskResNet18", "native")],
}  # fmt: skip
TEST_VARIANTS = [("CLMLP", "plain"), ("HATMaskMLP", "reference"), ("HATMaskMLP", "native"),
                 ("WSNMaskMLP", "reference"), ("WSNMaskMLP", "native")]  # fmt: skip


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


def _binary(n: int, p_one: float = 0.5) -> torch.Tensor:
    """A binary unit measure with about `p_one` of its entries 1 (a cumulative HAT mask)."""
    return (torch.rand(n) < p_one).to(DTYPE)


# ------------------------------------------------------------------------------ group 1: WSN gate
def group_percentile_mask(size: str) -> str:
    return f"percentile_mask n={size}"


def percentile_mask(size: str, impl: str) -> Workload:
    """WSN's gate on `size` N(0,1) scores at keep 0.7; the limit is a `clone()` of the scores."""
    score = torch.randn(PERCENTILE_SIZES[size], dtype=DTYPE)
    if impl == "limit":
        fn = score.clone
    else:
        def fn() -> torch.Tensor:
            return ops.percentile_mask(score, KEEP)
    return Workload(fn, impl, f"({score.numel()},) keep={KEEP}")


def reference_refuses(size: str) -> bool:
    """Whether the reference (torch.quantile) refuses a score of `size` elements."""
    score = torch.empty(PERCENTILE_SIZES[size], dtype=DTYPE).uniform_()
    try:
        with ops.use_reference():
            ops.percentile_mask(score, KEEP)
    except RuntimeError:
        return True
    return False


# --------------------------------------------------------------- group 2: HAT gradient adjustment
HAT_BACKBONES = {
    "HATMaskMLP": "HATMaskMLP(784,[256,100],64)",
    "HATMaskResNet18": "HATMaskResNet18(3,512)",
}


def group_hat_adjustment(backbone_name: str) -> str:
    return f"hat_adjustment {HAT_BACKBONES[backbone_name]}"


def build_backbone(name: str) -> nn.Module:
    """The benchmarked configuration of a backbone class (CLArena's typical configs, BN off)."""
    from clarena_backbones import backbones

    cls = getattr(backbones, name)
    if name.endswith("MLP"):
        input_dim, hidden_dims, output_dim = MLP_DIMS
        kwargs: dict[str, Any] = dict(input_dim=input_dim, hidden_dims=list(hidden_dims), output_dim=output_dim)
    else:
        kwargs = dict(input_channels=3, output_dim=512)
        if name == "CLResNet18":
            kwargs["batch_normalization"] = False  # the HAT and WSN ResNets have no BN either
    if name.startswith("HAT"):
        kwargs["gate"] = "sigmoid"
    return cls(**kwargs).to(DTYPE)


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
    with N(0,1). The in-place scaling by rates in {0, 1} keeps them finite across rounds. The
    limit is one `g.mul_(0.5)` over the same gradients (flush-to-zero is on in the suite, so
    repeated halving never reaches slow denormals).
    """
    backbone = build_backbone(backbone_name)
    layers = backbone.named_weighted_layers()
    measure = {name: _binary(layer.weight.size(0)) for name, layer in layers}
    for _, layer in layers:
        for parameter in (layer.weight, layer.bias):
            if parameter is not None:
                parameter.grad = torch.randn_like(parameter)
    grads = weighted_grads(backbone)
    if impl == "limit":
        def fn() -> None:
            for grad in grads:
                grad.mul_(0.5)
    else:
        def fn() -> None:
            backbone.clip_grad_by_measure_(measure, "min", "hat")
    numel = sum(grad.numel() for grad in grads)
    info = {"layers": len(layers), "grad_elements": numel}
    return Workload(fn, impl, f"{len(layers)} layers, {numel} gradient elements", info=info)


# ------------------------------------------------------------ group 3: measure materialisation
def group_parameter_measure(kind: str) -> str:
    return f"parameter_measure {kind}"


def parameter_measure(kind: str, impl: str) -> Workload:
    """`ops.parameter_measure(a, b, shape, 'min')` of a layer with a preceding layer.

    The limit is `torch.zeros(shape)`: one fresh weight-sized allocation written once, the least
    any materialisation does.
    """
    shape = MEASURE_SHAPES[kind]
    a, b = _binary(shape[0]), _binary(shape[1])
    if impl == "limit":
        def fn() -> torch.Tensor:
            return torch.zeros(shape, dtype=DTYPE)
    else:
        def fn() -> torch.Tensor:
            return ops.parameter_measure(a, b, shape, "min")
    return Workload(fn, impl, "x".join(map(str, shape)) + " min")


# -------------------------------------------------------------------- group 4: training steps
def group_train_step(arch: str) -> str:
    return f"train_step {ARCHS[arch].label}"


def _batch(arch: Arch) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(arch.batch, *arch.input_shape, dtype=DTYPE)
    y = torch.randint(0, NUM_CLASSES, (arch.batch,))
    return x, y


def train_step(arch_name: str, backbone_name: str, impl: str) -> Workload:
    """One training step: zero_grad, forward, cross-entropy on a linear head, backward, the
    algorithm's gradient adjustment, SGD step (over backbone and head, as CLArena's optimiser).

    * plain (CLMLP, CLResNet18): no adjustment.
    * HAT: train-stage forward (s_max 400, batch_idx, num_batches), then the demo's adjustment
      (`clarena.algorithms.hat.adjust_gradients`: `clip_grad_by_measure_(cumulative mask, 'min',
      'hat')` and the task-embedding gradient compensation, CLArena's per-layer formulas on the
      reference path, fused passes natively). No sparsity regulariser.
    * WSN: train-stage forward (mask_percentage 0.7) on fresh scores after task 1's mask is
      stored, then the demo's `grad *= 1 - M_1` (`clarena.algorithms.wsn.freeze_used_`) for every
      weighted layer's weight and bias (plain torch, identical on both paths).
    """
    arch = ARCHS[arch_name]
    backbone = build_backbone(backbone_name)
    head = nn.Linear(backbone.output_dim, NUM_CLASSES).to(DTYPE)
    x, y = _batch(arch)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=LEARNING_RATE)

    if backbone_name.startswith("HAT"):
        backbone.setup_task_id(2)
        backbone.initialize_task_embedding("N01")
        cumulative = {name: _binary(layer.weight.size(0)) for name, layer in backbone.named_weighted_layers()}

        def forward() -> torch.Tensor:
            return backbone(x, "train", s_max=S_MAX, batch_idx=BATCH_IDX, num_batches=arch.num_batches)[0]

        def adjust() -> None:
            hat.adjust_gradients(backbone, cumulative, S_MAX, CLAMP_THRESHOLD, BATCH_IDX, arch.num_batches)

    elif backbone_name.startswith("WSN"):
        backbone.setup_task_id(1)
        backbone.initialize_parameter_score("default")
        backbone.store_mask(1, KEEP)
        backbone.setup_task_id(2)
        backbone.initialize_parameter_score("default")
        free = wsn.free_parameters(backbone)

        def forward() -> torch.Tensor:
            return backbone(x, "train", mask_percentage=KEEP)[0]

        def adjust() -> None:
            wsn.freeze_used_(free)

    else:
        def forward() -> torch.Tensor:
            return backbone(x, stage="train")[0]

        def adjust() -> None:
            pass

    def fn() -> None:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(forward()), y)
        loss.backward()
        adjust()
        optimizer.step()

    parameters = sum(p.numel() for p in backbone.parameters())
    info = {"backbone": backbone_name, "batch": arch.batch, "backbone_parameters": parameters}
    return Workload(fn, impl, f"{backbone_name} {arch.label}", info=info)


# ---------------------------------------------------------------- group 5: test-stage forward
def group_test_forward(arch: str = "mlp") -> str:
    return f"test_forward {ARCHS[arch].label}"


def stored_mask_forward(backbone_name: str, impl: str) -> Workload:
    """Test-stage forward with stored masks, in inference mode (as Lightning's test loop).

    * HAT: the stored binary mask of task 1 (`store_mask` after an N(0,1) embedding init).
    * WSN: `test_mask` is CLArena's tuple of float mask dicts, made by the gate at 0.7 and passed
      every batch as the same objects. The backbone reuses masked weights across test batches;
      CLArena recomputes `W * mask` every batch, so the reference drops that cache before each
      timed call (untimed setup), which is the reference's CLArena behaviour.
    """
    arch = ARCHS["mlp"]
    backbone = build_backbone(backbone_name).eval()
    x, _ = _batch(arch)
    setup = None
    info: dict[str, Any] = {"backbone": backbone_name, "batch": arch.batch}

    if backbone_name.startswith("HAT"):
        backbone.setup_task_id(1)
        backbone.initialize_task_embedding("N01")
        backbone.store_mask()

        def forward() -> torch.Tensor:
            return backbone(x, "test", test_task_id=1)[0]

    elif backbone_name.startswith("WSN"):
        backbone.setup_task_id(1)
        backbone.initialize_parameter_score("default")
        with torch.no_grad():
            weight_mask, bias_mask = backbone.get_mask("train", KEEP)
        test_mask = (
            {name: mask.detach().clone() for name, mask in weight_mask.items()},
            {name: None if mask is None else mask.detach().clone() for name, mask in bias_mask.items()},
        )
        if impl == "reference":
            cache = getattr(backbone, "_test_cache", None)
            info["reference_cache_dropped"] = isinstance(cache, dict)
            if isinstance(cache, dict):
                setup = cache.clear

        def forward() -> torch.Tensor:
            return backbone(x, "test", mask_percentage=KEEP, test_mask=test_mask)[0]

    else:
        def forward() -> torch.Tensor:
            return backbone(x, stage="test")[0]

    def fn() -> torch.Tensor:
        with torch.inference_mode():
            return forward()

    return Workload(fn, impl, f"{backbone_name} {arch.label}", setup=setup, info=info)


def all_workloads() -> dict[tuple[str, str], Callable[[], Workload]]:
    """(group, impl label) -> builder, for every benchmark of the suite (used by report.py --profile)."""
    table: dict[tuple[str, str], Callable[[], Workload]] = {}
    for size in PERCENTILE_SIZES:
        impls = ("native", "limit") if size == "2^24+1" else ("reference", "native", "limit")
        for impl in impls:
            table[(group_percentile_mask(size), impl)] = lambda s=size, i=impl: percentile_mask(s, i)
    for name in HAT_BACKBONES:
        for impl in ("reference", "native", "limit"):
            table[(group_hat_adjustment(name), impl)] = lambda n=name, i=impl: hat_adjustment(n, i)
    for kind in MEASURE_SHAPES:
        for impl in ("reference", "native", "limit"):
            table[(group_parameter_measure(kind), impl)] = lambda k=kind, i=impl: parameter_measure(k, i)
    for arch, variants in STEP_VARIANTS.items():
        for name, impl in variants:
            table[(group_train_step(arch), step_label(name, impl))] = (
                lambda a=arch, n=name, i=impl: train_step(a, n, i)
            )
    for name, impl in TEST_VARIANTS:
        table[(group_test_forward(), step_label(name, impl))] = lambda n=name, i=impl: stored_mask_forward(n, i)
    import clarena_workloads  # CLArena's own training step (its builders need CLArena)
    import gate_workloads  # the warm-started and batched WSN gate (it builds on this module)

    table.update(gate_workloads.all_workloads())
    table.update(clarena_workloads.all_workloads())
    return table


def step_label(backbone_name: str, impl: str) -> str:
    """The `impl` parameter of a step benchmark: 'plain' or '<backbone>/<path>'."""
    return impl if impl == "plain" else f"{backbone_name}/{impl}"


def human_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
