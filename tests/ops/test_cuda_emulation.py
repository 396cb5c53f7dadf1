"""Every CUDA kernel of csrc/ops/cuda/, run on the CPU by the emulation harness (its own code, each
CUDA thread a fiber: see tests/cuda_emulation_helpers.py and csrc/emulation/), on the CPU tests'
cases, against the CPU kernels of clarena_backbones._C.

The element math is shared (and nvcc builds with -fmad=false), so elementwise results must be the
same bits; only reductions that sum in another order are compared within their rounding bound.
Sizes are small, and the emulated device has 3 multiprocessors, so that grid-stride loops and
multi-block histograms still go round several times.
"""

import math
import sys

import pytest
import torch
import test_foreach_kernels
import test_parameter_measure
import test_percentile_mask
import test_unit_mask
from cuda_emulation_helpers import EMULATION, emulated_ops
from op_helpers import requires_native, unit_mask_gradient_bound

pytestmark = [
    requires_native,
    pytest.mark.skipif(sys.platform != "linux", reason="the harness's fibers are Linux ucontexts"),
    # The wheel checks run a copy of tests/ against an installed wheel, away from the sources.
    pytest.mark.skipif(not EMULATION.is_dir(), reason="needs the repository's csrc/ (the kernels' sources)"),
]

cpu = torch.ops.clarena
GATE_DTYPES = [torch.float32, torch.float64]
FLOATING = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def assert_identical(actual, expected, case=""):
    """Bit-for-bit equal values, NaN equal to NaN; a failure names `case`."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True, msg=lambda text: f"{case}: {text}")


@pytest.fixture(scope="module")
def cuda():
    ops = emulated_ops()
    ops.schedule(0)
    return ops


# --- the harness itself ---------------------------------------------------------------------------


def test_harness_runs_threads_as_fibers_that_meet_at_barriers(cuda):
    """A thread reads the value its neighbour wrote: right after a barrier, wrong (0) without."""
    assert cuda.self_test(0) == [(t + 1) % 64 + 1 for t in range(64)]
    for seed in range(3):
        cuda.schedule(seed)
        assert 0 in cuda.self_test(1)
    cuda.schedule(0)


@pytest.mark.parametrize("which, message", [
    (2, "while other threads wait at .* \\(a barrier in divergent code\\)"),
    (3, "lane 0 of warp 0 exited while named in the mask of the collective at "),
])  # fmt: skip
def test_harness_reports_what_would_hang_a_gpu(cuda, which, message):
    with pytest.raises(RuntimeError, match=message):
        cuda.self_test(which)


def test_harness_active_mask_is_the_converged_lanes(cuda):
    out = cuda.self_test(4)
    assert out[1::2] == [0xAAAAAAAA - (1 << 32)] * 32 and out[0::2] == [-1] * 32


# --- the gate ------------------------------------------------------------------------------------


def gate_scores(dtype):
    """The CPU tests' scores, plus what only the CUDA gate distinguishes: keys sharing their first
    digits (every later digit and the candidate buffer decide), NaN, a misaligned slice (the
    vector loads' head and tail, the mask's unaligned path) and more vectors than four loads per
    thread cover."""
    scores = {name: score for name, score, _ in test_percentile_mask.sample_inputs(dtype=dtype)}
    scores["shared_high_digits"] = 1 + torch.rand(3000, dtype=torch.float64).to(dtype) * (1e-6 if dtype == torch.float32 else 1e-13)
    scores["nan"] = torch.cat([torch.randn(300, dtype=dtype), torch.tensor([math.nan], dtype=dtype)])
    scores["misaligned"] = torch.randn(1203, dtype=dtype)[3:]
    scores["ties_misaligned"] = torch.randint(-3, 3, (2001,)).to(dtype)[1:]
    return scores


@pytest.mark.parametrize("dtype", GATE_DTYPES)
def test_gate_equals_the_cpu_kernel(cuda, dtype):
    scores = gate_scores(dtype)
    for keep in test_percentile_mask.KEEPS:
        masks, _ = cuda.percentile_masks(list(scores.values()), keep, torch.full((len(scores), 5), math.nan, dtype=torch.float64))
        for (name, score), mask in zip(scores.items(), masks):
            assert_identical(mask, cpu.percentile_mask(score, keep), (name, keep))


@pytest.mark.parametrize("dtype", GATE_DTYPES)
@pytest.mark.parametrize("keep", [1e-4, 0.3, 1.0])
def test_gate_of_one_tensor_equals_the_cpu_kernel(cuda, dtype, keep):
    for name, score in gate_scores(dtype).items():
        assert_identical(cuda.percentile_mask(score, keep), cpu.percentile_mask(score, keep), name)


def test_gate_over_more_tensors_than_one_launch_takes(cuda):
    """70 tensors (three launch sequences of at most 32), slices of one buffer at every alignment."""
    generator = torch.Generator().manual_seed(3)
    buffer = torch.randn(20_000, generator=generator)
    scores, start = [], 0
    for size in torch.randint(1, 400, (70,), generator=generator).tolist():
        scores.append(buffer[start:start + size])
        start += size + 1
    state = torch.full((70, 5), math.nan, dtype=torch.float64)
    masks, new_state = cuda.percentile_masks(scores, 0.3, state)
    for score, mask in zip(scores, masks):
        assert_identical(mask, cpu.percentile_mask(score, 0.3))
    # The CUDA gate selects every tensor cold and gives the state back unchanged.
    assert_identical(new_state, state)


def test_gate_reads_many_vectors_per_thread(cuda):
    """One multiprocessor: the grid is small, so each thread issues several rounds of four loads,
    and a block finds more candidates than it stages in shared memory when they share their
    first digit."""
    cuda.schedule(5, multiprocessors=1)
    try:
        for dtype in GATE_DTYPES:
            for score in (torch.randn(20_000, dtype=dtype), 1 + torch.rand(20_000, dtype=dtype) / 1024):
                for keep in (0.01, 0.5):
                    assert_identical(cuda.percentile_mask(score, keep), cpu.percentile_mask(score, keep))
    finally:
        cuda.schedule(0)


def test_gate_candidates_beyond_a_blocks_staging_area(cuda):
    """One multiprocessor, 4 blocks: 12% of the scores share the first digit of the threshold, more
    than a block stages in shared memory (the rest go to the buffer directly) but within the
    buffer's eighth of the scores, which later passes then read."""
    cuda.schedule(6, multiprocessors=1)
    try:
        score = torch.cat([1 + torch.rand(8_640) / 1024, 1000 + 100 * torch.randn(63_360)])
        score = score[torch.randperm(len(score))]
        assert_identical(cuda.percentile_mask(score, 0.95), cpu.percentile_mask(score, 0.95))
    finally:
        cuda.schedule(0)


