// CPU kernels of clarena::percentile_mask and clarena::percentile_masks.
//
// Both write the mask in a "band pass": one streaming pass over the scores that writes
// `score >= provisional` for a provisional threshold inside a band of values [low, high], counts
// the scores under the band and records the positions and values of those inside it. When the two
// order statistics that torch.quantile interpolates between lie in the band (the upper one may
// also be the smallest score above it), they are selected among the recorded scores only, and
// only the recorded scores between the provisional and the exact threshold are rewritten: every
// score outside the band is on the same side of both.
//
// Warm, the band comes from the previous call (the scores moved little since): one read and one
// write. Cold (no previous call, or the order statistics fell outside its band), the band comes
// from a sample of the scores, also one pass; when the sample misleads, from the first-digit
// radix bucket that holds the lower order statistic (AIR Top-K's first pass, Zhang et al., SC'23),
// which costs one more read.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/parallel.h"
#include "common/scalar.h"
#include "ops/percentile_mask.h"
#include "ops/percentile_mask_checks.h"

namespace clarena::percentile_mask {
namespace {

constexpr int64_t kChunk = 1 << 16;   // elements per parallel task (fixed: results do not depend on threads)
constexpr int64_t kBlock = 512;       // elements per vectorisable step of the band pass
constexpr int64_t kGroup = 16;        // elements per band count within a block
constexpr int64_t kSmallLayer = 4096; // below this many scores the band is all of them
constexpr int64_t kSample = 1 << 16;  // scores sampled for a cold band
constexpr int64_t kSampleRun = 64;    // of which neighbours

template <typename scalar_t>
using Key = typename KeyOf<scalar_t>::type;

// A closed range of score values.
template <typename scalar_t>
struct Band {
  scalar_t low;
  scalar_t high;
};

// What a band pass found.
template <typename scalar_t>
struct BandScan {
  int64_t below = 0;               // scores under the band
  std::vector<int64_t> positions;  // scores inside the band, in ascending order
  std::vector<scalar_t> values;    // and their values (read again, they would be cache misses)
  bool has_nan = false;
  bool overflow = false;  // a chunk held more than `chunk_limit` scores of the band: `positions` is incomplete
};

// Integers as wide as the scores, so that counting vectorises with the compares.
template <typename scalar_t>
using Lane = std::conditional_t<sizeof(scalar_t) == 4, int32_t, int64_t>;

// One block of the band pass, branch-free so that it vectorises: writes the provisional mask and
// counts, the band's scores per group of kGroup. Comparing values, not keys, keeps it vectorisable
// (SSE2 has no unsigned compares); the order is the same since sort_key folds -0 into +0, which
// `>=` does too.
template <typename scalar_t>
struct BlockCounts {
  Lane<scalar_t> below = 0;
  Lane<scalar_t> inside = 0;
  Lane<scalar_t> nan = 0;
  Lane<scalar_t> inside_group[kBlock / kGroup];
};

// The band pass is compute-bound on SSE2 (five compares per score); where the CPU has AVX2 it
// runs twice as wide, chosen at load time (the build itself targets baseline x86-64). Not through
// common/cpu_capability.h: inlined into its dispatch lambda the loop loses its __restrict
// pointers and GCC no longer vectorises it (measured 1.7x slower), so CLARENA_CPU_CAPABILITY does
// not cap this function.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLARENA_WIDE_VECTORS __attribute__((target_clones("avx2", "default")))
#else
#define CLARENA_WIDE_VECTORS
#endif

template <typename scalar_t>
CLARENA_WIDE_VECTORS BlockCounts<scalar_t> scan_block(const scalar_t* __restrict x, scalar_t* __restrict out,
                                                      int64_t length, scalar_t low, scalar_t high,
                                                      scalar_t provisional) {
  BlockCounts<scalar_t> counts;
  const auto scan_group = [&](int64_t first, int64_t size) {
    Lane<scalar_t> below = 0;
    Lane<scalar_t> not_above = 0;  // the band's scores are these minus those below (NaN is neither)
    for (int64_t i = first; i < first + size; ++i) {
      const scalar_t value = x[i];
      out[i] = mask_value(value, provisional);
      below += value < low;
      not_above += value <= high;
      counts.nan |= value != value;
    }
    counts.below += below;
    counts.inside_group[first / kGroup] = not_above - below;
    counts.inside += not_above - below;
  };
  int64_t first = 0;
  for (; first + kGroup <= length; first += kGroup) scan_group(first, kGroup);  // a constant trip count
  if (first < length) scan_group(first, length - first);
  return counts;
}

// Writes the positions (from `first`) and values of the block's scores inside [low, high], and
// may write one more entry after them. Only groups that hold some are read, branch-free.
template <typename scalar_t>
void record_band(const scalar_t* __restrict x, int64_t length, const BlockCounts<scalar_t>& counts, scalar_t low,
                 scalar_t high, int64_t first, int64_t* __restrict positions, scalar_t* __restrict values) {
  int64_t count = 0;
  for (int64_t group = 0; group * kGroup < length; ++group) {
    if (counts.inside_group[group] == 0) continue;
    for (int64_t i = group * kGroup; i < std::min(length, (group + 1) * kGroup); ++i) {
      positions[count] = first + i;
      values[count] = x[i];
      count += (x[i] >= low) & (x[i] <= high);
    }
  }
}

// The band pass: out = (x >= provisional) for every score, the counts of BandScan, and the
// positions of the scores inside the band.
template <typename scalar_t>
BandScan<scalar_t> scan_band(const scalar_t* x, scalar_t* out, int64_t n, Band<scalar_t> band, scalar_t provisional,
                             int64_t chunk_limit) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<BandScan<scalar_t>> parts(chunks);
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      BandScan<scalar_t>& part = parts[c];
      const int64_t stop = std::min(n, (c + 1) * kChunk);
      for (int64_t start = c * kChunk; start < stop; start += kBlock) {
        const int64_t length = std::min(stop - start, kBlock);
        const auto counts = scan_block(x + start, out + start, length, band.low, band.high, provisional);
        part.below += counts.below;
        part.has_nan |= counts.nan != 0;
        if (counts.inside == 0 || part.overflow) continue;
        if (static_cast<int64_t>(part.positions.size()) + counts.inside > chunk_limit) {
          part.overflow = true;
          continue;
        }
        const size_t recorded = part.positions.size();
        part.positions.resize(recorded + counts.inside + 1);  // record_band writes one past the last
        part.values.resize(recorded + counts.inside + 1);
        record_band(x + start, length, counts, band.low, band.high, start, part.positions.data() + recorded,
                    part.values.data() + recorded);
        part.positions.pop_back();
        part.values.pop_back();
      }
    }
  });
  BandScan<scalar_t> scan;
  size_t total = 0;
  for (const auto& part : parts) total += part.positions.size();
  scan.positions.reserve(total);
  scan.values.reserve(total);
  for (const auto& part : parts) {
    scan.below += part.below;
    scan.positions.insert(scan.positions.end(), part.positions.begin(), part.positions.end());
    scan.values.insert(scan.values.end(), part.values.begin(), part.values.end());
    scan.has_nan |= part.has_nan;
    scan.overflow |= part.overflow;
  }
  return scan;
}

