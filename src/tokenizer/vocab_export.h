#pragma once
// A loaded tokenizer written out again, whatever file it came from.
//
// GGUF: the tokenizer metadata llama.cpp reads (tokenizer.ggml.*), so that a model file carries
// its own vocab: byte-level BPE (tiktoken tokenizer.model, tokenizer.json,
// a trained vocab, GGUF "gpt2") as model "gpt2" with merges and the pre-tokenizer's name;
// SentencePiece-style BPE (GGUF "llama", llama2.c tok*.bin, tokenizer.json with byte fallback)
// as model "llama" with scores. Either loads back (load_gguf_tokenizer) encoding and decoding as
// the source does. One caveat: a SentencePiece-style tokenizer.json merges by rank, which GGUF
// stores as scores (the rank of each token's first merge), as llama.cpp's converter does.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace pricer {

// vocab_size > tok.vocab_size() pads the vocab with unused "[PAD<id>]" tokens up to one per
// embedding row, which llama.cpp requires (its converter pads the same way). Throws Error for a
// tokenizer GGUF cannot express (a split pattern llama.cpp has no name for) or a vocab larger
// than vocab_size.
std::vector<GgufKV> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t vocab_size = 0);

// Hugging Face tokenizer.json of a byte-level BPE tokenizer (Split with its pattern + ByteLevel,
// BPE with its merges and ignore_merges, a TemplateProcessing that puts BOS first when the
// tokenizer does); loads back with parse_tokenizer_json. std::nullopt for a SentencePiece-style
// tokenizer built from scores, which tokenizer.json (merges by rank) cannot express exactly.
std::optional<std::string> hf_tokenizer_json(const Tokenizer& tok);

}  // namespace pricer
