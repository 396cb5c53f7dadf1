// Argument checks shared by the CPU and CUDA kernels of the parameter-wise measure ops.
#pragma once

#include <ATen/core/Tensor.h>

#include <c10/util/string_view.h>

#include <optional>

#include "ops/parameter_measure.h"

namespace clarena::parameter_measure {

// A weight viewed as rows (output units) x cols (input units, 1 without `b`) x inner (the rest).
struct LayerShape {
  int64_t rows;
  int64_t cols;
  int64_t inner;
};

// Checks `a` (length shape[0]) and `b` (length shape[1]) against `target` and returns the view.
LayerShape check_measure_args(const at::Tensor& target, const at::Tensor& a,
                              const std::optional<at::Tensor>& b, c10::IntArrayRef shape);

// A checked scale_grad_by_measure_ call: its parsed modes and the gradient's layer view.
struct ScaleGradCall {
  Aggregation aggregation;
  Rate rate;
  LayerShape layer;
};

ScaleGradCall check_scale_grad_args(const at::Tensor& grad, const at::Tensor& a, const std::optional<at::Tensor>& b,
                                    c10::string_view aggregation, c10::string_view rate);

}  // namespace clarena::parameter_measure
