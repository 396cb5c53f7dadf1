// Schemas of the HAT-family parameter-wise measure ops: the measure, the in-place gradient scaling
// of one layer, and the same over lists of layers (one kernel per device for a whole backbone).
#include <torch/csrc/stable/library.h>

namespace clarena::parameter_measure {

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.parameter_measure");
  m.def("parameter_measure(Tensor a, Tensor? b, int[] weight_shape, str aggregation) -> Tensor");
  m.def("scale_grad_by_measure_(Tensor(a!) grad, Tensor a, Tensor? b, str aggregation, str rate, "
        "float alpha, float r) -> ()");
  m.def("foreach_scale_grad_by_measure_(Tensor(a!)[] grads, Tensor[] a, Tensor?[] b, str aggregation, str rate, "
        "float alpha, float[] r) -> ()");
}

}  // namespace clarena::parameter_measure
