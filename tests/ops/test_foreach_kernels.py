"""The multi-layer kernels (gradient adjustment and embedding compensation over lists of layers)
and the run-time choice of the CPU kernels' vector width."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from op_helpers import DEVICES, assert_identical, assert_refused_on_both_paths, ops_called, requires_native

from clarena import ops
from clarena.ops import reference

ROOT = Path(__file__).resolve().parents[2]
MODES = ("min", "max", "mean")
RATES = [("hat", None, None), ("hat_const_alpha", 0.3, None), ("adahat", None, 0.2)]


def layers(device="cpu", dtype=torch.float32):
    """(grad, a, b) of a mix of layers: first Linear, Linear, biases, convolutions, a 1x1 shortcut,
    a non-contiguous gradient, an empty one, and a conv with more rows than one parallel grain."""
    shapes = [((64, 30), False), ((64,), False), ((40, 64), True), ((40,), False), ((16, 40, 3, 3), True),
              ((16, 40, 1, 1), True), ((0, 40), True), ((300, 16, 5, 5), True), ((12, 300), True)]  # fmt: skip
    entries = []
    for shape, with_b in shapes:
        grad = torch.randn(shape, device=device, dtype=dtype)
        a = torch.rand(shape[0], device=device, dtype=dtype)
        b = torch.rand(shape[1], device=device, dtype=dtype) if with_b else None
        entries.append([grad, a, b])
    entries[2][0] = torch.randn(64, 40, device=device, dtype=dtype).t()  # non-contiguous
    return entries


@requires_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("aggregation", MODES)
@pytest.mark.parametrize("rate, alpha, r", RATES)
def test_one_call_scales_every_layer_like_the_reference(device, aggregation, rate, alpha, r):
    entries = layers(device)
    grads = [grad.clone() for grad, _, _ in entries]
    r_list = None if r is None else [r * (index + 1) for index in range(len(entries))]
    called = ops_called(lambda: ops.foreach_scale_grad_by_measure_(
        grads, [a for _, a, _ in entries], [b for _, _, b in entries], aggregation, rate, alpha, r_list))  # fmt: skip
    assert "clarena::foreach_scale_grad_by_measure_" in called
    assert "clarena::scale_grad_by_measure_" not in called  # one kernel, not one call per layer
    for index, (mine, (grad, a, b)) in enumerate(zip(grads, entries)):
        expected = grad.clone()
        reference.scale_grad_by_measure_(expected, a, b, aggregation, rate, alpha or 0.0, r_list[index] if r_list else 0.0)
        if rate == "adahat":  # the reference's `r / x` is torch's `x.reciprocal() * r`, one rounding more
            torch.testing.assert_close(mine, expected, rtol=1e-6, atol=0)
        else:
            assert_identical(mine, expected)


@requires_native
def test_threads_do_not_change_the_result():
    entries = layers()
    results = []
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            grads = [grad.clone() for grad, _, _ in entries]
            ops.foreach_scale_grad_by_measure_(grads, [a for _, a, _ in entries], [b for _, _, b in entries], "min", "hat")
        finally:
            torch.set_num_threads(previous)
        results.append(grads)
    for one, two in zip(*results):
        assert_identical(one, two)


@requires_native
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    entries = layers(device, torch.float64)
    grads, a, b = [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]
    torch.library.opcheck(torch.ops.clarena.foreach_scale_grad_by_measure_.default,
                          (grads, a, b, "mean", "hat_const_alpha", 0.5, [0.0] * len(grads)))  # fmt: skip
    embeddings = [torch.randn(1, n, device=device, dtype=torch.float64) for n in (5, 3)]
    embedding_grads = [torch.randn_like(e) for e in embeddings]
    torch.library.opcheck(torch.ops.clarena.foreach_compensate_embedding_grad_.default,
                          (embeddings, embedding_grads, 2.5, 400.0, 50.0))  # fmt: skip


def _bad_adjustment_calls():
    grad = torch.randn(4, 3)
    a, b = torch.rand(4), torch.rand(3)
    return {
        "count": (lambda: ops.foreach_scale_grad_by_measure_([grad], [a, a], [b]), ValueError,
                  "clarena: `grads`, `a`, `b` and `r` must have one entry per gradient, got 1, 2, 1 and 1"),
        "a length": (lambda: ops.foreach_scale_grad_by_measure_([grad, grad], [a, torch.rand(5)], [b, None]), ValueError,
                     "clarena: `a[1]` must be a 1-D tensor of length 4, got shape [5]"),
        "b length": (lambda: ops.foreach_scale_grad_by_measure_([grad], [a], [torch.rand(2)]), ValueError,
                     "clarena: `b[0]` must be a 1-D tensor of length 3, got shape [2]"),
        "b of a bias": (lambda: ops.foreach_scale_grad_by_measure_([torch.randn(4)], [a], [b]), ValueError,
                        "clarena: `b[0]` is given, so the weight shape must have at least two dimensions (out, in, ...), got [4]"),
        "device": (lambda: ops.foreach_scale_grad_by_measure_([grad], [a.to("meta")], [b]), ValueError,
                   "clarena: `a[0]` must be on the device of `grads[0]` (cpu), got meta"),
        "grad dtype": (lambda: ops.foreach_scale_grad_by_measure_([grad, grad.double()], [a, a.double()], [b, b.double()]),
                       TypeError, "clarena: `grads[1]` must have the dtype of `grads[0]` (torch.float32), got torch.float64"),
        "b dtype": (lambda: ops.foreach_scale_grad_by_measure_([grad], [a], [b.double()]), TypeError,
                    "clarena: `b[0]` must have the dtype of `a[0]` (torch.float32), got torch.float64"),
    }  # fmt: skip


@requires_native
@pytest.mark.parametrize("case", list(_bad_adjustment_calls()))
def test_adjustment_refusals_are_the_same_on_both_paths(case):
    call, error, message = _bad_adjustment_calls()[case]
    assert_refused_on_both_paths(call, error, message)


@requires_native
def test_the_kernel_itself_names_the_entry_and_scales_nothing_on_a_refusal():
    grads = [torch.randn(4, 3), torch.randn(2, 4)]
    before = [grad.clone() for grad in grads]
    with pytest.raises(ValueError, match=r"^clarena: `b\[1\]` must be a 1-D tensor of length 4, got shape \[3\]$"):
        torch.ops.clarena.foreach_scale_grad_by_measure_(
            grads, [torch.rand(4), torch.rand(2)], [torch.rand(3), torch.rand(3)], "min", "hat", 0.0, [0.0, 0.0])
    with pytest.raises(ValueError, match=r"`r\[1\]` must be positive for the 'adahat' rate"):
        torch.ops.clarena.foreach_scale_grad_by_measure_(
            grads, [torch.rand(4), torch.rand(2)], [None, None], "min", "adahat", 0.0, [0.5, 0.0])
    for grad, old in zip(grads, before):
        assert_identical(grad, old)


@requires_native
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compensation_is_one_native_call_equal_to_the_reference(device, dtype):
    embeddings = [torch.randn(1, n, device=device, dtype=dtype) * 3 for n in (256, 100, 7)]
    grads = [torch.randn_like(e) for e in embeddings]
    expected = [grad.clone() for grad in grads]
    reference.foreach_compensate_embedding_grad_(embeddings, expected, 37.5, 400.0, 50.0)
    called = ops_called(lambda: ops.foreach_compensate_embedding_grad_(embeddings, grads, 37.5, 400.0, 50.0))
    assert "clarena::foreach_compensate_embedding_grad_" in called and "aten::cosh" not in called
    tolerance = 1e-6 if dtype == torch.float32 else 1e-12
    for mine, theirs in zip(grads, expected):
        torch.testing.assert_close(mine, theirs, rtol=tolerance, atol=tolerance)


@requires_native
@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda e: ([e[0]], [e[0], e[0]], 2.0), ValueError, "clarena: `grads` must have one entry per embedding (1), got 2"),
        (lambda e: (e, [e[0], e[1][:, :2]], 2.0), ValueError,
         "clarena: `grads[1]` must have the shape of its embedding (1, 3), got (1, 2)"),
        (lambda e: (e, [e[0], e[1].to("meta")], 2.0), ValueError,
         "clarena: `grads[1]` must be on the device of `embeddings[1]` (cpu), got meta"),
        (lambda e: (e, [e[0], e[1].double()], 2.0), TypeError,
         "clarena: `grads[1]` must have the dtype of `embeddings[1]` (torch.float32), got torch.float64"),
        (lambda e: (e, e, 0.0), ValueError, "clarena: `scale` must be non-zero (the compensation divides by it)"),
    ],
)  # fmt: skip
def test_compensation_refusals_are_the_same_on_both_paths(make, error, message):
    embeddings, grads, scale = make([torch.randn(1, 4), torch.randn(1, 3)])
    assert_refused_on_both_paths(lambda: ops.foreach_compensate_embedding_grad_(embeddings, grads, scale, 400.0, 50.0),
                                 error, message)  # fmt: skip


# Every CPU kernel that runs through the capability dispatch, on fixed inputs; prints a digest of
# the raw bytes of every result (and the results themselves to the file given).
_KERNELS = textwrap.dedent(
    """
    import sys, torch
    import _clarena_backbones_hook
    from clarena import ops
    results = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        a, b = torch.rand(64, dtype=dtype), torch.rand(130, dtype=dtype)
        for aggregation in ("min", "max", "mean"):
            results[f"measure {aggregation} {dtype}"] = ops.parameter_measure(a, b, (64, 130, 3, 3), aggregation)
            for rate, alpha, r in (("hat", None, None), ("hat_const_alpha", 0.3, None), ("adahat", None, 0.7)):
                grads = [torch.randn(64, 130, 3, 3, dtype=dtype), torch.randn(64, 130, dtype=dtype), torch.randn(64, dtype=dtype)]
                ops.foreach_scale_grad_by_measure_(grads, [a, a, a], [b, b, None], aggregation, rate, alpha, r)
                results[f"scale {aggregation} {rate} {dtype}"] = grads
        x = torch.randn(8, 64, 5, 5, dtype=dtype, requires_grad=True)
        mask = torch.rand(64, dtype=dtype, requires_grad=True)
        out = ops.unit_mask(x, mask, True)
        out.backward(torch.randn_like(out))
        results[f"unit_mask {dtype}"] = [out.detach(), x.grad, mask.grad]
        weight = torch.randn(64, 130, dtype=dtype, requires_grad=True)
        wmask = torch.rand(64, 130, dtype=dtype, requires_grad=True)
        masked = ops.masked_weight(weight, wmask)
        masked.backward(torch.randn_like(masked))
        results[f"masked_weight {dtype}"] = [masked.detach(), weight.grad, wmask.grad]
    torch.save(results, sys.argv[1])
    """
)


def _run_kernels(tmp_path, capability):
    output = tmp_path / f"{capability}.pt"
    env = dict(os.environ, CLARENA_CPU_CAPABILITY=capability, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, "-c", _KERNELS, str(output)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return torch.load(output)


@requires_native
def test_every_vector_width_gives_the_same_bits_as_the_reference(tmp_path):
    """The kernels compiled for SSE2, AVX2 and AVX-512F agree bit for bit (a width the CPU lacks
    runs the widest it has, so this machine's copies are all compared), and the measure and the
    scaling equal the reference exactly."""
    runs = {capability: _run_kernels(tmp_path, capability) for capability in ("default", "avx2", "avx512")}
    baseline = runs["default"]
    for capability, results in runs.items():
        assert results.keys() == baseline.keys()
        for key, value in results.items():
            values = value if isinstance(value, list) else [value]
            expected = baseline[key] if isinstance(baseline[key], list) else [baseline[key]]
            for mine, theirs in zip(values, expected):
                assert torch.equal(mine.view(-1).view(torch.uint8), theirs.view(-1).view(torch.uint8)), (capability, key)
    with ops.use_reference():
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            a, b = torch.rand(64, dtype=dtype), torch.rand(130, dtype=dtype)
            for aggregation in MODES:
                assert_identical(baseline[f"measure {aggregation} {dtype}"], ops.parameter_measure(a, b, (64, 130, 3, 3), aggregation))


@requires_native
def test_an_unknown_capability_is_refused_by_name():
    code = "import torch, _clarena_backbones_hook\nfrom clarena import ops\nops.parameter_measure(torch.rand(3), None, (3, 2))"
    env = dict(os.environ, CLARENA_CPU_CAPABILITY="sse9", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "CLARENA_CPU_CAPABILITY must be 'default', 'avx2' or 'avx512', got 'sse9'" in done.stderr
