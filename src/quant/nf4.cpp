#include "quant/nf4.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "core/threads.h"

namespace pricer {

namespace {

// Midpoints between adjacent NF4 code values: x goes to the number of midpoints it exceeds
// (strictly), which is bitsandbytes' decision tree written as a count. A value exactly on a
// midpoint takes the lower code; NaN (an all-zero block scaled by 1/0) takes code 0.
struct Nf4Thresholds {
  std::array<float, 15> t{};
  Nf4Thresholds() {
    const auto& c = nf4_code();
    // bitsandbytes lists these as the double-precision midpoints of the float codes, rounded
    // once to float.
    for (int k = 0; k < 15; ++k)
      t[k] = static_cast<float>((static_cast<double>(c[k]) + static_cast<double>(c[k + 1])) * 0.5);
  }
};

const std::array<float, 15>& nf4_thresholds() {
  static const Nf4Thresholds th;
  return th.t;
}

inline uint8_t nf4_index(float x, const std::array<float, 15>& t) {
  int q = 0;
  for (int k = 0; k < 15; ++k) q += x > t[k] ? 1 : 0;
  return static_cast<uint8_t>(q);
}

// bitsandbytes' 8-bit code selection (dQuantize without stochastic rounding): a 7-step binary
// search over the sorted 256-entry map, then the closer of the two bracketing values by their
// float midpoint. The tie rules of that search are kept exactly.
uint8_t dynamic_index(const std::array<float, 256>& code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return static_cast<uint8_t>(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return static_cast<uint8_t>(x < midpoint ? lower_pivot : pivot);
}

void check_tensor(const Nf4Tensor& t) {
  const int64_t blocks = (t.numel + kNf4BlockSize - 1) / kNf4BlockSize;
  const int64_t groups = (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize;
  require(t.numel >= 0 && t.packed.size() == static_cast<size_t>((t.numel + 1) / 2) &&
              t.absmax_codes.size() == static_cast<size_t>(blocks) &&
              t.absmax_scales.size() == static_cast<size_t>(groups),
          "nf4 tensor: inconsistent sizes (numel " + std::to_string(t.numel) + ", packed " +
              std::to_string(t.packed.size()) + ", absmax codes " + std::to_string(t.absmax_codes.size()) +
              ", absmax scales " + std::to_string(t.absmax_scales.size()) + ")");
}

}  // namespace

const std::array<float, 16>& nf4_code() {
  // The normal-float table exactly as bitsandbytes lists it.
  static const std::array<float, 16> code = {
      -1.0f,
      -0.6961928009986877f,
      -0.5250730514526367f,
      -0.39491748809814453f,
      -0.28444138169288635f,
      -0.18477343022823334f,
      -0.09105003625154495f,
      0.0f,
      0.07958029955625534f,
      0.16093020141124725f,
      0.24611230194568634f,
      0.33791524171829224f,
      0.44070982933044434f,
      0.5626170039176941f,
      0.7229568362236023f,
      1.0f,
  };
  return code;
}

const std::array<float, 256>& dynamic_map_signed() {
  // bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each
  // decade 10^(i-6), i = 0..6, the 2^i means of adjacent points of linspace(0.1, 1, 2^i + 1), with
  // both signs; plus 0 and 1; sorted. The values are the ones torch produces for that recipe in
  // float32 (its linspace rounds some points differently from a plain start + k * step), written
  // out exactly so the 8-bit codes match bitsandbytes bit for bit.
  static const std::array<float, 256> map = {
      -0x1.fc6666p-1f,  -0x1.f53332p-1f,  -0x1.eep-1f,      -0x1.e6ccccp-1f,  -0x1.df9998p-1f,  -0x1.d86666p-1f,
      -0x1.d13334p-1f,  -0x1.cap-1f,      -0x1.c2ccccp-1f,  -0x1.bb9998p-1f,  -0x1.b46666p-1f,  -0x1.ad3332p-1f,
      -0x1.a6p-1f,      -0x1.9eccccp-1f,  -0x1.979998p-1f,  -0x1.906666p-1f,  -0x1.893334p-1f,  -0x1.82p-1f,
      -0x1.7acccep-1f,  -0x1.73999ap-1f,  -0x1.6c6668p-1f,  -0x1.653334p-1f,  -0x1.5ep-1f,      -0x1.56cccep-1f,
      -0x1.4f999ap-1f,  -0x1.486666p-1f,  -0x1.413334p-1f,  -0x1.3ap-1f,      -0x1.32ccccp-1f,  -0x1.2b999ap-1f,
      -0x1.246668p-1f,  -0x1.1d3334p-1f,  -0x1.16p-1f,      -0x1.0eccccp-1f,  -0x1.07999ap-1f,  -0x1.006666p-1f,
      -0x1.f26668p-2f,  -0x1.e4p-2f,      -0x1.d59998p-2f,  -0x1.c73334p-2f,  -0x1.b8ccccp-2f,  -0x1.aa6664p-2f,
      -0x1.9cp-2f,      -0x1.8d9998p-2f,  -0x1.7f3334p-2f,  -0x1.70ccccp-2f,  -0x1.626664p-2f,  -0x1.54p-2f,
      -0x1.459998p-2f,  -0x1.373334p-2f,  -0x1.28ccccp-2f,  -0x1.1a6668p-2f,  -0x1.0cp-2f,      -0x1.fb3334p-3f,
      -0x1.de6668p-3f,  -0x1.c1999ap-3f,  -0x1.a4ccccp-3f,  -0x1.88p-3f,      -0x1.6b3332p-3f,  -0x1.4e6666p-3f,
      -0x1.31999ap-3f,  -0x1.14ccccp-3f,  -0x1.fp-4f,       -0x1.b66668p-4f,  -0x1.93d70ap-4f,  -0x1.8851eap-4f,
      -0x1.7ccccep-4f,  -0x1.7147aep-4f,  -0x1.65c29p-4f,   -0x1.5a3d7p-4f,   -0x1.4eb85p-4f,   -0x1.433334p-4f,
      -0x1.37ae14p-4f,  -0x1.2c28f6p-4f,  -0x1.20a3d6p-4f,  -0x1.151ebap-4f,  -0x1.09999ap-4f,  -0x1.fc28f4p-5f,
      -0x1.e51ebap-5f,  -0x1.ce147ap-5f,  -0x1.b70a3ep-5f,  -0x1.ap-5f,       -0x1.88f5c2p-5f,  -0x1.71eb86p-5f,
      -0x1.5ae146p-5f,  -0x1.43d70ap-5f,  -0x1.2ccccep-5f,  -0x1.15c28ep-5f,  -0x1.fd70a4p-6f,  -0x1.cf5c26p-6f,
      -0x1.a147aep-6f,  -0x1.733334p-6f,  -0x1.451eb8p-6f,  -0x1.170a3ep-6f,  -0x1.d1eb86p-7f,  -0x1.75c29p-7f,
      -0x1.3e76c8p-7f,  -0x1.2c083p-7f,   -0x1.19999ap-7f,  -0x1.072b02p-7f,  -0x1.e978d4p-8f,  -0x1.c49ba6p-8f,
      -0x1.9fbe76p-8f,  -0x1.7ae148p-8f,  -0x1.56041ap-8f,  -0x1.3126e8p-8f,  -0x1.0c49bap-8f,  -0x1.ced914p-9f,
      -0x1.851eb8p-9f,  -0x1.3b645ap-9f,  -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, -0x1.eecbfep-11f, -0x1.b3d07cp-11f,
      -0x1.78d5p-11f,   -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
      -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f, -0x1.b43528p-19f,
      -0x1.27476ep-21f, 0x0p+0f,          0x1.27476ep-21f,  0x1.b43528p-19f,  0x1.040bfep-17f,  0x1.64840cp-16f,
      0x1.6f0068p-15f,  0x1.15df66p-14f,  0x1.743e96p-14f,  0x1.47ae16p-13f,  0x1.19ce0ap-12f,  0x1.8fc506p-12f,
      0x1.02de02p-11f,  0x1.3dd982p-11f,  0x1.78d5p-11f,    0x1.b3d07cp-11f,  0x1.eecbfep-11f,  0x1.4fdf3ap-10f,
      0x1.e353f8p-10f,  0x1.3b645ap-9f,   0x1.851eb8p-9f,   0x1.ced914p-9f,   0x1.0c49bap-8f,   0x1.3126e8p-8f,
      0x1.56041ap-8f,   0x1.7ae148p-8f,   0x1.9fbe76p-8f,   0x1.c49ba6p-8f,   0x1.e978d4p-8f,   0x1.072b02p-7f,
      0x1.19999ap-7f,   0x1.2c083p-7f,    0x1.3e76c8p-7f,   0x1.75c29p-7f,    0x1.d1eb86p-7f,   0x1.170a3ep-6f,
      0x1.451eb8p-6f,   0x1.733334p-6f,   0x1.a147aep-6f,   0x1.cf5c26p-6f,   0x1.fd70a4p-6f,   0x1.15c28ep-5f,
      0x1.2ccccep-5f,   0x1.43d70ap-5f,   0x1.5ae146p-5f,   0x1.71eb86p-5f,   0x1.88f5c2p-5f,   0x1.ap-5f,
      0x1.b70a3ep-5f,   0x1.ce147ap-5f,   0x1.e51ebap-5f,   0x1.fc28f4p-5f,   0x1.09999ap-4f,   0x1.151ebap-4f,
      0x1.20a3d6p-4f,   0x1.2c28f6p-4f,   0x1.37ae14p-4f,   0x1.433334p-4f,   0x1.4eb85p-4f,    0x1.5a3d7p-4f,
      0x1.65c29p-4f,    0x1.7147aep-4f,   0x1.7ccccep-4f,   0x1.8851eap-4f,   0x1.93d70ap-4f,   0x1.b66668p-4f,
      0x1.fp-4f,        0x1.14ccccp-3f,   0x1.31999ap-3f,   0x1.4e6666p-3f,   0x1.6b3332p-3f,   0x1.88p-3f,
      0x1.a4ccccp-3f,   0x1.c1999ap-3f,   0x1.de6668p-3f,   0x1.fb3334p-3f,   0x1.0cp-2f,       0x1.1a6668p-2f,
      0x1.28ccccp-2f,   0x1.373334p-2f,   0x1.459998p-2f,   0x1.54p-2f,       0x1.626664p-2f,   0x1.70ccccp-2f,
      0x1.7f3334p-2f,   0x1.8d9998p-2f,   0x1.9cp-2f,       0x1.aa6664p-2f,   0x1.b8ccccp-2f,   0x1.c73334p-2f,
      0x1.d59998p-2f,   0x1.e4p-2f,       0x1.f26668p-2f,   0x1.006666p-1f,   0x1.07999ap-1f,   0x1.0eccccp-1f,
      0x1.16p-1f,       0x1.1d3334p-1f,   0x1.246668p-1f,   0x1.2b999ap-1f,   0x1.32ccccp-1f,   0x1.3ap-1f,
      0x1.413334p-1f,   0x1.486666p-1f,   0x1.4f999ap-1f,   0x1.56cccep-1f,   0x1.5ep-1f,       0x1.653334p-1f,
      0x1.6c6668p-1f,   0x1.73999ap-1f,   0x1.7acccep-1f,   0x1.82p-1f,       0x1.893334p-1f,   0x1.906666p-1f,
      0x1.979998p-1f,   0x1.9eccccp-1f,   0x1.a6p-1f,       0x1.ad3332p-1f,   0x1.b46666p-1f,   0x1.bb9998p-1f,
      0x1.c2ccccp-1f,   0x1.cap-1f,       0x1.d13334p-1f,   0x1.d86666p-1f,   0x1.df9998p-1f,   0x1.e6ccccp-1f,
      0x1.eep-1f,       0x1.f53332p-1f,   0x1.fc6666p-1f,   0x1p+0f,
  };
  return map;
}

// map * scale + offset as two separately rounded float operations, as bitsandbytes computes
// them (dequantize_blockwise, then += offset). volatile keeps the compiler from fusing them into
// one FMA, which would round differently.
float nf4_absmax_of(uint8_t code, float scale, float offset) {
  volatile float scaled = dynamic_map_signed()[code] * scale;
  return scaled + offset;
}

float nf4_absmax(const Nf4Tensor& t, int64_t b) {
  return nf4_absmax_of(t.absmax_codes[b], t.absmax_scales[b / kNf4AbsmaxBlockSize], t.absmax_offset);
}

Nf4Tensor nf4_quantize(const float* x, int64_t n) {
  require(n >= 0, "nf4 quantize: negative element count " + std::to_string(n));
  Nf4Tensor t;
  t.numel = n;
  const int64_t blocks = (n + kNf4BlockSize - 1) / kNf4BlockSize;
  const int64_t groups = (blocks + kNf4AbsmaxBlockSize - 1) / kNf4AbsmaxBlockSize;
  t.packed.assign(static_cast<size_t>((n + 1) / 2), 0);
  t.absmax_codes.assign(static_cast<size_t>(blocks), 0);
  t.absmax_scales.assign(static_cast<size_t>(groups), 0.0f);
  if (n == 0) return t;

  // Finiteness first, so the parallel loop below cannot throw.
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) throw Error("nf4 quantize: element " + std::to_string(i) + " is not finite");

  const auto& th = nf4_thresholds();
  std::vector<float> absmax(static_cast<size_t>(blocks));
  const int64_t padded_end = (n + 1) & ~int64_t{1};
  // Blocks own disjoint bytes (64 elements = 32 bytes), so they quantize independently.
#pragma omp parallel for schedule(static) num_threads(threads())
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kNf4BlockSize, hi = std::min(n, lo + kNf4BlockSize);
    float amax = 0.0f;
    for (int64_t i = lo; i < hi; ++i) amax = std::max(amax, std::fabs(x[i]));
    absmax[b] = amax;
    const float rcp = 1.0f / amax;
    // A partial last block is padded with zeros: an odd count leaves the low nibble of the last
    // byte holding the code of 0.
    for (int64_t i = lo; i < std::min(lo + kNf4BlockSize, padded_end); ++i) {
      const float v = (i < hi ? x[i] : 0.0f) * rcp;
      const uint8_t q = nf4_index(v, th);
      t.packed[i / 2] |= (i % 2 == 0) ? static_cast<uint8_t>(q << 4) : q;
    }
  }

