// CPU kernels of the parameter-wise measure ops. Every weight (or gradient) is a segment of rows:
// row i holds the elements of output unit i, and element k of a row has input unit k / inner. The
// input-unit measures `b` are laid out once per layer along one row (a row's worth, not a weight's),
// so every row is one loop over two contiguous arrays that vectorises, convolutions included. The
// list op puts all layers' rows in one table and walks it with a single parallel loop.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "common/scalar.h"
#include "common/strings.h"
#include "ops/parameter_measure.h"
#include "ops/parameter_measure_checks.h"

namespace clarena::parameter_measure {
namespace {

// One layer's rows: `rows` rows of `row_size` elements from `data`; `b_row` is b[k / inner] for
// each k of a row, or null (measure a[i] alone).
template <typename scalar_t>
struct Segment {
  scalar_t* data;
  const scalar_t* a;
  const scalar_t* b_row;
  int64_t rows;
  int64_t row_size;
  opmath_type<scalar_t> r;
  int64_t first_row;  // index of its first row in the table
};

template <typename scalar_t>
class SegmentTable {
 public:
  void add(scalar_t* data, const scalar_t* a, const scalar_t* b, const LayerShape& layer, double r) {
    const int64_t row_size = layer.cols * layer.inner;
    if (layer.rows == 0 || row_size == 0) return;
    const scalar_t* b_row = b;
    if (b != nullptr && layer.inner > 1) {
      std::vector<scalar_t>& spread = spread_b_.emplace_back(row_size);
      for (int64_t j = 0; j < layer.cols; ++j) std::fill_n(spread.data() + j * layer.inner, layer.inner, b[j]);
      b_row = spread.data();
    }
    segments_.push_back({data, a, b_row, layer.rows, row_size, static_cast<opmath_type<scalar_t>>(r), rows_});
    rows_ += layer.rows;
    elements_ += layer.rows * row_size;
  }

  // Calls row_fn(segment, i) for row i of every segment, all segments in one parallel loop.
  template <typename RowFn>
  void for_each_row(const RowFn& row_fn) const {
    if (rows_ == 0) return;
    parallel_rows(rows_, elements_ / rows_, [&](int64_t begin, int64_t end) {
      auto segment = std::upper_bound(segments_.begin(), segments_.end(), begin,
                                      [](int64_t row, const Segment<scalar_t>& s) { return row < s.first_row; }) -
                     1;
      for (int64_t row = begin; row < end; ++segment) {
        const int64_t stop = std::min(end, segment->first_row + segment->rows);
        for (; row < stop; ++row) row_fn(*segment, row - segment->first_row);
      }
    });
  }

