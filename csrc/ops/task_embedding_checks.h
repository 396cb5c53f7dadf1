// Argument checks shared by the CPU and CUDA kernels of the task-embedding ops. The messages are
// those of the Python API (clarena_backbones/ops/task_embedding.py), which repeats these checks
// when a kernel refuses, to raise TypeError for a wrong dtype.
#pragma once

#include <string>
#include <vector>

#include "common/checks.h"

namespace clarena::task_embedding {

// A shape as Python prints a tuple: (3,) or (1, 3).
inline std::string describe_tuple(torch::headeronly::IntHeaderOnlyArrayRef sizes) {
  std::string text = "(";
  for (size_t d = 0; d < sizes.size(); ++d) text += (d ? ", " : "") + std::to_string(sizes[d]);
  return text + (sizes.size() == 1 ? ",)" : ")");
}

inline void check_compensation_args(const std::vector<Tensor>& embeddings, const std::vector<Tensor>& grads,
                                    double scale) {
  for (size_t i = 0; i < embeddings.size(); ++i) {
    const std::string name = "embeddings[" + std::to_string(i) + "]";
    check_floating(embeddings[i], name.c_str());
    if (i > 0) {
      check_same_dtype(embeddings[i], name.c_str(), embeddings[0], "embeddings[0]");
      check_same_device(embeddings[i], name.c_str(), embeddings[0], "embeddings[0]");
    }
  }
  if (grads.size() != embeddings.size())
    fail_argument("`grads` must have one entry per embedding (", embeddings.size(), "), got ", grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::string name = "grads[" + std::to_string(i) + "]";
    const std::string embedding = "embeddings[" + std::to_string(i) + "]";
    check_same_dtype(grads[i], name.c_str(), embeddings[i], embedding.c_str());
    check_same_device(grads[i], name.c_str(), embeddings[i], embedding.c_str());
    if (!(grads[i].sizes() == embeddings[i].sizes()))
      fail_argument("`", name, "` must have the shape of its embedding ", describe_tuple(embeddings[i].sizes()),
                    ", got ", describe_tuple(grads[i].sizes()));
  }
  if (scale == 0) fail_argument("`scale` must be non-zero (the compensation divides by it)");
}

}  // namespace clarena::task_embedding
