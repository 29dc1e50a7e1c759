#pragma once
// GGUF (ggml's single-file model format, versions 2 and 3, little-endian), read and written
// generically: typed metadata key/values and a table of tensors. Model semantics (Llama names,
// the q/k RoPE permutation, ModelConfig) live in model_file.cpp on top of this.
//
// The reader checks every count, length, offset and size against the bytes actually present
// before allocating anything, and reports problems as pricer::Error naming the file, the key or
// tensor, and what is wrong.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "quant/dtype.h"

namespace pricer {

class FileBytes;  // io/bytes.h

// Metadata value types, numbered as in the GGUF specification.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view gguf_type_name(GgufType t);

// Tensor element types, numbered as ggml numbers them. The named ones are those pricer writes: the
// Weight dtypes, and plain integers and doubles for index files; a file may hold any other ggml
// type (its table still parses, with sizes known).
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30
};
// Elements and bytes per block of a ggml type (1 element for plain types); false when unknown.
bool ggml_block_size(GgmlType t, int64_t* elems, int64_t* bytes);
std::string ggml_type_name(GgmlType t);  // "q8_0", ..., or "type N"
// The Weight dtype of a ggml type; std::nullopt for types pricer cannot hold.
std::optional<DType> ggml_to_dtype(GgmlType t);
GgmlType dtype_to_ggml(DType t);  // throws Error for NF4, which GGUF has no type for

// One metadata value: a scalar, or an array of scalars (arrays of arrays are not supported).
// Integers and bools are held in `ints`, floats in `floats`, strings in `strings`; a scalar is
// a one-element list. `type`/`elem` keep the on-disk types so a value is written back as read.
struct GgufValue {
  GgufType type = GgufType::U32;
  GgufType elem = GgufType::U32;  // the element type of an array; == type for a scalar
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;

  bool is_array() const { return type == GgufType::Array; }
  size_t size() const;  // number of elements (1 for a scalar)

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue string_array(std::vector<std::string> v);
  static GgufValue f32_array(std::vector<float> v);
  static GgufValue i32_array(std::vector<int32_t> v);
};

struct GgufKV {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // dimensions, innermost first (ne[0] = row length)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t nbytes = 0;
  int64_t numel() const;
};

// A parsed GGUF file. The bytes stay mapped (or owned) for as long as the object lives, so
// tensor data is read in place without copies.
class GgufFile {
 public:
  // Opens and parses a file (memory-mapped).
  static GgufFile open(const std::string& path);
  // Parses bytes already in memory (copied); `name` is used in error messages.
  static GgufFile parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_start() const { return data_start_; }  // file offset of the tensor data section
  const std::vector<GgufKV>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  // Typed accessors: throw Error naming the file and key when the key is missing or holds a
  // different type. Integer accessors accept any integer type whose value fits.
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;  // F32 or F64
  bool get_bool(std::string_view key) const;
  std::optional<int64_t> get_int_opt(std::string_view key) const;
  std::optional<double> get_float_opt(std::string_view key) const;
  std::optional<std::string> get_string_opt(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;

  const GgufTensorInfo* find_tensor(std::string_view name) const;
  std::span<const uint8_t> tensor_data(const GgufTensorInfo& t) const;

 private:
  static GgufFile from(std::shared_ptr<const FileBytes> storage, const std::string& source);
  void parse_bytes();
  [[noreturn]] void fail_key(std::string_view key, const std::string& problem) const;

  std::shared_ptr<const FileBytes> storage_;
  std::span<const uint8_t> bytes_;
  std::string source_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_start_ = 0;
  std::vector<GgufKV> kv_;
  std::vector<GgufTensorInfo> tensors_;
};

// Builds a GGUF v3 file: metadata in the order added, tensors in the order added, each tensor's
// data aligned to `alignment` (general.alignment is written when it is not the default 32).
// Tensor data may be given as a producer called while writing, so a whole model is never held
// twice in memory.
class GgufWriter {
 public:
  using Producer = std::function<std::vector<uint8_t>()>;

  explicit GgufWriter(uint32_t alignment = 32);
  void add(std::string key, GgufValue value);  // replaces an earlier value of the same key
  // ne innermost first; the data must be exactly the bytes ggml expects for that shape and type
  // (checked when written).
  void add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type, std::vector<uint8_t> data);
  void add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type, Producer produce);
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    std::vector<int64_t> ne;
    GgmlType type;
    uint64_t nbytes;
    Producer produce;
  };
  std::vector<uint8_t> header_bytes() const;  // header, metadata, tensor infos and padding
  std::vector<uint8_t> tensor_bytes(const Pending& t) const;

  uint32_t alignment_;
  std::vector<GgufKV> kv_;
  std::vector<Pending> tensors_;
};

}  // namespace pricer
