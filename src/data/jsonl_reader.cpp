#include "data/jsonl_reader.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace pricer::data {

namespace {
constexpr size_t kReadBytes = 1 << 18;
}

uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(n);
}

JsonlReader::JsonlReader(std::string path, size_t max_line_bytes, size_t chunk_bytes)
    : path_(std::move(path)), max_line_(max_line_bytes), chunk_bytes_(chunk_bytes) {
  require(chunk_bytes_ > 0 && chunk_bytes_ < (1ull << 30), path_ + ": chunk size must be 1 byte to 1 GiB");
  require(max_line_ > 0 && max_line_ < (1ull << 31), path_ + ": line limit must be between 1 byte and 2 GiB");
  gzFile f = gzopen(path_.c_str(), "rb");
  if (!f) throw Error(path_ + ": cannot open (" + std::strerror(errno) + ")");
  gzbuffer(f, 1 << 17);
  gz_ = f;
  buf_.resize(kReadBytes);
}

JsonlReader::~JsonlReader() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

bool JsonlReader::refill() {
  if (eof_) return false;
  gzFile f = static_cast<gzFile>(gz_);
  const int n = gzread(f, buf_.data(), static_cast<unsigned>(buf_.size()));
  int errnum = Z_OK;
  const char* msg = gzerror(f, &errnum);
  // Z_BUF_ERROR at the end means the gzip stream stopped mid-member (a truncated file).
  if (n < 0 || (errnum != Z_OK && errnum != Z_STREAM_END)) {
    throw Error(path_ + ":" + std::to_string(line_no_ + 1) + ": cannot read: " +
                (errnum == Z_BUF_ERROR ? "truncated gzip stream"
                 : msg                 ? msg
                                       : "read error"));
  }
  pos_ = 0;
  len_ = static_cast<size_t>(n);
  if (n == 0) eof_ = true;
  return n > 0;
}

bool JsonlReader::next(LineChunk& out) {
  out.data.clear();
  out.ends.clear();
  out.too_long.clear();
  out.first_line = line_no_ + 1;
  size_t line_start = 0;
  // A chunk holds whole lines only: stop at a line boundary once chunk_bytes are filled.
  for (;;) {
    if (pos_ == len_ && !refill()) {
      // End of file: a last line without a newline still counts.
      if (skipping_) {
        out.too_long.push_back(++line_no_);
        out.ends.push_back(static_cast<uint32_t>(out.data.size()));
        skipping_ = false;
      } else if (out.data.size() > line_start) {
        if (out.data.back() == '\r') out.data.pop_back();
        ++line_no_;
        out.ends.push_back(static_cast<uint32_t>(out.data.size()));
      }
      break;
    }
    const char* base = buf_.data() + pos_;
    const size_t avail = len_ - pos_;
    const char* nl = static_cast<const char*>(std::memchr(base, '\n', avail));
    const size_t seg = nl ? static_cast<size_t>(nl - base) : avail;
    pos_ += nl ? seg + 1 : seg;
    if (skipping_) {
      if (nl) {
        out.too_long.push_back(++line_no_);
        out.ends.push_back(static_cast<uint32_t>(out.data.size()));
        line_start = out.data.size();
        skipping_ = false;
      }
    } else if (out.data.size() - line_start + seg > max_line_) {
      out.data.resize(line_start);  // drop what was buffered of the over-long line
      if (nl) {
        out.too_long.push_back(++line_no_);
        out.ends.push_back(static_cast<uint32_t>(out.data.size()));
      } else {
        skipping_ = true;
      }
    } else {
      out.data.append(base, seg);
      if (nl) {
        if (out.data.size() > line_start && out.data.back() == '\r') out.data.pop_back();
        ++line_no_;
        out.ends.push_back(static_cast<uint32_t>(out.data.size()));
        line_start = out.data.size();
      }
    }
    if (nl && out.data.size() >= chunk_bytes_) break;
    // Bound the number of empty/over-long entries too, so a file of blank lines streams.
    if (nl && out.ends.size() >= (1u << 20)) break;
  }
  const uint64_t now = static_cast<uint64_t>(gzoffset(static_cast<gzFile>(gz_)));
  out.input_bytes = now >= consumed_ ? now - consumed_ : 0;
  consumed_ = std::max(consumed_, now);
  return !out.ends.empty();
}

}  // namespace pricer::data
