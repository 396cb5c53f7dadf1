"""HAT-family parameter-wise measures: from unit measures to weight-shaped ones.

A weight w[i, j, ...] joins output unit i of a layer (measure `a[i]`) to input unit j, which is a
unit of the preceding layer (measure `b[j]`); its measure is `aggregate(a[i], b[j])`. A first
layer (`b=None`) and biases use `a[i]` alone.
"""

from collections.abc import Sequence

import torch

from clarena_backbones.ops import checks, native, reference
from clarena_backbones.ops.modes import ADJUSTMENT_RATES, AGGREGATION_MODES


def parameter_measure(
    a: torch.Tensor, b: torch.Tensor | None, weight_shape: Sequence[int], mode: str = "min"
) -> torch.Tensor:
    """Build the weight-shaped measure `m[i, j, ...] = mode(a[i], b[j])` (mode: min, max, mean).

    `weight_shape` is (out, in) for Linear or (out, in, kh, kw) for Conv2d weights; `a` has length
    out and `b` length in (`b=None`: `m[i, ...] = a[i]`).
    """
    checks.check_choice("mode", mode, AGGREGATION_MODES)
    shape = _check_args(a, a, b, weight_shape)
    if native.runs_native(a):
        return torch.ops.clarena.parameter_measure(a, b, shape, mode)
    return reference.parameter_measure(a, b, shape, mode)


def scale_grad_by_measure_(
    grad: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor | None,
    aggregation: str = "min",
    rate: str = "hat",
    alpha: float | None = None,
    r: float | None = None,
) -> None:
    """Scale `grad` in place by the adjustment rate of its parameter-wise measure.

    `grad[i, j, ...] *= rate(aggregation(a[i], b[j]))` (`b=None`, as for a bias: `rate(a[i])`),
    where rate is `hat`: 1 - m, `hat_const_alpha`: alpha * m + (1 - m), `adahat`: r / (m + r).
    The native kernel allocates nothing weight-sized.
    """
    checks.check_floating("grad", grad)
    checks.check_like("a", a, "grad", grad)
    checks.check_choice("aggregation", aggregation, AGGREGATION_MODES)
    checks.check_choice("rate", rate, ADJUSTMENT_RATES)
    _check_args(grad, a, b, grad.shape)
    alpha_value = _check_scalar("alpha", alpha, needed=rate == "hat_const_alpha")
    r_value = _check_scalar("r", r, needed=rate == "adahat")
    if rate == "adahat" and not r_value > 0:
        raise ValueError(f"clarena: `r` must be positive for the 'adahat' rate, got {r}")
    if native.runs_native(grad):
        torch.ops.clarena.scale_grad_by_measure_(grad, a, b, aggregation, rate, alpha_value, r_value)
    else:
        reference.scale_grad_by_measure_(grad, a, b, aggregation, rate, alpha_value, r_value)


def foreach_scale_grad_by_measure_(
    grads: Sequence[torch.Tensor],
    a: Sequence[torch.Tensor],
    b: Sequence[torch.Tensor | None],
    aggregation: str = "min",
    rate: str = "hat",
    alpha: float | None = None,
    r: float | Sequence[float] | None = None,
) -> None:
    """`scale_grad_by_measure_` over lists of layers (`r` one float or one per gradient).

    Natively this is one kernel over all layers' rows (on a GPU, one launch per 40 layers): the
    per-call cost, not the arithmetic, dominates small layers. All gradients share one dtype and
    device; an error names the failing entry (`grads[2]`, `b[2]`, ...).
    """
    checks.check_choice("aggregation", aggregation, AGGREGATION_MODES)
    checks.check_choice("rate", rate, ADJUSTMENT_RATES)
    count = len(grads)
    r_values = list(r) if isinstance(r, Sequence) else [r] * count
    if len(r_values) != count:
        raise ValueError(f"clarena: `r` must have one entry per gradient ({count}), got {len(r_values)}")
    alpha_value = _check_scalar("alpha", alpha, needed=rate == "hat_const_alpha")
    r_floats = [_check_scalar("r", value, needed=rate == "adahat") for value in r_values]
    if rate == "adahat" and not all(value > 0 for value in r_floats):
        raise ValueError(f"clarena: `r` must be positive for the 'adahat' rate, got {r}")
    if count and native.runs_native(grads[0]):
        native.call_list_op(
            lambda: torch.ops.clarena.foreach_scale_grad_by_measure_(
                list(grads), list(a), list(b), aggregation, rate, alpha_value, r_floats
            ),
            lambda: _check_foreach_args(grads, a, b),
        )
        return
    _check_foreach_args(grads, a, b)
    for grad, a_i, b_i, r_i in zip(grads, a, b, r_floats):
        reference.scale_grad_by_measure_(grad, a_i, b_i, aggregation, rate, alpha_value, r_i)