  // Double quantization of the absmax values.
  double sum = 0.0;
  for (float a : absmax) sum += a;
  t.absmax_offset = static_cast<float>(sum / static_cast<double>(blocks));
  const auto& map = dynamic_map_signed();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t lo = g * kNf4AbsmaxBlockSize, hi = std::min(blocks, lo + kNf4AbsmaxBlockSize);
    float amax = 0.0f;
    for (int64_t b = lo; b < hi; ++b) {
      absmax[b] -= t.absmax_offset;
      amax = std::max(amax, std::fabs(absmax[b]));
    }
    t.absmax_scales[g] = amax;
    const float rcp = 1.0f / amax;
    for (int64_t b = lo; b < hi; ++b) t.absmax_codes[b] = dynamic_index(map, absmax[b] * rcp);
  }
  return t;
}

std::vector<float> nf4_block_absmax(const Nf4Tensor& t) {
  check_tensor(t);
  std::vector<float> out(t.absmax_codes.size());
  for (size_t b = 0; b < out.size(); ++b) out[b] = nf4_absmax(t, static_cast<int64_t>(b));
  return out;
}

void nf4_dequantize_reference(const Nf4Tensor& t, int64_t first, int64_t count, float* out) {
  check_tensor(t);
  require(first >= 0 && count >= 0 && first <= t.numel && count <= t.numel - first,
          "nf4 dequantize: range [" + std::to_string(first) + ", +" + std::to_string(count) + ") outside tensor of " +
              std::to_string(t.numel) + " elements");
  const auto& code = nf4_code();
  int64_t cur_block = -1;
  float amax = 0.0f;
  for (int64_t i = first; i < first + count; ++i) {
    if (i / kNf4BlockSize != cur_block) {
      cur_block = i / kNf4BlockSize;
      amax = nf4_absmax(t, cur_block);
    }
    const uint8_t byte = t.packed[i / 2];
    const uint8_t q = (i % 2 == 0) ? byte >> 4 : byte & 0x0f;
    out[i - first] = code[q] * amax;
  }
}

