// CPU kernels of prolab::ms_deform_attn. The forward is parallel over batch x queries; the
// backward over batch x groups of heads, whose slices of grad_value are disjoint: no atomics,
// and results do not depend on the thread count.
#include "msda.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace prolab::msda {
namespace {

// Reads the level table once and checks it against S (cheap on the CPU).
void read_levels(const at::Tensor& spatial_shapes, const at::Tensor& level_start_index, int64_t S,
                 std::vector<int64_t>& hw, std::vector<int64_t>& starts) {
  const auto shapes = spatial_shapes.contiguous();
  const auto start = level_start_index.contiguous();
  const int64_t L = shapes.size(0);
  hw.assign(shapes.data_ptr<int64_t>(), shapes.data_ptr<int64_t>() + 2 * L);
  starts.assign(start.data_ptr<int64_t>(), start.data_ptr<int64_t>() + L);
  for (int64_t l = 0; l < L; ++l) {
    const int64_t H = hw[2 * l], W = hw[2 * l + 1];
    TORCH_CHECK(H >= 0 && W >= 0, "ms_deform_attn: level ", l, " has a negative size (", H, ",", W, ")");
    TORCH_CHECK(starts[l] >= 0 && starts[l] + H * W <= S, "ms_deform_attn: level ", l, " (", H, "x", W,
                " starting at ", starts[l], ") does not fit in value with S=", S);
    TORCH_CHECK(H * W < (int64_t{1} << 30), "ms_deform_attn: level ", l, " (", H, "x", W,
                ") has 2^30 pixels or more, which the CPU kernels do not support");
  }
}

#if defined(__GNUC__)
#define PROLAB_INLINE __attribute__((always_inline)) inline
#else
#define PROLAB_INLINE inline
#endif

// GCC/Clang vector extensions (vector_size, __builtin_convertvector, shuffles), checked with GCC 11
// and 12. Other compilers take the scalar path, as does a build with -DPROLAB_MSDA_PORTABLE (the tests
// use it to check that path).
#if !defined(PROLAB_MSDA_PORTABLE) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 11))
#define PROLAB_VECTOR_EXTENSIONS 1
#else
#define PROLAB_VECTOR_EXTENSIONS 0
#endif

// A kBytes-byte vector of scalar_t: 32 bytes in the baseline build (two SSE registers) and the AVX2
// build (one register), 64 in the AVX-512 build.
template <typename scalar_t, int kBytes>
struct Simd {
#if PROLAB_VECTOR_EXTENSIONS
  typedef scalar_t vec __attribute__((vector_size(kBytes)));
  typedef scalar_t unaligned_vec __attribute__((vector_size(kBytes), aligned(alignof(scalar_t)), may_alias));
#else
  typedef scalar_t vec;
#endif
  static constexpr int lanes = kBytes / sizeof(scalar_t);
};

// Whether a channel count known at compile time takes the vector path.
template <typename scalar_t, int kBytes>
constexpr bool simd_channels(int kD) {
  return PROLAB_VECTOR_EXTENSIONS && kD > 0 && kD % Simd<scalar_t, kBytes>::lanes == 0;
}

#if PROLAB_VECTOR_EXTENSIONS
template <typename scalar_t, int kBytes>
PROLAB_INLINE void load(typename Simd<scalar_t, kBytes>::vec& x, const scalar_t* p) {
  x = *reinterpret_cast<const typename Simd<scalar_t, kBytes>::unaligned_vec*>(p);
}

template <typename scalar_t, int kBytes>
PROLAB_INLINE void store(scalar_t* p, const typename Simd<scalar_t, kBytes>::vec& x) {
  *reinterpret_cast<typename Simd<scalar_t, kBytes>::unaligned_vec*>(p) = x;
}

// Lanes I... of the concatenation (a, b), as many as a has: __builtin_shufflevector where the compiler
// has it (GCC 12, Clang), else GCC's __builtin_shuffle with an integer mask of the same shape.
template <std::size_t... I, typename V>
PROLAB_INLINE V shuffle(const V& a, const V& b) {
#if defined(__clang__) || __GNUC__ >= 12
  return __builtin_shufflevector(a, b, I...);
#else
  using lane = std::remove_reference_t<decltype(a[0])>;
  using index = std::conditional_t<sizeof(lane) == 8, int64_t, int32_t>;
  typedef index mask_t __attribute__((vector_size(sizeof(V))));
  return __builtin_shuffle(a, b, mask_t{static_cast<index>(I)...});
#endif
}

// The high half of a, in both halves.
template <typename V, std::size_t... K>
PROLAB_INLINE V shuffle_high_half(const V& a, std::index_sequence<K...>) {
  return shuffle<(K % (sizeof...(K) / 2) + sizeof...(K) / 2)...>(a, a);
}

// The shuffles of lane_sums, lane k of the result for k < kUsed (later lanes are unused: 0), with b's
// lanes numbered from kLanes: pairs of adjacent lanes of a beside those of b, then pairs of pairs.
enum class Pick { kFirstOfPair, kSecondOfPair, kFirstPairOfFour, kSecondPairOfFour };

template <Pick kPick, int kLanes, int kUsed>
constexpr std::size_t picked_lane(std::size_t k) {
  if (k >= kUsed) return 0;
  switch (kPick) {
    case Pick::kFirstOfPair: return k % 2 == 0 ? k : kLanes + k - 1;
    case Pick::kSecondOfPair: return k % 2 == 0 ? k + 1 : kLanes + k;
    case Pick::kFirstPairOfFour: return k % 4 < 2 ? k : kLanes + k - 2;
    case Pick::kSecondPairOfFour: return k % 4 < 2 ? k + 2 : kLanes + k;
  }
  return 0;
}

template <Pick kPick, int kUsed, typename V, std::size_t... K>
PROLAB_INLINE V pick_lanes(const V& a, const V& b, std::index_sequence<K...>) {
  return shuffle<picked_lane<kPick, sizeof...(K), kUsed>(K)...>(a, b);
}

// sums[i] = the sum of the lanes of e[i], four horizontal sums for the price of about one. A 64-byte
// vector's high half is first folded onto its low half; of the kUsed lanes then in use, p holds the
// sums of adjacent pairs of f[0] and f[1] side by side, q those of f[2] and f[3], r the sums of pairs
// of those, and the two 128-bit halves of r are added last. Every shuffle keeps the vector's length,
// as GCC's __builtin_shuffle requires.
template <typename scalar_t, int kBytes>
PROLAB_INLINE void lane_sums(const typename Simd<scalar_t, kBytes>::vec (&e)[4], scalar_t (&sums)[4]) {
  using V = typename Simd<scalar_t, kBytes>::vec;
  constexpr int kLanes = Simd<scalar_t, kBytes>::lanes;
  constexpr int kUsed = kBytes == 64 ? kLanes / 2 : kLanes;  // 8 floats or 4 doubles
  static_assert(kUsed == 8 || kUsed == 4);
  const auto lanes = std::make_index_sequence<kLanes>{};
  V f[4];
  for (int i = 0; i < 4; ++i) {
    f[i] = e[i];
    if constexpr (kBytes == 64) f[i] += shuffle_high_half(e[i], lanes);
  }
  const V p = pick_lanes<Pick::kFirstOfPair, kUsed>(f[0], f[1], lanes) +
              pick_lanes<Pick::kSecondOfPair, kUsed>(f[0], f[1], lanes);
  const V q = pick_lanes<Pick::kFirstOfPair, kUsed>(f[2], f[3], lanes) +
              pick_lanes<Pick::kSecondOfPair, kUsed>(f[2], f[3], lanes);
  const V r = pick_lanes<Pick::kFirstPairOfFour, kUsed>(p, q, lanes) +
              pick_lanes<Pick::kSecondPairOfFour, kUsed>(p, q, lanes);
  for (int i = 0; i < 4; ++i) sums[i] = kUsed == 8 ? r[i] + r[i + 4] : r[i];
}

// The even and the odd lanes of the concatenation (a, b): x and y of interleaved (x, y) pairs.
template <typename V, std::size_t... I>
PROLAB_INLINE V even_lanes(const V& a, const V& b, std::index_sequence<I...>) {
  return shuffle<(2 * I)...>(a, b);
}

template <typename V, std::size_t... I>
PROLAB_INLINE V odd_lanes(const V& a, const V& b, std::index_sequence<I...>) {
  return shuffle<(2 * I + 1)...>(a, b);
}
#endif

// What every (batch, query) row shares, per sample column j = (m * L + l) * P + p: its level's size
// (as a number and in pixels) and the element offset of its level and head in one batch element of
// value. Padded with kPad 1x1 columns, so that vector loops may run past the last one.
template <typename scalar_t>
struct Columns {
  static constexpr int64_t kPad = 16;  // the most lanes of any vector (16 floats)
  std::vector<scalar_t> height, width;
  std::vector<int32_t> height_px, width_px;
  std::vector<int64_t> offset;

