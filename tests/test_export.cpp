// Model and tokenizer export: every tokenizer pricer loads written as GGUF metadata (and
// tokenizer.json) loads back encoding and decoding identically; `pricer export` writes GGUF and
// Hugging Face directories in each weight format that reload with the same logits (exactly in
// f32, within the format's rounding otherwise), merges adapters exactly, embeds the tokenizer so
// generation needs nothing else, and fails clearly on bad arguments. Also: a base format the
// model's widths cannot hold is refused naming the file and the tensor.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "core/atomic_file.h"
#include "io/gguf.h"
#include "io/model_file.h"
#include "io/safetensors.h"
#include "kernels/backend.h"
#include "model/generate.h"
#include "model/quant_mix.h"
#include "quant/ggml_blocks.h"
#include "retrieval/comparables.h"
#include "test_io_util.h"
#include "tiny_pricer_model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/vocab_export.h"
#include "train/adapter_io.h"

namespace fs = std::filesystem;
using namespace pricer;

namespace {

const fs::path kShared = PRICER_SHARED_DIR;

const GgufValue* find_kv(const std::vector<GgufKV>& kvs, const std::string& key) {
  for (const auto& kv : kvs)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

// A GGUF file holding only the tokenizer metadata.
fs::path write_vocab_gguf(const std::vector<GgufKV>& kvs, const fs::path& path) {
  GgufWriter w;
  for (const auto& kv : kvs) w.add(kv.key, kv.value);
  w.write(path.string());
  return path;
}

// Texts that exercise the tokenizers: product text, numbers, whitespace runs, contractions,
// accents, emoji, special-token text.
std::vector<std::string> sample_texts() {
  std::vector<std::string> t = {"",
                                "Price is $129.99 for 3 units",
                                "  leading spaces and\ttabs\n\nnew lines  ",
                                "It's what we'll do; they'd've done it",
                                "Café crème brûlée — naïve",
                                "😀 emoji 中文 text",
                                "<|begin_of_text|>special<|end_of_text|>",
                                "12345678901234567890 1,000,000.50"};
  for (const auto& p : tiny::products(40, 7)) t.push_back(p.text);
  const fs::path val = kShared / "data/amazon-prices/val.jsonl";
  std::ifstream in(val);
  std::string line;
  for (int i = 0; i < 200 && std::getline(in, line); ++i) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("text") && j["text"].is_string()) t.push_back(j["text"].get<std::string>());
  }
  return t;
}

void expect_same_tokenizer(const Tokenizer& a, const Tokenizer& b, const std::vector<std::string>& texts) {
  EXPECT_EQ(a.bos_id(), b.bos_id());
  EXPECT_EQ(a.eos_id(), b.eos_id());
  for (const auto& s : texts) {
    for (bool special : {false, true}) {
      const auto ids = a.encode(s, special);
      ASSERT_EQ(ids, b.encode(s, special)) << "text: " << s << " special " << special;
      EXPECT_EQ(a.decode(ids), b.decode(ids)) << s;
    }
  }
  for (int32_t id = 0; id < a.vocab_size(); ++id) ASSERT_EQ(a.token_bytes(id), b.token_bytes(id)) << "token " << id;
}

class TokenizerExport : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tiny::temp_dir("tok_export");
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // GGUF metadata of `tok` loads back as the same tokenizer; returns the metadata.
  std::vector<GgufKV> round_trip(const Tokenizer& tok, const std::vector<std::string>& texts) {
    const auto kvs = gguf_tokenizer_metadata(tok);
    const auto back = load_tokenizer(write_vocab_gguf(kvs, dir_ / "vocab.gguf").string());
    EXPECT_EQ(back->vocab_size(), tok.vocab_size());
    expect_same_tokenizer(tok, *back, texts);
    return kvs;
  }
  fs::path dir_;
};

