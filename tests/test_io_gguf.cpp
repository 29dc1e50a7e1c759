// GGUF: the generic reader/writer (every metadata type, alignment, accessors), robustness
// against corrupt and hostile files, and the llama.cpp-written fixture.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/bytes.h"
#include "io/gguf.h"
#include "test_io_util.h"

namespace pricer {
namespace {

using namespace test_io;

GgufValue scalar(GgufType t, int64_t i) {
  GgufValue v;
  v.type = v.elem = t;
  v.ints = {i};
  return v;
}

GgufValue array_of(GgufType elem, std::vector<int64_t> ints) {
  GgufValue v;
  v.type = GgufType::Array;
  v.elem = elem;
  v.ints = std::move(ints);
  return v;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& f) {
  std::vector<uint8_t> b(f.size() * 4);
  std::memcpy(b.data(), f.data(), b.size());
  return b;
}

// A small file using every metadata type and two tensors.
GgufWriter sample_writer(uint32_t alignment = 32) {
  GgufWriter w(alignment);
  w.add("general.architecture", GgufValue::string("llama"));
  w.add("t.u8", scalar(GgufType::U8, 200));
  w.add("t.i8", scalar(GgufType::I8, -100));
  w.add("t.u16", scalar(GgufType::U16, 65000));
  w.add("t.i16", scalar(GgufType::I16, -32000));
  w.add("t.u32", GgufValue::u32(4000000000u));
  w.add("t.i32", GgufValue::i32(-2000000000));
  w.add("t.u64", GgufValue::u64(uint64_t{1} << 40));
  w.add("t.i64", scalar(GgufType::I64, -(int64_t{1} << 50)));
  w.add("t.f32", GgufValue::f32(0.25f));
  GgufValue f64;
  f64.type = f64.elem = GgufType::F64;
  f64.floats = {1e-300};
  w.add("t.f64", f64);
  w.add("t.bool", GgufValue::boolean(true));
  w.add("t.str", GgufValue::string("h\xC3\xA9llo"));
  w.add("t.strs", GgufValue::string_array({"a", "", "\xE2\x96\x81the"}));
  w.add("t.f32s", GgufValue::f32_array({1.5f, -2.0f}));
  w.add("t.i32s", GgufValue::i32_array({7, -8, 9}));
  w.add("t.u8s", array_of(GgufType::U8, {1, 2, 255}));
  w.add("t.bools", array_of(GgufType::Bool, {0, 1}));
  w.add("t.empty", GgufValue::string_array({}));
  w.add_tensor("a", {3, 2}, GgmlType::F32, f32_bytes({1, 2, 3, 4, 5, 6}));
  w.add_tensor("b", {4}, GgmlType::F16, std::vector<uint8_t>{0x00, 0x3c, 0x00, 0x40, 0x00, 0xc0, 0x00, 0x00});
  return w;
}

TEST(GgufReader, RoundTripsEveryMetadataType) {
  const auto bytes = sample_writer().to_bytes();
  const GgufFile f = GgufFile::parse(bytes, "sample.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("t.u8"), 200);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_int("t.u16"), 65000);
  EXPECT_EQ(f.get_int("t.i16"), -32000);
  EXPECT_EQ(f.get_int("t.u32"), 4000000000);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_int("t.u64"), int64_t{1} << 40);
  EXPECT_EQ(f.get_int("t.i64"), -(int64_t{1} << 50));
  EXPECT_EQ(f.get_float("t.f32"), 0.25);
  EXPECT_EQ(f.get_float("t.f64"), 1e-300);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.get_string("t.str"), "h\xC3\xA9llo");
  EXPECT_EQ(f.get_string_array("t.strs"), (std::vector<std::string>{"a", "", "\xE2\x96\x81the"}));
  EXPECT_EQ(f.get_float_array("t.f32s"), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(f.get_int_array("t.i32s"), (std::vector<int64_t>{7, -8, 9}));
  EXPECT_EQ(f.get_int_array("t.u8s"), (std::vector<int64_t>{1, 2, 255}));
  EXPECT_EQ(f.get_int_array("t.bools"), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(f.get_string_array("t.empty").empty());
  // Types survive, so a file re-written from what was read is identical.
  EXPECT_EQ(f.find("t.u16")->type, GgufType::U16);
  EXPECT_EQ(f.find("t.u8s")->elem, GgufType::U8);
  GgufWriter again;
  for (const auto& kv : f.metadata()) again.add(kv.key, kv.value);
  for (const auto& t : f.tensors()) {
    const auto d = f.tensor_data(t);
    again.add_tensor(t.name, t.ne, t.type, std::vector<uint8_t>(d.begin(), d.end()));
  }
  EXPECT_EQ(again.to_bytes(), bytes);

  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensorInfo* a = f.find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a->type, GgmlType::F32);
  EXPECT_EQ(a->nbytes, 24u);
  float got[6];
  std::memcpy(got, f.tensor_data(*a).data(), 24);
  EXPECT_EQ(got[5], 6.0f);
  const GgufTensorInfo* b = f.find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->offset % 32, 0u);
  EXPECT_EQ(f.tensor_data(*b)[1], 0x3c);
  EXPECT_EQ((f.data_start() + b->offset) % 32, 0u);
}

TEST(GgufReader, ReadsVersion2AndCustomAlignment) {
  auto bytes = sample_writer(64).to_bytes();
  bytes[4] = 2;  // v2 has the same layout as v3 for little-endian files
  const GgufFile f = GgufFile::parse(bytes, "v2.gguf");
  EXPECT_EQ(f.version(), 2u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_start() % 64, 0u);
  for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 64, 0u);
  EXPECT_EQ(f.tensor_data(*f.find_tensor("b"))[3], 0x40);
}

