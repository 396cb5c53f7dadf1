"""WSN's gate: the top `keep` fraction of a score tensor as a 0/1 mask, for one tensor or a list."""

from collections.abc import Sequence

import torch

from clarena_backbones.ops import checks, native, reference


def percentile_mask(score: torch.Tensor, keep: float) -> torch.Tensor:
    """Return `(score >= torch.quantile(score.flatten(), 1 - keep))` as a mask of `score`'s dtype.

    `keep` in (0, 1] is the fraction of parameters kept (CLArena's `mask_percentage`); ties at
    the threshold are kept, so with distinct scores `1 + floor(keep * (n - 1))` elements are.
    The native kernel selects the threshold (no sort) and has no size limit. The backward is
    straight-through: the score receives the mask's gradient unchanged.

    Defined edge cases: an empty score gives an empty mask; a NaN anywhere makes the threshold
    NaN, so nothing is kept (torch.quantile's NaN threshold); infinities are ordinary values.
    Only float32 and float64 scores are accepted, as for torch.quantile.
    """
    _check_args(score, keep)
    if native.runs_native(score):
        return torch.ops.clarena.percentile_mask(score, float(keep))
    return reference.percentile_mask(score, float(keep))


def percentile_masks(scores: Sequence[torch.Tensor], keep: float, state: torch.Tensor) -> list[torch.Tensor]:
    """Return `[percentile_mask(score, keep) for score in scores]`, computed in one call.

    `state` (from `percentile_masks_state(len(scores), device)`) carries each tensor's last
    threshold to the next call, which counts the scores around it while writing the mask and
    rewrites only those between the old and the new threshold: about one read of the scores
    when they moved little since, as between training steps. When they moved too far, the call
    selects from scratch; the masks are exact either way. `state` is updated in place (its
    `WARM_CALLS` and `FALLBACKS` columns count how often the guess held); the reference path
    leaves it as it is. The backward is straight-through.

    On the native path with a float `keep` the kernel checks the arguments, once; only when it
    refuses them do the Python checks run, to raise the error that names the argument.
    """
    if not runs_native_list(scores, keep):
        _check_batch_args(scores, keep, state)
        if not scores or not native.runs_native(scores[0]):
            return [reference.percentile_mask(score, float(keep)) for score in scores]
        keep = float(keep)
    masks, next_state = native.call_list_op(
        lambda: torch.ops.clarena.percentile_masks(scores, keep, state), lambda: _check_batch_args(scores, keep, state)
    )
    state.copy_(next_state)
    return list(masks)


def runs_native_list(scores: Sequence[torch.Tensor], keep: object) -> bool:
    """Whether a list op over `scores` goes straight to its native kernel: a non-empty list or tuple
    of tensors that run natively, and a float `keep` (bool and int are checked in Python first)."""
    return (
        type(keep) is float
        and isinstance(scores, (list, tuple))
        and len(scores) > 0
        and isinstance(scores[0], torch.Tensor)
        and native.runs_native(scores[0])
    )


# Columns of the state of `percentile_masks` (csrc/ops/percentile_mask.h has the same layout).
BAND_LOW, THRESHOLD, BAND_HIGH, WARM_CALLS, FALLBACKS = range(5)


