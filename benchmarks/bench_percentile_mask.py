"""Group 1: WSN's gate, `clarena.ops.percentile_mask(score, 0.7)`.

Reference: `torch.quantile` (a sort) and a compare; native: radix select and one compare pass.
The limit is a `clone()` of the same scores (one read, one write: memory bound). At 2^24 + 1
elements torch.quantile refuses the input, so only the native kernel (and the limit) run.
"""

import gate_workloads as gw
import pytest

import workloads as wl


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("size", ["2^20", "2^23"])
def test_percentile_mask(run_workload, size, impl):
    run_workload(wl.percentile_mask(size, impl), wl.group_percentile_mask(size), n=wl.PERCENTILE_SIZES[size])


@pytest.mark.parametrize("impl", ["native", "limit"])
def test_percentile_mask_beyond_quantile_limit(run_workload, impl):
    size = "2^24+1"
    run_workload(
        wl.percentile_mask(size, impl),
        wl.group_percentile_mask(size),
        n=wl.PERCENTILE_SIZES[size],
        reference_refuses=wl.reference_refuses(size),
    )


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("kind", ["cold", "warm", "batched"])
def test_percentile_mask_cold_warm_batched(run_workload, kind, impl):
    """Cold vs clone + sum; warm after an SGD step vs clone; all WSNMaskResNet18 scores warm."""
    run_workload(gw.gate(kind, impl), gw.group_gate(kind))
