#include "io/gguf.h"

#include <algorithm>
#include <limits>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/bytes.h"

namespace pricer {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr size_t kMaxTensorName = 64;  // the specification's limit on tensor names

struct TypeInfo {
  uint32_t id;
  const char* name;
  int64_t elems;
  int64_t bytes;
};
// ggml's type table (block elements, block bytes), so a file with types pricer does not hold
// can still be inspected and its data ranges checked.
constexpr TypeInfo kTypes[] = {
    {0, "f32", 1, 4},         {1, "f16", 1, 2},         {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},      {8, "q8_0", 32, 34},      {9, "q8_1", 32, 36},
    {10, "q2_k", 256, 84},    {11, "q3_k", 256, 110},   {12, "q4_k", 256, 144},   {13, "q5_k", 256, 176},
    {14, "q6_k", 256, 210},   {15, "q8_k", 256, 292},   {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},   {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},        {27, "i64", 1, 8},        {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},
};

const TypeInfo* type_info(GgmlType t) {
  for (const auto& ti : kTypes) {
    if (ti.id == static_cast<uint32_t>(t)) return &ti;
  }
  return nullptr;
}

// Smallest encoded size of one metadata value of a type (to bound counts before allocating).
size_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool: return 1;
    case GgufType::U16:
    case GgufType::I16: return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32: return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
    case GgufType::String: return 8;
    case GgufType::Array: return 12;
  }
  return 1;
}

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::Bool: return true;
    default: return false;
  }
}

std::string read_string(ByteReader& r, const char* what) {
  const uint64_t len = r.read<uint64_t>();
  if (len > r.remaining()) {
    r.fail(std::string("truncated: ") + what + " of " + std::to_string(len) + " bytes but only " +
           std::to_string(r.remaining()) + " remain");
  }
  auto b = r.take(static_cast<size_t>(len), what);
  std::string s(reinterpret_cast<const char*>(b.data()), b.size());
  if (!valid_utf8(s)) r.fail(std::string(what) + " is not valid UTF-8");
  return s;
}

// Reads one scalar of type t and appends it to v.
void read_scalar(ByteReader& r, GgufType t, GgufValue& v) {
  switch (t) {
    case GgufType::U8: v.ints.push_back(r.read<uint8_t>()); break;
    case GgufType::I8: v.ints.push_back(r.read<int8_t>()); break;
    case GgufType::U16: v.ints.push_back(r.read<uint16_t>()); break;
    case GgufType::I16: v.ints.push_back(r.read<int16_t>()); break;
    case GgufType::U32: v.ints.push_back(r.read<uint32_t>()); break;
    case GgufType::I32: v.ints.push_back(r.read<int32_t>()); break;
    case GgufType::I64: v.ints.push_back(r.read<int64_t>()); break;
    case GgufType::U64: {
      const uint64_t x = r.read<uint64_t>();
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        r.fail("uint64 value " + std::to_string(x) + " is too large");
      }
      v.ints.push_back(static_cast<int64_t>(x));
      break;
    }
    case GgufType::Bool: {
      const uint8_t b = r.read<uint8_t>();
      if (b > 1) r.fail("bool value " + std::to_string(b) + " is neither 0 nor 1");
      v.ints.push_back(b);
      break;
    }
    case GgufType::F32: v.floats.push_back(r.read<float>()); break;
    case GgufType::F64: v.floats.push_back(r.read<double>()); break;
    case GgufType::String: v.strings.push_back(read_string(r, "string value")); break;
    case GgufType::Array: r.fail("arrays of arrays are not supported");
  }
}

GgufType read_type(ByteReader& r) {
  const uint32_t t = r.read<uint32_t>();
  if (t > static_cast<uint32_t>(GgufType::F64)) r.fail("unknown value type " + std::to_string(t));
  return static_cast<GgufType>(t);
}

void write_scalar(ByteWriter& w, GgufType t, const GgufValue& v, size_t i) {
  switch (t) {
    case GgufType::U8: w.put(static_cast<uint8_t>(v.ints[i])); break;
    case GgufType::I8: w.put(static_cast<int8_t>(v.ints[i])); break;
    case GgufType::U16: w.put(static_cast<uint16_t>(v.ints[i])); break;
    case GgufType::I16: w.put(static_cast<int16_t>(v.ints[i])); break;
    case GgufType::U32: w.put(static_cast<uint32_t>(v.ints[i])); break;
    case GgufType::I32: w.put(static_cast<int32_t>(v.ints[i])); break;
    case GgufType::U64: w.put(static_cast<uint64_t>(v.ints[i])); break;
    case GgufType::I64: w.put(static_cast<int64_t>(v.ints[i])); break;
    case GgufType::Bool: w.put(static_cast<uint8_t>(v.ints[i] != 0)); break;
    case GgufType::F32: w.put(static_cast<float>(v.floats[i])); break;
    case GgufType::F64: w.put(v.floats[i]); break;
    case GgufType::String:
      w.put(static_cast<uint64_t>(v.strings[i].size()));
      w.put_bytes(v.strings[i].data(), v.strings[i].size());
      break;
    case GgufType::Array: throw Error("GGUF writer: arrays of arrays are not supported");
  }
}

