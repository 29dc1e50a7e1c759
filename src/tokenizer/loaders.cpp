// Tokenizer file formats: Meta's tiktoken tokenizer.model, Hugging Face tokenizer.json, llama2.c
// tok*.bin and the vocab embedded in a GGUF file; load_tokenizer() tells them apart.
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "io/gguf.h"
#include "io/json_util.h"
#include "tokenizer/bpe.h"

namespace pricer {
namespace {

using nlohmann::json;

// ---- tiktoken ----

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64 (padding required, as tiktoken files are written). Returns the column
// (0-based) of the first bad character, or -1 on success.
long base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return static_cast<long>(in.size());
  size_t pad = in.back() == '=' ? (in[in.size() - 2] == '=' ? 2 : 1) : 0;
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      size_t at = i + k;
      int d = 0;
      if (at >= in.size() - pad) {
        if (in[at] != '=') return static_cast<long>(at);
      } else {
        d = base64_value(in[at]);
        if (d < 0) return static_cast<long>(at);
      }
      v = v << 6 | static_cast<uint32_t>(d);
    }
    size_t bytes = i + 4 == in.size() ? 3 - pad : 3;
    for (size_t k = 0; k < bytes; ++k) out += static_cast<char>(v >> (16 - 8 * k) & 0xFF);
  }
  return -1;
}

// Llama 3's special tokens in the order Meta's tokenizer.py appends them after the ranks.
std::vector<std::string> llama3_special_tokens() {
  std::vector<std::string> s = {"<|begin_of_text|>",
                                "<|end_of_text|>",
                                "<|reserved_special_token_0|>",
                                "<|reserved_special_token_1|>",
                                "<|reserved_special_token_2|>",
                                "<|reserved_special_token_3|>",
                                "<|start_header_id|>",
                                "<|end_header_id|>",
                                "<|reserved_special_token_4|>",
                                "<|eot_id|>"};
  for (int i = 5; i < 256 - 5; ++i) s.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  return s;
}

// One "<base64 token> <rank>" line of a tiktoken file.
struct TiktokenEntry {
  std::string bytes;
  size_t rank;
  size_t line;
};

// The file's lines in order, blank ones skipped; ranks are checked later, against the whole file.
std::vector<TiktokenEntry> read_tiktoken_entries(std::string_view text, const std::string& source) {
  std::vector<TiktokenEntry> entries;
  std::string decoded;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    auto where = [&] { return source + ": line " + std::to_string(line_no) + ": "; };
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) throw Error(where() + "expected '<base64 token> <rank>'");
    long bad = base64_decode(line.substr(0, sp), decoded);
    if (bad >= 0) throw Error(where() + "invalid base64 at column " + std::to_string(bad + 1));
    std::string_view num = line.substr(sp + 1);
    size_t rank = 0;
    auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), rank);
    if (ec != std::errc() || end != num.data() + num.size() || num.empty())
      throw Error(where() + "invalid rank '" + std::string(num) + "'");
    entries.push_back({decoded, rank, line_no});
  }
  return entries;
}

// ---- tokenizer.json helpers ----

// obj[key], or null when absent (no copy: callers keep pointers into the document).
const json& member(const json& obj, const char* key) {
  static const json null;
  if (!obj.is_object()) return null;
  auto it = obj.find(key);
  return it == obj.end() ? null : *it;
}

// Optional typed members: present with the wrong type is an Error naming the key.
bool opt_bool(const json& obj, const char* key, bool def, const std::string& where) {
  const json& v = member(obj, key);
  if (v.is_null()) return def;
  if (!v.is_boolean()) throw Error(where + " '" + key + "': expected true or false");
  return v.get<bool>();
}

std::string opt_string(const json& obj, const char* key, const std::string& def, const std::string& where) {
  const json& v = member(obj, key);
  if (v.is_null()) return def;
  if (!v.is_string()) throw Error(where + " '" + key + "': expected a string");
  return v.get<std::string>();
}

