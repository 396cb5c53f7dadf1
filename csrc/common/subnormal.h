// Flushing of subnormal results, shared by the CPU and CUDA kernels of HAT's masking ops.
//
// A sigmoid gate at a large scale yields masks of magnitude below the smallest normal float, and
// every value they multiply becomes subnormal too; CPU matrix multiplies and convolutions take a
// slow path on such values. The kernels therefore write 0 for any result whose magnitude, in the
// output dtype, is below that dtype's smallest normal (torch.finfo(dtype).tiny), without touching
// the process's floating-point state (no flush-to-zero mode).
#pragma once

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include "common/host_device.h"
#include "common/scalar.h"

namespace clarena {

// torch.finfo(T).tiny, in the type T's arithmetic runs in.
template <typename T>
struct SmallestNormal;
template <>
struct SmallestNormal<float> {
  static constexpr float value = 0x1p-126f;
};
template <>
struct SmallestNormal<double> {
  static constexpr double value = 0x1p-1022;
};
template <>
struct SmallestNormal<c10::Half> {
  static constexpr float value = 0x1p-14f;
};
template <>
struct SmallestNormal<c10::BFloat16> {
  static constexpr float value = 0x1p-126f;
};

// `value` rounded to scalar_t, or +0 where that rounding is subnormal. NaN stays NaN; the
// select is branch-free, so the loops that call it still vectorise.
template <typename scalar_t, typename T>
CLARENA_HOST_DEVICE scalar_t flush_subnormal(T value) {
  const scalar_t rounded = static_cast<scalar_t>(value);
  const opmath_type<scalar_t> r = rounded;
  constexpr opmath_type<scalar_t> tiny = SmallestNormal<scalar_t>::value;
  return (r < tiny && r > -tiny) ? scalar_t(0) : rounded;
}

}  // namespace clarena
