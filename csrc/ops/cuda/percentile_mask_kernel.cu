// CUDA kernel of clarena::percentile_mask: a grid-wide radix select of the two order statistics
// that torch.quantile interpolates between, then one compare pass. The selection state lives in a
// small device buffer and every step is a kernel on the current stream: no host synchronisation,
// so the op can be captured in a CUDA graph.
//
// Per radix digit (shifts from percentile_mask.h: 3 digits for float32, 6 for float64):
//   histogram_kernel     counts the digit of each key whose already selected high bits equal the
//                        prefix; the first pass also flags NaN, the last one (when the upper order
//                        statistic is needed) also finds the smallest key above every candidate;
//   select_digit_kernel  one block: the digit that holds the target rank narrows the prefix and
//                        the rank. After the last digit the prefix is the exact key of rank
//                        `below`; the block also records how many keys equal it and the next
//                        larger key, which give the order statistic of rank `below + 1`.
// Then threshold_kernel (one thread) interpolates with the shared lerp, and mask_kernel compares.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <limits>

#include "common/checks.h"
#include "common/cuda.h"
#include "common/scalar.h"
#include "ops/percentile_mask.h"
#include "ops/percentile_mask_checks.h"

namespace clarena::percentile_mask {
namespace {

constexpr int kThreads = 256;        // histogram and compare blocks
constexpr int kSelectThreads = 256;  // the single digit-selection block
constexpr int kBinsPerThread = kBins / kSelectThreads;
static_assert(kBins % kSelectThreads == 0, "every selection thread owns the same number of bins");

using count_t = unsigned long long;  // element counts: exact beyond 2^32 elements

template <typename scalar_t>
struct SelectState {
  using key_t = typename KeyOf<scalar_t>::type;
  key_t prefix;       // selected high bits of the key of rank `below`
  key_t known;        // which bits of `prefix` are selected (always a run of top bits)
  key_t above;        // smallest key seen above the key of rank `below` (all ones: none yet)
  count_t rank;       // rank of the target among the keys that match `prefix` on `known`
  count_t equal;      // after the last digit: how many keys equal the key of rank `below`
  unsigned int has_nan;
  scalar_t threshold;
};

template <typename key_t>
constexpr key_t kNoKey = std::numeric_limits<key_t>::max();

// atomicMin has no overload for uint64_t (unsigned long on Linux): go through unsigned long long.
__device__ __forceinline__ void atomic_min_key(uint32_t* address, uint32_t value) {
  atomicMin(address, value);
}
__device__ __forceinline__ void atomic_min_key(uint64_t* address, uint64_t value) {
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long), "64-bit keys");
  atomicMin(reinterpret_cast<unsigned long long*>(address), static_cast<unsigned long long>(value));
}

// Minimum over the block (blockDim.x == kThreads, a power of two); the result is in every thread.
template <typename T>
__device__ T block_min(T value, T* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int width = blockDim.x / 2; width > 0; width /= 2) {
    if (threadIdx.x < width && shared[threadIdx.x + width] < shared[threadIdx.x])
      shared[threadIdx.x] = shared[threadIdx.x + width];
    __syncthreads();
  }
  const T result = shared[0];
  __syncthreads();  // `shared` may be reused right after
  return result;
}

