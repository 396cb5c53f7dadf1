import contextlib

import pytest
import torch
from op_helpers import DEVICES, assert_refused_on_both_paths, requires_native, run_both

from clarena import ops

SHAPES = [(7, 5), (6, 4, 3, 3), (5, 3, 1, 2), (0, 4), (4, 0, 3, 3)]
AGGREGATIONS = ["min", "max", "mean"]
RATES = [("hat", {}), ("hat_const_alpha", {"alpha": 0.3}), ("adahat", {"r": 0.05})]
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def unit_measures(rows, cols, dtype, device, binary):
    """Measures of a layer's units (a) and its preceding layer's units (b)."""
    if binary:
        return (torch.randint(0, 2, (rows,), device=device).to(dtype), torch.randint(0, 2, (cols,), device=device).to(dtype))
    return torch.rand(rows, device=device, dtype=dtype) * 3, torch.rand(cols, device=device, dtype=dtype) * 3


def sample_inputs(device="cpu", dtype=torch.float32):
    """(a, b, weight_shape) for Linear and Conv shapes, first layers (b=None), binary and real measures."""
    samples = []
    for shape in SHAPES:
        for binary in (True, False):
            a, b = unit_measures(shape[0], shape[1], dtype, device, binary)
            samples.append((a, b, shape))
            samples.append((a, None, shape))
    a, _ = unit_measures(9, 1, dtype, device, False)
    samples.append((a, None, (9,)))  # a bias
    return samples


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_measure_equals_the_reference(device, dtype, aggregation):
    for a, b, shape in sample_inputs(device, dtype):
        native, reference, _, _ = run_both(ops.parameter_measure, [a, b, shape, aggregation])
        assert native.shape == torch.Size(shape) and native.is_contiguous()
        torch.testing.assert_close(native, reference, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_measure_formula_on_a_small_case():
    a = torch.tensor([0.0, 1.0, 0.5])
    b = torch.tensor([1.0, 0.25])
    expected = {
        "min": [[0.0, 0.0], [1.0, 0.25], [0.5, 0.25]],
        "max": [[1.0, 0.25], [1.0, 1.0], [1.0, 0.5]],
        "mean": [[0.5, 0.125], [1.0, 0.625], [0.75, 0.375]],
    }
    for aggregation, rows in expected.items():
        assert ops.parameter_measure(a, b, (3, 2), aggregation).tolist() == rows
        conv = ops.parameter_measure(a, b, (3, 2, 2, 2), aggregation)
        assert torch.equal(conv, torch.tensor(rows).view(3, 2, 1, 1).expand(3, 2, 2, 2))
    assert ops.parameter_measure(a, None, (3, 2), "min").tolist() == [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]]