def test_gate_result_does_not_depend_on_the_schedule(cuda):
    score = torch.randint(0, 50, (3000,)).float()
    expected = cpu.percentile_mask(score, 0.3)
    try:
        for seed in range(1, 5):
            cuda.schedule(seed)
            assert_identical(cuda.percentile_mask(score, 0.3), expected)
    finally:
        cuda.schedule(0)


def test_gate_refuses_bad_input_like_the_cpu_kernel(cuda):
    for keep in (1.5, -0.1, math.nan):
        with pytest.raises(ValueError) as expected:
            cpu.percentile_mask(torch.randn(5), keep)
        with pytest.raises(ValueError) as refused:
            cuda.percentile_mask(torch.randn(5), keep)
        assert str(refused.value) == str(expected.value)


# --- parameter-wise measure and gradient adjustment ---------------------------------------------------

# Rows of every length class: one element, shorter than a warp, between, a whole block, longer.
ROW_SHAPES = [(5, 1), (3, 2), (6, 33), (4, 5, 3, 3), (3, 300), (2, 700, 1, 1)]


@pytest.mark.parametrize("dtype", FLOATING)
@pytest.mark.parametrize("aggregation", test_parameter_measure.AGGREGATIONS)
def test_measure_equals_the_cpu_kernel(cuda, dtype, aggregation):
    samples = test_parameter_measure.sample_inputs(dtype=dtype)
    for shape in ROW_SHAPES:
        a, b = test_parameter_measure.unit_measures(shape[0], shape[1], dtype, "cpu", binary=False)
        samples += [(a, b, shape), (a, None, shape)]
    for a, b, shape in samples:
        assert_identical(cuda.parameter_measure(a, b, list(shape), aggregation),
                         cpu.parameter_measure(a, b, list(shape), aggregation), (shape, b is None))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("aggregation", test_parameter_measure.AGGREGATIONS)
@pytest.mark.parametrize("rate, alpha, r", test_foreach_kernels.RATES)
def test_scale_grad_equals_the_cpu_kernel(cuda, dtype, aggregation, rate, alpha, r):
    for shape in ROW_SHAPES:
        grad = torch.randn(shape, dtype=dtype)
        a, b = test_parameter_measure.unit_measures(shape[0], shape[1], dtype, "cpu", binary=False)
        for b_or_none in (b, None):
            mine, expected = grad.clone(), grad.clone()
            cuda.scale_grad_by_measure_(mine, a, b_or_none, aggregation, rate, alpha or 0.0, r or 0.0)
            cpu.scale_grad_by_measure_(expected, a, b_or_none, aggregation, rate, alpha or 0.0, r or 0.0)
            assert_identical(mine, expected)


