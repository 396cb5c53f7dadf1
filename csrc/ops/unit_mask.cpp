// Schemas of clarena::unit_mask: out[n, c, ...] = act(input[n, c, ...] * mask[c]).
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.unit_mask");
  m.def("unit_mask(Tensor input, Tensor mask, bool relu) -> Tensor");
  m.def("unit_mask_backward(Tensor grad, Tensor input, Tensor mask, bool relu) -> (Tensor, Tensor)");
}
