// The C entries of the emulated build, one per CUDA op, called through ctypes by
// tests/cuda_emulation_helpers.py. Each entry file includes one csrc/ops/cuda/*.cu file and calls
// its op functions directly (they are in that translation unit), so the kernels' own launch code
// runs; nothing is registered with torch's dispatcher. Tensors cross as AtenTensorHandles: an
// argument's handle is owned by the entry (torch::stable::Tensor takes it), a result is a new
// handle the caller owns. An exception becomes a status (1: std::invalid_argument, 2: any other)
// and the message of clarena_emulation_error().
#pragma once

#include <torch/csrc/stable/c/shim.h>
#include <torch/csrc/stable/tensor.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "emulation/control.h"

namespace clarena::emulation {

using Handle = AtenTensorHandle;

inline torch::stable::Tensor take(Handle handle) { return torch::stable::Tensor(handle); }

inline std::optional<torch::stable::Tensor> take_optional(Handle handle) {
  if (handle == nullptr) return std::nullopt;
  return take(handle);
}

inline std::vector<torch::stable::Tensor> take_list(Handle* handles, int64_t count) {
  std::vector<torch::stable::Tensor> tensors;
  for (int64_t i = 0; i < count; ++i) tensors.push_back(take(handles[i]));
  return tensors;
}

inline Handle give(const torch::stable::Tensor& tensor) {
  Handle handle = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_new_tensor_handle(tensor.get(), &handle));
  return handle;
}

// A `str` argument as the dispatcher passes it (the op takes and releases it).
inline StringHandle string_handle(const char* text) {
  StringHandle handle = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(torch_new_string_handle(text, std::char_traits<char>::length(text), &handle));
  return handle;
}

std::string& last_error();

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::invalid_argument& e) {
    last_error() = e.what();
    return 1;
  } catch (const std::exception& e) {
    last_error() = e.what();
    return 2;
  }
}

}  // namespace clarena::emulation
