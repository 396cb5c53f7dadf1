// `str` arguments of the ops. Kernels take them as StringHandle and copy them with take_string:
// the std::string conversion that TORCH_BOX would use instead leaks a heap copy per call in
// torch 2.13's headers (fixed in 2.14), and gradient adjustment passes two strings every step.
#pragma once

#include <torch/csrc/stable/c/shim.h>
#include <torch/csrc/stable/macros.h>

#include <string>

namespace clarena {

// Copies the string and releases the handle the dispatcher passed.
inline std::string take_string(StringHandle handle) {
  size_t length = 0;
  const char* data = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(torch_string_length(handle, &length));
  STABLE_TORCH_ERROR_CODE_CHECK(torch_string_c_str(handle, &data));
  std::string copy(data, length);
  STABLE_TORCH_ERROR_CODE_CHECK(torch_delete_string(handle));
  return copy;
}

}  // namespace clarena
