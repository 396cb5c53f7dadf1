// Element math of clarena::foreach_compensate_embedding_grad_, shared by the CPU and CUDA kernels.
//
// HAT trains each layer's task embedding e through the gate sigmoid(s * e) with an annealed scale
// s, and multiplies the embedding's gradient by s_max / s * (cosh(clamp(s * e, -c, c)) + 1) /
// (cosh(e) + 1) (Serra et al., 2018, Sec. 2.5), with CLArena's order of operations.
#pragma once

#include <cmath>
#include <type_traits>

#include "common/host_device.h"

namespace clarena::task_embedding {

template <typename T>
CLARENA_HOST_DEVICE T hyperbolic_cosine(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return coshf(x);
  } else {
    return cosh(x);
  }
}

// The factor for an embedding entry e, with `ratio` = s_max / s (computed in double, as Python
// does). Each step rounds to scalar_t like the reference's separate ops, so float16 and bfloat16
// overflow where the reference does. NaN stays NaN, as in torch.clamp.
template <typename scalar_t, typename T>
CLARENA_HOST_DEVICE T compensation(T e, T scale, T ratio, T clamp_threshold) {
  const auto round = [](T x) { return static_cast<T>(static_cast<scalar_t>(x)); };
  T scaled = round(scale * e);
  scaled = scaled < -clamp_threshold ? -clamp_threshold : scaled > clamp_threshold ? clamp_threshold : scaled;
  const T numerator = round(round(hyperbolic_cosine(scaled)) + T(1));
  const T denominator = round(round(hyperbolic_cosine(e)) + T(1));
  return round(round(ratio * numerator) / denominator);
}

}  // namespace clarena::task_embedding
