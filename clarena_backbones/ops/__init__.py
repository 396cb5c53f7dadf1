"""clarena's operators: the per-step masking work of HAT and WSN.

Each op runs its native kernel (C++ on CPU, CUDA on GPU) when the native library is loaded and
has a kernel for the tensor's device, else its pure-PyTorch reference (`clarena.ops.reference`).
`use_reference()` forces the reference inside a block.
"""

from clarena_backbones.ops.mask_packing import pack_mask, unpack_mask
from clarena_backbones.ops.masked_weight import masked_conv2d, masked_linear, masked_weight
from clarena_backbones.ops.native import native_available, use_reference
from clarena_backbones.ops.parameter_measure import (
    adjustment_rate,
    foreach_rate_sums,
    foreach_scale_grad_by_measure_,
    parameter_measure,
    scale_grad_by_measure_,
)
from clarena_backbones.ops.percentile_mask import percentile_mask, percentile_masks, percentile_masks_state
from clarena_backbones.ops.task_embedding import foreach_compensate_embedding_grad_, foreach_sigmoid_gate
from clarena_backbones.ops.unit_mask import unit_mask

__all__ = [
    "adjustment_rate",
    "foreach_compensate_embedding_grad_",
    "foreach_rate_sums",
    "foreach_scale_grad_by_measure_",
    "foreach_sigmoid_gate",
    "masked_conv2d",
    "masked_linear",
    "masked_weight",
    "native_available",
    "pack_mask",
    "parameter_measure",
    "percentile_mask",
    "percentile_masks",
    "percentile_masks_state",
    "scale_grad_by_measure_",
    "unit_mask",
    "unpack_mask",
    "use_reference",
]
