"""WSN's gate (gate_workloads.py): `percentile_mask` on one tensor of 2^20, 2^23 and 2^24 + 1
scores against a `clone()`; cold against `clone()` + `sum()`; warm after an SGD step, on one
tensor and over all of WSNMaskResNet18's scores, against clones. Reference: `torch.quantile`."""

import pytest

import gate_workloads as gw


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("size", ["2^20", "2^23"])
def test_percentile_mask(run_workload, size, impl):
    run_workload(gw.percentile_mask(size, impl), gw.group_percentile_mask(size), n=gw.PERCENTILE_SIZES[size])


@pytest.mark.parametrize("impl", ["native", "limit"])
def test_percentile_mask_beyond_quantile_limit(run_workload, impl):
    size = "2^24+1"
    run_workload(
        gw.percentile_mask(size, impl),
        gw.group_percentile_mask(size),
        n=gw.PERCENTILE_SIZES[size],
        reference_refuses=gw.reference_refuses(size),
    )


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("kind", ["cold", "warm", "batched"])
def test_percentile_mask_cold_warm_batched(run_workload, kind, impl):
    run_workload(gw.gate(kind, impl), gw.group_gate(kind))
