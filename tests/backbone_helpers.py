"""Shared helpers of the backbone tests: literal re-statements of CLArena's formulas (the oracle).

Each `clarena_*` function recomputes what CLArena's code computes, with plain tensor ops on the
parameters of a backbone under test (CLArena's `clarena/backbones/*.py`, commit bf58528).
"""

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import clarena


MLP_ARGS = dict(input_dim=20, hidden_dims=[32, 16], output_dim=8)
S_MAX = 400.0
# CLArena's ResNets (feature size 512, or 2048 from depth 50): parameters and weighted layers.
PARAMS = {18: 11_174_720, 34: 21_282_880, 50: 23_500_352, 101: 42_492_480, 152: 58_136_128}
WEIGHTED_LAYERS = {18: 17, 34: 33, 50: 49, 101: 100, 152: 151}


def images(n: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def vectors(n: int = 6, dim: int = 20, seed: int = 0) -> Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def expected_mlp_keys(batch_normalization: bool, bias: bool = True) -> dict[str, tuple]:
    """CLArena's MLP(20, [32, 16], 8) state_dict keys and shapes."""
    dims = [20, 32, 16, 8]
    keys = {}
    for i in range(3):
        keys[f"fc.{i}.weight"] = (dims[i + 1], dims[i])
        if bias:
            keys[f"fc.{i}.bias"] = (dims[i + 1],)
    if batch_normalization:
        for i in range(3):
            for stat in ("weight", "bias", "running_mean", "running_var"):
                keys[f"fc_bn.{i}.{stat}"] = (dims[i + 1],)
            keys[f"fc_bn.{i}.num_batches_tracked"] = ()
    return keys


def shapes(state_dict) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_embeddings(backbone: nn.Module, seed: int = 1) -> None:
    """Embeddings with both signs and a spread, so masks are neither all on nor all off."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for embedding in backbone.task_embedding_t.values():
            embedding.weight.copy_(torch.randn(embedding.weight.shape, generator=generator) * 0.02)


def randomize_batch_norm(backbone: nn.Module, seed: int = 2) -> None:
    """Non-trivial BN affine parameters and running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(1 + torch.rand(module.running_var.shape, generator=generator))


def clone_with_grads(module: nn.Module) -> nn.Module:
    """A deep copy that also copies the parameters' gradients (deepcopy drops them)."""
    clone = copy.deepcopy(module)
    for (_, original), (_, copied) in zip(module.named_parameters(), clone.named_parameters()):
        copied.grad = None if original.grad is None else original.grad.clone()
    return clone


def grads(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def assert_close_dicts(actual: dict, expected: dict, **tolerance) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **tolerance, msg=lambda m, key=key: f"{key}: {m}")


def assert_native_equals_reference(backbone: nn.Module, forward, **tolerance) -> None:
    """`forward(model)` (a backbone output tuple) natively and on a copy under `use_reference()`.

    Outputs (tensors or dicts of tensors) and the gradients of a squared-feature loss must agree.
    """
    reference = copy.deepcopy(backbone)
    output = forward(backbone)
    output[0].pow(2).sum().backward()
    with clarena.ops.use_reference():
        expected = forward(reference)
        expected[0].pow(2).sum().backward()
    for actual_item, expected_item in zip(output, expected):
        if isinstance(expected_item, dict):
            assert_close_dicts(actual_item, expected_item, **tolerance)
        else:
            torch.testing.assert_close(actual_item, expected_item, **tolerance)
    assert_close_dicts(grads(backbone), grads(reference), **tolerance)


# ------------------------------------------------------------------------------------------- HAT
def finish_hat_task(backbone, task_id: int, seed: int, inputs: Tensor) -> None:
    """What CLArena's HAT does around a task: setup, fresh embeddings, some training, store."""
    backbone.setup_task_id(task_id)
    backbone.initialize_independent_bn()
    randomize_embeddings(backbone, seed=seed)
    backbone.train()
    backbone(inputs, "train", S_MAX, 3, 10)  # moves the live BN statistics
    backbone.store_mask()
    backbone.store_bn()


def with_finished_tasks(backbone, inputs_for_seed, seeds=(11, 12)):
    """`backbone` after tasks 1, 2, ... (one per seed) are finished, in eval mode."""
    for task_id, seed in enumerate(seeds, 1):
        finish_hat_task(backbone, task_id, seed, inputs_for_seed(seed))
    return backbone.eval()


def prepared_hat(backbone, batch_normalization_seed: int = 2):
    """A HAT backbone with spread embeddings and non-trivial BatchNorm."""
    randomize_embeddings(backbone)
    randomize_batch_norm(backbone, seed=batch_normalization_seed)
    return backbone


def clarena_anneal(s_max: float, batch_idx: int, num_batches: int) -> float:
    """CLArena's Eq. 3 (with its 0-based batch index)."""
    return 1 / s_max + (s_max - 1 / s_max) * (batch_idx - 1) / (num_batches - 1)


def clarena_hat_mask(backbone, stage: str, s_max=S_MAX, batch_idx=None, num_batches=None) -> dict[str, Tensor]:
    scale = clarena_anneal(s_max, batch_idx, num_batches) if stage == "train" else s_max
    return {
        name: torch.sigmoid(backbone.task_embedding_t[name].weight * scale).squeeze()
        for name in backbone.weighted_layer_names
    }


def clarena_hat_mlp(
    backbone, x: Tensor, mask: dict[str, Tensor], bn: Iterable[nn.Module] | None
) -> tuple[Tensor, dict]:
    """CLArena's HATMaskMLP forward given the mask: Linear -> BN -> x * mask -> ReLU -> record -> dropout."""
    x = x.view(x.size(0), -1)
    activations = {}
    for index, name in enumerate(backbone.weighted_layer_names):
        fc = backbone.fc[index]
        x = F.linear(x, fc.weight, fc.bias)
        if bn is not None:
            x = bn[index](x)
        x = torch.relu(x * mask[name])
        activations[name] = x
    return x, activations


def clarena_hat_resnet(backbone, x: Tensor, mask: dict[str, Tensor], stem_bn, block_bns) -> tuple[Tensor, dict]:
    """CLArena's HAT ResNet forward given the mask (ReLU activations), plus the shortcut conv's mask.

    Stem conv -> BN -> *mask -> ReLU -> maxpool; each block: conv -> BN -> *mask -> ReLU, the last
    conv: conv -> BN -> + shortcut -> *mask -> ReLU; average pool; flatten. A shortcut conv's
    output is multiplied by its own mask (CLArena left it unmasked).
    """
    activations = {}

    def unit(name, z):
        z = torch.relu(z * mask[name].view(1, -1, 1, 1))
        activations[name] = z
        return z

    z = backbone.conv1(x)
    if stem_bn is not None:
        z = stem_bn(z)
    z = backbone.maxpool(unit("conv1", z))
    for block in backbone._iter_blocks():
        bns = block_bns(block)
        identity = z if block.identity_downsample is None else block.identity_downsample(z)
        if block.shortcut_layer_name in block.weighted_layer_names:  # HAT blocks
            identity = identity * mask[block.shortcut_layer_name].view(1, -1, 1, 1)
            activations[block.shortcut_layer_name] = identity
        convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
        for index, (conv, name) in enumerate(zip(convs, block.conv_layer_names)):
            z = conv(z)
            if bns is not None:
                z = bns[index](z)
            if index == len(convs) - 1:
                z = z + identity
            z = unit(name, z)
    return F.adaptive_avg_pool2d(z, 1).view(x.size(0), -1), activations


def clarena_layer_measure(backbone, measure: dict[str, Tensor], layer_name: str, aggregation: str):
    """CLArena's get_layer_measure_parameter_wise: torch.min/max of expanded views, and for 'mean'
    the average CLArena meant (its `torch.mean(a, b)` raised)."""
    layer = backbone.get_layer_by_name(layer_name)
    size = layer.weight.size()
    trailing = tuple(1 for _ in range(len(size) - 2))
    mine = measure[layer_name].view(-1, 1, *trailing).expand(size)
    preceding = backbone.preceding_layer_name(layer_name)
    if preceding is None:
        return mine, measure[layer_name]
    theirs = measure[preceding].view(1, -1, *trailing).expand(size)
    if aggregation == "mean":
        return (mine + theirs) / 2, measure[layer_name]
    return (torch.min if aggregation == "min" else torch.max)(mine, theirs), measure[layer_name]


def clarena_clip_grad(backbone, measure, aggregation: str, mode: str, alpha=None, r=None) -> None:
    """CLArena's HAT / AdaHAT clip_grad_by_adjustment loop (rates 'hat', 'hat_const_alpha', 'adahat').

    The parameter-wise measures come from `clarena_layer_measure`, then `grad *= rate`.
    """
    for name in backbone.weighted_layer_names:
        layer = backbone.get_layer_by_name(name)
        weight_measure, bias_measure = clarena_layer_measure(backbone, measure, name, aggregation)
        layer_r = r[name] if isinstance(r, dict) else r
        if mode == "hat":
            rate_w, rate_b = 1 - weight_measure, 1 - bias_measure
        elif mode == "hat_const_alpha":
            rate_w = alpha * weight_measure + (1 - weight_measure)
            rate_b = alpha * bias_measure + (1 - bias_measure)
        else:
            rate_w, rate_b = layer_r / (weight_measure + layer_r), layer_r / (bias_measure + layer_r)
        layer.weight.grad.data *= rate_w
        if layer.bias is not None:
            layer.bias.grad.data *= rate_b


# ------------------------------------------------------------------------------------------- WSN
class _GateWithSTE(torch.autograd.Function):
    """CLArena's percentile gate (quantile threshold, ties kept) with the intended identity STE."""

    @staticmethod
    def forward(ctx, score, percentage):
        threshold = torch.quantile(score, 1 - percentage)
        return torch.where(score < threshold, torch.zeros_like(score), torch.ones_like(score))

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def clarena_wsn_gate(score: Tensor, percentage: float) -> Tensor:
    return _GateWithSTE.apply(score, percentage)


def clarena_wsn_masks(backbone, percentage: float):
    """Per layer: gate of the weight score (reshaped to the weight) and of the bias score."""
    weight_mask, bias_mask = {}, {}
    for name in backbone.weighted_layer_names:
        layer = backbone.get_layer_by_name(name)
        weight_mask[name] = clarena_wsn_gate(backbone.weight_score_t[name].weight, percentage).view(layer.weight.shape)
        bias_mask[name] = clarena_wsn_gate(backbone.bias_score_t[name].weight.squeeze(0), percentage)
    return weight_mask, bias_mask


def clarena_wsn_mlp(backbone, x: Tensor, weight_mask, bias_mask) -> tuple[Tensor, dict]:
    """CLArena's WSNMaskMLP forward: F.linear(x, W * Mw, b * Mb) -> ReLU per layer."""
    x = x.view(x.size(0), -1)
    activations = {}
    for index, name in enumerate(backbone.weighted_layer_names):
        fc = backbone.fc[index]
        bias = None if fc.bias is None else fc.bias * bias_mask[name]
        x = torch.relu(F.linear(x, fc.weight * weight_mask[name], bias))
        activations[name] = x
    return x, activations
