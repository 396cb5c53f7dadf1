"""The native library: build configuration, the reference switch, the fallback without it."""

import subprocess
import sys
import textwrap

import pytest
import torch
from op_helpers import ops_called, requires_native

from clarena import ops

OPS = [
    "percentile_mask",
    "percentile_masks",
    "parameter_measure",
    "scale_grad_by_measure_",
    "masked_weight",
    "masked_weight_backward",
    "unit_mask",
    "unit_mask_backward",
]


@requires_native
@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_cpu_kernel(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"clarena::{op}", "CPU")


@requires_native
def test_use_reference_switches_every_op_to_pure_pytorch_and_nests():
    score = torch.randn(100)
    call = lambda: ops.percentile_mask(score, 0.5)  # noqa: E731
    assert "clarena::percentile_mask" in ops_called(call)
    with ops.use_reference():
        with ops.use_reference():
            assert "clarena::percentile_mask" not in ops_called(call)
        assert "clarena::percentile_mask" not in ops_called(call)
    assert "clarena::percentile_mask" in ops_called(call)


def test_import_without_the_native_library_warns_once_and_runs_the_reference():
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["clarena_backbones._C"] = None  # as if the library were missing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch, clarena_backbones
            from clarena_backbones import ops
        messages = [str(w.message) for w in caught if "native library" in str(w.message)]
        assert len(messages) == 1, messages
        assert not ops.native_available()
        score = torch.tensor([3.0, 1.0, 2.0, 4.0])
        assert ops.percentile_mask(score, 0.5).tolist() == [1.0, 0.0, 0.0, 1.0]
        grad = torch.ones(2, 2)
        ops.scale_grad_by_measure_(grad, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), "min", "hat")
        assert grad.tolist() == [[0.0, 1.0], [1.0, 1.0]]
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