  Columns(const std::vector<int64_t>& hw, const std::vector<int64_t>& starts, int64_t M, int64_t D, int64_t P) {
    const int64_t L = static_cast<int64_t>(starts.size());
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t l = 0; l < L; ++l) {
        for (int64_t p = 0; p < P; ++p) {
          add(static_cast<int32_t>(hw[2 * l]), static_cast<int32_t>(hw[2 * l + 1]), (starts[l] * M + m) * D);
        }
      }
    }
    for (int64_t j = 0; j < kPad; ++j) add(1, 1, 0);
  }

  void add(int32_t h, int32_t w, int64_t element_offset) {
    height.push_back(static_cast<scalar_t>(h));
    width.push_back(static_cast<scalar_t>(w));
    height_px.push_back(h);
    width_px.push_back(w);
    offset.push_back(element_offset);
  }
};

// The bilinear corners of the samples of one row, per column (see locate_samples): the top-left
// pixel's index inside its level, one bit per corner inside the image (0: the sample adds
// nothing), the fractional parts (lh = h - floor(h)) and the four bilinear weights.
template <typename scalar_t>
struct Samples {
  std::vector<int32_t> index, mask;
  std::vector<scalar_t> lh, lw, weight[4];
  std::vector<scalar_t> loc_tail;  // a row's last, partial vector of locations, zero-padded

