"""clarena: CLArena's backbones, with their per-step masking work in native kernels.

`clarena.backbones` is a drop-in replacement for CLArena's module of the same name;
`clarena.ops` holds the operators it runs on (C++ on CPU, CUDA on GPU, pure PyTorch otherwise);
`accelerate_clarena()` gives CLArena's own HAT-family and WSN algorithms the fused per-step work.
"""

from clarena import backbones, ops
from clarena.accelerate import accelerate_clarena, restore_clarena
from clarena.ops import native_available, use_reference

__version__ = "0.1.0"
__all__ = ["accelerate_clarena", "backbones", "ops", "native_available", "restore_clarena", "use_reference", "__version__"]
