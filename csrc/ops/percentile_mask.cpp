// Schemas of WSN's gate: clarena::percentile_mask, the top `keep` fraction of `score` as a mask,
// and clarena::percentile_masks, the same for a list of score tensors in one call, warm-started
// from the thresholds of the previous call (kept in `state`); it returns the updated state (a new
// tensor: an op that mutates an input and returns a list cannot be functionalised).
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.percentile_mask");
  m.def("percentile_mask(Tensor score, float keep) -> Tensor");
  m.def("percentile_masks(Tensor[] scores, float keep, Tensor state) -> (Tensor[], Tensor)");
}
