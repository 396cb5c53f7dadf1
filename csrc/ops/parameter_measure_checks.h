// Argument checks shared by the CPU and CUDA kernels of the parameter-wise measure ops.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/checks.h"
#include "ops/parameter_measure.h"

namespace clarena::parameter_measure {

// A weight viewed as rows (output units) x cols (input units, 1 without `b`) x inner (the rest).
struct LayerShape {
  int64_t rows;
  int64_t cols;
  int64_t inner;
};

inline Aggregation parse_aggregation(std::string_view name) {
  if (name == "min") return Aggregation::Min;
  if (name == "max") return Aggregation::Max;
  if (name == "mean") return Aggregation::Mean;
  fail_argument("`aggregation` must be 'min', 'max' or 'mean', got '", name, "'");
}

inline Rate parse_rate(std::string_view name) {
  if (name == "hat") return Rate::Hat;
  if (name == "hat_const_alpha") return Rate::HatConstAlpha;
  if (name == "adahat") return Rate::AdaHat;
  fail_argument("`rate` must be 'hat', 'hat_const_alpha' or 'adahat', got '", name, "'");
}

// Checks `a` (length shape[0]) and `b` (length shape[1]) against `target` and returns the view.
// Arguments are named with `suffix` appended ("[2]" for an entry of the list op).
inline LayerShape check_measure_args(const Tensor& target, const Tensor& a, const std::optional<Tensor>& b_opt,
                                     torch::headeronly::IntHeaderOnlyArrayRef shape, const char* target_name = "a",
                                     const std::string& suffix = "") {
  const std::string a_name = "a" + suffix;
  const std::string b_name = "b" + suffix;
  check_floating(a, a_name.c_str());
  check_same_device(a, a_name.c_str(), target, target_name);
  if (shape.size() < 1) fail_argument("the weight shape must have at least one dimension");
  check_vector(a, a_name.c_str(), shape[0]);
  LayerShape layer{shape[0], 1, 1};
  if (b_opt.has_value()) {
    const Tensor& b = *b_opt;
    if (shape.size() < 2)
      fail_argument("`", b_name, "` is given, so the weight shape must have at least two dimensions (out, in, ...), got ",
                    describe(shape));
    check_same_dtype(b, b_name.c_str(), a, a_name.c_str());
    check_same_device(b, b_name.c_str(), a, a_name.c_str());
    check_vector(b, b_name.c_str(), shape[1]);
    layer.cols = shape[1];
    for (size_t d = 2; d < shape.size(); ++d) layer.inner *= shape[d];
  } else {
    for (size_t d = 1; d < shape.size(); ++d) layer.inner *= shape[d];
  }
  return layer;
}

// The parsed modes of a gradient-scaling call, with its `alpha`.
struct RateArgs {
  Aggregation aggregation;
  Rate rate;
  double alpha;
};

// `r` holds the single op's `r`, or the list op's one value per gradient (named `r[i]`).
inline RateArgs check_rate_args(std::string_view aggregation, std::string_view rate, double alpha,
                                const std::vector<double>& r, bool listed) {
  const RateArgs args{parse_aggregation(aggregation), parse_rate(rate), alpha};
  if (args.rate != Rate::AdaHat) return args;
  for (size_t i = 0; i < r.size(); ++i)
    if (!(r[i] > 0))
      fail_argument("`r", listed ? "[" + std::to_string(i) + "]" : std::string(), "` must be positive for the 'adahat' rate, got ", r[i]);
  return args;
}

// Checks one gradient with its unit measures: `grad`, or entry `suffix` of the list op's `grads`.
inline LayerShape check_grad_args(const Tensor& grad, const Tensor& a, const std::optional<Tensor>& b,
                                  const std::string& suffix = "") {
  const std::string grad_name = suffix.empty() ? "grad" : "grads" + suffix;
  check_floating(grad, grad_name.c_str());
  check_same_dtype(a, ("a" + suffix).c_str(), grad, grad_name.c_str());
  return check_measure_args(grad, a, b, grad.sizes(), grad_name.c_str(), suffix);
}

// The list op: one entry per gradient, all gradients of one dtype on one device (one kernel).
inline std::vector<LayerShape> check_foreach_args(const std::vector<Tensor>& grads, const std::vector<Tensor>& a,
                                                  const std::vector<std::optional<Tensor>>& b,
                                                  const std::vector<double>& r) {
  if (a.size() != grads.size() || b.size() != grads.size() || r.size() != grads.size())
    fail_argument("`grads`, `a`, `b` and `r` must have one entry per gradient, got ", grads.size(), ", ", a.size(),
                  ", ", b.size(), " and ", r.size());
  std::vector<LayerShape> layers;
  layers.reserve(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    const std::string suffix = "[" + std::to_string(i) + "]";
    if (i > 0) {
      const std::string grad_name = "grads" + suffix;
      check_floating(grads[i], grad_name.c_str());
      check_same_dtype(grads[i], grad_name.c_str(), grads[0], "grads[0]");
      check_same_device(grads[i], grad_name.c_str(), grads[0], "grads[0]");
    }
    layers.push_back(check_grad_args(grads[i], a[i], b[i], suffix));
  }
  return layers;
}

}  // namespace clarena::parameter_measure
