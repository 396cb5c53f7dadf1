"""One training step and one test-stage forward (step_workloads.py): HAT and WSN MLP (batch 128)
and ResNet-18 (3x32x32, batch 64) on both paths beside the plain backbones; HAT at the `s` of a
mid-epoch batch, named in the group."""

import pytest

import step_workloads as sw


def _params(variants):
    return [pytest.param(name, impl, id=f"{name}-{impl}") for name, impl in variants]


@pytest.mark.parametrize(("backbone", "impl"), _params(sw.STEP_VARIANTS["mlp"]))
def test_train_step_mlp(run_workload, backbone, impl):
    run_workload(sw.train_step("mlp", backbone, impl), sw.group_train_step("mlp"))


@pytest.mark.parametrize(("backbone", "impl"), _params(sw.STEP_VARIANTS["resnet18"]))
def test_train_step_resnet18(run_workload, backbone, impl):
    run_workload(sw.train_step("resnet18", backbone, impl), sw.group_train_step("resnet18"))


@pytest.mark.parametrize(("backbone", "impl"), _params(sw.TEST_VARIANTS))
def test_test_forward_mlp(run_workload, backbone, impl):
    run_workload(sw.stored_mask_forward(backbone, impl), sw.group_test_forward())
