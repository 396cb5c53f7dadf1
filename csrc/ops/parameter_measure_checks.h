// Argument checks shared by the CPU and CUDA kernels of the parameter-wise measure ops.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

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

}  // namespace clarena::parameter_measure
