"""Groups 4 and 5: whole training steps and test-stage forwards of the masked backbones.

Group 4, one training step (forward, cross-entropy on a linear head, backward, the algorithm's
gradient adjustment, SGD step) of HATMaskMLP / WSNMaskMLP 784-256-100-64 at batch 128 and of
HATMaskResNet18 / WSNMaskResNet18 on 3x32x32 at batch 64, each on the reference and the native
path, beside the plain baseline of the same size (CLMLP, CLResNet18 without BatchNorm), which
uses no clarena op and runs once.

Group 5, the test-stage forward with stored masks of HATMaskMLP and WSNMaskMLP at batch 128 on
both paths (and CLMLP's forward for scale).
"""

import pytest

import workloads as wl


def _params(variants):
    return [pytest.param(name, impl, id=f"{name}-{impl}") for name, impl in variants]


@pytest.mark.parametrize(("backbone", "impl"), _params(wl.STEP_VARIANTS["mlp"]))
def test_train_step_mlp(run_workload, backbone, impl):
    run_workload(wl.train_step("mlp", backbone, impl), wl.group_train_step("mlp"))


@pytest.mark.parametrize(("backbone", "impl"), _params(wl.STEP_VARIANTS["resnet18"]))
def test_train_step_resnet18(run_workload, backbone, impl):
    run_workload(wl.train_step("resnet18", backbone, impl), wl.group_train_step("resnet18"))


@pytest.mark.parametrize(("backbone", "impl"), _params(wl.TEST_VARIANTS))
def test_test_forward_mlp(run_workload, backbone, impl):
    run_workload(wl.stored_mask_forward(backbone, impl), wl.group_test_forward())
