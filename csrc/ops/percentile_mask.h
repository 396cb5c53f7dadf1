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

#include "common/host_device.h"

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

template <typename scalar_t>
CLARENA_HOST_DEVICE QuantileRank<scalar_t> quantile_rank(double keep, int64_t numel) {
  const int64_t last = numel - 1;
  QuantileRank<scalar_t> rank;
  if (last <= (int64_t(1) << 24)) {
    // torch.quantile's own arithmetic: q and the rank in the input's dtype.
    const scalar_t q = static_cast<scalar_t>(1.0 - keep);
    const scalar_t position = q * static_cast<scalar_t>(last);
    rank.below = static_cast<int64_t>(position);
    rank.weight = position - static_cast<scalar_t>(rank.below);
    rank.above = static_cast<int64_t>(ceil(position));
  } else {
    // Beyond torch.quantile's size limit, where float32 cannot index every element.
    const double position = (1.0 - keep) * static_cast<double>(last);
    rank.below = static_cast<int64_t>(position);
    rank.weight = static_cast<scalar_t>(position - static_cast<double>(rank.below));
    rank.above = static_cast<int64_t>(ceil(position));
  }
  rank.below = rank.below < 0 ? 0 : (rank.below > last ? last : rank.below);
  rank.above = rank.above < rank.below ? rank.below : (rank.above > last ? last : rank.above);
  return rank;
}

// torch.lerp's scalar formula, which torch.quantile uses for its single interpolated value.
template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t lerp(scalar_t start, scalar_t end, scalar_t weight) {
  return (weight < scalar_t(0.5) && weight > scalar_t(-0.5))
             ? start + weight * (end - start)
             : end - (end - start) * (scalar_t(1) - weight);
}

// Kept elements: ties with the threshold are kept; a NaN threshold keeps nothing.
template <typename scalar_t>
CLARENA_HOST_DEVICE scalar_t mask_value(scalar_t score, scalar_t threshold) {
  return score >= threshold ? scalar_t(1) : scalar_t(0);
}

}  // namespace clarena::percentile_mask
