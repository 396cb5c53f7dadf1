// Input checks for the kernel boundary. Each names the argument, so a direct call of
// torch.ops.clarena.* fails with the same kind of message as the Python API.
//
// The stable ABI carries no typed errors across (STD_TORCH_CHECK raises RuntimeError). The checks
// throw std::invalid_argument, which PyTorch's Python binding raises as ValueError; no C++
// exception reaches Python as TypeError, so wrong dtypes are ValueErrors here too.
#pragma once

#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>

#include <sstream>
#include <stdexcept>
#include <string>

namespace clarena {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

template <typename... Parts>
[[noreturn]] void fail_argument(const Parts&... parts) {
  std::ostringstream message;
  message << "clarena: ";
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

inline std::string describe(torch::headeronly::IntHeaderOnlyArrayRef sizes) {
  std::ostringstream text;
  text << "[";
  for (size_t d = 0; d < sizes.size(); ++d) text << (d ? ", " : "") << sizes[d];
  text << "]";
  return text.str();
}

inline std::string describe(const torch::stable::Device& device) {
  using torch::headeronly::DeviceType;
  const DeviceType type = device.type();
  std::string name = type == DeviceType::CPU    ? "cpu"
                     : type == DeviceType::CUDA ? "cuda"
                     : type == DeviceType::Meta ? "meta"
                                                : "device type " + std::to_string(static_cast<int>(type));
  return device.has_index() ? name + ":" + std::to_string(device.index()) : name;
}

inline bool is_supported_floating(ScalarType type) {
  return type == ScalarType::Float || type == ScalarType::Double || type == ScalarType::Half ||
         type == ScalarType::BFloat16;
}

inline void check_float_or_double(const Tensor& t, const char* name) {
  if (t.scalar_type() != ScalarType::Float && t.scalar_type() != ScalarType::Double)
    fail_argument("`", name, "` must be float32 or float64, got ", t.scalar_type());
}

inline void check_floating(const Tensor& t, const char* name) {
  if (!is_supported_floating(t.scalar_type()))
    fail_argument("`", name, "` must be a floating-point tensor (float16, bfloat16, float32 or float64), got ",
                  t.scalar_type());
}

inline void check_same_dtype(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
  if (t.scalar_type() != ref.scalar_type())
    fail_argument("`", name, "` must have the dtype of `", ref_name, "` (", ref.scalar_type(), "), got ",
                  t.scalar_type());
}

inline void check_same_device(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
  if (!(t.device() == ref.device()))
    fail_argument("`", name, "` must be on the device of `", ref_name, "` (", describe(ref.device()), "), got ",
                  describe(t.device()));
}

inline void check_vector(const Tensor& t, const char* name, int64_t length) {
  if (t.dim() != 1 || t.size(0) != length)
    fail_argument("`", name, "` must be a 1-D tensor of length ", length, ", got shape ", describe(t.sizes()));
}

inline void check_same_shape(const Tensor& t, const char* name, const Tensor& ref, const char* ref_name) {
  if (!(t.sizes() == ref.sizes()))
    fail_argument("`", name, "` must have the shape of `", ref_name, "` (", describe(ref.sizes()), "), got ",
                  describe(t.sizes()));
}

}  // namespace clarena

// The macros name the argument after the expression passed.
#define CLARENA_CHECK_FLOAT_OR_DOUBLE(t) ::clarena::check_float_or_double((t), #t)
#define CLARENA_CHECK_FLOATING(t) ::clarena::check_floating((t), #t)
#define CLARENA_CHECK_SAME_DTYPE(t, ref) ::clarena::check_same_dtype((t), #t, (ref), #ref)
#define CLARENA_CHECK_SAME_DEVICE(t, ref) ::clarena::check_same_device((t), #t, (ref), #ref)
#define CLARENA_CHECK_VECTOR(t, length) ::clarena::check_vector((t), #t, (length))
#define CLARENA_CHECK_SAME_SHAPE(t, ref) ::clarena::check_same_shape((t), #t, (ref), #ref)
