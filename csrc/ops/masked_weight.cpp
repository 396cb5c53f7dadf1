// Schemas of clarena::masked_weight, the elementwise core of WSN's masked linear and conv layers
// (the GEMM or convolution itself stays in ATen), and the checks its kernels share.
#include "ops/masked_weight_checks.h"

#include <torch/library.h>

#include "common/checks.h"

namespace clarena::masked_weight {

void check_args(const at::Tensor& weight, const at::Tensor& mask) {
  CLARENA_CHECK_FLOATING(weight);
  CLARENA_CHECK_SAME_DTYPE(mask, weight);
  CLARENA_CHECK_SAME_DEVICE(mask, weight);
  TORCH_CHECK_VALUE(mask.sizes() == weight.sizes(), "clarena: `mask` must have the shape of `weight` (",
                    weight.sizes(), "), got ", mask.sizes());
}

void check_backward_args(const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& mask) {
  check_args(weight, mask);
  CLARENA_CHECK_SAME_DTYPE(grad, weight);
  CLARENA_CHECK_SAME_DEVICE(grad, weight);
  TORCH_CHECK_VALUE(grad.sizes() == weight.sizes(), "clarena: `grad` must have the shape of `weight` (",
                    weight.sizes(), "), got ", grad.sizes());
}

TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.masked_weight");
  m.def("masked_weight(Tensor weight, Tensor mask) -> Tensor");
  m.def("masked_weight_backward(Tensor grad, Tensor weight, Tensor mask) -> (Tensor, Tensor)");
}

}  // namespace clarena::masked_weight