def test_min_and_max_propagate_nan():
    a = torch.tensor([float("nan"), 1.0])
    b = torch.tensor([0.5, float("nan")])
    for aggregation in ("min", "max"):
        native, reference, _, _ = run_both(ops.parameter_measure, [a, b, (2, 2), aggregation])
        assert torch.equal(native.isnan(), reference.isnan())
        assert native.isnan().tolist() == [[True, True], [False, True]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("rate, scalars", RATES)
def test_scale_grad_equals_the_reference(device, dtype, aggregation, rate, scalars):
    for a, b, shape in sample_inputs(device, dtype):
        grad = torch.randn(shape, device=device, dtype=dtype)
        native, reference = grad.clone(), grad.clone()
        ops.scale_grad_by_measure_(native, a, b, aggregation, rate, **scalars)
        with ops.use_reference():
            ops.scale_grad_by_measure_(reference, a, b, aggregation, rate, **scalars)
        torch.testing.assert_close(native, reference, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_scale_grad_rates_on_a_small_case():
    a = torch.tensor([0.0, 1.0])
    b = torch.tensor([1.0, 0.5, 0.0])
    cases = {
        ("hat", None, None): [[1.0, 1.0, 1.0], [0.0, 0.5, 1.0]],
        ("hat_const_alpha", 0.2, None): [[1.0, 1.0, 1.0], [0.2, 0.6, 1.0]],
        ("adahat", None, 0.5): [[1.0, 1.0, 1.0], [1 / 3, 0.5, 1.0]],
    }
    for (rate, alpha, r), expected in cases.items():
        grad = torch.ones(2, 3)
        ops.scale_grad_by_measure_(grad, a, b, "min", rate, alpha=alpha, r=r)
        torch.testing.assert_close(grad, torch.tensor(expected))


def test_scale_grad_works_in_place_on_a_non_contiguous_gradient():
    storage = torch.randn(5, 7)
    grad = storage.t()  # (7, 5), non-contiguous view into `storage`
    expected = grad.clone()
    a, b = unit_measures(7, 5, torch.float32, "cpu", binary=True)
    with ops.use_reference():
        ops.scale_grad_by_measure_(expected, a, b, "min", "hat")
    ops.scale_grad_by_measure_(grad, a, b, "min", "hat")
    assert torch.equal(storage.t(), expected)


def largest_allocation(fn) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((event.cpu_memory_usage for event in prof.events()), default=0)


@requires_native
def test_scale_grad_allocates_nothing_weight_sized():
    grad = torch.randn(512, 256, 3, 3)
    a, b = unit_measures(512, 256, torch.float32, "cpu", binary=True)
    weight_bytes = grad.numel() * grad.element_size()
    assert largest_allocation(lambda: ops.scale_grad_by_measure_(grad, a, b, "min", "adahat", r=0.1)) < weight_bytes // 100
    with ops.use_reference():  # the measurement sees the reference's weight-sized temporaries
        assert largest_allocation(lambda: ops.scale_grad_by_measure_(grad, a, b, "min", "adahat", r=0.1)) >= weight_bytes


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for a, b, shape in sample_inputs(device):
        torch.library.opcheck(torch.ops.clarena.parameter_measure.default, (a, b, list(shape), "mean"))
        grad = torch.randn(shape, device=device)
        torch.library.opcheck(torch.ops.clarena.scale_grad_by_measure_.default, (grad, a, b, "min", "adahat", 0.0, 0.1))


def test_compiles_without_graph_breaks():
    a, b = unit_measures(6, 4, torch.float32, "cpu", binary=False)

    def adjust(grad):
        grad = grad.clone()
        ops.scale_grad_by_measure_(grad, a, b, "max", "hat_const_alpha", alpha=0.5)
        return grad + ops.parameter_measure(a, b, grad.shape, "min")

    grad = torch.randn(6, 4, 3, 3)
    compiled = torch.compile(adjust, fullgraph=True)
    torch.testing.assert_close(compiled(grad), adjust(grad))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ops.parameter_measure(torch.rand(3), torch.rand(4), (3, 5), "min"), ValueError, "clarena: `b` must have the shape of the weight's input units (5,), got (4,)"),
        (lambda: ops.parameter_measure(torch.rand(2), torch.rand(5), (3, 5), "min"), ValueError, "clarena: `a` must have the shape of the weight's output units (3,), got (2,)"),
        (lambda: ops.parameter_measure(torch.rand(3), None, (3, 5), "median"), ValueError, "clarena: `aggregation` must be one of 'min', 'max', 'mean', got 'median'"),
        (lambda: ops.parameter_measure(torch.arange(3), None, (3, 5), "min"), TypeError, "clarena: `a` must be a floating-point tensor, got torch.int64"),
        (lambda: ops.parameter_measure(torch.rand(3), torch.rand(5).double(), (3, 5), "min"), TypeError, "clarena: `b` must have the dtype of `a` (torch.float32), got torch.float64"),
        (lambda: ops.parameter_measure(torch.rand(3), torch.rand(5), (3,), "min"), ValueError, "clarena: `b` is given, so the weight shape must be (out, in, ...), got (3,)"),
        (lambda: ops.parameter_measure(torch.rand(3), torch.rand(5, device="meta"), (3, 5), "min"), ValueError, "clarena: `b` must be on the device of `a` (cpu), got meta"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), torch.rand(5), "min", "hatt"), ValueError, "clarena: `rate` must be one of 'hat', 'hat_const_alpha', 'adahat', got 'hatt'"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), torch.rand(5), "avg", "hat"), ValueError, "clarena: `aggregation` must be one of 'min', 'max', 'mean', got 'avg'"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), torch.rand(5), "min", "adahat"), ValueError, "clarena: `r` must be given for this rate"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), torch.rand(5), "min", "adahat", r=0.0), ValueError, "clarena: `r` must be positive for the 'adahat' rate, got 0.0"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), None, "min", "hat_const_alpha"), ValueError, "clarena: `alpha` must be given for this rate"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3).double(), None, "min", "hat"), TypeError, "clarena: `a` must have the dtype of `grad` (torch.float32), got torch.float64"),
        (lambda: ops.scale_grad_by_measure_(torch.arange(15).view(3, 5), torch.rand(3), None, "min", "hat"), TypeError, "clarena: `grad` must be a floating-point tensor, got torch.int64"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3, device="meta"), None, "min", "hat"), ValueError, "clarena: `a` must be on the device of `grad` (cpu), got meta"),
        (lambda: ops.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), torch.rand(3), "min", "hat"), ValueError, "clarena: `b` must have the shape of the weight's input units (5,), got (3,)"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(call, error, message):
    assert_refused_on_both_paths(call, error, message)


