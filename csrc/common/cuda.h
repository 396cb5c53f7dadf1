// What the CUDA kernels share, on the stable ABI: torch's current stream for a tensor's device
// (so ops can be captured in CUDA graphs), the device's multiprocessor count, the grid of a
// grid-stride loop, and the launch. Only the CUDA runtime and libtorch's device-generic shims are used.
//
// The emulation harness (csrc/emulation/) compiles the same kernels for the host: there the
// stream, the device guard and the launch are the emulation's, and tensors live on the CPU.
#pragma once

#include <cuda_runtime.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/tensor.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace clarena {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("clarena: ") + what + ": " + cudaGetErrorString(status));
}

// kernel<<<grid, block, 0, stream>>>(args...), then the launch check (a bad configuration, or no
// kernel image for this GPU).
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args&&... args) {
#if defined(CLARENA_CUDA_EMULATION)
  (void)stream;  // one host stream: launches run in program order
  emulation::launch(kernel, grid, block, std::forward<Args>(args)...);
#else
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
#endif
  check_cuda(cudaGetLastError(), "CUDA kernel launch");
}

#if defined(CLARENA_CUDA_EMULATION)
inline cudaStream_t current_stream(const torch::stable::Tensor&) { return nullptr; }

// Tensors of the emulation are on the CPU: no device to select.
struct DeviceGuard {
  explicit DeviceGuard(int) {}
};
#else
inline cudaStream_t current_stream(const torch::stable::Tensor& t) {
  return static_cast<cudaStream_t>(torch::stable::accelerator::getCurrentStream(t.get_device_index()).nativeHandle());
}

// Sets the tensor's device as current for the launches that follow.
using DeviceGuard = torch::stable::accelerator::DeviceGuard;
#endif

inline int64_t multiprocessor_count(const torch::stable::Tensor& t) {
  int count = 0;
  check_cuda(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device_index()), "device query");
  return count;
}

// Blocks of `threads` threads for a grid-stride loop over `n` elements: enough to cover them, but
// at most `blocks_per_sm` per multiprocessor (more would only queue behind the resident ones).
inline unsigned int grid_size(int64_t n, int threads, int64_t sm_count, int64_t blocks_per_sm = 8) {
  const int64_t wanted = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, sm_count * blocks_per_sm)));
}

}  // namespace clarena
