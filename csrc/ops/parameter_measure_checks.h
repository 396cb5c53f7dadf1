// Argument checks shared by the CPU and CUDA kernels of the parameter-wise measure ops.
#pragma once

#include <optional>
#include <string_view>

#include "common/checks.h"
#include "ops/parameter_measure.h"

namespace clarena::parameter_measure {

// A weight viewed as rows (output units) x cols (input units, 1 without `b`) x inner (the rest).
struct LayerShape {
  int64_t rows;
  int64_t cols;
  int64_t inner;
};

inline Aggregation parse_aggregation(std::string_view name) {
  if (name == "min") return Aggregation::Min;
  if (name == "max") return Aggregation::Max;
  if (name == "mean") return Aggregation::Mean;
  fail_argument("aggregation mode must be 'min', 'max' or 'mean', got '", name, "'");
}

inline Rate parse_rate(std::string_view name) {
  if (name == "hat") return Rate::Hat;
  if (name == "hat_const_alpha") return Rate::HatConstAlpha;
  if (name == "adahat") return Rate::AdaHat;
  fail_argument("`rate` must be 'hat', 'hat_const_alpha' or 'adahat', got '", name, "'");
}

// Checks `a` (length shape[0]) and `b` (length shape[1]) against `target` and returns the view.
inline LayerShape check_measure_args(const Tensor& target, const Tensor& a, const std::optional<Tensor>& b_opt,
                                     torch::headeronly::IntHeaderOnlyArrayRef shape) {
  CLARENA_CHECK_FLOATING(a);
  CLARENA_CHECK_SAME_DEVICE(a, target);
  if (shape.size() < 1) fail_argument("the weight shape must have at least one dimension");
  CLARENA_CHECK_VECTOR(a, shape[0]);
  LayerShape layer{shape[0], 1, 1};
  if (b_opt.has_value()) {
    const Tensor& b = *b_opt;
    if (shape.size() < 2)
      fail_argument("`b` is given, so the weight shape must have at least two dimensions (out, in, ...), got ",
                    describe(shape));
    CLARENA_CHECK_SAME_DTYPE(b, a);
    CLARENA_CHECK_SAME_DEVICE(b, target);
    CLARENA_CHECK_VECTOR(b, shape[1]);
    layer.cols = shape[1];
    for (size_t d = 2; d < shape.size(); ++d) layer.inner *= shape[d];
  } else {
    for (size_t d = 1; d < shape.size(); ++d) layer.inner *= shape[d];
  }
  return layer;
}

// A checked scale_grad_by_measure_ call: its parsed modes and the gradient's layer view.
struct ScaleGradCall {
  Aggregation aggregation;
  Rate rate;
  LayerShape layer;
};

inline ScaleGradCall check_scale_grad_args(const Tensor& grad, const Tensor& a, const std::optional<Tensor>& b,
                                           std::string_view aggregation, std::string_view rate) {
  ScaleGradCall call{parse_aggregation(aggregation), parse_rate(rate), {}};
  CLARENA_CHECK_FLOATING(grad);
  CLARENA_CHECK_SAME_DTYPE(a, grad);
  call.layer = check_measure_args(grad, a, b, grad.sizes());
  return call;
}

}  // namespace clarena::parameter_measure
