// Tokenizer files: GGUF vocabs through the GGUF reader, and bad input of every format turning into
// pricer::Error that names the file and the place.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
using nlohmann::json;

namespace {

const fs::path kShared = PRICER_SHARED_DIR;

// Runs f, which must throw pricer::Error whose message holds every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const pricer::Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// Byte-level vocab in GPT-2 spelling: the 256 bytes in byte order, then "Ġt", "he", "Ġthe".
std::vector<std::string> small_tokens() {
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.push_back(pricer::tok::byte_to_unicode()[b]);
  for (const char* s : {"\xC4\xA0t", "he", "\xC4\xA0the", "<|eos|>"}) t.push_back(s);
  return t;
}
const std::vector<std::string> kSmallMerges = {"\xC4\xA0 t", "h e", "\xC4\xA0t he"};

json small_json() {
  json vocab = json::object();
  auto t = small_tokens();
  for (size_t i = 0; i + 1 < t.size(); ++i) vocab[t[i]] = i;
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", kSmallMerges}}},
          {"added_tokens", {{{"id", 259}, {"content", "<|eos|>"}, {"special", true}}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}}}};
}

std::string tokbin(const std::vector<std::pair<float, std::string>>& toks, int32_t max_len) {
  std::string out(reinterpret_cast<const char*>(&max_len), 4);
  for (auto& [score, s] : toks) {
    auto len = static_cast<int32_t>(s.size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += s;
  }
  return out;
}

}  // namespace

TEST(GgufVocab, Gpt2VocabMatchesTokenizerJson) {
  auto tokens = small_tokens();
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;  // <|eos|> is a control token
  pricer::GgufWriter w;
  w.add("tokenizer.ggml.model", pricer::GgufValue::string("gpt2"));
  w.add("tokenizer.ggml.pre", pricer::GgufValue::string("gpt-2"));
  w.add("tokenizer.ggml.tokens", pricer::GgufValue::string_array(tokens));
  w.add("tokenizer.ggml.merges", pricer::GgufValue::string_array(kSmallMerges));
  w.add("tokenizer.ggml.token_type", pricer::GgufValue::i32_array(types));
  w.add("tokenizer.ggml.eos_token_id", pricer::GgufValue::u32(259));
  auto bytes = w.to_bytes();
  auto file = pricer::GgufFile::parse(bytes, "small.gguf");
  auto g = pricer::load_gguf_tokenizer(file);
  auto j = pricer::parse_tokenizer_json(small_json().dump(), "small.json");
  EXPECT_EQ(g->eos_id(), 259);
  EXPECT_EQ(g->bos_id(), -1);
  EXPECT_EQ(j->eos_id(), -1);  // tokenizer.json alone names no EOS this build knows
  EXPECT_EQ(g->encode(" the theme<|eos|>", true), (Ids{258, 258, 'm', 'e', 259}));
  for (const char* s : {" the theme", "hello there", "<|eos|> the", "\xFF the"})
    EXPECT_EQ(g->encode(s, true), j->encode(s, true)) << s;
}

TEST(GgufVocab, LlamaVocabWithScores) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>",          "<0x41>",        "\xE2\x96\x81",
                                     "h",     "i",   "\xE2\x96\x81h", "\xE2\x96\x81hi"};
  std::vector<float> scores = {0, 0, 0, 0, -5, -5, -5, -1, -2};
  std::vector<int32_t> types = {2, 3, 3, 6, 1, 1, 1, 1, 1};
  pricer::GgufWriter w;
  w.add("tokenizer.ggml.model", pricer::GgufValue::string("llama"));
  w.add("tokenizer.ggml.tokens", pricer::GgufValue::string_array(tokens));
  w.add("tokenizer.ggml.scores", pricer::GgufValue::f32_array(scores));
  w.add("tokenizer.ggml.token_type", pricer::GgufValue::i32_array(types));
  w.add("tokenizer.ggml.bos_token_id", pricer::GgufValue::u32(1));
  w.add("tokenizer.ggml.eos_token_id", pricer::GgufValue::u32(2));
  auto bytes = w.to_bytes();
  auto t = pricer::load_gguf_tokenizer(pricer::GgufFile::parse(bytes, "llama.gguf"));
  EXPECT_EQ(t->encode("hi"), (Ids{8}));
  EXPECT_EQ(t->encode("hiA"), (Ids{8, 3}));
  EXPECT_EQ(t->decode({1, 8, 3}), "<s>hiA");
  // An unknown character without a byte token becomes <unk>.
  EXPECT_EQ(t->encode("hiB"), (Ids{8, 0}));
}

