"""HAT-family parameter-wise measures, and the gradient adjustment rates of those measures.

A weight w[i, j, ...] joins output unit i of a layer (measure `a[i]`) to input unit j, which is a
unit of the preceding layer (measure `b[j]`); its measure is `aggregation(a[i], b[j])`. A first
layer (`b=None`) and biases use `a[i]` alone. A rate turns a measure `m` into the factor its
gradient is scaled by (Serra et al. 2018, "Overcoming catastrophic forgetting with hard attention
to the task"; AdaHAT, Wang et al. 2024):

* 'hat': `1 - m`;
* 'hat_const_alpha': `alpha * m + (1 - m)`;
* 'adahat': `r / (m + r)`.

The formulas live in the native kernels (csrc/ops/parameter_measure.h) and in the reference that
checks them; everything here that needs a rate calls a kernel.
"""

import math
from collections.abc import Sequence

import torch

from clarena_backbones.ops import checks, native, reference
from clarena_backbones.ops.deprecation import renamed_keywords

AGGREGATIONS = ("min", "max", "mean")
RATES = ("hat", "hat_const_alpha", "adahat")


@renamed_keywords(mode="aggregation")
def parameter_measure(
    a: torch.Tensor, b: torch.Tensor | None, weight_shape: Sequence[int], aggregation: str = "min"
) -> torch.Tensor:
    """Build the weight-shaped measure `m[i, j, ...] = aggregation(a[i], b[j])` (min, max, mean).

    `weight_shape` is (out, in) for Linear or (out, in, kh, kw) for Conv2d weights; `a` has length
    out and `b` length in (`b=None`: `m[i, ...] = a[i]`).
    """
    checks.check_choice("aggregation", aggregation, AGGREGATIONS)
    shape = _check_args(a, a, b, weight_shape)
    if native.runs_native(a):
        return torch.ops.clarena.parameter_measure(a, b, shape, aggregation)
    return reference.parameter_measure(a, b, shape, aggregation)


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
    checks.check_choice("aggregation", aggregation, AGGREGATIONS)
    checks.check_choice("rate", rate, RATES)
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
    count = len(grads)
    alpha_value, r_floats = _check_rate_args(aggregation, rate, alpha, r, count, "gradient")
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


def adjustment_rate(
    a: torch.Tensor,
    b: torch.Tensor | None,
    weight_shape: Sequence[int],
    aggregation: str = "min",
    rate: str = "hat",
    alpha: float | None = None,
    r: float | None = None,
) -> torch.Tensor:
    """The weight-shaped tensor `rate(aggregation(a[i], b[j]))`: what `scale_grad_by_measure_`
    multiplies a gradient of that shape by (built by that kernel, on ones)."""
    rates = a.new_ones([int(size) for size in weight_shape])
    scale_grad_by_measure_(rates, a, b, aggregation, rate, alpha, r)
    return rates