@requires_native
def test_direct_native_call_checks_its_arguments():
    with pytest.raises(ValueError, match="`b` must be a 1-D tensor of length 5"):
        torch.ops.clarena.parameter_measure(torch.rand(3), torch.rand(4), [3, 5], "min")
    with pytest.raises(ValueError, match="`aggregation` must be"):
        torch.ops.clarena.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), None, "median", "hat", 0.0, 0.0)
    with pytest.raises(ValueError, match="`rate` must be"):
        torch.ops.clarena.scale_grad_by_measure_(torch.randn(3, 5), torch.rand(3), None, "min", "nope", 0.0, 0.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("rate, scalars", RATES)
def test_foreach_equals_one_call_per_layer_on_both_paths(device, aggregation, rate, scalars):
    samples = sample_inputs(device)
    grads = [torch.randn(shape, device=device) for _, _, shape in samples]
    a = [a for a, _, _ in samples]
    b = [b for _, b, _ in samples]
    r = [0.05 * (index + 1) for index in range(len(samples))] if rate == "adahat" else None
    alpha = scalars.get("alpha")
    for path in ("native", "reference"):
        expected = [grad.clone() for grad in grads]
        actual = [grad.clone() for grad in grads]
        with ops.use_reference() if path == "reference" else contextlib.nullcontext():
            for index, grad in enumerate(expected):
                ops.scale_grad_by_measure_(grad, a[index], b[index], aggregation, rate, alpha, None if r is None else r[index])
            ops.foreach_scale_grad_by_measure_(actual, a, b, aggregation, rate, alpha, r)
        for mine, theirs in zip(actual, expected):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=lambda m: f"{path}: {m}")


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(a=[torch.rand(3)], b=[None, None]), ValueError, "one entry per gradient"),
        (dict(a=[torch.rand(4)], b=[None]), ValueError, r"`a\[0\]` must"),
        (dict(a=[torch.rand(3)], b=[torch.rand(4)]), ValueError, r"`b\[0\]` must"),
        (dict(a=[torch.rand(3)], b=[None], rate="adahat", r=[0.1, 0.2]), ValueError, "`r` must have one entry per gradient"),
        (dict(a=[torch.rand(3)], b=[None], rate="adahat", r=0.0), ValueError, "`r` must be positive"),
        (dict(a=[torch.rand(3).double()], b=[None]), TypeError, r"`a\[0\]` must have the dtype"),
    ],
)
def test_foreach_bad_input_is_refused_with_the_argument_named(kwargs, error, pattern):
    kwargs = {"rate": "hat", **kwargs}
    for path in ("native", "reference"):
        grads = [torch.randn(3, 5)]
        if path == "native":
            with pytest.raises(error, match=pattern):
                ops.foreach_scale_grad_by_measure_(grads, **kwargs)
        else:
            with ops.use_reference(), pytest.raises(error, match=pattern):
                ops.foreach_scale_grad_by_measure_(grads, **kwargs)


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_foreach_opcheck_and_compile(device):
    samples = sample_inputs(device)
    grads = [torch.randn(shape, device=device) for _, _, shape in samples]
    args = (grads, [a for a, _, _ in samples], [b for _, b, _ in samples], "max", "adahat", 0.0, [0.5] * len(samples))
    torch.library.opcheck(torch.ops.clarena.foreach_scale_grad_by_measure_.default, args)

    def adjust(grads):
        grads = [grad.clone() for grad in grads]
        ops.foreach_scale_grad_by_measure_(grads, args[1], args[2], "max", "adahat", r=0.5)
        return grads

    for mine, theirs in zip(torch.compile(adjust, fullgraph=True)(grads), adjust(grads)):
        torch.testing.assert_close(mine, theirs)