// Every "type" named anywhere below j (pre_tokenizer / normalizer / decoder trees).
void collect_types(const json& j, std::vector<std::string>& types, int depth = 0) {
  if (depth > 16) return;  // these trees are a few levels deep; parse_json_strict caps nesting
  if (j.is_object()) {
    auto t = j.find("type");
    if (t != j.end() && t->is_string()) types.push_back(t->get<std::string>());
    for (const auto& [k, v] : j.items()) collect_types(v, types, depth + 1);
  } else if (j.is_array()) {
    for (const auto& v : j) collect_types(v, types, depth + 1);
  }
}

bool has_type(const std::vector<std::string>& types, std::string_view t) {
  for (const auto& x : types)
    if (x == t) return true;
  return false;
}

// Finds the first object of the given type below j.
const json* find_typed(const json& j, std::string_view type, int depth = 0) {
  if (depth > 16) return nullptr;
  if (j.is_object()) {
    auto t = j.find("type");
    if (t != j.end() && t->is_string() && t->get_ref<const std::string&>() == type) return &j;
    for (const auto& [k, v] : j.items())
      if (const json* f = find_typed(v, type, depth + 1)) return f;
  } else if (j.is_array()) {
    for (const auto& v : j)
      if (const json* f = find_typed(v, type, depth + 1)) return f;
  }
  return nullptr;
}

std::string token_name(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

// The special token the post-processor puts before the text, or -1.
int32_t template_bos(const json& root, const std::function<int32_t(const std::string&)>& id_of) {
  if (const json* tp = find_typed(member(root, "post_processor"), "TemplateProcessing")) {
    auto single = tp->find("single");
    if (single != tp->end() && single->is_array() && !single->empty()) {
      const json& first = (*single)[0];
      if (first.is_object() && first.contains("SpecialToken") && first["SpecialToken"].is_object()) {
        auto id = first["SpecialToken"].find("id");
        if (id != first["SpecialToken"].end() && id->is_string()) {
          int32_t t = id_of(id->get<std::string>());
          if (t >= 0) return t;
        }
      }
    }
  }
  return -1;
}

// BOS guess: the special token the post-processor puts before the text, else a well-known name.
int32_t guess_bos(const json& root, const std::function<int32_t(const std::string&)>& id_of) {
  if (int32_t t = template_bos(root, id_of); t >= 0) return t;
  for (const char* name : {"<|begin_of_text|>", "<s>", "<|startoftext|>"})
    if (int32_t t = id_of(name); t >= 0) return t;
  return -1;
}

int32_t guess_eos(const std::function<int32_t(const std::string&)>& id_of) {
  for (const char* name : {"<|end_of_text|>", "</s>", "<|endoftext|>"})
    if (int32_t t = id_of(name); t >= 0) return t;
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": read error");
  return std::move(ss).str();
}

// ---- GGUF ----

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const GgufFile& f) {
  const std::string& src = f.source();
  std::string model = f.get_string("tokenizer.ggml.model");
  const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
  std::vector<int32_t> types;
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) {
      if (t < 0 || t > 6)
        throw Error(src + ": key 'tokenizer.ggml.token_type': unknown token type " + std::to_string(t));
      types.push_back(static_cast<int32_t>(t));
    }
  }
  auto id_key = [&](const char* key) -> int32_t {
    auto v = f.get_int_opt(key);
    if (!v) return -1;
    if (*v < 0 || *v >= static_cast<int64_t>(tokens.size()))
      throw Error(src + ": key '" + key + "': id " + std::to_string(*v) + " outside the vocab of " +
                  std::to_string(tokens.size()));
    return static_cast<int32_t>(*v);
  };
  int32_t bos = id_key("tokenizer.ggml.bos_token_id");
  int32_t eos = id_key("tokenizer.ggml.eos_token_id");
  auto add_bos_key = [&](std::unique_ptr<Tokenizer> t) {
    if (f.has("tokenizer.ggml.add_bos_token"))
      return tok::with_add_bos(std::move(t), f.get_bool("tokenizer.ggml.add_bos_token"));
    return t;
  };
  if (model == "gpt2") {
    std::string pre = f.get_string_opt("tokenizer.ggml.pre").value_or("default");
    std::string pattern = pretokenizer_pattern(pre);
    std::vector<std::string> merges;
    if (f.has("tokenizer.ggml.merges")) merges = f.get_string_array("tokenizer.ggml.merges");
    // llama.cpp emits a Llama 3 pre-token that is itself a token whole, as tiktoken does, except
    // under "smaug-bpe" (the same split, merges always applied).
    bool ignore_merges = pattern == kLlama3Pattern && pre != "smaug-bpe";
    return add_bos_key(make_byte_level_bpe(tokens, merges, types, bos, eos, pattern, ignore_merges, src));
  }
  if (model == "llama") {
    std::vector<float> scores = f.has("tokenizer.ggml.scores") ? f.get_float_array("tokenizer.ggml.scores")
                                                               : std::vector<float>(tokens.size(), 0.0f);
    bool prefix = true;
    if (f.has("tokenizer.ggml.add_space_prefix")) prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
    return add_bos_key(make_sentencepiece_bpe(tokens, scores, types, bos, eos, prefix, src));
  }
  throw Error(src + ": key 'tokenizer.ggml.model': unsupported tokenizer model '" + model +
              "' (supported: gpt2, llama)");
}

