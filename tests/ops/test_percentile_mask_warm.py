"""The gate over a list of score tensors (`percentile_masks`), warm-started from the last thresholds.

Warm, cold and `torch.quantile` must agree exactly along random walks of the scores; the state
counts how often the guess held, so the tests also check that small steps take the warm path.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from op_helpers import DEVICES, requires_native

from clarena import ops
from clarena.backbones import WSNMaskMLP
from clarena_backbones.ops.percentile_mask import (
    FALLBACKS,
    THRESHOLD,
    WARM_CALLS,
    forget_thresholds_,
    percentile_masks,
    percentile_masks_state,
)

pytestmark = requires_native


def quantile_formula(score, keep):
    return (score >= torch.quantile(score.flatten().double() if score.numel() > 2**24 else score.flatten(), 1 - keep)).to(score.dtype)


def assert_exact(masks, scores, keep):
    for index, (mask, score) in enumerate(zip(masks, scores)):
        assert mask.shape == score.shape and mask.dtype == score.dtype, index
        assert torch.equal(mask, quantile_formula(score, keep)), (index, keep)
        assert torch.equal(mask, ops.percentile_mask(score, keep)), (index, keep)


def assert_recorded(state, scores, keep):
    """The state keeps torch.quantile's threshold of each tensor, inside the band it records for
    the next call (a NaN threshold, from a NaN quantile, is no guess)."""
    for index, score in enumerate(scores):
        if score.numel() == 0:
            continue
        flat = score.flatten().double() if score.numel() > 2**24 else score.flatten()
        expected = torch.quantile(flat, 1 - keep).item()
        low, threshold, high = state[index, :THRESHOLD + 2].tolist()
        if math.isnan(expected):
            assert math.isnan(threshold), index
            continue
        assert threshold == expected, (index, threshold, expected)
        assert low <= threshold <= high, (index, low, threshold, high)


# the CPU kernel's boundaries: 4096 scores (all of them are the band), 2^16-score chunks
sizes = st.sampled_from([1, 2, 7, 100, 4095, 4097, 20_000, 65_537, 140_000])
# steps from far below the scores' spacing to larger than their spread
step_scales = st.sampled_from([0.0, 1e-7, 1e-4, 1e-2, 0.3, 3.0])


@settings(max_examples=40, deadline=None)
@pytest.mark.usefixtures("single_thread")
@given(
    sizes=st.lists(sizes, min_size=1, max_size=3),
    keep=st.sampled_from([1e-4, 0.05, 0.3, 0.5, 0.7, 0.999, 1.0]),
    scales=st.lists(step_scales, min_size=1, max_size=5),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    grid=st.sampled_from([None, 0.25]),
    seed=st.integers(0, 2**31),
)
def test_random_walks_warm_equal_cold_equal_quantile(sizes, keep, scales, dtype, grid, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = [torch.randn(n, generator=generator, dtype=dtype) for n in sizes]
    state = percentile_masks_state(len(scores))
    assert_exact(percentile_masks(scores, keep, state), scores, keep)
    assert_recorded(state, scores, keep)
    for scale in scales:
        scores = [score + scale * torch.randn(score.shape, generator=generator, dtype=dtype) for score in scores]
        if grid is not None:  # many ties, also at the threshold
            scores = [torch.round(score / grid) * grid for score in scores]
        assert_exact(percentile_masks(scores, keep, state), scores, keep)
        assert_recorded(state, scores, keep)
    calls = len(scales)
    assert torch.all(state[:, WARM_CALLS] + state[:, FALLBACKS] == calls)


def test_small_steps_take_the_warm_path_and_a_jump_falls_back():
    generator = torch.Generator().manual_seed(0)
    scores = [torch.randn(300_000, generator=generator), torch.randn(64, 9, generator=generator)]
    state = percentile_masks_state(2)
    percentile_masks(scores, 0.7, state)
    assert torch.equal(state[:, WARM_CALLS:], torch.zeros(2, 2, dtype=torch.float64))  # first call: no guess
    for _ in range(5):  # an SGD-sized step: the threshold moves by few ranks
        scores = [score - 1e-3 * torch.randn(score.shape, generator=generator) for score in scores]
        assert_exact(percentile_masks(scores, 0.7, state), scores, 0.7)
    assert state[:, WARM_CALLS].tolist() == [5, 5] and state[:, FALLBACKS].tolist() == [0, 0]
    scores = [score + 2.0 for score in scores]  # every score moves far past the old threshold
    assert_exact(percentile_masks(scores, 0.7, state), scores, 0.7)
    assert state[:, FALLBACKS].tolist() == [1, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [100, 5000, 70_000])
def test_a_band_whose_top_is_the_new_lower_order_statistic(dtype, n):
    # The warm band ends at the lower of the two order statistics torch.quantile interpolates
    # between, so the upper one is the first score above the band and the threshold lies between
    # them: the state must still record a band that holds the threshold, for a warm next call.
    keep = 0.7
    score = torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=dtype)
    ordered = score.sort().values
    lower = int((1 - keep) * (n - 1))
    state = percentile_masks_state(1)
    state[0, :THRESHOLD + 2] = torch.tensor([ordered[lower - 20], ordered[lower - 3], ordered[lower]], dtype=torch.float64)
    assert_exact(percentile_masks([score], keep, state), [score], keep)
    assert state[0, WARM_CALLS] == 1
    assert state[0, THRESHOLD] > ordered[lower]  # interpolated above the band's old top
    assert_recorded(state, [score], keep)
    assert_exact(percentile_masks([score], keep, state), [score], keep)
    assert state[0, WARM_CALLS].item() == 2 and state[0, FALLBACKS].item() == 0


def test_a_changed_keep_still_gives_exact_masks():
    score = torch.randn(50_000)
    state = percentile_masks_state(1)
    for keep in (0.7, 0.69, 0.2, 0.7, 1.0, 1e-4):
        assert_exact(percentile_masks([score], keep, state), [score], keep)
        assert_recorded(state, [score], keep)


def test_nan_keeps_nothing_and_forgets_the_threshold():
    score = torch.randn(10_000)
    state = percentile_masks_state(1)
    percentile_masks([score], 0.5, state)
    with_nan = score.clone()
    with_nan[123] = math.nan
    assert percentile_masks([with_nan], 0.5, state)[0].sum() == 0
    assert math.isnan(state[0, THRESHOLD])
    assert_exact(percentile_masks([score], 0.5, state), [score], 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("keep", [1e-4, 0.3, 0.5, 1.0])
def test_edge_values_warm_and_cold(dtype, keep):
    tiny = torch.finfo(dtype).tiny
    cases = {
        "signed_zeros": torch.tensor([0.0, -0.0] * 3000 + [1.0, -1.0], dtype=dtype),
        "denormals": torch.tensor([tiny / 2, -tiny / 4, tiny / 8, 0.0, -0.0, tiny] * 1500, dtype=dtype),
        "all_equal": torch.full((70_000,), -2.5, dtype=dtype),
        "infinities": torch.cat([torch.randn(9000, dtype=dtype), torch.tensor([math.inf, -math.inf] * 50, dtype=dtype)]),
        "two_values": torch.tensor([1.0, 2.0], dtype=dtype).repeat(40_000),
    }
    for name, score in cases.items():
        state = percentile_masks_state(1)
        assert_exact(percentile_masks([score], keep, state), [score], keep)
        # interpolating towards +inf can give a NaN threshold (0 * inf), which is no guess
        guessed = not math.isnan(state[0, THRESHOLD])
        assert_exact(percentile_masks([score], keep, state), [score], keep)  # warm from the first threshold
        assert state[0, WARM_CALLS] + state[0, FALLBACKS] == guessed, name
        assert guessed or name == "infinities"


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_misleading_sample_falls_back_to_the_radix_bucket(keep):
    # the cold gate samples runs of 64 neighbours at 1024 evenly spaced places; here every sampled
    # score is an outlier, so the band from the sample misses the threshold
    n = 1024 * 1000
    score = torch.randn(n, dtype=torch.float64)
    starts = torch.arange(1024) * (n // 1024)
    score[(starts[:, None] + torch.arange(64)).flatten()] = 1e3
    assert_exact([ops.percentile_mask(score, keep)], [score], keep)
    state = percentile_masks_state(1)
    assert_exact(percentile_masks([score], keep, state), [score], keep)


def test_forgotten_thresholds_select_cold_again():
    score = torch.randn(5000)
    state = percentile_masks_state(1)
    percentile_masks([score], 0.5, state)
    forget_thresholds_(state)
    percentile_masks([score], 0.5, state)
    assert state[0, WARM_CALLS] == 0 and state[0, FALLBACKS] == 0


def test_backward_is_straight_through_to_every_score():
    scores = [torch.randn(30, 20, requires_grad=True), torch.randn(7, requires_grad=True)]
    masks = percentile_masks(scores, 0.4, percentile_masks_state(2))
    grads = [torch.randn(30, 20), torch.randn(7)]
    sum((mask * grad).sum() for mask, grad in zip(masks, grads)).backward()
    for score, grad in zip(scores, grads):
        assert torch.equal(score.grad, grad)


def test_reference_path_gates_each_tensor_and_leaves_the_state():
    scores = [torch.randn(100), torch.randn(5, 5)]
    state = percentile_masks_state(2)
    with ops.use_reference():
        assert_exact(percentile_masks(scores, 0.3, state), scores, 0.3)
    assert state.isnan()[:, :3].all() and (state[:, 3:] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    scores = [torch.randn(300, device=device), torch.randn(20, 3, device=device)]
    state = percentile_masks_state(2, device)
    torch.library.opcheck(torch.ops.clarena.percentile_masks.default, (scores, 0.6, state))
    grad_scores = [score.clone().requires_grad_() for score in scores]
    torch.library.opcheck(torch.ops.clarena.percentile_masks.default, (grad_scores, 0.6, state))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: percentile_masks(torch.randn(3), 0.5, percentile_masks_state(1)), TypeError, "`scores` must be a sequence"),
        (lambda: percentile_masks([torch.randn(3)], 1.5, percentile_masks_state(1)), ValueError, "`keep` must be in (0, 1]"),
        (lambda: percentile_masks([torch.randn(3)], 0.5, percentile_masks_state(2)), ValueError, "`state` must have the shape"),
        (lambda: percentile_masks([torch.randn(3)], 0.5, torch.zeros(1, 5)), TypeError, "`state` must be float64"),
        (lambda: percentile_masks([torch.arange(3)], 0.5, percentile_masks_state(1)), TypeError, "`scores[0]` must be float32"),
        (
            lambda: percentile_masks([torch.randn(3), torch.randn(3).double()], 0.5, percentile_masks_state(2)),
            TypeError,
            "`scores[1]` must have the dtype of `scores[0]`",
        ),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(call, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        call()


def test_direct_native_call_checks_its_arguments():
    with pytest.raises(ValueError, match="`state` must have the shape"):
        torch.ops.clarena.percentile_masks([torch.randn(4)], 0.5, torch.zeros(3, 5, dtype=torch.float64))


# ----------------------------------------------------------------------------------- the backbone
def wsn(seed=0):
    torch.manual_seed(seed)
    return WSNMaskMLP(12, [40, 30], 8)


def per_layer_masks(backbone, keep):
    masks = {}
    for name in backbone.weighted_layer_names:
        masks[name] = ops.percentile_mask(backbone.weight_score_t[name].weight, keep)
    return masks


def test_backbone_steps_warm_start_and_match_the_per_layer_gate():
    backbone = wsn()
    optimizer = torch.optim.SGD(backbone.parameters(), lr=1e-3)
    x = torch.randn(16, 12)
    for _ in range(4):
        feature, weight_mask, _, _ = backbone(x, "train", 0.6)
        for name, mask in per_layer_masks(backbone, 0.6).items():
            assert torch.equal(weight_mask[name], mask)
        optimizer.zero_grad()
        feature.square().mean().backward()
        optimizer.step()
    state = backbone.gate_state
    assert (state[:, WARM_CALLS] == 3).all() and (state[:, FALLBACKS] == 0).all()
    assert "gate_state" not in str(list(backbone.state_dict()))


@pytest.mark.parametrize(
    "jump",
    [
        lambda backbone: backbone.initialize_parameter_score("N01"),
        lambda backbone: backbone.load_state_dict(wsn(seed=1).state_dict()),
        lambda backbone: backbone.setup_task_id(2),
    ],
)
def test_backbone_forgets_its_thresholds_when_the_scores_jump(jump):
    backbone = wsn()
    backbone(torch.randn(4, 12), "train", 0.5)
    assert not backbone.gate_state[:, THRESHOLD].isnan().any()
    jump(backbone)
    assert backbone.gate_state[:, THRESHOLD].isnan().all()


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.needs_cuda
def test_cuda_graph_captures_both_gates():
    scores = [torch.randn(200_000, device="cuda"), torch.randn(64, 9, device="cuda")]
    state = percentile_masks_state(2, "cuda")
    percentile_masks(scores, 0.7, state)  # warm up outside the capture
    ops.percentile_mask(scores[0], 0.7)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        batched = percentile_masks(scores, 0.7, state)
        single = ops.percentile_mask(scores[0], 0.7)
    for step in range(3):
        with torch.no_grad():
            for score in scores:
                score.add_(1e-3 * torch.randn_like(score))
        graph.replay()
        torch.cuda.synchronize()
        assert_exact(batched, scores, 0.7)
        assert torch.equal(single, quantile_formula(scores[0], 0.7))


@pytest.mark.needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_gates_large_misaligned_and_tied_scores(dtype):
    """Sizes past the kernels' vector loops (several loads in flight per thread), views that start
    off a 16-byte boundary, heavy ties, and more tensors than one segmented launch holds."""
    generator = torch.Generator().manual_seed(5)
    large = torch.randn(2_000_003, generator=generator, dtype=dtype).to("cuda")
    tied = torch.randint(0, 7, (1_000_001,), generator=generator).to(dtype).to("cuda")
    scores = [large[1:], large[3:-5].view(-1), tied, tied[1:]]
    scores += [torch.randn(n, generator=generator, dtype=dtype).to("cuda")[n % 3 :] for n in range(30, 2_000, 50)]
    assert len(scores) > 32
    for keep in (0.7, 0.05, 1.0):
        state = percentile_masks_state(len(scores), "cuda")
        assert_exact(percentile_masks(scores, keep, state), scores, keep)
