// How the emulation harness configures the emulated device (not seen by the kernels).
#pragma once

#include <cstdint>

#include "emulation/cuda_emulation.h"

namespace clarena::emulation {

// The seed of the schedule (fiber switches and block order) of the launches that follow, and the
// multiprocessor count the launch code sizes its grids by.
void set_schedule(uint64_t seed, int multiprocessors);
int multiprocessors();
// The error of the last launch (an invalid configuration), cleared by reading it.
cudaError_t take_launch_error();

}  // namespace clarena::emulation
