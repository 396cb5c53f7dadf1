"""foreach_sigmoid_gate and foreach_compensate_embedding_grad_: HAT's per-step embedding work, all layers in one call."""

import math

import pytest
import torch
from op_helpers import DEVICES, non_contiguous

from clarena import ops

TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def embeddings(device="cpu", dtype=torch.float32, sizes=(256, 100, 64, 1)):
    """HAT's `nn.Embedding(1, units)` weights of an MLP, N(0, 1) as CLArena's 'N01' init."""
    return [torch.randn(1, size, device=device, dtype=dtype) * 2 for size in sizes]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("scale", [1 / 400, 1.0, 37.5, 400.0])
def test_gate_equals_the_reference(device, dtype, scale):
    weights = embeddings(device, dtype) + [non_contiguous(torch.randn(3, 4, device=device, dtype=dtype))]
    gates = ops.foreach_sigmoid_gate(weights, scale)
    with ops.use_reference():
        expected = ops.foreach_sigmoid_gate(weights, scale)
    assert [gate.shape for gate in gates] == [torch.Size([w.numel()]) for w in weights]
    for gate, reference in zip(gates, expected):
        torch.testing.assert_close(gate, reference, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_gate_formula_on_a_small_case():
    gates = ops.foreach_sigmoid_gate([torch.tensor([[0.0, 1.0]]), torch.tensor([[-2.0]])], 2.0)
    assert gates[0].tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2))])
    assert gates[1].tolist() == pytest.approx([1 / (1 + math.exp(4))])
    assert ops.foreach_sigmoid_gate([], 2.0) == []


def test_gate_gradcheck():
    weights = [w.double().requires_grad_() for w in embeddings(sizes=(5, 3, 1))]
    assert torch.autograd.gradcheck(lambda *ws: tuple(ops.foreach_sigmoid_gate(list(ws), 1.7)), weights)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("scale", [1 / 400, 0.3, 400.0])
def test_compensation_equals_the_reference(device, dtype, scale):
    weights = embeddings(device, dtype)
    grads = [torch.randn_like(w) for w in weights]
    fused, expected = [g.clone() for g in grads], [g.clone() for g in grads]
    ops.foreach_compensate_embedding_grad_(weights, fused, scale, 400.0, 50.0)
    with ops.use_reference():
        ops.foreach_compensate_embedding_grad_(weights, expected, scale, 400.0, 50.0)
    for mine, theirs in zip(fused, expected):
        torch.testing.assert_close(mine, theirs, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype] * 10)


def test_compensation_formula_on_a_small_case():
    e = torch.tensor([[0.0, 1.0, -3.0]], dtype=torch.float64)
    grad = torch.ones_like(e)
    scale, s_max, clamp = 2.0, 4.0, 5.0
    ops.foreach_compensate_embedding_grad_([e], [grad], scale, s_max, clamp)
    expected = [s_max / scale * (math.cosh(min(max(scale * x, -clamp), clamp)) + 1) / (math.cosh(x) + 1) for x in e[0].tolist()]
    assert grad[0].tolist() == pytest.approx(expected, rel=1e-12)
    assert grad[0, 2].item() == pytest.approx(s_max / scale * (math.cosh(-clamp) + 1) / (math.cosh(-3.0) + 1))  # clamped


def test_compensation_leaves_the_embeddings_and_their_autograd_alone():
    weights = [w.requires_grad_() for w in embeddings()]
    before = [w.detach().clone() for w in weights]
    grads = [torch.ones_like(w) for w in weights]
    ops.foreach_compensate_embedding_grad_(weights, grads, 0.5, 400.0, 50.0)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))
    assert all(not g.requires_grad for g in grads)


def test_one_pass_whatever_the_number_of_layers():
    """The op count does not grow with the layers (on a GPU each op is a kernel launch)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += not func.is_view  # views launch nothing
            return func(*args, **(kwargs or {}))

    counts = []
    for layers in (2, 17):
        weights = embeddings(sizes=(8,) * layers)
        grads = [torch.ones_like(w) for w in weights]
        with Count() as count:
            ops.foreach_compensate_embedding_grad_(weights, grads, 0.5, 400.0, 50.0)
            ops.foreach_sigmoid_gate(weights, 0.5)
        counts.append(count.calls)
    assert counts[0] == counts[1]


def test_torch_compile_fullgraph():
    weights = embeddings()
    grads = [torch.randn_like(w) for w in weights]
    expected = [g.clone() for g in grads]
    ops.foreach_compensate_embedding_grad_(weights, expected, 0.25, 400.0, 50.0)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(weights, grads):
        ops.foreach_compensate_embedding_grad_(weights, grads, 0.25, 400.0, 50.0)
        return ops.foreach_sigmoid_gate(weights, 0.25)

    gates = step(weights, grads)
    for mine, theirs in zip(grads, expected):
        torch.testing.assert_close(mine, theirs)
    for gate, weight in zip(gates, weights):
        torch.testing.assert_close(gate, torch.sigmoid(0.25 * weight).reshape(-1))


def test_bad_arguments_are_named():
    weights = embeddings(sizes=(3, 2))
    grads = [torch.ones_like(w) for w in weights]
    with pytest.raises(TypeError, match="`embeddings` must be a sequence"):
        ops.foreach_sigmoid_gate(weights[0], 1.0)
    with pytest.raises(TypeError, match=r"`embeddings\[1\]` must have the dtype"):
        ops.foreach_sigmoid_gate([weights[0], weights[1].double()], 1.0)
    with pytest.raises(TypeError, match="`scale` must be a float"):
        ops.foreach_sigmoid_gate(weights, "1")
    with pytest.raises(ValueError, match="`grads` must have one entry per embedding"):
        ops.foreach_compensate_embedding_grad_(weights, grads[:1], 1.0, 400.0, 50.0)
    with pytest.raises(ValueError, match=r"`grads\[1\]` must have the shape"):
        ops.foreach_compensate_embedding_grad_(weights, [grads[0], torch.ones(1, 5)], 1.0, 400.0, 50.0)
    with pytest.raises(ValueError, match="`scale` must be non-zero"):
        ops.foreach_compensate_embedding_grad_(weights, grads, 0.0, 400.0, 50.0)


@pytest.mark.parametrize("name", ["HATMaskMLP", "HATMaskResNet18"])
def test_backbone_compensation_is_hats_formula_for_every_embedding(name):
    from clarena import backbones

    kwargs = dict(input_dim=6, hidden_dims=[5, 4], output_dim=3) if name == "HATMaskMLP" else dict(input_channels=3, output_dim=8)
    backbone = getattr(backbones, name)(gate="sigmoid", **kwargs)
    backbone.initialize_task_embedding("N01")
    weights = [embedding.weight for embedding in backbone.task_embedding_t.values()]
    for weight in weights:
        weight.grad = torch.randn_like(weight)
    expected = [weight.grad.clone() for weight in weights]
    s_max, clamp, batch_idx, num_batches = 400.0, 50.0, 3, 10
    scale = 1 / s_max + (s_max - 1 / s_max) * (batch_idx - 1) / (num_batches - 1)  # HAT's anneal
    with ops.use_reference():
        ops.foreach_compensate_embedding_grad_(weights, expected, scale, s_max, clamp)
    backbone.compensate_task_embedding_gradients(s_max, clamp, batch_idx, num_batches)
    assert len(weights) == len(backbone.weighted_layer_names)
    for weight, theirs in zip(weights, expected):
        torch.testing.assert_close(weight.grad, theirs)
