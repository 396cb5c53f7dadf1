"""clarena: CLArena's backbones, with their per-step masking work in native kernels.

`clarena.backbones` is a drop-in replacement for CLArena's module of the same name;
`clarena.ops` holds the operators it runs on (C++ on CPU, CUDA on GPU, pure PyTorch otherwise);
`accelerate_clarena()` gives CLArena's own HAT-family and WSN algorithms the fused per-step work.
The code lives in this package, `clarena_backbones`; `_clarena_backbones_hook` serves it under
the `clarena.*` names, beside CLArena's own `clarena` package when that is installed.
"""

import sys
import warnings

import torch

import _clarena_backbones_hook
from clarena_backbones import backbones, ops
from clarena_backbones.accelerate import accelerate_clarena, restore_clarena
from clarena_backbones.mammoth.registration import register_when_mammoth_loads
from clarena_backbones.ops import native_available, use_reference
from clarena_backbones.torch_version import warn_if_untested

warn_if_untested(str(torch.__version__))

# In a process that imports Mammoth, its registries get the clarena backbones and models.
register_when_mammoth_loads()

__version__ = "0.1.0"
__all__ = [
    "accelerate_clarena",
    "backbones",
    "ops",
    "native_available",
    "restore_clarena",
    "use_reference",
    "__version__",
]

# Normally `clarena_backbones.pth` installed the hook at interpreter start; importing it above
# installs it now at the latest. Only a `clarena.backbones` imported before that is CLArena's.
if sys.modules.get("clarena.backbones", backbones) is not backbones:
    warnings.warn(
        "clarena.backbones is CLArena's own module in this process, not clarena-backbones': it was "
        "imported before the import hook ran (was Python started with -S, or is clarena_backbones.pth "
        "missing from site-packages?). Import clarena_backbones before anything from clarena, or "
        "reinstall clarena-backbones (pip install --no-build-isolation --force-reinstall --no-deps ...).",
        RuntimeWarning,
        stacklevel=2,
    )