  explicit Samples(int64_t columns)
      : index(columns), mask(columns), lh(columns), lw(columns), loc_tail(2 * Columns<scalar_t>::kPad) {
    for (auto& w : weight) w.resize(columns);
  }
};

// Pointers and sizes of one call.
template <typename scalar_t>
struct Args {
  const scalar_t* value;
  const scalar_t* loc;
  const scalar_t* attn;
  const scalar_t* grad_out;
  scalar_t* out;
  scalar_t* grad_value;
  scalar_t* grad_loc;
  scalar_t* grad_attn;
  int64_t N, S, M, D, Q, L, P;
  const Columns<scalar_t>* columns;
  int64_t groups = 1;  // backward: tasks per batch element, each a contiguous group of heads
};

// Fills `out` for columns [begin, end) of the row whose locations start at `loc`: the arithmetic of
// bilinear_corners (msda.h), a vector of samples at a time. Samples outside (h < -1, h >= H, NaN)
// get mask 0 and are computed at h = w = 0. Writes up to Columns::kPad columns past `end`.
// 32-byte vectors in every build: GCC 12 turns 64-byte vector comparisons into one scalar compare
// per lane.
template <typename scalar_t, int kBytes = 32>
PROLAB_INLINE void locate_samples(const Columns<scalar_t>& cols, const scalar_t* loc, int64_t begin, int64_t end,
                                  Samples<scalar_t>& out) {
#if PROLAB_VECTOR_EXTENSIONS
  using V = typename Simd<scalar_t, kBytes>::vec;
  constexpr int kLanes = Simd<scalar_t, kBytes>::lanes;
  typedef int32_t IV __attribute__((vector_size(kLanes * 4)));
  typedef int32_t unaligned_iv __attribute__((vector_size(kLanes * 4), aligned(4), may_alias));
  static_assert(kLanes <= Columns<scalar_t>::kPad);
  const auto iload = [](const int32_t* p) { return IV(*reinterpret_cast<const unaligned_iv*>(p)); };
  const auto istore = [](int32_t* p, const IV& x) { *reinterpret_cast<unaligned_iv*>(p) = x; };
  for (int64_t j = begin; j < end; j += kLanes) {
    const scalar_t* pairs = loc + 2 * j;
    if (j + kLanes > end) {  // do not read past the row (or the tensor)
      std::fill(out.loc_tail.begin(), out.loc_tail.end(), scalar_t(0));
      std::copy(pairs, pairs + 2 * (end - j), out.loc_tail.begin());
      pairs = out.loc_tail.data();
    }
    V first, second, height, width;
    load<scalar_t, kBytes>(first, pairs);
    load<scalar_t, kBytes>(second, pairs + kLanes);
    load<scalar_t, kBytes>(height, cols.height.data() + j);
    load<scalar_t, kBytes>(width, cols.width.data() + j);
    const V x = even_lanes(first, second, std::make_index_sequence<kLanes>{});
    const V y = odd_lanes(first, second, std::make_index_sequence<kLanes>{});
    const V h_raw = y * height - scalar_t(0.5);
    const V w_raw = x * width - scalar_t(0.5);
    // h == -1 is kept: its value is zero but its gradient along h is not (as in grid_sample).
    const auto inside = (h_raw >= scalar_t(-1)) & (w_raw >= scalar_t(-1)) & (h_raw < height) & (w_raw < width);
    const V h = inside ? h_raw : V{};
    const V w = inside ? w_raw : V{};
    // floor: truncate (exact for |h| < 2^31), then step down where that rounded a negative h up
    const IV h_trunc = __builtin_convertvector(h, IV), w_trunc = __builtin_convertvector(w, IV);
    const V h_truncf = __builtin_convertvector(h_trunc, V), w_truncf = __builtin_convertvector(w_trunc, V);
    const auto h_up = h_truncf > h, w_up = w_truncf > w;
    const V hf = h_up ? h_truncf - scalar_t(1) : h_truncf;
    const V wf = w_up ? w_truncf - scalar_t(1) : w_truncf;
    const IV h0 = h_trunc + __builtin_convertvector(h_up, IV);  // the masks are -1 where true
    const IV w0 = w_trunc + __builtin_convertvector(w_up, IV);
    const IV height_px = iload(cols.height_px.data() + j), width_px = iload(cols.width_px.data() + j);
    const IV top = h0 >= 0, bottom = h0 + 1 <= height_px - 1, left = w0 >= 0, right = w0 + 1 <= width_px - 1;
    const IV corners = (top & left & 1) | ((top & right & 1) << 1) | ((bottom & left & 1) << 2) |
                       ((bottom & right & 1) << 3);
    istore(out.mask.data() + j, corners & __builtin_convertvector(inside, IV));
    istore(out.index.data() + j, h0 * width_px + w0);
    const V lh = h - hf, lw = w - wf, hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
    store<scalar_t, kBytes>(out.lh.data() + j, lh);
    store<scalar_t, kBytes>(out.lw.data() + j, lw);
    store<scalar_t, kBytes>(out.weight[0].data() + j, hh * hw);
    store<scalar_t, kBytes>(out.weight[1].data() + j, hh * lw);
    store<scalar_t, kBytes>(out.weight[2].data() + j, lh * hw);
    store<scalar_t, kBytes>(out.weight[3].data() + j, lh * lw);
  }
#else
  for (int64_t j = begin; j < end; ++j) {
    Corners<scalar_t> c;
    const bool inside = bilinear_corners<scalar_t>(loc[2 * j], loc[2 * j + 1], cols.height_px[j], cols.width_px[j], c);
    out.mask[j] = inside ? c.valid[0] | c.valid[1] << 1 | c.valid[2] << 2 | c.valid[3] << 3 : 0;
    out.index[j] = inside ? static_cast<int32_t>(c.index[0]) : 0;
    out.lh[j] = inside ? c.lh : scalar_t(0);
    out.lw[j] = inside ? c.lw : scalar_t(0);
    for (int i = 0; i < 4; ++i) out.weight[i][j] = inside ? c.weight[i] : scalar_t(0);
  }
#endif
}

