// Argument checks shared by the CPU and CUDA kernels of clarena::masked_weight.
#pragma once

#include <ATen/core/Tensor.h>

namespace clarena::masked_weight {

void check_args(const at::Tensor& weight, const at::Tensor& mask);
void check_backward_args(const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& mask);

}  // namespace clarena::masked_weight
