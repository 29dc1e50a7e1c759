#pragma once
// Helpers shared by the model-file readers: a read-only file mapping, the bytes a parsed file keeps
// alive, a bounds-checked little-endian cursor over untrusted bytes, and UTF-8 validation.
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pricer {

// A whole file mapped read-only. Empty files map to an empty span.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The bytes behind a parsed file, shared by the file and every view of its tensors: a read-only
// mapping of the file, or a private copy of bytes parsed from memory (tests, fuzzers).
class FileBytes {
 public:
  static std::shared_ptr<const FileBytes> map(const std::string& path);
  static std::shared_ptr<const FileBytes> copy(std::span<const uint8_t> bytes);
  std::span<const uint8_t> bytes() const { return mapped_ ? mapped_->bytes() : std::span<const uint8_t>(owned_); }

 private:
  std::unique_ptr<MappedFile> mapped_;
  std::vector<uint8_t> owned_;
};

bool valid_utf8(std::string_view s);

// A cursor over untrusted little-endian bytes. Every read is checked against the end; a short
// read throws Error "<source>: offset N (<context>): truncated ...".
class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}

  size_t pos() const { return pos_; }
  size_t size() const { return bytes_.size(); }
  size_t remaining() const { return bytes_.size() - pos_; }
  void seek(size_t pos) { pos_ = pos; }
  // What is being read, for error messages (e.g. "key 'general.name'").
  void set_context(std::string ctx) { context_ = std::move(ctx); }
  const std::string& source() const { return source_; }

  template <typename T>
  T read() {
    need(sizeof(T), "value");
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::span<const uint8_t> take(size_t n, const char* what) {
    need(n, what);
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  void need(size_t n, const char* what) const;
  [[noreturn]] void fail(const std::string& problem) const;

 private:
  std::span<const uint8_t> bytes_;
  std::string source_;
  std::string context_;
  size_t pos_ = 0;
};

// Appends little-endian values to a byte vector (the writers' counterpart of ByteReader).
struct ByteWriter {
  std::vector<uint8_t> out;
  template <typename T>
  void put(T v) {
    const size_t n = out.size();
    out.resize(n + sizeof(T));
    std::memcpy(out.data() + n, &v, sizeof(T));
  }
  void put_bytes(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  void pad_to(size_t alignment) {
    while (out.size() % alignment != 0) out.push_back(0);
  }
};

}  // namespace pricer
