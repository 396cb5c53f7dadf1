// Argument checks shared by the CPU and CUDA kernels of clarena::masked_weight.
#pragma once

#include "common/checks.h"

namespace clarena::masked_weight {

inline void check_args(const Tensor& weight, const Tensor& mask) {
  CLARENA_CHECK_FLOATING(weight);
  CLARENA_CHECK_SAME_DTYPE(mask, weight);
  CLARENA_CHECK_SAME_DEVICE(mask, weight);
  CLARENA_CHECK_SAME_SHAPE(mask, weight);
}

inline void check_backward_args(const Tensor& grad, const Tensor& weight, const Tensor& mask) {
  check_args(weight, mask);
  CLARENA_CHECK_SAME_DTYPE(grad, weight);
  CLARENA_CHECK_SAME_DEVICE(grad, weight);
  CLARENA_CHECK_SAME_SHAPE(grad, weight);
}

}  // namespace clarena::masked_weight