TEST(GgufVocab, SharedTinyLlama2File) {
  fs::path p = kShared / "fixtures/gguf/llama-2-tiny-random.gguf";
  if (!fs::exists(p)) GTEST_SKIP() << "shared fixture " << p << " not present";
  auto t = pricer::load_tokenizer(p.string());
  ASSERT_GT(t->vocab_size(), 259);
  EXPECT_GE(t->bos_id(), 0);
  for (std::string s : {"Hello world", " leading space", "caf\xC3\xA9 \xF0\x9F\xA6\x99 $19.99", ""}) {
    Ids ids = t->encode(s);
    EXPECT_EQ(t->decode(ids), s) << s;
  }
  if (t->vocab_size() == 32000) {
    // Llama 2's own vocab: "▁Hello" 15043, "▁world" 3186.
    EXPECT_EQ(t->encode("Hello world"), (Ids{15043, 3186}));
  }
}

TEST(BadFiles, TokenizerJson) {
  expect_error([] { pricer::parse_tokenizer_json("{\"model\": {", "bad.json"); }, {"bad.json", "line 1"});
  expect_error([] { pricer::parse_tokenizer_json("[]", "bad.json"); }, {"bad.json", "object"});
  expect_error([] { pricer::parse_tokenizer_json("{}", "bad.json"); }, {"bad.json", "'model'"});
  json j = small_json();
  j["model"]["type"] = "WordPiece";
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "model.type", "WordPiece"});
  j = small_json();
  j["model"]["vocab"]["zz"] = 1000000000;  // hostile id: must not size the vocab
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "'zz'", "1000000000"});
  j = small_json();
  j["model"]["vocab"]["zz"] = "x";
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "'zz'", "integer"});
  j = small_json();
  j["model"]["vocab"]["zz"] = 5;
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "id 5", "already used"});
  j = small_json();
  j["model"]["merges"].push_back("q zz");
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "merge 3", "'zz'"});
  j = small_json();
  j["model"]["merges"].push_back("nospace");
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "merges[3]"});
  j = small_json();
  j["model"]["merges"].push_back(json::array({"a"}));
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "merges[3]"});
  j = small_json();
  j["added_tokens"].push_back({{"id", 3}});
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "added_tokens[1]"});
  j = small_json();
  j["model"]["vocab"].erase(pricer::tok::byte_to_unicode()[0x41]);
  j["model"]["merges"] = json::array();
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "0x41"});
  j = small_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}, {{"type", "ByteLevel"}}}}};
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "Whitespace"});
  j = small_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  j["decoder"] = {{"type", "ByteLevel"}};
  expect_error([&] { pricer::parse_tokenizer_json(j.dump(), "t.json"); }, {"t.json", "pattern"});
  expect_error([] { pricer::parse_tokenizer_json(small_json().dump(), "t.json", "<nope>"); }, {"t.json", "<nope>"});
}

