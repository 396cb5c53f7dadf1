// Argument checks shared by the CPU and CUDA kernels of clarena::unit_mask.
#pragma once

#include <ATen/core/Tensor.h>

namespace clarena::unit_mask {

// The input viewed as (batch, channels = units, spatial = the product of the remaining sizes).
struct Layout {
  int64_t batch;
  int64_t channels;
  int64_t spatial;
};

Layout check_args(const at::Tensor& input, const at::Tensor& mask);
Layout check_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mask);

}  // namespace clarena::unit_mask
