// CUDA kernels of clarena::masked_weight: grid-stride elementwise loops over contiguous copies,
// with the element math from masked_weight.h.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <tuple>

#include "common/cuda.h"
#include "common/scalar.h"
#include "ops/masked_weight.h"
#include "ops/masked_weight_checks.h"

namespace clarena::masked_weight {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) masked_weight_kernel(const scalar_t* __restrict__ weight,
                                                                  const scalar_t* __restrict__ mask,
                                                                  scalar_t* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = apply(weight[i], mask[i]);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) masked_weight_backward_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ weight, const scalar_t* __restrict__ mask,
    scalar_t* __restrict__ grad_weight, scalar_t* __restrict__ grad_mask, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    scalar_t gw;
    scalar_t gm;
    backward(grad[i], weight[i], mask[i], gw, gm);
    grad_weight[i] = gw;
    grad_mask[i] = gm;
  }
}

Tensor masked_weight_cuda(const Tensor& weight, const Tensor& mask) {
  check_args(weight, mask);
  const DeviceGuard device_guard(weight.get_device_index());
  const Tensor w = torch::stable::contiguous(weight);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor out = torch::stable::new_empty(w, w.sizes());
  const int64_t n = w.numel();
  if (n == 0) return out;
  const cudaStream_t stream = current_stream(w);
  const unsigned int blocks = grid_size(n, kThreads, multiprocessor_count(w));
  dispatch_floating(w.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    launch(masked_weight_kernel<scalar_t>, blocks, kThreads, stream, w.const_data_ptr<scalar_t>(),
           m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n);
  });
  return out;
}

std::tuple<Tensor, Tensor> masked_weight_backward_cuda(const Tensor& grad, const Tensor& weight, const Tensor& mask) {
  check_backward_args(grad, weight, mask);
  const DeviceGuard device_guard(weight.get_device_index());
  const Tensor g = torch::stable::contiguous(grad);
  const Tensor w = torch::stable::contiguous(weight);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor grad_weight = torch::stable::new_empty(w, w.sizes());
  Tensor grad_mask = torch::stable::new_empty(w, w.sizes());
  const int64_t n = w.numel();
  if (n == 0) return {grad_weight, grad_mask};
  const cudaStream_t stream = current_stream(w);
  const unsigned int blocks = grid_size(n, kThreads, multiprocessor_count(w));
  dispatch_floating(w.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    launch(masked_weight_backward_kernel<scalar_t>, blocks, kThreads, stream, g.const_data_ptr<scalar_t>(),
           w.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), grad_weight.mutable_data_ptr<scalar_t>(),
           grad_mask.mutable_data_ptr<scalar_t>(), n);
  });
  return {grad_weight, grad_mask};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("masked_weight", TORCH_BOX(&masked_weight_cuda));
  m.impl("masked_weight_backward", TORCH_BOX(&masked_weight_backward_cuda));
}

}  // namespace clarena::masked_weight