TEST(GgufReader, OpensFromDiskAndNamesTheFile) {
  const auto dir = temp_dir("disk");
  const std::string path = (dir / "m.gguf").string();
  sample_writer().write(path);
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.source(), path);
  EXPECT_EQ(f.get_int("t.u8"), 200);
  // Truncated on disk: the error names the path.
  std::filesystem::resize_file(path, 100);
  expect_error([&] { GgufFile::open(path); }, path, "truncated");
  expect_error([&] { GgufFile::open((dir / "absent.gguf").string()); }, "absent.gguf", "cannot open");
}

TEST(GgufReader, AccessorsReportKeyAndType) {
  const auto bytes = sample_writer().to_bytes();
  const GgufFile f = GgufFile::parse(bytes, "acc.gguf");
  expect_error([&] { f.get_int("t.str"); }, "acc.gguf: key 't.str'", "expected an integer");
  expect_error([&] { f.get_string("t.u8"); }, "key 't.u8'", "expected a string");
  expect_error([&] { f.get_float("nope"); }, "key 'nope'", "missing");
  expect_error([&] { f.get_string_array("t.f32s"); }, "key 't.f32s'", "array of float32");
  expect_error([&] { f.get_int("t.i32s"); }, "key 't.i32s'", "expected an integer");
  expect_error([&] { f.get_bool("t.u8"); }, "key 't.u8'", "expected a bool");
  EXPECT_FALSE(f.get_int_opt("nope").has_value());
  EXPECT_EQ(f.get_float_opt("t.f32").value(), 0.25);
}

TEST(GgufWriter, RejectsInconsistentTensors) {
  GgufWriter w;
  expect_error(
      [&] {
        w.add_tensor("q", {33, 2}, GgmlType::Q8_0, std::vector<uint8_t>(68));
      },
      "tensor 'q'", "block size 32");
  expect_error([&] { w.add_tensor(std::string(65, 'x'), {1}, GgmlType::F32, std::vector<uint8_t>(4)); },
               "longer than 64");
  w.add_tensor("x", {2}, GgmlType::F32, std::vector<uint8_t>(7));  // wrong size: caught when written
  expect_error([&] { w.to_bytes(); }, "tensor 'x'", "expected 8");
  expect_error([&] { w.add_tensor("x", {1}, GgmlType::F32, std::vector<uint8_t>(4)); }, "duplicate");
  expect_error([] { GgufWriter bad(24); }, "power of two");
}

// ---------------------------------------------------------------- corrupt files

// Hand-built files, for shapes of corruption a correct writer cannot produce.
struct Raw {
  ByteWriter w;
  Raw(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w.put(uint32_t{0x46554747});
    w.put(version);
    w.put(n_tensors);
    w.put(n_kv);
  }
  Raw& str(const std::string& s) {
    w.put(static_cast<uint64_t>(s.size()));
    w.put_bytes(s.data(), s.size());
    return *this;
  }
  Raw& u8(uint8_t v) {
    w.put(v);
    return *this;
  }
  Raw& u32(uint32_t v) {
    w.put(v);
    return *this;
  }
  Raw& u64(uint64_t v) {
    w.put(v);
    return *this;
  }
  Raw& kv_u32(const std::string& k, uint32_t v) { return str(k).u32(4).u32(v); }
  Raw& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Raw& data(size_t n) {
    w.pad_to(32);
    w.out.resize(w.out.size() + n, 0);
    return *this;
  }
  std::vector<uint8_t> bytes() const { return w.out; }
};

void expect_parse_error(const std::vector<uint8_t>& bytes, const std::string& needle) {
  expect_error([&] { GgufFile::parse(bytes, "bad.gguf"); }, "bad.gguf", needle);
}