// tokenizer_config.json's bos_token / eos_token, when the directory has one.
std::pair<std::string, std::string> config_special_names(const std::filesystem::path& dir) {
  auto p = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(p)) return {};
  json cfg = parse_json_strict(read_file(p.string()), p.string());
  if (!cfg.is_object()) return {};
  return {token_name(member(cfg, "bos_token")), token_name(member(cfg, "eos_token"))};
}

bool looks_like_tiktoken(std::string_view text) {
  size_t eol = text.find('\n');
  std::string_view line = text.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size()) return false;
  for (size_t i = 0; i < sp; ++i)
    if (base64_value(line[i]) < 0 && line[i] != '=') return false;
  for (size_t i = sp + 1; i < line.size(); ++i)
    if (line[i] < '0' || line[i] > '9') return false;
  return true;
}

}  // namespace

std::unique_ptr<Tokenizer> parse_tiktoken(std::string_view text, const std::string& source,
                                          std::size_t expected_ranks) {
  std::vector<TiktokenEntry> entries = read_tiktoken_entries(text, source);
  if (entries.empty()) throw Error(source + ": no tokens");
  if (expected_ranks > 0 && entries.size() != expected_ranks)
    throw Error(source + ": " + std::to_string(entries.size()) + " ranks, but a Llama 3 tokenizer.model has " +
                std::to_string(expected_ranks) +
                ": the file is truncated or not Llama 3's (its special tokens would get the wrong ids)");
  // Ranks are the token ids: they must number the tokens 0..n-1, each once.
  const size_t n = entries.size();
  std::vector<std::string> pieces(n);
  std::vector<uint8_t> seen(n);
  for (auto& e : entries) {
    if (e.rank >= n || seen[e.rank])
      throw Error(source + ": line " + std::to_string(e.line) + ": rank " + std::to_string(e.rank) +
                  (e.rank >= n ? " outside 0.." + std::to_string(n - 1) : " given twice"));
    seen[e.rank] = 1;
    pieces[e.rank] = std::move(e.bytes);
  }
  std::vector<TokenType> types(n, TokenType::Normal);
  std::vector<uint8_t> mergeable(n, 1);
  std::vector<int32_t> rank(n);
  for (size_t i = 0; i < n; ++i) rank[i] = static_cast<int32_t>(i);
  tok::MergeTable table;
  tok::add_all_splits(table, pieces, mergeable, rank);
  for (auto& s : llama3_special_tokens()) {
    pieces.push_back(std::move(s));
    types.push_back(TokenType::Control);
  }
  auto bos = static_cast<int32_t>(n), eos = static_cast<int32_t>(n + 1);
  // Meta's tokenizer puts BOS before every text.
  return tok::with_add_bos(tok::make_byte_level(std::move(pieces), std::move(types), std::move(table), bos, eos,
                                                kLlama3Pattern, /*ignore_merges=*/true, source),
                           true);
}

