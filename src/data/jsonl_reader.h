#pragma once
// Streams a JSON-lines file (plain or gzip, detected from the content) in chunks of whole lines
// with bounded memory: a line longer than max_line_bytes is never buffered; it is skipped and
// reported by number so the caller can count it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pricer::data {

struct LineChunk {
  uint64_t first_line = 1;  // 1-based number of the chunk's first line
  std::string data;  // the lines' bytes, back to back (no newlines)
  std::vector<uint32_t> ends;  // end offset of each line in data
  std::vector<uint64_t> too_long;  // numbers of lines over the limit (empty in data)
  uint64_t input_bytes = 0;  // file bytes consumed for this chunk (compressed for .gz)

  size_t size() const { return ends.size(); }
  std::string_view line(size_t i) const {
    const uint32_t b = i == 0 ? 0 : ends[i - 1];
    return std::string_view(data).substr(b, ends[i] - b);
  }
};

class JsonlReader {
 public:
  // Throws Error when the file cannot be opened.
  JsonlReader(std::string path, size_t max_line_bytes, size_t chunk_bytes = 1 << 20);
  ~JsonlReader();
  JsonlReader(const JsonlReader&) = delete;
  JsonlReader& operator=(const JsonlReader&) = delete;

  // Fills `out` with the next lines; false at the end of the file. Throws Error naming the file
  // and line on a corrupt or truncated gzip stream or a read error.
  bool next(LineChunk& out);
  const std::string& path() const { return path_; }

 private:
  bool refill();

  std::string path_;
  size_t max_line_;
  size_t chunk_bytes_;
  void* gz_ = nullptr;  // gzFile; zlib reads plain files through unchanged
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
  bool skipping_ = false;  // inside an over-long line
  uint64_t line_no_ = 0;  // lines completed so far
  uint64_t consumed_ = 0;  // compressed bytes reported so far
};

// Size of the file in bytes (for progress); 0 if unknown.
uint64_t file_size(const std::string& path);

}  // namespace pricer::data