TEST_F(TokenizerExport, TrainedBpeRoundTripsThroughGgufAndTokenizerJson) {
  const TrainedBpe bpe = tiny::tokenizer_vocab();
  const auto tok = make_trained_tokenizer(bpe);
  const auto texts = sample_texts();
  const auto kvs = round_trip(*tok, texts);
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.model")->strings[0], "gpt2");
  // Trained merges apply even to a word that is a token: llama.cpp's name for that split is smaug-bpe.
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.pre")->strings[0], "smaug-bpe");
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.tokens")->strings, bpe.tokens);
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.merges")->strings, bpe.merges);
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.add_bos_token")->ints, std::vector<int64_t>{1});
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.bos_token_id")->ints, std::vector<int64_t>{bpe.bos_id});

  // Padded to a larger model vocab: unused tokens, one per embedding row, nothing else changes.
  const auto padded = gguf_tokenizer_metadata(*tok, tok->vocab_size() + 3);
  const auto& names = find_kv(padded, "tokenizer.ggml.tokens")->strings;
  ASSERT_EQ(names.size(), static_cast<size_t>(tok->vocab_size() + 3));
  EXPECT_EQ(names.back(), "[PAD" + std::to_string(tok->vocab_size() + 2) + "]");
  EXPECT_EQ(find_kv(padded, "tokenizer.ggml.token_type")->ints.back(), static_cast<int64_t>(TokenType::Unused));
  const auto back = load_tokenizer(write_vocab_gguf(padded, dir_ / "padded.gguf").string());
  for (const auto& s : texts) ASSERT_EQ(back->encode(s), tok->encode(s)) << s;
  EXPECT_THROW(gguf_tokenizer_metadata(*tok, tok->vocab_size() - 1), Error);

  const auto json = hf_tokenizer_json(*tok);
  ASSERT_TRUE(json);
  expect_same_tokenizer(*tok, *parse_tokenizer_json(*json, "exported tokenizer.json"), texts);
}

TEST_F(TokenizerExport, Llama3TiktokenRoundTripsAsLlamaBpe) {
  const fs::path model = kShared / "fixtures/llama3-tokenizer/tokenizer.model";
  if (!fs::exists(model)) GTEST_SKIP() << "shared fixture " << model << " not present";
  const auto tok = load_tokenizer(model.string());
  auto texts = sample_texts();
  std::ifstream in(kShared / "fixtures/llama3-tokenizer/ggml-vocab-llama-bpe.gguf.inp");
  const std::string inp((std::istreambuf_iterator<char>(in)), {});
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0, next; pos < inp.size(); pos = next + sep.size()) {
    next = inp.find(sep, pos);
    if (next == std::string::npos) next = inp.size();
    texts.push_back(inp.substr(pos, next - pos));
  }
  const auto kvs = round_trip(*tok, texts);
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.pre")->strings[0], "llama-bpe");
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.tokens")->strings.size(), 128256u);
  EXPECT_GT(find_kv(kvs, "tokenizer.ggml.merges")->strings.size(), 128000u);
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.bos_token_id")->ints, std::vector<int64_t>{128000});
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.add_bos_token")->ints, std::vector<int64_t>{1});
  const auto back = load_tokenizer((dir_ / "vocab.gguf").string());
  EXPECT_EQ(back->encode("This is a test sentence."), (std::vector<int32_t>{2028, 374, 264, 1296, 11914, 13}));
}

TEST_F(TokenizerExport, Llama2cTokBinRoundTripsAsSentencePieceWithItsScores) {
  const fs::path bin = kShared / "fixtures/stories260K/tok512.bin";
  if (!fs::exists(bin)) GTEST_SKIP() << "shared fixture " << bin << " not present";
  const auto tok = load_tokenizer(bin.string());
  const auto kvs = round_trip(*tok, sample_texts());
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.model")->strings[0], "llama");
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.add_space_prefix")->ints, std::vector<int64_t>{1});
  // The scores are llama2.c's own, float for float.
  std::ifstream in(bin, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), {});
  const auto& scores = find_kv(kvs, "tokenizer.ggml.scores")->floats;
  ASSERT_EQ(scores.size(), 512u);
  size_t off = 4;
  for (size_t i = 0; i < 512; ++i) {
    float s;
    int32_t len;
    std::memcpy(&s, data.data() + off, 4);
    std::memcpy(&len, data.data() + off + 4, 4);
    ASSERT_EQ(static_cast<float>(scores[i]), s) << "token " << i;
    off += 8 + static_cast<size_t>(len);
  }
  EXPECT_FALSE(hf_tokenizer_json(*tok));
}

