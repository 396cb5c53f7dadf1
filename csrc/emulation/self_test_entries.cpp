// Kernels that break CUDA's rules on purpose, and one that relies on warp convergence: the
// emulation tests run them to show that the harness enforces what a GPU enforces.
#include "common/cuda.h"
#include "emulation/entry.h"

namespace clarena::emulation {
namespace {

constexpr int kThreads = 64;

// Each thread reads the value its neighbour wrote, with or without the barrier in between. The
// values are cleared before the kernel ends, so a read that comes too early finds 0.
__global__ void neighbour_kernel(int* out, bool barrier) {
  __shared__ int values[kThreads];
  values[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  if (barrier) __syncthreads();
  out[threadIdx.x] = values[(threadIdx.x + 1) % kThreads];
  __syncthreads();
  values[threadIdx.x] = 0;
}

// A barrier that half of the block reaches at another call.
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < kThreads / 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

// A full-warp shuffle after lane 0 has exited.
__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

// The odd lanes ask which lanes are active with them.
__global__ void active_mask_kernel(int* out) {
  if (threadIdx.x % 2 == 1) out[threadIdx.x] = static_cast<int>(__activemask());
}

}  // namespace
}  // namespace clarena::emulation

extern "C" {

// Runs self-test kernel `which` (0: neighbour with barrier, 1: without, 2: divergent barrier,
// 3: exited lane, 4: active mask) over one block of 64 threads writing out[0, 64).
int clarena_emulation_self_test(int which, int* out) {
  using namespace clarena::emulation;
  return guarded([&] {
    switch (which) {
      case 0: return clarena::launch(neighbour_kernel, 1, kThreads, nullptr, out, true);
      case 1: return clarena::launch(neighbour_kernel, 1, kThreads, nullptr, out, false);
      case 2: return clarena::launch(divergent_barrier_kernel, 1, kThreads, nullptr, out);
      case 3: return clarena::launch(exited_lane_kernel, 1, kThreads, nullptr, out);
      case 4: return clarena::launch(active_mask_kernel, 1, kThreads, nullptr, out);
      default: throw std::invalid_argument("clarena emulation: no self-test " + std::to_string(which));
    }
  });
}
}
