// Scalar types shared by the CPU and CUDA kernels: the floating dtypes the elementwise ops accept
// and the type their arithmetic runs in.
#pragma once

#include <torch/headeronly/core/Dispatch_v2.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

// float32, float64, float16 and bfloat16, for THO_DISPATCH_V2.
#define CLARENA_FLOATING_TYPES \
  AT_FLOATING_TYPES, torch::headeronly::ScalarType::Half, torch::headeronly::ScalarType::BFloat16

namespace clarena {

// float16 and bfloat16 are computed in float, like ATen's opmath_type.
template <typename T>
struct OpMath {
  using type = T;
};
template <>
struct OpMath<c10::Half> {
  using type = float;
};
template <>
struct OpMath<c10::BFloat16> {
  using type = float;
};
template <typename T>
using opmath_type = typename OpMath<T>::type;

}  // namespace clarena
