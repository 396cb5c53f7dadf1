// Emulated entries of the CUDA parameter-wise measure and gradient scaling (see entry.h). A null
// handle is an absent `b`.
#include "ops/cuda/parameter_measure_kernel.cu"

#include "emulation/entry.h"

using namespace clarena::emulation;
namespace measure = clarena::parameter_measure;

extern "C" {

int clarena_emulated_parameter_measure(Handle a, Handle b, const int64_t* shape, int64_t dims, const char* aggregation,
                                       Handle* out) {
  return guarded([&] {
    *out = give(measure::parameter_measure_cuda(take(a), take_optional(b), std::vector<int64_t>(shape, shape + dims),
                                                string_handle(aggregation)));
  });
}

int clarena_emulated_scale_grad_by_measure(Handle grad, Handle a, Handle b, const char* aggregation, const char* rate,
                                           double alpha, double r) {
  return guarded([&] {
    measure::scale_grad_by_measure_cuda(take(grad), take(a), take_optional(b), string_handle(aggregation),
                                        string_handle(rate), alpha, r);
  });
}

int clarena_emulated_foreach_scale_grad_by_measure(Handle* grads, Handle* a, Handle* b, int64_t count,
                                                   const char* aggregation, const char* rate, double alpha,
                                                   const double* r, int64_t r_count) {
  return guarded([&] {
    std::vector<std::optional<torch::stable::Tensor>> bs;
    for (int64_t i = 0; i < count; ++i) bs.push_back(take_optional(b[i]));
    measure::foreach_scale_grad_by_measure_cuda(take_list(grads, count), take_list(a, count), bs,
                                                string_handle(aggregation), string_handle(rate), alpha,
                                                std::vector<double>(r, r + r_count));
  });
}
}
