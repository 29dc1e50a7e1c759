// Shared by the training tests: a tiny tokenizer and model, synthetic price examples, a scratch
// directory, the pricer binary as a child process, and checkpoint/adapter readers.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/synthetic.h"
#include "io/model_file.h"
#include "model/llama.h"
#include "model/model_export.h"
#include "tokenizer/train_bpe.h"
#include "train/dataset.h"

namespace pricer::train_test {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = fs::temp_directory_path() / ("pricer_train_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  fs::path path_;
};

// Synthetic products as short price prompts: the title (brand, type, size, material carry the
// hidden price rule), then "Price is $"; the completion is the whole-dollar price.
struct PricePrompt {
  std::string prompt, completion;
  double price;
};
inline std::vector<PricePrompt> price_prompts(uint64_t seed, uint64_t first, uint64_t n) {
  std::vector<PricePrompt> out;
  for (uint64_t i = first; i < first + n; ++i) {
    const data::SyntheticItem it = data::synthetic_item(seed, i, false);
    const auto j = nlohmann::json::parse(it.line);
    const long dollars = std::lround(it.price);
    out.push_back({j["title"].get<std::string>() + "\nPrice is $", std::to_string(dollars) + ".00",
                   static_cast<double>(dollars)});
  }
  return out;
}

inline void write_price_jsonl(const std::string& path, const std::vector<PricePrompt>& items) {
  std::string s;
  for (const auto& p : items)
    s += nlohmann::json{{"prompt", p.prompt}, {"completion", p.completion}, {"price", p.price}}.dump() + "\n";
  write_file_atomic(path, s);
}

// A byte-level BPE tokenizer (numbers 0-999 single tokens) trained on synthetic product text.
inline const TrainedBpe& tiny_bpe() {
  static const TrainedBpe bpe = [] {
    std::vector<std::string> texts;
    for (const auto& p : price_prompts(7, 0, 300)) texts.push_back(p.prompt);
    BpeTrainOptions o;
    o.vocab_size = 1400;
    return train_bpe(texts, o);
  }();
  return bpe;
}
inline const Tokenizer& tiny_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = make_trained_tokenizer(tiny_bpe());
  return *tok;
}

// A 2-layer Llama small enough that a training step takes milliseconds; NF4-compatible widths.
inline ModelConfig tiny_config(int64_t vocab) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.ffn_dim = 128;
  c.max_seq_len = 256;
  c.rope_theta = 10000.0f;
  c.tied_embeddings = true;
  c.bos_id = tiny_bpe().bos_id;
  c.eos_id = tiny_bpe().eos_id;
  return c;
}

// A random tiny model saved as GGUF (f32) at `path`; the tokenizer goes beside it as tokenizer.json.
inline void write_tiny_model(const std::string& path, uint64_t seed) {
  const ModelConfig c = tiny_config(static_cast<int64_t>(tiny_bpe().tokens.size()));
  const LlamaModel m = LlamaModel::random(c, seed, 0.1f);
  save_gguf(path, c, export_tensors(m, false));
  save_tokenizer_json(tiny_bpe(), (fs::path(path).parent_path() / "tokenizer.json").string());
}

// Every adapter tensor of a model, by PEFT-style name, for exact comparisons.
inline std::map<std::string, std::vector<float>> adapter_tensors(const LlamaModel& m) {
  std::map<std::string, std::vector<float>> out;
  for (int64_t l = 0; l < m.config().n_layers; ++l)
    for (int p = 0; p < kNumProj; ++p)
      if (const LoraAdapter* a = m.lora(l, static_cast<Proj>(p))) {
        const std::string base = std::to_string(l) + "." + proj_name(static_cast<Proj>(p));
        out[base + ".A"] = a->A;
        out[base + ".B"] = a->B;
      }
  return out;
}