void nf4_dequantize(const Nf4Tensor& t, int64_t first, int64_t count, float* out) {
  check_tensor(t);
  require(first >= 0 && count >= 0 && first <= t.numel && count <= t.numel - first,
          "nf4 dequantize: range [" + std::to_string(first) + ", +" + std::to_string(count) + ") outside tensor of " +
              std::to_string(t.numel) + " elements");
  const auto& code = nf4_code();
  const int64_t end = first + count;
  int64_t i = first;
  while (i < end) {
    const int64_t b = i / kNf4BlockSize;
    const int64_t block_end = std::min(end, (b + 1) * kNf4BlockSize);
    const float amax = nf4_absmax(t, b);
    if (i == b * kNf4BlockSize && block_end == i + kNf4BlockSize) {
      nf4_dequantize_block(t.packed.data() + i / 2, amax, out + (i - first));
      i += kNf4BlockSize;
      continue;
    }
    for (; i < block_end; ++i) {
      const uint8_t byte = t.packed[i / 2];
      out[i - first] = code[(i % 2 == 0) ? byte >> 4 : byte & 0x0f] * amax;
    }
  }
}

void nf4_dequantize_block(const uint8_t* packed, float amax, float* out) {
  // Scale the 16-entry table once, then look up 16 values per 8 packed bytes with two in-register
  // permutes (indices 0-7 and 8-15) selected by bit 3.
  const auto& code = nf4_code();
  const __m256 a = _mm256_set1_ps(amax);
  const __m256 tlo = _mm256_mul_ps(_mm256_loadu_ps(code.data()), a);
  const __m256 thi = _mm256_mul_ps(_mm256_loadu_ps(code.data() + 8), a);
  for (int64_t k = 0; k < kNf4BlockSize / 2; k += 8) {
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + k)));
    const __m256i qh = _mm256_srli_epi32(bytes, 4);
    const __m256i ql = _mm256_and_si256(bytes, _mm256_set1_epi32(0x0f));
    const __m256 vh = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, qh), _mm256_permutevar8x32_ps(thi, qh),
                                       _mm256_castsi256_ps(_mm256_slli_epi32(qh, 28)));
    const __m256 vl = _mm256_blendv_ps(_mm256_permutevar8x32_ps(tlo, ql), _mm256_permutevar8x32_ps(thi, ql),
                                       _mm256_castsi256_ps(_mm256_slli_epi32(ql, 28)));
    // Interleave: byte j gives elements 2j (high nibble) and 2j + 1 (low nibble).
    const __m256 u0 = _mm256_unpacklo_ps(vh, vl), u1 = _mm256_unpackhi_ps(vh, vl);
    _mm256_storeu_ps(out + 2 * k, _mm256_permute2f128_ps(u0, u1, 0x20));
    _mm256_storeu_ps(out + 2 * k + 8, _mm256_permute2f128_ps(u0, u1, 0x31));
  }
}

}  // namespace pricer