namespace {

// tokenizer.json errors name the file and the place in it.
Error json_error(const std::string& source, const std::string& where, const std::string& what) {
  return Error(source + ": " + where + ": " + what);
}

// The "model" object; only BPE models are supported.
const json& bpe_model(const json& root, const std::string& source) {
  if (!root.is_object()) throw json_error(source, "top level", "expected a JSON object");
  auto mit = root.find("model");
  if (mit == root.end() || !mit->is_object()) throw json_error(source, "key 'model'", "missing or not an object");
  const json& model = *mit;
  if (model.contains("type") && model["type"] != "BPE")
    throw json_error(source, "key 'model.type'", "unsupported model type " + model["type"].dump() + " (only BPE)");
  return model;
}

// model.vocab and added_tokens by id; ids that no entry names stay Unused.
struct JsonVocab {
  std::vector<std::string> tokens;
  std::vector<TokenType> types;
};

// An id must index the vocab's vectors, which read_json_vocab sizes to the largest id allowed.
size_t checked_id(const json& v, size_t limit, const std::string& source, const std::string& where) {
  if (!v.is_number_integer()) throw json_error(source, where, "id is not an integer");
  auto id = v.get<int64_t>();
  if (id < 0 || static_cast<uint64_t>(id) >= limit)
    throw json_error(source, where, "id " + std::to_string(id) + " outside 0.." + std::to_string(limit - 1));
  return static_cast<size_t>(id);
}

// model.vocab's tokens, each id once. Returns one past the highest id used.
size_t add_model_vocab(const json& vocab, const std::string& source, JsonVocab& out) {
  size_t n = 0;
  for (const auto& [spelling, v] : vocab.items()) {
    const std::string where = "key 'model.vocab' token '" + spelling + "'";
    size_t id = checked_id(v, out.tokens.size(), source, where);
    if (out.types[id] != TokenType::Unused)
      throw json_error(source, where, "id " + std::to_string(id) + " already used by '" + out.tokens[id] + "'");
    out.tokens[id] = spelling;
    out.types[id] = TokenType::Normal;
    n = std::max(n, id + 1);
  }
  return n;
}

// added_tokens may repeat a vocab id: the added entry wins. Returns one past the highest id used.
size_t add_added_tokens(const json& added, const std::string& source, JsonVocab& out) {
  size_t n = 0;
  for (size_t i = 0; i < added.size(); ++i) {
    const json& a = added[i];
    std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id"))
      throw json_error(source, where, "expected an object with 'id' and 'content'");
    size_t id = checked_id(a["id"], out.tokens.size(), source, where);
    out.tokens[id] = a["content"].get<std::string>();
    bool special = opt_bool(a, "special", false, source + ": " + where);
    out.types[id] = special ? TokenType::Control : TokenType::UserDefined;
    n = std::max(n, id + 1);
  }
  return n;
}

JsonVocab read_json_vocab(const json& root, const json& model, const std::string& source) {
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object())
    throw json_error(source, "key 'model.vocab'", "missing or not an object");
  const json& vocab = *vit;
  static const json no_tokens = json::array();
  const json& added = member(root, "added_tokens").is_null() ? no_tokens : member(root, "added_tokens");
  if (!added.is_array()) throw json_error(source, "key 'added_tokens'", "not an array");

  // Ids must fit the entries present (with a little room for unused ids): a hostile id cannot
  // size the vocab.
  const size_t limit = vocab.size() + added.size() + 1024;
  JsonVocab out{std::vector<std::string>(limit), std::vector<TokenType>(limit, TokenType::Unused)};
  size_t n = add_model_vocab(vocab, source, out);
  n = std::max(n, add_added_tokens(added, source, out));
  if (n == 0) throw json_error(source, "key 'model.vocab'", "empty vocab");
  out.tokens.resize(n);
  out.types.resize(n);
  return out;
}

// model.merges in priority order, each "left right" or [left, right]; absent or null means none.
std::vector<std::pair<std::string, std::string>> read_json_merges(const json& model, const std::string& source) {
  std::vector<std::pair<std::string, std::string>> merges;
  auto m = model.find("merges");
  if (m == model.end() || m->is_null()) return merges;
  if (!m->is_array()) throw json_error(source, "key 'model.merges'", "not an array");
  merges.reserve(m->size());
  for (size_t r = 0; r < m->size(); ++r) {
    const json& e = (*m)[r];
    std::string where = "model.merges[" + std::to_string(r) + "]";
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
        throw json_error(source, where, "expected \"left right\"");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      throw json_error(source, where, "expected \"left right\" or [left, right]");
    }
  }
  return merges;
}

