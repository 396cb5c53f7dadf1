"""HAT's per-step work on task embeddings, for every layer in one call.

A HAT backbone gates each layer's units with `sigmoid(s * e)` of that layer's task embedding `e`,
and HAT compensates the embeddings' gradients for the annealed scale `s` (Serra et al., 2018,
Sec. 2.5). Done layer by layer this is a handful of tiny ops per layer; here the gate concatenates
the embeddings once, runs its arithmetic once over all units and splits the result back (views),
and the compensation is one native op over all layers, so the op count no longer grows with the
number of layers (on a GPU, each op is a kernel launch).
"""

from collections.abc import Sequence

import torch

from clarena_backbones.ops import checks, native, reference


def foreach_sigmoid_gate(embeddings: Sequence[torch.Tensor], scale: float) -> list[torch.Tensor]:
    """Return `[sigmoid(scale * e).reshape(-1) for e in embeddings]`, computed in one pass.

    Differentiable in the embeddings (HAT trains them through the gate). Gates and gradients
    below the dtype's smallest normal are 0 (`reference.flush_subnormal`). The results are views
    of one buffer.
    """
    _check_embeddings(embeddings)
    scale = _check_real("scale", scale)
    if native.reference_forced() or not embeddings:
        return reference.foreach_sigmoid_gate(embeddings, scale)
    flat = torch.cat([embedding.reshape(-1) for embedding in embeddings])
    return list(reference.sigmoid_gate(flat, scale).split([embedding.numel() for embedding in embeddings]))


def foreach_compensate_embedding_grad_(
    embeddings: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    scale: float,
    s_max: float,
    clamp_threshold: float,
) -> None:
    """HAT's embedding-gradient compensation, in place, for every layer at once.

    `grad *= s_max / scale * (cosh(clamp(scale * e, -clamp_threshold, clamp_threshold)) + 1) /
    (cosh(e) + 1)` for each embedding `e` and its gradient, with CLArena's order of operations
    (CLArena's clarena/cl_algorithms/hat.py, `compensate_task_embedding_gradients`); results below
    the dtype's smallest normal become 0. Natively one kernel call for all layers.
    """
    scale = _check_real("scale", scale)
    s_max = _check_real("s_max", s_max)
    clamp_threshold = _check_real("clamp_threshold", clamp_threshold)
    if embeddings and native.runs_native(embeddings[0]):
        native.call_list_op(
            lambda: torch.ops.clarena.foreach_compensate_embedding_grad_(
                list(embeddings), list(grads), scale, s_max, clamp_threshold
            ),
            lambda: _check_compensation_args(embeddings, grads, scale),
        )
        return
    _check_compensation_args(embeddings, grads, scale)
    reference.foreach_compensate_embedding_grad_(embeddings, grads, scale, s_max, clamp_threshold)


def _check_compensation_args(embeddings: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], scale: float) -> None:
    _check_embeddings(embeddings)
    if len(grads) != len(embeddings):
        raise ValueError(f"clarena: `grads` must have one entry per embedding ({len(embeddings)}), got {len(grads)}")
    for index, (embedding, grad) in enumerate(zip(embeddings, grads)):
        checks.check_like(f"grads[{index}]", grad, f"embeddings[{index}]", embedding)
        checks.check_shape(f"grads[{index}]", grad, embedding.shape, "its embedding")
    if scale == 0:
        raise ValueError("clarena: `scale` must be non-zero (the compensation divides by it)")


def _check_embeddings(embeddings: Sequence[torch.Tensor]) -> None:
    if isinstance(embeddings, torch.Tensor) or not isinstance(embeddings, Sequence):
        raise TypeError(f"clarena: `embeddings` must be a sequence of tensors, got {type(embeddings).__name__}")
    for index, embedding in enumerate(embeddings):
        checks.check_floating(f"embeddings[{index}]", embedding)
        if index:
            checks.check_like(f"embeddings[{index}]", embedding, "embeddings[0]", embeddings[0])


def _check_real(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"clarena: `{name}` must be a float, got {type(value).__name__}")
    return float(value)


if native.native_available():

    @torch.library.register_fake("clarena::foreach_compensate_embedding_grad_")
    def _foreach_compensate_embedding_grad_fake(embeddings, grads, scale, s_max, clamp_threshold):
        _check_compensation_args(embeddings, grads, scale)