 private:
  std::vector<Segment<scalar_t>> segments_;
  std::vector<std::vector<scalar_t>> spread_b_;  // moving the outer vector keeps the inner buffers
  int64_t rows_ = 0;
  int64_t elements_ = 0;
};

// Row loops: functions of their own, so the __restrict__ promises hold (through a lambda's
// captures the compiler loses them) and the loops vectorise.
template <Aggregation A, typename scalar_t>
void fill_row(scalar_t* __restrict__ row, const scalar_t* __restrict__ b, int64_t n, opmath_type<scalar_t> ai) {
  for (int64_t k = 0; k < n; ++k) row[k] = static_cast<scalar_t>(aggregate<A, opmath_type<scalar_t>>(ai, b[k]));
}

template <Aggregation A, Rate R, typename scalar_t>
void scale_row(scalar_t* __restrict__ row, const scalar_t* __restrict__ b, int64_t n, opmath_type<scalar_t> ai,
               opmath_type<scalar_t> alpha, opmath_type<scalar_t> r) {
  using opmath_t = opmath_type<scalar_t>;
  for (int64_t k = 0; k < n; ++k)
    row[k] = static_cast<scalar_t>(row[k] * rate<R, opmath_t>(aggregate<A, opmath_t>(ai, b[k]), alpha, r));
}

template <typename scalar_t>
void scale_row_by(scalar_t* __restrict__ row, int64_t n, opmath_type<scalar_t> factor) {
  for (int64_t k = 0; k < n; ++k) row[k] = static_cast<scalar_t>(row[k] * factor);
}

template <Aggregation A, typename scalar_t>
void fill_measure(const SegmentTable<scalar_t>& table) {
  table.for_each_row([](const Segment<scalar_t>& s, int64_t i) {
    scalar_t* row = s.data + i * s.row_size;
    if (s.b_row == nullptr) {
      std::fill_n(row, s.row_size, s.a[i]);
    } else {
      fill_row<A, scalar_t>(row, s.b_row, s.row_size, s.a[i]);
    }
  });
}

template <Aggregation A, Rate R, typename scalar_t>
void scale_grads(const SegmentTable<scalar_t>& table, opmath_type<scalar_t> alpha) {
  using opmath_t = opmath_type<scalar_t>;
  table.for_each_row([alpha](const Segment<scalar_t>& s, int64_t i) {
    scalar_t* row = s.data + i * s.row_size;
    const opmath_t ai = s.a[i];
    if (s.b_row == nullptr) {
      scale_row_by<scalar_t>(row, s.row_size, rate<R, opmath_t>(ai, alpha, s.r));
    } else {
      scale_row<A, R, scalar_t>(row, s.b_row, s.row_size, ai, alpha, s.r);
    }
  });
}

Tensor dense(const Tensor& t) {
  return t.is_contiguous() ? t : torch::stable::contiguous(t);
}

Tensor parameter_measure_cpu(const Tensor& a, const std::optional<Tensor>& b, const std::vector<int64_t>& weight_shape,
                             StringHandle aggregation) {
  const Aggregation parsed = parse_aggregation(take_string(aggregation));
  const LayerShape layer = check_measure_args(a, a, b, weight_shape);
  Tensor out = torch::stable::new_empty(a, weight_shape);
  const Tensor a_c = dense(a);
  const std::optional<Tensor> b_c = b.has_value() ? std::optional(dense(*b)) : std::nullopt;
  dispatch_floating(a.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    SegmentTable<scalar_t> table;
    table.add(out.mutable_data_ptr<scalar_t>(), a_c.const_data_ptr<scalar_t>(),
              b_c ? b_c->const_data_ptr<scalar_t>() : nullptr, layer, 0.0);
    dispatch_aggregation(parsed, [&](auto agg) { fill_measure<decltype(agg)::value, scalar_t>(table); });
  });
  return out;
}

// Scales grads[i] by the rate of measure (a[i], b[i]) with r[i], for every i in one pass. A
// non-contiguous gradient is scaled in a contiguous copy, then written back.
void scale_grads_cpu(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                     const std::vector<std::optional<Tensor>>& b, const std::vector<LayerShape>& layers,
                     const RateArgs& args, const std::vector<double>& r) {
  if (grads.empty()) return;
  std::vector<Tensor> targets, a_c;
  std::vector<std::optional<Tensor>> b_c;
  for (size_t i = 0; i < grads.size(); ++i) {
    targets.push_back(dense(grads[i]));
    a_c.push_back(dense(a[i]));
    b_c.push_back(b[i].has_value() ? std::optional(dense(*b[i])) : std::nullopt);
  }
  dispatch_floating(grads[0].scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    SegmentTable<scalar_t> table;
    for (size_t i = 0; i < grads.size(); ++i)
      table.add(targets[i].mutable_data_ptr<scalar_t>(), a_c[i].const_data_ptr<scalar_t>(),
                b_c[i] ? b_c[i]->const_data_ptr<scalar_t>() : nullptr, layers[i], r[i]);
    dispatch_aggregation(args.aggregation, [&](auto agg) {
      dispatch_rate(args.rate, [&](auto rate_kind) {
        scale_grads<decltype(agg)::value, decltype(rate_kind)::value, scalar_t>(
            table, static_cast<opmath_type<scalar_t>>(args.alpha));
      });
    });
  });
  for (size_t i = 0; i < grads.size(); ++i) {
    Tensor grad = grads[i];
    if (targets[i].get() != grad.get()) torch::stable::copy_(grad, targets[i]);
  }
}

void scale_grad_by_measure_cpu(Tensor grad, const Tensor& a, const std::optional<Tensor>& b,
                               StringHandle aggregation, StringHandle rate, double alpha, double r) {
  const RateArgs args = check_rate_args(take_string(aggregation), take_string(rate), alpha, {r}, false);
  const LayerShape layer = check_grad_args(grad, a, b);
  scale_grads_cpu({grad}, {a}, {b}, {layer}, args, {r});
}

void foreach_scale_grad_by_measure_cpu(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                                       const std::vector<std::optional<Tensor>>& b, StringHandle aggregation,
                                       StringHandle rate, double alpha, const std::vector<double>& r) {
  const RateArgs args = check_rate_args(take_string(aggregation), take_string(rate), alpha, r, true);
  const std::vector<LayerShape> layers = check_foreach_args(grads, a, b, r);
  scale_grads_cpu(grads, a, b, layers, args, r);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("parameter_measure", TORCH_BOX(&parameter_measure_cpu));
  m.impl("scale_grad_by_measure_", TORCH_BOX(&scale_grad_by_measure_cpu));
  m.impl("foreach_scale_grad_by_measure_", TORCH_BOX(&foreach_scale_grad_by_measure_cpu));
}

}  // namespace clarena::parameter_measure