template <typename scalar_t>
__global__ void init_kernel(SelectState<scalar_t>* state, count_t* histogram, int64_t below) {
  using key_t = typename KeyOf<scalar_t>::type;
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x) histogram[bin] = 0;
  if (threadIdx.x == 0) {
    state->prefix = 0;
    state->known = 0;
    state->above = kNoKey<key_t>;
    state->rank = static_cast<count_t>(below);
    state->equal = 0;
    state->has_nan = 0;
    state->threshold = scalar_t(0);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) histogram_kernel(const scalar_t* __restrict__ x, int64_t n, int shift,
                                                              bool check_nan, bool track_above,
                                                              SelectState<scalar_t>* state, count_t* histogram) {
  using key_t = typename KeyOf<scalar_t>::type;
  __shared__ count_t bins[kBins];
  __shared__ key_t reduce[kThreads];
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x) bins[bin] = 0;
  __syncthreads();

  const key_t prefix = state->prefix;
  const key_t known = state->known;
  bool nan = false;
  key_t smallest_above = kNoKey<key_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const scalar_t value = x[i];
    if (check_nan) nan |= (value != value);
    const key_t key = to_key(value);
    const key_t high = key & known;
    if (high == prefix) {
      atomicAdd(&bins[digit(key, shift)], count_t(1));
    } else if (track_above && high > prefix && key < smallest_above) {
      // Left behind by an earlier digit for being larger: `known` is a run of top bits, so the
      // masked comparison orders it above every remaining candidate.
      smallest_above = key;
    }
  }
  __syncthreads();
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x)
    if (bins[bin] != 0) atomicAdd(&histogram[bin], bins[bin]);

  if (check_nan && __syncthreads_or(nan) && threadIdx.x == 0) atomicOr(&state->has_nan, 1u);
  if (track_above) {
    const key_t block_smallest = block_min(smallest_above, reduce);
    if (threadIdx.x == 0 && block_smallest != kNoKey<key_t>) atomic_min_key(&state->above, block_smallest);
  }
}

// One block of kSelectThreads threads; thread t owns bins [t * kBinsPerThread, (t + 1) * kBinsPerThread).
template <typename scalar_t>
__global__ void __launch_bounds__(kSelectThreads) select_digit_kernel(int shift, bool last,
                                                                       SelectState<scalar_t>* state,
                                                                       count_t* histogram) {
  using key_t = typename KeyOf<scalar_t>::type;
  __shared__ count_t scan[kSelectThreads];
  __shared__ int next_bin[kSelectThreads];
  __shared__ int chosen;
  __shared__ count_t chosen_before;
  __shared__ count_t chosen_count;

  const int tid = threadIdx.x;
  const int first_bin = tid * kBinsPerThread;
  count_t counts[kBinsPerThread];
  count_t total = 0;
#pragma unroll
  for (int k = 0; k < kBinsPerThread; ++k) {
    counts[k] = histogram[first_bin + k];
    total += counts[k];
  }
  if (tid == 0) {
    chosen = 0;
    chosen_before = 0;
    chosen_count = 0;
  }
  // Inclusive scan of the per-thread totals (Hillis-Steele).
  scan[tid] = total;
  __syncthreads();
  for (int offset = 1; offset < kSelectThreads; offset *= 2) {
    const count_t add = tid >= offset ? scan[tid - offset] : count_t(0);
    __syncthreads();
    scan[tid] += add;
    __syncthreads();
  }
  const count_t rank = state->rank;
  const count_t before_thread = scan[tid] - total;
  if (rank >= before_thread && rank < before_thread + total) {  // exactly one thread
    count_t before = before_thread;
#pragma unroll
    for (int k = 0; k < kBinsPerThread; ++k) {
      if (rank < before + counts[k]) {
        chosen = first_bin + k;
        chosen_before = before;
        chosen_count = counts[k];
        break;
      }
      before += counts[k];
    }
  }
  if (!last) {
#pragma unroll
    for (int k = 0; k < kBinsPerThread; ++k) histogram[first_bin + k] = 0;  // ready for the next digit
  }
  __syncthreads();
  const int bin = chosen;

  // After the last digit: the first non-empty bin above the chosen one holds the next larger key.
  int next = kBins;
  if (last) {
#pragma unroll
    for (int k = 0; k < kBinsPerThread; ++k) {
      if (first_bin + k > bin && counts[k] != 0) {
        next = first_bin + k;
        break;
      }
    }
    next = block_min(next, next_bin);
  }

  if (tid == 0) {
    const key_t digit_bits = key_t(kBins - 1) << shift;
    // The last digit may overlap bits selected before; candidates agree on them, so replacing
    // the whole digit is exact.
    const key_t base = state->prefix & ~digit_bits;
    state->prefix = base | (key_t(bin) << shift);
    state->known |= digit_bits;
    state->rank = rank - chosen_before;
    if (last) {
      state->equal = chosen_count;
      if (next < kBins) {
        const key_t next_key = base | (key_t(next) << shift);
        if (next_key < state->above) state->above = next_key;
      }
    }
  }
}

