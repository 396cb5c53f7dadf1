// Run-time choice of the vector instructions of the CPU kernels. The library is compiled for the
// x86-64 baseline (SSE2), so one wheel runs everywhere; a loop body passed to with_cpu_capability
// is compiled three times (baseline, AVX2, AVX-512F, like ATen's per-capability builds) and the
// copy for the best capability of this CPU runs. Builds use -ffp-contract=off, so no copy fuses a
// multiply and an add: every width computes the same IEEE operations and gives identical bits.
//
// CLARENA_CPU_CAPABILITY=default|avx2|avx512 caps the choice (as ATEN_CPU_CAPABILITY does ATen's),
// which lets the tests run each copy on one machine.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "common/checks.h"

namespace clarena {

enum class CpuCapability { Default, Avx2, Avx512 };

#if defined(__GNUC__) && defined(__x86_64__)
#define CLARENA_CPU_DISPATCH 1
#endif

inline CpuCapability detect_cpu_capability() {
  CpuCapability best = CpuCapability::Default;
#ifdef CLARENA_CPU_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) best = CpuCapability::Avx2;
  if (__builtin_cpu_supports("avx512f")) best = CpuCapability::Avx512;
#endif
  const char* cap = std::getenv("CLARENA_CPU_CAPABILITY");
  if (cap == nullptr || *cap == '\0') return best;
  const std::string_view name(cap);
  CpuCapability wanted;
  if (name == "default") {
    wanted = CpuCapability::Default;
  } else if (name == "avx2") {
    wanted = CpuCapability::Avx2;
  } else if (name == "avx512") {
    wanted = CpuCapability::Avx512;
  } else {
    fail_argument("the environment variable CLARENA_CPU_CAPABILITY must be 'default', 'avx2' or 'avx512', got '",
                  name, "'");
  }
  return std::min(wanted, best);  // never more than the CPU has
}

inline CpuCapability cpu_capability() {
  static const CpuCapability capability = detect_cpu_capability();
  return capability;
}

#ifdef CLARENA_CPU_DISPATCH
// `flatten` inlines the whole body (and what it calls) into each copy, which then compiles for the
// copy's target.
template <typename Body>
__attribute__((flatten)) void run_default(const Body& body) {
  body();
}
template <typename Body>
__attribute__((target("avx2"), flatten)) void run_avx2(const Body& body) {
  body();
}
template <typename Body>
__attribute__((target("avx512f"), flatten)) void run_avx512(const Body& body) {
  body();
}
#endif

// Runs body() compiled for this CPU's capability (the baseline off x86-64 GCC/Clang).
template <typename Body>
void with_cpu_capability(const Body& body) {
#ifdef CLARENA_CPU_DISPATCH
  switch (cpu_capability()) {
    case CpuCapability::Avx512: return run_avx512(body);
    case CpuCapability::Avx2: return run_avx2(body);
    case CpuCapability::Default: return run_default(body);
  }
#else
  body();
#endif
}

}  // namespace clarena