TEST_F(TokenizerExport, GgufLlamaVocabRoundTrips) {
  const fs::path gguf = kShared / "fixtures/gguf/llama-2-tiny-random.gguf";
  if (!fs::exists(gguf)) GTEST_SKIP() << "shared fixture " << gguf << " not present";
  const auto tok = load_tokenizer(gguf.string());
  const auto kvs = round_trip(*tok, sample_texts());
  const GgufFile src = GgufFile::open(gguf.string());
  EXPECT_EQ(find_kv(kvs, "tokenizer.ggml.tokens")->strings, src.get_string_array("tokenizer.ggml.tokens"));
  const auto scores = src.get_float_array("tokenizer.ggml.scores");
  const auto& written = find_kv(kvs, "tokenizer.ggml.scores")->floats;
  ASSERT_EQ(written.size(), scores.size());
  for (size_t i = 0; i < scores.size(); ++i) ASSERT_EQ(static_cast<float>(written[i]), scores[i]) << i;
}

// ---- pricer export ----

// A small random model whose widths are whole q4_k/q6_k blocks (256), with the trained tokenizer
// embedded, and a non-zero PEFT adapter.
class Export : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One directory per process: ctest runs each test of this suite as its own process, in parallel.
    dir_ = fs::temp_directory_path() / ("pricer_export_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    bpe_ = new TrainedBpe(tiny::tokenizer_vocab());
    const ModelConfig c = tiny::block_model_config(*bpe_, 64);
    LlamaModel m = LlamaModel::random(c, 3, 0.05f);
    GgufExportOptions go;
    go.extra = gguf_tokenizer_metadata(*make_trained_tokenizer(*bpe_), c.vocab_size);
    save_gguf((dir_ / "base.gguf").string(), c, export_tensors(m, false), go);
    tiny::add_nonzero_lora(m, 9, 0.05f);
    save_peft_adapter(m, (dir_ / "adapter").string(), "base");
  }
  static void TearDownTestSuite() {
    fs::remove_all(dir_);
    delete bpe_;
  }

  static std::string base() { return (dir_ / "base.gguf").string(); }

  static LlamaModel load(const std::string& path, const std::string& adapter = "") {
    return tiny::load_model(path, adapter);
  }

  // Logits after each of a few prompts.
  static std::vector<float> logits(LlamaModel& m) {
    auto be = make_cpu_backend();
    const auto tok = make_trained_tokenizer(*bpe_);
    std::vector<float> out;
    for (const auto& p : tiny::products(3, 4)) {
      std::vector<int32_t> ids = {tok->bos_id()};
      for (int32_t id : tok->encode(p.text)) ids.push_back(id);
      KvCache cache = m.make_cache(static_cast<int64_t>(ids.size()));
      const auto l = m.prefill(cache, ids, *be);
      out.insert(out.end(), l.begin(), l.end());
    }
    return out;
  }

  // Largest difference relative to the largest reference logit.
  static double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
    EXPECT_EQ(got.size(), want.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::fabs(got[i] - want[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
    }
    return diff / scale;
  }

  // The model at `path` with every matrix rounded to `dtype` in memory: what an export in that
  // format must reload as, bit for bit.
  static LlamaModel rounded(std::map<std::string, Weight> tensors, const ModelConfig& c, DType dtype) {
    for (auto& [name, w] : tensors) {
      if (name.ends_with("norm.weight")) continue;
      const auto f = w.to_f32();
      w = Weight::from_f32(f.data(), w.rows(), w.cols(), dtype);
    }
    return LlamaModel::from_weights(c, std::move(tensors), "rounded");
  }

  static cli_test::CliRun run_export(const std::string& args) { return cli_test::run_cli("export -q " + args); }

  static fs::path dir_;
  static TrainedBpe* bpe_;
};

