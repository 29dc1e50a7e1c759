#include "io/safetensors.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/bytes.h"
#include "io/json_util.h"

namespace pricer {

namespace {

// The reference implementation's cap on the JSON header.
constexpr uint64_t kMaxHeader = 100'000'000;

struct DTypeSize {
  const char* name;
  int64_t size;
};
constexpr DTypeSize kSafetensorsDTypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
                                            {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
                                            {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};

// numel * elem_size with overflow reported as false.
bool byte_size(const std::vector<int64_t>& shape, int64_t elem_size, uint64_t* out) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  int64_t b = 0;
  if (__builtin_mul_overflow(n, elem_size, &b)) return false;
  *out = static_cast<uint64_t>(b);
  return true;
}

[[noreturn]] void tensor_fail(const std::string& source, const std::string& name, const std::string& problem) {
  throw Error(source + ": tensor '" + name + "': " + problem);
}

}  // namespace

int64_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kSafetensorsDTypes) {
    if (dtype == d.name) return d.size;
  }
  return 0;
}

int64_t SafetensorsTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::from(std::shared_ptr<const FileBytes> storage, const std::string& source) {
  SafetensorsFile f;
  f.storage_ = std::move(storage);
  f.bytes_ = f.storage_->bytes();
  f.source_ = source;
  f.parse_bytes();
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) { return from(FileBytes::map(path), path); }

SafetensorsFile SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  return from(FileBytes::copy(bytes), name);
}

namespace {

// Reads the header length and returns the JSON text it covers.
std::span<const uint8_t> read_header_text(ByteReader& r) {
  r.set_context("header length");
  const uint64_t n = r.read<uint64_t>();
  if (n > kMaxHeader) r.fail("header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > r.remaining()) {
    r.fail("truncated: header length " + std::to_string(n) + " but only " + std::to_string(r.remaining()) +
           " bytes follow");
  }
  return r.take(static_cast<size_t>(n), "header");
}

void read_metadata(const std::string& source, const nlohmann::json& entry, std::map<std::string, std::string>& out) {
  if (!entry.is_object()) throw Error(source + ": __metadata__: expected an object");
  for (const auto& [k, v] : entry.items()) {
    if (!v.is_string()) throw Error(source + ": __metadata__: value of '" + k + "' is not a string");
    out[k] = v.get<std::string>();
  }
}

std::vector<int64_t> read_shape(const std::string& source, const std::string& name, const nlohmann::json& entry) {
  const auto sh = entry.find("shape");
  if (sh == entry.end() || !sh->is_array()) tensor_fail(source, name, "missing array 'shape'");
  if (sh->size() > 8) tensor_fail(source, name, "shape has " + std::to_string(sh->size()) + " dimensions");
  std::vector<int64_t> shape;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) tensor_fail(source, name, "shape entries must be non-negative integers");
    const uint64_t x = d.get<uint64_t>();
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) tensor_fail(source, name, "absurd dimension");
    shape.push_back(static_cast<int64_t>(x));
  }
  return shape;
}

// Reads t.begin and t.end, which must lie within the data buffer of data_size bytes.
void read_data_offsets(const std::string& source, const nlohmann::json& entry, uint64_t data_size,
                       SafetensorsTensor& t) {
  const std::string& name = t.name;
  const auto off = entry.find("data_offsets");
  if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    tensor_fail(source, name, "'data_offsets' must be [begin, end] with non-negative integers");
  }
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  if (t.begin > t.end) {
    tensor_fail(source, name, "data_offsets begin " + std::to_string(t.begin) + " > end " + std::to_string(t.end));
  }
  if (t.end > data_size) {
    tensor_fail(source, name,
                "data_offsets end " + std::to_string(t.end) + " lies outside the data buffer of " +
                    std::to_string(data_size) + " bytes (file truncated or offsets corrupt)");
  }
}

