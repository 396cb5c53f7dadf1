// Marks element math that the CPU and the CUDA kernels share, so that CPU tests cover the
// arithmetic the GPU runs.
#pragma once

#if defined(__CUDACC__)
#define CLARENA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CLARENA_HOST_DEVICE inline
#endif