def test_parameter_measure_accepts_its_old_mode_keyword_with_a_deprecation_warning():
    a, b = torch.rand(3), torch.rand(2)
    with pytest.warns(DeprecationWarning, match="`mode` keyword of parameter_measure.* is now `aggregation`"):
        old = ops.parameter_measure(a, b, (3, 2), mode="max")
    assert torch.equal(old, ops.parameter_measure(a, b, (3, 2), aggregation="max"))
    with pytest.raises(TypeError, match="got both `mode` and `aggregation`"):
        ops.parameter_measure(a, b, (3, 2), mode="max", aggregation="min")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("rate, scalars", RATES)
def test_adjustment_rate_is_what_the_gradient_is_scaled_by(device, aggregation, rate, scalars):
    for a, b, shape in sample_inputs(device):
        grad = torch.randn(shape, device=device)
        expected = grad.clone()
        ops.scale_grad_by_measure_(expected, a, b, aggregation, rate, **scalars)
        rates = ops.adjustment_rate(a, b, shape, aggregation, rate, **scalars)
        assert rates.shape == torch.Size(shape)
        torch.testing.assert_close(grad * rates, expected)
        measure = ops.parameter_measure(a, b, shape, aggregation)
        formula = {"hat": lambda m: 1 - m, "hat_const_alpha": lambda m: 0.3 * m + 1 - m, "adahat": lambda m: 0.05 / (m + 0.05)}
        torch.testing.assert_close(rates, formula[rate](measure))


# Rate sums: layers of different widths and kinds in one call; the first and fourth have no preceding layer.
SUM_SHAPES = [(7, 5), (6, 4, 3, 3), (1, 9), (9, 1, 2, 1), (0, 3), (5, 2)]
FIRST_LAYERS = (0, 3)


