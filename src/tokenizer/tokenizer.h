#pragma once
// The tokenizer interface every stage uses (curate's token budget, training, generation).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pricer {

class GgufFile;

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
// The vocab embedded in an open GGUF file (tokenizer.ggml.model "gpt2" or "llama").
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);

// ---- Factories (the loaders and the GGUF glue build tokenizers through these) ----
//
// Conventions shared by all tokenizers here:
//  * Special tokens (control tokens, tokenizer.json added tokens marked special) render as their
//    text in decode() and token_bytes(), so decode(encode(s, true)) == s.
//  * Invalid UTF-8 in the input is encoded byte by byte, so its bytes still round trip.

// Token kinds, numbered as GGUF's tokenizer.ggml.token_type (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

// Pre-tokenizer split patterns (PCRE2 syntax, matched in UTF mode with Unicode properties).
inline constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The split pattern for a GGUF tokenizer.ggml.pre name ("llama-bpe", "smaug-bpe", "gpt-2",
// "default", ""), or "llama3" / "gpt2". Throws Error for a name this build does not know.
std::string pretokenizer_pattern(const std::string& name);

// Byte-level BPE (GPT-2 / Llama 3): `tokens` spelled in GPT-2's byte-to-unicode alphabet as in
// tokenizer.json and GGUF `gpt2` vocabs; `merges` are "left right" in priority order (empty:
// tiktoken rule, any two tokens whose concatenation is a token merge by that token's id).
// token_types (may be empty = all Normal): Control tokens match only with allow_special,
// UserDefined always. ignore_merges: a pre-token that is itself a token is emitted whole
// (tiktoken and Llama 3). `source` names the origin in error messages.
std::unique_ptr<Tokenizer> make_byte_level_bpe(const std::vector<std::string>& tokens,
                                               const std::vector<std::string>& merges,
                                               const std::vector<int32_t>& token_types, int32_t bos_id, int32_t eos_id,
                                               const std::string& split_pattern, bool ignore_merges,
                                               const std::string& source);

// SentencePiece-style BPE (GGUF `llama` vocab): "▁" marks a space, <0xNN> tokens (type Byte, or
// spelled so) are the byte fallback, pairs merge by the highest score of their concatenation.
// add_space_prefix: a space is put before the text (and after each special token), as
// SentencePiece's dummy prefix; decode removes it again.
std::unique_ptr<Tokenizer> make_sentencepiece_bpe(const std::vector<std::string>& tokens,
                                                  const std::vector<float>& scores,
                                                  const std::vector<int32_t>& token_types, int32_t bos_id,
                                                  int32_t eos_id, bool add_space_prefix, const std::string& source);

// In-memory parsers (the file loaders read the file and call these; `source` is the file name
// used in error messages). All throw Error naming the source and the line/offset/key.
//
// Meta's tiktoken tokenizer.model: "<base64 token> <rank>" a line; Llama 3's 256 special tokens
// follow the ranks (<|begin_of_text|> = BOS, <|end_of_text|> = EOS).
// Meta's Llama 3 tokenizer.model holds exactly this many ranks; its 256 special tokens follow.
inline constexpr std::size_t kLlama3Ranks = 128000;
// expected_ranks (0 = any): a file cut short at a line boundary still parses, and would number
// the special tokens from its last rank (BOS 50000 instead of 128000): the count is checked.
std::unique_ptr<Tokenizer> parse_tiktoken(std::string_view text, const std::string& source,
                                          std::size_t expected_ranks = kLlama3Ranks);
// Hugging Face tokenizer.json with a BPE model (byte-level, or SentencePiece-style with
// byte_fallback). bos_token / eos_token name the tokens when known (tokenizer_config.json);
// empty: guessed from the post-processor template and well-known names.
std::unique_ptr<Tokenizer> parse_tokenizer_json(std::string_view json, const std::string& source,
                                                const std::string& bos_token = "", const std::string& eos_token = "");
// llama2.c tok*.bin: int32 max_token_length, then per token float score, int32 length, bytes.
// vocab_size < 0 reads tokens up to the end of the data. BOS = 1, EOS = 2 as llama2.c.
std::unique_ptr<Tokenizer> parse_llama2c_tokenizer(std::string_view data, const std::string& source,
                                                   int32_t vocab_size = -1);

}  // namespace pricer