fs::path Export::dir_;
TrainedBpe* Export::bpe_ = nullptr;

struct DtypeCase {
  const char* dtype;
  double tolerance;  // of the logits, relative to the largest
};

TEST_F(Export, GgufInEachDtypeReloadsWithTheSameLogits) {
  LlamaModel src = load(base());
  const auto want = logits(src);
  const ModelFile base_file = load_model_file(base());
  for (const DtypeCase& c : {DtypeCase{"f32", 0.0},
                             {"f16", 2e-3},
                             {"bf16", 2e-2},
                             {"q8_0", 3e-2},
                             {"q6_k", 0.1},
                             {"q5_k", 0.2},
                             {"q4_0", 0.5},
                             {"q4_k", 0.4}}) {
    SCOPED_TRACE(c.dtype);
    const fs::path out = dir_ / (std::string("m-") + c.dtype + ".gguf");
    const auto r = run_export("--model " + base() + " --out " + out.string() + " --dtype " + c.dtype);
    ASSERT_EQ(r.rc, 0) << r.out;
    const GgufFile f = GgufFile::open(out.string());
    EXPECT_EQ(ggml_type_name(f.find_tensor("blk.0.attn_q.weight")->type), c.dtype);
    EXPECT_EQ(ggml_type_name(f.find_tensor("token_embd.weight")->type), c.dtype);
    EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
    EXPECT_EQ(f.has("general.quantization_version"), c.dtype[0] == 'q');
    LlamaModel m = load(out.string());
    const auto got = logits(m);
    // Exactly the source rounded to the format in memory, and close to the source itself.
    LlamaModel r8 = rounded(base_file.tensors, base_file.config, dtype_from_name(c.dtype));
    EXPECT_EQ(relative_error(got, logits(r8)), 0.0);
    const double err = relative_error(got, want);
    EXPECT_LE(err, c.tolerance);
    EXPECT_GT(err, c.tolerance == 0.0 ? -1.0 : 0.0) << "a lossy format changed nothing: the conversion did not happen";
  }
}

TEST_F(Export, KMixesPutSixBitsOnTheHeadValueAndDownProjections) {
  struct MixCase {
    const char* dtype;
    GgmlType base;
    int64_t file_type;  // llama.cpp's LLAMA_FTYPE_MOSTLY_Q4_K_M, _Q5_K_M
    double tolerance;  // as the base format throughout, or better
  };
  LlamaModel src = load(base());
  for (const MixCase& c : {MixCase{"q4_k_m", GgmlType::Q4_K, 15, 0.4}, {"q5_k_m", GgmlType::Q5_K, 17, 0.2}}) {
    SCOPED_TRACE(c.dtype);
    const fs::path out = dir_ / (std::string("m-") + c.dtype + ".gguf");
    const auto r = run_export("--model " + base() + " --out " + out.string() + " --dtype " + c.dtype);
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find(c.dtype), std::string::npos) << r.out;
    const GgufFile f = GgufFile::open(out.string());
    // One layer: it is both the first and the last eighth, so its value and down projections are wide.
    for (const char* t : {"output.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight"})
      EXPECT_EQ(f.find_tensor(t)->type, GgmlType::Q6_K) << t;
    for (const char* t : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_output.weight",
                          "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight"})
      EXPECT_EQ(f.find_tensor(t)->type, c.base) << t;
    EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, GgmlType::F32);
    EXPECT_EQ(f.get_int("general.file_type"), c.file_type);
    LlamaModel m = load(out.string());
    const double err = relative_error(logits(m), logits(src));
    EXPECT_GT(err, 0.0);
    EXPECT_LE(err, c.tolerance);
    EXPECT_NE(run_export("--model " + base() + " --out " + (dir_ / "hf-mix").string() + " --dtype " + c.dtype).rc, 0);
  }
}

