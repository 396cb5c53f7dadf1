// Emulated entries of the CUDA gate (see entry.h).
#include "ops/cuda/percentile_mask_kernel.cu"

#include "emulation/entry.h"

using namespace clarena::emulation;

extern "C" {

int clarena_emulated_percentile_mask(Handle score, double keep, Handle* mask) {
  return guarded([&] { *mask = give(clarena::percentile_mask::percentile_mask_cuda(take(score), keep)); });
}

// masks: `count` handles out; state: one handle out.
int clarena_emulated_percentile_masks(Handle* scores, int64_t count, double keep, Handle state, Handle* masks,
                                      Handle* state_out) {
  return guarded([&] {
    const auto [results, new_state] =
        clarena::percentile_mask::percentile_masks_cuda(take_list(scores, count), keep, take(state));
    for (size_t i = 0; i < results.size(); ++i) masks[i] = give(results[i]);
    *state_out = give(new_state);
  });
}
}
