// CUDA kernels of clarena::unit_mask. The input is viewed as (batch, channels, spatial).
// Forward: a grid-stride elementwise loop that carries the element's channel from one stride to
// the next instead of dividing. Backward: blocks own one channel (and, for long channels, one of a
// fixed number of slices of it), write grad_input and reduce the mask gradient in a fixed tree;
// slices are summed in order by a second kernel. No float atomics: the result is deterministic,
// and the slicing depends only on the shape.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "common/cuda.h"
#include "common/scalar.h"
#include "common/subnormal.h"
#include "ops/unit_mask.h"
#include "ops/unit_mask_checks.h"

namespace clarena::unit_mask {
namespace {

constexpr int kThreads = 256;               // a power of two (tree reduction)
constexpr int64_t kSliceElements = 1 << 15;  // elements of one channel per backward block, at least
constexpr int64_t kMaxSlices = 64;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) unit_mask_kernel(const scalar_t* __restrict__ input,
                                                              const scalar_t* __restrict__ mask,
                                                              scalar_t* __restrict__ out, int64_t n,
                                                              int64_t channels, int64_t spatial, bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (start >= n) return;
  // Element i sits at spatial position s of channel c; both advance by fixed steps per stride.
  int64_t s = start % spatial;
  int64_t c = (start / spatial) % channels;
  const int64_t step_s = stride % spatial;
  const int64_t step_c = (stride / spatial) % channels;
  for (int64_t i = start; i < n; i += stride) {
    out[i] = flush_subnormal<scalar_t>(forward<opmath_t>(input[i], mask[c], relu));
    s += step_s;
    c += step_c;
    if (s >= spatial) {
      s -= spatial;
      ++c;
    }
    if (c >= channels) c -= channels;
  }
}

// Sum over the block in a fixed tree (blockDim.x == kThreads); the result is valid in thread 0.
template <typename T>
__device__ T block_sum(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();  // `shared` is reused by the next channel
  return result;
}

// grid: x over channels, y over the slices of a channel. With one slice the block writes
// grad_mask directly, else its slice's sum into partial[c * slices + slice].
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) unit_mask_backward_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ input, const scalar_t* __restrict__ mask,
    scalar_t* __restrict__ grad_input, scalar_t* __restrict__ grad_mask, opmath_type<scalar_t>* partial,
    int64_t channels, int64_t spatial, int64_t per_channel, int64_t per_slice, bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  __shared__ opmath_t reduce[kThreads];
  const int64_t slice = blockIdx.y;
  const int64_t slices = gridDim.y;
  const int64_t end = std::min(per_channel, (slice + 1) * per_slice);
  // Position t of a channel is batch n = t / spatial, spatial s = t % spatial.
  const int64_t first = slice * per_slice + threadIdx.x;
  const int64_t first_n = first / spatial;
  const int64_t first_s = first % spatial;
  const int64_t step_n = kThreads / spatial;
  const int64_t step_s = kThreads % spatial;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    const opmath_t mc = mask[c];
    opmath_t sum = 0;
    int64_t n = first_n;
    int64_t s = first_s;
    for (int64_t t = first; t < end; t += kThreads) {
      const int64_t index = (n * channels + c) * spatial + s;
      const opmath_t g = grad[index];
      const opmath_t x = input[index];
      const bool open = passes<scalar_t>(x, mc, relu);
      grad_input[index] = flush_subnormal<scalar_t>(keep_if(open, g * mc));
      sum += keep_if(open, g * x);
      n += step_n;
      s += step_s;
      if (s >= spatial) {
        s -= spatial;
        ++n;
      }
    }
    const opmath_t total = block_sum(sum, reduce);
    if (threadIdx.x == 0) {
      if (slices == 1) {
        grad_mask[c] = flush_subnormal<scalar_t>(total);
      } else {
        partial[c * slices + slice] = total;
      }
    }
  }
}

template <typename scalar_t>
__global__ void sum_slices_kernel(const opmath_type<scalar_t>* __restrict__ partial,
                                  scalar_t* __restrict__ grad_mask, int64_t channels, int64_t slices) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < channels; c += stride) {
    opmath_t sum = 0;
    for (int64_t k = 0; k < slices; ++k) sum += partial[c * slices + k];
    grad_mask[c] = flush_subnormal<scalar_t>(sum);
  }
}

Tensor unit_mask_cuda(const Tensor& input, const Tensor& mask, bool relu) {
  const Layout layout = check_args(input, mask);
  const DeviceGuard device_guard(input.get_device_index());
  const Tensor x = torch::stable::contiguous(input);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor out = torch::stable::new_empty(x, x.sizes());
  const int64_t n = x.numel();
  if (n == 0) return out;
  const cudaStream_t stream = current_stream(x);
  const unsigned int blocks = grid_size(n, kThreads, multiprocessor_count(x));
  dispatch_floating(x.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    unit_mask_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n,
        layout.channels, layout.spatial, relu);
    CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<Tensor, Tensor> unit_mask_backward_cuda(const Tensor& grad, const Tensor& input, const Tensor& mask,
                                                   bool relu) {
  const Layout layout = check_backward_args(grad, input, mask);
  const DeviceGuard device_guard(input.get_device_index());
  const Tensor g = torch::stable::contiguous(grad);
  const Tensor x = torch::stable::contiguous(input);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor grad_input = torch::stable::new_empty(x, x.sizes());
  if (x.numel() == 0) return {grad_input, torch::stable::new_zeros(m, m.sizes())};
  Tensor grad_mask = torch::stable::new_empty(m, m.sizes());

  const int64_t channels = layout.channels;
  const int64_t spatial = layout.spatial;
  const int64_t per_channel = layout.batch * spatial;
  const int64_t slices =
      std::min(kMaxSlices, std::max<int64_t>(1, (per_channel + kSliceElements - 1) / kSliceElements));
  const int64_t per_slice = (per_channel + slices - 1) / slices;
  const int64_t channel_blocks = std::min<int64_t>(channels, std::numeric_limits<int32_t>::max());
  const dim3 grid(static_cast<unsigned int>(channel_blocks), static_cast<unsigned int>(slices));
  const cudaStream_t stream = current_stream(x);
  const unsigned int sum_blocks = grid_size(channels, kThreads, multiprocessor_count(x));
  dispatch_floating(x.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    using opmath_t = opmath_type<scalar_t>;
    // Per-slice partial sums (in opmath_t), from torch's allocator.
    std::optional<Tensor> partial;
    if (slices > 1)
      partial = torch::stable::new_empty(x, {channels * slices},
                                         sizeof(opmath_t) == sizeof(double) ? ScalarType::Double : ScalarType::Float);
    opmath_t* partial_ptr = partial ? static_cast<opmath_t*>(partial->mutable_data_ptr()) : nullptr;
    unit_mask_backward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(),
        grad_input.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), partial_ptr, channels,
        spatial, per_channel, per_slice, relu);
    CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    if (slices > 1) {
      sum_slices_kernel<scalar_t><<<sum_blocks, kThreads, 0, stream>>>(
          partial_ptr, grad_mask.mutable_data_ptr<scalar_t>(), channels, slices);
      CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_input, grad_mask};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("unit_mask", TORCH_BOX(&unit_mask_cuda));
  m.impl("unit_mask_backward", TORCH_BOX(&unit_mask_backward_cuda));
}

}  // namespace clarena::unit_mask