TEST(QuantMix, SixBitsWhereLlamaCppsQ4KMPutsThem) {
  const QuantMix mix = *quant_mix("q4_k_m");
  // 16 layers (Llama 3.2 1B): the first and last eighth and every third layer between.
  for (const char* proj : {"mlp.down_proj", "self_attn.v_proj"}) {
    std::vector<int64_t> wide;
    for (int64_t l = 0; l < 16; ++l)
      if (mixed_dtype(mix, "model.layers." + std::to_string(l) + "." + proj + ".weight", 16, true) == DType::Q6_K)
        wide.push_back(l);
    EXPECT_EQ(wide, (std::vector<int64_t>{0, 1, 4, 7, 10, 13, 14, 15})) << proj;
  }
  EXPECT_EQ(mixed_dtype(mix, "model.layers.4.self_attn.q_proj.weight", 16, true), DType::Q4_K);
  EXPECT_EQ(mixed_dtype(mix, "model.layers.4.mlp.up_proj.weight", 16, true), DType::Q4_K);
  EXPECT_EQ(mixed_dtype(mix, "model.embed_tokens.weight", 16, true), DType::Q6_K);  // tied: it is the head
  EXPECT_EQ(mixed_dtype(mix, "model.embed_tokens.weight", 16, false), DType::Q4_K);
  EXPECT_EQ(mixed_dtype(mix, "lm_head.weight", 16, false), DType::Q6_K);
  // Rows that are not whole 256-element blocks: plain 32-element blocks, else f16.
  EXPECT_EQ(fitting_block_format(DType::Q4_K, 512), DType::Q4_K);
  EXPECT_EQ(fitting_block_format(DType::Q4_K, 288), DType::Q4_0);
  EXPECT_EQ(fitting_block_format(DType::Q6_K, 288), DType::Q8_0);
  EXPECT_EQ(fitting_block_format(DType::Q5_K, 288), DType::Q8_0);
  EXPECT_EQ(fitting_block_format(DType::Q4_K, 172), DType::F16);
  EXPECT_FALSE(quant_mix("q4_k").has_value());
  // Q5_K_M: the same layers in 6 bits, 5-bit K-quants elsewhere.
  const QuantMix five = *quant_mix("q5_k_m");
  EXPECT_EQ(mixed_dtype(five, "model.layers.13.mlp.down_proj.weight", 16, true), DType::Q6_K);
  EXPECT_EQ(mixed_dtype(five, "model.layers.12.mlp.down_proj.weight", 16, true), DType::Q5_K);
  EXPECT_EQ(mixed_dtype(five, "model.layers.13.mlp.up_proj.weight", 16, true), DType::Q5_K);
}

TEST_F(Export, SafetensorsInEachDtypeReloadsWithTheSameLogitsAndTokenizer) {
  LlamaModel src = load(base());
  const auto want = logits(src);
  const auto tok = make_trained_tokenizer(*bpe_);
  for (const DtypeCase& c : {DtypeCase{"f32", 0.0}, {"f16", 2e-3}, {"bf16", 2e-2}}) {
    SCOPED_TRACE(c.dtype);
    const fs::path out = dir_ / (std::string("hf-") + c.dtype);
    const auto r =
        run_export("--model " + base() + " --out " + out.string() + " --format safetensors --dtype " + c.dtype);
    ASSERT_EQ(r.rc, 0) << r.out;
    ASSERT_TRUE(fs::exists(out / "config.json") && fs::exists(out / "model.safetensors") &&
                fs::exists(out / "tokenizer.json"));
    const SafetensorsFile f = SafetensorsFile::open((out / "model.safetensors").string());
    std::string upper = c.dtype;
    for (auto& ch : upper) ch = static_cast<char>(std::toupper(ch));
    EXPECT_EQ(f.find("model.layers.0.self_attn.q_proj.weight")->dtype, upper);
    LlamaModel m = load(out.string());
    const double err = relative_error(logits(m), want);
    EXPECT_LE(err, c.tolerance);
    expect_same_tokenizer(*tok, *load_tokenizer(out.string()), sample_texts());
  }
}

