// CPU loops over rows: split across libtorch's thread pool through torch::stable::parallel_for (no
// OpenMP flags in this library) when there is enough work, and run with the widest vector
// instructions the machine has (common/cpu_capability.h).
#pragma once

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <cstdint>

#include "common/cpu_capability.h"

namespace clarena {

// Elements per parallel task below which splitting does not pay (ATen's GRAIN_SIZE).
constexpr int64_t kGrainSize = 32768;

// Grain for a loop whose index stands for `work_per_index` elements.
inline int64_t grain_for(int64_t work_per_index) {
  return std::max<int64_t>(1, kGrainSize / std::max<int64_t>(1, work_per_index));
}

// Calls body(begin, end) on chunks covering [0, count), each index standing for `work_per_index`
// elements. A loop of at most one grain runs here, in one chunk: the thread pool's type-erased
// callback costs more than the arithmetic of a small layer.
template <typename Body>
void parallel_rows(int64_t count, int64_t work_per_index, const Body& body) {
  if (count <= 0) return;
  const int64_t grain = grain_for(work_per_index);
  const auto chunk = [&](int64_t begin, int64_t end) { with_cpu_capability([&] { body(begin, end); }); };
  if (count <= grain) {
    chunk(0, count);
  } else {
    torch::stable::parallel_for(0, count, grain, chunk);
  }
}

}  // namespace clarena
