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


@pytest.mark.parametrize("name", list(BACKBONES))
def test_no_subnormals_after_a_forward_and_backward_at_s_max(name, single_thread):
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

    gates = torch.cat([torch.sigmoid(S_MAX * e.weight.detach()).view(-1) for e in backbone.task_embedding_t.values()])
    assert subnormals(gates) > 0  # the plain gate at this scale does produce subnormals
    assert sum(subnormals(m) for m in mask.values()) == 0
    assert sum(subnormals(a) for a in activations.values()) == 0
    assert sum(subnormals(o) for o in outputs if isinstance(o, torch.Tensor)) == 0
    assert subnormals(feature) == 0
    grads = [p.grad for p in [*backbone.parameters(), *head.parameters()] if p.grad is not None]
    assert sum(subnormals(g) for g in grads) <= 1e-6 * sum(g.numel() for g in grads)