// Byte size of a tensor, or an Error message naming the problem.
uint64_t tensor_nbytes(const std::vector<int64_t>& ne, GgmlType type, std::string* problem) {
  int64_t be = 0, bb = 0;
  if (!ggml_block_size(type, &be, &bb)) {
    *problem = "unknown ggml type " + std::to_string(static_cast<uint32_t>(type));
    return 0;
  }
  if (ne.empty() || ne.size() > kMaxDims) {
    *problem = "has " + std::to_string(ne.size()) + " dimensions (1 to 4 supported)";
    return 0;
  }
  int64_t numel = 1;
  for (int64_t d : ne) {
    if (d <= 0) {
      *problem = "has a dimension of " + std::to_string(d);
      return 0;
    }
    if (__builtin_mul_overflow(numel, d, &numel)) {
      *problem = "has an absurd number of elements";
      return 0;
    }
  }
  if (ne[0] % be != 0) {
    *problem = "row length " + std::to_string(ne[0]) + " is not a multiple of the " + ggml_type_name(type) +
               " block size " + std::to_string(be);
    return 0;
  }
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel / be, bb, &nbytes)) {
    *problem = "has an absurd byte size";
    return 0;
  }
  return static_cast<uint64_t>(nbytes);
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view kNames[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
                                                "bool",  "string", "array",  "uint64", "int64",  "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool ggml_block_size(GgmlType t, int64_t* elems, int64_t* bytes) {
  const TypeInfo* ti = type_info(t);
  if (ti == nullptr) return false;
  *elems = ti->elems;
  *bytes = ti->bytes;
  return true;
}

std::string ggml_type_name(GgmlType t) {
  const TypeInfo* ti = type_info(t);
  return ti != nullptr ? ti->name : "type " + std::to_string(static_cast<uint32_t>(t));
}

std::optional<DType> ggml_to_dtype(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_K: return DType::Q4_K;
    case GgmlType::Q5_K: return DType::Q5_K;
    case GgmlType::Q6_K: return DType::Q6_K;
    case GgmlType::I32:
    case GgmlType::I64:
    case GgmlType::F64: break;  // not weights
  }
  return std::nullopt;
}

GgmlType dtype_to_ggml(DType t) {
  switch (t) {
    case DType::F32: return GgmlType::F32;
    case DType::F16: return GgmlType::F16;
    case DType::BF16: return GgmlType::BF16;
    case DType::Q8_0: return GgmlType::Q8_0;
    case DType::Q4_0: return GgmlType::Q4_0;
    case DType::Q4_K: return GgmlType::Q4_K;
    case DType::Q5_K: return GgmlType::Q5_K;
    case DType::Q6_K: return GgmlType::Q6_K;
    case DType::NF4: break;
  }
  throw Error("GGUF has no tensor type for " + std::string(dtype_name(t)));
}

// ---------------------------------------------------------------- values

size_t GgufValue::size() const {
  switch (elem) {
    case GgufType::F32:
    case GgufType::F64: return floats.size();
    case GgufType::String: return strings.size();
    default: return ints.size();
  }
}

