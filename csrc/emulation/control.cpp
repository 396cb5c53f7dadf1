// The entries that configure the emulated device and report errors.
#include <cstdint>
#include <string>

#include "common/torch_version.h"
#include "emulation/control.h"
#include "emulation/entry.h"

namespace clarena::emulation {

std::string& last_error() {
  static std::string message;
  return message;
}

}  // namespace clarena::emulation

extern "C" {

// The schedule's seed, the multiprocessor count, and the torch the caller runs (the gate's rank
// arithmetic follows torch's version, as in clarena_backbones._C).
void clarena_emulation_configure(uint64_t seed, int multiprocessors, int torch_major, int torch_minor) {
  clarena::emulation::set_schedule(seed, multiprocessors);
  clarena::loaded_torch_version = {torch_major, torch_minor};
}

const char* clarena_emulation_error() { return clarena::emulation::last_error().c_str(); }
}
