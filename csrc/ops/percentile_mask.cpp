// Schema of clarena::percentile_mask: WSN's gate, the top `keep` fraction of `score` as a mask.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.percentile_mask");
  m.def("percentile_mask(Tensor score, float keep) -> Tensor");
}
