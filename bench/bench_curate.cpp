// Curation throughput in MB/s of Amazon-like JSON lines: the simdjson cleaner against a naive
// nlohmann-json reference doing the same work, and the whole pipeline per thread count.
// The input (PRICER_BENCH_MB, default 64 MB) is generated once into a temp dir.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/curate.h"
#include "data/record.h"
#include "data/synthetic.h"
#include "data/text.h"

namespace fs = std::filesystem;
using namespace pricer::data;

namespace {

struct Input {
  fs::path dir, file;
  std::vector<std::string> lines;
  uint64_t bytes = 0;
  Input() {
    const char* env = std::getenv("PRICER_BENCH_MB");
    const uint64_t target = (env ? std::strtoull(env, nullptr, 10) : 64) << 20;
    dir = fs::temp_directory_path() / ("pricer-bench-curate-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    file = dir / "meta_Synthetic.jsonl";
    std::ofstream out(file, std::ios::binary);
    for (uint64_t i = 0; bytes < target; ++i) {
      std::string line = synthetic_item(1, i).line;
      out << line << '\n';
      bytes += line.size() + 1;
      lines.push_back(std::move(line));
    }
  }
  ~Input() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Input& input() {
  static Input in;
  return in;
}

// The naive reference: a DOM parse per line with nlohmann-json, then the same rules.
bool naive_clean(const std::string& line, const CleanOptions& opt, CleanItem& out) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("title") || !j["title"].is_string()) return false;
  double price = 0;
  const auto& p = j["price"];
  if (p.is_number()) {
    price = p.get<double>();
  } else if (!p.is_string() || !parse_price_string(p.get<std::string>(), price)) {
    return false;
  }
  if (price < opt.min_price || price > opt.max_price) return false;
  std::string text;
  append_words(text, j["title"].get<std::string>(), opt.scrub_part_numbers);
  auto section = [&](const std::string& s) {
    text += '\n';
    append_words(text, s, opt.scrub_part_numbers);
  };
  for (const char* key : {"description", "features"})
    if (j.contains(key) && j[key].is_array())
      for (auto& s : j[key])
        if (s.is_string()) section(s.get<std::string>());
  if (j.contains("details") && j["details"].is_object()) {
    std::string d;
    for (auto& [k, v] : j["details"].items()) {
      bool drop = false;
      for (auto& x : opt.drop_details) drop = drop || k == x;
      if (drop) continue;
      if (!d.empty()) d += "; ";
      d += k + ": ";
      if (v.is_string()) {
        d += v.get<std::string>();
      } else if (v.is_object()) {
        bool first = true;
        for (auto& [k2, v2] : v.items()) {
          if (!first) d += ", ";
          first = false;
          d += k2 + " " + (v2.is_string() ? v2.get<std::string>() : v2.dump());
        }
      } else {
        d += v.dump();
      }
    }
    if (!d.empty()) section(d);
  }
  text.resize(utf8_prefix_words(text, opt.max_chars));
  if (utf8_length(text) < opt.min_chars) return false;
  truncate_words(text, opt.word_budget());
  out.text = std::move(text);
  out.price = price;
  return true;
}

void BM_CleanSimdjson(benchmark::State& state) {
  Input& in = input();
  CleanOptions opt;
  RecordCleaner cleaner(opt, nullptr);
  CleanItem item;
  std::string why;
  size_t accepted = 0;
  for (auto _ : state) {
    for (auto& line : in.lines) accepted += cleaner.process(line, "", item, why) == Reject::None;
  }
  benchmark::DoNotOptimize(accepted);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.bytes));
}

void BM_CleanNaiveNlohmann(benchmark::State& state) {
  Input& in = input();
  CleanOptions opt;
  // Both cleaners must agree, or the comparison means nothing.
  RecordCleaner cleaner(opt, nullptr);
  for (size_t i = 0; i < std::min<size_t>(200, in.lines.size()); ++i) {
    CleanItem a, b;
    std::string why;
    const bool ok_a = cleaner.process(in.lines[i], "", a, why) == Reject::None;
    const bool ok_b = naive_clean(in.lines[i], opt, b);
    if (ok_a != ok_b || (ok_a && a.text != b.text)) {
      state.SkipWithError("naive reference disagrees with the cleaner");
      return;
    }
  }
  CleanItem item;
  size_t accepted = 0;
  for (auto _ : state) {
    for (auto& line : in.lines) accepted += naive_clean(line, opt, item);
  }
  benchmark::DoNotOptimize(accepted);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.bytes));
}

// The whole pipeline (read, parse, clean, dedup, sample, write) with N worker threads.
void BM_CurateFile(benchmark::State& state) {
  Input& in = input();
  CurateOptions opt;
  opt.inputs = {in.file.string()};
  opt.out_dir = (in.dir / "out").string();
  opt.progress = false;
  opt.charts = false;
  opt.threads = static_cast<int>(state.range(0));
  for (auto _ : state) curate(opt);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.bytes));
}

}  // namespace

BENCHMARK(BM_CleanSimdjson)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CleanNaiveNlohmann)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CurateFile)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
