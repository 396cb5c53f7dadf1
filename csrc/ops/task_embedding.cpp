// Schema of HAT's per-step work on the task embeddings of every layer, in one call.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY_FRAGMENT(clarena, m) {
  m.set_python_module("clarena_backbones.ops.task_embedding");
  m.def("foreach_compensate_embedding_grad_(Tensor[] embeddings, Tensor(a!)[] grads, float scale, float s_max, "
        "float clamp_threshold) -> ()");
}
