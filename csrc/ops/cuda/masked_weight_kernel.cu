// CUDA kernels of clarena::masked_weight: grid-stride elementwise loops over contiguous copies,
// with the element math from masked_weight.h.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "ops/masked_weight.h"
#include "ops/masked_weight_checks.h"

namespace clarena::masked_weight {
namespace {

constexpr int kThreads = 256;

unsigned int grid_size(int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->multiProcessorCount) * 8;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

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

at::Tensor masked_weight_cuda(const at::Tensor& weight, const at::Tensor& mask) {
  check_args(weight, mask);
  const c10::cuda::CUDAGuard device_guard(weight.device());
  const at::Tensor w = weight.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor out = at::empty_like(w, at::MemoryFormat::Contiguous);
  const int64_t n = w.numel();
  if (n == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "masked_weight_cuda", [&] {
    masked_weight_kernel<scalar_t><<<grid_size(n), kThreads, 0, stream>>>(
        w.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> masked_weight_backward_cuda(const at::Tensor& grad, const at::Tensor& weight,
                                                               const at::Tensor& mask) {
  check_backward_args(grad, weight, mask);
  const c10::cuda::CUDAGuard device_guard(weight.device());
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor grad_weight = at::empty_like(w, at::MemoryFormat::Contiguous);
  at::Tensor grad_mask = at::empty_like(w, at::MemoryFormat::Contiguous);
  const int64_t n = w.numel();
  if (n == 0) return {grad_weight, grad_mask};
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "masked_weight_backward_cuda", [&] {
    masked_weight_backward_kernel<scalar_t><<<grid_size(n), kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(),
        grad_weight.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_weight, grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("masked_weight", &masked_weight_cuda);
  m.impl("masked_weight_backward", &masked_weight_backward_cuda);
}

}  // namespace clarena::masked_weight
