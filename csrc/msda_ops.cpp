// Operator schemas of prolab::ms_deform_attn and shared input checks. The CPU and CUDA kernels
// register their implementations in msda_cpu.cpp and msda_cuda.cu; fake (meta) and autograd
// implementations are registered from Python (segmentation/ops/custom_op.py).
#include "msda.h"

#include <torch/library.h>

namespace prolab::msda {

std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t> check_inputs(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be [N,S,M,D], got ", value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "ms_deform_attn: sampling_locations must be [N,Q,M,L,P,2], got ", sampling_locations.sizes());
  const int64_t N = value.size(0), S = value.size(1), M = value.size(2), D = value.size(3);
  const int64_t Q = sampling_locations.size(1), L = sampling_locations.size(3), P = sampling_locations.size(4);
  TORCH_CHECK(sampling_locations.size(0) == N && sampling_locations.size(2) == M,
              "ms_deform_attn: sampling_locations ", sampling_locations.sizes(),
              " does not match value ", value.sizes());
  TORCH_CHECK(attention_weights.sizes() == at::IntArrayRef({N, Q, M, L, P}),
              "ms_deform_attn: attention_weights must be [N,Q,M,L,P]=[", N, ",", Q, ",", M, ",", L, ",", P,
              "], got ", attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == L && spatial_shapes.size(1) == 2,
              "ms_deform_attn: spatial_shapes must be [L,2] with L=", L, ", got ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == L,
              "ms_deform_attn: level_start_index must be [L] with L=", L, ", got ", level_start_index.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64");
  const auto vt = value.scalar_type();
  TORCH_CHECK(vt == at::kFloat || vt == at::kDouble || vt == at::kHalf || vt == at::kBFloat16,
              "ms_deform_attn: value must be float32, float64, float16 or bfloat16, got ", vt);
  const auto compute = vt == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(sampling_locations.scalar_type() == compute && attention_weights.scalar_type() == compute,
              "ms_deform_attn: sampling_locations and attention_weights must be ", compute, " for a ", vt,
              " value, got ", sampling_locations.scalar_type(), " and ", attention_weights.scalar_type());
  const auto device = value.device();
  for (const at::Tensor* t : {&spatial_shapes, &level_start_index, &sampling_locations, &attention_weights}) {
    TORCH_CHECK(t->device() == device, "ms_deform_attn: all inputs must be on ", device, ", found one on ",
                t->device());
  }
  return {N, S, M, D, Q, L, P};
}

}  // namespace prolab::msda

TORCH_LIBRARY_FRAGMENT(prolab, m) {
  m.def(
      "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("ms_deform_attn_cpu_isa() -> str", &prolab::msda::cpu_isa);
}
