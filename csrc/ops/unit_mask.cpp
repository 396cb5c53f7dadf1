// Schemas of clarena::unit_mask: out[n, c, ...] = act(input[n, c, ...] * mask[c]), and the checks
// its kernels share.
#include "ops/unit_mask_checks.h"

#include <torch/library.h>

#include "common/checks.h"

namespace clarena::unit_mask {

Layout check_args(const at::Tensor& input, const at::Tensor& mask) {
  CLARENA_CHECK_FLOATING(input);
  CLARENA_CHECK_SAME_DTYPE(mask, input);
  CLARENA_CHECK_SAME_DEVICE(mask, input);
  TORCH_CHECK_VALUE(input.dim() >= 2, "clarena: `input` must have a batch and a unit dimension (N, C, ...), got shape ",
                    input.sizes());
  CLARENA_CHECK_VECTOR(mask, input.size(1));
  int64_t spatial = 1;
  for (int64_t d = 2; d < input.dim(); ++d) spatial *= input.size(d);
  return {input.size(0), input.size(1), spatial};
}

Layout check_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& mask) {
  const Layout layout = check_args(input, mask);
  CLARENA_CHECK_SAME_DTYPE(grad, input);
  CLARENA_CHECK_SAME_DEVICE(grad, input);
  TORCH_CHECK_VALUE(grad.sizes() == input.sizes(), "clarena: `grad` must have the shape of `input` (",
                    input.sizes(), "), got ", grad.sizes());
  return layout;
}

TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.unit_mask");
  m.def("unit_mask(Tensor input, Tensor mask, bool relu) -> Tensor");
  m.def("unit_mask_backward(Tensor grad, Tensor input, Tensor mask, bool relu) -> (Tensor, Tensor)");
}

}  // namespace clarena::unit_mask
