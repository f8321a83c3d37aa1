// CUDA kernels of prolab::ms_deform_attn. One warp per (batch, query, head) row, lanes over the
// channel dimension D. The backward reduces the location and weight gradients inside the warp
// (each is written by exactly one lane, no atomics) and scatters the value gradient with
// atomicAdd, the only place where different queries meet. float16/bfloat16 are computed (and
// their value gradient accumulated) in float32. The whole batch runs in one launch.
#include "msda.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

namespace prolab::msda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Level table read inside the kernels; a level that would run past S is skipped rather than
// read out of bounds (the CPU op rejects such inputs; checking here would need a host sync).
__device__ __forceinline__ bool level_fits(int64_t start, int64_t H, int64_t W, int64_t S) {
  return start >= 0 && H >= 0 && W >= 0 && start + H * W <= S;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) forward_kernel(
    const scalar_t* __restrict__ value, const int64_t* __restrict__ hw, const int64_t* __restrict__ starts,
    const acc_t* __restrict__ loc, const acc_t* __restrict__ attn, scalar_t* __restrict__ out, int64_t rows,
    int64_t S, int64_t M, int64_t D, int64_t Q, int64_t L, int64_t P) {
  const int lane = threadIdx.x % kWarp;
  const int64_t pixel_stride = M * D;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t m = row % M;
    const int64_t n = row / (M * Q);
    const acc_t* lrow = loc + row * L * P * 2;
    const acc_t* arow = attn + row * L * P;
    for (int64_t d0 = 0; d0 < D; d0 += kWarp) {
      const int64_t d = d0 + lane;
      const bool active = d < D;
      acc_t acc = 0;
      for (int64_t l = 0; l < L; ++l) {
        const int64_t H = hw[2 * l], W = hw[2 * l + 1], start = starts[l];
        if (!level_fits(start, H, W, S)) continue;
        const scalar_t* base = value + ((n * S + start) * M + m) * D + d;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t lp = l * P + p;
          Corners<acc_t> c;
          if (!bilinear_corners<acc_t>(lrow[2 * lp], lrow[2 * lp + 1], H, W, c)) continue;
          const acc_t a = arow[lp];
          if (!active) continue;
          acc_t sampled = 0;
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (c.valid[i]) sampled += c.weight[i] * static_cast<acc_t>(base[c.index[i] * pixel_stride]);
          }
          acc += a * sampled;
        }
      }
      if (active) out[row * D + d] = static_cast<scalar_t>(acc);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) backward_kernel(
    const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ value, const int64_t* __restrict__ hw,
    const int64_t* __restrict__ starts, const acc_t* __restrict__ loc, const acc_t* __restrict__ attn,
    acc_t* __restrict__ grad_value, acc_t* __restrict__ grad_loc, acc_t* __restrict__ grad_attn, int64_t rows,
    int64_t S, int64_t M, int64_t D, int64_t Q, int64_t L, int64_t P) {
  const int lane = threadIdx.x % kWarp;
  const int64_t pixel_stride = M * D;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t m = row % M;
    const int64_t n = row / (M * Q);
    const acc_t* lrow = loc + row * L * P * 2;
    const acc_t* arow = attn + row * L * P;
    const scalar_t* g = grad_out + row * D;
    for (int64_t l = 0; l < L; ++l) {
      const int64_t H = hw[2 * l], W = hw[2 * l + 1], start = starts[l];
      const bool fits = level_fits(start, H, W, S);
      const int64_t offset = ((n * S + start) * M + m) * D;
      for (int64_t p = 0; p < P; ++p) {
        const int64_t lp = l * P + p;
        const int64_t out_index = row * L * P + lp;
        Corners<acc_t> c;
        if (!fits || !bilinear_corners<acc_t>(lrow[2 * lp], lrow[2 * lp + 1], H, W, c)) {
          if (lane == 0) {
            grad_attn[out_index] = 0;
            grad_loc[2 * out_index] = 0;
            grad_loc[2 * out_index + 1] = 0;
          }
          continue;
        }
        const acc_t a = arow[lp];
        acc_t dot[4] = {0, 0, 0, 0};  // this lane's share of <grad_out, value at corner i>
        for (int64_t d = lane; d < D; d += kWarp) {
          const acc_t gd = static_cast<acc_t>(g[d]);
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            if (!c.valid[i]) continue;
            const int64_t idx = offset + c.index[i] * pixel_stride + d;
            dot[i] += gd * static_cast<acc_t>(value[idx]);
            atomicAdd(grad_value + idx, a * c.weight[i] * gd);
          }
        }
        acc_t ga = c.weight[0] * dot[0] + c.weight[1] * dot[1] + c.weight[2] * dot[2] + c.weight[3] * dot[3];
        acc_t gh = a * (c.hw * (dot[2] - dot[0]) + c.lw * (dot[3] - dot[1]));
        acc_t gw = a * (c.hh * (dot[1] - dot[0]) + c.lh * (dot[3] - dot[2]));
        ga = warp_sum(ga);
        gh = warp_sum(gh);
        gw = warp_sum(gw);
        if (lane == 0) {
          grad_attn[out_index] = ga;
          grad_loc[2 * out_index] = gw * static_cast<acc_t>(W);
          grad_loc[2 * out_index + 1] = gh * static_cast<acc_t>(H);
        }
      }
    }
  }
}

