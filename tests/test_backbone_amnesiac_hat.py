"""AmnesiacHAT backbones: backup streams routed by stored masks, against CLArena's routing rule."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from backbone_helpers import (
    MLP_ARGS,
    S_MAX,
    assert_close_dicts,
    clarena_hat_mask,
    grads,
    images,
    randomize_batch_norm,
    randomize_embeddings,
    vectors,
)

import clarena.backbones as B
from clarena.backbones.resnet import ResNetBase, ResNetBlockLarge, ResNetBlockSmall

pytestmark = pytest.mark.usefixtures("single_thread")


def prepared(backbone, backups=(1,)):
    """Tasks 1..n finished (masks stored), the next one set up with backups of `backups`."""
    randomize_batch_norm(backbone)
    for task in range(1, max(backups) + 1):
        backbone.setup_task_id(task)
        randomize_embeddings(backbone, seed=10 + task)
        backbone.store_mask()
        backbone.store_bn()
    backbone.setup_task_id(max(backups) + 1)
    randomize_embeddings(backbone, seed=99)
    backbone.instantiate_backup_backbones(list(backups))
    for task in backups:
        randomize_batch_norm(backbone.backup_backbones[f"{task}"], seed=task)
    return backbone


def mlp(batch_normalization="shared", dropout=None, **kwargs):
    torch.manual_seed(0)
    return B.AmnesiacHATMLP(
        **MLP_ARGS, gate="sigmoid", batch_normalization=batch_normalization, dropout=dropout, **kwargs
    )


def route(mask, backup, main):
    mask = mask.view(1, -1, *([1] * (main.dim() - 2)))
    return mask * backup + (1 - mask) * main


def clarena_mlp_with_backups(backbone, x, mask):
    """CLArena's AmnesiacHATMLP 'train_with_backup' (BN shared or absent, ReLU, optional dropout)."""
    x = x.view(x.size(0), -1)
    streams = {task: x for task in backbone.backup_task_ids}
    bn = backbone.fc_bn if backbone.batch_normalization else None
    for index, name in enumerate(backbone.weighted_layer_names):
        fc = backbone.fc[index]
        x = fc(x)
        x = bn[index](x) if bn is not None else x
        x = torch.relu(x * mask[name])
        if backbone.dropout:
            x = backbone.fc_dropout[index](x)
        for task in backbone.backup_task_ids:
            backup = backbone.backup_backbones[f"{task}"]
            main_out, backup_out = fc(streams[task]), backup.fc[index](streams[task])
            if bn is not None:
                main_out, backup_out = bn[index](main_out), backup.fc_bn[index](backup_out)
            z = torch.relu(route(backbone.masks[task][name], backup_out, main_out) * mask[name])
            streams[task] = backbone.fc_dropout[index](z) if backbone.dropout else z
    return x, streams


# -------------------------------------------------------------------------------------------- MLP
def test_mlp_attributes_and_backups():
    backbone = mlp("independent")
    assert backbone.original_backbone_class is B.MLP and backbone.disable_unlearning is False
    assert backbone.backup_state_dicts == {}
    assert backbone.backup_backbone_kwargs["batch_normalization"] == "independent"
    backbone.setup_task_id(3)
    backbone.instantiate_backup_backbones([1, 2])
    assert backbone.backup_task_ids == [1, 2] and list(backbone.backup_backbones) == ["1", "2"]
    assert all(type(b) is B.MLP and len(b.fc_bn) == 3 for b in backbone.backup_backbones.values())
    first = backbone.backup_backbones["1"]
    backbone.instantiate_backup_backbones([1])
    assert backbone.backup_backbones["1"] is not first and list(backbone.backup_backbones) == ["1"]
    disabled = mlp(disable_unlearning=True)
    assert not hasattr(disabled, "backup_backbone_kwargs") and not hasattr(disabled, "backup_state_dicts")


