// Multi-scale deformable attention (Deformable DETR / ViT-Adapter): shared declarations.
//
// Shapes: value [N,S,M,D] (L levels flattened into S), spatial_shapes [L,2] int64 (H,W),
// level_start_index [L] int64, sampling_locations [N,Q,M,L,P,2] as (x,y) in [0,1],
// attention_weights [N,Q,M,L,P] -> output [N,Q,M*D]. Bilinear sampling with zero padding and
// align_corners=False, i.e. grid_sample on 2*loc-1.
//
// dtypes: value float32/float64/float16/bfloat16; sampling_locations and attention_weights in
// the compute type of value (float64 for float64 value, float32 otherwise).
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>

#if defined(__CUDACC__)
#define PROLAB_HD __host__ __device__ __forceinline__
#else
#define PROLAB_HD inline
#endif

namespace prolab::msda {

// The four bilinear corners of one sample: flat pixel index inside the level and weight
// (zero for corners outside the image, which is how zero padding is expressed).
template <typename acc_t>
struct Corners {
  int64_t index[4];
  acc_t weight[4];
  bool valid[4];
  acc_t lh, lw, hh, hw;  // fractional parts: lh = h - floor(h), hh = 1 - lh
};

// Fills `c` for a sample at (x,y) in [0,1] on an H x W level; returns false when no corner is
// inside the image (h < -1, h >= H, or NaN), so the sample contributes nothing.
template <typename acc_t>
PROLAB_HD bool bilinear_corners(acc_t x, acc_t y, int64_t H, int64_t W, Corners<acc_t>& c) {
  const acc_t h = y * static_cast<acc_t>(H) - acc_t(0.5);
  const acc_t w = x * static_cast<acc_t>(W) - acc_t(0.5);
  // h == -1 is kept: its value is zero but its gradient along h is not (as in grid_sample).
  if (!(h >= acc_t(-1) && w >= acc_t(-1) && h < static_cast<acc_t>(H) && w < static_cast<acc_t>(W))) {
    return false;
  }
  const acc_t hf = floor(h);
  const acc_t wf = floor(w);
  const int64_t h0 = static_cast<int64_t>(hf);
  const int64_t w0 = static_cast<int64_t>(wf);
  c.lh = h - hf;
  c.lw = w - wf;
  c.hh = acc_t(1) - c.lh;
  c.hw = acc_t(1) - c.lw;
  const bool h0_in = h0 >= 0;
  const bool h1_in = h0 + 1 <= H - 1;
  const bool w0_in = w0 >= 0;
  const bool w1_in = w0 + 1 <= W - 1;
  c.valid[0] = h0_in && w0_in;
  c.valid[1] = h0_in && w1_in;
  c.valid[2] = h1_in && w0_in;
  c.valid[3] = h1_in && w1_in;
  c.index[0] = h0 * W + w0;
  c.index[1] = h0 * W + w0 + 1;
  c.index[2] = (h0 + 1) * W + w0;
  c.index[3] = (h0 + 1) * W + w0 + 1;
  c.weight[0] = c.hh * c.hw;
  c.weight[1] = c.hh * c.lw;
  c.weight[2] = c.lh * c.hw;
  c.weight[3] = c.lh * c.lw;
  return true;
}

// Checks shapes, dtypes and devices shared by all implementations; returns (N,S,M,D,Q,L,P).
std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t> check_inputs(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

// The instruction set the CPU kernels run with: "avx512", "avx2" or "base" (the best this CPU has,
// or the lower one PROLAB_MSDA_CPU_ISA names), followed by "(portable build: no vector code)" when the
// compiler lacked the vector extensions (GCC < 11).
std::string cpu_isa();

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights);

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

}  // namespace prolab::msda
