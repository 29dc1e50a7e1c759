#include "data/shard.h"

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace pricer::data {

static_assert(std::endian::native == std::endian::little, "shards are little-endian and read by memcpy");

namespace {

template <class T>
void put(std::vector<char>& b, size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}
template <class T>
T get(const std::vector<char>& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

}  // namespace

ShardWriter::ShardWriter(std::string path, int32_t vocab_size, int32_t bos_id, int32_t eos_id)
    : path_(std::move(path)),
      file_(std::make_unique<AtomicFile>(path_)),
      vocab_(vocab_size),
      bos_(bos_id),
      eos_(eos_id) {
  file_->write(std::string(kShardHeaderBytes, '\0'));  // rewritten with the final counts by finish()
}

void ShardWriter::add(std::span<const int32_t> ids, uint32_t completion_start, double price) {
  require(file_ != nullptr, path_ + ": add() after finish()");
  require(completion_start <= ids.size(), path_ + ": completion start past the end of a record");
  const auto n = static_cast<uint32_t>(ids.size());
  char head[16];
  std::memcpy(head, &n, 4);
  std::memcpy(head + 4, &completion_start, 4);
  std::memcpy(head + 8, &price, 8);
  file_->write(std::string_view(head, sizeof head));
  file_->write(std::string_view(reinterpret_cast<const char*>(ids.data()), ids.size() * sizeof(int32_t)));
  ++records_;
  tokens_ += n;
  payload_ += sizeof head + 4ull * n;
}

void ShardWriter::finish() {
  require(file_ != nullptr, path_ + ": finish() twice");
  std::vector<char> h(kShardHeaderBytes, 0);
  std::memcpy(h.data(), kShardMagic, 8);
  put<uint32_t>(h, 8, kShardVersion);
  put<uint32_t>(h, 12, kShardHeaderBytes);
  put<uint64_t>(h, 16, records_);
  put<uint64_t>(h, 24, tokens_);
  put<int32_t>(h, 32, vocab_);
  put<int32_t>(h, 36, bos_);
  put<int32_t>(h, 40, eos_);
  put<uint64_t>(h, 48, payload_);
  file_->write_at(0, std::string_view(h.data(), h.size()));
  file_->commit();
  file_.reset();
}

ShardReader::ShardReader(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  require(in.good(), path + ": cannot open");
  const auto size = static_cast<uint64_t>(in.tellg());
  require(size >= kShardHeaderBytes,
          path + ": " + std::to_string(size) + " bytes, shorter than the 64-byte shard header");
  std::vector<char> b(size);
  in.seekg(0);
  in.read(b.data(), static_cast<std::streamsize>(size));
  require(in.good(), path + ": read failed");

  require(std::memcmp(b.data(), kShardMagic, 8) == 0, path + ": bad magic at offset 0 (not a pricer token shard)");
  const auto version = get<uint32_t>(b, 8);
  require(version == kShardVersion, path + ": unsupported shard version " + std::to_string(version) + " at offset 8");
  require(get<uint32_t>(b, 12) == kShardHeaderBytes, path + ": bad header size at offset 12");
  const auto n_records = get<uint64_t>(b, 16);
  const auto n_tokens = get<uint64_t>(b, 24);
  vocab_ = get<int32_t>(b, 32);
  bos_ = get<int32_t>(b, 36);
  eos_ = get<int32_t>(b, 40);
  const auto payload = get<uint64_t>(b, 48);
  require(vocab_ > 0, path + ": vocab size " + std::to_string(vocab_) + " at offset 32");
  require(bos_ >= -1 && bos_ < vocab_ && eos_ >= -1 && eos_ < vocab_,
          path + ": BOS/EOS id outside the vocab at offset 36");
  require(payload == size - kShardHeaderBytes, path + ": header says " + std::to_string(payload) +
                                                   " payload bytes, file has " +
                                                   std::to_string(size - kShardHeaderBytes));
  // Each record takes at least 16 bytes, each token 4: checked before allocating anything.
  require(n_records <= payload / 16 && n_tokens <= payload / 4,
          path + ": record/token counts in the header exceed the file size");
  recs_.reserve(n_records);
  ids_.resize(n_tokens);
  uint64_t at = kShardHeaderBytes, tok = 0;
  for (uint64_t r = 0; r < n_records; ++r) {
    const std::string where = path + ": record " + std::to_string(r) + " at offset " + std::to_string(at);
    require(size - at >= 16, where + ": truncated record header");
    const auto n = get<uint32_t>(b, at);
    const auto cs = get<uint32_t>(b, at + 4);
    const auto price = get<double>(b, at + 8);
    require((size - at - 16) / 4 >= n, where + ": " + std::to_string(n) + " tokens run past the end of the file");
    require(tok + n <= n_tokens, where + ": more tokens than the header's total");
    require(cs <= n, where + ": completion start " + std::to_string(cs) + " past " + std::to_string(n) + " tokens");
    require(std::isfinite(price) && price >= 0, where + ": price is not a finite non-negative number");
    std::memcpy(ids_.data() + tok, b.data() + at + 16, 4ull * n);
    for (uint32_t i = 0; i < n; ++i) {
      const int32_t id = ids_[tok + i];
      require(id >= 0 && id < vocab_, where + ": token " + std::to_string(i) + " id " + std::to_string(id) +
                                          " outside [0, " + std::to_string(vocab_) + ")");
    }
    recs_.push_back({tok, n, cs, price});
    tok += n;
    at += 16 + 4ull * n;
  }
  require(at == size, path + ": " + std::to_string(size - at) + " unexpected bytes after the last record at offset " +
                          std::to_string(at));
  require(tok == n_tokens,
          path + ": header says " + std::to_string(n_tokens) + " tokens, records hold " + std::to_string(tok));
}

ShardRecord ShardReader::operator[](size_t i) const {
  require(i < recs_.size(), "shard record index " + std::to_string(i) + " out of range");
  const Rec& r = recs_[i];
  return {std::span<const int32_t>(ids_.data() + r.offset, r.n), r.completion_start, r.price};
}

}  // namespace pricer::data
