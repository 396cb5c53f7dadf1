// Element math of clarena::parameter_measure and clarena::scale_grad_by_measure_, shared by the
// CPU and CUDA kernels.
//
// A weight w[i, j, ...] of a layer connects output unit i (neuron-wise measure a_i) to input unit
// j (measure b_j of the preceding layer); its parameter-wise measure is aggregate(a_i, b_j), or
// a_i alone for a first layer and for biases. HAT-family algorithms scale gradients by a rate of
// that measure.
#pragma once

#include <type_traits>

#include "common/host_device.h"

namespace clarena::parameter_measure {

enum class Aggregation { Min, Max, Mean };
enum class Rate { Hat, HatConstAlpha, AdaHat };

// min and max propagate NaN, like torch.minimum / torch.maximum. `|` rather than `||`: no
// branch, so CPU loops vectorise.
template <Aggregation A, typename T>
CLARENA_HOST_DEVICE T aggregate(T a, T b) {
  if constexpr (A == Aggregation::Min) {
    return ((a < b) | (a != a)) ? a : b;
  } else if constexpr (A == Aggregation::Max) {
    return ((a > b) | (a != a)) ? a : b;
  } else {
    return (a + b) / T(2);
  }
}

template <Rate R, typename T>
CLARENA_HOST_DEVICE T rate(T measure, T alpha, T r) {
  if constexpr (R == Rate::Hat) {
    return T(1) - measure;
  } else if constexpr (R == Rate::HatConstAlpha) {
    return alpha * measure + (T(1) - measure);
  } else {
    return r / (measure + r);
  }
}

// Turn a runtime aggregation or rate into a compile-time constant: f(std::integral_constant<Aggregation, A>).
template <typename F>
void dispatch_aggregation(Aggregation aggregation, F&& f) {
  switch (aggregation) {
    case Aggregation::Min: return f(std::integral_constant<Aggregation, Aggregation::Min>{});
    case Aggregation::Max: return f(std::integral_constant<Aggregation, Aggregation::Max>{});
    case Aggregation::Mean: return f(std::integral_constant<Aggregation, Aggregation::Mean>{});
  }
}

template <typename F>
void dispatch_rate(Rate kind, F&& f) {
  switch (kind) {
    case Rate::Hat: return f(std::integral_constant<Rate, Rate::Hat>{});
    case Rate::HatConstAlpha: return f(std::integral_constant<Rate, Rate::HatConstAlpha>{});
    case Rate::AdaHat: return f(std::integral_constant<Rate, Rate::AdaHat>{});
  }
}

}  // namespace clarena::parameter_measure