GgufValue GgufValue::u32(uint32_t v) {
  GgufValue x;
  x.type = x.elem = GgufType::U32;
  x.ints = {v};
  return x;
}
GgufValue GgufValue::i32(int32_t v) {
  GgufValue x;
  x.type = x.elem = GgufType::I32;
  x.ints = {v};
  return x;
}
GgufValue GgufValue::u64(uint64_t v) {
  GgufValue x;
  x.type = x.elem = GgufType::U64;
  x.ints = {static_cast<int64_t>(v)};
  return x;
}
GgufValue GgufValue::f32(float v) {
  GgufValue x;
  x.type = x.elem = GgufType::F32;
  x.floats = {v};
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x;
  x.type = x.elem = GgufType::Bool;
  x.ints = {v ? 1 : 0};
  return x;
}
GgufValue GgufValue::string(std::string v) {
  GgufValue x;
  x.type = x.elem = GgufType::String;
  x.strings = {std::move(v)};
  return x;
}
GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::Array;
  x.elem = GgufType::String;
  x.strings = std::move(v);
  return x;
}
GgufValue GgufValue::f32_array(std::vector<float> v) {
  GgufValue x;
  x.type = GgufType::Array;
  x.elem = GgufType::F32;
  x.floats.assign(v.begin(), v.end());
  return x;
}
GgufValue GgufValue::i32_array(std::vector<int32_t> v) {
  GgufValue x;
  x.type = GgufType::Array;
  x.elem = GgufType::I32;
  x.ints.assign(v.begin(), v.end());
  return x;
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------- reader

GgufFile GgufFile::from(std::shared_ptr<const FileBytes> storage, const std::string& source) {
  GgufFile f;
  f.storage_ = std::move(storage);
  f.bytes_ = f.storage_->bytes();
  f.source_ = source;
  f.parse_bytes();
  return f;
}

GgufFile GgufFile::open(const std::string& path) { return from(FileBytes::map(path), path); }

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  return from(FileBytes::copy(bytes), name);
}

namespace {

// Reads the magic and version; returns the version.
uint32_t read_magic_and_version(ByteReader& r) {
  const uint32_t magic = r.read<uint32_t>();
  if (magic != kMagic) r.fail("not a GGUF file (wrong magic)");
  const uint32_t version = r.read<uint32_t>();
  if (version == 0x02000000 || version == 0x03000000) r.fail("big-endian GGUF is not supported");
  if (version != 2 && version != 3) {
    r.fail("unsupported GGUF version " + std::to_string(version) + " (2 and 3 are supported)");
  }
  return version;
}

// Every entry takes some bytes, so counts larger than the file allows are rejected up front.
void check_counts_fit(const ByteReader& r, uint64_t n_tensors, uint64_t n_kv) {
  constexpr uint64_t kMinKV = 8 + 4 + 1, kMinTensor = 8 + 4 + 8 + 4 + 8;
  if (n_kv > r.remaining() / kMinKV) {
    r.fail("metadata count " + std::to_string(n_kv) + " cannot fit in the " + std::to_string(r.remaining()) +
           " bytes left (truncated or corrupt)");
  }
  if (n_tensors > r.remaining() / kMinTensor) {
    r.fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " + std::to_string(r.remaining()) +
           " bytes left (truncated or corrupt)");
  }
}

// Reads an array value's element type, count and elements (the array type itself already read).
void read_array_value(ByteReader& r, GgufValue& v) {
  v.elem = read_type(r);
  if (v.elem == GgufType::Array) r.fail("arrays of arrays are not supported");
  const uint64_t count = r.read<uint64_t>();
  // The count is bounded by the bytes left before anything is reserved.
  if (count > r.remaining() / min_value_bytes(v.elem)) {
    r.fail("array of " + std::to_string(count) + " " + std::string(gguf_type_name(v.elem)) +
           " values cannot fit in the " + std::to_string(r.remaining()) + " bytes left");
  }
  const auto n = static_cast<size_t>(count);
  if (v.elem == GgufType::String) {
    v.strings.reserve(n);
  } else if (v.elem == GgufType::F32 || v.elem == GgufType::F64) {
    v.floats.reserve(n);
  } else {
    v.ints.reserve(n);
  }
  for (size_t k = 0; k < n; ++k) read_scalar(r, v.elem, v);
}

// Reads metadata entry i; `keys` holds the keys read so far, to reject duplicates.
GgufKV read_kv(ByteReader& r, uint64_t i, std::set<std::string, std::less<>>& keys) {
  r.set_context("metadata entry " + std::to_string(i));
  GgufKV kv;
  kv.key = read_string(r, "key");
  if (kv.key.empty()) r.fail("empty key");
  r.set_context("key '" + kv.key + "'");
  if (!keys.insert(kv.key).second) r.fail("duplicate key");
  GgufValue& v = kv.value;
  v.type = v.elem = read_type(r);
  if (v.type == GgufType::Array) {
    read_array_value(r, v);
  } else {
    read_scalar(r, v.type, v);
  }
  return kv;
}

// The value of general.alignment, which must be a power-of-two uint32.
uint32_t checked_alignment(ByteReader& r, const GgufValue& a) {
  r.set_context("key 'general.alignment'");
  if (a.type != GgufType::U32) r.fail("must be a uint32, found " + std::string(gguf_type_name(a.type)));
  const int64_t al = a.ints[0];
  if (al <= 0 || (al & (al - 1)) != 0) r.fail("alignment " + std::to_string(al) + " is not a power of two");
  return static_cast<uint32_t>(al);
}

