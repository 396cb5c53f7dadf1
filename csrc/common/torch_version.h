// The torch this library runs in. A stable-ABI build loads into every torch from its floor on, so
// behaviour that follows torch's own version (the rank arithmetic of torch.quantile) is decided
// from the torch that loaded it: each module's PyInit records torch.__version__ here.
#pragma once

namespace clarena {

struct TorchVersion {
  int major;
  int minor;
};

// The floor (2.13) until a module records the loaded version.
inline TorchVersion loaded_torch_version{2, 13};

inline bool loaded_torch_at_least(int major, int minor) {
  const TorchVersion v = loaded_torch_version;
  return v.major > major || (v.major == major && v.minor >= minor);
}

}  // namespace clarena