// The smallest score above `high`. Only needed when the upper order statistic is the first score
// above a band, which is rare, so the band pass does not track it (a float min does not vectorise).
template <typename scalar_t>
scalar_t smallest_above(const scalar_t* x, int64_t n, scalar_t high) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<scalar_t> parts(chunks, std::numeric_limits<scalar_t>::infinity());
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c)
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
        if (x[i] > high && x[i] < parts[c]) parts[c] = x[i];
  });
  return *std::min_element(parts.begin(), parts.end());
}

// The first-digit radix histogram of the keys; nullopt when a score is NaN.
template <typename scalar_t>
std::optional<std::vector<int64_t>> first_digit_histogram(const scalar_t* x, int64_t n) {
  using key_t = Key<scalar_t>;
  const int shift = first_shift<key_t>();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<int64_t> histograms(chunks * kBins);
  std::vector<char> chunk_has_nan(chunks, 0);
  torch::stable::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      // Four interleaved counters per bin: neighbouring scores often share a bin, and one
      // counter would serialise on its own increments.
      uint32_t lanes[4][kBins] = {};
      bool has_nan = false;
      const int64_t stop = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < stop; ++i) {
        has_nan |= (x[i] != x[i]);
        ++lanes[i & 3][digit(sort_key(x[i]), shift)];
      }
      int64_t* h = histograms.data() + c * kBins;
      for (int bin = 0; bin < kBins; ++bin) h[bin] = int64_t(lanes[0][bin]) + lanes[1][bin] + lanes[2][bin] + lanes[3][bin];
      chunk_has_nan[c] = has_nan;
    }
  });
  if (std::find(chunk_has_nan.begin(), chunk_has_nan.end(), 1) != chunk_has_nan.end()) return std::nullopt;
  std::vector<int64_t> total(kBins, 0);
  for (int64_t c = 0; c < chunks; ++c)
    for (int bin = 0; bin < kBins; ++bin) total[bin] += histograms[c * kBins + bin];
  return total;
}

