"""Every backbone class in every stage: the native path runs the native kernels and equals the
reference path, which runs none."""

import copy

import pytest
import torch
from op_helpers import ops_called
from sweep_helpers import configurations, stage_calls, tensors_of

from clarena import ops
from clarena.backbones import HATMaskBackbone, WSNMaskBackbone

AGGREGATION = "mean"

pytestmark = pytest.mark.usefixtures("single_thread")


def native_ops_of_stage(model, stage: str) -> set[str]:
    """The clarena ops a stage's forward and backward run on the native path."""
    if isinstance(model, WSNMaskBackbone):
        gate = {"clarena::percentile_masks"} if stage in ("train", "validation") else set()
        return gate | {"clarena::masked_weight", "clarena::masked_weight_backward"}
    if isinstance(model, HATMaskBackbone):
        return {"clarena::unit_mask", "clarena::unit_mask_backward"}
    return set()


def clarena_ops(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith("clarena::")}


def assert_same_grads(model, reference, what: str) -> None:
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), (what, name)
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{what} {name}: {m}")


def adjust_gradients(model) -> list[torch.Tensor]:
    """HAT's gradient adjustment with spread unit measures; returns the parameter-wise measures."""
    generator = torch.Generator().manual_seed(5)
    measure = {name: torch.rand(model.get_layer_by_name(name).weight.size(0), generator=generator) for name in model.weighted_layer_names}
    weight_measures = [model.get_layer_measure_parameter_wise(measure, name, AGGREGATION)[0] for name in model.weighted_layer_names]
    model.clip_grad_by_measure_(measure, AGGREGATION, "adahat", r=0.3)
    return weight_measures


@pytest.mark.parametrize("cls, kwargs, input_shape", list(configurations()))
def test_every_stage_native_equals_reference(cls, kwargs, input_shape):
    torch.manual_seed(0)
    model = cls(**kwargs)
    calls = stage_calls(model)
    reference = copy.deepcopy(model)
    x = torch.randn(input_shape)
    for stage, call in calls:
        model.zero_grad()
        reference.zero_grad()
        outputs = []

        def run_native():
            outputs.append(call(model, x))
            outputs[-1][0].square().mean().backward()

        def run_reference():
            with ops.use_reference():
                outputs.append(call(reference, x))
                outputs[-1][0].square().mean().backward()

        assert clarena_ops(ops_called(run_native)) == native_ops_of_stage(model, stage), stage
        assert not clarena_ops(ops_called(run_reference)), stage
        native_tensors, reference_tensors = tensors_of(outputs[0]), tensors_of(outputs[1])
        assert len(native_tensors) == len(reference_tensors), stage
        for actual, expected in zip(native_tensors, reference_tensors):
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{stage}: {m}")
        assert_same_grads(model, reference, stage)
    if isinstance(model, HATMaskBackbone):
        # (the foreach op may dispatch the per-layer op in turn)
        adjustment_ops = {"clarena::parameter_measure", "clarena::foreach_scale_grad_by_measure_"}
        native_measures, reference_measures = [], []
        assert adjustment_ops <= clarena_ops(ops_called(lambda: native_measures.extend(adjust_gradients(model))))
        with ops.use_reference():
            assert not clarena_ops(ops_called(lambda: reference_measures.extend(adjust_gradients(reference))))
        for actual, expected in zip(native_measures, reference_measures, strict=True):
            torch.testing.assert_close(actual, expected, rtol=0, atol=0)
        assert_same_grads(model, reference, "adjusted")