template <typename scalar_t>
__global__ void threshold_kernel(SelectState<scalar_t>* state, bool need_above, scalar_t weight) {
  scalar_t lower;
  scalar_t upper;
  if (state->has_nan) {
    lower = upper = std::numeric_limits<scalar_t>::quiet_NaN();  // as torch.quantile gives
  } else {
    lower = from_key<scalar_t>(state->prefix);
    // Rank `below + 1` is another copy of the same key, or else the next larger key.
    const bool another_equal = state->rank + 1 < state->equal;
    upper = (need_above && !another_equal) ? from_key<scalar_t>(state->above) : lower;
  }
  state->threshold = lerp(lower, upper, weight);
}

template <typename scalar_t>
__global__ void mask_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t n,
                            const SelectState<scalar_t>* state) {
  const scalar_t threshold = state->threshold;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = mask_value(x[i], threshold);
}

unsigned int grid_size(int64_t n, int64_t sm_count, int blocks_per_sm) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t cap = sm_count * blocks_per_sm;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, cap)));
}

template <typename scalar_t>
void percentile_mask_impl(const scalar_t* x, scalar_t* out, int64_t n, double keep, const Tensor& like) {
  using key_t = typename KeyOf<scalar_t>::type;
  using State = SelectState<scalar_t>;
  const auto rank = quantile_rank<scalar_t>(keep, n, quantile_rank_in_double());
  const bool need_above = rank.above != rank.below;
  const cudaStream_t stream = current_stream(like);
  const int64_t sm_count = multiprocessor_count(like);

  // Scratch from torch's allocator, on the current stream.
  const Tensor state_buffer = torch::stable::new_empty(like, {static_cast<int64_t>(sizeof(State))}, ScalarType::Byte);
  const Tensor histogram_buffer = torch::stable::new_empty(like, {kBins}, ScalarType::Long);
  State* state = static_cast<State*>(state_buffer.mutable_data_ptr());
  count_t* histogram = static_cast<count_t*>(histogram_buffer.mutable_data_ptr());

  init_kernel<scalar_t><<<1, kSelectThreads, 0, stream>>>(state, histogram, rank.below);
  CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
  const unsigned int histogram_blocks = grid_size(n, sm_count, 2);
  int shift = first_shift<key_t>();
  for (bool first = true;; first = false) {
    const bool last = shift == 0;
    histogram_kernel<scalar_t><<<histogram_blocks, kThreads, 0, stream>>>(x, n, shift, first, last && need_above,
                                                                          state, histogram);
    CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    select_digit_kernel<scalar_t><<<1, kSelectThreads, 0, stream>>>(shift, last, state, histogram);
    CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
    if (last) break;
    shift = next_shift(shift);
  }
  threshold_kernel<scalar_t><<<1, 1, 0, stream>>>(state, need_above, rank.weight);
  CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
  mask_kernel<scalar_t><<<grid_size(n, sm_count, 8), kThreads, 0, stream>>>(x, out, n, state);
  CLARENA_CUDA_KERNEL_LAUNCH_CHECK();
}

Tensor percentile_mask_cuda(const Tensor& score, double keep) {
  check_args(score, keep);
  const DeviceGuard device_guard(score.get_device_index());
  const Tensor input = torch::stable::contiguous(score);
  Tensor out = torch::stable::new_empty(input, input.sizes());
  if (input.numel() == 0) return out;
  dispatch_float_or_double(input.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    percentile_mask_impl<scalar_t>(input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                   input.numel(), keep, input);
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("percentile_mask", TORCH_BOX(&percentile_mask_cuda));
}

}  // namespace clarena::percentile_mask
