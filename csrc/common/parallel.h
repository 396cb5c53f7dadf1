// CPU parallelism through torch::stable::parallel_for: the loop runs on libtorch's own thread pool
// (no OpenMP flags in this library), split into chunks of at least a grain.
#pragma once

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <cstdint>

namespace clarena {

// Elements per parallel task below which splitting does not pay (ATen's GRAIN_SIZE).
constexpr int64_t kGrainSize = 32768;

// Grain for a loop whose index stands for `work_per_index` elements.
inline int64_t grain_for(int64_t work_per_index) {
  return std::max<int64_t>(1, kGrainSize / std::max<int64_t>(1, work_per_index));
}

}  // namespace clarena
