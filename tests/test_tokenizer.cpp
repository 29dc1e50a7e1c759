// Tokenizer behaviour: hand-made vocabs with hand-derived ids, the merge loop against its
// reference, and exactness against Llama 3 / llama2.c fixtures when ../shared is present.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "cli_test_util.h"
#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using pricer::Tokenizer;
using Ids = std::vector<int32_t>;

namespace {

const fs::path kShared = PRICER_SHARED_DIR;

using pricer::cli_test::slurp;

// GPT-2 spelling of a byte string, written out independently of the library's table.
std::string spell(std::string_view raw) {
  std::string out;
  for (unsigned char b : raw) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    uint32_t cp = b;
    if (!printable) {
      cp = 256;
      for (unsigned x = 0; x < b; ++x)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) ++cp;
    }
    if (cp < 0x80) {
      out += char(cp);
    } else {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

// A small byte-level vocab: ids 0..255 are the bytes in byte order, then these merges.
// Ranks: 0 "Ġ t", 1 "h e", 2 "Ġt he", 3 "l o", 4 "lo w", 5 "e r", 6 "w e", 7 "1 2".
nlohmann::json hand_vocab_json(bool array_merges, bool llama3_split) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[spell(std::string(1, char(b)))] = b;
  std::vector<std::pair<std::string, std::string>> merges = {{" ", "t"},  {"h", "e"}, {" t", "he"}, {"l", "o"},
                                                             {"lo", "w"}, {"e", "r"}, {"w", "e"},   {"1", "2"}};
  nlohmann::json m = nlohmann::json::array();
  int id = 256;
  for (auto& [l, r] : merges) {
    vocab[spell(l + r)] = id++;
    if (array_merges) m.push_back({spell(l), spell(r)});
    else m.push_back(spell(l) + " " + spell(r));
  }
  nlohmann::json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  if (llama3_split)
    pre = {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "Split"},
              {"pattern", {{"Regex", pricer::kLlama3Pattern}}},
              {"behavior", "Isolated"},
              {"invert", false}},
             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}},
          {"added_tokens",
           {{{"id", 264}, {"content", "<|end|>"}, {"special", true}},
            {{"id", 265}, {"content", "<sep>"}, {"special", false}}}},
          {"pre_tokenizer", pre},
          {"decoder", {{"type", "ByteLevel"}}}};
}

std::unique_ptr<Tokenizer> hand_tokenizer(bool array_merges = false, bool llama3_split = false) {
  return pricer::parse_tokenizer_json(hand_vocab_json(array_merges, llama3_split).dump(), "hand.json");
}

}  // namespace

