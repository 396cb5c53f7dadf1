// CPU kernels of clarena::masked_weight: parallel, vectorisable elementwise loops.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "ops/masked_weight.h"
#include "ops/masked_weight_checks.h"

namespace clarena::masked_weight {
namespace {

at::Tensor masked_weight_cpu(const at::Tensor& weight, const at::Tensor& mask) {
  check_args(weight, mask);
  const at::Tensor w = weight.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor out = at::empty_like(w, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "masked_weight_cpu", [&] {
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, w.numel(), at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) op[i] = apply(wp[i], mp[i]);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> masked_weight_backward_cpu(const at::Tensor& grad, const at::Tensor& weight,
                                                              const at::Tensor& mask) {
  check_backward_args(grad, weight, mask);
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor grad_weight = at::empty_like(w, at::MemoryFormat::Contiguous);
  at::Tensor grad_mask = at::empty_like(w, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "masked_weight_backward_cpu", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    scalar_t* gm = grad_mask.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, w.numel(), at::internal::GRAIN_SIZE, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) backward(gp[i], wp[i], mp[i], gw[i], gm[i]);
    });
  });
  return {grad_weight, grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("masked_weight", &masked_weight_cpu);
  m.impl("masked_weight_backward", &masked_weight_backward_cpu);
}

}  // namespace clarena::masked_weight
