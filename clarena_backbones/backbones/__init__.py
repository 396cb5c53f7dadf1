"""Backbone networks: a drop-in, faster replacement for CLArena's `clarena.backbones`.

Base classes: `Backbone` (any paradigm), `CLBackbone` (continual learning), and for
architecture-based algorithms `HATMaskBackbone` (HAT, AdaHAT, FG-AdaHAT), `AmnesiacHATBackbone`
and `WSNMaskBackbone` (WSN). Networks: MLPs and ResNet-18/34/50/101/152 in plain, CL, HAT-masked,
AmnesiacHAT and WSN-masked versions. The per-step masking work runs in `clarena.ops`.

The documentation's `ResNet52`, `CLResNet52` and `HATMaskResNet52` name the 50-layer classes.
"""

from clarena_backbones.backbones.amnesiac_hat_backbone import AmnesiacHATBackbone
from clarena_backbones.backbones.amnesiac_hat_mlp import AmnesiacHATMLP
from clarena_backbones.backbones.amnesiac_hat_resnet import (
    AmnesiacHATResNet18,
    AmnesiacHATResNet34,
    AmnesiacHATResNet50,
    AmnesiacHATResNet101,
    AmnesiacHATResNet152,
)
from clarena_backbones.backbones.base import Backbone, CLBackbone
from clarena_backbones.backbones.hat_mask_backbone import HATMaskBackbone
from clarena_backbones.backbones.hat_mask_mlp import HATMaskMLP
from clarena_backbones.backbones.hat_mask_resnet import (
    HATMaskResNet18,
    HATMaskResNet34,
    HATMaskResNet50,
    HATMaskResNet101,
    HATMaskResNet152,
)
from clarena_backbones.backbones.mlp import CLMLP, MLP
from clarena_backbones.backbones.resnet import (
    CLResNet18,
    CLResNet34,
    CLResNet50,
    CLResNet101,
    CLResNet152,
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
    ResNet152,
)
from clarena_backbones.backbones.wsn_mask_backbone import WSNMaskBackbone
from clarena_backbones.backbones.wsn_mask_mlp import WSNMaskMLP
from clarena_backbones.backbones.wsn_mask_resnet import (
    WSNMaskResNet18,
    WSNMaskResNet34,
    WSNMaskResNet50,
    WSNMaskResNet101,
    WSNMaskResNet152,
)

# names used by CLArena's documentation for the 50-layer networks
ResNet52 = ResNet50
CLResNet52 = CLResNet50
HATMaskResNet52 = HATMaskResNet50

__all__ = [
    "Backbone",
    "CLBackbone",
    "HATMaskBackbone",
    "AmnesiacHATBackbone",
    "WSNMaskBackbone",
    "MLP",
    "CLMLP",
    "HATMaskMLP",
    "AmnesiacHATMLP",
    "WSNMaskMLP",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNet52",
    "ResNet101",
    "ResNet152",
    "CLResNet18",
    "CLResNet34",
    "CLResNet50",
    "CLResNet52",
    "CLResNet101",
    "CLResNet152",
    "HATMaskResNet18",
    "HATMaskResNet34",
    "HATMaskResNet50",
    "HATMaskResNet52",
    "HATMaskResNet101",
    "HATMaskResNet152",
    "AmnesiacHATResNet18",
    "AmnesiacHATResNet34",
    "AmnesiacHATResNet50",
    "AmnesiacHATResNet101",
    "AmnesiacHATResNet152",
    "WSNMaskResNet18",
    "WSNMaskResNet34",
    "WSNMaskResNet50",
    "WSNMaskResNet101",
    "WSNMaskResNet152",
]
