"""This package's backbones, and HAT and WSN models driving them, for Mammoth (aimagelab/mammoth).

Backbones (Mammoth's `--backbone`): `clarena-mlp`, `clarena-resnet18`, `clarena-hat-mlp`,
`clarena-hat-resnet18`, `clarena-wsn-mlp`, `clarena-wsn-resnet18`. Models (`--model`):
`clarena-hat`, `clarena-wsn`. `register()` registers them; `import clarena` does so by itself in
a process that imports Mammoth (see `registration`). Importing this module never imports Mammoth.
"""

from clarena_backbones.mammoth.adapter import MammothAdapter
from clarena_backbones.mammoth.backbones import BACKBONES
from clarena_backbones.mammoth.hat_adapter import HATAdapter
from clarena_backbones.mammoth.registration import MODEL_NAMES, register, register_when_mammoth_loads
from clarena_backbones.mammoth.wsn_adapter import WSNAdapter

__all__ = [
    "BACKBONES",
    "MODEL_NAMES",
    "HATAdapter",
    "MammothAdapter",
    "WSNAdapter",
    "register",
    "register_when_mammoth_loads",
]
