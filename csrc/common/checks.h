// Input checks for the kernel boundary. Each names the argument, so a direct call of
// torch.ops.clarena.* fails with the same kind of message as the Python API.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#define CLARENA_CHECK_FLOAT_OR_DOUBLE(t)                                                        \
  TORCH_CHECK_TYPE((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kDouble,       \
                   "clarena: `" #t "` must be float32 or float64, got ", (t).scalar_type())

#define CLARENA_CHECK_FLOATING(t)                                                  \
  TORCH_CHECK_TYPE(at::isFloatingType((t).scalar_type()),                          \
                   "clarena: `" #t "` must be a floating-point tensor, got ", (t).scalar_type())

#define CLARENA_CHECK_SAME_DTYPE(t, ref)                                                    \
  TORCH_CHECK_TYPE((t).scalar_type() == (ref).scalar_type(), "clarena: `" #t "` must have the " \
                   "dtype of `" #ref "` (", (ref).scalar_type(), "), got ", (t).scalar_type())

#define CLARENA_CHECK_SAME_DEVICE(t, ref)                                                     \
  TORCH_CHECK_VALUE((t).device() == (ref).device(), "clarena: `" #t "` must be on the device of `" \
                    #ref "` (", (ref).device(), "), got ", (t).device())

#define CLARENA_CHECK_VECTOR(t, length)                                                         \
  TORCH_CHECK_VALUE((t).dim() == 1 && (t).size(0) == (length), "clarena: `" #t "` must be a 1-D " \
                    "tensor of length ", (length), ", got shape ", (t).sizes())
