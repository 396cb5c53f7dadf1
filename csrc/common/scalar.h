// Scalar types shared by the CPU and CUDA kernels: the dtype dispatch (runtime dtype to a
// compile-time scalar_t, like the ops' mode dispatch) and the type their arithmetic runs in.
#pragma once

#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <stdexcept>
#include <string>

namespace clarena {

template <typename T>
struct TypeTag {
  using type = T;
};

// f(TypeTag<scalar_t>{}) for float32 and float64; other dtypes are refused by the argument checks
// before, so reaching the default is a bug.
template <typename F>
void dispatch_float_or_double(torch::headeronly::ScalarType type, F&& f) {
  using torch::headeronly::ScalarType;
  switch (type) {
    case ScalarType::Float: return f(TypeTag<float>{});
    case ScalarType::Double: return f(TypeTag<double>{});
    default: throw std::logic_error(std::string("clarena: no kernel for dtype ") + torch::headeronly::toString(type));
  }
}

// The same for float32, float64, float16 and bfloat16.
template <typename F>
void dispatch_floating(torch::headeronly::ScalarType type, F&& f) {
  using torch::headeronly::ScalarType;
  switch (type) {
    case ScalarType::Half: return f(TypeTag<c10::Half>{});
    case ScalarType::BFloat16: return f(TypeTag<c10::BFloat16>{});
    default: return dispatch_float_or_double(type, f);
  }
}

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
