// Element math of clarena::unit_mask (HAT's unit mask on a layer's pre-activation, with an
// optional fused ReLU), shared by the CPU and CUDA kernels.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/host_device.h"

namespace clarena::unit_mask {

template <typename T>
CLARENA_HOST_DEVICE T forward(T input, T mask, bool relu) {
  const T masked = input * mask;
  return (relu && masked < T(0)) ? T(0) : masked;
}

// Whether the gradient passes the ReLU: like torch.relu's backward, only where the output (the
// product rounded to scalar_t: float16 and bfloat16 products may round to 0) is > 0.
template <typename scalar_t, typename T>
CLARENA_HOST_DEVICE bool passes(T input, T mask, bool relu) {
  const bool positive = static_cast<T>(static_cast<scalar_t>(input * mask)) > T(0);
  return positive | !relu;  // no short circuit: no branch in vectorised loops
}

// `value` where `keep`, else +0, by masking its bits: exact (a NaN or infinity that is not kept
// gives 0, like torch's ReLU backward) and branch-free, so CPU loops over random signs vectorise.
template <typename T>
CLARENA_HOST_DEVICE T keep_if(bool keep, T value) {
  using bits_t = std::conditional_t<sizeof(T) == sizeof(uint32_t), uint32_t, uint64_t>;
  static_assert(sizeof(T) == sizeof(bits_t), "keep_if needs a float or a double");
  bits_t bits;
  memcpy(&bits, &value, sizeof(bits));
  bits &= bits_t(0) - static_cast<bits_t>(keep);
  T kept;
  memcpy(&kept, &bits, sizeof(kept));
  return kept;
}

}  // namespace clarena::unit_mask