TEST_F(Export, MergedAdapterPredictsAsBasePlusAdapter) {
  LlamaModel with_adapter = load(base(), (dir_ / "adapter").string());
  LlamaModel plain = load(base());
  const auto want = logits(with_adapter);
  ASSERT_GT(relative_error(logits(plain), want), 1e-3) << "the adapter must change the predictions";
  const fs::path out = dir_ / "merged.gguf";
  auto r = run_export("--model " + base() + " --adapter " + (dir_ / "adapter").string() + " --merge --out " +
                      out.string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  LlamaModel merged = load(out.string());
  EXPECT_LT(relative_error(logits(merged), want), 1e-5);
  // Quantized, within its rounding.
  r = run_export("--model " + base() + " --adapter " + (dir_ / "adapter").string() + " --merge --out " +
                 (dir_ / "merged-q8.gguf").string() + " --dtype q8_0");
  ASSERT_EQ(r.rc, 0) << r.out;
  LlamaModel merged_q8 = load((dir_ / "merged-q8.gguf").string());
  const ModelFile merged_file = load_model_file(out.string());
  LlamaModel r8 = rounded(merged_file.tensors, merged_file.config, DType::Q8_0);
  EXPECT_EQ(relative_error(logits(merged_q8), logits(r8)), 0.0);
  EXPECT_LT(relative_error(logits(merged_q8), want), 3e-2);
}

TEST_F(Export, WithoutMergeTheAdapterIsWrittenBesideTheBase) {
  const auto want = [&] {
    LlamaModel m = load(base(), (dir_ / "adapter").string());
    return logits(m);
  }();
  const fs::path out = dir_ / "split.gguf";
  auto r = run_export("--model " + base() + " --adapter " + (dir_ / "adapter").string() + " --out " + out.string());
  ASSERT_EQ(r.rc, 0) << r.out;
  const fs::path lora = dir_ / "split.lora.gguf";
  ASSERT_TRUE(fs::exists(lora)) << r.out;
  LlamaModel m = load(out.string(), lora.string());
  EXPECT_LT(relative_error(logits(m), want), 1e-5);

  r = run_export("--model " + base() + " --adapter " + (dir_ / "adapter").string() + " --out " +
                 (dir_ / "split-hf").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  LlamaModel h = load((dir_ / "split-hf").string(), (dir_ / "split-hf/adapter").string());
  EXPECT_LT(relative_error(logits(h), want), 1e-5);
}

// A model trained with comparables prices only with their index: an export elsewhere carries the
// mark and the index, prices as the source does, and is refused where another index lies.
TEST_F(Export, ComparablesIndexAndMarkTravelWithTheExport) {
  const fs::path src = dir_ / "cmp-src", out = dir_ / "cmp-out";
  fs::create_directories(src);
  fs::create_directories(out);
  {
    ModelFile mf = load_model_file(base());
    GgufExportOptions go;
    go.extra = gguf_tokenizer_metadata(*make_trained_tokenizer(*bpe_), mf.config.vocab_size);
    go.extra.push_back({retrieval::kComparablesKey, GgufValue::u32(3)});
    save_gguf((src / "model.gguf").string(), mf.config, mf.tensors, go);
    std::vector<std::string> docs;
    std::vector<double> prices;
    for (const auto& p : tiny::products(30, 5)) {
      docs.push_back(p.text);
      prices.push_back(p.price);
    }
    retrieval::ComparablesIndex(docs, prices, 3).save((src / retrieval::kComparablesFile).string());
  }
  const std::string text = tiny::products(1, 77)[0].text;
  auto price = [&](const fs::path& model) {
    return cli_test::run_cli("predict --model " + model.string() + " --base-dtype f32 --json '" + text + "'");
  };
  auto r =
      run_export("--model " + (src / "model.gguf").string() + " --out " + (out / "m.gguf").string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("comparables index"), std::string::npos) << r.out;
  EXPECT_EQ(GgufFile::open((out / "m.gguf").string()).get_int(retrieval::kComparablesKey), 3);
  EXPECT_EQ(read_file(out / retrieval::kComparablesFile, 1 << 24),
            read_file(src / retrieval::kComparablesFile, 1 << 24));
  const auto want = price(src / "model.gguf"), got = price(out / "m.gguf");
  ASSERT_EQ(want.rc, 0) << want.out;
  ASSERT_EQ(got.rc, 0) << got.out;
  // Both price through an index (the note names it, the export's own), to the same figures.
  EXPECT_NE(got.out.find("comparables: " + (out / retrieval::kComparablesFile).string()), std::string::npos) << got.out;
  EXPECT_EQ(got.out.substr(got.out.find('{')), want.out.substr(want.out.find('{')));
  // A second export into the same directory shares the same index.
  ASSERT_EQ(run_export("--model " + (src / "model.gguf").string() + " --out " + (out / "m-q8.gguf").string() +
                       " --dtype q8_0")
                .rc,
            0);
  // The mark without its index: the export could not price as the model does.
  fs::remove(out / retrieval::kComparablesFile);
  const auto lost = price(out / "m.gguf");
  EXPECT_NE(lost.rc, 0);
  EXPECT_NE(lost.out.find("comparables"), std::string::npos) << lost.out;
  r = run_export("--model " + (out / "m.gguf").string() + " --out " + (dir_ / "cmp-lost.gguf").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("is missing"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "cmp-lost.gguf"));
  // Another index where the export's would go.
  fs::create_directories(dir_ / "cmp-other");
  retrieval::ComparablesIndex({"red steel kit", "blue steel kit"}, {1.0, 2.0}, 1)
      .save((dir_ / "cmp-other" / retrieval::kComparablesFile).string());
  r = run_export("--model " + (src / "model.gguf").string() + " --out " + (dir_ / "cmp-other/m.gguf").string());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("another comparables index"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "cmp-other/m.gguf"));
}

TEST_F(Export, GgufCarriesTheTokenizerAndGeneratesAsTheSource) {
  // The source: a Hugging Face directory without any tokenizer, the tokenizer given by file.
  const fs::path hf = dir_ / "no-tokenizer";
  {
    ModelFile mf = load_model_file(base());
    save_hf_dir(hf.string(), mf.config, mf.tensors);
  }
  save_tokenizer_json(*bpe_, (dir_ / "tokenizer.json").string());
  const fs::path out = dir_ / "with-tokenizer.gguf";
  const auto r = run_export("--model " + hf.string() + " --tokenizer " + (dir_ / "tokenizer.json").string() +
                            " --out " + out.string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  const GgufFile f = GgufFile::open(out.string());
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), bpe_->tokens.size());

  const auto src_tok = make_trained_tokenizer(*bpe_);
  const auto out_tok = load_tokenizer(out.string());
  const std::string prompt = "Item steel mini kit";
  auto run = [&](const std::string& model_path, const Tokenizer& tok) {
    LlamaModel m = load(model_path);
    auto be = make_cpu_backend();
    std::vector<int32_t> ids = {tok.bos_id()};
    for (int32_t id : tok.encode(prompt)) ids.push_back(id);
    GenerationOptions g;
    g.max_tokens = 24;
    g.sampling.temperature = 0.0f;
    return generate(m, *be, ids, g).tokens;
  };
  const auto want = run(base(), *src_tok);
  EXPECT_EQ(want.size(), 24u);
  EXPECT_EQ(run(out.string(), *out_tok), want);

  // And `pricer generate` needs nothing but the file.
  const auto g = cli_test::run_cli("generate --model " + out.string() + " --prompt '" + prompt +
                                   "' --temperature 0 --max-tokens 24 --ignore-eos -q");
  ASSERT_EQ(g.rc, 0) << g.out;
  EXPECT_EQ(g.out, prompt + src_tok->decode(want));
}