// Token ids by spelling, Unused ids left out; a spelling given twice keeps its lowest id.
std::unordered_map<std::string, int32_t> ids_by_spelling(const JsonVocab& vocab) {
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < vocab.tokens.size(); ++i)
    if (vocab.types[i] != TokenType::Unused) ids.try_emplace(vocab.tokens[i], static_cast<int32_t>(i));
  return ids;
}

// A BOS/EOS named by the caller must be in the vocab: only a guessed one may be absent.
int32_t named_special_id(const std::string& name, const char* what,
                         const std::function<int32_t(const std::string&)>& id_of, const std::string& source) {
  int32_t id = id_of(name);
  if (id < 0) throw Error(source + ": " + what + " token '" + name + "' is not in the vocab");
  return id;
}

struct SpmPieces {
  std::vector<std::string> pieces;  // raw bytes by id
  int32_t unk = -1;  // the first Unknown token
};

// Picks out byte tokens (<0xNN>, under byte_fallback) and the unknown token among the normal ones:
// only what stays normal is spelled with "▁" and so converted to raw bytes.
SpmPieces spm_pieces(const std::vector<std::string>& tokens, std::vector<TokenType>& types, bool byte_fallback,
                     const std::string& unk_name) {
  SpmPieces out{std::vector<std::string>(tokens.size()), -1};
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (types[i] == TokenType::Normal) {
      if (byte_fallback && tokens[i].size() == 6 && tokens[i].rfind("<0x", 0) == 0) types[i] = TokenType::Byte;
      else if (!unk_name.empty() && tokens[i] == unk_name) types[i] = TokenType::Unknown;
    }
    out.pieces[i] = types[i] == TokenType::Normal ? tok::spm_piece_to_raw(tokens[i]) : tokens[i];
    if (types[i] == TokenType::Unknown && out.unk < 0) out.unk = static_cast<int32_t>(i);
  }
  return out;
}

// SentencePiece merges by rank: both sides and the merged spelling must all be tokens.
tok::MergeTable spm_merge_table(const std::vector<std::pair<std::string, std::string>>& merges,
                                const std::function<int32_t(const std::string&)>& id_of, const std::string& source) {
  tok::MergeTable table;
  for (size_t r = 0; r < merges.size(); ++r) {
    int32_t l = id_of(merges[r].first), rt = id_of(merges[r].second);
    int32_t j = id_of(merges[r].first + merges[r].second);
    if (l < 0 || rt < 0 || j < 0)
      throw json_error(source, "model.merges[" + std::to_string(r) + "]",
                       "'" + merges[r].first + " " + merges[r].second + "' names a token outside the vocab");
    table.add(l, rt, static_cast<int32_t>(r), j);
  }
  return table;
}

// The dummy prefix: a Prepend("▁") normalizer, or Metaspace unless told never to.
bool spm_dummy_prefix(const json& root, const std::vector<std::string>& kinds, const std::string& source) {
  bool prefix = has_type(kinds, "Prepend");
  if (const json* ms = find_typed(member(root, "pre_tokenizer"), "Metaspace")) {
    const std::string in_ms = source + ": pre_tokenizer Metaspace";
    std::string scheme = opt_string(*ms, "prepend_scheme", "always", in_ms);
    prefix = opt_bool(*ms, "add_prefix_space", true, in_ms) && scheme != "never";
  }
  return prefix;
}

