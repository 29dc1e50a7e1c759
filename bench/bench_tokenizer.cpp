// Tokenizer throughput (MB/s) on product text: the fast merge loop with its word cache against the
// plain O(n^2) reference merge loop, in the same run. Uses ../shared's Llama 3 tokenizer and
// stories260K tok512.bin, and its product texts when present (else generated product-like text);
// PRICER_SHARED_DIR overrides where ../shared is.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
  if (const char* env = std::getenv("PRICER_SHARED_DIR")) return env;
  return fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared";
}

// Product-like text: titles, specs with numbers and units, prices, punctuation.
std::vector<std::string> generated_texts(size_t n) {
  static const char* words[] = {
      "Stainless", "Steel",      "Replacement", "Kit",        "for",     "Whirlpool", "Dryer",   "Compatible",
      "with",      "Samsung",    "LED",         "Light",      "Bulb",    "Pack",      "of",      "Wireless",
      "Bluetooth", "Headphones", "Noise",       "Cancelling", "Premium", "Quality",   "Durable", "Easy",
      "Install",   "the",        "and",         "a",          "is",      "to",        "in",      "black",
      "White",     "inch",       "mm",          "oz",         "lbs",     "Warranty",  "Battery", "USB-C",
      "Charging",  "Cable",      "Heavy-Duty",  "Waterproof", "Outdoor"};
  std::mt19937 rng(1);
  std::uniform_int_distribution<size_t> w(0, std::size(words) - 1);
  std::uniform_int_distribution<int> num(0, 2000), kind(0, 9);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) {
    std::string s;
    while (s.size() < 700) {
      int k = kind(rng);
      if (k == 0) s += std::to_string(num(rng)) + " " + words[w(rng)];
      else if (k == 1) {
        // Appended piece by piece: GCC 12 misreads "$" + std::string&& as an overlapping copy.
        s += '$';
        s += std::to_string(num(rng));
        s += '.';
        s += std::to_string(num(rng) % 100);
      } else if (k == 2) s += ", ";
      else if (k == 3) s += ". ";
      else s += words[w(rng)];
      s += ' ';
    }
    out.push_back(s);
  }
  return out;
}

std::vector<std::string> product_texts() {
  std::vector<std::string> texts;
  fs::path val = shared_dir() / "data/amazon-prices/val.jsonl";
  std::ifstream in(val);
  for (std::string line; texts.size() < 1000 && std::getline(in, line);)
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  return texts.empty() ? generated_texts(1000) : texts;
}

const std::vector<std::string>& texts() {
  static const std::vector<std::string> t = product_texts();
  return t;
}

void run_encode(benchmark::State& state, const char* file, bool reference) {
  fs::path p = shared_dir() / file;
  if (!fs::exists(p)) {
    state.SkipWithError(("needs " + p.string()).c_str());
    return;
  }
  auto tok = pricer::load_tokenizer(p.string());
  dynamic_cast<pricer::tok::BpeTokenizer&>(*tok).set_reference_mode(reference);
  const auto& t = texts();
  size_t bytes = 0, ids = 0;
  for (const auto& s : t) bytes += s.size();
  for (auto _ : state) {
    for (const auto& s : t) {
      auto v = tok->encode(s);
      ids += v.size();
      benchmark::DoNotOptimize(v.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes * state.iterations()));
  state.counters["bytes_per_token"] = double(bytes * state.iterations()) / double(ids);
}

void BM_Llama3EncodeFast(benchmark::State& s) { run_encode(s, "fixtures/llama3-tokenizer/tokenizer.model", false); }
void BM_Llama3EncodeReference(benchmark::State& s) { run_encode(s, "fixtures/llama3-tokenizer/tokenizer.model", true); }
void BM_Tok512EncodeFast(benchmark::State& s) { run_encode(s, "fixtures/stories260K/tok512.bin", false); }
void BM_Tok512EncodeReference(benchmark::State& s) { run_encode(s, "fixtures/stories260K/tok512.bin", true); }

void BM_Llama3Decode(benchmark::State& state) {
  fs::path p = shared_dir() / "fixtures/llama3-tokenizer/tokenizer.model";
  if (!fs::exists(p)) {
    state.SkipWithError(("needs " + p.string()).c_str());
    return;
  }
  auto tok = pricer::load_tokenizer(p.string());
  std::vector<std::vector<int32_t>> all;
  size_t bytes = 0;
  for (const auto& s : texts()) {
    all.push_back(tok->encode(s));
    bytes += s.size();
  }
  for (auto _ : state)
    for (const auto& ids : all) benchmark::DoNotOptimize(tok->decode(ids));
  state.SetBytesProcessed(static_cast<int64_t>(bytes * state.iterations()));
}

void BM_Llama3Load(benchmark::State& state) {
  fs::path p = shared_dir() / "fixtures/llama3-tokenizer/tokenizer.model";
  if (!fs::exists(p)) {
    state.SkipWithError(("needs " + p.string()).c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(pricer::load_tokenizer(p.string()));
}

}  // namespace

BENCHMARK(BM_Llama3EncodeFast)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama3EncodeReference)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Tok512EncodeFast)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Tok512EncodeReference)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama3Decode)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Llama3Load)->Unit(benchmark::kMillisecond)->Iterations(3);
