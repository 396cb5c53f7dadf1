// Emulated entries of the CUDA masked weight (see entry.h).
#include "ops/cuda/masked_weight_kernel.cu"

#include "emulation/entry.h"

using namespace clarena::emulation;

extern "C" {

int clarena_emulated_masked_weight(Handle weight, Handle mask, Handle* out) {
  return guarded([&] { *out = give(clarena::masked_weight::masked_weight_cuda(take(weight), take(mask))); });
}

int clarena_emulated_masked_weight_backward(Handle grad, Handle weight, Handle mask, Handle* grad_weight,
                                            Handle* grad_mask) {
  return guarded([&] {
    const auto [gw, gm] = clarena::masked_weight::masked_weight_backward_cuda(take(grad), take(weight), take(mask));
    *grad_weight = give(gw);
    *grad_mask = give(gm);
  });
}
}
