// CUDA kernels of clarena::percentile_mask and clarena::percentile_masks: a grid-wide radix
// select of the two order statistics that torch.quantile interpolates between, then one compare
// pass. Segmented: every kernel below handles up to kMaxSegments score tensors at once, each in its
// own range of blocks sized to it (SegmentGrid), so a list of tensors costs the launches of one. The selection state lives in a
// small device buffer and every step is a kernel on the current stream: no host synchronisation,
// so the op can be captured in a CUDA graph.
//
// One histogram_kernel launch per radix digit (shifts from percentile_mask.h: 3 digits for
// float32, 6 for float64). It counts the digit of each key whose already selected high bits equal
// the prefix; the first pass also flags NaN, the second copies the keys that match the first
// digit into a candidate buffer (AIR Top-K's filtering, Zhang et al., SC'23), and later passes
// read only those. A block stages its candidates in shared memory and appends them with one
// global atomic when its pass is done. The buffer holds an eighth of the keys (a first digit rarely holds more); when
// more match, later passes read the scores again instead. When the upper order statistic is needed, the filtering pass and the last one
// also find the smallest key above every candidate. The last block to finish a tensor's
// histogram (a per-tensor ticket taken after a memory fence) then selects the digit that holds the
// target rank, narrowing the prefix and the rank. After the last digit the prefix is the exact key
// of rank `below`; that block also records how many keys equal it and the next larger key, which
// give the order statistic of rank `below + 1`, and interpolates the threshold with the shared
// lerp. Then mask_kernel compares: init + 1 per digit + mask = 5 launches for float32 (8 for
// float64) per kMaxSegments tensors.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/cuda.h"
#include "common/scalar.h"
#include "ops/percentile_mask.h"
#include "ops/percentile_mask_checks.h"

