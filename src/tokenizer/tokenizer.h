#pragma once
// The tokenizer interface every stage uses (curate's token budget, training, generation).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pricer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Plain text to ids; special-token text is not matched unless allow_special.
  virtual std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const = 0;
  // Concatenated bytes of the tokens (byte-level pieces reassembled into UTF-8).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Bytes of one token (may be a partial UTF-8 sequence); for streaming output.
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
};

// Opens a tokenizer by path: tiktoken tokenizer.model, tokenizer.json, llama2.c tok*.bin,
// a GGUF file's embedded vocab, or a Hugging Face model directory.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace pricer
