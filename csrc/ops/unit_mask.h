// Element math of clarena::unit_mask (HAT's unit mask on a layer's pre-activation, with an
// optional fused ReLU), shared by the CPU and CUDA kernels.
#pragma once

#include "common/host_device.h"

namespace clarena::unit_mask {

template <typename T>
CLARENA_HOST_DEVICE T forward(T input, T mask, bool relu) {
  const T masked = input * mask;
  return (relu && masked < T(0)) ? T(0) : masked;
}

// Whether the gradient passes the ReLU: like torch.relu's backward, only where the output is > 0.
template <typename T>
CLARENA_HOST_DEVICE bool passes(T input, T mask, bool relu) {
  return !relu || input * mask > T(0);
}

}  // namespace clarena::unit_mask
