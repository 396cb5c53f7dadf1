import bisect
import math
import pytest
import torch
from op_helpers import DEVICES, assert_refused_on_both_paths, non_contiguous, ops_called, requires_native, run_both

from clarena import ops

TORCH_VERSION = tuple(int(part) for part in torch.__version__.split(".")[:2])
KEEPS = [1e-4, 0.01, 0.3, 0.5, 0.7, 0.999, 1.0]


def sample_inputs(device="cpu", dtype=torch.float32):
    """(name, score, keep) cases: random, sorted, all equal, many ties, one element, odd shapes."""
    make = dict(device=device, dtype=dtype)
    scores = {
        "random": torch.randn(1000, **make),
        "matrix": torch.randn(64, 33, **make),
        "conv": torch.randn(8, 4, 3, 3, **make),
        "sorted": torch.linspace(-3, 3, 501, **make),
        "all_equal": torch.full((97,), 0.25, **make),
        "ties": torch.randint(0, 5, (40, 25), device=device).to(dtype),
        "one": torch.tensor([1.5], **make),
        "two": torch.tensor([2.0, -1.0], **make),
        "non_contiguous": non_contiguous(torch.randn(30, 20, **make)),
        "infinities": torch.cat([torch.randn(50, **make), torch.tensor([math.inf, -math.inf, math.inf], **make)]),
        "signed_zeros": torch.tensor([0.0, -0.0, 0.0, -0.0, 1.0, -1.0], **make),
    }
    return [(name, score, keep) for name, score in scores.items() for keep in KEEPS]


def quantile_formula(score, keep):
    """The contract, literally: CLArena's gate with ties kept."""
    return (score >= torch.quantile(score.flatten(), 1 - keep)).to(score.dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_the_quantile_formula_on_both_paths(device, dtype):
    for name, score, keep in sample_inputs(device, dtype):
        native, reference, _, _ = run_both(ops.percentile_mask, [score, keep])
        expected = quantile_formula(score, keep)
        assert native.dtype == dtype and native.shape == score.shape, name
        assert torch.equal(native, expected), (name, keep)
        assert torch.equal(reference, expected), (name, keep)


@pytest.mark.parametrize("n", [10, 11, 100, 200_704])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7, 1.0, 1e-4])
def test_keeps_one_plus_floor_keep_times_n_minus_1_distinct_scores(n, keep):
    score = torch.randperm(n).to(torch.float32)
    kept = int(ops.percentile_mask(score, keep).sum())
    assert kept == 1 + math.floor(keep * (n - 1))
    # the kept ones are the largest scores
    assert bool((score[ops.percentile_mask(score, keep).bool()] >= n - kept).all())