// The band of the first-digit radix bucket that holds the score of rank `rank` (AIR Top-K's first
// pass, Zhang et al., SC'23); nullopt for a NaN.
template <typename scalar_t>
std::optional<Band<scalar_t>> radix_band(const scalar_t* x, int64_t n, int64_t rank) {
  using key_t = Key<scalar_t>;
  const scalar_t infinity = std::numeric_limits<scalar_t>::infinity();
  const auto histogram = first_digit_histogram(x, n);
  if (!histogram) return std::nullopt;
  int bucket = 0;
  for (int64_t before = 0; before + (*histogram)[bucket] <= rank; ++bucket) before += (*histogram)[bucket];
  const int shift = first_shift<key_t>();
  const key_t low = key_t(bucket) << shift;
  const key_t high = low | ((key_t(1) << shift) - 1);
  // The outer buckets also hold NaN keys; there is no NaN here, so clamping keeps the same scores.
  return Band<scalar_t>{from_key<scalar_t>(std::max(low, sort_key(-infinity))),
                        from_key<scalar_t>(std::min(high, sort_key(infinity)))};
}

// A band from a sample of the scores (Floyd and Rivest, "Expected time bounds for selection",
// 1975): sample order statistics a few standard deviations of the sample rank on either side of
// the wanted one bracket the score of rank `rank` with high probability. Returns the band and
// the sample's estimate of that score (inside the band).
template <typename scalar_t>
std::pair<Band<scalar_t>, scalar_t> sample_band(const scalar_t* x, int64_t n, int64_t rank) {
  using key_t = Key<scalar_t>;
  // Runs of kSampleRun neighbours at evenly spaced places: whole cache lines, few misses.
  const int64_t runs = std::min(n, kSample) / kSampleRun;
  const int64_t size = runs * kSampleRun;
  std::vector<key_t> keys(size);
  for (int64_t r = 0; r < runs; ++r) {
    const scalar_t* run = x + r * (n / runs);
    for (int64_t j = 0; j < kSampleRun; ++j) keys[r * kSampleRun + j] = sort_key(run[j]);
  }
  const double fraction = static_cast<double>(rank) / static_cast<double>(n - 1);
  const int64_t center = std::llround(fraction * static_cast<double>(size - 1));
  const auto spread = static_cast<int64_t>(4.0 * std::sqrt(size * fraction * (1.0 - fraction))) + 16;
  std::nth_element(keys.begin(), keys.begin() + center, keys.end());
  const scalar_t infinity = std::numeric_limits<scalar_t>::infinity();
  Band<scalar_t> band{-infinity, infinity};
  if (center - spread >= 0) {
    std::nth_element(keys.begin(), keys.begin() + (center - spread), keys.begin() + center);
    band.low = from_key<scalar_t>(keys[center - spread]);
  }
  if (center + spread < size) {
    std::nth_element(keys.begin() + center + 1, keys.begin() + (center + spread), keys.end());
    band.high = from_key<scalar_t>(keys[center + spread]);
  }
  return {band, from_key<scalar_t>(keys[center])};
}

// What the selection found in a band pass's scores.
template <typename scalar_t>
struct Selection {
  scalar_t threshold;
  Band<scalar_t> next_band;  // the band for the next call
};