TEST(ByteAlphabet, KnownSpellingsAndRoundTrip) {
  const auto& a = pricer::tok::byte_to_unicode();
  EXPECT_EQ(a[' '], "\xC4\xA0");  // Ġ U+0120
  EXPECT_EQ(a['\n'], "\xC4\x8A");  // Ċ U+010A
  EXPECT_EQ(a[0], "\xC4\x80");  // Ā U+0100
  EXPECT_EQ(a[0xAD], "\xC5\x83");  // Ń U+0143
  EXPECT_EQ(a['A'], "A");
  std::string all, back;
  for (int b = 0; b < 256; ++b) {
    EXPECT_EQ(a[b], spell(std::string(1, char(b))));
    all += a[b];
  }
  ASSERT_TRUE(pricer::tok::unicode_to_bytes(all, back));
  ASSERT_EQ(back.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(static_cast<unsigned char>(back[b]), b);
  EXPECT_FALSE(pricer::tok::unicode_to_bytes("\xC4\xA0\xE2\x96\x81", back));  // ▁ is outside
}

TEST(HandBpe, MergesByRankWithinPreTokens) {
  auto t = hand_tokenizer();
  EXPECT_EQ(t->vocab_size(), 266);
  // "the" -> t + he; " lower" -> Ġ + low + er ("l o" 3, then "lo w" 4, then "e r" 5).
  EXPECT_EQ(t->encode("the lower"), (Ids{'t', 257, ' ', 260, 261}));
  EXPECT_EQ(t->encode(" the"), (Ids{258}));
  // "wer": "e r" (rank 5) beats "w e" (rank 6) although "w e" is further left.
  EXPECT_EQ(t->encode("wer"), (Ids{'w', 261}));
  EXPECT_EQ(t->encode("we"), (Ids{262}));
  EXPECT_EQ(t->decode(t->encode("the lower")), "the lower");
  EXPECT_EQ(t->token_bytes(258), " the");
}

TEST(HandBpe, ArrayMergesMatchStringMerges) {
  auto a = hand_tokenizer(false), b = hand_tokenizer(true);
  for (const char* s : {"the lower", "we were lower than the tower", "1212 12"})
    EXPECT_EQ(a->encode(s), b->encode(s)) << s;
}

TEST(HandBpe, PreTokenizerPatternDecidesPieces) {
  auto gpt2 = hand_tokenizer(false, false), llama3 = hand_tokenizer(false, true);
  // GPT-2 keeps "1212" as one piece; Llama 3 splits digits in runs of 3: "121" "2".
  EXPECT_EQ(gpt2->encode("1212"), (Ids{263, 263}));
  EXPECT_EQ(llama3->encode("1212"), (Ids{263, '1', '2'}));
}

TEST(HandBpe, SpecialTokens) {
  auto t = hand_tokenizer();
  // Not allowed: the special text is plain text ("<|", "end", "|>" as GPT-2 splits it).
  EXPECT_EQ(t->encode("a<|end|>b"), (Ids{'a', '<', '|', 'e', 'n', 'd', '|', '>', 'b'}));
  EXPECT_EQ(t->encode("a<|end|>b", true), (Ids{'a', 264, 'b'}));
  // A non-special added token always matches.
  EXPECT_EQ(t->encode("x<sep>y"), (Ids{'x', 265, 'y'}));
  EXPECT_EQ(t->decode({'a', 264, 'b', 265}), "a<|end|>b<sep>");
  EXPECT_EQ(t->decode(t->encode("<|end|><|end|> the", true)), "<|end|><|end|> the");
}

TEST(HandBpe, EmptyAndInvalidUtf8) {
  auto t = hand_tokenizer();
  EXPECT_TRUE(t->encode("").empty());
  EXPECT_EQ(t->decode({}), "");
  // Invalid UTF-8 (lone continuation, truncated sequence, overlong, 0xFF) still round trips.
  for (std::string s : {std::string("\x80"), std::string("ab\xC3"), std::string("\xC0\xAF the"),
                        std::string("x\xFF\xFEy"), std::string("\xE2\x82 lower\xF0\x9F")}) {
    Ids ids = t->encode(s);
    EXPECT_EQ(t->decode(ids), s);
  }
  EXPECT_EQ(t->encode("\xFF"), (Ids{0xFF}));
}

TEST(HandBpe, OutOfRangeIdsThrow) {
  auto t = hand_tokenizer();
  EXPECT_THROW(t->decode({266}), pricer::Error);
  EXPECT_THROW(t->decode({-1}), pricer::Error);
  EXPECT_THROW(t->token_bytes(1000), pricer::Error);
}

TEST(HandBpe, GuessesNoBosOrEosWhenNoneIsKnown) {
  auto t = hand_tokenizer();
  EXPECT_EQ(t->bos_id(), -1);
  EXPECT_EQ(t->eos_id(), -1);
}

TEST(HandBpe, IgnoreMergesEmitsWholeTokens) {
  // "xyz" is a token no merge reaches: only with ignore_merges is the pre-token emitted whole.
  auto j = hand_vocab_json(false, true);
  j["model"]["vocab"]["xyz"] = 266;
  EXPECT_EQ(pricer::parse_tokenizer_json(j.dump(), "h.json")->encode("xyz"), (Ids{'x', 'y', 'z'}));
  j["model"]["ignore_merges"] = true;
  auto t = pricer::parse_tokenizer_json(j.dump(), "h.json");
  EXPECT_EQ(t->encode("xyz"), (Ids{266}));
  EXPECT_EQ(t->encode("xyzw"), (Ids{'x', 'y', 'z', 'w'}));
}

TEST(HandBpe, ConcurrentEncodesAgree) {
  auto t = hand_tokenizer();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("the lower tower " + std::to_string(i * 7919) + " we were");
  std::vector<Ids> expected;
  for (auto& s : texts) expected.push_back(t->encode(s));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&, k] {
      for (int rep = 0; rep < 5; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (t->encode(texts[(i + k * 13) % texts.size()]) != expected[(i + k * 13) % texts.size()]) ++mismatches[k];
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(SentencePieceJson, ByteFallbackVocab) {
  // Hugging Face's SentencePiece-style BPE: "▁" spaces, <0xNN> fallback, merges by rank.
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  int id = 259;  // ▁ t h e ▁t he ▁the
  for (const char* p : {"\xE2\x96\x81", "t", "h", "e", "\xE2\x96\x81t", "he", "\xE2\x96\x81the"}) vocab[p] = id++;
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"byte_fallback", true},
        {"unk_token", "<unk>"},
        {"merges", {"\xE2\x96\x81 t", "h e", "\xE2\x96\x81t he"}}}},
      {"added_tokens",
       {{{"id", 1}, {"content", "<s>"}, {"special", true}}, {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}}}}},
      {"decoder", {{"type", "ByteFallback"}}}};
  auto t = pricer::parse_tokenizer_json(j.dump(), "spm.json");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->encode("the"), (Ids{265}));
  EXPECT_EQ(t->encode("the th"), (Ids{265, 263, 261}));
  EXPECT_EQ(t->encode("\xC3\xA9"), (Ids{259, 3 + 0xC3, 3 + 0xA9}));
  for (const char* s : {"the th", "\xC3\xA9t", "x  y", ""}) EXPECT_EQ(t->decode(t->encode(s)), s);
}

