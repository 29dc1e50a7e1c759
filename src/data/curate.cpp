#include "data/curate.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/random.h"
#include "core/threads.h"
#include "data/jsonl_reader.h"
#include "data/shard.h"
#include "data/text.h"
#include "report/svg.h"
#include "tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace pricer::data {

SplitSize parse_split_size(const std::string& s, const std::string& flag) {
  double v = 0;
  size_t used = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  require(used == s.size() && !s.empty() && std::isfinite(v) && v >= 0,
          flag + ": expected a count or a fraction, got '" + s + "'");
  if (s.find_first_of(".eE") != std::string::npos || v < 1) {
    require(v <= 1, flag + ": a fraction must be in [0, 1], got '" + s + "'");
    return {v, true};
  }
  require(v == std::floor(v) && v < 1e12, flag + ": bad count '" + s + "'");
  return {v, false};
}

std::string fill_template(const std::string& tmpl, const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  out.reserve(tmpl.size() + 1024);
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] == '{') {
      bool matched = false;
      for (auto& [name, value] : values) {
        if (tmpl.compare(i + 1, name.size(), name) == 0 && i + 1 + name.size() < tmpl.size() &&
            tmpl[i + 1 + name.size()] == '}') {
          out += value;
          i += name.size() + 2;
          matched = true;
          break;
        }
      }
      if (matched) continue;
    }
    out += tmpl[i++];
  }
  return out;
}