// Element offsets, inside one batch element of value (or grad_value), of the four corner rows
// (h0,w0), (h0,w0+1), (h0+1,w0), (h0+1,w0+1) of the sample in column j.
template <typename scalar_t>
PROLAB_INLINE void corner_rows(const Columns<scalar_t>& cols, const Samples<scalar_t>& t, int64_t j,
                               int64_t pixel_stride, int64_t (&rows)[4]) {
  rows[0] = cols.offset[j] + t.index[j] * pixel_stride;
  rows[1] = rows[0] + pixel_stride;
  rows[2] = rows[0] + cols.width_px[j] * pixel_stride;
  rows[3] = rows[2] + pixel_stride;
}

// How many samples ahead the corner rows are requested: one head's L x P samples in ViT-Adapter.
constexpr int64_t kPrefetchAhead = 12;

// Requests the corner rows of the sample in column j (of value, and of grad_value when given)
// before they are used: they are scattered, so the hardware prefetchers cannot guess them.
template <typename scalar_t>
PROLAB_INLINE void prefetch_corners(const Columns<scalar_t>& cols, const Samples<scalar_t>& t, int64_t j,
                                    int64_t pixel_stride, int64_t D, const scalar_t* value_n,
                                    const scalar_t* grad_value_n) {
#if defined(__GNUC__)
  const int32_t mask = t.mask[j];
  if (!mask) return;
  int64_t rows[4];
  corner_rows(cols, t, j, pixel_stride, rows);
  const int64_t bytes = D * static_cast<int64_t>(sizeof(scalar_t));
  for (int i = 0; i < 4; ++i) {
    if (!(mask >> i & 1)) continue;
    const char* v = reinterpret_cast<const char*>(value_n + rows[i]);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(v + b, 0, 3);
    if (grad_value_n == nullptr) continue;
    const char* gv = reinterpret_cast<const char*>(grad_value_n + rows[i]);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(gv + b, 1, 3);
  }
#endif
}