TEST(MergeLoop, MatchesReferenceOnRandomTables) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int alphabet = 2 + trial % 6;
    pricer::tok::MergeTable table;
    int next_id = alphabet;
    // Random merges over the alphabet and earlier merge results; ranks drawn with ties.
    std::uniform_int_distribution<int> rank(0, 20);
    for (int m = 0; m < 12; ++m) {
      std::uniform_int_distribution<int> pick(0, next_id - 1);
      table.add(pick(rng), pick(rng), rank(rng), next_id++);
    }
    std::uniform_int_distribution<int> sym(0, alphabet - 1);
    std::vector<int32_t> ids(1 + rng() % 40);
    for (auto& x : ids) x = sym(rng);
    auto fast = ids, ref = ids;
    pricer::tok::merge_symbols(fast, table);
    pricer::tok::merge_symbols_reference(ref, table);
    ASSERT_EQ(fast, ref) << "trial " << trial;
  }
}

TEST(SentencePiece, HandVocabMergesByScoreWithByteFallback) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
  }
  const int base = 259;  // "▁", "a", "b", "c", "▁a", "ab", "bc", "▁abc"
  for (const char* s : {"\xE2\x96\x81", "a", "b", "c",
                        "\xE2\x96\x81"
                        "a",
                        "ab", "bc",
                        "\xE2\x96\x81"
                        "ab"})
    tokens.push_back(s);
  std::vector<float> scores(tokens.size(), 0.0f);
  scores[base + 4] = -1.0f;  // ▁a
  scores[base + 5] = -2.0f;  // ab
  scores[base + 6] = -0.5f;  // bc
  scores[base + 7] = -3.0f;  // ▁ab
  auto t = pricer::make_sentencepiece_bpe(tokens, scores, {}, 1, 2, true, "hand.spm");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  // " abc": bc (-0.5) first, then ▁a (-1); "▁a"+"bc" is no token.
  EXPECT_EQ(t->encode("abc"), (Ids{base + 4, base + 6}));
  // " ab": ▁a (-1) beats ab (-2), then ▁a+b -> ▁ab.
  EXPECT_EQ(t->encode("ab"), (Ids{base + 7}));
  // é is no token: its two bytes fall back to <0xC3> <0xA9>.
  EXPECT_EQ(t->encode("a\xC3\xA9"), (Ids{base + 4, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(t->decode(t->encode("a\xC3\xA9")), "a\xC3\xA9");
  EXPECT_EQ(t->token_bytes(3 + 0xC3), "\xC3");
  EXPECT_EQ(t->token_bytes(base + 7), " ab");
  // Decode drops the dummy prefix at the start and after a control token.
  EXPECT_EQ(t->decode({1, base + 4, base + 6}), "<s>abc");
  EXPECT_EQ(t->encode("abc</s>ab", true), (Ids{base + 4, base + 6, 2, base + 7}));
  EXPECT_EQ(t->decode(t->encode("abc</s>ab", true)), "abc</s>ab");
  EXPECT_TRUE(t->encode("").empty());
  for (std::string s : {std::string(" a  b "), std::string("\xFF\x80"), std::string("ab\xE2\x96")})
    EXPECT_EQ(t->decode(t->encode(s)), s);
}

TEST(SentencePiece, ReferenceModeAgrees) {
  std::vector<std::string> tokens = {"<unk>",
                                     "<s>",
                                     "</s>",
                                     "\xE2\x96\x81",
                                     "a",
                                     "b",
                                     "aa",
                                     "ab",
                                     "\xE2\x96\x81"
                                     "a",
                                     "aab"};
  std::vector<float> scores = {0, 0, 0, -1, -1, -1, -2, -2, -3, -4};
  auto fast = pricer::make_sentencepiece_bpe(tokens, scores, {}, 1, 2, true, "t");
  auto ref = pricer::make_sentencepiece_bpe(tokens, scores, {}, 1, 2, true, "t");
  dynamic_cast<pricer::tok::BpeTokenizer&>(*ref).set_reference_mode(true);
  for (const char* s : {"aab", "aaab ab a", "abab aa", "aaaa"}) EXPECT_EQ(fast->encode(s), ref->encode(s)) << s;
}

// ---- exactness against the shared fixtures ----

class Llama3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::path p = kShared / "fixtures/llama3-tokenizer/tokenizer.model";
    if (fs::exists(p)) tok_ = pricer::load_tokenizer(p.string()).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_)
      GTEST_SKIP() << "shared fixture " << kShared / "fixtures/llama3-tokenizer"
                   << " not present";
  }
  static Tokenizer* tok_;
};
Tokenizer* Llama3::tok_ = nullptr;