// Reads tensor info i; `names` holds the names read so far, to reject duplicates.
GgufTensorInfo read_tensor_info(ByteReader& r, uint64_t i, std::set<std::string, std::less<>>& names,
                                uint32_t alignment) {
  r.set_context("tensor info " + std::to_string(i));
  GgufTensorInfo t;
  t.name = read_string(r, "tensor name");
  r.set_context("tensor '" + t.name + "'");
  if (t.name.empty()) r.fail("empty tensor name");
  if (t.name.size() > kMaxTensorName) r.fail("tensor name longer than 64 bytes");
  if (!names.insert(t.name).second) r.fail("duplicate tensor name");
  const uint32_t n_dims = r.read<uint32_t>();
  if (n_dims == 0 || n_dims > kMaxDims) {
    r.fail("has " + std::to_string(n_dims) + " dimensions (1 to 4 supported)");
  }
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t x = r.read<uint64_t>();
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) r.fail("absurd dimension " + std::to_string(x));
    t.ne.push_back(static_cast<int64_t>(x));
  }
  t.type = static_cast<GgmlType>(r.read<uint32_t>());
  t.offset = r.read<uint64_t>();
  std::string problem;
  t.nbytes = tensor_nbytes(t.ne, t.type, &problem);
  if (!problem.empty()) r.fail(problem);
  if (t.offset % alignment != 0) {
    r.fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
           std::to_string(alignment));
  }
  return t;
}

// Every tensor's data must lie inside the data section, and no two may overlap.
void check_tensor_data_ranges(const std::string& source, const std::vector<GgufTensorInfo>& tensors,
                              uint64_t data_size) {
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : tensors) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      throw Error(source + ": tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                  std::to_string(t.nbytes) + ") lies outside the file's data section of " + std::to_string(data_size) +
                  " bytes (file truncated or offset corrupt)");
    }
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* a = by_offset[i - 1];
    const auto* b = by_offset[i];
    if (a->offset + a->nbytes > b->offset) {
      throw Error(source + ": tensor '" + b->name + "': data at offset " + std::to_string(b->offset) +
                  " overlaps tensor '" + a->name + "'");
    }
  }
}

}  // namespace

void GgufFile::parse_bytes() {
  ByteReader r(bytes_, source_);
  r.set_context("header");
  version_ = read_magic_and_version(r);
  const uint64_t n_tensors = r.read<uint64_t>();
  const uint64_t n_kv = r.read<uint64_t>();
  check_counts_fit(r, n_tensors, n_kv);

  std::set<std::string, std::less<>> keys;
  kv_.reserve(static_cast<size_t>(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) kv_.push_back(read_kv(r, i, keys));

  if (const GgufValue* a = find("general.alignment")) alignment_ = checked_alignment(r, *a);

  std::set<std::string, std::less<>> names;
  tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) tensors_.push_back(read_tensor_info(r, i, names, alignment_));

  r.set_context("tensor data");
  data_start_ = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t data_size = data_start_ <= r.size() ? r.size() - data_start_ : 0;
  check_tensor_data_ranges(source_, tensors_, data_size);
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& kv : kv_) {
    if (kv.key == key) return &kv.value;
  }
  return nullptr;
}

void GgufFile::fail_key(std::string_view key, const std::string& problem) const {
  throw Error(source_ + ": key '" + std::string(key) + "': " + problem);
}

namespace {
std::string describe(const GgufValue& v) {
  if (v.is_array()) return "array of " + std::string(gguf_type_name(v.elem));
  return std::string(gguf_type_name(v.type));
}
}  // namespace

std::optional<std::string> GgufFile::get_string_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::String) fail_key(key, "expected a string, found " + describe(*v));
  return v->strings[0];
}

std::string GgufFile::get_string(std::string_view key) const {
  auto s = get_string_opt(key);
  if (!s) fail_key(key, "missing");
  return *s;
}

std::optional<int64_t> GgufFile::get_int_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_array() || !is_int_type(v->type) || v->type == GgufType::Bool) {
    fail_key(key, "expected an integer, found " + describe(*v));
  }
  return v->ints[0];
}

int64_t GgufFile::get_int(std::string_view key) const {
  auto x = get_int_opt(key);
  if (!x) fail_key(key, "missing");
  return *x;
}

