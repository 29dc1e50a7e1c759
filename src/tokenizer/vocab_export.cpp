#include "tokenizer/vocab_export.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace pricer {
namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁", SentencePiece's space

// How convert_hf_to_gguf.py names the ids a vocab leaves empty.
std::string pad_name(size_t id) { return "[PAD" + std::to_string(id) + "]"; }

std::string byte_level_spelling(const std::string& raw) {
  const auto& alphabet = tok::byte_to_unicode();
  std::string out;
  for (char c : raw) out += alphabet[static_cast<unsigned char>(c)];
  return out;
}

// llama.cpp's name for a split pattern with or without ignore_merges.
std::string pre_tokenizer_name(const tok::VocabSpec& v) {
  if (v.split_pattern == kLlama3Pattern) return v.ignore_merges ? "llama-bpe" : "smaug-bpe";
  if (v.split_pattern == kGpt2Pattern && !v.ignore_merges) return "gpt-2";
  throw Error("GGUF tokenizer export: llama.cpp has no pre-tokenizer for split pattern " + v.split_pattern +
              (v.ignore_merges ? " with ignore_merges" : ""));
}

// Merges in priority order; merges sharing a rank (tiktoken's, one per split of a token) ordered
// by their halves' ids, as Hugging Face's tiktoken converter lists them.
std::vector<tok::MergeTable::Entry> ordered_merges(std::vector<tok::MergeTable::Entry> m) {
  std::sort(m.begin(), m.end(), [](const auto& a, const auto& b) {
    if (a.merge.rank != b.merge.rank) return a.merge.rank < b.merge.rank;
    return a.left != b.left ? a.left < b.left : a.right < b.right;
  });
  return m;
}

tok::VocabSpec vocab_spec(const Tokenizer& tok) {
  const auto* bpe = dynamic_cast<const tok::BpeTokenizer*>(&tok);
  require(bpe != nullptr, "tokenizer export: this kind of tokenizer cannot be written out");
  return bpe->spec();
}

// Tokens as a byte-level vocab spells them (GPT-2's alphabet; special tokens literal).
std::vector<std::string> byte_level_tokens(const tok::VocabSpec& v) {
  std::vector<std::string> tokens;
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    const TokenType t = v.types[i];
    if (t == TokenType::Control || t == TokenType::UserDefined) tokens.push_back(v.pieces[i]);
    else if (t == TokenType::Unused && v.pieces[i].empty()) tokens.push_back(pad_name(i));
    else tokens.push_back(byte_level_spelling(v.pieces[i]));
  }
  return tokens;
}

std::vector<std::string> byte_level_merges(const tok::VocabSpec& v, const std::vector<std::string>& tokens) {
  std::vector<std::string> merges;
  for (const auto& e : ordered_merges(v.merges))
    merges.push_back(tokens[static_cast<size_t>(e.left)] + " " + tokens[static_cast<size_t>(e.right)]);
  return merges;
}

void add_byte_level(const tok::VocabSpec& v, std::vector<std::string>& tokens, std::vector<GgufKV>& kvs) {
  tokens = byte_level_tokens(v);
  std::vector<std::string> merges = byte_level_merges(v, tokens);
  kvs.push_back({"tokenizer.ggml.model", GgufValue::string("gpt2")});
  kvs.push_back({"tokenizer.ggml.pre", GgufValue::string(pre_tokenizer_name(v))});
  kvs.push_back({"tokenizer.ggml.merges", GgufValue::string_array(std::move(merges))});
}

// Scores for a vocab whose merges came as ranks: a token scores minus the rank of the first merge
// that makes it; tokens no merge makes score below every merge.
std::vector<float> scores_from_ranks(const tok::VocabSpec& v) {
  int32_t last = 0;
  for (const auto& e : v.merges) last = std::max(last, e.merge.rank);
  std::vector<float> scores(v.pieces.size(), -static_cast<float>(last) - 1.0f);
  for (const auto& e : v.merges) {
    float& s = scores[static_cast<size_t>(e.merge.result)];
    s = std::max(s, -static_cast<float>(e.merge.rank));
  }
  return scores;
}

