// The emulation's stand-in for the CUDA runtime header (on the include path of the emulated build
// only): everything is in the force-included cuda_emulation.h.
#pragma once

#include "emulation/cuda_emulation.h"
