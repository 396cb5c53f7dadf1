// CUDA kernels of the parameter-wise measure ops. The weight is viewed as rows (output units) x
// row_size (= cols x inner); a 2-D grid puts rows on y and each row's elements on x, so a thread
// loads a_i once per row and tracks its input unit j by carrying (j, offset in j's block) from
// one stride to the next instead of dividing. The in-place gradient scaling reads only the two
// unit vectors and never builds the measure tensor; it takes a table of layers, so a whole
// backbone's gradients are scaled in one launch.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "common/cuda.h"
#include "common/scalar.h"
#include "common/strings.h"
#include "ops/parameter_measure.h"
#include "ops/parameter_measure_checks.h"

namespace clarena::parameter_measure {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535;

// Walks the elements of a row that one thread owns: k, and j = k / inner kept up to date by
// carrying, since k advances by a fixed stride. Built once per thread (the only divisions) and
// copied for each row.
struct RowWalk {
  int64_t k;
  int64_t j;
  int64_t offset;  // k - j * inner
  int64_t stride;
  int64_t stride_j;
  int64_t stride_offset;
  int64_t inner;

  __device__ RowWalk(int64_t start, int64_t step, int64_t inner_size)
      : k(start), j(start / inner_size), offset(start % inner_size), stride(step), stride_j(step / inner_size),
        stride_offset(step % inner_size), inner(inner_size) {}

  __device__ void advance() {
    k += stride;
    j += stride_j;
    offset += stride_offset;
    if (offset >= inner) {
      offset -= inner;
      ++j;
    }
  }
};

template <Aggregation A, typename scalar_t>
__global__ void __launch_bounds__(kThreads) fill_measure_kernel(const scalar_t* __restrict__ a,
                                                                 const scalar_t* __restrict__ b,
                                                                 scalar_t* __restrict__ out, LayerShape layer) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  const int64_t first_k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const RowWalk origin(first_k, step, layer.inner);
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; i < layer.rows;
       i += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    scalar_t* row = out + i * row_size;
    const opmath_t ai = a[i];
    if (b == nullptr) {
      for (int64_t k = first_k; k < row_size; k += step) row[k] = static_cast<scalar_t>(ai);
      continue;
    }
    for (RowWalk walk = origin; walk.k < row_size; walk.advance())
      row[walk.k] = static_cast<scalar_t>(aggregate<A, opmath_t>(ai, b[walk.j]));
  }
}

// The gradients of one launch: up to kMaxSegments layers, passed by value as a kernel argument
// (well under the 4 KiB every architecture accepts); longer lists take one launch per batch.
constexpr int kMaxSegments = 40;

template <typename scalar_t>
struct Segment {
  scalar_t* grad;
  const scalar_t* a;
  const scalar_t* b;  // null: the rate of a[i] alone
  LayerShape layer;
  opmath_type<scalar_t> r;
  int64_t first_row;  // index of its first row among the launch's rows
};

template <typename scalar_t>
struct SegmentTable {
  Segment<scalar_t> segments[kMaxSegments];
  int count;
  int64_t rows;
};

// Rows of all segments on y (a thread finds a row's segment by a scan of the short table), each
// row's elements on x.
template <Aggregation A, Rate R, typename scalar_t>
__global__ void __launch_bounds__(kThreads) scale_grads_kernel(const SegmentTable<scalar_t> table,
                                                                opmath_type<scalar_t> alpha) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t first_k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int s = 0;
  for (int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; row < table.rows;
       row += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    while (s + 1 < table.count && row >= table.segments[s + 1].first_row) ++s;
    const Segment<scalar_t>& seg = table.segments[s];
    const int64_t i = row - seg.first_row;
    const int64_t row_size = seg.layer.cols * seg.layer.inner;
    scalar_t* out = seg.grad + i * row_size;
    const opmath_t ai = seg.a[i];
    if (seg.b == nullptr) {
      const opmath_t factor = rate<R, opmath_t>(ai, alpha, seg.r);
      for (int64_t k = first_k; k < row_size; k += step)
        out[k] = static_cast<scalar_t>(static_cast<opmath_t>(out[k]) * factor);
      continue;
    }
    for (RowWalk walk(first_k, step, seg.layer.inner); walk.k < row_size; walk.advance()) {
      const opmath_t factor = rate<R, opmath_t>(aggregate<A, opmath_t>(ai, seg.b[walk.j]), alpha, seg.r);
      out[walk.k] = static_cast<scalar_t>(static_cast<opmath_t>(out[walk.k]) * factor);
    }
  }
}

// Blocks of kThreads threads shaped to the row: short rows share a block (threads on y take
// further rows), so a bias (row_size 1) still uses whole warps.
struct Launch {
  dim3 grid;
  dim3 block;
};

Launch launch_for(const LayerShape& layer, int64_t sm_count) {
  const int64_t row_size = layer.cols * layer.inner;
  int block_x = 1;
  while (block_x < kThreads && block_x < row_size) block_x *= 2;
  const int block_y = kThreads / block_x;
  const int64_t grid_y = std::min<int64_t>((layer.rows + block_y - 1) / block_y, kMaxGridY);
  const int64_t wanted_x = (row_size + block_x - 1) / block_x;
  const int64_t budget_x = std::max<int64_t>(1, sm_count * 16 / grid_y);  // enough blocks to fill the device
  const int64_t grid_x = std::max<int64_t>(1, std::min(wanted_x, budget_x));
  return {dim3(static_cast<unsigned int>(grid_x), static_cast<unsigned int>(grid_y)),
          dim3(static_cast<unsigned int>(block_x), static_cast<unsigned int>(block_y))};
}

