#pragma once
// Tokenized dataset shards: what `pricer curate --tokenizer` writes per split (train.bin, ...)
// so training reads token ids without re-tokenizing. Little-endian, version 1:
//
//   header, 64 bytes:
//     0  char[8]  magic "PRICETOK"
//     8  u32      version (1)
//    12  u32      header size (64)
//    16  u64      number of records
//    24  u64      total tokens over all records
//    32  i32      vocab size (every id is in [0, vocab size))
//    36  i32      BOS id (-1: none)       40  i32  EOS id (-1: none)
//    44  u32      reserved (0)
//    48  u64      payload bytes after the header
//    56  u64      reserved (0)
//   records, back to back:
//     u32 n_tokens, u32 completion_start, f64 price, i32 ids[n_tokens]
//
// ids[0, completion_start) is the prompt (BOS first when the tokenizer has one); the rest is
// the completion (EOS last when the tokenizer has one): the loss goes on the completion only.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/atomic_file.h"

namespace pricer::data {

inline constexpr char kShardMagic[8] = {'P', 'R', 'I', 'C', 'E', 'T', 'O', 'K'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr uint32_t kShardHeaderBytes = 64;

struct ShardRecord {
  std::span<const int32_t> ids;
  uint32_t completion_start = 0;
  double price = 0;
};

class ShardWriter {
 public:
  // Throws Error if the file cannot be created. The records go to a temporary file beside `path`.
  ShardWriter(std::string path, int32_t vocab_size, int32_t bos_id, int32_t eos_id);
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void add(std::span<const int32_t> ids, uint32_t completion_start, double price);
  // Writes the header and publishes the shard under its name (crash-safe, as write_file_atomic).
  // A writer destroyed without finish() leaves nothing: an interrupted shard never looks whole.
  void finish();

 private:
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
  int32_t vocab_, bos_, eos_;
  uint64_t records_ = 0, tokens_ = 0, payload_ = 0;
};

class ShardReader {
 public:
  // Reads and validates the whole shard; throws Error naming the file and the record or byte
  // offset on a bad magic/version, sizes that disagree with the file, ids outside the vocab,
  // a completion start past the end, or a non-finite price. Memory is bounded by the file size.
  explicit ShardReader(const std::string& path);

  size_t size() const { return recs_.size(); }
  ShardRecord operator[](size_t i) const;
  int32_t vocab_size() const { return vocab_; }
  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  uint64_t total_tokens() const { return ids_.size(); }

 private:
  struct Rec {
    uint64_t offset;
    uint32_t n, completion_start;
    double price;
  };
  std::vector<int32_t> ids_;
  std::vector<Rec> recs_;
  int32_t vocab_ = 0, bos_ = -1, eos_ = -1;
};

}  // namespace pricer::data
