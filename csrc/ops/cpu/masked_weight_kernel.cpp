// CPU kernels of clarena::masked_weight: parallel elementwise loops, vectorised for the CPU.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <tuple>

#include "common/parallel.h"
#include "common/scalar.h"
#include "ops/masked_weight.h"
#include "ops/masked_weight_checks.h"

namespace clarena::masked_weight {
namespace {

Tensor masked_weight_cpu(const Tensor& weight, const Tensor& mask) {
  check_args(weight, mask);
  const Tensor w = torch::stable::contiguous(weight);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor out = torch::stable::new_empty(w, w.sizes());
  dispatch_floating(w.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    parallel_rows(w.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) op[i] = apply(wp[i], mp[i]);
    });
  });
  return out;
}

std::tuple<Tensor, Tensor> masked_weight_backward_cpu(const Tensor& grad, const Tensor& weight, const Tensor& mask) {
  check_backward_args(grad, weight, mask);
  const Tensor g = torch::stable::contiguous(grad);
  const Tensor w = torch::stable::contiguous(weight);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor grad_weight = torch::stable::new_empty(w, w.sizes());
  Tensor grad_mask = torch::stable::new_empty(w, w.sizes());
  dispatch_floating(w.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    scalar_t* gm = grad_mask.mutable_data_ptr<scalar_t>();
    parallel_rows(w.numel(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) backward(gp[i], wp[i], mp[i], gw[i], gm[i]);
    });
  });
  return {grad_weight, grad_mask};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("masked_weight", TORCH_BOX(&masked_weight_cpu));
  m.impl("masked_weight_backward", TORCH_BOX(&masked_weight_backward_cpu));
}

}  // namespace clarena::masked_weight
