// CPU kernels of clarena::unit_mask. The input is viewed as (batch, channels, spatial); the
// backward reduces the mask gradient per channel in a fixed order, so results do not depend on
// the thread count.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "common/checks.h"
#include "ops/unit_mask.h"

namespace clarena::unit_mask {
namespace {

struct Layout {
  int64_t batch;
  int64_t channels;
  int64_t spatial;
};

Layout check_args(const at::Tensor& input, const at::Tensor& mask) {
  CLARENA_CHECK_FLOATING(input);
  CLARENA_CHECK_SAME_DTYPE(mask, input);
  CLARENA_CHECK_SAME_DEVICE(mask, input);
  TORCH_CHECK_VALUE(input.dim() >= 2, "clarena: `input` must have a batch and a unit dimension (N, C, ...), got shape ",
                    input.sizes());
  CLARENA_CHECK_VECTOR(mask, input.size(1));
  int64_t spatial = 1;
  for (int64_t d = 2; d < input.dim(); ++d) spatial *= input.size(d);
  return {input.size(0), input.size(1), spatial};
}

at::Tensor unit_mask_cpu(const at::Tensor& input, const at::Tensor& mask, bool relu) {
  const Layout layout = check_args(input, mask);
  const at::Tensor x = input.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "unit_mask_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const int64_t rows = layout.batch * layout.channels;
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, layout.spatial));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const opmath_t mc = mp[row % layout.channels];
        const int64_t base = row * layout.spatial;
        for (int64_t s = 0; s < layout.spatial; ++s)
          op[base + s] = static_cast<scalar_t>(forward<opmath_t>(xp[base + s], mc, relu));
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> unit_mask_backward_cpu(const at::Tensor& grad, const at::Tensor& input,
                                                          const at::Tensor& mask, bool relu) {
  const Layout layout = check_args(input, mask);
  CLARENA_CHECK_SAME_DTYPE(grad, input);
  TORCH_CHECK_VALUE(grad.sizes() == input.sizes(), "clarena: `grad` must have the shape of `input` (",
                    input.sizes(), "), got ", grad.sizes());
  const at::Tensor g = grad.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor m = mask.contiguous();
  at::Tensor grad_input = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_mask = at::zeros_like(m, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return {grad_input, grad_mask};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "unit_mask_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* mp = m.const_data_ptr<scalar_t>();
    scalar_t* gi = grad_input.mutable_data_ptr<scalar_t>();
    scalar_t* gm = grad_mask.mutable_data_ptr<scalar_t>();
    const int64_t per_channel = layout.batch * layout.spatial;
    const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(1, per_channel));
    at::parallel_for(0, layout.channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const opmath_t mc = mp[c];
        opmath_t sum = 0;
        for (int64_t n = 0; n < layout.batch; ++n) {
          const int64_t base = (n * layout.channels + c) * layout.spatial;
          for (int64_t s = 0; s < layout.spatial; ++s) {
            const opmath_t gv = gp[base + s];
            const opmath_t xv = xp[base + s];
            const bool open = passes<opmath_t>(xv, mc, relu);
            gi[base + s] = static_cast<scalar_t>(open ? gv * mc : opmath_t(0));
            sum += open ? gv * xv : opmath_t(0);
          }
        }
        gm[c] = static_cast<scalar_t>(sum);
      }
    });
  });
  return {grad_input, grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("unit_mask", &unit_mask_cpu);
  m.impl("unit_mask_backward", &unit_mask_backward_cpu);
}

}  // namespace clarena::unit_mask
