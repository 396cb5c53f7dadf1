// CUDA's execution model on the host, for the emulation harness: g++ compiles the kernels of
// csrc/ops/cuda/*.cu unchanged with this header force-included (-include), and every thread of a
// block runs as a fiber of the scheduler in emulation/scheduler.cpp. Barriers and warp collectives
// are real rendezvous there, and the scheduler switches fibers at each of them (and at atomics and
// fences) in an order drawn from a seed; blocks run one after another in a shuffled order. Device
// memory is host memory (the kernels get CPU tensors) and every stream is the host's program order.
//
// What the harness cannot show: blocks never overlap, so a missing __threadfence, or one block
// polling another, behaves as on a GPU that runs blocks to completion; __shared__ variables are
// static storage that keeps the previous block's values instead of garbage; the memory model
// within a block is sequentially consistent at the switch points.
#pragma once

#define CLARENA_CUDA_EMULATION 1

// The kernels register themselves with torch's dispatcher; the emulated build registers nothing
// (it would clash with the CPU kernels of clarena_backbones._C): the block after
// STABLE_TORCH_LIBRARY_IMPL becomes an unused function.
#include <torch/csrc/stable/library.h>
#undef STABLE_TORCH_LIBRARY_IMPL
#define STABLE_TORCH_LIBRARY_IMPL(ns, k, m)                                            \
  [[maybe_unused]] static void C10_CONCATENATE(clarena_emulation_unregistered_, C10_UID)( \
      torch::stable::detail::StableLibrary & m)

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One instance per kernel, shared by the fibers of the running block (blocks never overlap).
#define __shared__ static

// --- vector and index types ----------------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(16) ulonglong2 {
  unsigned long long x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};

// --- the runtime API the launch code uses ------------------------------------------------------
typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
const char* cudaGetErrorString(cudaError_t error);
cudaError_t cudaGetLastError();
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int device);

namespace clarena::emulation {

// The ids of the running fiber's thread.
struct ThreadIds {
  uint3 thread;
  uint3 block;
  dim3 block_dim;
  dim3 grid_dim;
};
const ThreadIds& ids();

// A kernel invocation bound to its arguments, run once by every thread.
struct KernelBody {
  void (*run)(const void* bound);
  const void* bound;
};

// Runs `body` over the grid (an invalid configuration is reported by cudaGetLastError, as CUDA
// does).
void run_grid(dim3 grid, dim3 block, KernelBody body);

enum class Reduction { None, Or, And, Count };
int sync_threads(Reduction reduction, int predicate, const char* file, int line);

enum class Collective { Shuffle, ShuffleUp, ShuffleDown, ShuffleXor, Ballot, MatchAny, Any, All, SyncWarp };
uint64_t warp_collective(Collective kind, unsigned int mask, uint64_t value, int argument, int width,
                         const char* file, int line);
unsigned int active_mask(const char* file, int line);

// A point where the scheduler may run another thread of the block: atomics and fences.
void switch_point();

template <typename T>
uint64_t to_bits(T value) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "a warp value of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// An atomic read-modify-write: fibers are cooperative, so it is atomic between the switches.
template <typename T, typename Update>
T atomic_update(T* address, Update update) {
  switch_point();
  const T old = *address;
  *address = update(old);
  return old;
}

}  // namespace clarena::emulation

#define threadIdx (::clarena::emulation::ids().thread)
#define blockIdx (::clarena::emulation::ids().block)
#define blockDim (::clarena::emulation::ids().block_dim)
#define gridDim (::clarena::emulation::ids().grid_dim)

// --- barriers and warp collectives -------------------------------------------------------------
#define __syncthreads() \
  ((void)::clarena::emulation::sync_threads(::clarena::emulation::Reduction::None, 0, __FILE__, __LINE__))