namespace clarena::percentile_mask {
namespace {

constexpr int kThreads = 256;  // histogram (and digit selection) and compare blocks
// Histogram blocks per multiprocessor: 4 x 256 threads at most 64 registers each fill the 64K
// registers (ptxas: 56-64 on sm_80/sm_90), and 4 x 21-29 KiB of shared memory fits every target.
constexpr int kHistogramBlocksPerSM = 4;
constexpr unsigned int kStagedKeys = 2048;  // candidates a histogram block stages in shared memory
constexpr int kBinsPerThread = kBins / kThreads;
static_assert(kBins % kThreads == 0, "every selection thread owns the same number of bins");

using count_t = unsigned long long;  // element counts: exact beyond 2^32 elements

// The score tensors of one launch, passed by value (kernel parameters, no host-to-device copy).
constexpr int kMaxSegments = 32;
template <typename scalar_t>
struct Segments {
  const scalar_t* x[kMaxSegments];
  scalar_t* out[kMaxSegments];
  int64_t n[kMaxSegments];
  int64_t below[kMaxSegments];   // rank of the lower order statistic
  scalar_t weight[kMaxSegments]; // interpolation weight of the upper one
  bool need_above[kMaxSegments]; // whether the upper one is another rank
  int64_t first_candidate[kMaxSegments];     // where the tensor's candidate keys start in the buffer
  int64_t candidate_capacity[kMaxSegments];  // and how many it has room for
};

// The blocks of a launch split by segment: blocks [first_block[s], first_block[s + 1]) of the
// 1-D grid work on segment s, each tensor with a grid sized to it.
struct SegmentGrid {
  unsigned int first_block[kMaxSegments + 1];
};

// This block's segment, and its place among the segment's blocks (a grid-stride loop's block
// index and grid size).
struct BlockPlace {
  int segment;
  unsigned int block;
  unsigned int blocks;
};

__device__ __forceinline__ BlockPlace place_of_block(const SegmentGrid& grid) {
  int s = 0;
  while (blockIdx.x >= grid.first_block[s + 1]) ++s;  // at most kMaxSegments steps
  return {s, blockIdx.x - grid.first_block[s], grid.first_block[s + 1] - grid.first_block[s]};
}

template <typename scalar_t>
struct SelectState {
  using key_t = typename KeyOf<scalar_t>::type;
  key_t prefix;       // selected high bits of the key of rank `below`
  key_t known;        // which bits of `prefix` are selected (always a run of top bits)
  key_t above;        // smallest key seen above the key of rank `below` (all ones: none yet)
  count_t rank;       // rank of the target among the keys that match `prefix` on `known`
  count_t equal;      // after the last digit: how many keys equal the key of rank `below`
  count_t candidates; // keys matching the first digit (in the candidate buffer if it had room)
  unsigned int has_nan;
  unsigned int finished;  // blocks done with the current histogram pass
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

// bins[bin] += 1 for each calling thread, one atomic per distinct bin in the warp: the threads
// of a warp that hit the same bin (common: neighbouring scores share a digit) add their count
// through one leader (the CUDA Programming Guide's aggregated atomic increment). Matching the
// 32-bit bin rather than its 64-bit address halves the match's work.
__device__ __forceinline__ void increment_aggregated(unsigned int* bins, int bin) {
  const unsigned int peers = __match_any_sync(__activemask(), static_cast<unsigned int>(bin));
  if (static_cast<int>(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&bins[bin], static_cast<unsigned int>(__popc(peers)));
}

// 16 bytes of 32-bit or 64-bit elements (scores or their keys), read in one load as raw bits.
template <typename element_t>
using Vector16 = std::conditional_t<sizeof(element_t) == 4, uint4, ulonglong2>;
template <typename element_t>
constexpr int kLanes = sizeof(Vector16<element_t>) / sizeof(element_t);
constexpr int kLoadsInFlight = 4;  // independent vector loads issued by a thread before it uses one

// This thread's share of x[0, n) in a grid-stride loop over `blocks` blocks (this one is
// `block`): visit_vector(i, x[i, i + kLanes)) for
// the 16-byte-aligned body, read in vector loads kLoadsInFlight at a time to hide memory latency,
// and visit_one(i, x[i]) for the few elements before the first 16-byte boundary (x is aligned to
// its element size) and after the last whole vector.
template <typename scalar_t, typename VisitOne, typename VisitVector>
__device__ __forceinline__ void for_each_vector(const scalar_t* __restrict__ x, int64_t n, BlockPlace place,
                                                VisitOne&& visit_one, VisitVector&& visit_vector) {
  static_assert(sizeof(scalar_t) == 4 || sizeof(scalar_t) == 8, "32-bit or 64-bit elements");
  using vector_t = Vector16<scalar_t>;
  constexpr int kWidth = kLanes<scalar_t>;
  const int64_t thread = static_cast<int64_t>(place.block) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(place.blocks) * blockDim.x;
  const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<uintptr_t>(x) % sizeof(vector_t) / sizeof(scalar_t));
  const int64_t head = misaligned == 0 ? 0 : std::min<int64_t>(n, kWidth - misaligned);
  if (thread < head) visit_one(thread, x[thread]);
  const vector_t* __restrict__ body = reinterpret_cast<const vector_t*>(x + head);
  const int64_t vectors = (n - head) / kWidth;
  int64_t v = thread;
  for (; v + (kLoadsInFlight - 1) * stride < vectors; v += kLoadsInFlight * stride) {
    vector_t loaded[kLoadsInFlight];
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) loaded[u] = __ldg(body + v + u * stride);
#pragma unroll
    for (int u = 0; u < kLoadsInFlight; ++u) visit_vector(head + (v + u * stride) * kWidth, loaded[u]);
  }
  for (; v < vectors; v += stride) visit_vector(head + v * kWidth, __ldg(body + v));
  for (int64_t i = head + vectors * kWidth + thread; i < n; i += stride) visit_one(i, x[i]);
}

// visit(i, x[i]) for this thread's share of x[0, n), read as for_each_vector reads it.
template <typename scalar_t, typename Visit>
__device__ __forceinline__ void for_each_element(const scalar_t* __restrict__ x, int64_t n, BlockPlace place,
                                                 Visit&& visit) {
  for_each_vector(x, n, place, visit, [&](int64_t first, const Vector16<scalar_t> loaded) {
    scalar_t lanes[kLanes<scalar_t>];
    memcpy(lanes, &loaded, sizeof(lanes));  // register moves, without type punning
#pragma unroll
    for (int k = 0; k < kLanes<scalar_t>; ++k) visit(first + k, lanes[k]);
  });
}

// Appends `key` at the end of `keys` (whose length is `*count`), one atomic per warp: the
// calling lanes take consecutive slots after the position their leader reserved for them all.
// Keys beyond `capacity` are counted but not stored; returns whether `key` was.
template <typename key_t, typename counter_t>
__device__ __forceinline__ bool append_aggregated(key_t key, key_t* keys, counter_t* count, counter_t capacity) {
  const unsigned int peers = __activemask();
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int leader = __ffs(peers) - 1;
  counter_t start = 0;
  if (lane == leader) start = atomicAdd(count, static_cast<counter_t>(__popc(peers)));
  start = __shfl_sync(peers, start, leader);
  const counter_t slot = start + __popc(peers & ((1u << lane) - 1u));
  if (slot >= capacity) return false;
  keys[slot] = key;
  return true;
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

// One block per segment.
template <typename scalar_t>
__global__ void init_kernel(const Segments<scalar_t> segments, SelectState<scalar_t>* states, count_t* histograms) {
  using key_t = typename KeyOf<scalar_t>::type;
  SelectState<scalar_t>* state = states + blockIdx.x;
  count_t* histogram = histograms + blockIdx.x * kBins;
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x) histogram[bin] = 0;
  if (threadIdx.x == 0) {
    state->prefix = 0;
    state->known = 0;
    state->above = kNoKey<key_t>;
    state->rank = static_cast<count_t>(segments.below[blockIdx.x]);
    state->equal = 0;
    state->candidates = 0;
    state->has_nan = 0;
    state->finished = 0;
    state->threshold = scalar_t(0);
  }
}

// Run by the whole last block of a segment's histogram pass, once every other block's counts are
// in `histogram`; thread t owns bins [t * kBinsPerThread, (t + 1) * kBinsPerThread).
template <typename scalar_t>
__device__ void select_digit(int shift, bool last, SelectState<scalar_t>* state, count_t* histogram) {
  using key_t = typename KeyOf<scalar_t>::type;
  __shared__ count_t scan[kThreads];
  __shared__ int next_bin[kThreads];
  __shared__ int chosen;
  __shared__ count_t chosen_before;
  __shared__ count_t chosen_count;

  const int tid = threadIdx.x;
  const int first_bin = tid * kBinsPerThread;
  count_t counts[kBinsPerThread];
  count_t total = 0;
#pragma unroll
  for (int k = 0; k < kBinsPerThread; ++k) {
    counts[k] = __ldcg(histogram + first_bin + k);  // from L2, where the other blocks' atomics landed
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
  for (int offset = 1; offset < kThreads; offset *= 2) {
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
      // `above` may hold the other blocks' atomicMin results: read it past L1.
      const key_t above = *static_cast<volatile key_t*>(&state->above);
      const key_t next_key = next < kBins ? base | (key_t(next) << shift) : kNoKey<key_t>;
      state->above = next_key < above ? next_key : above;
    }
  }
}

// One thread, after the last digit's selection.
template <typename scalar_t>
__device__ void interpolate_threshold(const Segments<scalar_t>& segments, int segment, SelectState<scalar_t>* state) {
  const bool need_above = segments.need_above[segment];
  const scalar_t weight = segments.weight[segment];
  scalar_t lower;
  scalar_t upper;
  if (*static_cast<volatile unsigned int*>(&state->has_nan)) {
    lower = upper = std::numeric_limits<scalar_t>::quiet_NaN();  // as torch.quantile gives
  } else {
    lower = from_key<scalar_t>(state->prefix);
    // Rank `below + 1` is another copy of the same key, or else the next larger key.
    const bool another_equal = state->rank + 1 < state->equal;
    upper = (need_above && !another_equal) ? from_key<scalar_t>(state->above) : lower;
  }
  state->threshold = lerp(lower, upper, weight);
}

// Blocks split by `grid`. Pass 0 reads every score and flags NaN; pass 1 reads every score
// again and, unless it is the last, copies the keys that match the first digit (those it counts)
// into the candidate buffer; later passes read the candidates only, or every score again when
// they did not fit.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, kHistogramBlocksPerSM)
    histogram_kernel(const Segments<scalar_t> segments, const SegmentGrid grid, int shift, int pass, bool last,
                     SelectState<scalar_t>* states, count_t* histograms,
                     typename KeyOf<scalar_t>::type* candidate_buffer) {
  using key_t = typename KeyOf<scalar_t>::type;
  const BlockPlace place = place_of_block(grid);
  const int segment = place.segment;
  const scalar_t* __restrict__ x = segments.x[segment];
  const int64_t n = segments.n[segment];
  key_t* candidates = candidate_buffer + segments.first_candidate[segment];
  const count_t capacity = static_cast<count_t>(segments.candidate_capacity[segment]);
  const bool check_nan = pass == 0;
  const bool filter = pass == 1 && !last;
  // Larger keys are left behind by the digits before the last one, and, once filtered out, are
  // not read again: the smallest of them is looked for in the last pass and in the filtering one.
  const bool track_above = (last || filter) && segments.need_above[segment];
  SelectState<scalar_t>* state = states + segment;
  count_t* histogram = histograms + segment * kBins;
  // 32-bit shared counters (native shared-memory atomics; 64-bit ones are a compare-and-swap
  // loop): a block counts fewer than 2^32 keys for any n below 2^32 times the grid size.
  __shared__ unsigned int bins[kBins];
  __shared__ key_t reduce[kThreads];
  // The filtering pass's candidates, appended to the buffer when the block is done (the keys
  // beyond kStagedKeys go there directly).
  __shared__ key_t staged[kStagedKeys];
  __shared__ unsigned int staged_count;
  __shared__ count_t staged_start;
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x) bins[bin] = 0;
  if (threadIdx.x == 0) staged_count = 0;
  __syncthreads();