int64_t blocks_for(int64_t rows) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return std::max<int64_t>(1, std::min<int64_t>(blocks, int64_t{1} << 30));
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& value_in, const at::Tensor& spatial_shapes,
                        const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                        const at::Tensor& attention_weights) {
  int64_t N, S, M, D, Q, L, P;  // not a structured binding: Clang < 16 cannot capture one in a lambda
  std::tie(N, S, M, D, Q, L, P) =
      check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard guard(value_in.device());
  const auto value = value_in.contiguous();
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto out = at::empty({N, Q, M * D}, value.options());
  const int64_t rows = N * Q * M;
  if (rows == 0 || D == 0) return out.zero_();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream>>>(
        value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(), starts.data_ptr<int64_t>(), loc.data_ptr<acc_t>(),
        attn.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), rows, S, M, D, Q, L, P);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_output_in, const at::Tensor& value_in, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  int64_t N, S, M, D, Q, L, P;
  std::tie(N, S, M, D, Q, L, P) =
      check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output_in.sizes() == at::IntArrayRef({N, Q, M * D}),
              "ms_deform_attn_backward: grad_output must be [N,Q,M*D], got ", grad_output_in.sizes());
  const c10::cuda::CUDAGuard guard(value_in.device());
  const auto value = value_in.contiguous();
  const auto grad_output = grad_output_in.to(value.scalar_type()).contiguous();
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  // accumulated in the compute type (float32 for float16/bfloat16 values)
  auto grad_value = at::zeros(value.sizes(), loc.options());
  auto grad_loc = at::zeros(loc.sizes(), loc.options());
  auto grad_attn = at::zeros(attn.sizes(), attn.options());
  const int64_t rows = N * Q * M;
  if (rows > 0 && D > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_kernel<scalar_t, acc_t><<<blocks_for(rows), kThreads, 0, stream>>>(
          grad_output.data_ptr<scalar_t>(), value.data_ptr<scalar_t>(), shapes.data_ptr<int64_t>(),
          starts.data_ptr<int64_t>(), loc.data_ptr<acc_t>(), attn.data_ptr<acc_t>(), grad_value.data_ptr<acc_t>(),
          grad_loc.data_ptr<acc_t>(), grad_attn.data_ptr<acc_t>(), rows, S, M, D, Q, L, P);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace prolab::msda

TORCH_LIBRARY_IMPL(prolab, CUDA, m) {
  m.impl("ms_deform_attn", &prolab::msda::forward_cuda);
  m.impl("ms_deform_attn_backward", &prolab::msda::backward_cuda);
}