TEST(GgufCorrupt, HeaderProblems) {
  expect_parse_error({}, "truncated");
  expect_parse_error({'G', 'G', 'U'}, "truncated");
  expect_parse_error({'G', 'G', 'M', 'L', 3, 0, 0, 0}, "wrong magic");
  expect_parse_error(Raw(1, 0, 0).bytes(), "unsupported GGUF version 1");
  expect_parse_error(Raw(4, 0, 0).bytes(), "unsupported GGUF version 4");
  expect_parse_error(Raw(0x03000000, 0, 0).bytes(), "big-endian");
  expect_parse_error(Raw(3, 0, uint64_t{1} << 60).bytes(), "metadata count");
  expect_parse_error(Raw(3, ~uint64_t{0}, 0).bytes(), "tensor count");
  // A valid empty file parses.
  EXPECT_TRUE(GgufFile::parse(Raw(3, 0, 0).bytes(), "empty.gguf").tensors().empty());
}

TEST(GgufCorrupt, MetadataProblems) {
  expect_parse_error(Raw(3, 0, 1).u64(uint64_t{1} << 62).bytes(), "truncated");  // absurd key length
  expect_parse_error(Raw(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).bytes(), "key 'k'): duplicate key");
  expect_parse_error(Raw(3, 0, 1).str("bad\xFFkey").u32(4).u32(0).bytes(), "not valid UTF-8");
  expect_parse_error(Raw(3, 0, 1).str("k").u32(8).str("\xC0\x80").bytes(), "not valid UTF-8");  // overlong NUL
  expect_parse_error(Raw(3, 0, 1).str("k").u32(13).u32(0).bytes(), "unknown value type 13");
  expect_parse_error(Raw(3, 0, 1).str("k").u32(7).u8(2).bytes(), "bool value");
  expect_parse_error(Raw(3, 0, 1).str("k").u32(9).u32(4).u64(uint64_t{1} << 61).bytes(), "cannot fit");
  expect_parse_error(Raw(3, 0, 1).str("k").u32(9).u32(9).u64(1).bytes(), "arrays of arrays");
  expect_parse_error(Raw(3, 0, 1).str("k").u32(9).u32(8).u64(2).str("ok").u64(~uint64_t{0}).bytes(), "truncated");
  expect_parse_error(Raw(3, 0, 1).str("general.alignment").u32(4).u32(24).bytes(), "not a power of two");
  expect_parse_error(Raw(3, 0, 1).str("general.alignment").u32(10).u64(32).bytes(), "must be a uint32");
}

TEST(GgufCorrupt, TensorTableProblems) {
  // Each case: one tensor info followed by a little data.
  expect_parse_error(Raw(3, 1, 0).tensor("t", {4}, 0, 0).data(8).bytes(), "outside the file");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {4}, 0, 64).data(64).bytes(), "outside the file");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {4}, 0, 8).data(64).bytes(), "not a multiple of the alignment");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).data(8).bytes(), "5 dimensions");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {}, 0, 0).data(8).bytes(), "0 dimensions");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {0}, 0, 0).data(8).bytes(), "dimension of 0");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {uint64_t{1} << 62, uint64_t{1} << 62}, 0, 0).data(8).bytes(), "absurd");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {~uint64_t{0}}, 0, 0).data(8).bytes(), "absurd dimension");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {4}, 99, 0).data(64).bytes(), "unknown ggml type 99");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {16}, 8, 0).data(64).bytes(), "not a multiple of the q8_0 block");
  expect_parse_error(Raw(3, 1, 0).tensor(std::string(65, 'n'), {4}, 0, 0).data(16).bytes(), "longer than 64");
  expect_parse_error(Raw(3, 2, 0).tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).data(64).bytes(),
                     "duplicate tensor name");
  expect_parse_error(Raw(3, 2, 0).tensor("a", {16}, 0, 0).tensor("b", {4}, 0, 32).data(96).bytes(), "overlaps");
  expect_parse_error(Raw(3, 1, 0).tensor("t", {4}, 0, ~uint64_t{0} - 31).data(64).bytes(), "outside the file");
  // The same table with enough data parses.
  EXPECT_EQ(GgufFile::parse(Raw(3, 2, 0).tensor("a", {8}, 0, 0).tensor("b", {4}, 0, 32).data(48).bytes(), "ok.gguf")
                .tensors()
                .size(),
            2u);
}

TEST(GgufCorrupt, EveryTruncationFailsCleanly) {
  const auto bytes = sample_writer().to_bytes();
  const GgufFile full = GgufFile::parse(bytes, "full.gguf");
  uint64_t data_end = 0;
  for (const auto& t : full.tensors()) data_end = std::max(data_end, full.data_start() + t.offset + t.nbytes);
  for (size_t len = 0; len < bytes.size(); ++len) {
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    const bool ok = ok_or_error([&] { GgufFile::parse(prefix, "cut.gguf"); }, "cut.gguf");
    // Only the final padding may be cut away.
    EXPECT_EQ(ok, len >= data_end) << "length " << len;
  }
}