  const key_t prefix = state->prefix;
  const key_t known = state->known;
  bool nan = false;
  key_t smallest_above = kNoKey<key_t>;
  const auto count_key = [&](key_t key) {
    const key_t high = key & known;
    if (high == prefix) {
      increment_aggregated(bins, digit(key, shift));
      if (filter && !append_aggregated(key, staged, &staged_count, static_cast<unsigned int>(kStagedKeys)))
        append_aggregated(key, candidates, &state->candidates, capacity);
    } else if (track_above && high > prefix && key < smallest_above) {
      // Left behind by an earlier digit for being larger: `known` is a run of top bits, so the
      // masked comparison orders it above every remaining candidate.
      smallest_above = key;
    }
  };
  // Written by pass 1, an earlier launch.
  const count_t matching = pass < 2 ? 0 : state->candidates;
  if (pass < 2 || matching > capacity) {
    for_each_element(x, n, place, [&](int64_t, scalar_t value) {
      if (check_nan) nan |= (value != value);
      count_key(sort_key(value));
    });
  } else {
    for_each_element(candidates, static_cast<int64_t>(matching), place, [&](int64_t, key_t key) { count_key(key); });
  }
  __syncthreads();
  if (filter) {
    const unsigned int staged_keys = staged_count < kStagedKeys ? staged_count : kStagedKeys;
    if (threadIdx.x == 0) staged_start = atomicAdd(&state->candidates, static_cast<count_t>(staged_keys));
    __syncthreads();
    for (unsigned int k = threadIdx.x; k < staged_keys; k += blockDim.x)
      if (staged_start + k < capacity) candidates[staged_start + k] = staged[k];
  }
  for (int bin = threadIdx.x; bin < kBins; bin += blockDim.x)
    if (bins[bin] != 0) atomicAdd(&histogram[bin], static_cast<count_t>(bins[bin]));

