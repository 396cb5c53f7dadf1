// Schemas of the HAT-family parameter-wise measure ops, and the op over lists of layers.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/tensor.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "common/strings.h"
#include "ops/parameter_measure_checks.h"

namespace clarena::parameter_measure {
namespace {

// The per-layer op over lists of layers: one call from Python for a whole backbone, each layer
// dispatched to its device's kernel. Every entry is checked first, so a bad one names its argument
// (an error raised through the dispatcher below would reach Python as a bare RuntimeError).
void foreach_scale_grad_by_measure_(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                                    const std::vector<std::optional<Tensor>>& b, StringHandle aggregation_handle,
                                    StringHandle rate_handle, double alpha, const std::vector<double>& r) {
  const std::string aggregation = take_string(aggregation_handle);
  const std::string rate = take_string(rate_handle);
  if (a.size() != grads.size() || b.size() != grads.size() || r.size() != grads.size())
    fail_argument("`grads`, `a`, `b` and `r` must have one entry per gradient, got ", grads.size(), ", ", a.size(),
                  ", ", b.size(), " and ", r.size());
  for (size_t i = 0; i < grads.size(); ++i) check_scale_grad_args(grads[i], a[i], b[i], aggregation, rate);
  using torch::stable::detail::from;
  for (size_t i = 0; i < grads.size(); ++i) {
    std::array<StableIValue, 7> stack{from(grads[i]), from(a[i]),  from(b[i]),   from(aggregation),
                                      from(rate),     from(alpha), from(r[i])};
    STABLE_TORCH_ERROR_CODE_CHECK(
        torch_call_dispatcher("clarena::scale_grad_by_measure_", "", stack.data(), TORCH_ABI_VERSION));
  }
}

}  // namespace

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.parameter_measure");
  m.def("parameter_measure(Tensor a, Tensor? b, int[] weight_shape, str mode) -> Tensor");
  m.def("scale_grad_by_measure_(Tensor(a!) grad, Tensor a, Tensor? b, str aggregation, str rate, "
        "float alpha, float r) -> ()");
  m.def("foreach_scale_grad_by_measure_(Tensor(a!)[] grads, Tensor[] a, Tensor?[] b, str aggregation, str rate, "
        "float alpha, float[] r) -> ()");
}

STABLE_TORCH_LIBRARY_IMPL(clarena, CompositeExplicitAutograd, m) {
  m.impl("foreach_scale_grad_by_measure_", TORCH_BOX(&foreach_scale_grad_by_measure_));
}

}  // namespace clarena::parameter_measure
