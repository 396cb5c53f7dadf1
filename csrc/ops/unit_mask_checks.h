// Argument checks shared by the CPU and CUDA kernels of clarena::unit_mask.
#pragma once

#include "common/checks.h"

namespace clarena::unit_mask {

// The input viewed as (batch, channels = units, spatial = the product of the remaining sizes).
struct Layout {
  int64_t batch;
  int64_t channels;
  int64_t spatial;
};

inline Layout check_args(const Tensor& input, const Tensor& mask) {
  CLARENA_CHECK_FLOATING(input);
  CLARENA_CHECK_SAME_DTYPE(mask, input);
  CLARENA_CHECK_SAME_DEVICE(mask, input);
  if (input.dim() < 2)
    fail_argument("`input` must have a batch and a unit dimension (N, C, ...), got shape ", describe(input.sizes()));
  CLARENA_CHECK_VECTOR(mask, input.size(1));
  int64_t spatial = 1;
  for (int64_t d = 2; d < input.dim(); ++d) spatial *= input.size(d);
  return {input.size(0), input.size(1), spatial};
}

inline Layout check_backward_args(const Tensor& grad, const Tensor& input, const Tensor& mask) {
  const Layout layout = check_args(input, mask);
  CLARENA_CHECK_SAME_DTYPE(grad, input);
  CLARENA_CHECK_SAME_DEVICE(grad, input);
  CLARENA_CHECK_SAME_SHAPE(grad, input);
  return layout;
}

}  // namespace clarena::unit_mask