TEST_F(Export, Stories260KGgufPrintsLlama2cTextWithoutATokenizerArgument) {
  const fs::path st = kShared / "fixtures/stories260K";
  if (!fs::exists(st / "stories260K.bin")) GTEST_SKIP() << "shared fixture " << st << " not present";
  const fs::path out = dir_ / "stories.gguf";
  // hidden 172 is not whole q8_0 blocks: those tensors fall back, the export still succeeds.
  auto r = run_export("--model " + (st / "stories260K.bin").string() + " --tokenizer " + (st / "tok512.bin").string() +
                      " --out " + (dir_ / "stories-q8.gguf").string() + " --dtype q8_0");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(GgufFile::open((dir_ / "stories-q8.gguf").string()).find_tensor("blk.0.ffn_down.weight")->type,
            GgmlType::F16);
  r = run_export("--model " + (st / "stories260K.bin").string() + " --tokenizer " + (st / "tok512.bin").string() +
                 " --out " + out.string() + " --dtype f32");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto g = cli_test::run_cli("generate --model " + out.string() + " --temperature 0 --max-tokens 200 -q");
  ASSERT_EQ(g.rc, 0) << g.out;
  EXPECT_EQ(g.out, cli_test::slurp(st / "expected_stdout_t0_n200.txt"));
}