// One sample's share of the backward: adds cw[i] * grad_out (g) to the grad_value row of each
// corner i in `mask` (rows[i] elements into value_n / grad_value_n) and returns <grad_out, value row>
// per corner in `dot` (0 outside). The vector path keeps the dots lane-wise until all four corners
// are done: no horizontal sum per corner.
template <typename scalar_t, int kD, int kBytes, bool kSimd = simd_channels<scalar_t, kBytes>(kD)>
PROLAB_INLINE void scatter_and_dot(const scalar_t* value_n, scalar_t* grad_value_n, const int64_t (&rows)[4],
                                   int32_t mask, const scalar_t (&cw)[4], int64_t D, const scalar_t* __restrict__ g,
                                   const typename Simd<scalar_t, kBytes>::vec (&grad)[kSimd ? kD / Simd<scalar_t, kBytes>::lanes : 1],
                                   scalar_t (&dot)[4]) {
#if PROLAB_VECTOR_EXTENSIONS
  if constexpr (kSimd) {
    using vec = typename Simd<scalar_t, kBytes>::vec;
    constexpr int kLanes = Simd<scalar_t, kBytes>::lanes;
    vec e[4] = {};
    for (int i = 0; i < 4; ++i) {
      if (!(mask >> i & 1)) continue;
      const scalar_t* __restrict__ v = value_n + rows[i];
      scalar_t* __restrict__ gv = grad_value_n + rows[i];
      const vec cw_i = vec{} + cw[i];
      for (int k = 0; k < kD / kLanes; ++k) {
        vec value_k, grad_value_k;
        load<scalar_t, kBytes>(value_k, v + k * kLanes);
        load<scalar_t, kBytes>(grad_value_k, gv + k * kLanes);
        e[i] += grad[k] * value_k;
        grad_value_k += cw_i * grad[k];
        store<scalar_t, kBytes>(gv + k * kLanes, grad_value_k);
      }
    }
    lane_sums<scalar_t, kBytes>(e, dot);
    return;
  }
#endif
  for (int i = 0; i < 4; ++i) {
    dot[i] = 0;
    if (!(mask >> i & 1)) continue;
    const scalar_t* __restrict__ v = value_n + rows[i];
    scalar_t* __restrict__ gv = grad_value_n + rows[i];
    const scalar_t cw_i = cw[i];
    scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t d = 0; d < D; ++d) {
      sum += g[d] * v[d];
      gv[d] += cw_i * g[d];
    }
    dot[i] = sum;
  }
}

// Rows [begin, end) of (batch, query); kD > 0 is the channel count known at compile time, kD == 0
// handles any D. The vector path keeps an output row's sums in vector registers.
template <typename scalar_t, int kD, int kBytes>
PROLAB_INLINE void forward_rows(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  constexpr bool kSimd = simd_channels<scalar_t, kBytes>(kD);
  using Vec = Simd<scalar_t, kBytes>;
  const int64_t D = kD > 0 ? kD : a.D;
  const int64_t M = a.M, LP = a.L * a.P;
  const int64_t pixel_stride = M * D;
  const Columns<scalar_t>& cols = *a.columns;
  Samples<scalar_t> t(M * LP + Columns<scalar_t>::kPad);
  for (int64_t nq = begin; nq < end; ++nq) {
    const scalar_t* value_n = a.value + nq / a.Q * a.S * pixel_stride;
    const scalar_t* attn = a.attn + nq * M * LP;
    locate_samples<scalar_t>(cols, a.loc + nq * M * LP * 2, 0, M * LP, t);
    for (int64_t m = 0; m < M; ++m) {
      scalar_t* __restrict__ dst = a.out + (nq * M + m) * D;
      typename Vec::vec acc[kSimd ? kD / Vec::lanes : 1] = {};  // the vector path's sums, in registers
      if constexpr (!kSimd) std::fill(dst, dst + D, scalar_t(0));
      for (int64_t j = m * LP; j < (m + 1) * LP; ++j) {
        if (j + kPrefetchAhead < M * LP) {
          prefetch_corners<scalar_t>(cols, t, j + kPrefetchAhead, pixel_stride, D, value_n, nullptr);
        }
        const int32_t mask = t.mask[j];
        if (!mask) continue;
        int64_t rows[4];
        corner_rows(cols, t, j, pixel_stride, rows);
        const scalar_t w = attn[j];
        for (int i = 0; i < 4; ++i) {
          if (!(mask >> i & 1)) continue;
          const scalar_t* __restrict__ v = value_n + rows[i];
          const scalar_t cw = w * t.weight[i][j];
#if PROLAB_VECTOR_EXTENSIONS
          if constexpr (kSimd) {
            for (int k = 0; k < kD / Vec::lanes; ++k) {
              typename Vec::vec value_k;
              load<scalar_t, kBytes>(value_k, v + k * Vec::lanes);
              acc[k] += cw * value_k;
            }
            continue;
          }
#endif
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) dst[d] += cw * v[d];
        }
      }
#if PROLAB_VECTOR_EXTENSIONS
      if constexpr (kSimd) {
        for (int k = 0; k < kD / Vec::lanes; ++k) store<scalar_t, kBytes>(dst + k * Vec::lanes, acc[k]);
      }
#endif
    }
  }
}