TEST(GgufCorrupt, FlippedBytesNeverCrash) {
  // A real model file, so model-level checks run on whatever still parses.
  auto c = tiny_config();
  c.n_layers = 1;
  const auto dir = temp_dir("flip");
  const std::string path = (dir / "m.gguf").string();
  save_gguf(path, c, random_model(c, 7));
  const GgufFile base = GgufFile::open(path);
  std::vector<uint8_t> bytes(std::filesystem::file_size(path));
  std::ifstream(path, std::ios::binary)
      .read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  int parsed = 0, failed = 0;
  for (size_t i = 0; i < base.data_start(); ++i) {
    for (uint8_t x : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xFF}}) {
      auto mutated = bytes;
      mutated[i] ^= x;
      const bool ok = ok_or_error([&] { load_gguf_model(GgufFile::parse(mutated, "flip.gguf")); }, "flip.gguf");
      (ok ? parsed : failed)++;
    }
  }
  // Most flips hit lengths, counts, types and names, and must be caught.
  EXPECT_GT(failed, parsed);
}

// ---------------------------------------------------------------- the llama.cpp fixture

const std::string kFixture = "/fixtures/gguf/llama-2-tiny-random.gguf";

TEST(GgufFixture, RawTableAndVocabulary) {
  const std::string path = shared_dir() + kFixture;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "fixture absent: " << path;
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 32000u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(f.get_float_array("tokenizer.ggml.scores").size(), 32000u);
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type").size(), 32000u);
  EXPECT_EQ(f.tensors().size(), 12u);
}

TEST(GgufFixture, LoadsAsModel) {
  const std::string path = shared_dir() + kFixture;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "fixture absent: " << path;
  const ModelFile m = load_model_file(path);
  EXPECT_EQ(m.format, "gguf");
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.ffn_dim, 32);
  EXPECT_EQ(c.max_seq_len, 4096);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000.0f);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.bos_id, 1);
  EXPECT_EQ(c.eos_id, 2);
  EXPECT_EQ(m.tensors.size(), 12u);
  EXPECT_EQ(m.tensors.at("model.embed_tokens.weight").rows(), 32000);
  EXPECT_EQ(m.tensors.at("model.embed_tokens.weight").dtype(), DType::F16);
  EXPECT_EQ(m.tensors.at("lm_head.weight").cols(), 8);
  EXPECT_EQ(m.tensors.at("model.layers.0.mlp.down_proj.weight").rows(), 8);
  EXPECT_EQ(m.tensors.at("model.layers.0.mlp.down_proj.weight").cols(), 32);
  EXPECT_EQ(m.tensors.at("model.layers.0.mlp.gate_proj.weight").rows(), 32);
  EXPECT_EQ(m.tensors.at("model.layers.0.input_layernorm.weight").dtype(), DType::F32);
  EXPECT_EQ(m.metadata["general.name"], "LLaMA v2");
  EXPECT_EQ(m.metadata["tokenizer.ggml.tokens"]["length"], 32000);

  // q and k come back in rotate-half order: HF row h*hd + i*hd/2 + j is file row h*hd + 2j + i.
  const GgufFile f = GgufFile::open(path);
  for (const char* gguf_name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
    const auto* t = f.find_tensor(gguf_name);
    ASSERT_NE(t, nullptr);
    const auto raw = f.tensor_data(*t);
    const std::string hf = std::string("model.layers.0.self_attn.") + gguf_name[11] + "_proj.weight";
    const auto& mine = m.tensors.at(hf).raw();
    const bool permuted = gguf_name[11] != 'v';
    for (int h = 0; h < 2; ++h) {
      for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 2; ++j) {
          const int hf_row = h * 4 + i * 2 + j, file_row = permuted ? h * 4 + 2 * j + i : hf_row;
          EXPECT_EQ(0, std::memcmp(mine.data() + hf_row * 16, raw.data() + file_row * 16, 16))
              << hf << " row " << hf_row;
        }
      }
    }
  }

  // QLoRA base: projections become NF4, embeddings and norms keep their formats.
  const ModelFile q = load_model_file(path, DType::NF4);
  EXPECT_EQ(q.tensors.at("model.layers.0.self_attn.q_proj.weight").dtype(), DType::NF4);
  EXPECT_EQ(q.tensors.at("model.layers.0.mlp.down_proj.weight").dtype(), DType::NF4);
  EXPECT_EQ(q.tensors.at("model.embed_tokens.weight").dtype(), DType::F16);
  EXPECT_EQ(q.tensors.at("lm_head.weight").dtype(), DType::F16);
  EXPECT_EQ(q.tensors.at("model.norm.weight").dtype(), DType::F32);
}

}  // namespace
}  // namespace pricer
