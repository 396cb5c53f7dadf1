"""This package's backbones, and HAT and WSN models driving them, for Mammoth (aimagelab/mammoth).

Backbones (Mammoth's `--backbone`): `clarena-mlp`, `clarena-resnet18`, `clarena-hat-mlp`,
`clarena-hat-resnet18`, `clarena-wsn-mlp`, `clarena-wsn-resnet18`. Models (`--model`):
`clarena-hat`, `clarena-wsn`. `register()` registers them; `import clarena` does so by itself in
a process that imports Mammoth (see `registration`). Importing this module never imports Mammoth.
"""

from clarena.mammoth.adapter import MammothAdapter
from clarena.mammoth.backbones import BACKBONES
from clarena.mammoth.hat_adapter import HATAdapter
from clarena.mammoth.registration import MODEL_NAMES, register, register_when_mammoth_loads
from clarena.mammoth.wsn_adapter import WSNAdapter

__all__ = [
    "BACKBONES",
    "MODEL_NAMES",
    "HATAdapter",
    "MammothAdapter",
    "WSNAdapter",
    "register",
    "register_when_mammoth_loads",
]