Tensor parameter_measure_cuda(const Tensor& a, const std::optional<Tensor>& b,
                              const std::vector<int64_t>& weight_shape, StringHandle aggregation) {
  const Aggregation parsed = parse_aggregation(take_string(aggregation));
  const LayerShape layer = check_measure_args(a, a, b, weight_shape);
  const DeviceGuard device_guard(a.get_device_index());
  Tensor out = torch::stable::new_empty(a, weight_shape);
  if (out.numel() == 0) return out;
  const Tensor a_c = torch::stable::contiguous(a);
  const std::optional<Tensor> b_c = b.has_value() ? std::optional(torch::stable::contiguous(*b)) : std::nullopt;
  const Launch launch = launch_for(layer, multiprocessor_count(a));
  const cudaStream_t stream = current_stream(a);
  dispatch_floating(a.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    dispatch_aggregation(parsed, [&](auto agg) {
      fill_measure_kernel<decltype(agg)::value, scalar_t><<<launch.grid, launch.block, 0, stream>>>(
          a_c.const_data_ptr<scalar_t>(), b_c ? b_c->const_data_ptr<scalar_t>() : nullptr,
          out.mutable_data_ptr<scalar_t>(), layer);
      CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

// Scales grads[i] by the rate of measure (a[i], b[i]) with r[i]: one launch per kMaxSegments
// gradients. A non-contiguous gradient is scaled in a contiguous copy, then written back.
void scale_grads_cuda(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                      const std::vector<std::optional<Tensor>>& b, const std::vector<LayerShape>& layers,
                      const RateArgs& args, const std::vector<double>& r) {
  if (grads.empty()) return;
  const DeviceGuard device_guard(grads[0].get_device_index());
  const int64_t sm_count = multiprocessor_count(grads[0]);
  const cudaStream_t stream = current_stream(grads[0]);
  std::vector<Tensor> targets, a_c;
  std::vector<std::optional<Tensor>> b_c;
  for (size_t i = 0; i < grads.size(); ++i) {
    targets.push_back(grads[i].is_contiguous() ? grads[i] : torch::stable::contiguous(grads[i]));
    a_c.push_back(torch::stable::contiguous(a[i]));
    b_c.push_back(b[i].has_value() ? std::optional(torch::stable::contiguous(*b[i])) : std::nullopt);
  }
  dispatch_floating(grads[0].scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    size_t next = 0;
    while (next < grads.size()) {
      SegmentTable<scalar_t> table{};
      int64_t widest_row = 0;  // the longest row shapes the blocks
      for (; next < grads.size() && table.count < kMaxSegments; ++next) {
        const LayerShape& layer = layers[next];
        if (layer.rows == 0 || layer.cols * layer.inner == 0) continue;
        table.segments[table.count++] = {targets[next].mutable_data_ptr<scalar_t>(), a_c[next].const_data_ptr<scalar_t>(),
                                         b_c[next] ? b_c[next]->const_data_ptr<scalar_t>() : nullptr, layer,
                                         static_cast<opmath_t>(r[next]), table.rows};
        table.rows += layer.rows;
        widest_row = std::max(widest_row, layer.cols * layer.inner);
      }
      if (table.count == 0) continue;
      const Launch launch = launch_for(LayerShape{table.rows, widest_row, 1}, sm_count);
      dispatch_aggregation(args.aggregation, [&](auto agg) {
        dispatch_rate(args.rate, [&](auto rate_kind) {
          scale_grads_kernel<decltype(agg)::value, decltype(rate_kind)::value, scalar_t>
              <<<launch.grid, launch.block, 0, stream>>>(table, static_cast<opmath_t>(args.alpha));
          CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    }
  });
  for (size_t i = 0; i < grads.size(); ++i) {
    Tensor grad = grads[i];
    if (targets[i].get() != grad.get()) torch::stable::copy_(grad, targets[i]);
  }
}

void scale_grad_by_measure_cuda(Tensor grad, const Tensor& a, const std::optional<Tensor>& b,
                                StringHandle aggregation, StringHandle rate, double alpha, double r) {
  const RateArgs args = check_rate_args(take_string(aggregation), take_string(rate), alpha, {r}, false);
  const LayerShape layer = check_grad_args(grad, a, b);
  scale_grads_cuda({grad}, {a}, {b}, {layer}, args, {r});
}

void foreach_scale_grad_by_measure_cuda(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                                        const std::vector<std::optional<Tensor>>& b, StringHandle aggregation,
                                        StringHandle rate, double alpha, const std::vector<double>& r) {
  const RateArgs args = check_rate_args(take_string(aggregation), take_string(rate), alpha, r, true);
  const std::vector<LayerShape> layers = check_foreach_args(grads, a, b, r);
  scale_grads_cuda(grads, a, b, layers, args, r);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("parameter_measure", TORCH_BOX(&parameter_measure_cuda));
  m.impl("scale_grad_by_measure_", TORCH_BOX(&scale_grad_by_measure_cuda));
  m.impl("foreach_scale_grad_by_measure_", TORCH_BOX(&foreach_scale_grad_by_measure_cuda));
}

}  // namespace clarena::parameter_measure
