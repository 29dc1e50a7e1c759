#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__":
// {string: string}}, then the data buffer the offsets index. The reader requires the tensors to
// tile the buffer exactly (no gaps, no overlaps, nothing left over), as the reference
// implementation does, and rejects duplicate names.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pricer {

class FileBytes;  // io/bytes.h

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // within the data buffer
  int64_t numel() const;
};

// Bytes per element of a safetensors dtype; 0 when unknown.
int64_t safetensors_dtype_size(const std::string& dtype);

class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);  // memory-mapped
  static SafetensorsFile parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::string& source() const { return source_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensor* find(const std::string& name) const;
  std::span<const uint8_t> data(const SafetensorsTensor& t) const;

 private:
  static SafetensorsFile from(std::shared_ptr<const FileBytes> storage, const std::string& source);
  void parse_bytes();

  std::shared_ptr<const FileBytes> storage_;
  std::span<const uint8_t> bytes_;
  std::string source_;
  uint64_t data_start_ = 0;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors in the order added; data may come from a producer called while writing.
class SafetensorsWriter {
 public:
  using Producer = std::function<std::vector<uint8_t>()>;
  void set_metadata(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  void add(std::string name, std::string dtype, std::vector<int64_t> shape, std::vector<uint8_t> data);
  void add(std::string name, std::string dtype, std::vector<int64_t> shape, Producer produce);
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name, dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    Producer produce;
  };
  std::vector<uint8_t> header_bytes() const;
  std::vector<uint8_t> tensor_bytes(const Pending& t) const;

  std::map<std::string, std::string> metadata_;
  std::vector<Pending> tensors_;
};

}  // namespace pricer
