// CUDA kernels of the parameter-wise measure ops. The weight is viewed as rows (output units) x
// row_size (= cols x inner); a 2-D grid puts rows on y and each row's elements on x, so a thread
// loads a_i once per row and tracks its input unit j by carrying (j, offset in j's block) from
// one stride to the next instead of dividing. The in-place gradient scaling reads only the two
// unit vectors and never builds the measure tensor.
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

template <Aggregation A, Rate R, typename scalar_t>
__global__ void __launch_bounds__(kThreads) scale_grad_kernel(scalar_t* __restrict__ grad,
                                                               const scalar_t* __restrict__ a,
                                                               const scalar_t* __restrict__ b, LayerShape layer,
                                                               opmath_type<scalar_t> alpha,
                                                               opmath_type<scalar_t> r) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t row_size = layer.cols * layer.inner;
  const int64_t first_k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const RowWalk origin(first_k, step, layer.inner);
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; i < layer.rows;
       i += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    scalar_t* row = grad + i * row_size;
    const opmath_t ai = a[i];
    if (b == nullptr) {
      const opmath_t factor = rate<R, opmath_t>(ai, alpha, r);
      for (int64_t k = first_k; k < row_size; k += step)
        row[k] = static_cast<scalar_t>(static_cast<opmath_t>(row[k]) * factor);
      continue;
    }
    for (RowWalk walk = origin; walk.k < row_size; walk.advance()) {
      const opmath_t factor = rate<R, opmath_t>(aggregate<A, opmath_t>(ai, b[walk.j]), alpha, r);
      row[walk.k] = static_cast<scalar_t>(static_cast<opmath_t>(row[walk.k]) * factor);
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
                              const std::vector<int64_t>& weight_shape, StringHandle mode) {
  const Aggregation aggregation = parse_aggregation(take_string(mode));
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
    dispatch_aggregation(aggregation, [&](auto agg) {
      fill_measure_kernel<decltype(agg)::value, scalar_t><<<launch.grid, launch.block, 0, stream>>>(
          a_c.const_data_ptr<scalar_t>(), b_c ? b_c->const_data_ptr<scalar_t>() : nullptr,
          out.mutable_data_ptr<scalar_t>(), layer);
      CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}

void scale_grad_by_measure_cuda(Tensor grad, const Tensor& a, const std::optional<Tensor>& b,
                                StringHandle aggregation_name, StringHandle rate_name, double alpha, double r) {
  const std::string aggregation = take_string(aggregation_name);
  const ScaleGradCall call = check_scale_grad_args(grad, a, b, aggregation, take_string(rate_name));
  if (grad.numel() == 0) return;
  const DeviceGuard device_guard(grad.get_device_index());
  // A non-contiguous gradient is scaled in a contiguous copy, then written back.
  Tensor target = grad.is_contiguous() ? grad : torch::stable::contiguous(grad);
  const Tensor a_c = torch::stable::contiguous(a);
  const std::optional<Tensor> b_c = b.has_value() ? std::optional(torch::stable::contiguous(*b)) : std::nullopt;
  const Launch launch = launch_for(call.layer, multiprocessor_count(grad));
  const cudaStream_t stream = current_stream(grad);
  dispatch_floating(grad.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    dispatch_aggregation(call.aggregation, [&](auto agg) {
      dispatch_rate(call.rate, [&](auto rate_kind) {
        scale_grad_kernel<decltype(agg)::value, decltype(rate_kind)::value, scalar_t>
            <<<launch.grid, launch.block, 0, stream>>>(
                target.mutable_data_ptr<scalar_t>(), a_c.const_data_ptr<scalar_t>(),
                b_c ? b_c->const_data_ptr<scalar_t>() : nullptr, call.layer, static_cast<opmath_t>(alpha),
                static_cast<opmath_t>(r));
        CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  if (target.get() != grad.get()) torch::stable::copy_(grad, target);
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("parameter_measure", TORCH_BOX(&parameter_measure_cuda));
  m.impl("scale_grad_by_measure_", TORCH_BOX(&scale_grad_by_measure_cuda));
}

}  // namespace clarena::parameter_measure
