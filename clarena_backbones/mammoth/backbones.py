"""The Mammoth backbones: factories registered under `clarena-*` names.

Their arguments are what Mammoth's registry reads from a signature into command-line options:
scalars with defaults and `Literal` choices (`num_classes` is filled in from the dataset). The
MLPs are Mammoth's `mnistmlp` layout (two hidden layers of `mlp_hidden_size` units, the second
being the feature); the ResNet-18s are CLArena's (ImageNet stem, no fully connected layer).
"""

from typing import Literal

from clarena_backbones.backbones import (
    CLMLP,
    CLResNet18,
    HATMaskMLP,
    HATMaskResNet18,
    WSNMaskMLP,
    WSNMaskResNet18,
)
from clarena_backbones.mammoth.adapter import MammothAdapter, check_positive, xavier_init_
from clarena_backbones.mammoth.hat_adapter import HATAdapter
from clarena_backbones.mammoth.wsn_adapter import WSNAdapter

RESNET18_FEATURES = 512


def _mlp_dims(input_size: int, mlp_hidden_size: int) -> dict:
    check_positive("input_size", input_size)
    check_positive("mlp_hidden_size", mlp_hidden_size)
    return {"input_dim": input_size, "hidden_dims": [mlp_hidden_size], "output_dim": mlp_hidden_size}


def _resnet_dims(input_channels: int) -> dict:
    check_positive("input_channels", input_channels)
    return {"input_channels": input_channels, "output_dim": RESNET18_FEATURES}


def clarena_mlp(num_classes: int, input_size: int = 784, mlp_hidden_size: int = 100) -> MammothAdapter:
    """`CLMLP`: an unmasked MLP on `input_size` inputs (flattened), initialised as Mammoth's `mnistmlp`.

    With PyTorch's default initialisation (biases up to 1/sqrt(fan_in)), Adam at lr 0.01 drove
    this network to chance where `mnistmlp` of the same shape learned; Mammoth's Xavier weights
    and zero biases, on every layer and the classifier, make the two the same network.
    """
    net = MammothAdapter(CLMLP(**_mlp_dims(input_size, mlp_hidden_size)), num_classes)
    xavier_init_(net)
    return net


def clarena_resnet18(num_classes: int, input_channels: int = 3) -> MammothAdapter:
    """`CLResNet18`: an unmasked ResNet-18 (with BatchNorm)."""
    return MammothAdapter(CLResNet18(**_resnet_dims(input_channels)), num_classes)


def clarena_hat_mlp(
    num_classes: int,
    input_size: int = 784,
    mlp_hidden_size: int = 100,
    s_max: float = 400.0,
    gate: Literal["sigmoid"] = "sigmoid",
) -> HATAdapter:
    """`HATMaskMLP`: every layer's units gated by the task's hard attention mask."""
    return HATAdapter(HATMaskMLP(gate=gate, **_mlp_dims(input_size, mlp_hidden_size)), num_classes, s_max)


def clarena_hat_resnet18(
    num_classes: int, input_channels: int = 3, s_max: float = 400.0, gate: Literal["sigmoid"] = "sigmoid"
) -> HATAdapter:
    """`HATMaskResNet18` (no BatchNorm, as CLArena's HAT ResNets by default)."""
    return HATAdapter(HATMaskResNet18(gate=gate, **_resnet_dims(input_channels)), num_classes, s_max)


def clarena_wsn_mlp(
    num_classes: int, input_size: int = 784, mlp_hidden_size: int = 100, mask_percentage: float = 0.5
) -> WSNAdapter:
    """`WSNMaskMLP`: each task trains the `mask_percentage` top-scored weights of every layer."""
    return WSNAdapter(WSNMaskMLP(**_mlp_dims(input_size, mlp_hidden_size)), num_classes, mask_percentage)


def clarena_wsn_resnet18(num_classes: int, input_channels: int = 3, mask_percentage: float = 0.5) -> WSNAdapter:
    """`WSNMaskResNet18` (no BatchNorm: a shared one would drift across tasks)."""
    return WSNAdapter(WSNMaskResNet18(**_resnet_dims(input_channels)), num_classes, mask_percentage)


# registered name -> factory
BACKBONES = {
    "clarena-mlp": clarena_mlp,
    "clarena-resnet18": clarena_resnet18,
    "clarena-hat-mlp": clarena_hat_mlp,
    "clarena-hat-resnet18": clarena_hat_resnet18,
    "clarena-wsn-mlp": clarena_wsn_mlp,
    "clarena-wsn-resnet18": clarena_wsn_resnet18,
}
