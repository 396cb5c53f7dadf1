// CPU kernels of clarena::unit_mask. The input is viewed as (batch, channels, spatial). With no
// spatial dimensions (MLP layers) the loops run along the contiguous channels; otherwise along the
// contiguous spatial positions of one (sample, channel) row. The mask gradient is reduced in a
// fixed order, so results do not depend on the thread count.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>

#include <tuple>
#include <vector>

#include "common/parallel.h"
#include "common/scalar.h"
#include "common/subnormal.h"
#include "ops/unit_mask.h"
#include "ops/unit_mask_checks.h"

namespace clarena::unit_mask {
namespace {

// Samples per partial sum of the mask gradient when there are no spatial dimensions.
constexpr int64_t kBatchBlock = 256;

template <typename scalar_t>
void forward_rows(const scalar_t* x, const scalar_t* m, scalar_t* out, Layout layout, bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  if (layout.spatial == 1) {
    parallel_rows(layout.batch, layout.channels, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* xr = x + n * layout.channels;
        scalar_t* outr = out + n * layout.channels;
        for (int64_t c = 0; c < layout.channels; ++c)
          outr[c] = flush_subnormal<scalar_t>(forward<opmath_t>(xr[c], m[c], relu));
      }
    });
    return;
  }
  parallel_rows(layout.batch * layout.channels, layout.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const opmath_t mc = m[row % layout.channels];
      const int64_t base = row * layout.spatial;
      for (int64_t s = 0; s < layout.spatial; ++s)
        out[base + s] = flush_subnormal<scalar_t>(forward<opmath_t>(x[base + s], mc, relu));
    }
  });
}

// One sample of an (N, C) input: the input gradient of every channel, and each channel's mask
// gradient added to `sums`. Independent channels and branch-free selects: the loop vectorises.
template <typename scalar_t>
void backward_sample(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x, const scalar_t* __restrict__ m,
                     scalar_t* __restrict__ gi, opmath_type<scalar_t>* __restrict__ sums, int64_t channels,
                     bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  for (int64_t c = 0; c < channels; ++c) {
    const opmath_t gv = g[c];
    const opmath_t xv = x[c];
    const opmath_t mc = m[c];
    const bool open = passes<scalar_t>(xv, mc, relu);
    gi[c] = flush_subnormal<scalar_t>(keep_if(open, gv * mc));
    sums[c] += keep_if(open, gv * xv);
  }
}

// One contiguous (sample, channel) row of a spatial input: the input gradient, and the row's mask
// gradient summed in kLanes interleaved partial sums (a fixed order that vectorises).
constexpr int64_t kLanes = 8;

template <typename scalar_t>
opmath_type<scalar_t> backward_row(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                       scalar_t* __restrict__ gi, opmath_type<scalar_t> mc, int64_t length,
                                       bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  opmath_t lanes[kLanes] = {};
  int64_t s = 0;
  for (; s + kLanes <= length; s += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const opmath_t gv = g[s + k];
      const opmath_t xv = x[s + k];
      const bool open = passes<scalar_t>(xv, mc, relu);
      gi[s + k] = flush_subnormal<scalar_t>(keep_if(open, gv * mc));
      lanes[k] += keep_if(open, gv * xv);
    }
  }
  for (int64_t k = 0; s < length; ++s, ++k) {
    const opmath_t gv = g[s];
    const opmath_t xv = x[s];
    const bool open = passes<scalar_t>(xv, mc, relu);
    gi[s] = flush_subnormal<scalar_t>(keep_if(open, gv * mc));
    lanes[k] += keep_if(open, gv * xv);
  }
  opmath_t sum = 0;
  for (int64_t k = 0; k < kLanes; ++k) sum += lanes[k];
  return sum;
}

// (N, C) inputs: each block of samples sums its channels' gradients; blocks are added in order.
template <typename scalar_t>
void backward_matrix(const scalar_t* g, const scalar_t* x, const scalar_t* m, scalar_t* gi, scalar_t* gm,
                     Layout layout, bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  const int64_t channels = layout.channels;
  const int64_t blocks = (layout.batch + kBatchBlock - 1) / kBatchBlock;
  std::vector<opmath_t> partial(blocks * channels, opmath_t(0));
  parallel_rows(blocks, kBatchBlock * channels, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t stop = std::min(layout.batch, (block + 1) * kBatchBlock);
      for (int64_t n = block * kBatchBlock; n < stop; ++n) {
        const int64_t base = n * channels;
        backward_sample(g + base, x + base, m, gi + base, partial.data() + block * channels, channels, relu);
      }
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    opmath_t sum = 0;
    for (int64_t block = 0; block < blocks; ++block) sum += partial[block * channels + c];
    gm[c] = flush_subnormal<scalar_t>(sum);
  }
}

// (N, C, spatial...) inputs: one channel at a time, over its contiguous spatial rows.
template <typename scalar_t>
void backward_channels(const scalar_t* g, const scalar_t* x, const scalar_t* m, scalar_t* gi, scalar_t* gm,
                       Layout layout, bool relu) {
  using opmath_t = opmath_type<scalar_t>;
  parallel_rows(layout.channels, layout.batch * layout.spatial, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      opmath_t sum = 0;
      for (int64_t n = 0; n < layout.batch; ++n) {
        const int64_t base = (n * layout.channels + c) * layout.spatial;
        sum += backward_row(g + base, x + base, gi + base, static_cast<opmath_t>(m[c]), layout.spatial, relu);
      }
      gm[c] = flush_subnormal<scalar_t>(sum);
    }
  });
}

Tensor unit_mask_cpu(const Tensor& input, const Tensor& mask, bool relu) {
  const Layout layout = check_args(input, mask);
  const Tensor x = torch::stable::contiguous(input);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor out = torch::stable::new_empty(x, x.sizes());
  if (x.numel() == 0) return out;
  dispatch_floating(x.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    forward_rows(x.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), layout,
                 relu);
  });
  return out;
}

std::tuple<Tensor, Tensor> unit_mask_backward_cpu(const Tensor& grad, const Tensor& input, const Tensor& mask,
                                                  bool relu) {
  const Layout layout = check_backward_args(grad, input, mask);
  const Tensor g = torch::stable::contiguous(grad);
  const Tensor x = torch::stable::contiguous(input);
  const Tensor m = torch::stable::contiguous(mask);
  Tensor grad_input = torch::stable::new_empty(x, x.sizes());
  Tensor grad_mask = torch::stable::new_zeros(m, m.sizes());
  if (x.numel() == 0) return {grad_input, grad_mask};
  dispatch_floating(x.scalar_type(), [&](auto tag) {
    using scalar_t = typename decltype(tag)::type;
    const auto backward = layout.spatial == 1 ? backward_matrix<scalar_t> : backward_channels<scalar_t>;
    backward(g.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), m.const_data_ptr<scalar_t>(),
             grad_input.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), layout, relu);
  });
  return {grad_input, grad_mask};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(clarena, CPU, m) {
  m.impl("unit_mask", TORCH_BOX(&unit_mask_cpu));
  m.impl("unit_mask_backward", TORCH_BOX(&unit_mask_backward_cpu));
}

}  // namespace clarena::unit_mask