#define __syncthreads_or(predicate) \
  ::clarena::emulation::sync_threads(::clarena::emulation::Reduction::Or, (predicate) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_and(predicate) \
  ::clarena::emulation::sync_threads(::clarena::emulation::Reduction::And, (predicate) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_count(predicate) \
  ::clarena::emulation::sync_threads(::clarena::emulation::Reduction::Count, (predicate) ? 1 : 0, __FILE__, __LINE__)
#define __activemask() ::clarena::emulation::active_mask(__FILE__, __LINE__)
#define __syncwarp(...) ::clarena::emulation::sync_warp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(mask, value, lane, ...)                                                                \
  ::clarena::emulation::shuffle(::clarena::emulation::Collective::Shuffle, mask, value, lane, __FILE__, __LINE__, \
                                ##__VA_ARGS__)
#define __shfl_up_sync(mask, value, delta, ...)                                                                 \
  ::clarena::emulation::shuffle(::clarena::emulation::Collective::ShuffleUp, mask, value, delta, __FILE__, __LINE__, \
                                ##__VA_ARGS__)
#define __shfl_down_sync(mask, value, delta, ...)                                                                 \
  ::clarena::emulation::shuffle(::clarena::emulation::Collective::ShuffleDown, mask, value, delta, __FILE__, \
                                __LINE__, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, value, lane_mask, ...)                                                             \
  ::clarena::emulation::shuffle(::clarena::emulation::Collective::ShuffleXor, mask, value, lane_mask, __FILE__, \
                                __LINE__, ##__VA_ARGS__)
#define __ballot_sync(mask, predicate)                                                                           \
  static_cast<unsigned int>(::clarena::emulation::warp_collective(::clarena::emulation::Collective::Ballot, mask, \
                                                                  (predicate) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, predicate)                                                                            \
  static_cast<int>(::clarena::emulation::warp_collective(::clarena::emulation::Collective::Any, mask,          \
                                                         (predicate) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, predicate)                                                                            \
  static_cast<int>(::clarena::emulation::warp_collective(::clarena::emulation::Collective::All, mask,          \
                                                         (predicate) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __match_any_sync(mask, value)                                                                           \
  static_cast<unsigned int>(::clarena::emulation::warp_collective(                                             \
      ::clarena::emulation::Collective::MatchAny, mask, ::clarena::emulation::match_bits(value), 0, 32, __FILE__, \
      __LINE__))

namespace clarena::emulation {

inline void sync_warp(const char* file, int line, unsigned int mask = 0xffffffffu) {
  warp_collective(Collective::SyncWarp, mask, 0, 0, 32, file, line);
}

template <typename T>
T shuffle(Collective kind, unsigned int mask, T value, int lane, const char* file, int line, int width = 32) {
  return from_bits<T>(warp_collective(kind, mask, to_bits(value), lane, width, file, line));
}

// __match_any_sync takes 32-bit and 64-bit integers only.
template <typename T>
uint64_t match_bits(T value) {
  static_assert(std::is_integral_v<T> && (sizeof(T) == 4 || sizeof(T) == 8),
                "__match_any_sync: a 32- or 64-bit integer");
  return to_bits(value);
}

}  // namespace clarena::emulation

// --- atomics, fences, loads and stores -------------------------------------------------------------
template <typename T>
T atomicAdd(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return static_cast<T>(old + value); });
}
template <typename T>
T atomicSub(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return static_cast<T>(old - value); });
}
template <typename T>
T atomicMin(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return value < old ? value : old; });
}
template <typename T>
T atomicMax(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return value > old ? value : old; });
}
template <typename T>
T atomicOr(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return static_cast<T>(old | value); });
}
template <typename T>
T atomicAnd(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return static_cast<T>(old & value); });
}
template <typename T>
T atomicExch(T* address, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T) { return value; });
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  return ::clarena::emulation::atomic_update(address, [&](T old) { return old == compare ? value : old; });
}

inline void __threadfence() { ::clarena::emulation::switch_point(); }
inline void __threadfence_block() { ::clarena::emulation::switch_point(); }

template <typename T>
T __ldg(const T* address) {
  return *address;
}
template <typename T>
T __ldcg(const T* address) {
  return *address;
}
template <typename T>
T __ldcs(const T* address) {
  return *address;
}
template <typename T>
void __stwb(T* address, T value) {
  *address = value;
}
template <typename T>
void __stcs(T* address, T value) {
  *address = value;
}

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}

// --- launches --------------------------------------------------------------------------------------
namespace clarena::emulation {

// kernel<<<grid, block>>>(args...): every thread calls the kernel with its own copy of the
// arguments, as a kernel's parameters are per thread.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args&&... args) {
  const auto run = [&] { kernel(args...); };
  using Run = decltype(run);
  run_grid(grid, block, {[](const void* bound) { (*static_cast<const Run*>(bound))(); }, &run});
}

}  // namespace clarena::emulation