// Byte-level models run only the steps implemented here (ByteLevel, Split, Sequence, NFC), so
// anything else is refused rather than silently tokenized differently. Returns the split regex.
std::string byte_level_split_pattern(const json& root, const std::vector<std::string>& kinds,
                                     const std::string& source) {
  if (!has_type(kinds, "ByteLevel"))
    throw json_error(source, "key 'pre_tokenizer'", "neither byte-level nor SentencePiece-style; unsupported");
  for (const auto& k : kinds)
    if (k != "ByteLevel" && k != "Split" && k != "Sequence" && k != "NFC")
      throw json_error(source, "pre_tokenizer/normalizer/decoder", "unsupported step type '" + k + "'");
  // The split regex: an explicit Split step, else ByteLevel's built-in GPT-2 pattern.
  std::string pattern = kGpt2Pattern;
  const json& pre = member(root, "pre_tokenizer");
  if (const json* split = find_typed(pre, "Split")) {
    const json& p = member(*split, "pattern");
    if (!p.is_object() || !p.contains("Regex") || !p["Regex"].is_string())
      throw json_error(source, "key 'pre_tokenizer' Split", "expected pattern {\"Regex\": ...}");
    const std::string in_split = source + ": pre_tokenizer Split";
    if (opt_string(*split, "behavior", "Isolated", in_split) != "Isolated" ||
        opt_bool(*split, "invert", false, in_split))
      throw json_error(source, "key 'pre_tokenizer' Split", "only behavior Isolated without invert is supported");
    pattern = p["Regex"].get<std::string>();
  }
  if (const json* bl = find_typed(pre, "ByteLevel");
      bl && opt_bool(*bl, "add_prefix_space", false, source + ": pre_tokenizer ByteLevel"))
    throw json_error(source, "key 'pre_tokenizer' ByteLevel", "add_prefix_space is not supported");
  return pattern;
}

std::unique_ptr<Tokenizer> tokenizer_from_json(const json& root, const std::string& source,
                                               const std::string& bos_token, const std::string& eos_token) {
  const json& model = bpe_model(root, source);
  JsonVocab vocab = read_json_vocab(root, model, source);
  std::vector<std::pair<std::string, std::string>> merges = read_json_merges(model, source);

  std::unordered_map<std::string, int32_t> ids = ids_by_spelling(vocab);
  auto id_of = [&](const std::string& name) -> int32_t {
    auto it = ids.find(name);
    return it == ids.end() ? -1 : it->second;
  };
  int32_t bos = bos_token.empty() ? guess_bos(root, id_of) : named_special_id(bos_token, "BOS", id_of, source);
  int32_t eos = eos_token.empty() ? guess_eos(id_of) : named_special_id(eos_token, "EOS", id_of, source);
  auto record_add_bos = [&](std::unique_ptr<Tokenizer> t) {
    if (bos >= 0 && template_bos(root, id_of) == bos) return tok::with_add_bos(std::move(t), true);
    return t;
  };

  std::vector<std::string> kinds;
  for (const char* key : {"normalizer", "pre_tokenizer", "decoder"}) collect_types(member(root, key), kinds);
  const std::string in_model = source + ": key 'model'";
  bool byte_fallback = opt_bool(model, "byte_fallback", false, in_model);
  bool spm = byte_fallback || has_type(kinds, "Metaspace") || has_type(kinds, "ByteFallback");

  if (spm) {
    // SentencePiece-style: literal UTF-8 with "▁" for spaces, merges by rank.
    std::string unk_name = opt_string(model, "unk_token", "", in_model);
    SpmPieces spm_vocab = spm_pieces(vocab.tokens, vocab.types, byte_fallback, unk_name);
    tok::MergeTable table = spm_merge_table(merges, id_of, source);
    bool prefix = spm_dummy_prefix(root, kinds, source);
    return record_add_bos(tok::make_sentencepiece(std::move(spm_vocab.pieces), std::move(vocab.types), std::move(table),
                                                  bos, eos, spm_vocab.unk, prefix, source));
  }

  std::string pattern = byte_level_split_pattern(root, kinds, source);
  bool ignore_merges = opt_bool(model, "ignore_merges", false, in_model);
  return record_add_bos(
      tok::make_byte_level_from_pairs(vocab.tokens, merges, vocab.types, bos, eos, pattern, ignore_merges, source));
}

}  // namespace

std::unique_ptr<Tokenizer> parse_tokenizer_json(std::string_view text, const std::string& source,
                                                const std::string& bos_token, const std::string& eos_token) {
  json root = parse_json_strict(text, source);
  try {
    return tokenizer_from_json(root, source, bos_token, eos_token);
  } catch (const json::exception& e) {
    // Every access is checked first; this only guards against a case missed there.
    throw Error(source + ": unexpected JSON structure: " + e.what());
  }
}

