// CUDA kernel of clarena::foreach_compensate_embedding_grad_: a grid-stride elementwise loop per
// embedding, all launched from one op call.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <vector>

#include "common/cuda.h"
#include "common/scalar.h"
#include "common/subnormal.h"
#include "ops/task_embedding.h"
#include "ops/task_embedding_checks.h"

namespace clarena::task_embedding {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) compensate_kernel(const scalar_t* __restrict__ e,
                                                               scalar_t* __restrict__ grad, int64_t n,
                                                               opmath_type<scalar_t> scale,
                                                               opmath_type<scalar_t> ratio,
                                                               opmath_type<scalar_t> clamp_threshold) {
  using opmath_t = opmath_type<scalar_t>;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    grad[k] = flush_subnormal<scalar_t>(static_cast<opmath_t>(grad[k]) *
                                    compensation<scalar_t, opmath_t>(e[k], scale, ratio, clamp_threshold));
}

void foreach_compensate_embedding_grad_cuda(const std::vector<Tensor>& embeddings, const std::vector<Tensor>& grads,
                                            double scale, double s_max, double clamp_threshold) {
  check_compensation_args(embeddings, grads, scale);
  if (embeddings.empty()) return;
  const DeviceGuard device_guard(embeddings[0].get_device_index());
  const int64_t sm_count = multiprocessor_count(embeddings[0]);
  const cudaStream_t stream = current_stream(embeddings[0]);
  dispatch_floating(embeddings[0].scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    for (size_t i = 0; i < grads.size(); ++i) {
      const int64_t n = grads[i].numel();
      if (n == 0) continue;
      const Tensor e = torch::stable::contiguous(embeddings[i]);
      Tensor grad = grads[i];
      Tensor target = grad.is_contiguous() ? grad : torch::stable::contiguous(grad);
      const int64_t blocks = std::max<int64_t>(1, std::min((n + kThreads - 1) / kThreads, sm_count * 8));
      compensate_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
          e.const_data_ptr<scalar_t>(), target.mutable_data_ptr<scalar_t>(), n, static_cast<opmath_t>(scale),
          static_cast<opmath_t>(s_max / scale), static_cast<opmath_t>(clamp_threshold));
      CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
      if (target.get() != grad.get()) torch::stable::copy_(grad, target);
    }
  });
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("foreach_compensate_embedding_grad_", TORCH_BOX(&foreach_compensate_embedding_grad_cuda));
}

}  // namespace clarena::task_embedding
