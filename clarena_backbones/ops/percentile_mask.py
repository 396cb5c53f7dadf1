"""WSN's gate: the top `keep` fraction of a score tensor as a 0/1 mask."""

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


def _check_args(score: torch.Tensor, keep: float) -> None:
    checks.check_float_or_double("score", score)
    checks.check_fraction("keep", keep)


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
