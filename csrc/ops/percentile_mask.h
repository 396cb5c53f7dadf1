// Element math of clarena::percentile_mask, shared by the CPU and CUDA kernels.
//
// The mask is `score >= threshold` with threshold = torch.quantile(score, 1 - keep) (linear
// interpolation). Only the two order statistics around the quantile's rank are needed, found by
// radix selection on order-preserving integer keys; the threshold is then interpolated with the
// same arithmetic as torch.quantile so that the comparison gives identical results.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "common/host_device.h"
#include "common/torch_version.h"

namespace clarena::percentile_mask {

// Radix digits of the selection: 2048 bins per pass.
constexpr int kDigitBits = 11;
constexpr int kBins = 1 << kDigitBits;

template <typename scalar_t>
struct KeyOf;
template <>
struct KeyOf<float> {
  using type = uint32_t;
};
template <>
struct KeyOf<double> {
  using type = uint64_t;
};

// Maps a float to an unsigned integer with the same order (-inf < ... < -0 < +0 < ... < +inf).
template <typename scalar_t>
CLARENA_HOST_DEVICE typename KeyOf<scalar_t>::type to_key(scalar_t value) {
  using key_t = typename KeyOf<scalar_t>::type;
  constexpr int top = sizeof(key_t) * 8 - 1;
  key_t bits;
  memcpy(&bits, &value, sizeof(bits));
  const key_t sign_bit = key_t(1) << top;
  return (bits & sign_bit) ? ~bits : (bits | sign_bit);
}

template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t from_key(typename KeyOf<scalar_t>::type key) {
  using key_t = typename KeyOf<scalar_t>::type;
  constexpr int top = sizeof(key_t) * 8 - 1;
  const key_t sign_bit = key_t(1) << top;
  const key_t bits = (key_t)((key) & sign_bit ? (key & ~sign_bit) : ~key);
  scalar_t value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

// The key of `value` with -0 folded into +0, so that key order is exactly the order of `>=`.
// The mask compares with `>=`, for which the two zeros are one value; folding them lets a range
// of keys stand for a range of values. (`+ 0` turns -0 into +0 and leaves every other value.)
template <typename scalar_t>
CLARENA_HOST_DEVICE typename KeyOf<scalar_t>::type sort_key(scalar_t value) {
  return to_key<scalar_t>(value + scalar_t(0));
}

// The radix digit of `key` at bit offset `shift`.
template <typename key_t>
CLARENA_HOST_DEVICE int digit(key_t key, int shift) {
  return static_cast<int>((key >> shift) & key_t(kBins - 1));
}

// Bit offset of the most significant digit, and of each following one (the last may be short).
template <typename key_t>
CLARENA_HOST_DEVICE int first_shift() {
  return static_cast<int>(sizeof(key_t) * 8) - kDigitBits;
}
CLARENA_HOST_DEVICE int next_shift(int shift) {
  return shift > kDigitBits ? shift - kDigitBits : 0;
}

// The sorted positions that torch.quantile interpolates between, and the weight of the upper one.
template <typename scalar_t>
struct QuantileRank {
  int64_t below;
  int64_t above;
  scalar_t weight;
};

// Per-layer state of the warm-started gate (percentile_masks), one float64 row per score tensor:
// the last threshold and a band of values around it that the next call expects the new threshold
// in, plus two counters. A NaN threshold means no guess: the next call selects cold.
enum WarmState : int {
  kBandLow = 0,   // smallest value of the band (inclusive)
  kThreshold,     // the threshold of the last call
  kBandHigh,      // largest value of the band (inclusive)
  kWarmCalls,     // calls whose guess held
  kFallbacks,     // calls whose guess missed, so they selected cold
  kStateWidth
};

// torch.quantile computes the rank in the input's dtype before torch 2.14 and in double from 2.14
// on; the torch this library runs in decides.
inline bool quantile_rank_in_double() {
  return loaded_torch_at_least(2, 14);
}

template <typename scalar_t>
CLARENA_HOST_DEVICE QuantileRank<scalar_t> quantile_rank(double keep, int64_t numel, bool rank_in_double) {
  const int64_t last = numel - 1;
  // torch.quantile's own arithmetic: q = 1 - keep rounded to the input's dtype; before torch
  // 2.14 the rank is computed in that dtype too (and inputs stop at 2^24 elements), from 2.14 on
  // in double. Beyond 2^24 elements float32 cannot index every element, so double is used there.
  const scalar_t q = static_cast<scalar_t>(1.0 - keep);
  QuantileRank<scalar_t> rank;
  if (!rank_in_double && last <= (int64_t(1) << 24)) {
    const scalar_t position = q * static_cast<scalar_t>(last);
    rank.below = static_cast<int64_t>(position);
    rank.weight = position - static_cast<scalar_t>(rank.below);
    rank.above = static_cast<int64_t>(ceil(position));
  } else {
    const double position = static_cast<double>(q) * static_cast<double>(last);
    rank.below = static_cast<int64_t>(position);
    rank.weight = static_cast<scalar_t>(position - static_cast<double>(rank.below));
    rank.above = static_cast<int64_t>(ceil(position));
  }
  rank.below = rank.below < 0 ? 0 : (rank.below > last ? last : rank.below);
  rank.above = rank.above < rank.below ? rank.below : (rank.above > last ? last : rank.above);
  return rank;
}

// a * b + c with a single rounding, on the host and on the device.
template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t fused_multiply_add(scalar_t a, scalar_t b, scalar_t c) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(scalar_t) == sizeof(float)) {
    return fmaf(a, b, c);
  } else {
    return fma(a, b, c);
  }
#else
  return std::fma(a, b, c);
#endif
}

// torch.lerp's formula, which torch.quantile uses for its single interpolated value. torch's CPU
// kernels run with fused multiply-adds (its AVX2/AVX512 builds contract them), so fma is explicit.
template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t lerp(scalar_t start, scalar_t end, scalar_t weight) {
  const scalar_t difference = end - start;
  return (weight < scalar_t(0.5) && weight > scalar_t(-0.5))
             ? fused_multiply_add(weight, difference, start)
             : fused_multiply_add(-difference, scalar_t(1) - weight, end);
}

// Kept elements: ties with the threshold are kept; a NaN threshold keeps nothing.
template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t mask_value(scalar_t score, scalar_t threshold) {
  return score >= threshold ? scalar_t(1) : scalar_t(0);
}

}  // namespace clarena::percentile_mask
