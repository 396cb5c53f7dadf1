// CPU kernel of clarena::percentile_mask: a parallel radix select of the threshold, then one
// parallel compare pass. No sort, no copy of the scores beyond the selected bucket.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/checks.h"
#include "common/parallel.h"
#include "common/scalar.h"
#include "ops/percentile_mask.h"

namespace clarena::percentile_mask {
namespace {

constexpr int64_t kChunk = 1 << 16;      // elements per histogram chunk
constexpr int64_t kSmallSelect = 4096;   // below this many candidates, nth_element finishes

// Finds the bucket that holds the element of rank `rank` given a histogram; returns the bucket
// and the number of elements in lower buckets.
std::pair<int, int64_t> find_bucket(const int64_t* histogram, int64_t rank) {
  int64_t before = 0;
  for (int bin = 0; bin < kBins; ++bin) {
    if (rank < before + histogram[bin]) return {bin, before};
    before += histogram[bin];
  }
  throw std::logic_error("clarena: percentile_mask: rank outside the histogram");
}

// The two order statistics `below` and `above` (= below or below + 1) of x[0, n); NaN for both when
// x holds a NaN, as torch.quantile gives.
template <typename scalar_t>
std::pair<scalar_t, scalar_t> select_pair(const scalar_t* x, int64_t n, int64_t below, int64_t above) {
  using key_t = typename KeyOf<scalar_t>::type;
  constexpr key_t kNoKey = std::numeric_limits<key_t>::max();
  int shift = first_shift<key_t>();

  // Pass 1: per-chunk histograms of the top digit (chunks are fixed, so results do not depend on
  // the thread count).
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  // Scratch comes from torch's allocator, so memory profiles see it.
  const Tensor histogram_buffer = torch::stable::empty({chunks * kBins}, ScalarType::Long);
  int64_t* histograms = histogram_buffer.mutable_data_ptr<int64_t>();
  std::vector<char> chunk_has_nan(chunks, 0);
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      // Four interleaved counters per bin: neighbouring elements often share a bin, and one
      // counter would serialise on its own increments.
      uint32_t lanes[4][kBins] = {};
      bool has_nan = false;
      const int64_t start = c * kChunk;
      const int64_t stop = std::min(n, start + kChunk);
      for (int64_t i = start; i < stop; ++i) {
        has_nan |= (x[i] != x[i]);
        ++lanes[i & 3][digit(to_key(x[i]), shift)];
      }
      int64_t* h = histograms + c * kBins;
      for (int bin = 0; bin < kBins; ++bin) h[bin] = int64_t(lanes[0][bin]) + lanes[1][bin] + lanes[2][bin] + lanes[3][bin];
      chunk_has_nan[c] = has_nan;
    }
  });
  if (std::find(chunk_has_nan.begin(), chunk_has_nan.end(), 1) != chunk_has_nan.end()) {
    const scalar_t nan = std::numeric_limits<scalar_t>::quiet_NaN();
    return {nan, nan};
  }
  std::vector<int64_t> total(kBins, 0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int bin = 0; bin < kBins; ++bin) total[bin] += histograms[c * kBins + bin];
  auto [bucket, before] = find_bucket(total.data(), below);

  // Pass 2: gather the bucket's keys; remember the smallest key above the bucket, which is the
  // upper order statistic when the lower one is the bucket's largest.
  std::vector<int64_t> offsets(chunks + 1, 0);
  for (int64_t c = 0; c < chunks; ++c) offsets[c + 1] = offsets[c] + histograms[c * kBins + bucket];
  const Tensor candidate_buffer =
      torch::stable::empty({offsets[chunks]}, sizeof(key_t) == sizeof(int32_t) ? ScalarType::Int : ScalarType::Long);
  key_t* candidates = static_cast<key_t*>(candidate_buffer.mutable_data_ptr());
  std::vector<key_t> chunk_above(chunks, kNoKey);
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      key_t* out = candidates + offsets[c];
      key_t smallest_above = kNoKey;
      const int64_t stop = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < stop; ++i) {
        const key_t key = to_key(x[i]);
        const int d = digit(key, shift);
        if (d == bucket) *out++ = key;
        else if (d > bucket && key < smallest_above) smallest_above = key;
      }
      chunk_above[c] = smallest_above;
    }
  });
  key_t above_key = *std::min_element(chunk_above.begin(), chunk_above.end());

  // Narrow the candidates digit by digit (serial: they are a small fraction unless ties abound).
  int64_t count = offsets[chunks];
  int64_t rank = below - before;
  while (count > kSmallSelect && shift > 0) {
    shift = next_shift(shift);
    int64_t histogram[kBins] = {0};
    for (int64_t i = 0; i < count; ++i) ++histogram[digit(candidates[i], shift)];
    auto [next_bucket, next_before] = find_bucket(histogram, rank);
    int64_t kept = 0;
    for (int64_t i = 0; i < count; ++i) {
      const key_t key = candidates[i];
      const int d = digit(key, shift);
      if (d == next_bucket) candidates[kept++] = key;
      else if (d > next_bucket && key < above_key) above_key = key;
    }
    count = kept;
    rank -= next_before;
  }
  std::nth_element(candidates, candidates + rank, candidates + count);
  const key_t below_key = candidates[rank];
  if (rank + 1 < count)
    above_key = std::min(above_key, *std::min_element(candidates + rank + 1, candidates + count));
  const scalar_t lower = from_key<scalar_t>(below_key);
  return {lower, above == below ? lower : from_key<scalar_t>(above_key)};
}

template <typename scalar_t>
void percentile_mask_impl(const scalar_t* x, scalar_t* out, int64_t n, double keep) {
  const auto rank = quantile_rank<scalar_t>(keep, n, quantile_rank_in_double());
  const auto [lower, upper] = select_pair(x, n, rank.below, rank.above);
  const scalar_t threshold = lerp(lower, upper, rank.weight);
  torch::stable::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) out[i] = mask_value(x[i], threshold);
  });
}

Tensor percentile_mask_cpu(const Tensor& score, double keep) {
  CLARENA_CHECK_FLOAT_OR_DOUBLE(score);
  if (!(keep > 0.0 && keep <= 1.0)) fail_argument("`keep` must be in (0, 1], got ", keep);
  const Tensor input = torch::stable::contiguous(score);
  Tensor out = torch::stable::new_empty(input, input.sizes());
  if (input.numel() == 0) return out;
  dispatch_float_or_double(input.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    percentile_mask_impl<scalar_t>(input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                                   input.numel(), keep);
  });
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("percentile_mask", TORCH_BOX(&percentile_mask_cpu));
}

}  // namespace clarena::percentile_mask
