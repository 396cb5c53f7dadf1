// CPU kernels of the parameter-wise measure ops: one parallel pass over the weight's rows. The
// in-place gradient scaling reads only the two unit vectors and never builds the measure tensor.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <optional>
#include <string>

#include "common/parallel.h"
#include "common/scalar.h"
#include "common/strings.h"
#include "ops/parameter_measure.h"
#include "ops/parameter_measure_checks.h"

namespace clarena::parameter_measure {
namespace {

int64_t row_grain(const LayerShape& layer) {
  return grain_for(layer.cols * layer.inner);
}

template <Aggregation A, typename scalar_t>
void fill_linear_row(scalar_t* __restrict__ row, const scalar_t* __restrict__ b, int64_t cols,
                     opmath_type<scalar_t> ai) {
  for (int64_t j = 0; j < cols; ++j) row[j] = static_cast<scalar_t>(aggregate<A, opmath_type<scalar_t>>(ai, b[j]));
}

template <Aggregation A, typename scalar_t>
void fill_measure(const scalar_t* a, const scalar_t* b, scalar_t* out, LayerShape layer) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  torch::stable::parallel_for(0, layer.rows, row_grain(layer), [&](int64_t begin, int64_t end) {
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
                      opmath_type<scalar_t> ai, opmath_type<scalar_t> alpha, opmath_type<scalar_t> r) {
  using opmath_t = opmath_type<scalar_t>;
  for (int64_t j = 0; j < cols; ++j)
    row[j] = static_cast<scalar_t>(row[j] * rate<R, opmath_t>(aggregate<A, opmath_t>(ai, b[j]), alpha, r));
}

template <Aggregation A, Rate R, typename scalar_t>
void scale_grad(scalar_t* grad, const scalar_t* a, const scalar_t* b, LayerShape layer, opmath_type<scalar_t> alpha,
                opmath_type<scalar_t> r) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  torch::stable::parallel_for(0, layer.rows, row_grain(layer), [&](int64_t begin, int64_t end) {
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

Tensor parameter_measure_cpu(const Tensor& a, const std::optional<Tensor>& b, const std::vector<int64_t>& weight_shape,
                             StringHandle mode) {
  const Aggregation aggregation = parse_aggregation(take_string(mode));
  const LayerShape layer = check_measure_args(a, a, b, weight_shape);
  Tensor out = torch::stable::new_empty(a, weight_shape);
  if (out.numel() == 0) return out;
  const Tensor a_c = torch::stable::contiguous(a);
  const std::optional<Tensor> b_c = b.has_value() ? std::optional(torch::stable::contiguous(*b)) : std::nullopt;
  dispatch_floating(a.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    dispatch_aggregation(aggregation, [&](auto agg) {
      fill_measure<decltype(agg)::value, scalar_t>(a_c.const_data_ptr<scalar_t>(),
                                                   b_c ? b_c->const_data_ptr<scalar_t>() : nullptr,
                                                   out.mutable_data_ptr<scalar_t>(), layer);
    });
  });
  return out;
}

void scale_grad_by_measure_cpu(Tensor grad, const Tensor& a, const std::optional<Tensor>& b,
                               StringHandle aggregation_name, StringHandle rate_name, double alpha, double r) {
  const std::string aggregation = take_string(aggregation_name);
  const ScaleGradCall call = check_scale_grad_args(grad, a, b, aggregation, take_string(rate_name));
  if (grad.numel() == 0) return;
  // A non-contiguous gradient is scaled in a contiguous copy, then written back.
  Tensor target = grad.is_contiguous() ? grad : torch::stable::contiguous(grad);
  const Tensor a_c = torch::stable::contiguous(a);
  const std::optional<Tensor> b_c = b.has_value() ? std::optional(torch::stable::contiguous(*b)) : std::nullopt;
  dispatch_floating(grad.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    dispatch_aggregation(call.aggregation, [&](auto agg) {
      dispatch_rate(call.rate, [&](auto rate_kind) {
        scale_grad<decltype(agg)::value, decltype(rate_kind)::value, scalar_t>(
            target.mutable_data_ptr<scalar_t>(), a_c.const_data_ptr<scalar_t>(),
            b_c ? b_c->const_data_ptr<scalar_t>() : nullptr, call.layer, static_cast<opmath_t>(alpha),
            static_cast<opmath_t>(r));
      });
    });
  });
  if (target.get() != grad.get()) torch::stable::copy_(grad, target);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("parameter_measure", TORCH_BOX(&parameter_measure_cpu));
  m.impl("scale_grad_by_measure_", TORCH_BOX(&scale_grad_by_measure_cpu));
}

}  // namespace clarena::parameter_measure
