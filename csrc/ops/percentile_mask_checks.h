// Argument checks shared by the CPU and CUDA kernels of clarena::percentile_mask and
// clarena::percentile_masks.
#pragma once

#include <vector>

#include "common/checks.h"
#include "ops/percentile_mask.h"

namespace clarena::percentile_mask {

inline void check_keep(double keep) {
  if (!(keep > 0.0 && keep <= 1.0)) fail_argument("`keep` must be in (0, 1], got ", keep);
}

inline void check_args(const Tensor& score, double keep) {
  CLARENA_CHECK_FLOAT_OR_DOUBLE(score);
  check_keep(keep);
}

// Scores of one dtype and device, and a contiguous float64 state with one row per score tensor.
inline void check_batch_args(const std::vector<Tensor>& scores, double keep, const Tensor& state) {
  check_keep(keep);
  if (state.scalar_type() != ScalarType::Double)
    fail_argument("`state` must be float64, got ", state.scalar_type());
  if (state.dim() != 2 || state.size(0) != static_cast<int64_t>(scores.size()) || state.size(1) != kStateWidth)
    fail_argument("`state` must have shape [", scores.size(), ", ", static_cast<int>(kStateWidth),
                  "] (one row per score tensor), got ", describe(state.sizes()));
  if (!state.is_contiguous()) fail_argument("`state` must be contiguous");
  for (size_t i = 0; i < scores.size(); ++i) {
    const std::string name = "scores[" + std::to_string(i) + "]";
    check_float_or_double(scores[i], name.c_str());
    check_same_dtype(scores[i], name.c_str(), scores[0], "scores[0]");
    check_same_device(scores[i], name.c_str(), state, "state");
  }
}

}  // namespace clarena::percentile_mask