def rate_sum_inputs(kind, device="cpu", dtype=torch.float32):
    a, b = [], []
    for index, shape in enumerate(SUM_SHAPES):
        if kind == "counts":  # AdaHAT's summative mask: many ties
            a_l, b_l = (torch.randint(0, 4, (n,), device=device).to(dtype) for n in shape[:2])
        else:
            a_l, b_l = unit_measures(shape[0], shape[1], dtype, device, binary=kind == "binary")
        a.append(a_l)
        b.append(None if index in FIRST_LAYERS else b_l)
    return a, b


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("kind", ["binary", "counts", "real"])
@pytest.mark.parametrize("rate, scalars", [*RATES, ("adahat", {"r": [0.37, 2.0, 0.05, 1.0, 0.5, 3.0]})])
def test_rate_sums_equal_the_sums_of_the_built_rates(device, aggregation, kind, rate, scalars):
    a, b = rate_sum_inputs(kind, device)
    r = scalars.get("r")
    for path in ("native", "reference"):
        with ops.use_reference() if path == "reference" else contextlib.nullcontext():
            weight_sums, unit_sums = ops.foreach_rate_sums(a, b, SUM_SHAPES, aggregation, rate, **scalars)
        assert weight_sums.shape == unit_sums.shape == (len(SUM_SHAPES),)
        for index, (a_l, b_l, shape) in enumerate(zip(a, b, SUM_SHAPES)):
            layer_r = r[index] if isinstance(r, list) else r
            rates = ops.adjustment_rate(a_l, b_l, shape, aggregation, rate, scalars.get("alpha"), layer_r)
            where = f"{path}, layer {index}"
            torch.testing.assert_close(weight_sums[index].double(), rates.double().sum(), rtol=1e-5, atol=1e-4, msg=lambda m: f"{where}: {m}")
            unit_rates = ops.adjustment_rate(a_l, None, shape[:1], aggregation, rate, scalars.get("alpha"), layer_r)
            torch.testing.assert_close(unit_sums[index].double(), unit_rates.double().sum(), rtol=1e-5, atol=1e-5, msg=lambda m: f"{where}: {m}")


def test_rate_sums_of_hat_rates_count_the_free_weights_exactly():
    a = torch.tensor([1.0, 0.0, 1.0])
    b = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # a weight is frozen (rate 0) iff both its units are in the mask: 2 * 2 of 12, times 3x3 kernels
    for aggregation, frozen in (("min", 2 * 2), ("max", 12 - 1 * 2)):
        weight_sums, unit_sums = ops.foreach_rate_sums([a, a], [b, None], [(3, 4, 3, 3), (3, 4, 3, 3)], aggregation, "hat")
        assert weight_sums.tolist() == [(12 - frozen) * 9, 1 * 4 * 9]
        assert unit_sums.tolist() == [1, 1]


def test_rate_sums_do_not_build_weight_sized_tensors_under_min():
    a, b = torch.rand(512), torch.rand(512)
    called = []

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                called.append(out.numel())
            return out

    with Watch():
        ops.foreach_rate_sums([a], [b], [(512, 512, 3, 3)], "min", "hat")
    assert called and max(called) < 512 * 512


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: ops.foreach_rate_sums([], [], []), ValueError, "clarena: `a`, `b` and `weight_shapes` must have one entry per layer (at least one), got 0, 0 and 0"),
        (lambda: ops.foreach_rate_sums([torch.rand(3)], [None], [(3, 2)], "avg"), ValueError, "clarena: `aggregation` must be one of 'min', 'max', 'mean', got 'avg'"),
        (lambda: ops.foreach_rate_sums([torch.rand(3)], [None], [(3, 2)], "min", "hatt"), ValueError, "clarena: `rate` must be one of 'hat', 'hat_const_alpha', 'adahat', got 'hatt'"),
        (lambda: ops.foreach_rate_sums([torch.rand(3)], [torch.rand(4)], [(3, 2)]), ValueError, "clarena: `b` must have the shape of the weight's input units (2,), got (4,)"),
        (lambda: ops.foreach_rate_sums([torch.rand(3), torch.rand(2).double()], [None, None], [(3, 2), (2, 2)]), TypeError, "clarena: `a[1]` must have the dtype of `a[0]` (torch.float32), got torch.float64"),
        (lambda: ops.foreach_rate_sums([torch.rand(3)], [None], [(3, 2)], "min", "adahat", r=[0.1, 0.2]), ValueError, "clarena: `r` must have one entry per layer (1), got 2"),
        (lambda: ops.foreach_rate_sums([torch.rand(3)], [None], [(3, 2)], "min", "adahat"), ValueError, "clarena: `r` must be given for this rate"),
    ],
)
def test_rate_sums_refuse_bad_input_with_the_argument_named(call, error, message):
    assert_refused_on_both_paths(call, error, message)
