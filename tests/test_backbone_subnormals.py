"""One HAT training forward and backward at s = s_max leaves no subnormal where it would slow the CPU.

At a large gate scale, sigmoid(s * e) is subnormal for some units, and each such unit makes a
whole channel of activations and of their gradients subnormal. With the masking ops flushing,
none is left in the masks, the activations or the features; only torch's own matmuls may still
produce one by cancellation, rarely, in a gradient.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clarena import backbones

S_MAX = 400.0
BACKBONES = {
    "HATMaskMLP": (dict(input_dim=784, hidden_dims=[256, 100], output_dim=64), (128, 784)),
    "HATMaskResNet18": (dict(input_channels=3, output_dim=512), (8, 3, 32, 32)),
}


def subnormals(tensor: torch.Tensor) -> int:
    tensor = tensor.detach()
    return int(((tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)).sum())


def train_forward_backward(name: str):
    """One training forward (hooks on every module) and backward at s = s_max, N(0, 1) embeddings."""
    kwargs, input_shape = BACKBONES[name]
    backbone = getattr(backbones, name)(gate="sigmoid", **kwargs)
    backbone.setup_task_id(1)
    backbone.initialize_task_embedding("N01")
    head = nn.Linear(kwargs["output_dim"], 10)
    outputs = []
    hooks = [
        module.register_forward_hook(lambda module, args, output: outputs.append(output))
        for module in backbone.modules()
    ]
    x, y = torch.randn(input_shape), torch.randint(0, 10, (input_shape[0],))
    # the last batch of the epoch: s = s_max
    feature, mask, activations = backbone(x, "train", s_max=S_MAX, batch_idx=10, num_batches=10)
    F.cross_entropy(head(feature), y).backward()
    for hook in hooks:
        hook.remove()
    outputs = [output for output in outputs if isinstance(output, torch.Tensor)]
    return backbone, head, feature, mask, activations, outputs


@pytest.mark.parametrize("name", list(BACKBONES))
def test_no_subnormals_in_masks_activations_features_and_embedding_gradients(name, single_thread):
    backbone, _, feature, mask, activations, outputs = train_forward_backward(name)
    plain_gates = [torch.sigmoid(S_MAX * e.weight.detach()) for e in backbone.task_embedding_t.values()]
    assert sum(subnormals(gate) for gate in plain_gates) > 0  # the plain gate does produce some here
    assert sum(subnormals(m) for m in mask.values()) == 0
    assert sum(subnormals(a) for a in activations.values()) == 0
    assert sum(subnormals(o) for o in outputs) == 0
    assert subnormals(feature) == 0
    assert sum(subnormals(e.weight.grad) for e in backbone.task_embedding_t.values()) == 0


@pytest.mark.xfail(
    strict=True,
    reason="a mask between tiny and about 1e-30 is kept (only subnormal results are flushed), so its "
    "unit's activations are as small, and their products with the gradients in the weight-gradient "
    "matmuls of the next layer are subnormal: about 1e-3 of the MLP's gradient entries",
)
@pytest.mark.parametrize("name", list(BACKBONES))
def test_at_most_one_in_a_million_gradient_entries_is_subnormal(name, single_thread):
    backbone, head, *_ = train_forward_backward(name)
    grads = [p.grad for p in [*backbone.parameters(), *head.parameters()] if p.grad is not None]
    assert sum(subnormals(g) for g in grads) <= 1e-6 * sum(g.numel() for g in grads)