def foreach_rate_sums(
    a: Sequence[torch.Tensor],
    b: Sequence[torch.Tensor | None],
    weight_shapes: Sequence[Sequence[int]],
    aggregation: str = "min",
    rate: str = "hat",
    alpha: float | None = None,
    r: float | Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per layer, the sum of `adjustment_rate` over its weight, and the sum of the rates of `a`.

    Layer `l` has a weight of shape `weight_shapes[l]` and unit measures `a[l]`, `b[l]` as in
    `foreach_scale_grad_by_measure_` (`r` one float or one per layer). Returns two tensors of one
    entry per layer, in the dtype of `a`. Nothing weight-sized is built: under min or max each
    measure is a[i] or b[j], and with `b` sorted the b[j] below a[i] (min) or above it (max) are a
    prefix or a suffix, so a row's sum is a prefix sum of rate(b) plus a count times rate(a[i]). A
    mean is neither: its (out, in) table of rates is built, without the kernel dimensions.
    """
    count = len(a)
    if count == 0 or len(b) != count or len(weight_shapes) != count:
        raise ValueError(
            f"clarena: `a`, `b` and `weight_shapes` must have one entry per layer (at least one), got {count}, "
            f"{len(b)} and {len(weight_shapes)}"
        )
    alpha_value, r_floats = _check_rate_args(aggregation, rate, alpha, r, count, "layer")
    shapes = []
    for index, (a_l, b_l, shape) in enumerate(zip(a, b, weight_shapes)):
        if index:
            checks.check_like(f"a[{index}]", a_l, "a[0]", a[0])
        shapes.append(_check_args(a_l, a_l, b_l, shape))
    if not native.runs_native(a[0]):
        return reference.foreach_rate_sums(a, b, shapes, aggregation, rate, alpha_value, r_floats)
    if aggregation == "mean":
        tables = [a_l.new_ones(shape[: 1 if b_l is None else 2]) for a_l, b_l, shape in zip(a, b, shapes)]
        unit_rates = [torch.ones_like(a_l) for a_l in a]
        torch.ops.clarena.foreach_scale_grad_by_measure_(  # the arguments are checked above
            tables + unit_rates, [*a, *a], [*b, *[None] * count], "mean", rate, alpha_value, r_floats * 2
        )
        weight_sums = [table.sum() * math.prod(shape[table.dim() :]) for table, shape in zip(tables, shapes)]
        return torch.stack(weight_sums), torch.stack([unit.sum() for unit in unit_rates])
    is_min = aggregation == "min"
    device = a[0].device
    padded_a = torch.nn.utils.rnn.pad_sequence(list(a), batch_first=True)
    # +inf pads sort last and are never below a[i] (min); -inf pads sort first and are never above it (max)
    padded_b = torch.nn.utils.rnn.pad_sequence(
        [a[0].new_empty(0) if b_l is None else b_l for b_l in b], batch_first=True, padding_value=math.inf if is_min else -math.inf
    )
    sorted_b = padded_b.sort(dim=1).values
    # the rates of every row, written by the gradient-scaling kernel into rows of ones (arguments checked above)
    rate_a, rate_b = torch.ones_like(padded_a), torch.ones_like(sorted_b)
    torch.ops.clarena.foreach_scale_grad_by_measure_(
        [*rate_a.unbind(0), *rate_b.unbind(0)], [*padded_a.unbind(0), *sorted_b.unbind(0)], [None] * (2 * count),
        "min", rate, alpha_value, r_floats * 2,
    )  # fmt: skip
    sizes = [(shape[0], 0 if b_l is None else shape[1], math.prod(shape[2:]), math.prod(shape[1:])) for b_l, shape in zip(b, shapes)]
    outs, ins, inner, per_row = torch.tensor(sizes, device=device).unbind(1)
    real_a = torch.arange(padded_a.size(1), device=device) < outs[:, None]
    rate_a = torch.where(real_a, rate_a, 0)
    pads = padded_b.size(1) - ins
    columns = torch.arange(padded_b.size(1), device=device)
    real_b = columns < ins[:, None] if is_min else columns >= pads[:, None]
    prefix = torch.nn.functional.pad(torch.where(real_b, rate_b, 0).cumsum(1), (1, 0))
    if is_min:
        below = torch.searchsorted(sorted_b, padded_a, side="left")
        rows = prefix.gather(1, below) + (ins[:, None] - below) * rate_a
    else:
        up_to = torch.searchsorted(sorted_b, padded_a, side="right")
        rows = (up_to - pads[:, None]) * rate_a + (prefix[:, -1:] - prefix.gather(1, up_to))
    unit_sums = rate_a.sum(1)
    with_b = torch.where(real_a, rows, 0).sum(1) * inner
    return torch.where(ins > 0, with_b, unit_sums * per_row).to(a[0].dtype), unit_sums


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


def _check_rate_args(
    aggregation: str, rate: str, alpha: float | None, r: float | Sequence[float] | None, count: int, entry: str
) -> tuple[float, list[float]]:
    """Checks the settings of a list op over `count` entries; returns `alpha` and one `r` per entry as floats."""
    checks.check_choice("aggregation", aggregation, AGGREGATIONS)
    checks.check_choice("rate", rate, RATES)
    r_values = list(r) if isinstance(r, Sequence) else [r] * count
    if len(r_values) != count:
        raise ValueError(f"clarena: `r` must have one entry per {entry} ({count}), got {len(r_values)}")
    alpha_value = _check_scalar("alpha", alpha, needed=rate == "hat_const_alpha")
    r_floats = [_check_scalar("r", value, needed=rate == "adahat") for value in r_values]
    if rate == "adahat" and not all(value > 0 for value in r_floats):
        raise ValueError(f"clarena: `r` must be positive for the 'adahat' rate, got {r}")
    return alpha_value, r_floats


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
    def _parameter_measure_fake(a, b, weight_shape, aggregation):
        return a.new_empty(_check_args(a, a, b, weight_shape))

    @torch.library.register_fake("clarena::scale_grad_by_measure_")
    def _scale_grad_by_measure_fake(grad, a, b, aggregation, rate, alpha, r):
        _check_args(grad, a, b, grad.shape)

    @torch.library.register_fake("clarena::foreach_scale_grad_by_measure_")
    def _foreach_scale_grad_by_measure_fake(grads, a, b, aggregation, rate, alpha, r):
        _check_foreach_args(grads, a, b)