  if (check_nan && __syncthreads_or(nan) && threadIdx.x == 0) atomicOr(&state->has_nan, 1u);
  if (track_above) {
    const key_t block_smallest = block_min(smallest_above, reduce);
    if (threadIdx.x == 0 && block_smallest != kNoKey<key_t>) atomic_min_key(&state->above, block_smallest);
  }

  // The last block of the segment to get here selects the digit (no extra launch, no host sync):
  // after the barrier, thread 0's fence publishes the whole block's updates before it takes a
  // ticket, and the last block's fence orders its reads after every other block's updates.
  __shared__ bool is_last;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    is_last = atomicAdd(&state->finished, 1u) == place.blocks - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  select_digit(shift, last, state, histogram);
  if (threadIdx.x == 0) {
    state->finished = 0;  // for the next pass
    if (last) interpolate_threshold(segments, segment, state);
  }
}

// Blocks split by `grid`.
template <typename scalar_t>
__global__ void mask_kernel(const Segments<scalar_t> segments, const SegmentGrid grid,
                            const SelectState<scalar_t>* states) {
  const BlockPlace place = place_of_block(grid);
  const scalar_t* __restrict__ x = segments.x[place.segment];
  scalar_t* __restrict__ out = segments.out[place.segment];
  const int64_t n = segments.n[place.segment];
  const scalar_t threshold = states[place.segment].threshold;
  const auto mask_one = [&](int64_t i, scalar_t value) { out[i] = mask_value(value, threshold); };
  using vector_t = Vector16<scalar_t>;
  if ((reinterpret_cast<uintptr_t>(x) - reinterpret_cast<uintptr_t>(out)) % sizeof(vector_t) != 0) {
    for_each_element(x, n, place, mask_one);
    return;
  }
  // Equally aligned (the usual case: both start a torch allocation): the mask is stored in
  // vectors too, each where its scores were loaded.
  for_each_vector(x, n, place, mask_one, [&](int64_t first, const vector_t loaded) {
    scalar_t lanes[kLanes<scalar_t>];
    memcpy(lanes, &loaded, sizeof(lanes));
#pragma unroll
    for (int k = 0; k < kLanes<scalar_t>; ++k) lanes[k] = mask_value(lanes[k], threshold);
    vector_t stored;
    memcpy(&stored, lanes, sizeof(lanes));
    // One 16-byte store instruction (a plain assignment was split into scalar stores).
    __stwb(reinterpret_cast<vector_t*>(out + first), stored);
  });
}

// Each segment's blocks: enough to cover it, at most `blocks_per_sm` per multiprocessor.
template <typename scalar_t>
SegmentGrid segment_grid(const Segments<scalar_t>& segments, int count, int64_t sm_count, int64_t blocks_per_sm) {
  SegmentGrid grid{};
  for (int s = 0; s < count; ++s)
    grid.first_block[s + 1] = grid.first_block[s] + grid_size(segments.n[s], kThreads, sm_count, blocks_per_sm);
  return grid;
}

// The gate over `count` (<= kMaxSegments) contiguous score tensors: 5 launches for float32 (8
// for float64) whatever the count.
template <typename scalar_t>
void gate_segments(const Segments<scalar_t>& segments, int count, const Tensor& like) {
  using key_t = typename KeyOf<scalar_t>::type;
  using State = SelectState<scalar_t>;
  const cudaStream_t stream = current_stream(like);
  const int64_t sm_count = multiprocessor_count(like);

  // Scratch from torch's allocator, on the current stream.
  const Tensor state_buffer =
      torch::stable::new_empty(like, {static_cast<int64_t>(count * sizeof(State))}, ScalarType::Byte);
  const Tensor histogram_buffer = torch::stable::new_empty(like, {count * kBins}, ScalarType::Long);
  // No allocation depends on a count only the device knows: the capacities are fixed.
  const int64_t total = segments.first_candidate[count - 1] + segments.candidate_capacity[count - 1];
  const Tensor candidate_buffer =
      torch::stable::new_empty(like, {static_cast<int64_t>(total * sizeof(key_t))}, ScalarType::Byte);
  State* states = static_cast<State*>(state_buffer.mutable_data_ptr());
  count_t* histograms = static_cast<count_t*>(histogram_buffer.mutable_data_ptr());
  key_t* candidates = static_cast<key_t*>(candidate_buffer.mutable_data_ptr());

  launch(init_kernel<scalar_t>, count, kThreads, stream, segments, states, histograms);
  const SegmentGrid histogram_grid = segment_grid(segments, count, sm_count, kHistogramBlocksPerSM);
  int shift = first_shift<key_t>();
  for (int pass = 0;; ++pass) {
    const bool last = shift == 0;
    launch(histogram_kernel<scalar_t>, histogram_grid.first_block[count], kThreads, stream, segments, histogram_grid,
           shift, pass, last, states, histograms, candidates);
    if (last) break;
    shift = next_shift(shift);
  }
  const SegmentGrid mask_grid = segment_grid(segments, count, sm_count, 8);
  launch(mask_kernel<scalar_t>, mask_grid.first_block[count], kThreads, stream, segments, mask_grid, states);
}

// Gates `inputs` (contiguous, one dtype) into `outs`, kMaxSegments tensors per launch sequence.
template <typename scalar_t>
void gate_all(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outs, double keep) {
  Segments<scalar_t> segments{};
  int count = 0;
  int64_t keys = 0;  // candidate slots of the segments so far
  const bool rank_in_double = quantile_rank_in_double();
  for (size_t i = 0; i < inputs.size(); ++i) {
    const int64_t n = inputs[i].numel();
    if (n > 0) {
      const auto rank = quantile_rank<scalar_t>(keep, n, rank_in_double);
      segments.x[count] = inputs[i].const_data_ptr<scalar_t>();
      segments.out[count] = outs[i].mutable_data_ptr<scalar_t>();
      segments.n[count] = n;
      segments.below[count] = rank.below;
      segments.weight[count] = rank.weight;
      segments.need_above[count] = rank.above != rank.below;
      segments.first_candidate[count] = keys;
      segments.candidate_capacity[count] = (n + 7) / 8;
      keys += segments.candidate_capacity[count];
      ++count;
    }
    if (count == kMaxSegments || (count > 0 && i + 1 == inputs.size())) {
      gate_segments(segments, count, inputs[i]);
      count = 0;
      keys = 0;
    }
  }
}

Tensor percentile_mask_cuda(const Tensor& score, double keep) {
  check_args(score, keep);
  const DeviceGuard device_guard(score.get_device_index());
  const Tensor input = torch::stable::contiguous(score);
  Tensor out = torch::stable::new_empty(input, input.sizes());
  dispatch_float_or_double(input.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    gate_all<scalar_t>({input}, {out}, keep);
  });
  return out;
}

// One mask per score tensor. Every tensor is selected cold (the CPU kernel's warm start is not
// implemented on CUDA), so the state comes back unchanged.
std::tuple<std::vector<Tensor>, Tensor> percentile_masks_cuda(const std::vector<Tensor>& scores, double keep,
                                                              const Tensor& state) {
  check_batch_args(scores, keep, state);
  const DeviceGuard device_guard(state.get_device_index());
  std::vector<Tensor> inputs;
  std::vector<Tensor> masks;
  for (const Tensor& score : scores) {
    inputs.push_back(torch::stable::contiguous(score));
    masks.push_back(torch::stable::new_empty(inputs.back(), inputs.back().sizes()));
  }
  if (!scores.empty()) {
    dispatch_float_or_double(scores[0].scalar_type(), [&](auto tag) {
      using scalar_t = typename decltype(tag)::type;
      gate_all<scalar_t>(inputs, masks, keep);
    });
  }
  return {masks, torch::stable::clone(state)};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CUDA, m) {
  m.impl("percentile_mask", TORCH_BOX(&percentile_mask_cuda));
  m.impl("percentile_masks", TORCH_BOX(&percentile_masks_cuda));
}

}  // namespace clarena::percentile_mask