namespace {

// What stays in memory per accepted item; the strings live in the spill file.
struct Compact {
  uint64_t offset;  // of the title in the spill file; the text follows it
  uint64_t key;  // hash of the summary: identity for seeded sampling and shuffling
  double price;
  uint32_t title_len, text_len, length;
  uint32_t category;
};

struct Rejection {
  uint64_t line;
  Reject reason;
  std::string why;
};

struct ChunkResult {
  size_t file = 0;
  std::vector<CleanItem> items;
  std::vector<uint64_t> item_lines;
  std::vector<Rejection> rejects;
  uint64_t lines = 0, blank = 0, bytes = 0;
};

struct Work {
  uint64_t seq;
  size_t file;
  LineChunk chunk;
};

bool blank_line(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

ChunkResult process_chunk(RecordCleaner& cleaner, const Work& w, std::string_view file_category, size_t max_line) {
  ChunkResult r;
  r.file = w.file;
  r.bytes = w.chunk.input_bytes;
  r.lines = w.chunk.size();
  size_t tl = 0;
  CleanItem item;
  std::string why;
  for (size_t i = 0; i < w.chunk.size(); ++i) {
    const uint64_t line_no = w.chunk.first_line + i;
    if (tl < w.chunk.too_long.size() && w.chunk.too_long[tl] == line_no) {
      ++tl;
      r.rejects.push_back(
          {line_no, Reject::LineTooLong, "longer than the " + std::to_string(max_line) + "-byte line limit"});
      continue;
    }
    std::string_view line = w.chunk.line(i);
    if (blank_line(line)) {
      ++r.blank;
      continue;
    }
    Reject rej = cleaner.process(line, file_category, item, why);
    if (rej == Reject::None) {
      r.items.push_back(std::move(item));
      r.item_lines.push_back(line_no);
      item = CleanItem{};
    } else {
      r.rejects.push_back({line_no, rej, why});
    }
  }
  return r;
}

// What the pipeline's threads share; every field is guarded by mu.
struct PipelineState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Work> queue;
  std::map<uint64_t, ChunkResult> done;
  uint64_t produced = 0, consumed = 0;
  bool reader_done = false, abort = false;
  std::exception_ptr error;

  // The first error is the one reported; every thread stops at its next wait.
  void fail(std::exception_ptr e) {
    std::lock_guard lock(mu);
    if (!error) error = e;
    abort = true;
    cv.notify_all();
  }
};

// The reader thread: chunks of every input, in order, with at most max_inflight chunks read but
// not yet consumed, so memory stays bounded however far the consumer falls behind.
void read_chunks(PipelineState& s, const CurateOptions& opt, Progress& progress, uint64_t max_inflight) {
  try {
    for (size_t f = 0; f < opt.inputs.size(); ++f) {
      JsonlReader rd(opt.inputs[f], opt.clean.max_line_bytes, opt.chunk_bytes);
      for (;;) {
        Work w{0, f, {}};
        if (!rd.next(w.chunk)) break;
        progress.add(w.chunk.input_bytes);
        std::unique_lock lock(s.mu);
        s.cv.wait(lock, [&] { return s.abort || s.produced - s.consumed < max_inflight; });
        if (s.abort) return;
        w.seq = s.produced++;
        s.queue.push_back(std::move(w));
        s.cv.notify_all();
      }
    }
  } catch (...) {
    s.fail(std::current_exception());
  }
  std::lock_guard lock(s.mu);
  s.reader_done = true;
  s.cv.notify_all();
}

// A worker thread: cleans queued chunks until the reader is done and the queue empty, or an abort.
void clean_chunks(PipelineState& s, const CurateOptions& opt, const std::vector<std::string>& file_categories) {
  try {
    RecordCleaner cleaner(opt.clean, opt.tokenizer);
    for (;;) {
      Work w;
      {
        std::unique_lock lock(s.mu);
        s.cv.wait(lock, [&] { return s.abort || !s.queue.empty() || s.reader_done; });
        if (s.abort || s.queue.empty()) return;
        w = std::move(s.queue.front());
        s.queue.pop_front();
      }
      ChunkResult r = process_chunk(cleaner, w, file_categories[w.file], opt.clean.max_line_bytes);
      std::lock_guard lock(s.mu);
      s.done.emplace(w.seq, std::move(r));
      s.cv.notify_all();
    }
  } catch (...) {
    s.fail(std::current_exception());
  }
}

// The next chunk in input order into r; false once a thread failed or everything is consumed.
bool take_next_in_order(PipelineState& s, ChunkResult& r) {
  std::unique_lock lock(s.mu);
  s.cv.wait(lock, [&] { return s.error || s.done.count(s.consumed) || (s.reader_done && s.consumed == s.produced); });
  if (s.error) return false;
  auto it = s.done.find(s.consumed);
  if (it == s.done.end()) return false;  // reader finished and everything is consumed
  r = std::move(it->second);
  s.done.erase(it);
  ++s.consumed;
  s.cv.notify_all();
  return true;
}

// The threads use the caller's state: they must all be gone before it is.
void stop_and_join(PipelineState& s, std::thread& reader, std::vector<std::thread>& workers) {
  {
    std::lock_guard lock(s.mu);
    s.abort = true;
    s.cv.notify_all();
  }
  reader.join();
  for (auto& t : workers) t.join();
}

// Runs reader -> workers -> in-order consumer. consume() runs on the calling thread.
template <class Consume>
void run_pipeline(const CurateOptions& opt, const std::vector<std::string>& file_categories, Progress& progress,
                  Consume&& consume) {
  const int n_workers = std::max(1, opt.threads > 0 ? opt.threads : pricer::threads());
  const uint64_t max_inflight = 2ull * n_workers + 2;

  PipelineState s;
  std::thread reader([&] { read_chunks(s, opt, progress, max_inflight); });
  std::vector<std::thread> workers;
  for (int t = 0; t < n_workers; ++t) workers.emplace_back([&] { clean_chunks(s, opt, file_categories); });

  try {
    for (;;) {
      ChunkResult r;
      if (!take_next_in_order(s, r)) break;
      consume(r);
    }
  } catch (...) {
    stop_and_join(s, reader, workers);
    throw;
  }
  stop_and_join(s, reader, workers);
  if (s.error) std::rethrow_exception(s.error);
}

nlohmann::ordered_json distribution(std::vector<double> v) {
  nlohmann::ordered_json j;
  j["count"] = v.size();
  if (v.empty()) return j;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  auto q = [&](double p) { return v[static_cast<size_t>(std::lround(p * static_cast<double>(v.size() - 1)))]; };
  auto r2 = [](double x) { return std::round(x * 100) / 100; };
  j["min"] = r2(v.front());
  j["p10"] = r2(q(0.10));
  j["p25"] = r2(q(0.25));
  j["median"] = r2(q(0.50));
  j["p75"] = r2(q(0.75));
  j["p90"] = r2(q(0.90));
  j["max"] = r2(v.back());
  j["mean"] = r2(sum / v.size());
  return j;
}

void check_options(const CurateOptions& opt) {
  const CleanOptions& co = opt.clean;
  require(!opt.inputs.empty(), "curate: no input files");
  require(!opt.out_dir.empty(), "curate: no output directory");
  require(co.min_price >= 0 && co.min_price <= co.max_price, "curate: the price range must satisfy 0 <= min <= max");
  require(co.token_budget > 0 && co.words_per_token > 0, "curate: the token budget must be > 0");
  require(co.max_chars >= co.min_chars, "curate: max chars must be >= min chars");
  require(std::isfinite(opt.price_weight_power) && opt.price_weight_power >= 0,
          "curate: price weight power must be >= 0");
  for (auto& [cat, w] : opt.category_weights)
    require(std::isfinite(w) && w >= 0, "curate: category weight for '" + cat + "' must be >= 0");
}

// The accepted items' strings, kept on disk until their split is written (a catalogue of millions
// does not fit in memory). The file lives in the output directory and goes with the object.
class SpillFile {
 public:
  explicit SpillFile(fs::path path) : path_(std::move(path)), f_(std::fopen(path_.c_str(), "w+b")) {
    require(f_ != nullptr, path_.string() + ": cannot create");
  }
  ~SpillFile() {
    std::fclose(f_);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Appends title then text; returns the title's offset.
  uint64_t append(const std::string& title, const std::string& text) {
    require(std::fwrite(title.data(), 1, title.size(), f_) == title.size() &&
                std::fwrite(text.data(), 1, text.size(), f_) == text.size(),
            [&] { return path_.string() + ": write failed (disk full?)"; });
    const uint64_t at = end_;
    end_ += title.size() + text.size();
    return at;
  }
  void flush() { require(std::fflush(f_) == 0, path_.string() + ": write failed"); }
  void read(const Compact& c, std::string& title, std::string& text) {
    buf_.resize(c.title_len + c.text_len);
    require(fseeko(f_, static_cast<off_t>(c.offset), SEEK_SET) == 0 &&
                std::fread(buf_.data(), 1, buf_.size(), f_) == buf_.size(),
            [&] { return path_.string() + ": read failed"; });
    title.assign(buf_.data(), c.title_len);
    text.assign(buf_.data() + c.title_len, c.text_len);
  }

 private:
  fs::path path_;
  std::FILE* f_;
  uint64_t end_ = 0;
  std::vector<char> buf_;
};

struct FileStats {
  uint64_t lines = 0, blank = 0, accepted = 0;
};

// What ingestion leaves: the accepted, deduplicated items and an account of every line.
struct Ingested {
  std::vector<Compact> pool;
  std::vector<std::string> categories;
  uint64_t counts[kNumRejects] = {};
  std::vector<std::vector<std::string>> examples = std::vector<std::vector<std::string>>(kNumRejects);
  std::vector<FileStats> files;
  uint64_t total_bytes = 0;