@pytest.mark.parametrize("batch_normalization, dropout", [("shared", None), (None, 0.3)])
def test_mlp_train_with_backup_matches_clarena(batch_normalization, dropout):
    backbone = prepared(mlp(batch_normalization, dropout), backups=(1, 2))
    backbone.train()
    reference = copy.deepcopy(backbone)
    x = vectors()
    torch.manual_seed(5)
    feature, backup_features, mask, activations = backbone(x, "train_with_backup", S_MAX, 3, 10)
    expected_mask = clarena_hat_mask(reference, "train", S_MAX, 3, 10)
    torch.manual_seed(5)  # the same dropout draws: main stream first, then each backup, per layer
    expected, expected_backups = clarena_mlp_with_backups(reference, x, expected_mask)
    assert_close_dicts(mask, expected_mask)
    torch.testing.assert_close(feature, expected)
    assert list(activations) == backbone.weighted_layer_names
    assert_close_dicts(backup_features, expected_backups)
    loss = feature.sum() + sum(f.pow(2).sum() for f in backup_features.values())
    loss.backward()
    (expected.sum() + sum(f.pow(2).sum() for f in expected_backups.values())).backward()
    assert_close_dicts(grads(backbone), grads(reference), rtol=1e-4, atol=1e-5)
    # a backup's weights serve only the units of its task
    unused = backbone.masks[1]["fc/1"] == 0
    assert torch.all(backbone.backup_backbones["1"].fc[1].weight.grad[unused] == 0)
    assert backbone.backup_backbones["1"].fc[1].weight.grad[~unused].abs().sum() > 0


def test_mlp_other_stages_are_hat_mask_mlp():
    backbone = prepared(mlp("independent"))
    hat = B.HATMaskMLP(**MLP_ARGS, gate="sigmoid", batch_normalization="independent")
    hat.load_state_dict({k: v for k, v in backbone.state_dict().items() if not k.startswith("backup_")})
    hat.setup_task_id(2)
    backbone.eval()
    hat.eval()
    x = vectors()
    for stage, kwargs in [("train", dict(s_max=S_MAX, batch_idx=2, num_batches=5)), ("validation", dict(s_max=S_MAX)),
                          ("test", dict(test_task_id=1)), ("unlearning_test", dict(test_task_id=1))]:  # fmt: skip
        output = backbone(x, stage, **kwargs)
        assert len(output) == 3
        torch.testing.assert_close(output[0], hat(x, stage, **kwargs)[0])


def test_mlp_train_with_backup_edge_cases():
    fresh = mlp()
    fresh.setup_task_id(1)
    feature, backups, mask, _ = fresh(vectors(), "train_with_backup", S_MAX, 1, 4)
    assert backups == {}  # no backups instantiated yet
    with pytest.raises(ValueError, match="disable_unlearning"):
        mlp(disable_unlearning=True)(vectors(), "train_with_backup", S_MAX, 1, 4)
    with pytest.raises(ValueError, match="`stage`.*'train_with_backup'"):
        fresh(vectors(), "train_backup", S_MAX, 1, 4)