def percentile_masks_state(count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A state for `percentile_masks` over `count` score tensors, with no guess yet."""
    state = torch.full((count, 5), float("nan"), dtype=torch.float64, device=device)
    state[:, WARM_CALLS:] = 0
    return state


def forget_thresholds_(state: torch.Tensor) -> None:
    """Drop the guesses of `state` (the counters stay): the next call selects from scratch."""
    state[:, : BAND_HIGH + 1] = float("nan")


def _check_args(score: torch.Tensor, keep: float) -> None:
    checks.check_float_or_double("score", score)
    checks.check_fraction("keep", keep)


def _check_batch_args(scores: Sequence[torch.Tensor], keep: float, state: torch.Tensor) -> None:
    if isinstance(scores, torch.Tensor) or not isinstance(scores, Sequence):
        raise TypeError(f"clarena: `scores` must be a sequence of tensors, got {type(scores).__name__}")
    checks.check_fraction("keep", keep)
    checks.check_tensor("state", state)
    if state.dtype != torch.float64:
        raise TypeError(f"clarena: `state` must be float64, got {state.dtype}")
    checks.check_shape("state", state, (len(scores), 5), "one row per score tensor:")
    if not state.is_contiguous():
        raise ValueError("clarena: `state` must be contiguous")
    for index, score in enumerate(scores):
        checks.check_float_or_double(f"scores[{index}]", score)
        if score.dtype != scores[0].dtype:
            raise TypeError(
                f"clarena: `scores[{index}]` must have the dtype of `scores[0]` ({scores[0].dtype}), got {score.dtype}"
            )
        if score.device != state.device:
            raise ValueError(f"clarena: `scores[{index}]` must be on the device of `state` ({state.device}), got {score.device}")


if native.native_available():

    @torch.library.register_fake("clarena::percentile_mask")
    def _percentile_mask_fake(score, keep):
        _check_args(score, keep)
        return torch.empty_like(score, memory_format=torch.contiguous_format)

    def _below_autograd(keyset, score, keep):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.clarena.percentile_mask.default.redispatch(keyset & torch._C._after_autograd_keyset, score, keep)

    class _StraightThrough(torch.autograd.Function):
        """The gate; its backward passes the mask's gradient to the score unchanged."""

        @staticmethod
        def forward(ctx, keyset, score, keep):
            return _below_autograd(keyset, score, keep)

        @staticmethod
        def backward(ctx, grad_mask):
            return None, grad_mask, None

    def _percentile_mask_autograd(keyset, score, keep):
        # The op's autograd step is its one Python step on every call, so direct calls of
        # torch.ops.clarena.percentile_mask are checked here: a stable-ABI kernel cannot raise TypeError.
        _check_args(score, keep)
        if torch.is_grad_enabled() and score.requires_grad:
            return _StraightThrough.apply(keyset, score, keep)
        return _below_autograd(keyset, score, keep)

    _LIBRARY = torch.library.Library("clarena", "IMPL")
    _LIBRARY.impl("percentile_mask", _percentile_mask_autograd, "Autograd", with_keyset=True)

    @torch.library.register_fake("clarena::percentile_masks")
    def _percentile_masks_fake(scores, keep, state):
        _check_batch_args(scores, keep, state)
        return [torch.empty_like(score, memory_format=torch.contiguous_format) for score in scores], torch.empty_like(state)

    class _StraightThroughAll(torch.autograd.Function):
        """The gate over a list; each mask's gradient goes to its score unchanged."""

        @staticmethod
        def forward(ctx, keyset, keep, state, *scores):
            masks, next_state = _masks_below_autograd(keyset, scores, keep, state)
            ctx.mark_non_differentiable(next_state)
            return (*masks, next_state)

        @staticmethod
        def backward(ctx, *grads):
            return (None, None, None, *grads[:-1])

    def _masks_below_autograd(keyset, scores, keep, state):
        with torch._C._AutoDispatchBelowAutograd():
            return torch.ops.clarena.percentile_masks.default.redispatch(
                keyset & torch._C._after_autograd_keyset, list(scores), keep, state
            )

    def _percentile_masks_autograd(keyset, scores, keep, state):
        # Direct torch.ops calls are checked too: by the kernel, then, if it refuses, here.
        def gate():
            if torch.is_grad_enabled() and any(score.requires_grad for score in scores):
                *masks, next_state = _StraightThroughAll.apply(keyset, keep, state, *scores)
                return masks, next_state
            return _masks_below_autograd(keyset, scores, keep, state)

        return native.call_list_op(gate, lambda: _check_batch_args(scores, keep, state))

    _LIBRARY.impl("percentile_masks", _percentile_masks_autograd, "Autograd", with_keyset=True)