// Tasks [begin, end) of (batch, group of heads): all three gradients in one sweep, so each
// sample's corners are found once and its corner rows of value and grad_value are visited
// together. A task owns its heads' slices of grad_value (no atomics) and takes its queries in
// order, all heads of a query together: a pixel's rows for all heads are contiguous, and the
// heads' scatters are independent chains of read-modify-writes. Each element of grad_value
// belongs to one head and one level, so it sums its terms in (query, point) order however the
// heads are grouped: results do not depend on the grouping or the thread count.
template <typename scalar_t, int kD, int kBytes>
PROLAB_INLINE void backward_tasks(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  constexpr bool kSimd = simd_channels<scalar_t, kBytes>(kD);
  using Vec = Simd<scalar_t, kBytes>;
  const int64_t D = kD > 0 ? kD : a.D;
  const int64_t M = a.M, LP = a.L * a.P, Q = a.Q;
  const int64_t pixel_stride = M * D;
  const Columns<scalar_t>& cols = *a.columns;
  Samples<scalar_t> t(M * LP + Columns<scalar_t>::kPad);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t n = task / a.groups, group = task % a.groups;
    const int64_t m_begin = group * M / a.groups, m_end = (group + 1) * M / a.groups;
    const scalar_t* value_n = a.value + n * a.S * pixel_stride;
    scalar_t* grad_value_n = a.grad_value + n * a.S * pixel_stride;
    for (int64_t s = 0; s < a.S; ++s) {
      scalar_t* pixel = grad_value_n + s * pixel_stride;
      std::fill(pixel + m_begin * D, pixel + m_end * D, scalar_t(0));
    }
    for (int64_t q = 0; q < Q; ++q) {
      const int64_t nq = n * Q + q;
      locate_samples<scalar_t>(cols, a.loc + nq * M * LP * 2, m_begin * LP, m_end * LP, t);
      for (int64_t m = m_begin; m < m_end; ++m) {
        const scalar_t* __restrict__ g = a.grad_out + (nq * M + m) * D;
        typename Vec::vec grad_vec[kSimd ? kD / Vec::lanes : 1];
        if constexpr (kSimd) {
          for (int k = 0; k < kD / Vec::lanes; ++k) load<scalar_t, kBytes>(grad_vec[k], g + k * Vec::lanes);
        }
        for (int64_t j = m * LP; j < (m + 1) * LP; ++j) {
          if (j + kPrefetchAhead < m_end * LP) {
            prefetch_corners<scalar_t>(cols, t, j + kPrefetchAhead, pixel_stride, D, value_n, grad_value_n);
          }
          const int64_t sample = nq * M * LP + j;
          const int32_t mask = t.mask[j];
          if (!mask) {
            a.grad_attn[sample] = 0;
            a.grad_loc[2 * sample] = 0;
            a.grad_loc[2 * sample + 1] = 0;
            continue;
          }
          int64_t rows[4];
          corner_rows(cols, t, j, pixel_stride, rows);
          const scalar_t w = a.attn[sample];
          const scalar_t weight[4] = {t.weight[0][j], t.weight[1][j], t.weight[2][j], t.weight[3][j]};
          const scalar_t cw[4] = {w * weight[0], w * weight[1], w * weight[2], w * weight[3]};
          scalar_t dot[4];  // <grad_out, value at corner i>
          scatter_and_dot<scalar_t, kD, kBytes>(value_n, grad_value_n, rows, mask, cw, D, g, grad_vec, dot);
          const scalar_t lh = t.lh[j], lw = t.lw[j], hh = scalar_t(1) - lh, hw = scalar_t(1) - lw;
          a.grad_attn[sample] = weight[0] * dot[0] + weight[1] * dot[1] + weight[2] * dot[2] + weight[3] * dot[3];
          const scalar_t gh = w * (hw * (dot[2] - dot[0]) + lw * (dot[3] - dot[1]));
          const scalar_t gw = w * (hh * (dot[1] - dot[0]) + lh * (dot[3] - dot[2]));
          a.grad_loc[2 * sample] = gw * cols.width[j];
          a.grad_loc[2 * sample + 1] = gh * cols.height[j];
        }
      }
    }
  }
}

