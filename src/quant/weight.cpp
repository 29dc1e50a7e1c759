#include "quant/weight.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/error.h"
#include "quant/ggml_blocks.h"
#include "quant/nf4_panels.h"
#include "quant/q4_panels.h"

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

// Block formats quantize each row on its own, so a row must be whole blocks.
void check_cols(DType t, int64_t cols, const char* what) {
  const int64_t block = block_layout(t).elems;
  require(cols % block == 0, std::string(what) + ": " + std::string(dtype_name(t)) +
                                 " needs cols to be a multiple of " + std::to_string(block) + ", got " +
                                 std::to_string(cols));
}

bool is_raw(DType t) { return t != DType::F32 && t != DType::NF4; }

}  // namespace

Weight Weight::from_f32(const float* data, int64_t rows, int64_t cols, DType target) {
  check_shape(rows, cols, "Weight::from_f32");
  Weight w;
  w.dtype_ = target;
  w.rows_ = rows;
  w.cols_ = cols;
  const int64_t n = rows * cols;
  if (target == DType::F32) {
    w.f32_.assign(data, data + n);
  } else if (target == DType::NF4) {
    w.nf4_ = nf4_quantize(data, n);
    if (nf4_takes_panels(cols)) {
      w.raw_ = nf4_to_panels(w.nf4_, rows, cols);
      // Held in the panels from here on: the flat bytes are released (`= {}` would keep their capacity).
      w.nf4_.packed = std::vector<uint8_t>();
      w.nf4_.absmax_codes = std::vector<uint8_t>();
    }
  } else {
    check_cols(target, cols, "Weight::from_f32");
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(data[i])) throw Error("Weight::from_f32: element " + std::to_string(i) + " is not finite");
    w.raw_.resize(raw_bytes(target, n));
    quantize_raw(target, data, w.raw_.data(), n);
    if (target == DType::Q4_0) w.raw_ = q4_0_to_panels(w.raw_.data(), rows, cols);
  }
  return w;
}

Weight Weight::from_raw(DType type, int64_t rows, int64_t cols, std::vector<uint8_t> raw) {
  check_shape(rows, cols, "Weight::from_raw");
  require(type != DType::NF4, "Weight::from_raw: nf4 is not a raw storage format");
  const int64_t n = rows * cols;
  Weight w;
  w.dtype_ = type;
  w.rows_ = rows;
  w.cols_ = cols;
  if (type == DType::F32) {
    require(raw.size() == static_cast<size_t>(n) * 4, "Weight::from_raw: f32 weight " + shape_str(rows, cols) +
                                                          " needs " + std::to_string(n * 4) + " bytes, got " +
                                                          std::to_string(raw.size()));
    w.f32_.resize(static_cast<size_t>(n));
    std::memcpy(w.f32_.data(), raw.data(), raw.size());
    return w;
  }
  check_cols(type, cols, "Weight::from_raw");
  const size_t expect = raw_bytes(type, n);
  require(raw.size() == expect, "Weight::from_raw: " + std::string(dtype_name(type)) + " weight " +
                                    shape_str(rows, cols) + " needs " + std::to_string(expect) + " bytes, got " +
                                    std::to_string(raw.size()));
  check_raw_scales(type, raw.data(), n, "Weight::from_raw");
  w.raw_ = type == DType::Q4_0 ? q4_0_to_panels(raw.data(), rows, cols) : std::move(raw);
  return w;
}

size_t Weight::bytes() const {
  switch (dtype_) {
    case DType::F32: return f32_.size() * sizeof(float);
    case DType::NF4: return nf4_.bytes() + raw_.size();
    default: return raw_.size();
  }
}

void Weight::dequantize_rows(int64_t r0, int64_t nr, float* out) const {
  require(r0 >= 0 && nr >= 0 && r0 <= rows_ && nr <= rows_ - r0, "Weight::dequantize_rows: rows [" +
                                                                     std::to_string(r0) + ", +" + std::to_string(nr) +
                                                                     ") outside weight " + shape_str(rows_, cols_));
  if (dtype_ == DType::F32) {
    std::memcpy(out, f32_.data() + r0 * cols_, static_cast<size_t>(nr * cols_) * sizeof(float));
  } else if (dtype_ == DType::NF4 && !raw_.empty()) {
    nf4_panels_dequantize(raw_.data(), nf4_, cols_, r0, nr, out);
  } else if (dtype_ == DType::NF4) {
    nf4_dequantize(nf4_, r0 * cols_, nr * cols_, out);
  } else if (dtype_ == DType::Q4_0) {
    q4_panels_dequantize(raw_.data(), cols_, r0, nr, out);
  } else if (is_raw(dtype_)) {
    const size_t row = raw_bytes(dtype_, cols_);
    dequantize_raw(dtype_, raw_.data() + static_cast<size_t>(r0) * row, out, nr * cols_);
  }
}

Nf4Tensor Weight::nf4_flat() const {
  require(dtype_ == DType::NF4, "Weight::nf4_flat: " + std::string(dtype_name(dtype_)) + " weights are not NF4");
  return raw_.empty() ? nf4_ : nf4_from_panels(raw_.data(), rows_, cols_, nf4_);
}

std::vector<uint8_t> Weight::file_bytes() const {
  require(dtype_ != DType::F32 && dtype_ != DType::NF4,
          "Weight::file_bytes: " + std::string(dtype_name(dtype_)) + " weights are not held as raw bytes");
  return dtype_ == DType::Q4_0 ? q4_0_from_panels(raw_.data(), rows_, cols_) : raw_;
}

std::vector<float> Weight::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  dequantize_rows(0, rows_, out.data());
  return out;
}

}  // namespace pricer
