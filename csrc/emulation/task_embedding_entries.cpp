// Emulated entry of the CUDA task-embedding gradient compensation (see entry.h).
#include "ops/cuda/task_embedding_kernel.cu"

#include "emulation/entry.h"

using namespace clarena::emulation;

extern "C" {

int clarena_emulated_foreach_compensate_embedding_grad(Handle* embeddings, Handle* grads, int64_t count, double scale,
                                                       double s_max, double clamp_threshold) {
  return guarded([&] {
    clarena::task_embedding::foreach_compensate_embedding_grad_cuda(take_list(embeddings, count),
                                                                    take_list(grads, count), scale, s_max,
                                                                    clamp_threshold);
  });
}
}