@pytest.mark.parametrize("aggregation", test_parameter_measure.AGGREGATIONS)
@pytest.mark.parametrize("rate, alpha, r", test_foreach_kernels.RATES)
def test_scaling_more_layers_than_one_launch_takes_equals_the_cpu_kernel(cuda, aggregation, rate, alpha, r):
    """The CPU tests' layers (non-contiguous and empty gradients among them) and 36 small ones: 45
    layers, two launches of at most 40."""
    entries = test_foreach_kernels.layers()
    for k in range(36):
        entries.append([torch.randn(3, 1 + k), torch.rand(3), torch.rand(1 + k) if k % 3 else None])
    r_list = [(r or 0.0) * (index + 1) for index in range(len(entries))]
    mine = [grad.clone() for grad, _, _ in entries]
    expected = [grad.clone() for grad, _, _ in entries]
    a_list, b_list = [a for _, a, _ in entries], [b for _, _, b in entries]
    cuda.foreach_scale_grad_by_measure_(mine, a_list, b_list, aggregation, rate, alpha or 0.0, r_list)
    cpu.foreach_scale_grad_by_measure_(expected, a_list, b_list, aggregation, rate, alpha or 0.0, r_list)
    for m, e in zip(mine, expected):
        assert_identical(m, e)


# --- unit mask ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATING)
def test_unit_mask_equals_the_cpu_kernel(cuda, dtype):
    """MLP and conv layouts, MLP channels in tiles of 32 (one partly filled), and channels long
    enough to be summed in two slices in both layouts."""
    samples = test_unit_mask.sample_inputs(dtype=dtype)
    samples.append((torch.randn(40, 2, 30, 30, dtype=dtype), torch.rand(2, dtype=dtype), True))
    samples.append((torch.randn(37, 70, dtype=dtype), torch.rand(70, dtype=dtype), True))
    samples.append((torch.randn(40_000, 3, dtype=dtype), torch.rand(3, dtype=dtype), False))
    for x, mask, relu in samples:
        assert_identical(cuda.unit_mask(x, mask, relu), cpu.unit_mask(x, mask, relu))
        grad = torch.randn_like(x)
        grad_input, grad_mask = cuda.unit_mask_backward(grad, x, mask, relu)
        expected_input, expected_mask = cpu.unit_mask_backward(grad, x, mask, relu)
        assert_identical(grad_input, expected_input)
        # Both sum in a fixed order, each its own: within twice the rounding bound of the sum.
        bound = unit_mask_gradient_bound(x, mask, grad, relu)
        assert ((grad_mask.double() - expected_mask.double()).abs() <= 2 * bound + 1e-30).all(), x.shape


# --- masked weight and compensation ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATING)
def test_masked_weight_equals_the_cpu_kernel(cuda, dtype):
    for shape in [(1,), (7, 5), (64, 30), (16, 40, 3, 3)]:  # the last one goes round the grid twice
        weight, mask, grad = torch.randn(shape, dtype=dtype), torch.rand(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
        mask[mask < 0.3] = 0
        assert_identical(cuda.masked_weight(weight, mask), cpu.masked_weight(weight, mask))
        for mine, expected in zip(cuda.masked_weight_backward(grad, weight, mask), cpu.masked_weight_backward(grad, weight, mask)):
            assert_identical(mine, expected)


@pytest.mark.parametrize("dtype", FLOATING)
@pytest.mark.parametrize("scale", [1 / 400, 0.3, 400.0])
def test_compensation_equals_the_cpu_kernel(cuda, dtype, scale):
    embeddings = [torch.randn(1, n, dtype=dtype) * 3 for n in (1, 7, 100, 256, 7000)]
    # grads[2] is non-contiguous: scaled in a contiguous copy, then written back.
    bases = [torch.randn(1, n * (2 if k == 2 else 1), dtype=dtype) for k, n in enumerate((1, 7, 100, 256, 7000))]
    mine = [base.clone()[:, ::2] if k == 2 else base.clone() for k, base in enumerate(bases)]
    expected = [base.clone()[:, ::2] if k == 2 else base.clone() for k, base in enumerate(bases)]
    cuda.foreach_compensate_embedding_grad_(embeddings, mine, scale, 400.0, 50.0)
    cpu.foreach_compensate_embedding_grad_(embeddings, expected, scale, 400.0, 50.0)
    for m, e in zip(mine, expected):
        assert_identical(m, e)