// How many ranks on either side of the order statistics the next call's band keeps.
struct Margin {
  int64_t floor;
  int64_t per_drift;  // ranks per rank of drift: the scores may move as far again
};

// The exact threshold from a band pass; nullopt when the order statistics are not in the band.
template <typename scalar_t>
std::optional<Selection<scalar_t>> select_in_band(const scalar_t* x, int64_t n, const BandScan<scalar_t>& scan,
                                                  Band<scalar_t> band, const QuantileRank<scalar_t>& rank,
                                                  scalar_t provisional, Margin margin_rule) {
  using key_t = Key<scalar_t>;
  const int64_t count = static_cast<int64_t>(scan.positions.size());
  const int64_t below = rank.below - scan.below;
  const int64_t above = rank.above - scan.below;
  if (scan.overflow || below < 0 || below >= count) return std::nullopt;
  std::vector<key_t> keys(count);
  const key_t provisional_key = sort_key(provisional);
  int64_t under_provisional = 0;
  for (int64_t j = 0; j < count; ++j) {
    keys[j] = sort_key(scan.values[j]);
    under_provisional += keys[j] < provisional_key;
  }
  std::nth_element(keys.begin(), keys.begin() + below, keys.end());
  const key_t lower_key = keys[below];
  key_t upper_key = lower_key;
  if (above != below)
    upper_key = above < count ? *std::min_element(keys.begin() + above, keys.end())
                              : sort_key(smallest_above(x, n, band.high));
  Selection<scalar_t> selection;
  selection.threshold = lerp(from_key<scalar_t>(lower_key), from_key<scalar_t>(upper_key), rank.weight);
  const int64_t margin = std::max(margin_rule.floor, margin_rule.per_drift * std::abs(under_provisional - below));
  // Keys `margin` ranks under and over the order statistics, where the band has them.
  selection.next_band = band;
  if (below - margin >= 0) {
    std::nth_element(keys.begin(), keys.begin() + (below - margin), keys.begin() + below);
    selection.next_band.low = from_key<scalar_t>(keys[below - margin]);
  }
  if (above + margin < count) {
    std::nth_element(keys.begin() + above, keys.begin() + (above + margin), keys.end());
    selection.next_band.high = from_key<scalar_t>(keys[above + margin]);
  } else if (above >= count) {
    // The upper order statistic is the first score above the band, and the threshold may lie
    // above the band's top: the next band must reach it, or the next call could not start warm.
    selection.next_band.high = from_key<scalar_t>(upper_key);
  }
  return selection;
}

// After a cold call the next band keeps a fixed fraction of the scores; after a warm one, a
// multiple of how far the scores moved since the call before.
Margin cold_margin(int64_t n) { return {64 + n / 512, 0}; }
Margin warm_margin(int64_t n) { return {64 + n / 8192, 4}; }