enum class Pass { kForward, kBackward };

template <typename scalar_t, int kD, Pass kPass, int kBytes>
PROLAB_INLINE void run_pass(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  if constexpr (kPass == Pass::kForward) {
    forward_rows<scalar_t, kD, kBytes>(a, begin, end);
  } else {
    backward_tasks<scalar_t, kD, kBytes>(a, begin, end);
  }
}

// Each pass is compiled once per instruction set: the baseline and, on x86-64, AVX2+FMA and
// AVX-512 (the extension is built without -march so that one build works on any x86-64 CPU).
// The best one the CPU has runs, unless PROLAB_MSDA_CPU_ISA names a lower one (the tests use it
// to cover every path).
enum class Isa { kBase, kAvx2, kAvx512 };
constexpr const char* kIsaNames[] = {"base", "avx2", "avx512"};
// what cpu_isa() adds when the vector code is compiled out (slower; see PROLAB_VECTOR_EXTENSIONS)
constexpr const char* kPortableSuffix = "(portable build: no vector code)";

template <typename scalar_t, int kD, Pass kPass>
void run_base(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  run_pass<scalar_t, kD, kPass, 32>(a, begin, end);
}
#if defined(__GNUC__) && defined(__x86_64__)
#define PROLAB_HAVE_X86_ISAS 1
template <typename scalar_t, int kD, Pass kPass>
__attribute__((target("avx2,fma"))) void run_avx2(const Args<scalar_t>& a, int64_t begin, int64_t end) {
  run_pass<scalar_t, kD, kPass, 32>(a, begin, end);
}
template <typename scalar_t, int kD, Pass kPass>
__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))) void run_avx512(const Args<scalar_t>& a, int64_t begin,
                                                                              int64_t end) {
  run_pass<scalar_t, kD, kPass, 64>(a, begin, end);
}
#else
#define PROLAB_HAVE_X86_ISAS 0
#endif

Isa best_isa() {
#if PROLAB_HAVE_X86_ISAS
  static const Isa best = [] {
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq")) {
      return Isa::kAvx512;
    }
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? Isa::kAvx2 : Isa::kBase;
  }();
  return best;
#else
  return Isa::kBase;
#endif
}

Isa chosen_isa() {
  const Isa best = best_isa();
  const char* requested = std::getenv("PROLAB_MSDA_CPU_ISA");
  if (requested == nullptr || *requested == '\0') return best;
  const std::string name(requested);
  for (const Isa isa : {Isa::kBase, Isa::kAvx2, Isa::kAvx512}) {
    if (name != kIsaNames[static_cast<int>(isa)]) continue;
    TORCH_CHECK(isa <= best, "PROLAB_MSDA_CPU_ISA=", name, ": this CPU or build has at most ",
                kIsaNames[static_cast<int>(best)]);
    return isa;
  }
  TORCH_CHECK(false, "PROLAB_MSDA_CPU_ISA=", name, ": choose base, avx2 or avx512");
}

template <typename scalar_t>
using Worker = void (*)(const Args<scalar_t>&, int64_t, int64_t);

template <typename scalar_t, int kD, Pass kPass>
Worker<scalar_t> pick() {
#if PROLAB_HAVE_X86_ISAS
  switch (chosen_isa()) {
    case Isa::kAvx512: return run_avx512<scalar_t, kD, kPass>;
    case Isa::kAvx2: return run_avx2<scalar_t, kD, kPass>;
    case Isa::kBase: break;
  }
#endif
  return run_base<scalar_t, kD, kPass>;
}

