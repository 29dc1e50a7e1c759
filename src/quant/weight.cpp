#include "quant/weight.h"

#include <cstring>
#include <string>

#include "core/error.h"
#include "quant/half.h"

namespace pricer {

namespace {

std::string shape_str(int64_t rows, int64_t cols) {
  std::string s = "[";
  s += std::to_string(rows);
  s += ", ";
  s += std::to_string(cols);
  s += "]";
  return s;
}

void check_shape(int64_t rows, int64_t cols, const char* what) {
  // Bounded so rows * cols and its byte sizes cannot overflow.
  require(rows >= 0 && cols >= 0 && (rows == 0 || cols <= (int64_t{1} << 40) / rows),
          std::string(what) + ": invalid weight shape " + shape_str(rows, cols));
}

}  // namespace

Weight Weight::from_f32(const float* data, int64_t rows, int64_t cols, DType target) {
  check_shape(rows, cols, "Weight::from_f32");
  Weight w;
  w.dtype_ = target;
  w.rows_ = rows;
  w.cols_ = cols;
  const int64_t n = rows * cols;
  switch (target) {
    case DType::F32:
      w.f32_.assign(data, data + n);
      return w;
    case DType::BF16:
    case DType::F16: {
      w.raw_.resize(static_cast<size_t>(n) * 2);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = target == DType::BF16 ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
        std::memcpy(w.raw_.data() + 2 * i, &h, 2);
      }
      return w;
    }
    case DType::NF4:
      w.nf4_ = nf4_quantize(data, n);
      return w;
    default:
      break;
  }
  throw Error("Weight::from_f32: cannot quantize to " + std::string(dtype_name(target)));
}

Weight Weight::from_raw(DType type, int64_t rows, int64_t cols, std::vector<uint8_t> raw) {
  check_shape(rows, cols, "Weight::from_raw");
  require(type == DType::F16 || type == DType::BF16,
          "Weight::from_raw: " + std::string(dtype_name(type)) + " is not a raw storage format");
  const size_t expect = static_cast<size_t>(rows * cols) * 2;
  require(raw.size() == expect, "Weight::from_raw: " + std::string(dtype_name(type)) + " weight " +
                                    shape_str(rows, cols) + " needs " + std::to_string(expect) +
                                    " bytes, got " + std::to_string(raw.size()));
  Weight w;
  w.dtype_ = type;
  w.rows_ = rows;
  w.cols_ = cols;
  w.raw_ = std::move(raw);
  return w;
}

size_t Weight::bytes() const {
  switch (dtype_) {
    case DType::F32: return f32_.size() * sizeof(float);
    case DType::NF4: return nf4_.bytes();
    default: return raw_.size();
  }
}

void Weight::dequantize_rows(int64_t r0, int64_t nr, float* out) const {
  require(r0 >= 0 && nr >= 0 && r0 <= rows_ && nr <= rows_ - r0,
          "Weight::dequantize_rows: rows [" + std::to_string(r0) + ", +" + std::to_string(nr) +
              ") outside weight " + shape_str(rows_, cols_));
  const int64_t first = r0 * cols_, n = nr * cols_;
  switch (dtype_) {
    case DType::F32:
      std::memcpy(out, f32_.data() + first, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::BF16:
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, raw_.data() + 2 * (first + i), 2);
        out[i] = dtype_ == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      }
      return;
    case DType::NF4:
      nf4_dequantize(nf4_, first, n, out);
      return;
    default:
      break;
  }
  throw Error("Weight::dequantize_rows: unsupported dtype " + std::string(dtype_name(dtype_)));
}

std::vector<float> Weight::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  dequantize_rows(0, rows_, out.data());
  return out;
}

}  // namespace pricer
