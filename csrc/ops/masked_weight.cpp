// Schemas of clarena::masked_weight, the elementwise core of WSN's masked linear and conv layers
// (the GEMM or convolution itself stays in ATen).
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.masked_weight");
  m.def("masked_weight(Tensor weight, Tensor mask) -> Tensor");
  m.def("masked_weight_backward(Tensor grad, Tensor weight, Tensor mask) -> (Tensor, Tensor)");
}