def tied_scores_with_uneven_gaps(n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` shuffled scores: values in pairs 0.1 apart, pairs 1 apart (k + 0.37, k + 0.47), each
    value repeated one to three times.

    Between an order statistic and the next one up lies either a narrow gap, a wide gap or a
    tie, so a threshold interpolated towards any other neighbour moves past a score.
    """
    values, k = [], 0
    while len(values) < n:
        value = k // 2 + (0.47 if k % 2 else 0.37)
        values += [value] * int(torch.randint(1, 4, (1,), generator=generator))
        k += 1
    score = torch.tensor(values[:n], dtype=torch.float32)
    return score[torch.randperm(n, generator=generator)]


@pytest.mark.usefixtures("single_thread")  # many calls; the thread count is covered below
@pytest.mark.parametrize("n", [9, 100, 5_000, 70_000])
def test_keeps_the_scores_above_the_interpolated_order_statistics_with_ties(n):
    generator = torch.Generator().manual_seed(n)
    score = tied_scores_with_uneven_gaps(n, generator)
    ordered = score.sort().values.tolist()
    for lower_rank in torch.randint(0, n - 1, (20,), generator=generator).tolist():
        for fraction in (0.25, 0.5, 0.75):
            # torch.quantile interpolates at position (1 - keep) * (n - 1) of the sorted scores
            keep = 1 - (lower_rank + fraction) / (n - 1)
            lower, upper = ordered[lower_rank], ordered[lower_rank + 1]
            # a threshold strictly between two distinct neighbours keeps every score above the
            # lower one; between two tied ones it equals them and keeps all of their ties
            expected = n - 1 - lower_rank if upper > lower else n - bisect.bisect_left(ordered, lower)
            native, reference, _, _ = run_both(ops.percentile_mask, [score, keep])
            assert int(native.sum()) == expected, (lower_rank, fraction)
            assert int(reference.sum()) == expected, (lower_rank, fraction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_interpolated_threshold_rounds_like_torch_quantile(dtype):
    # neighbours one or a few ulps apart: the interpolation's rounding decides the mask
    eps = torch.finfo(dtype).eps
    cases = [(torch.tensor([1.0, 1.0 + 3 * eps], dtype=dtype), 5 / 6)]
    generator = torch.Generator().manual_seed(3)
    for _ in range(300):
        n = int(torch.randint(2, 9, (1,), generator=generator))
        steps = torch.randint(0, 4, (n,), generator=generator).to(dtype)
        keep = float(torch.rand((), generator=generator)) * 0.98 + 0.01
        cases.append((1.0 + steps * eps, keep))
    for score, keep in cases:
        assert torch.equal(ops.percentile_mask(score, keep), quantile_formula(score, keep)), (score.tolist(), keep)


def test_ties_at_the_threshold_are_kept():
    score = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.0])
    assert ops.percentile_mask(score, 0.5).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert ops.percentile_mask(torch.full((10,), 7.0), 0.1).sum() == 10


@pytest.mark.parametrize("device", DEVICES)
def test_any_nan_keeps_nothing_on_both_paths(device):
    score = torch.randn(100, device=device)
    score[17] = math.nan
    native, reference, _, _ = run_both(ops.percentile_mask, [score, 0.5])
    assert native.sum() == 0 and reference.sum() == 0
    assert torch.equal(native, quantile_formula(score, 0.5))


def test_empty_score_gives_an_empty_mask():
    for shape in [(0,), (0, 5), (3, 0)]:
        native, reference, _, _ = run_both(ops.percentile_mask, [torch.empty(shape), 0.5])
        assert native.shape == shape and reference.shape == shape


@requires_native
@pytest.mark.slow
def test_works_beyond_the_2_pow_24_elements_where_quantile_stopped():
    n = 2**24 + 1
    score = torch.randperm(n, dtype=torch.int64).to(torch.float32)  # 0 .. 2^24 exactly
    keep = 0.7
    if TORCH_VERSION < (2, 14):  # torch.quantile refused such inputs until torch 2.14
        with ops.use_reference(), pytest.raises(RuntimeError, match="too large"):
            ops.percentile_mask(score, keep)
    mask = ops.percentile_mask(score, keep)
    # scores equal their ranks, so the threshold is the rank (1 - keep, rounded to float32, times n - 1)
    position = torch.tensor(1 - keep, dtype=torch.float32).item() * (n - 1)
    assert int(mask.sum()) == n - math.ceil(position)
    assert bool((score[mask.bool()] >= position).all())


def test_backward_is_straight_through():
    score = torch.randn(20, 30, dtype=torch.float64, requires_grad=True)
    grad_mask = torch.randn(20, 30, dtype=torch.float64)
    native, reference, native_args, reference_args = run_both(ops.percentile_mask, [score, 0.4])
    native.backward(grad_mask)
    reference.backward(grad_mask)
    assert torch.equal(native_args[0].grad, grad_mask)
    assert torch.equal(reference_args[0].grad, grad_mask)


@requires_native
def test_native_path_selects_instead_of_sorting():
    score = torch.randn(4096)
    native_ops = ops_called(lambda: ops.percentile_mask(score, 0.3))
    assert "clarena::percentile_mask" in native_ops
    assert not {"aten::sort", "aten::quantile", "aten::topk", "aten::kthvalue"} & native_ops
    with ops.use_reference():
        assert "aten::quantile" in ops_called(lambda: ops.percentile_mask(score, 0.3))


@requires_native
def test_result_does_not_depend_on_the_thread_count():
    score = torch.randn(3_000_000)
    score[::7] = score[3]  # many ties at one value
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(ops.percentile_mask(score, 0.37))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
    assert torch.equal(results[0], quantile_formula(score, 0.37))


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for name, score, keep in sample_inputs(device):
        if score.numel() == 0:
            continue
        torch.library.opcheck(torch.ops.clarena.percentile_mask.default, (score, keep))
        torch.library.opcheck(torch.ops.clarena.percentile_mask.default, (score.clone().requires_grad_(), keep))


def test_compiles_without_graph_breaks():
    def gate(score):
        return ops.percentile_mask(score, 0.7) * 2

    compiled = torch.compile(gate, fullgraph=True, backend="aot_eager")
    score = torch.randn(50, 20, requires_grad=True)
    out = compiled(score)
    assert torch.equal(out, gate(score))
    out.sum().backward()
    assert torch.equal(score.grad, torch.full_like(score, 2.0))


@pytest.mark.parametrize(
    "score, keep, error, message",
    [
        (torch.arange(10), 0.5, TypeError, "clarena: `score` must be float32 or float64, got torch.int64"),
        (torch.randn(10).half(), 0.5, TypeError, "clarena: `score` must be float32 or float64, got torch.float16"),
        (torch.randn(10).bfloat16(), 0.5, TypeError, "clarena: `score` must be float32 or float64, got torch.bfloat16"),
        ([1.0, 2.0], 0.5, TypeError, "clarena: `score` must be a torch.Tensor, got list"),
        (torch.randn(10), 0.0, ValueError, "clarena: `keep` must be in (0, 1], got 0.0"),
        (torch.randn(10), 1.5, ValueError, "clarena: `keep` must be in (0, 1], got 1.5"),
        (torch.randn(10), -0.1, ValueError, "clarena: `keep` must be in (0, 1], got -0.1"),
        (torch.randn(10), math.nan, ValueError, "clarena: `keep` must be in (0, 1], got nan"),
        (torch.randn(10), "0.5", TypeError, "clarena: `keep` must be a float in (0, 1], got str"),
        (torch.randn(10), True, TypeError, "clarena: `keep` must be a float in (0, 1], got bool"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(score, keep, error, message):
    assert_refused_on_both_paths(lambda: ops.percentile_mask(score, keep), error, message)


@requires_native
def test_direct_native_call_checks_its_arguments():
    with pytest.raises(TypeError, match="`score` must be float32 or float64"):
        torch.ops.clarena.percentile_mask(torch.arange(5), 0.5)
    with pytest.raises(ValueError, match="`keep` must be in"):
        torch.ops.clarena.percentile_mask(torch.randn(5), 2.0)