std::unique_ptr<Tokenizer> parse_llama2c_tokenizer(std::string_view data, const std::string& source,
                                                   int32_t vocab_size) {
  auto rd32 = [&](size_t off) {
    uint32_t v;
    std::memcpy(&v, data.data() + off, 4);
    return v;
  };
  auto at = [&](size_t off) { return source + ": offset " + std::to_string(off) + ": "; };
  if (data.size() < 4) throw Error(at(0) + "truncated header (max_token_length)");
  auto max_len = static_cast<int32_t>(rd32(0));
  if (max_len < 0 || max_len > (1 << 16))
    throw Error(at(0) + "max_token_length " + std::to_string(max_len) + " outside 0..65536");
  std::vector<std::string> tokens;
  std::vector<float> scores;
  size_t off = 4;
  while (vocab_size < 0 ? off < data.size() : tokens.size() < static_cast<size_t>(vocab_size)) {
    std::string token_no = "token " + std::to_string(tokens.size()) + ": ";
    if (data.size() - off < 8) throw Error(at(off) + token_no + "truncated record");
    float score;
    std::memcpy(&score, data.data() + off, 4);
    auto len = static_cast<int32_t>(rd32(off + 4));
    if (len < 0 || len > max_len)
      throw Error(at(off + 4) + token_no + "length " + std::to_string(len) + " outside 0..max_token_length " +
                  std::to_string(max_len));
    if (data.size() - off - 8 < static_cast<size_t>(len))
      throw Error(at(off + 8) + token_no + "truncated bytes (" + std::to_string(len) + " expected)");
    if (std::isnan(score)) throw Error(at(off) + token_no + "score is NaN");
    tokens.emplace_back(data.substr(off + 8, static_cast<size_t>(len)));
    scores.push_back(score);
    off += 8 + static_cast<size_t>(len);
  }
  if (off != data.size()) throw Error(at(off) + std::to_string(data.size() - off) + " bytes after the last token");
  if (tokens.empty()) throw Error(source + ": no tokens");
  // llama2.c: <unk> = 0, BOS = 1, EOS = 2.
  int32_t bos = tokens.size() > 1 ? 1 : -1, eos = tokens.size() > 2 ? 2 : -1;
  std::vector<TokenType> types = tok::spm_guess_types(tokens, bos, eos);
  std::vector<int32_t> type_ids(types.size());
  for (size_t i = 0; i < types.size(); ++i) type_ids[i] = static_cast<int32_t>(types[i]);
  // llama2.c feeds BOS first.
  return tok::with_add_bos(make_sentencepiece_bpe(tokens, scores, type_ids, bos, eos, true, source), true);
}

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file) { return tokenizer_from_gguf(file); }

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    if (fs::exists(dir / "tokenizer.json")) {
      auto [bos, eos] = config_special_names(dir);
      std::string p = (dir / "tokenizer.json").string();
      return parse_tokenizer_json(read_file(p), p, bos, eos);
    }
    if (fs::exists(dir / "tokenizer.model")) return load_tokenizer((dir / "tokenizer.model").string());
    throw Error(path + ": directory holds neither tokenizer.json nor tokenizer.model");
  }
  if (!fs::exists(path, ec)) throw Error(path + ": no such file");
  {
    std::ifstream f(path, std::ios::binary);
    char magic[4] = {};
    f.read(magic, 4);
    if (f.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return tokenizer_from_gguf(GgufFile::open(path));
  }
  std::string data = read_file(path);
  size_t first = data.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && data[first] == '{') {
    std::pair<std::string, std::string> names;
    if (fs::path(path).filename() == "tokenizer.json") names = config_special_names(fs::path(path).parent_path());
    return parse_tokenizer_json(data, path, names.first, names.second);
  }
  if (looks_like_tiktoken(data)) return parse_tiktoken(data, path);
  if (fs::path(path).extension() == ".bin") return parse_llama2c_tokenizer(data, path);
  if (!data.empty() && data[0] == '\x0a')
    throw Error(path +
                ": looks like a SentencePiece protobuf model, which is not supported "
                "(use the model's tokenizer.json or GGUF file)");
  throw Error(path +
              ": not a recognised tokenizer (tiktoken tokenizer.model, tokenizer.json, "
              "llama2.c tok*.bin or GGUF)");
}

}  // namespace pricer