// Largest |a - b| over all tensors, relative to the largest |b|.
inline double max_rel_diff(const std::map<std::string, std::vector<float>>& a,
                           const std::map<std::string, std::vector<float>>& b) {
  double diff = 0, scale = 0;
  for (const auto& [k, vb] : b) {
    const auto& va = a.at(k);
    EXPECT_EQ(va.size(), vb.size()) << k;
    for (size_t i = 0; i < std::min(va.size(), vb.size()); ++i) {
      diff = std::max(diff, std::abs(double(va[i]) - vb[i]));
      scale = std::max(scale, std::abs(double(vb[i])));
    }
  }
  return diff / std::max(scale, 1e-30);
}

// The loop state stored in a checkpoint's header (the "state" object).
inline nlohmann::json checkpoint_state(const std::string& path) {
  const std::string data = read_file(path, 1 << 30);
  if (data.size() < 16 || data.compare(0, 8, "PRICERCK") != 0) throw Error(path + ": not a checkpoint");
  uint64_t n;
  std::memcpy(&n, data.data() + 8, 8);
  return nlohmann::json::parse(data.substr(16, n)).at("state");
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The pricer binary as a child process: stdout and stderr to files, waitable and signalable.
class Child {
 public:
  Child(const std::vector<std::string>& args, const fs::path& log_prefix)
      : out_(log_prefix.string() + ".out"), err_(log_prefix.string() + ".err") {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::FILE* o = std::freopen(out_.c_str(), "w", stdout);
      std::FILE* e = std::freopen(err_.c_str(), "w", stderr);
      if (!o || !e) ::_exit(126);
      std::vector<char*> argv;
      std::string bin = PRICER_BINARY;
      argv.push_back(bin.data());
      std::vector<std::string> copy = args;
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~Child() {
    if (pid_ > 0 && !waited_) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  // Non-blocking: true once the child has ended.
  bool done() {
    if (waited_) return true;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) waited_ = true;
    return waited_;
  }
  int wait() {
    if (!waited_ && ::waitpid(pid_, &status_, 0) == pid_) waited_ = true;
    return status_;
  }
  int exit_code() { return WIFEXITED(wait()) ? WEXITSTATUS(status_) : -1; }
  int term_signal() { return WIFSIGNALED(wait()) ? WTERMSIG(status_) : 0; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  int status_ = 0;
  bool waited_ = false;
};

// The files the CLI training suites share, in a fresh directory named for `what` and the pid: a
// tiny model (model.gguf + tokenizer.json), 32 training and 8 validation price examples.
inline fs::path* make_training_suite(const std::string& what) {
  auto* dir = new fs::path(fs::temp_directory_path() / ("pricer_" + what + "_" + std::to_string(::getpid())));
  fs::remove_all(*dir);
  fs::create_directories(*dir);
  write_tiny_model((*dir / "model.gguf").string(), 11);
  write_price_jsonl((*dir / "train.jsonl").string(), price_prompts(3, 0, 32));
  write_price_jsonl((*dir / "val.jsonl").string(), price_prompts(3, 1000, 8));
  return dir;
}

// `pricer -t 1 pretrain` of the tests' small Llama (2 layers, 64 wide, 1,300 tokens, 32-token
// examples) on a JSON-lines corpus into `out`, then `rest` (steps, batches, logging).
inline std::vector<std::string> small_pretrain_args(const std::string& corpus, const std::string& out,
                                                    const std::vector<std::string>& rest) {
  std::vector<std::string> a = {"-t", "1", "pretrain", "--corpus", corpus, "--out", out, "--vocab-size", "1300"};
  a.insert(a.end(), {"--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "128"});
  a.insert(a.end(), {"--context", "128", "--max-length", "32"});
  a.insert(a.end(), rest.begin(), rest.end());
  return a;
}

// Runs pricer to completion; returns the exit code, with stdout/stderr in out/err.
inline int run_pricer(const std::vector<std::string>& args, const fs::path& log_prefix, std::string* out = nullptr,
                      std::string* err = nullptr) {
  Child c(args, log_prefix);
  const int rc = c.exit_code();
  if (out) *out = c.out();
  if (err) *err = c.err();
  return rc;
}

}  // namespace pricer::train_test