// ViT-Adapter's heads have D = 32 (B and L) or 16/64 (other widths); others take the generic path.
template <typename scalar_t, Pass kPass>
Worker<scalar_t> worker(int64_t D) {
  switch (D) {
    case 16: return pick<scalar_t, 16, kPass>();
    case 32: return pick<scalar_t, 32, kPass>();
    case 64: return pick<scalar_t, 64, kPass>();
    default: return pick<scalar_t, 0, kPass>();
  }
}

int64_t row_grain(int64_t work_per_row) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, work_per_row));
}

template <typename scalar_t>
void forward_kernel(const Args<scalar_t>& a) {
  const auto fn = worker<scalar_t, Pass::kForward>(a.D);
  at::parallel_for(0, a.N * a.Q, row_grain(a.M * a.L * a.P * a.D),
                   [&](int64_t begin, int64_t end) { fn(a, begin, end); });
}

template <typename scalar_t>
void backward_kernel(Args<scalar_t>& a) {
  // one task per batch element unless that leaves threads idle; then the heads are split too
  const int64_t threads = at::get_num_threads(), N = std::max<int64_t>(a.N, 1);
  a.groups = std::clamp<int64_t>((threads + N - 1) / N, 1, std::max<int64_t>(a.M, 1));
  const auto fn = worker<scalar_t, Pass::kBackward>(a.D);
  at::parallel_for(0, a.N * a.groups, 1, [&](int64_t begin, int64_t end) { fn(a, begin, end); });
}

bool reduced_precision(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
}

}  // namespace

std::string cpu_isa() {
  const std::string name = kIsaNames[static_cast<int>(chosen_isa())];
  return PROLAB_VECTOR_EXTENSIONS ? name : name + " " + kPortableSuffix;
}

at::Tensor forward_cpu(const at::Tensor& value_in, const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                       const at::Tensor& attention_weights) {
  int64_t N, S, M, D, Q, L, P;  // not a structured binding: Clang < 16 cannot capture one in a lambda
  std::tie(N, S, M, D, Q, L, P) =
      check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  std::vector<int64_t> hw, starts;
  read_levels(spatial_shapes, level_start_index, S, hw, starts);
  // float16/bfloat16 are computed in float32
  const auto value = (reduced_precision(value_in) ? value_in.to(at::kFloat) : value_in).contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto out = at::empty({N, Q, M * D}, value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
    const Columns<scalar_t> columns(hw, starts, M, D, P);
    Args<scalar_t> a{value.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(), nullptr,
                     out.data_ptr<scalar_t>(), nullptr, nullptr, nullptr, N, S, M, D, Q, L, P, &columns};
    forward_kernel<scalar_t>(a);
  });
  return out.to(value_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output_in, const at::Tensor& value_in, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  int64_t N, S, M, D, Q, L, P;
  std::tie(N, S, M, D, Q, L, P) =
      check_inputs(value_in, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output_in.sizes() == at::IntArrayRef({N, Q, M * D}),
              "ms_deform_attn_backward: grad_output must be [N,Q,M*D], got ", grad_output_in.sizes());
  std::vector<int64_t> hw, starts;
  read_levels(spatial_shapes, level_start_index, S, hw, starts);
  const auto compute = value_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto value = value_in.to(compute).contiguous();
  const auto grad_output = grad_output_in.to(compute).contiguous();
  const auto loc = sampling_locations.contiguous();
  const auto attn = attention_weights.contiguous();
  auto grad_value = at::empty(value.sizes(), value.options());  // zeroed by the backward tasks
  auto grad_loc = at::empty(loc.sizes(), loc.options());
  auto grad_attn = at::empty(attn.sizes(), attn.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_backward_cpu", [&] {
    const Columns<scalar_t> columns(hw, starts, M, D, P);
    Args<scalar_t> a{value.data_ptr<scalar_t>(), loc.data_ptr<scalar_t>(), attn.data_ptr<scalar_t>(),
                     grad_output.data_ptr<scalar_t>(), nullptr, grad_value.data_ptr<scalar_t>(),
                     grad_loc.data_ptr<scalar_t>(), grad_attn.data_ptr<scalar_t>(), N, S, M, D, Q, L, P, &columns};
    backward_kernel<scalar_t>(a);
  });
  return {grad_value.to(value_in.scalar_type()), grad_loc, grad_attn};
}

}  // namespace prolab::msda

TORCH_LIBRARY_IMPL(prolab, CPU, m) {
  m.impl("ms_deform_attn", &prolab::msda::forward_cpu);
  m.impl("ms_deform_attn_backward", &prolab::msda::backward_cpu);
}
