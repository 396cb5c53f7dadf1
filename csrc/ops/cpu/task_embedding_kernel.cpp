// CPU kernel of clarena::foreach_compensate_embedding_grad_: every embedding's gradient in one
// call (embeddings are a layer's units wide, so the loops run serially).
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <vector>

#include "common/parallel.h"
#include "common/scalar.h"
#include "common/subnormal.h"
#include "ops/task_embedding.h"
#include "ops/task_embedding_checks.h"

namespace clarena::task_embedding {
namespace {

void foreach_compensate_embedding_grad_cpu(const std::vector<Tensor>& embeddings, const std::vector<Tensor>& grads,
                                           double scale, double s_max, double clamp_threshold) {
  check_compensation_args(embeddings, grads, scale);
  if (embeddings.empty()) return;
  dispatch_floating(embeddings[0].scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    for (size_t i = 0; i < grads.size(); ++i) {
      const Tensor e = torch::stable::contiguous(embeddings[i]);
      Tensor grad = grads[i];
      Tensor target = grad.is_contiguous() ? grad : torch::stable::contiguous(grad);
      const scalar_t* ep = e.const_data_ptr<scalar_t>();
      scalar_t* gp = target.mutable_data_ptr<scalar_t>();
      parallel_rows(target.numel(), 1, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k)
          gp[k] = flush_subnormal<scalar_t>(
              gp[k] * compensation<scalar_t, opmath_t>(ep[k], static_cast<opmath_t>(scale),
                                                       static_cast<opmath_t>(s_max / scale),
                                                       static_cast<opmath_t>(clamp_threshold)));
      });
      if (target.get() != grad.get()) torch::stable::copy_(grad, target);
    }
  });
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("foreach_compensate_embedding_grad_", TORCH_BOX(&foreach_compensate_embedding_grad_cpu));
}

}  // namespace clarena::task_embedding