SafetensorsTensor read_tensor_entry(const std::string& source, const std::string& name, const nlohmann::json& entry,
                                    uint64_t data_size) {
  if (!entry.is_object()) tensor_fail(source, name, "expected an object");
  SafetensorsTensor t;
  t.name = name;
  const auto dt = entry.find("dtype");
  if (dt == entry.end() || !dt->is_string()) tensor_fail(source, name, "missing string 'dtype'");
  t.dtype = dt->get<std::string>();
  const int64_t elem = safetensors_dtype_size(t.dtype);
  if (elem == 0) tensor_fail(source, name, "unknown dtype '" + t.dtype + "'");
  t.shape = read_shape(source, name, entry);
  read_data_offsets(source, entry, data_size, t);
  uint64_t nbytes = 0;
  if (!byte_size(t.shape, elem, &nbytes)) tensor_fail(source, name, "shape has an absurd size");
  if (nbytes != t.end - t.begin) {
    tensor_fail(source, name,
                "shape and dtype " + t.dtype + " need " + std::to_string(nbytes) + " bytes but data_offsets span " +
                    std::to_string(t.end - t.begin));
  }
  return t;
}

// The tensors must tile the data buffer: sorted by offset, each starts where the last ended.
void check_tensors_tile(const std::string& source, const std::vector<SafetensorsTensor>& tensors, uint64_t data_size) {
  std::vector<const SafetensorsTensor*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t expect = 0;
  for (const auto* t : order) {
    if (t->begin != expect) {
      throw Error(source + ": tensor '" + t->name + "': data_offsets begin " + std::to_string(t->begin) +
                  (t->begin < expect ? " overlaps the previous tensor" : " leaves a gap") + " (expected " +
                  std::to_string(expect) + ")");
    }
    expect = t->end;
  }
  if (expect != data_size) {
    throw Error(source + ": data buffer holds " + std::to_string(data_size) + " bytes but the tensors cover " +
                std::to_string(expect));
  }
}

}  // namespace

void SafetensorsFile::parse_bytes() {
  ByteReader r(bytes_, source_);
  const auto text = read_header_text(r);
  data_start_ = 8 + text.size();
  const uint64_t data_size = bytes_.size() - data_start_;
  const nlohmann::json header = parse_json_strict(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), source_ + ": header");
  if (!header.is_object()) throw Error(source_ + ": header: expected a JSON object");

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      read_metadata(source_, entry, metadata_);
    } else {
      tensors_.push_back(read_tensor_entry(source_, name, entry, data_size));
    }
  }
  check_tensors_tile(source_, tensors_, data_size);
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const uint8_t> SafetensorsFile::data(const SafetensorsTensor& t) const {
  return bytes_.subspan(static_cast<size_t>(data_start_ + t.begin), static_cast<size_t>(t.end - t.begin));
}

// ---------------------------------------------------------------- writer

void SafetensorsWriter::add(std::string name, std::string dtype, std::vector<int64_t> shape,
                            std::vector<uint8_t> data) {
  auto shared = std::make_shared<std::vector<uint8_t>>(std::move(data));
  add(std::move(name), std::move(dtype), std::move(shape), [shared] { return *shared; });
}

void SafetensorsWriter::add(std::string name, std::string dtype, std::vector<int64_t> shape, Producer produce) {
  const int64_t elem = safetensors_dtype_size(dtype);
  require(elem > 0, "safetensors writer: tensor '" + name + "': unknown dtype '" + dtype + "'");
  require(name != "__metadata__", "safetensors writer: '__metadata__' is not a tensor name");
  uint64_t nbytes = 0;
  require(byte_size(shape, elem, &nbytes), "safetensors writer: tensor '" + name + "': invalid shape");
  for (const auto& t : tensors_) require(t.name != name, "safetensors writer: duplicate tensor '" + name + "'");
  tensors_.push_back({std::move(name), std::move(dtype), std::move(shape), nbytes, std::move(produce)});
}

std::vector<uint8_t> SafetensorsWriter::header_bytes() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string text = h.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text.push_back(' ');
  ByteWriter w;
  w.put(static_cast<uint64_t>(text.size()));
  w.put_bytes(text.data(), text.size());
  return std::move(w.out);
}

std::vector<uint8_t> SafetensorsWriter::tensor_bytes(const Pending& t) const {
  std::vector<uint8_t> data = t.produce();
  require(data.size() == t.nbytes, "safetensors writer: tensor '" + t.name + "' has " + std::to_string(data.size()) +
                                       " bytes of data, expected " + std::to_string(t.nbytes));
  return data;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  std::vector<uint8_t> out = header_bytes();
  for (const auto& t : tensors_) {
    auto d = tensor_bytes(t);
    out.insert(out.end(), d.begin(), d.end());
  }
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
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
