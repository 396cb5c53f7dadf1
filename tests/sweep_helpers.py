"""Every backbone class with the setup and the forward call of each stage it supports, shared by
the CPU sweep (native against reference) and the CUDA sweep (CUDA against CPU)."""

import pytest
import torch

import clarena.backbones as backbones
from clarena.backbones import AmnesiacHATBackbone, CLBackbone, HATMaskBackbone, WSNMaskBackbone

DEPTHS = (18, 34, 50, 101, 152)
FAMILIES = {"": {}, "CL": {}, "HATMask": {"gate": "sigmoid"}, "AmnesiacHAT": {"gate": "sigmoid"}, "WSNMask": {}}
KEEP = 0.6
S_MAX = 400.0


def configurations():
    for family, extra in FAMILIES.items():
        yield pytest.param(getattr(backbones, f"{family}MLP"), dict(input_dim=10, hidden_dims=[12, 9], output_dim=7, **extra), (4, 10), id=f"{family}MLP")
        for depth in DEPTHS:
            marks = [pytest.mark.slow] if depth > 18 else []
            yield pytest.param(getattr(backbones, f"{family}ResNet{depth}"), dict(input_channels=3, output_dim=512, **extra), (2, 3, 32, 32), id=f"{family}ResNet{depth}", marks=marks)


def stage_calls(model):
    """(stage, call) for every stage the class supports, after the setup each stage needs."""
    if isinstance(model, WSNMaskBackbone):
        model.setup_task_id(1)
        model.initialize_parameter_score("default")
        model.store_mask(1, KEEP)
        return [
            ("train", lambda m, x: m(x, "train", mask_percentage=KEEP)),
            ("validation", lambda m, x: m(x, "validation", mask_percentage=KEEP)),
            ("test", lambda m, x: m(x, "test", mask_percentage=KEEP, test_mask=1)),
        ]
    if isinstance(model, HATMaskBackbone):
        model.setup_task_id(1)
        model.store_mask()
        model.setup_task_id(2)
        model.initialize_task_embedding("N01")
        calls = [
            ("train", lambda m, x: m(x, "train", s_max=S_MAX, batch_idx=2, num_batches=5)),
            ("validation", lambda m, x: m(x, "validation", s_max=S_MAX)),
            ("test", lambda m, x: m(x, "test", test_task_id=1)),
            ("unlearning_test", lambda m, x: m(x, "unlearning_test", test_task_id=1)),
        ]
        if isinstance(model, AmnesiacHATBackbone):
            model.instantiate_backup_backbones([1])
            calls.append(("train_with_backup", lambda m, x: m(x, "train_with_backup", s_max=S_MAX, batch_idx=2, num_batches=5)))
        return calls
    if isinstance(model, CLBackbone):
        model.setup_task_id(1)
        return [(stage, lambda m, x, stage=stage: m(x, stage, task_id=1)) for stage in ("train", "validation", "test")]
    return [("any", lambda m, x: m(x))]


def tensors_of(output):
    """The tensors of a forward's return tuple (dict values included), in a fixed order."""
    found = []
    for item in output:
        values = item.values() if isinstance(item, dict) else [item]
        found += [value for value in values if isinstance(value, torch.Tensor)]
    return found
