"""Groups 2 and 3: HAT's parameter-wise measures.

Group 2, the gradient adjustment of mode 'hat' over all weighted layers of HATMaskMLP and
HATMaskResNet18: `backbone.clip_grad_by_measure_(measure, 'min', 'hat')`. Reference: CLArena's
formula (materialised measure and rate per layer, then `grad *= rate`); native: the gradient is
scaled in place from the unit measures. The limit is one `mul_` pass over the same gradients.

Group 3, measure materialisation `ops.parameter_measure(a, b, shape, 'min')` of a layer with a
preceding layer. The limit is one zero-filled weight-sized allocation.
"""

import pytest

import workloads as wl


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("backbone", list(wl.HAT_BACKBONES))
def test_hat_adjustment(run_workload, backbone, impl):
    run_workload(wl.hat_adjustment(backbone, impl), wl.group_hat_adjustment(backbone), backbone=backbone)


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("kind", list(wl.MEASURE_SHAPES))
def test_parameter_measure(run_workload, kind, impl):
    run_workload(wl.parameter_measure(kind, impl), wl.group_parameter_measure(kind))