TEST_F(Llama3, MetaExample) {
  EXPECT_EQ(tok_->encode("This is a test sentence."), (Ids{2028, 374, 264, 1296, 11914, 13}));
  EXPECT_EQ(tok_->vocab_size(), 128256);
  EXPECT_EQ(tok_->bos_id(), 128000);
  EXPECT_EQ(tok_->eos_id(), 128001);
}

TEST_F(Llama3, SpecialTokensAsMetaDefinesThem) {
  EXPECT_EQ(tok_->token_bytes(128006), "<|start_header_id|>");
  EXPECT_EQ(tok_->token_bytes(128007), "<|end_header_id|>");
  EXPECT_EQ(tok_->token_bytes(128009), "<|eot_id|>");
  EXPECT_EQ(tok_->token_bytes(128255), "<|reserved_special_token_250|>");
  EXPECT_EQ(tok_->encode("<|begin_of_text|>Hi<|eot_id|>", true), (Ids{128000, 13347, 128009}));
  Ids plain = tok_->encode("<|eot_id|>");
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok_->decode(plain), "<|eot_id|>");
}

TEST_F(Llama3, LlamaCppVocabCases) {
  std::string inp = slurp(kShared / "fixtures/llama3-tokenizer/ggml-vocab-llama-bpe.gguf.inp");
  std::string out = slurp(kShared / "fixtures/llama3-tokenizer/ggml-vocab-llama-bpe.gguf.out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  for (size_t pos = 0; pos < inp.size();) {
    size_t e = inp.find(sep, pos);
    if (e == std::string::npos) e = inp.size();
    cases.push_back(inp.substr(pos, e - pos));
    pos = e + sep.size();
  }
  std::vector<Ids> expected;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    Ids ids;
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(cases.size(), expected.size());
  ASSERT_GE(cases.size(), 40u);
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(tok_->encode(cases[i]), expected[i]) << "case " << i << ": '" << cases[i] << "'";
    EXPECT_EQ(tok_->decode(expected[i]), cases[i]) << "case " << i;
  }
}

