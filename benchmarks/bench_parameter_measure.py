"""HAT's parameter-wise measures (hat_workloads.py): the gradient adjustment over every layer of
HATMaskMLP and HATMaskResNet18 against one `mul_` pass, and the measure of a 4096x4096 Linear and
a 512x512x3x3 conv weight against one zero-filled allocation."""

import pytest

import hat_workloads as hw


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("backbone", list(hw.HAT_BACKBONES))
def test_hat_adjustment(run_workload, backbone, impl):
    run_workload(hw.hat_adjustment(backbone, impl), hw.group_hat_adjustment(backbone), backbone=backbone)


@pytest.mark.parametrize("impl", ["reference", "native", "limit"])
@pytest.mark.parametrize("kind", list(hw.MEASURE_SHAPES))
def test_parameter_measure(run_workload, kind, impl):
    run_workload(hw.parameter_measure(kind, impl), hw.group_parameter_measure(kind))
