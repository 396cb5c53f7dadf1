"""MLP and CLMLP: construction, state_dict keys, forward against CLArena's layer order."""

import pytest
import torch
import torch.nn.functional as F
from backbone_helpers import MLP_ARGS, expected_mlp_keys, shapes, vectors
from torch import nn

import clarena.backbones as B

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("cls", [B.MLP, B.CLMLP])
@pytest.mark.parametrize("batch_normalization", [False, True])
def test_state_dict_keys(cls, batch_normalization):
    backbone = cls(**MLP_ARGS, batch_normalization=batch_normalization)
    assert shapes(backbone.state_dict()) == expected_mlp_keys(batch_normalization)
    assert shapes(cls(**MLP_ARGS, bias=False).state_dict()) == expected_mlp_keys(False, bias=False)


def test_attributes():
    backbone = B.MLP(**MLP_ARGS, dropout=0.2)
    assert (backbone.input_dim, backbone.hidden_dims, backbone.output_dim) == (20, [32, 16], 8)
    assert backbone.num_fc_layers == 3
    assert backbone.activation is True and backbone.dropout is True and backbone.batch_normalization is False
    assert not hasattr(backbone, "fc_bn")
    assert [type(m) for m in backbone.fc_activation] == [nn.ReLU] * 3
    assert all(m.p == 0.2 for m in backbone.fc_dropout)
    bare = B.MLP(**MLP_ARGS, activation_layer=None)
    assert bare.activation is False and not hasattr(bare, "fc_activation") and not hasattr(bare, "fc_dropout")


def test_single_layer_when_no_hidden_dims():
    backbone = B.MLP(input_dim=5, hidden_dims=[], output_dim=3)
    assert backbone.weighted_layer_names == ["fc/0"]
    assert backbone.fc[0].weight.shape == (3, 5)


@pytest.mark.parametrize("activation_layer", [nn.ReLU, nn.Tanh, None])
def test_forward_matches_clarena_layer_order(activation_layer):
    """Linear -> BN -> activation -> record -> dropout, the output layer included."""
    torch.manual_seed(0)
    backbone = B.MLP(**MLP_ARGS, activation_layer=activation_layer, batch_normalization=True, dropout=0.5).eval()
    x = vectors().view(6, 4, 5)  # flattened by the backbone
    feature, activations = backbone(x, stage="test")
    z = x.view(6, -1)
    expected = {}
    for i, name in enumerate(backbone.weighted_layer_names):
        bn = backbone.fc_bn[i]
        z = F.linear(z, backbone.fc[i].weight, backbone.fc[i].bias)
        z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        z = z if activation_layer is None else activation_layer()(z)
        expected[name] = z
    torch.testing.assert_close(feature, z)
    assert activations.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(activations[name], expected[name])
    assert feature.shape == (6, 8)


def test_dropout_applies_after_recording():
    torch.manual_seed(0)
    backbone = B.MLP(**MLP_ARGS, dropout=0.5).train()
    feature, activations = backbone(vectors(n=32))
    recorded = activations["fc/2"]
    kept = feature != 0
    # the recorded activation is taken before dropout: kept units are it scaled by 1 / (1 - p)
    torch.testing.assert_close(feature[kept], recorded[kept] * 2)
    assert ((feature == 0) & (recorded > 0)).any()


def test_clmlp_forward_takes_task_id():
    torch.manual_seed(0)
    plain = B.MLP(**MLP_ARGS)
    continual = B.CLMLP(**MLP_ARGS)
    continual.load_state_dict(plain.state_dict())
    x = vectors()
    feature, activations = continual(x, "train", task_id=3)
    torch.testing.assert_close(feature, plain(x)[0])
    assert list(activations) == ["fc/0", "fc/1", "fc/2"]
    assert continual(x)[0].shape == (6, 8)


def test_positional_arguments():
    backbone = B.CLMLP(20, [32], 8, nn.Tanh, True, False, 0.1)
    assert isinstance(backbone.fc_activation[0], nn.Tanh)
    assert backbone.batch_normalization is True and backbone.fc[0].bias is None and backbone.fc_dropout[0].p == 0.1


def test_gradients_reach_every_parameter():
    backbone = B.MLP(**MLP_ARGS, batch_normalization=True)
    backbone(vectors())[0].pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())
