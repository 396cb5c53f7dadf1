"""The `clarena-hat` and `clarena-wsn` Mammoth models, driven as Mammoth's training loop drives them.

Against the stand-in's `ContinualModel` (Mammoth's counters and hooks): they learn each task,
and a finished task's task-IL logits do not move while later tasks train.
"""

import pytest
import torch

from clarena.algorithms.wsn import cumulative_mask
from clarena.mammoth import BACKBONES
from mammoth_helpers import (
    SyntheticTasks,
    cross_entropy,
    learn_task,
    model_args,
    task_il_accuracy,
    task_il_logits,
)

FAMILIES = {"clarena-hat": "clarena-hat-mlp", "clarena-wsn": "clarena-wsn-mlp"}


def build_model(models_package, model_name: str, backbone_name: str | None = None, **args):
    data = SyntheticTasks()
    net = BACKBONES[backbone_name or FAMILIES[model_name]](
        num_classes=data.N_CLASSES, input_size=16, mlp_hidden_size=32
    )
    model_class = models_package.REGISTERED_MODELS[model_name]["class"]
    return model_class(net, cross_entropy, model_args(**args), None, data), data


@pytest.mark.parametrize("model_name", sorted(FAMILIES))
def test_earlier_tasks_keep_their_task_il_logits(mammoth, model_name):
    _, models_package = mammoth
    model, data = build_model(models_package, model_name)
    learn_task(model, data, 0)
    first = task_il_logits(model, data, 0)
    for task in (1, 2):
        learn_task(model, data, task)
        torch.testing.assert_close(task_il_logits(model, data, 0), first, rtol=0, atol=0)
    for task in range(3):
        assert task_il_accuracy(model, data, task) >= 0.9, (model_name, task)


@pytest.mark.parametrize("model_name", sorted(FAMILIES))
def test_without_the_protection_the_first_task_moves(mammoth, monkeypatch, model_name):
    """The check above can fail: with the gradient protection switched off, task 0's logits change."""
    _, models_package = mammoth
    model, data = build_model(models_package, model_name)
    if model_name == "clarena-hat":
        monkeypatch.setattr(type(model.net.backbone), "clip_grad_by_measure_", lambda self, *a, **k: None)
    else:
        monkeypatch.setattr(type(model.net.backbone), "clip_grad_by_mask_", lambda self, *a, **k: None)
    learn_task(model, data, 0)
    first = task_il_logits(model, data, 0)
    learn_task(model, data, 1)
    assert not torch.equal(task_il_logits(model, data, 0), first)


@pytest.mark.parametrize("model_name", sorted(FAMILIES))
def test_task_aware_forward_leaves_only_the_tasks_classes(mammoth, model_name):
    _, models_package = mammoth
    model, data = build_model(models_package, model_name)
    assert model.COMPATIBILITY == ["task-il"]  # so Mammoth evaluates it as model(x, task_id)
    learn_task(model, data, 0)
    learn_task(model, data, 1)
    logits = task_il_logits(model, data, 1)
    assert torch.isinf(logits[:, :2]).all() and torch.isinf(logits[:, 4:]).all()
    assert torch.isfinite(logits[:, 2:4]).all()


def test_hat_stores_one_mask_per_task_and_wsn_freezes_what_they_use(mammoth):
    _, models_package = mammoth
    hat, data = build_model(models_package, "clarena-hat")
    learn_task(hat, data, 0)
    learn_task(hat, data, 1)
    assert sorted(hat.net.backbone.masks) == [0, 1]
    wsn, data = build_model(models_package, "clarena-wsn")
    learn_task(wsn, data, 0)
    learn_task(wsn, data, 1)
    assert sorted(wsn.net.backbone.masks) == [0, 1]
    weight_mask, _ = cumulative_mask(wsn.net.backbone)
    layer = wsn.net.backbone.fc[0]
    # about half the weights per task: some, but not all, are taken after two tasks
    assert 0 < weight_mask["fc/0"].sum() < layer.weight.numel()


@pytest.mark.parametrize("model_name", sorted(FAMILIES))
def test_a_saved_model_tests_the_same_in_a_fresh_backbone(mammoth, model_name):
    _, models_package = mammoth
    model, data = build_model(models_package, model_name)
    learn_task(model, data, 0)
    learn_task(model, data, 1)
    fresh, _ = build_model(models_package, model_name)
    fresh.net.load_state_dict(model.net.state_dict())
    for task in (0, 1):
        torch.testing.assert_close(task_il_logits(fresh, data, task), task_il_logits(model, data, task))


@pytest.mark.parametrize(("model_name", "wrong_backbone"), [("clarena-hat", "clarena-wsn-mlp"), ("clarena-wsn", "clarena-mlp")])
def test_models_refuse_a_backbone_they_cannot_drive(mammoth, model_name, wrong_backbone):
    _, models_package = mammoth
    with pytest.raises(ValueError, match=f"--backbone {model_name}-mlp"):
        build_model(models_package, model_name, wrong_backbone)


@pytest.mark.parametrize("model_name", sorted(FAMILIES))
def test_models_refuse_weight_decay(mammoth, model_name):
    _, models_package = mammoth
    with pytest.raises(ValueError, match="--optim_wd"):
        build_model(models_package, model_name, optim_wd=5e-4)


def test_hat_model_adds_its_arguments_to_mammoths_parser(mammoth):
    import argparse

    _, models_package = mammoth
    parser = models_package.REGISTERED_MODELS["clarena-hat"]["class"].get_parser(argparse.ArgumentParser())
    args = parser.parse_args(["--hat_reg", "0.5"])
    assert args.hat_reg == 0.5 and args.hat_clamp == 50.0


class ImageTasks(SyntheticTasks):
    """The same tasks as 1x4x4 images, for the ResNet-18 backbones."""

    def task_data(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().task_data(task)
        return x.view(-1, 1, 4, 4), y


@pytest.mark.parametrize(("model_name", "backbone_name"), [("clarena-hat", "clarena-hat-resnet18"), ("clarena-wsn", "clarena-wsn-resnet18")])
def test_resnets_keep_the_first_tasks_logits_shortcut_convs_included(mammoth, model_name, backbone_name):
    """Every ResNet parameter sits behind a mask (the 1x1 shortcut convs too), so task 0 does not move."""
    _, models_package = mammoth
    data = ImageTasks(per_class=8)
    net = BACKBONES[backbone_name](num_classes=data.N_CLASSES, input_channels=1)
    model = models_package.REGISTERED_MODELS[model_name]["class"](net, cross_entropy, model_args(), None, data)
    learn_task(model, data, 0, epochs=1)
    first = task_il_logits(model, data, 0)
    shortcuts = {n: p.detach().clone() for n, p in net.backbone.named_parameters() if "identity_downsample" in n}
    assert shortcuts
    learn_task(model, data, 1, epochs=1)
    torch.testing.assert_close(task_il_logits(model, data, 0), first, rtol=0, atol=0)
    moved = [n for n, p in net.backbone.named_parameters() if n in shortcuts and not torch.equal(p, shortcuts[n])]
    assert moved, "task 1 trained none of the shortcut convs' free units"