def test_mlp_state_dict_round_trip_builds_the_backups():
    backbone = prepared(mlp("independent"), backups=(1, 2))
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = mlp("independent")
    fresh.load_state_dict(state, strict=True)
    assert fresh.backup_task_ids == [1, 2] and list(fresh.backup_backbones) == ["1", "2"]
    backbone.eval()
    fresh.eval()
    x = vectors()
    expected_feature, expected_backups, _, _ = backbone(x, "train_with_backup", S_MAX, 3, 10)
    feature, backups, _, _ = fresh(x, "train_with_backup", S_MAX, 3, 10)
    torch.testing.assert_close(feature, expected_feature, rtol=0, atol=0)
    assert_close_dicts(backups, expected_backups, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- ResNet
def through(layers, z):
    """`z` through those of `layers` that are not None, in order."""
    for layer in layers:
        if layer is not None:
            z = layer(z)
    return z


def clarena_resnet_backup_stream(backbone, task, x, mask):
    """CLArena's AmnesiacHAT ResNet backup stream of `task` (BN shared, ReLU)."""
    backup = backbone.backup_backbones[f"{task}"]
    stored = backbone.masks[task]

    def routed(name, main, other, main_bn, other_bn, z):
        """M * BN_b(backup(z)) + (1 - M) * BN(main(z)); a None layer is the identity."""
        main_out = through((main, main_bn), z)  # first, as the backbone (the same gradient sums)
        return route(stored[name], through((other, other_bn), z), main_out)

    def unit(name, z):
        return torch.relu(z * mask[name].view(1, -1, 1, 1))

    z = unit("conv1", routed("conv1", backbone.conv1, backup.conv1, backbone.conv_bn1, backup.conv_bn1, x))
    z = backbone.maxpool(z)
    for block, other in zip(backbone._iter_blocks(), backup._iter_blocks()):
        block_input = z
        count = len(block.conv_layer_names)
        for k, name in enumerate(block.conv_layer_names, 1):
            conv, bn = f"conv{k}", f"conv_bn{k}"
            z = routed(name, block._modules[conv], other._modules[conv], block._modules[bn], other._modules[bn], z)
            if k == count:
                # the shortcut conv, when there is one, is routed and masked by its own masks
                shortcut = block.shortcut_layer_name
                identity = routed(shortcut or name, block.identity_downsample, other.identity_downsample, None, None, block_input)
                z = z + (identity if shortcut is None else identity * mask[shortcut].view(1, -1, 1, 1))
            z = unit(name, z)
    return F.adaptive_avg_pool2d(z, 1).flatten(1)


@pytest.mark.parametrize("mask_shortcuts", [True, False])
def test_resnet_train_with_backup_matches_clarena(mask_shortcuts):
    """With `mask_shortcuts=False`, CLArena's routing: a shortcut by its block's last-conv mask, unmasked."""
    torch.manual_seed(0)
    backbone = B.AmnesiacHATResNet18(3, 512, "sigmoid", batch_normalization="shared", mask_shortcuts=mask_shortcuts)
    backbone = prepared(backbone)
    assert any(name.endswith("identity_downsample") for name in backbone.masks[1]) is mask_shortcuts
    assert backbone.original_backbone_class is ResNetBase
    assert backbone.backup_backbone_kwargs["building_block_type"] is ResNetBlockSmall
    assert backbone.backup_backbone_kwargs["batch_normalization"] is True
    backbone.train()
    reference = copy.deepcopy(backbone)
    x = images()
    feature, backup_features, mask, activations = backbone(x, "train_with_backup", S_MAX, 3, 10)
    expected_mask = clarena_hat_mask(reference, "train", S_MAX, 3, 10)
    hat_feature, hat_mask, hat_activations = reference(x, "train", S_MAX, 3, 10)  # main path = HAT's
    expected_backup = clarena_resnet_backup_stream(reference, 1, x, expected_mask)
    torch.testing.assert_close(feature, hat_feature)
    assert_close_dicts(mask, expected_mask)
    assert list(backup_features) == [1]
    torch.testing.assert_close(backup_features[1], expected_backup)
    backup_features[1].pow(2).sum().backward()
    expected_backup.pow(2).sum().backward()
    actual, expected = grads(backbone), grads(reference)
    for key in [k for k in expected if k.startswith("backup_backbones.") or ".conv" in k]:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-3, atol=1e-5)


def test_resnet_other_stages_and_bottleneck_backups():
    backbone = B.AmnesiacHATResNet18(3, 512, "sigmoid")
    backbone.setup_task_id(1)
    output = backbone(images(), "validation", s_max=S_MAX)
    assert len(output) == 3 and output[0].shape == (2, 512)
    large = B.AmnesiacHATResNet50(3, 2048, "sigmoid", batch_normalization="independent")
    assert large.backup_backbone_kwargs["building_block_type"] is ResNetBlockLarge
    assert large.backup_backbone_kwargs["building_block_nums"] == (3, 4, 6, 3)
    assert large.backup_backbone_kwargs["batch_normalization"] is True