def _check_foreach_args(grads: Sequence[torch.Tensor], a: Sequence[torch.Tensor], b: Sequence[torch.Tensor | None]) -> None:
    """The list op's checks, with the native kernel's messages: every gradient of `grads[0]`'s dtype and
    device, each with its unit measures (`a[i]` of length out, `b[i]` of length in)."""
    if not len(a) == len(b) == len(grads):
        raise ValueError(
            f"clarena: `grads`, `a`, `b` and `r` must have one entry per gradient, got {len(grads)}, {len(a)}, {len(b)} and {len(grads)}"
        )
    for index, (grad, a_i, b_i) in enumerate(zip(grads, a, b)):
        grad_name, a_name, b_name = f"grads[{index}]", f"a[{index}]", f"b[{index}]"
        checks.check_floating(grad_name, grad)
        if index:
            checks.check_like(grad_name, grad, "grads[0]", grads[0])
        checks.check_like(a_name, a_i, grad_name, grad)
        if grad.dim() == 0:
            raise ValueError("clarena: the weight shape must have at least one dimension")
        _check_vector(a_name, a_i, grad.shape[0])
        if b_i is not None:
            if grad.dim() < 2:
                raise ValueError(
                    f"clarena: `{b_name}` is given, so the weight shape must have at least two dimensions (out, in, ...), got {list(grad.shape)}"
                )
            checks.check_like(b_name, b_i, a_name, a_i)
            _check_vector(b_name, b_i, grad.shape[1])


def _check_vector(name: str, tensor: torch.Tensor, length: int) -> None:
    if tensor.dim() != 1 or tensor.size(0) != length:
        raise ValueError(f"clarena: `{name}` must be a 1-D tensor of length {length}, got shape {list(tensor.shape)}")


def _check_scalar(name: str, value: float | None, needed: bool) -> float:
    if value is None:
        if needed:
            raise ValueError(f"clarena: `{name}` must be given for this rate")
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"clarena: `{name}` must be a float, got {type(value).__name__}")
    return float(value)


def _check_args(target: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None, weight_shape) -> list[int]:
    """Checks the unit measures against the weight shape; returns the shape as a list."""
    checks.check_floating("a", a)
    shape = [int(size) for size in weight_shape]
    if len(shape) == 0:
        raise ValueError("clarena: `weight_shape` must have at least one dimension")
    if a.device != target.device:
        raise ValueError(f"clarena: `a` must be on the device of the gradient ({target.device}), got {a.device}")
    checks.check_shape("a", a, shape[:1], "the weight's output units")
    if b is not None:
        if len(shape) < 2:
            raise ValueError(f"clarena: `b` is given, so the weight shape must be (out, in, ...), got {tuple(shape)}")
        checks.check_like("b", b, "a", a)
        checks.check_shape("b", b, shape[1:2], "the weight's input units")
    return shape


if native.native_available():

    @torch.library.register_fake("clarena::parameter_measure")
    def _parameter_measure_fake(a, b, weight_shape, mode):
        return a.new_empty(_check_args(a, a, b, weight_shape))

    @torch.library.register_fake("clarena::scale_grad_by_measure_")
    def _scale_grad_by_measure_fake(grad, a, b, aggregation, rate, alpha, r):
        _check_args(grad, a, b, grad.shape)

    @torch.library.register_fake("clarena::foreach_scale_grad_by_measure_")
    def _foreach_scale_grad_by_measure_fake(grads, a, b, aggregation, rate, alpha, r):
        _check_foreach_args(grads, a, b)
