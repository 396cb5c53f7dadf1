"""torch.compile(fullgraph=True) of masked backbones: no graph break, results equal to eager."""

import copy

import pytest
import torch
import torch._dynamo

from clarena.backbones import HATMaskMLP, HATMaskResNet18, WSNMaskMLP, WSNMaskResNet18

KEEP = 0.5


def hat_mlp():
    return HATMaskMLP(12, [16, 10], 8, gate="sigmoid"), torch.randn(6, 12)


def hat_resnet():
    return HATMaskResNet18(3, 512, gate="sigmoid"), torch.randn(2, 3, 32, 32)


def wsn_mlp():
    return WSNMaskMLP(12, [16, 10], 8), torch.randn(6, 12)


def wsn_resnet():
    return WSNMaskResNet18(3, 512), torch.randn(2, 3, 32, 32)


def hat_stage(model, x, stage):
    if stage == "train":
        return model(x, "train", s_max=400.0, batch_idx=3, num_batches=10)[0]
    return model(x, "test", test_task_id=1)[0]


def wsn_stage(model, x, stage):
    if stage == "train":
        return model(x, "train", mask_percentage=KEEP)[0]
    return model(x, "test", mask_percentage=KEEP, test_mask=1)[0]


def prepare(make, stage_fn):
    """A backbone with a stored mask for task 1, and an identical copy."""
    model, x = make()
    model.setup_task_id(1)
    if stage_fn is hat_stage:
        model.store_mask()
    else:
        model.store_mask(1, KEEP)
    return model, copy.deepcopy(model), x


CASES = [
    pytest.param(hat_mlp, hat_stage, id="HATMaskMLP"),
    pytest.param(wsn_mlp, wsn_stage, id="WSNMaskMLP"),
    pytest.param(hat_resnet, hat_stage, id="HATMaskResNet18", marks=pytest.mark.slow),
    pytest.param(wsn_resnet, wsn_stage, id="WSNMaskResNet18", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("make, stage_fn", CASES)
@pytest.mark.parametrize("stage", ["train", "test"])
def test_forward_and_backward_compile_without_graph_breaks(make, stage_fn, stage):
    torch._dynamo.reset()
    eager_model, compiled_model, x = prepare(make, stage_fn)

    def forward(model, x):
        return stage_fn(model, x, stage)

    # the forward is traced whole; AOTAutograd compiles its backward
    compiled_forward = torch.compile(forward, fullgraph=True, backend="aot_eager")
    expected = forward(eager_model, x)
    actual = compiled_forward(compiled_model, x)
    expected.square().mean().backward()
    actual.square().mean().backward()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    eager_grads = {name: p.grad for name, p in eager_model.named_parameters() if p.grad is not None}
    compiled_grads = {name: p.grad for name, p in compiled_model.named_parameters() if p.grad is not None}
    assert eager_grads.keys() == compiled_grads.keys() and eager_grads
    for name, grad in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_test_stage_compiles_under_no_grad():
    torch._dynamo.reset()
    model, copy_model, x = prepare(wsn_mlp, wsn_stage)
    compiled = torch.compile(lambda m, x: wsn_stage(m, x, "test"), fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(copy_model, x), wsn_stage(model, x, "test"))
