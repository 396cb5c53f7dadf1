// Element math of clarena::masked_weight (WSN's masked parameters), shared by the CPU and CUDA
// kernels. The backward gives the weight its masked gradient and the mask, straight through to
// the scores, the weight-weighted gradient, in one pass.
#pragma once

#include "common/host_device.h"

namespace clarena::masked_weight {

template <typename T>
CLARENA_HOST_DEVICE T apply(T weight, T mask) {
  return weight * mask;
}

template <typename T>
CLARENA_HOST_DEVICE void backward(T grad, T weight, T mask, T& grad_weight, T& grad_mask) {
  grad_weight = grad * mask;
  grad_mask = grad * weight;
}

}  // namespace clarena::masked_weight