namespace {
// Up to max_lines "text" fields from the JSON-lines files of a folder.
std::vector<std::string> jsonl_texts(const fs::path& dir, size_t max_lines) {
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".jsonl") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> texts;
  for (auto& f : files) {
    std::ifstream in(f);
    for (std::string line; texts.size() < max_lines && std::getline(in, line);)
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    if (texts.size() >= max_lines) break;
  }
  return texts;
}
}  // namespace

TEST_F(Llama3, ProductTextRoundTripsAndMatchesReference) {
  fs::path prices = kShared / "data/amazon-prices", text = kShared / "data/amazon-text";
  if (!fs::exists(prices) || !fs::exists(text))
    GTEST_SKIP() << "shared data " << kShared / "data"
                 << " not present";
  auto texts = jsonl_texts(prices, 1500);
  auto more = jsonl_texts(text, 1500);
  texts.insert(texts.end(), more.begin(), more.end());
  ASSERT_GT(texts.size(), 2000u);
  auto ref = pricer::load_tokenizer((kShared / "fixtures/llama3-tokenizer/tokenizer.model").string());
  dynamic_cast<pricer::tok::BpeTokenizer&>(*ref).set_reference_mode(true);
  size_t total_ids = 0, total_bytes = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    Ids ids = tok_->encode(texts[i]);
    ASSERT_EQ(tok_->decode(ids), texts[i]) << "text " << i;
    // The fast merge loop and word cache against the plain reference on a sample.
    if (i % 10 == 0) {
      ASSERT_EQ(ids, ref->encode(texts[i])) << "text " << i;
    }
    total_ids += ids.size();
    total_bytes += texts[i].size();
  }
  // English product text runs about 4 bytes a token with this vocab; far off means a broken merge.
  EXPECT_GT(double(total_bytes) / double(total_ids), 3.0);
}

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = kShared / "fixtures/stories260K";
    if (!fs::exists(dir_ / "tok512.bin")) GTEST_SKIP() << "shared fixture " << dir_ << " not present";
    tok_ = pricer::load_tokenizer((dir_ / "tok512.bin").string());
  }
  fs::path dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(Stories260K, Basics) {
  EXPECT_EQ(tok_->vocab_size(), 512);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_EQ(tok_->token_bytes(3 + 'A'), "A");  // <0x41>
}

TEST_F(Stories260K, DecodesTheReferenceGeneration) {
  // llama2.c printed these 200 greedy tokens (after BOS) as expected_stdout (its final newline
  // may or may not be kept in the file).
  Ids ids;
  std::ifstream in(dir_ / "expected_greedy_ids_200.txt");
  for (int32_t id; in >> id;) ids.push_back(id);
  ASSERT_EQ(ids.size(), 200u);
  std::string expected = slurp(dir_ / "expected_stdout_t0_n200.txt");
  Ids with_bos = ids;
  with_bos.insert(with_bos.begin(), 1);
  if (!expected.empty() && expected.back() == '\n') expected.pop_back();
  std::string text = tok_->decode(ids);
  EXPECT_EQ(text, expected);
  EXPECT_EQ(tok_->decode(with_bos), tok_->token_bytes(1) + text);
  // The model's own tokenization of its first sentence is the canonical one.
  Ids first = tok_->encode("Once upon a time, there was a little girl named Lily.");
  ASSERT_LE(first.size(), ids.size());
  EXPECT_EQ(first, Ids(ids.begin(), ids.begin() + static_cast<long>(first.size())));
}

TEST_F(Stories260K, RoundTripsAndFallsBackToBytes) {
  for (std::string s : {"Lily's mom said, \"Let's go!\"", "  two  spaces ", "caf\xC3\xA9 \xF0\x9F\xA6\x99 42", ""})
    EXPECT_EQ(tok_->decode(tok_->encode(s)), s) << s;
  // A llama is not in a 512-token vocab: its 4 UTF-8 bytes come out as <0xNN> tokens (id 3+byte).
  Ids ids = tok_->encode("\xF0\x9F\xA6\x99");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(Ids(ids.end() - 4, ids.end()), (Ids{3 + 0xF0, 3 + 0x9F, 3 + 0xA6, 3 + 0x99}));
}