  uint64_t rejected() const {
    uint64_t n = 0;
    for (int r = 1; r < kNumRejects; ++r) n += counts[r];
    return n;
  }
};

// Counts a rejected line and keeps a few examples; under --strict, a bad line is an error.
void record_rejection(const CurateOptions& opt, Ingested& ing, size_t file, uint64_t line, Reject reason,
                      const std::string& why) {
  ++ing.counts[static_cast<int>(reason)];
  const std::string where = opt.inputs[file] + ":" + std::to_string(line);
  if (opt.strict && is_bad_input(reason)) throw Error(where + ": " + reject_name(reason) + ": " + why);
  auto& ex = ing.examples[static_cast<int>(reason)];
  if (ex.size() < static_cast<size_t>(opt.max_examples)) ex.push_back(where + ": " + why);
}

// Parse, clean and deduplicate every input line; accepted items go to the spill file.
Ingested ingest(const CurateOptions& opt, SpillFile& spill) {
  Ingested ing;
  ing.files.resize(opt.inputs.size());
  std::vector<std::string> file_categories;
  for (auto& in : opt.inputs) {
    require(!fs::is_directory(in), in + ": a directory; give the JSON-lines files in it (e.g. " + in + "/*.jsonl)");
    require(fs::is_regular_file(in), in + ": no such file");
    file_categories.push_back(category_from_filename(in));
    ing.total_bytes += file_size(in);
  }
  std::unordered_map<std::string, uint32_t> category_index;
  std::unordered_set<uint64_t> seen_titles, seen_texts;
  ProgressOptions popt;
  popt.bytes = true;
  popt.enabled = opt.progress;
  Progress progress("curate", ing.total_bytes, popt);
  run_pipeline(opt, file_categories, progress, [&](ChunkResult& r) {
    FileStats& fsx = ing.files[r.file];
    fsx.lines += r.lines;
    fsx.blank += r.blank;
    for (auto& rj : r.rejects) record_rejection(opt, ing, r.file, rj.line, rj.reason, rj.why);
    for (size_t i = 0; i < r.items.size(); ++i) {
      const CleanItem& it = r.items[i];
      const uint64_t title_key = hash64(normalize_title(it.title)), text_key = hash64(it.text);
      if (opt.dedup && seen_titles.count(title_key)) {
        record_rejection(opt, ing, r.file, r.item_lines[i], Reject::DuplicateTitle, "title seen before");
        continue;
      }
      if (opt.dedup && seen_texts.count(text_key)) {
        record_rejection(opt, ing, r.file, r.item_lines[i], Reject::DuplicateText, "text seen before");
        continue;
      }
      if (opt.dedup) seen_titles.insert(title_key), seen_texts.insert(text_key);
      auto [cit, added] = category_index.emplace(it.category, ing.categories.size());
      if (added) ing.categories.push_back(it.category);
      ing.pool.push_back({spill.append(it.title, it.text), text_key, it.price, static_cast<uint32_t>(it.title.size()),
                          static_cast<uint32_t>(it.text.size()), it.length, cit->second});
      ++fsx.accepted;
    }
  });
  progress.set(ing.total_bytes);
  progress.finish();
  spill.flush();
  return ing;
}

// The sample: pool indices in the order the splits take them (test, val, then train).
struct Sample {
  std::vector<uint32_t> order;
  size_t eligible = 0;  // items with a positive sampling weight
};

// Weighted sampling without replacement (Efraimidis-Spirakis: key log(u)/w, keep the largest), each
// item's u drawn from its own hash so the sample depends on neither input order nor threads; then
// a seeded shuffle, so the split does not follow the sampling weights.
Sample weighted_sample(const CurateOptions& opt, const Ingested& ing) {
  const auto& pool = ing.pool;
  double max_price = 0;
  for (auto& c : pool) max_price = std::max(max_price, c.price);
  std::vector<double> cat_weight(ing.categories.size(), 1.0);
  for (const auto& [key, w] : opt.category_weights) {
    std::string name = key;
    std::replace(name.begin(), name.end(), '_', ' ');  // categories are spelled with spaces
    for (size_t i = 0; i < ing.categories.size(); ++i)
      if (ing.categories[i] == name) cat_weight[i] = w;
  }
  std::vector<std::pair<double, uint32_t>> cands;  // (key, pool index)
  for (uint32_t i = 0; i < pool.size(); ++i) {
    const double w = std::pow(pool[i].price / max_price, opt.price_weight_power) * cat_weight[pool[i].category];
    if (!(w > 0)) continue;
    const double u = (static_cast<double>(mix64(opt.seed ^ pool[i].key) >> 11) + 0.5) * 0x1p-53;  // (0, 1)
    cands.push_back({std::log(u) / w, i});
  }
  const bool all_counts = !opt.train.fraction && !opt.val.fraction && !opt.test.fraction;
  uint64_t want = opt.sample;
  if (want == 0)
    want = all_counts ? static_cast<uint64_t>(opt.train.value + opt.val.value + opt.test.value) : cands.size();
  const size_t n_sel = static_cast<size_t>(std::min<uint64_t>(want, cands.size()));
  auto better = [&](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : pool[a.second].key < pool[b.second].key;
  };
  Sample s;
  s.eligible = cands.size();
  if (n_sel < cands.size())
    std::nth_element(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(n_sel), cands.end(), better);
  for (size_t i = 0; i < n_sel; ++i) s.order.push_back(cands[i].second);
  const uint64_t shuffle_seed = mix64(opt.seed + 0x5851F42D4C957F2Dull);
  std::sort(s.order.begin(), s.order.end(), [&](uint32_t a, uint32_t b) {
    const uint64_t ka = mix64(pool[a].key ^ shuffle_seed), kb = mix64(pool[b].key ^ shuffle_seed);
    return ka != kb ? ka < kb : pool[a].key < pool[b].key;
  });
  return s;
}

struct Split {
  const char* name;
  size_t begin, end;  // in the sample's order
};

// Split sizes: test and val are filled first, so a shortfall shrinks train.
struct SplitPlan {
  uint64_t train = 0, val = 0, test = 0;
  uint64_t requested = 0;
  std::vector<Split> splits;  // train, val, test
};

SplitPlan plan_splits(const CurateOptions& opt, size_t n_sel) {
  auto size_of = [&](const SplitSize& s) {
    return s.fraction ? static_cast<uint64_t>(std::llround(s.value * static_cast<double>(n_sel)))
                      : static_cast<uint64_t>(s.value);
  };
  SplitPlan p;
  p.test = std::min<uint64_t>(size_of(opt.test), n_sel);
  p.val = std::min<uint64_t>(size_of(opt.val), n_sel - p.test);
  p.train = std::min<uint64_t>(size_of(opt.train), n_sel - p.test - p.val);
  p.requested = size_of(opt.train) + size_of(opt.val) + size_of(opt.test);
  p.splits = {
      {"train", p.test + p.val, p.test + p.val + p.train}, {"val", p.test, p.test + p.val}, {"test", 0, p.test}};
  return p;
}

// What one split's writing measured, for stats.json and the charts.
struct SplitOutput {
  std::vector<double> prices, summary_lengths, token_lengths;
  std::map<std::string, std::vector<double>> category_prices;
};

// Tokenizes a batch of prompts with their completions in parallel: BOS, prompt, completion, EOS;
// cstart[k] is where completion k starts.
void tokenize_batch(const Tokenizer& tok, const std::vector<std::string>& prompts,
                    const std::vector<std::string>& completions, int threads, std::vector<std::vector<int32_t>>& ids,
                    std::vector<uint32_t>& cstart) {
  ids.assign(prompts.size(), {});
  cstart.assign(prompts.size(), 0);
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
  for (size_t k = 0; k < prompts.size(); ++k) {
    std::vector<int32_t>& v = ids[k];
    if (tok.bos_id() >= 0) v.push_back(tok.bos_id());
    const auto p = tok.encode(prompts[k]);
    v.insert(v.end(), p.begin(), p.end());
    cstart[k] = static_cast<uint32_t>(v.size());
    const auto c = tok.encode(completions[k]);
    v.insert(v.end(), c.begin(), c.end());
    if (tok.eos_id() >= 0) v.push_back(tok.eos_id());
  }
}

// Writes <split>.jsonl (and <split>.bin with a tokenizer), each published whole when complete.
SplitOutput write_split(const CurateOptions& opt, const Split& sp, const Ingested& ing, const Sample& sample,
                        SpillFile& spill) {
  const fs::path out_dir(opt.out_dir);
  AtomicFile jsonl(out_dir / (std::string(sp.name) + ".jsonl"));
  std::unique_ptr<ShardWriter> shard;
  const fs::path shard_path = out_dir / (std::string(sp.name) + ".bin");
  // A shard left from an earlier run with a tokenizer would no longer match the JSON lines.
  if (!opt.tokenizer) fs::remove(shard_path);
  else
    shard = std::make_unique<ShardWriter>(shard_path.string(), opt.tokenizer->vocab_size(), opt.tokenizer->bos_id(),
                                          opt.tokenizer->eos_id());
  const int threads = std::max(1, opt.threads > 0 ? opt.threads : pricer::threads());
  SplitOutput out;
  constexpr size_t kBatch = 512;  // strings read in order, tokenized in parallel, written in order
  for (size_t b = sp.begin; b < sp.end; b += kBatch) {
    const size_t e = std::min(sp.end, b + kBatch);
    std::vector<std::string> prompts, completions;
    std::string title, text;
    for (size_t k = b; k < e; ++k) {
      const Compact& c = ing.pool[sample.order[k]];
      spill.read(c, title, text);
      const std::string& cat = ing.categories[c.category];
      prompts.push_back(fill_template(opt.prompt_template, {{"text", text}, {"title", title}, {"category", cat}}));
      completions.push_back(fill_template(opt.completion_template, {{"price", std::to_string(std::llround(c.price))}}));
      nlohmann::ordered_json j = {{"prompt", prompts.back()},
                                  {"completion", completions.back()},
                                  {"price", c.price},
                                  {"category", cat},
                                  {"title", title}};
      jsonl.write(j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
      out.prices.push_back(c.price);
      out.summary_lengths.push_back(c.length);
      out.category_prices[cat].push_back(c.price);
    }
    if (!shard) continue;
    std::vector<std::vector<int32_t>> ids;
    std::vector<uint32_t> cstart;
    tokenize_batch(*opt.tokenizer, prompts, completions, threads, ids, cstart);
    for (size_t k = 0; k < ids.size(); ++k) {
      shard->add(ids[k], cstart[k], ing.pool[sample.order[b + k]].price);
      out.token_lengths.push_back(static_cast<double>(ids[k].size()));
    }
  }
  jsonl.commit();
  if (shard) shard->finish();
  return out;
}

nlohmann::ordered_json split_stats(const SplitOutput& o, const Split& sp, bool tokens) {
  nlohmann::ordered_json s;
  s["count"] = sp.end - sp.begin;
  s["price"] = distribution(o.prices);
  s["summary_length"] = distribution(o.summary_lengths);
  if (tokens) s["sequence_tokens"] = distribution(o.token_lengths);
  nlohmann::ordered_json cats = nlohmann::ordered_json::object();
  for (auto& [cat, ps] : o.category_prices) cats[cat] = distribution(ps);
  s["categories"] = cats;
  return s;
}

// stats.json's account of the inputs, the length budget and the rules applied.
void describe_inputs_and_rules(const CurateOptions& opt, const Ingested& ing, nlohmann::ordered_json& st) {
  const CleanOptions& co = opt.clean;
  st["inputs"] = nlohmann::ordered_json::array();
  for (size_t f = 0; f < opt.inputs.size(); ++f)
    st["inputs"].push_back({{"path", opt.inputs[f]},
                            {"bytes", file_size(opt.inputs[f])},
                            {"lines", ing.files[f].lines},
                            {"blank_lines", ing.files[f].blank},
                            {"accepted", ing.files[f].accepted}});
  const bool tokens = opt.tokenizer != nullptr;
  st["budget"] = {{"unit", tokens ? "tokens" : "words"},
                  {"token_budget", co.token_budget},
                  {"tokenizer", tokens ? nlohmann::ordered_json(opt.tokenizer_path) : nullptr}};
  if (!tokens) {
    st["budget"]["word_budget"] = co.word_budget();
    st["budget"]["note"] = "no tokenizer given: summaries cut to " + std::to_string(co.word_budget()) + " words (" +
                           std::to_string(co.words_per_token) + " words per token x " +
                           std::to_string(co.token_budget) + " tokens)";
  }
  st["rules"] = {{"min_price", co.min_price},
                 {"max_price", co.max_price},
                 {"min_chars", co.min_chars},
                 {"max_chars", co.max_chars},
                 {"scrub_part_numbers", co.scrub_part_numbers},
                 {"specs", spec_placement_name(co.specs)},
                 {"drop_details", nlohmann::ordered_json(co.drop_details)},
                 {"max_line_bytes", co.max_line_bytes},
                 {"dedup", opt.dedup},
                 {"seed", opt.seed},
                 {"price_weight_power", opt.price_weight_power},
                 {"category_weights", opt.category_weights},
                 {"prompt_template", opt.prompt_template},
                 {"completion_template", opt.completion_template}};
}

// stats.json's counts: lines, rejections by reason, the pool, the sample and its splits.
void describe_counts(const Ingested& ing, const Sample& sample, const SplitPlan& plan, nlohmann::ordered_json& st) {
  uint64_t lines = 0, blank = 0;
  for (const FileStats& f : ing.files) lines += f.lines, blank += f.blank;
  st["counts"] = {{"lines", lines},
                  {"blank_lines", blank},
                  {"accepted", ing.pool.size()},
                  {"rejected", ing.rejected()},
                  {"eligible", sample.eligible},
                  {"sampled", sample.order.size()},
                  {"train", plan.train},
                  {"val", plan.val},
                  {"test", plan.test}};
  if (plan.requested > sample.order.size()) st["counts"]["shortfall"] = plan.requested - sample.order.size();
  nlohmann::ordered_json rej = nlohmann::ordered_json::object();
  for (int r = 1; r < kNumRejects; ++r)
    if (ing.counts[r] > 0)
      rej[reject_name(static_cast<Reject>(r))] = {{"count", ing.counts[r]}, {"examples", ing.examples[r]}};
  st["rejections"] = rej;
  std::vector<double> prices;
  std::map<std::string, uint64_t> cat_counts;
  for (auto& c : ing.pool) {
    prices.push_back(c.price);
    ++cat_counts[ing.categories[c.category]];
  }
  st["pool"] = {{"price", distribution(prices)}, {"categories", cat_counts}};
}

// The three charts beside stats.json: prices, lengths and the category mix of the sample.
void write_charts(const CurateOptions& opt, const std::vector<SplitOutput>& outs) {
  const fs::path out_dir(opt.out_dir);
  const bool tokens = opt.tokenizer != nullptr;
  std::vector<double> prices, lengths;
  std::map<std::string, uint64_t> cats;
  for (const SplitOutput& o : outs) {
    prices.insert(prices.end(), o.prices.begin(), o.prices.end());
    const auto& lens = tokens ? o.token_lengths : o.summary_lengths;
    lengths.insert(lengths.end(), lens.begin(), lens.end());
    for (const auto& [cat, ps] : o.category_prices) cats[cat] += ps.size();
  }
  report::ChartOptions c;
  c.title = "Price distribution (" + std::to_string(prices.size()) + " items)";
  c.x_label = "price (USD)";
  c.y_label = "items";
  write_file_atomic(out_dir / "price_hist.svg",
                    report::histogram_svg(prices, 50, c, opt.clean.min_price, opt.clean.max_price));
  c.title = tokens ? "Sequence length (prompt + completion tokens)" : "Summary length (words)";
  c.x_label = tokens ? "tokens" : "words";
  write_file_atomic(out_dir / "token_length_hist.svg", report::histogram_svg(lengths, 40, c));
  std::vector<report::Bar> bars;
  for (auto& [cat, n] : cats) bars.push_back({cat, static_cast<double>(n)});
  std::stable_sort(bars.begin(), bars.end(),
                   [](const report::Bar& a, const report::Bar& b) { return a.value > b.value; });
  c.title = "Category mix";
  c.x_label = "";
  write_file_atomic(out_dir / "category_mix.svg", report::bar_chart_svg(bars, c));
}

void print_summary(const CurateOptions& opt, const Ingested& ing, const SplitPlan& plan,
                   const nlohmann::ordered_json& st) {
  std::fprintf(stderr, "curate: %llu lines, %zu accepted, %llu rejected\n",
               static_cast<unsigned long long>(st["counts"]["lines"].get<uint64_t>()), ing.pool.size(),
               static_cast<unsigned long long>(ing.rejected()));
  for (int r = 1; r < kNumRejects; ++r) {
    if (ing.counts[r] == 0) continue;
    const auto& ex = ing.examples[r];
    std::fprintf(stderr, "  %-20s %10llu%s%s\n", reject_name(static_cast<Reject>(r)),
                 static_cast<unsigned long long>(ing.counts[r]), ex.empty() ? "" : "  e.g. ",
                 ex.empty() ? "" : ex[0].c_str());
  }
  std::fprintf(stderr, "curate: train %llu, val %llu, test %llu -> %s\n", static_cast<unsigned long long>(plan.train),
               static_cast<unsigned long long>(plan.val), static_cast<unsigned long long>(plan.test),
               opt.out_dir.c_str());
  if (st["counts"].contains("shortfall"))
    std::fprintf(stderr, "curate: warning: %llu fewer items than requested were available\n",
                 static_cast<unsigned long long>(st["counts"]["shortfall"].get<uint64_t>()));
}

}  // namespace

CurateResult curate(const CurateOptions& opt) {
  check_options(opt);
  const fs::path out_dir(opt.out_dir);
  ensure_output_dir(out_dir, "--out");
  SpillFile spill(out_dir / ".curate-spill.tmp");
  const Ingested ing = ingest(opt, spill);
  const Sample sample = weighted_sample(opt, ing);
  const SplitPlan plan = plan_splits(opt, sample.order.size());

  CurateResult result;
  nlohmann::ordered_json& st = result.stats;
  describe_inputs_and_rules(opt, ing, st);
  describe_counts(ing, sample, plan, st);
  std::vector<SplitOutput> outs;
  nlohmann::ordered_json splits = nlohmann::ordered_json::object();
  for (const Split& sp : plan.splits) {
    outs.push_back(write_split(opt, sp, ing, sample, spill));
    splits[sp.name] = split_stats(outs.back(), sp, opt.tokenizer != nullptr);
  }
  st["splits"] = splits;
  write_file_atomic(out_dir / "stats.json", st.dump(2) + "\n");
  if (opt.charts) write_charts(opt, outs);
  if (opt.progress) print_summary(opt, ing, plan, st);
  result.train = plan.train;
  result.val = plan.val;
  result.test = plan.test;
  return result;
}

}  // namespace pricer::data