void add_sentencepiece(const tok::VocabSpec& v, std::vector<std::string>& tokens, std::vector<float>& scores,
                       std::vector<GgufKV>& kvs) {
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    const std::string& p = v.pieces[i];
    switch (v.types[i]) {
      case TokenType::Normal: {
        std::string s;
        for (char c : p) {
          if (c == ' ') s += kSpaceMarker;
          else s += c;
        }
        tokens.push_back(std::move(s));
        break;
      }
      case TokenType::Byte: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", static_cast<unsigned char>(p.at(0)));
        tokens.emplace_back(hex);
        break;
      }
      default: tokens.push_back(v.types[i] == TokenType::Unused && p.empty() ? pad_name(i) : p);
    }
  }
  scores = v.scores.empty() ? scores_from_ranks(v) : v.scores;
  kvs.push_back({"tokenizer.ggml.model", GgufValue::string("llama")});
  kvs.push_back({"tokenizer.ggml.add_space_prefix", GgufValue::boolean(v.add_space_prefix)});
  if (v.unk_id >= 0)
    kvs.push_back({"tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(v.unk_id))});
}

}  // namespace

std::vector<GgufKV> gguf_tokenizer_metadata(const Tokenizer& tok, int64_t vocab_size) {
  const tok::VocabSpec v = vocab_spec(tok);
  const auto n = static_cast<int64_t>(v.pieces.size());
  require(vocab_size <= 0 || n <= vocab_size, "GGUF tokenizer export: the tokenizer has " + std::to_string(n) +
                                                  " tokens, more than the model's vocab of " +
                                                  std::to_string(vocab_size));
  std::vector<GgufKV> kvs;
  std::vector<std::string> tokens;
  std::vector<float> scores;
  if (v.byte_level) add_byte_level(v, tokens, kvs);
  else add_sentencepiece(v, tokens, scores, kvs);
  std::vector<int32_t> types;
  for (TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
  for (int64_t i = n; i < vocab_size; ++i) {
    tokens.push_back(pad_name(static_cast<size_t>(i)));
    types.push_back(static_cast<int32_t>(TokenType::Unused));
    if (!v.byte_level) scores.push_back(0.0f);
  }
  kvs.push_back({"tokenizer.ggml.tokens", GgufValue::string_array(std::move(tokens))});
  if (!v.byte_level) kvs.push_back({"tokenizer.ggml.scores", GgufValue::f32_array(std::move(scores))});
  kvs.push_back({"tokenizer.ggml.token_type", GgufValue::i32_array(std::move(types))});
  if (v.bos_id >= 0) kvs.push_back({"tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(v.bos_id))});
  if (v.eos_id >= 0) kvs.push_back({"tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(v.eos_id))});
  if (v.add_bos >= 0) kvs.push_back({"tokenizer.ggml.add_bos_token", GgufValue::boolean(v.add_bos == 1)});
  return kvs;
}

std::optional<std::string> hf_tokenizer_json(const Tokenizer& tok) {
  using nlohmann::json;
  const tok::VocabSpec v = vocab_spec(tok);
  if (!v.byte_level) return std::nullopt;
  const std::vector<std::string> tokens = byte_level_tokens(v);
  json vocab = json::object(), added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenType t = v.types[i];
    if (t == TokenType::Control || t == TokenType::UserDefined)
      added.push_back({{"id", i}, {"content", tokens[i]}, {"special", t == TokenType::Control}});
    else if (t != TokenType::Unused || !v.pieces[i].empty()) vocab[tokens[i]] = i;
  }
  const json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  const json pre = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", {{"Regex", v.split_pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
        byte_level}}};
  json post = nullptr;
  if (v.add_bos == 1 && v.bos_id >= 0) {
    const std::string& bos = tokens[static_cast<size_t>(v.bos_id)];
    post = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {v.bos_id}}, {"tokens", {bos}}}}}}};
  }
  const json j = {{"version", "1.0"},
                  {"added_tokens", added},
                  {"normalizer", nullptr},
                  {"pre_tokenizer", pre},
                  {"post_processor", post},
                  {"decoder", byte_level},
                  {"model",
                   {{"type", "BPE"},
                    {"ignore_merges", v.ignore_merges},
                    {"vocab", vocab},
                    {"merges", byte_level_merges(v, tokens)}}}};
  return j.dump();
}

}  // namespace pricer
