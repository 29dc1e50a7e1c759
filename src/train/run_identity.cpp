#include "train/run_identity.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/random.h"
#include "data/text.h"

namespace pricer {

namespace fs = std::filesystem;

namespace {

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Size and sampled blocks of one file, hashed together.
uint64_t file_fingerprint(const fs::path& file) {
  constexpr uint64_t kEdge = 1 << 20, kBlock = 1 << 12;
  constexpr int kBlocks = 16;
  std::ifstream in(file, std::ios::binary);
  require(in.good(), file.string() + ": cannot read to fingerprint");
  const uint64_t size = fs::file_size(file);
  std::string buf;
  auto read_at = [&](uint64_t off, uint64_t n) {
    buf.resize(static_cast<size_t>(std::min(n, size - std::min(off, size))));
    in.seekg(static_cast<std::streamoff>(off));
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    return data::hash64(buf);
  };
  uint64_t h = mix64(size);
  h = mix64(h ^ read_at(0, kEdge));
  h = mix64(h ^ read_at(size > kEdge ? size - kEdge : 0, kEdge));
  for (int i = 1; i <= kBlocks; ++i) h = mix64(h ^ read_at(size / (kBlocks + 1) * i, kBlock));
  return h;
}

// Keys whose change a resumed run takes as it comes.
const std::set<std::string>& may_change() {
  static const std::set<std::string> keys = {"epochs",         "max_steps",  "eval_every", "eval_items",
                                             "early_stopping", "save_every", "run_name",   "out",
                                             "model",          "data",       "tokenizer",  "checkpoint_layers"};
  return keys;
}

// Numbers agree to float precision: a checkpoint may hold a float setting widened with its noise
// (0.10000000149011612) where the run now says 0.1.
bool same_setting(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    return x == y || std::abs(x - y) <= 1e-6 * std::max(std::abs(x), std::abs(y));
  }
  return a == b;
}

}  // namespace

std::string model_fingerprint(const std::string& path) {
  std::vector<fs::path> files;
  const bool dir = fs::is_directory(path);
  if (dir) {
    for (const auto& e : fs::directory_iterator(path))
      if (e.is_regular_file() && e.path().filename().string().front() != '.') files.push_back(e.path());
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  uint64_t h = mix64(files.size());
  // A directory's file names are part of it (config.json, model-00001-of-00002.safetensors); a
  // single file's name is not.
  for (const auto& f : files) h = mix64(h ^ (dir ? data::hash64(f.filename().string()) : 0) ^ file_fingerprint(f));
  return hex(h);
}

std::string examples_fingerprint(const std::vector<PricedExample>& examples) {
  uint64_t h = mix64(examples.size());
  for (const auto& e : examples) {
    const std::string_view bytes(reinterpret_cast<const char*>(e.tokens.data()), e.tokens.size() * sizeof(int32_t));
    h = mix64(h ^ data::hash64(bytes) ^ static_cast<uint64_t>(e.prompt_len));
  }
  return hex(h);
}

nlohmann::json run_identity(const TrainConfig& cfg, const std::vector<PricedExample>& train) {
  nlohmann::json id = {{"train_examples", examples_fingerprint(train)}};
  if (!cfg.model.empty()) id["model"] = model_fingerprint(cfg.model);
  return id;
}

std::vector<std::string> resume_mismatches(const nlohmann::json& saved, const nlohmann::json& now) {
  const nlohmann::json defaults = TrainConfig{}.to_json();
  std::vector<std::string> out;
  for (const auto& [key, value] : now.items()) {
    if (may_change().count(key)) continue;
    if (key == "identity") {
      // A checkpoint from before identities were recorded cannot be checked this way.
      if (!saved.contains("identity")) continue;
      for (const auto& [what, fp] : value.items()) {
        const nlohmann::json was = saved["identity"].value(what, nlohmann::json());
        if (was != fp)
          out.push_back(what == "model" ? "the base model is not the one the run started from (fingerprint " +
                                              was.dump() + ", now " + fp.dump() + ")"
                                        : "the training examples differ from the run's (fingerprint " + was.dump() +
                                              ", now " + fp.dump() + "): other data, tokenizer or max length");
      }
      continue;
    }
    const nlohmann::json was = saved.contains(key) ? saved[key] : defaults.value(key, nlohmann::json());
    if (same_setting(was, value)) continue;
    out.push_back(key + ": saved " + was.dump() + ", now " + value.dump());
  }
  return out;
}

}  // namespace pricer
