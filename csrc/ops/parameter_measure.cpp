// Schemas of the HAT-family parameter-wise measure ops, and their shared argument checks.
#include "ops/parameter_measure_checks.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "common/checks.h"

namespace clarena::parameter_measure {

LayerShape check_measure_args(const at::Tensor& target, const at::Tensor& a,
                              const std::optional<at::Tensor>& b_opt, c10::IntArrayRef shape) {
  CLARENA_CHECK_FLOATING(a);
  CLARENA_CHECK_SAME_DEVICE(a, target);
  TORCH_CHECK_VALUE(shape.size() >= 1, "clarena: the weight shape must have at least one dimension");
  CLARENA_CHECK_VECTOR(a, shape[0]);
  LayerShape layer{shape[0], 1, 1};
  if (b_opt.has_value()) {
    const at::Tensor& b = *b_opt;
    TORCH_CHECK_VALUE(shape.size() >= 2, "clarena: `b` is given, so the weight shape must have at least "
                      "two dimensions (out, in, ...), got ", shape);
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

ScaleGradCall check_scale_grad_args(const at::Tensor& grad, const at::Tensor& a, const std::optional<at::Tensor>& b,
                                    c10::string_view aggregation, c10::string_view rate) {
  ScaleGradCall call{parse_aggregation(aggregation), parse_rate(rate), {}};
  CLARENA_CHECK_FLOATING(grad);
  CLARENA_CHECK_SAME_DTYPE(a, grad);
  call.layer = check_measure_args(grad, a, b, grad.sizes());
  return call;
}

namespace {

// The per-layer op over lists of layers: one call from Python for a whole backbone, each layer
// dispatched to its device's kernel.
void foreach_scale_grad_by_measure_(at::TensorList grads, at::TensorList a, const c10::List<std::optional<at::Tensor>>& b,
                                    c10::string_view aggregation, c10::string_view rate, double alpha,
                                    c10::ArrayRef<double> r) {
  TORCH_CHECK_VALUE(a.size() == grads.size() && b.size() == grads.size() && r.size() == grads.size(),
                    "clarena: `grads`, `a`, `b` and `r` must have one entry per gradient, got ", grads.size(), ", ",
                    a.size(), ", ", b.size(), " and ", r.size());
  static const auto scale = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("clarena::scale_grad_by_measure_", "")
                                .typed<void(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                            c10::string_view, c10::string_view, double, double)>();
  for (size_t i = 0; i < grads.size(); ++i) scale.call(grads[i], a[i], b.get(i), aggregation, rate, alpha, r[i]);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.parameter_measure");
  m.def("parameter_measure(Tensor a, Tensor? b, int[] weight_shape, str mode) -> Tensor");
  m.def("scale_grad_by_measure_(Tensor(a!) grad, Tensor a, Tensor? b, str aggregation, str rate, "
        "float alpha, float r) -> ()");
  m.def("foreach_scale_grad_by_measure_(Tensor(a!)[] grads, Tensor[] a, Tensor?[] b, str aggregation, str rate, "
        "float alpha, float[] r) -> ()");
}

TORCH_LIBRARY_IMPL(clarena, CompositeExplicitAutograd, m) {
  m.impl("foreach_scale_grad_by_measure_", &foreach_scale_grad_by_measure_);
}

}  // namespace clarena::parameter_measure