std::optional<double> GgufFile::get_float_opt(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != GgufType::F32 && v->type != GgufType::F64) {
    fail_key(key, "expected a float, found " + describe(*v));
  }
  return v->floats[0];
}

double GgufFile::get_float(std::string_view key) const {
  auto x = get_float_opt(key);
  if (!x) fail_key(key, "missing");
  return *x;
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) fail_key(key, "missing");
  if (v->type != GgufType::Bool) fail_key(key, "expected a bool, found " + describe(*v));
  return v->ints[0] != 0;
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) fail_key(key, "missing");
  if (!v->is_array() || v->elem != GgufType::String) {
    fail_key(key, "expected an array of strings, found " + describe(*v));
  }
  return v->strings;
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) fail_key(key, "missing");
  if (!v->is_array() || (v->elem != GgufType::F32 && v->elem != GgufType::F64)) {
    fail_key(key, "expected an array of floats, found " + describe(*v));
  }
  return std::vector<float>(v->floats.begin(), v->floats.end());
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) fail_key(key, "missing");
  if (!v->is_array() || !is_int_type(v->elem)) {
    fail_key(key, "expected an array of integers, found " + describe(*v));
  }
  return v->ints;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& t) const {
  return bytes_.subspan(static_cast<size_t>(data_start_ + t.offset), static_cast<size_t>(t.nbytes));
}

// ---------------------------------------------------------------- writer

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  require(alignment > 0 && (alignment & (alignment - 1)) == 0,
          "GGUF writer: alignment " + std::to_string(alignment) + " is not a power of two");
  if (alignment != 32) add("general.alignment", GgufValue::u32(alignment));
}

void GgufWriter::add(std::string key, GgufValue value) {
  for (auto& kv : kv_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kv_.push_back({std::move(key), std::move(value)});
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type, std::vector<uint8_t> data) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(data));
  add_tensor(std::move(name), std::move(ne), type, [shared] { return *shared; });
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type, Producer produce) {
  std::string problem;
  const uint64_t nbytes = tensor_nbytes(ne, type, &problem);
  require(problem.empty(), "GGUF writer: tensor '" + name + "' " + problem);
  require(name.size() <= kMaxTensorName, "GGUF writer: tensor name '" + name + "' is longer than 64 bytes");
  for (const auto& t : tensors_) {
    require(t.name != name, "GGUF writer: duplicate tensor '" + name + "'");
  }
  tensors_.push_back({std::move(name), std::move(ne), type, nbytes, std::move(produce)});
}

std::vector<uint8_t> GgufWriter::header_bytes() const {
  ByteWriter w;
  w.put(kMagic);
  w.put(uint32_t{3});
  w.put(static_cast<uint64_t>(tensors_.size()));
  w.put(static_cast<uint64_t>(kv_.size()));
  for (const auto& kv : kv_) {
    w.put(static_cast<uint64_t>(kv.key.size()));
    w.put_bytes(kv.key.data(), kv.key.size());
    const GgufValue& v = kv.value;
    w.put(static_cast<uint32_t>(v.type));
    if (v.is_array()) {
      w.put(static_cast<uint32_t>(v.elem));
      w.put(static_cast<uint64_t>(v.size()));
    }
    for (size_t i = 0; i < v.size(); ++i) write_scalar(w, v.elem, v, i);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    w.put(static_cast<uint64_t>(t.name.size()));
    w.put_bytes(t.name.data(), t.name.size());
    w.put(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) w.put(static_cast<uint64_t>(d));
    w.put(static_cast<uint32_t>(t.type));
    w.put(offset);
    offset = (offset + t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  w.pad_to(alignment_);
  return std::move(w.out);
}

std::vector<uint8_t> GgufWriter::tensor_bytes(const Pending& t) const {
  std::vector<uint8_t> data = t.produce();
  require(data.size() == t.nbytes, "GGUF writer: tensor '" + t.name + "' has " + std::to_string(data.size()) +
                                       " bytes of data, expected " + std::to_string(t.nbytes));
  data.resize((data.size() + alignment_ - 1) / alignment_ * alignment_, 0);
  return data;
}

std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out = header_bytes();
  for (const auto& t : tensors_) {
    auto d = tensor_bytes(t);
    out.insert(out.end(), d.begin(), d.end());
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  // Atomic: a failure while producing tensor data leaves no partial file behind.
  write_file_atomic(path, [&](AtomicFile& f) {
    auto put = [&](const std::vector<uint8_t>& b) {
      f.write(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
    };
    put(header_bytes());
    for (const auto& t : tensors_) put(tensor_bytes(t));
  });
}

}  // namespace pricer
