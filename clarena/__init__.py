"""clarena: CLArena's backbones, with their per-step masking work in native kernels.

`clarena.backbones` is a drop-in replacement for CLArena's module of the same name;
`clarena.ops` holds the operators it runs on (C++ on CPU, CUDA on GPU, pure PyTorch otherwise).
"""

from clarena import backbones, ops
from clarena.mammoth.registration import register_when_mammoth_loads
from clarena.ops import native_available, use_reference

# In a process that imports Mammoth, its registries get the clarena backbones and models.
register_when_mammoth_loads()

__version__ = "0.1.0"
__all__ = ["backbones", "ops", "native_available", "use_reference", "__version__"]