TEST_F(Export, BadArgumentsGiveClearErrors) {
  const std::string out = (dir_ / "x.gguf").string();
  struct Case {
    std::string args, expect;
  };
  const std::string blocker = (dir_ / "a-file").string();
  std::ofstream(blocker) << "x";
  const std::vector<Case> cases = {
      {"--out " + out, "--model is required"},
      {"--model " + base(), "--out is required"},
      {"--model " + base() + " --out " + out + " --dtype q5_0", "--dtype 'q5_0' cannot be written as gguf"},
      {"--model " + base() + " --out " + (dir_ / "hfx").string() + " --dtype q8_0", "cannot be written as safetensors"},
      {"--model " + base() + " --out " + out + " --format onnx", "expected gguf or safetensors"},
      {"--model " + base() + " --out " + (dir_ / "x.bin").string(), "add --format"},
      {"--model " + base() + " --out " + blocker + "/x.gguf", "is not a directory"},
      {"--model " + base() + " --out " + blocker + " --format safetensors", "exists and is not a directory"},
      {"--model " + base() + " --out " + blocker + "/sub/dir --format safetensors", "is not a directory"},
      {"--model " + base() + " --out " + out + " --merge", "--merge needs --adapter"},
      {"--model " + (dir_ / "missing.gguf").string() + " --out " + out, "missing.gguf: no such file"},
      {"--model " + base() + " --adapter " + (dir_ / "nowhere").string() + " --merge --out " + out,
       "--adapter " + (dir_ / "nowhere").string() + ": no such file or directory"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    const auto r = run_export(c.args);
    EXPECT_NE(r.rc, 0) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(out));

  // A GGUF always embeds a tokenizer: a source without one needs --tokenizer.
  const fs::path hf = dir_ / "bare";
  {
    ModelFile mf = load_model_file(base());
    save_hf_dir(hf.string(), mf.config, mf.tensors);
  }
  const auto r = run_export("--model " + hf.string() + " --out " + out);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("holds no tokenizer"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--tokenizer"), std::string::npos) << r.out;
}

// ---- base formats the model's widths cannot hold ----

TEST(BaseDtype, BlockFormatOnWidthsThatAreNotWholeBlocksNamesFileAndTensor) {
  ModelConfig c = test_io::tiny_config();
  c.dim = 64;
  c.head_dim = 16;
  c.ffn_dim = 172;  // stories260K's hidden size
  const fs::path path = fs::temp_directory_path() / "pricer_base_dtype_172.gguf";
  save_gguf(path.string(), c, test_io::random_model(c, 5));
  try {
    load_model_file(path.string(), DType::Q8_0);
    FAIL() << "q8_0 accepted rows of 172 values";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("blk.0.ffn_down.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.mlp.down_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("172"), std::string::npos) << msg;
    EXPECT_NE(msg.find("q8_0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("nf4, bf16, f16, f32"), std::string::npos) << msg;
  }
  // The formats suggested do load.
  EXPECT_EQ(load_model_file(path.string(), DType::BF16).tensors.at("model.layers.0.mlp.down_proj.weight").dtype(),
            DType::BF16);
  fs::remove(path);
}

}  // namespace
