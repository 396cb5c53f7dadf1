// Emulated entries of the CUDA unit mask (see entry.h).
#include "ops/cuda/unit_mask_kernel.cu"

#include "emulation/entry.h"

using namespace clarena::emulation;

extern "C" {

int clarena_emulated_unit_mask(Handle input, Handle mask, bool relu, Handle* out) {
  return guarded([&] { *out = give(clarena::unit_mask::unit_mask_cuda(take(input), take(mask), relu)); });
}

int clarena_emulated_unit_mask_backward(Handle grad, Handle input, Handle mask, bool relu, Handle* grad_input,
                                        Handle* grad_mask) {
  return guarded([&] {
    const auto [gi, gm] = clarena::unit_mask::unit_mask_backward_cuda(take(grad), take(input), take(mask), relu);
    *grad_input = give(gi);
    *grad_mask = give(gm);
  });
}
}