// The gate for one score tensor. `state` (kStateWidth doubles) is the warm start: read when not
// null and its threshold is a number, and updated.
template <typename scalar_t>
void gate(const scalar_t* x, scalar_t* out, int64_t n, double keep, double* state) {
  const auto rank = quantile_rank<scalar_t>(keep, n, quantile_rank_in_double());
  std::optional<Selection<scalar_t>> selection;
  BandScan<scalar_t> settled;  // the band pass that holds the threshold
  scalar_t provisional_threshold = 0;
  bool has_nan = false;

  // One band pass and the selection in its band; true when that settled the mask (or found a NaN).
  const auto try_band = [&](Band<scalar_t> band, scalar_t provisional, int64_t chunk_limit, Margin margin) {
    auto scan = scan_band(x, out, n, band, provisional, chunk_limit);
    has_nan = scan.has_nan;
    if (!has_nan) selection = select_in_band(x, n, scan, band, rank, provisional, margin);
    if (selection) {
      settled = std::move(scan);
      provisional_threshold = provisional;
    }
    return has_nan || selection.has_value();
  };
  constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();
  // Clears the mask for a NaN threshold, else rewrites the band's scores with the exact one.
  const auto finish = [&]() {
    // A NaN score makes the threshold NaN, as in torch.quantile; so does interpolating between
    // infinities (-inf - -inf). Nothing is kept, so the provisional mask outside the band is wrong.
    if (!has_nan && !selection) throw std::logic_error("clarena: percentile_mask: no band held the threshold");
    if (has_nan || std::isnan(selection->threshold)) {
      torch::stable::parallel_for(0, n, kGrainSize, [&](int64_t begin, int64_t end) {
        std::fill(out + begin, out + end, scalar_t(0));
      });
      if (state != nullptr) state[kBandLow] = state[kThreshold] = state[kBandHigh] = std::nan("");
      return;
    }
    // Only scores between the provisional and the exact threshold change.
    const scalar_t threshold = selection->threshold;
    for (size_t j = 0; j < settled.positions.size(); ++j) {
      const scalar_t value = settled.values[j];
      if ((value >= threshold) != (value >= provisional_threshold))
        out[settled.positions[j]] = mask_value(value, threshold);
    }
    if (state != nullptr) {
      state[kBandLow] = selection->next_band.low;
      state[kThreshold] = threshold;
      state[kBandHigh] = selection->next_band.high;
    }
  };

  if (state != nullptr && !std::isnan(state[kThreshold])) {
    const scalar_t provisional = static_cast<scalar_t>(state[kThreshold]);
    const Band<scalar_t> band{static_cast<scalar_t>(state[kBandLow]), static_cast<scalar_t>(state[kBandHigh])};
    // The fix-up is exact only for a provisional threshold inside the band. A band that would
    // record more than a sixteenth of the scores is no better than cold.
    const bool done = band.low <= provisional && provisional <= band.high &&
                      try_band(band, provisional, kChunk / 16, warm_margin(n));
    if (!has_nan) state[selection ? kWarmCalls : kFallbacks] += 1;
    if (done) return finish();
  }
  if (n <= kSmallLayer) {
    const scalar_t infinity = std::numeric_limits<scalar_t>::infinity();
    try_band({-infinity, infinity}, infinity, kUnlimited, cold_margin(n));
    return finish();
  }
  const auto [band, estimate] = sample_band(x, n, rank.below);
  if (try_band(band, estimate, kUnlimited, cold_margin(n))) return finish();
  if (const auto bucket = radix_band(x, n, rank.below)) {
    try_band(*bucket, bucket->low, kUnlimited, cold_margin(n));
  } else {
    has_nan = true;
  }
  return finish();
}
Tensor percentile_mask_cpu(const Tensor& score, double keep) {
  check_args(score, keep);
  const Tensor input = torch::stable::contiguous(score);
  Tensor out = torch::stable::new_empty(input, input.sizes());
  if (input.numel() == 0) return out;
  dispatch_float_or_double(input.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    gate<scalar_t>(input.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), input.numel(), keep, nullptr);
  });
  return out;
}

// One mask per tensor (not one buffer for all: a large buffer would be a fresh mapping, page
// faults included, at every call, where the allocator reuses tensor-sized blocks).
std::tuple<std::vector<Tensor>, Tensor> percentile_masks_cpu(const std::vector<Tensor>& scores, double keep,
                                                             const Tensor& state) {
  check_batch_args(scores, keep, state);
  Tensor next_state = torch::stable::clone(state);
  double* rows = next_state.mutable_data_ptr<double>();
  std::vector<Tensor> masks;
  masks.reserve(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    const Tensor input = torch::stable::contiguous(scores[i]);
    masks.push_back(torch::stable::new_empty(input, input.sizes()));
    if (input.numel() == 0) continue;
    dispatch_float_or_double(input.scalar_type(), [&](auto tag) {
      using scalar_t = typename decltype(tag)::type;
      gate<scalar_t>(input.const_data_ptr<scalar_t>(), masks.back().mutable_data_ptr<scalar_t>(), input.numel(), keep,
                     rows + i * kStateWidth);
    });
  }
  return {masks, next_state};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("percentile_mask", TORCH_BOX(&percentile_mask_cpu));
  m.impl("percentile_masks", TORCH_BOX(&percentile_masks_cpu));
}

}  // namespace clarena::percentile_mask