TEST(BadFiles, Llama2cTokBin) {
  auto good = tokbin({{0, "<unk>"}, {0, "<s>"}, {0, "</s>"}, {-1, "a"}}, 5);
  EXPECT_EQ(pricer::parse_llama2c_tokenizer(good, "tok.bin")->vocab_size(), 4);
  expect_error([] { pricer::parse_llama2c_tokenizer(std::string("\x05\x00", 2), "tok.bin"); },
               {"tok.bin", "offset 0", "truncated"});
  expect_error([&] { pricer::parse_llama2c_tokenizer(good.substr(0, good.size() - 1), "tok.bin"); },
               {"tok.bin", "token 3", "truncated"});
  expect_error([&] { pricer::parse_llama2c_tokenizer(good.substr(0, good.size() - 3), "tok.bin"); },
               {"tok.bin", "token 3", "truncated"});
  // A huge length must be refused before anything is allocated for it.
  auto huge = tokbin({{0, "<unk>"}}, 5);
  int32_t big = 0x7FFFFFF0;
  std::memcpy(huge.data() + 8, &big, 4);
  expect_error([&] { pricer::parse_llama2c_tokenizer(huge, "tok.bin"); }, {"tok.bin", "offset 8", "2147483632"});
  auto neg = good;
  int32_t minus = -3;
  std::memcpy(neg.data() + 8, &minus, 4);
  expect_error([&] { pricer::parse_llama2c_tokenizer(neg, "tok.bin"); }, {"tok.bin", "offset 8", "-3"});
  expect_error(
      [] {
        pricer::parse_llama2c_tokenizer(tokbin({{0, "toolong"}}, 3), "tok.bin");
      },
      {"tok.bin", "max_token_length 3"});
  auto bad_max = good;
  int32_t m = -1;
  std::memcpy(bad_max.data(), &m, 4);
  expect_error([&] { pricer::parse_llama2c_tokenizer(bad_max, "tok.bin"); }, {"tok.bin", "max_token_length"});
  expect_error(
      [] {
        pricer::parse_llama2c_tokenizer(tokbin({{std::nanf(""), "a"}}, 3), "tok.bin");
      },
      {"tok.bin", "NaN"});
  expect_error([&] { pricer::parse_llama2c_tokenizer(good, "tok.bin", 3); }, {"tok.bin", "after the last token"});
  expect_error([&] { pricer::parse_llama2c_tokenizer(good, "tok.bin", 9); }, {"tok.bin", "token 4", "truncated"});
  expect_error([] { pricer::parse_llama2c_tokenizer(tokbin({}, 3), "tok.bin"); }, {"tok.bin", "no tokens"});
}

TEST(BadFiles, Tiktoken) {
  std::string good;
  for (int b = 0; b < 256; ++b) {
    static const char* al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    good += std::string{al[b >> 2], al[(b & 3) << 4], '=', '='} + " " + std::to_string(b) + "\n";
  }
  // Meta's file has 128,000 ranks: one cut short at a line boundary is refused, not renumbered.
  expect_error([&] { pricer::parse_tiktoken(good, "tok.model"); }, {"tok.model", "256 ranks", "128000", "truncated"});
  // The format itself, on a small file (no rank count expected):
  auto t = pricer::parse_tiktoken(good, "tok.model", 0);
  EXPECT_EQ(t->vocab_size(), 256 + 256);
  EXPECT_EQ(t->bos_id(), 256);
  EXPECT_EQ(t->encode("hi"), (Ids{'h', 'i'}));
  expect_error([&] { pricer::parse_tiktoken(good + "aGk* 256\n", "tok.model", 0); },
               {"tok.model", "line 257", "base64", "column 4"});
  expect_error([&] { pricer::parse_tiktoken(good + "aGk 256\n", "tok.model", 0); },
               {"tok.model", "line 257", "base64"});
  expect_error([&] { pricer::parse_tiktoken(good + "aGk=\n", "tok.model", 0); }, {"tok.model", "line 257"});
  expect_error([&] { pricer::parse_tiktoken(good + "aGk= x\n", "tok.model", 0); }, {"tok.model", "line 257", "rank"});
  expect_error([&] { pricer::parse_tiktoken(good + "aGk= 7\n", "tok.model", 0); }, {"tok.model", "line 257", "twice"});
  expect_error([&] { pricer::parse_tiktoken(good + "aGk= 99999999\n", "tok.model", 0); },
               {"tok.model", "line 257", "outside"});
  expect_error([] { pricer::parse_tiktoken("", "tok.model", 0); }, {"tok.model", "no tokens"});
}

TEST(BadFiles, LoadTokenizerPaths) {
  expect_error([] { pricer::load_tokenizer("/nonexistent/tokenizer.json"); }, {"/nonexistent/tokenizer.json"});
  fs::path dir = fs::temp_directory_path() / ("pricer_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "garbage.txt") << "not a tokenizer at all\n";
  expect_error([&] { pricer::load_tokenizer((dir / "garbage.txt").string()); }, {"garbage.txt", "not a recognised"});
  // A model directory: tokenizer.json with tokenizer_config.json naming the EOS token.
  std::ofstream(dir / "tokenizer.json") << small_json().dump();
  std::ofstream(dir / "tokenizer_config.json") << json{{"eos_token", {{"content", "<|eos|>"}}}}.dump();
  auto t = pricer::load_tokenizer(dir.string());
  EXPECT_EQ(t->eos_id(), 259);
  EXPECT_EQ(t->encode(" the"), (Ids{258}));
  fs::remove_all(dir);
}
