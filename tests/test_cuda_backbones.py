"""CUDA: every backbone class in every stage against its CPU result, opcheck of every op on CUDA,
CUDA-graph capture of the gate and of one HAT and one WSN training step, torch.compile on CUDA.

Every test here needs a CUDA device (skipped, and reported, without one); `bash .ci/gpu_check.sh`
runs them on the first machine with a GPU.
"""

import copy

import pytest
import torch
from sweep_helpers import KEEP, S_MAX, configurations, stage_calls, tensors_of

from clarena import ops
from clarena.backbones import HATMaskMLP, WSNMaskMLP

pytestmark = pytest.mark.needs_cuda
DEVICE = "cuda"
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(autouse=True)
def _full_precision_cuda():
    # TF32 matmuls and convolutions would differ from the CPU far beyond rounding.
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_the_cuda_kernels_are_loaded():
    assert ops.native_available()
    assert torch._C._dispatch_has_kernel_for_dispatch_key("clarena::percentile_mask", "CUDA")


@pytest.mark.parametrize("cls, kwargs, input_shape", list(configurations()))
def test_every_stage_on_cuda_equals_cpu(cls, kwargs, input_shape):
    torch.manual_seed(0)
    model = cls(**kwargs)
    calls = stage_calls(model)
    on_cuda = copy.deepcopy(model).to(DEVICE)
    x = torch.randn(input_shape)
    for stage, call in calls:
        model.zero_grad()
        on_cuda.zero_grad()
        cpu_out = call(model, x)
        cuda_out = call(on_cuda, x.to(DEVICE))
        cpu_out[0].square().mean().backward()
        cuda_out[0].square().mean().backward()
        cpu_tensors, cuda_tensors = tensors_of(cpu_out), tensors_of(cuda_out)
        assert len(cpu_tensors) == len(cuda_tensors), stage
        for actual, expected in zip(cuda_tensors, cpu_tensors):
            assert actual.device.type == DEVICE, stage
            torch.testing.assert_close(actual.cpu(), expected, **TOLERANCE, msg=lambda m: f"{stage}: {m}")
        for (name, p), q in zip(on_cuda.named_parameters(), model.parameters()):
            assert (p.grad is None) == (q.grad is None), (stage, name)
            if p.grad is not None:
                torch.testing.assert_close(p.grad.cpu(), q.grad, **TOLERANCE, msg=lambda m: f"{stage} {name}: {m}")


def op_samples():
    """(op, args) on CUDA for every clarena op, the in-place ones on fresh gradients."""
    make = dict(device=DEVICE)
    weight, mask = torch.randn(6, 5, **make), (torch.rand(6, 5, **make) > 0.5).float()
    x, unit = torch.randn(4, 3, 5, 5, **make), torch.rand(3, **make)
    a, b = torch.rand(6, **make), torch.rand(5, **make)
    return [
        (torch.ops.clarena.percentile_mask.default, (torch.randn(300, **make), 0.3)),
        (torch.ops.clarena.parameter_measure.default, (a, b, [6, 5, 3, 3], "mean")),
        (torch.ops.clarena.scale_grad_by_measure_.default, (torch.randn(6, 5, **make), a, b, "min", "adahat", 0.0, 0.1)),
        (torch.ops.clarena.foreach_scale_grad_by_measure_.default,
         ([torch.randn(6, 5, **make), torch.randn(6, **make)], [a, a], [b, None], "max", "hat", 0.0, [0.0, 0.0])),
        (torch.ops.clarena.masked_weight.default, (weight, mask)),
        (torch.ops.clarena.masked_weight_backward.default, (torch.randn_like(weight), weight, mask)),
        (torch.ops.clarena.unit_mask.default, (x, unit, True)),
        (torch.ops.clarena.unit_mask_backward.default, (torch.randn_like(x), x, unit, True)),
    ]  # fmt: skip


@pytest.mark.parametrize("op, args", op_samples() if torch.cuda.is_available() else [], ids=lambda v: str(v)[:40])
def test_opcheck_on_cuda(op, args):
    torch.library.opcheck(op, args)


def test_the_gate_replays_in_a_cuda_graph():
    score = torch.randn(100_000, device=DEVICE)
    ops.percentile_mask(score, KEEP)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        mask = ops.percentile_mask(score, KEEP)
    for seed in (1, 2):
        score.copy_(torch.randn(score.shape, generator=torch.Generator().manual_seed(seed)))
        graph.replay()
        expected = (score >= torch.quantile(score, 1 - KEEP)).float()
        assert torch.equal(mask, expected), seed


def hat_forward(model, x):
    return model(x, "train", s_max=S_MAX, batch_idx=2, num_batches=5)[0]


def wsn_forward(model, x):
    return model(x, "train", mask_percentage=KEEP)[0]


FORWARDS = {"hat": hat_forward, "wsn": wsn_forward}


def prepared(kind):
    """A small backbone of `kind` on CUDA, ready to train, and its HAT measure (None for WSN)."""
    torch.manual_seed(0)
    if kind == "hat":
        model = HATMaskMLP(20, [64, 32], 16, gate="sigmoid").to(DEVICE)
        model.setup_task_id(1)
        measure = {name: (torch.rand(model.get_layer_by_name(name).weight.size(0), device=DEVICE) > 0.5).float()
                   for name in model.weighted_layer_names}
        return model, measure
    model = WSNMaskMLP(20, [64, 32], 16).to(DEVICE)
    model.setup_task_id(1)
    model.initialize_parameter_score("default")
    return model, None


def train_step(kind, model, optimizer, x, measure):
    optimizer.zero_grad(set_to_none=False)
    FORWARDS[kind](model, x).square().mean().backward()
    if measure is not None:
        model.clip_grad_by_measure_(measure, "min", "hat")
    optimizer.step()


@pytest.mark.parametrize("kind", ["hat", "wsn"])
def test_a_training_step_replays_in_a_cuda_graph(kind):
    model, measure = prepared(kind)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 20, device=DEVICE)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graph's documentation asks
        for _ in range(3):
            train_step(kind, model, optimizer, x, measure)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train_step(kind, model, optimizer, x, measure)
    eager = copy.deepcopy(model)  # the capture ran nothing: the state before the step
    eager_optimizer = torch.optim.SGD(eager.parameters(), lr=0.1)
    x.copy_(torch.randn(x.shape))
    graph.replay()
    train_step(kind, eager, eager_optimizer, x, measure)
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, **TOLERANCE, msg=lambda m: f"{kind} {name}: {m}")


@pytest.mark.parametrize("kind", ["hat", "wsn"])
def test_compiled_training_forward_and_backward_equal_eager_on_cuda(kind):
    model, _ = prepared(kind)
    compiled_model = copy.deepcopy(model)
    x = torch.randn(8, 20, device=DEVICE)
    eager_out = FORWARDS[kind](model, x)
    compiled_out = torch.compile(FORWARDS[kind], fullgraph=True)(compiled_model, x)
    eager_out.square().mean().backward()
    compiled_out.square().mean().backward()
    torch.testing.assert_close(compiled_out, eager_out, **TOLERANCE)
    for (name, p), q in zip(compiled_model.named_parameters(), model.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, **TOLERANCE, msg=lambda m: f"{kind} {name}: {m}")
