// CPU kernels of the parameter-wise measure ops: one parallel pass over the weight's rows. The
// in-place gradient scaling reads only the two unit vectors and never builds the measure tensor.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/parameter_measure.h"
#include "ops/parameter_measure_checks.h"

namespace clarena::parameter_measure {
namespace {

int64_t row_grain(const LayerShape& layer) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, layer.cols * layer.inner));
}

template <Aggregation A, typename scalar_t>
void fill_linear_row(scalar_t* __restrict__ row, const scalar_t* __restrict__ b, int64_t cols,
                     at::opmath_type<scalar_t> ai) {
  for (int64_t j = 0; j < cols; ++j) row[j] = static_cast<scalar_t>(aggregate<A, at::opmath_type<scalar_t>>(ai, b[j]));
}

template <Aggregation A, typename scalar_t>
void fill_measure(const scalar_t* a, const scalar_t* b, scalar_t* out, LayerShape layer) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  at::parallel_for(0, layer.rows, row_grain(layer), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* row = out + i * row_size;
      const opmath_t ai = a[i];
      if (b == nullptr) {
        for (int64_t k = 0; k < row_size; ++k) row[k] = static_cast<scalar_t>(ai);
      } else if (layer.inner == 1) {
        fill_linear_row<A, scalar_t>(row, b, layer.cols, ai);
      } else {
        for (int64_t j = 0; j < layer.cols; ++j) {
          const scalar_t value = static_cast<scalar_t>(aggregate<A, opmath_t>(ai, b[j]));
          for (int64_t k = 0; k < layer.inner; ++k) row[j * layer.inner + k] = value;
        }
      }
    }
  });
}

// One row of a Linear weight's gradient: a function of its own, so the __restrict__ promise holds
// inside the loop (through a lambda's captures the compiler loses it) and the loop vectorises.
template <Aggregation A, Rate R, typename scalar_t>
void scale_linear_row(scalar_t* __restrict__ row, const scalar_t* __restrict__ b, int64_t cols,
                      at::opmath_type<scalar_t> ai, at::opmath_type<scalar_t> alpha, at::opmath_type<scalar_t> r) {
  using opmath_t = at::opmath_type<scalar_t>;
  for (int64_t j = 0; j < cols; ++j)
    row[j] = static_cast<scalar_t>(row[j] * rate<R, opmath_t>(aggregate<A, opmath_t>(ai, b[j]), alpha, r));
}

template <Aggregation A, Rate R, typename scalar_t>
void scale_grad(scalar_t* grad, const scalar_t* a, const scalar_t* b, LayerShape layer, at::opmath_type<scalar_t> alpha,
                at::opmath_type<scalar_t> r) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  at::parallel_for(0, layer.rows, row_grain(layer), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* row = grad + i * row_size;
      const opmath_t ai = a[i];
      if (b == nullptr) {
        const opmath_t factor = rate<R, opmath_t>(ai, alpha, r);
        for (int64_t k = 0; k < row_size; ++k) row[k] = static_cast<scalar_t>(row[k] * factor);
      } else if (layer.inner == 1) {
        scale_linear_row<A, R, scalar_t>(row, b, layer.cols, ai, alpha, r);
      } else {
        for (int64_t j = 0; j < layer.cols; ++j) {
          const opmath_t factor = rate<R, opmath_t>(aggregate<A, opmath_t>(ai, b[j]), alpha, r);
          scalar_t* block = row + j * layer.inner;
          for (int64_t k = 0; k < layer.inner; ++k) block[k] = static_cast<scalar_t>(block[k] * factor);
        }
      }
    }
  });
}

at::Tensor parameter_measure_cpu(const at::Tensor& a, const std::optional<at::Tensor>& b,
                                 at::IntArrayRef weight_shape, c10::string_view mode) {
  const Aggregation aggregation = parse_aggregation(mode);
  const LayerShape layer = check_measure_args(a, a, b, weight_shape);
  at::Tensor out = at::empty(weight_shape, a.options());
  if (out.numel() == 0) return out;
  const at::Tensor a_c = a.contiguous();
  const at::Tensor b_c = b.has_value() ? b->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "parameter_measure_cpu", [&] {
    dispatch_aggregation(aggregation, [&](auto agg) {
      fill_measure<decltype(agg)::value, scalar_t>(a_c.const_data_ptr<scalar_t>(),
                                                   b_c.defined() ? b_c.const_data_ptr<scalar_t>() : nullptr,
                                                   out.mutable_data_ptr<scalar_t>(), layer);
    });
  });
  return out;
}

void scale_grad_by_measure_cpu(const at::Tensor& grad, const at::Tensor& a, const std::optional<at::Tensor>& b,
                               c10::string_view aggregation_name, c10::string_view rate_name, double alpha,
                               double r) {
  const ScaleGradCall call = check_scale_grad_args(grad, a, b, aggregation_name, rate_name);
  if (grad.numel() == 0) return;
  // A non-contiguous gradient is scaled in a contiguous copy, then written back.
  at::Tensor target = grad.is_contiguous() ? grad : grad.contiguous();
  const at::Tensor a_c = a.contiguous();
  const at::Tensor b_c = b.has_value() ? b->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "scale_grad_by_measure_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_aggregation(call.aggregation, [&](auto agg) {
      dispatch_rate(call.rate, [&](auto rate_kind) {
        scale_grad<decltype(agg)::value, decltype(rate_kind)::value, scalar_t>(
            target.mutable_data_ptr<scalar_t>(), a_c.const_data_ptr<scalar_t>(),
            b_c.defined() ? b_c.const_data_ptr<scalar_t>() : nullptr, call.layer, static_cast<opmath_t>(alpha),
            static_cast<opmath_t>(r));
      });
    });
  });
  if (!target.is_same(grad)) grad.copy_(target);
}

}  // namespace

TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("parameter_measure", &parameter_measure_cpu);
  m.impl("scale_grad_by_measure_", &scale_grad_by_measure_cpu);
}

}  // namespace clarena::parameter_measure
