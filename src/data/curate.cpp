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

std::string fill_template(const std::string& tmpl,
                          const std::vector<std::pair<std::string, std::string>>& values) {
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
  uint64_t key;     // hash of the summary: identity for seeded sampling and shuffling
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

ChunkResult process_chunk(RecordCleaner& cleaner, const Work& w, std::string_view file_category,
                          size_t max_line) {
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
      r.rejects.push_back({line_no, Reject::LineTooLong,
                           "longer than the " + std::to_string(max_line) + "-byte line limit"});
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

// Runs reader -> workers -> in-order consumer. consume() runs on the calling thread.
template <class Consume>
void run_pipeline(const CurateOptions& opt, const std::vector<std::string>& file_categories,
                  Progress& progress, Consume&& consume) {
  const int n_workers = std::max(1, opt.threads > 0 ? opt.threads : pricer::threads());
  const uint64_t max_inflight = 2ull * n_workers + 2;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Work> queue;
  std::map<uint64_t, ChunkResult> done;
  uint64_t produced = 0, consumed = 0;
  bool reader_done = false, abort = false;
  std::exception_ptr error;

  auto fail = [&](std::exception_ptr e) {
    std::lock_guard lock(mu);
    if (!error) error = e;
    abort = true;
    cv.notify_all();
  };

  std::thread reader([&] {
    try {
      for (size_t f = 0; f < opt.inputs.size(); ++f) {
        JsonlReader rd(opt.inputs[f], opt.clean.max_line_bytes, opt.chunk_bytes);
        for (;;) {
          Work w{0, f, {}};
          if (!rd.next(w.chunk)) break;
          progress.add(w.chunk.input_bytes);
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return abort || produced - consumed < max_inflight; });
          if (abort) return;
          w.seq = produced++;
          queue.push_back(std::move(w));
          cv.notify_all();
        }
      }
    } catch (...) {
      fail(std::current_exception());
    }
    std::lock_guard lock(mu);
    reader_done = true;
    cv.notify_all();
  });

  std::vector<std::thread> workers;
  for (int t = 0; t < n_workers; ++t) {
    workers.emplace_back([&] {
      try {
        RecordCleaner cleaner(opt.clean, opt.tokenizer);
        for (;;) {
          Work w;
          {
            std::unique_lock lock(mu);
            cv.wait(lock, [&] { return abort || !queue.empty() || reader_done; });
            if (abort || queue.empty()) return;
            w = std::move(queue.front());
            queue.pop_front();
          }
          ChunkResult r =
              process_chunk(cleaner, w, file_categories[w.file], opt.clean.max_line_bytes);
          std::lock_guard lock(mu);
          done.emplace(w.seq, std::move(r));
          cv.notify_all();
        }
      } catch (...) {
        fail(std::current_exception());
      }
    });
  }

  auto join_all = [&] {
    {
      std::lock_guard lock(mu);
      abort = true;
      cv.notify_all();
    }
    reader.join();
    for (auto& t : workers) t.join();
  };

  try {
    for (;;) {
      ChunkResult r;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] {
          return error || done.count(consumed) || (reader_done && consumed == produced);
        });
        if (error) break;
        auto it = done.find(consumed);
        if (it == done.end()) break;  // reader finished and everything is consumed
        r = std::move(it->second);
        done.erase(it);
        ++consumed;
        cv.notify_all();
      }
      consume(r);
    }
  } catch (...) {
    join_all();
    throw;
  }
  join_all();
  if (error) std::rethrow_exception(error);
}

nlohmann::ordered_json distribution(std::vector<double> v) {
  nlohmann::ordered_json j;
  j["count"] = v.size();
  if (v.empty()) return j;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  auto q = [&](double p) { return v[static_cast<size_t>(p * (v.size() - 1) + 0.5)]; };
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

void write_file(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary);
  out << content;
  out.close();
  require(out.good(), p.string() + ": write failed");
}

}  // namespace

CurateResult curate(const CurateOptions& opt) {
  const CleanOptions& co = opt.clean;
  require(!opt.inputs.empty(), "curate: no input files");
  require(!opt.out_dir.empty(), "curate: no output directory");
  require(co.min_price >= 0 && co.min_price <= co.max_price,
          "curate: the price range must satisfy 0 <= min <= max");
  require(co.token_budget > 0 && co.words_per_token > 0, "curate: the token budget must be > 0");
  require(co.max_chars >= co.min_chars, "curate: max chars must be >= min chars");
  require(std::isfinite(opt.price_weight_power) && opt.price_weight_power >= 0,
          "curate: price weight power must be >= 0");
  for (auto& [cat, w] : opt.category_weights)
    require(std::isfinite(w) && w >= 0, "curate: category weight for '" + cat + "' must be >= 0");
  std::vector<std::string> file_categories;
  uint64_t total_bytes = 0;
  for (auto& in : opt.inputs) {
    require(!fs::is_directory(in), in + ": a directory; give the JSON-lines files in it (e.g. " + in + "/*.jsonl)");
    require(fs::is_regular_file(in), in + ": no such file");
    file_categories.push_back(category_from_filename(in));
    total_bytes += file_size(in);
  }
  const fs::path out_dir(opt.out_dir);
  ensure_output_dir(out_dir, "--out");

  // ---- Ingest: parse, clean, dedup; accepted items go to the spill file. ----
  const fs::path spill_path = out_dir / ".curate-spill.tmp";
  std::FILE* spill = std::fopen(spill_path.c_str(), "w+b");
  require(spill != nullptr, spill_path.string() + ": cannot create");
  struct SpillGuard {
    std::FILE* f;
    fs::path p;
    ~SpillGuard() {
      std::fclose(f);
      std::error_code ec;
      fs::remove(p, ec);
    }
  } spill_guard{spill, spill_path};

  std::vector<Compact> pool;
  std::vector<std::string> categories;
  std::unordered_map<std::string, uint32_t> category_index;
  std::unordered_set<uint64_t> seen_titles, seen_texts;
  uint64_t counts[kNumRejects] = {};
  std::vector<std::vector<std::string>> examples(kNumRejects);
  struct FileStats {
    uint64_t lines = 0, blank = 0, accepted = 0;
  };
  std::vector<FileStats> file_stats(opt.inputs.size());
  uint64_t spill_at = 0;

  ProgressOptions popt;
  popt.bytes = true;
  popt.enabled = opt.progress;
  Progress progress("curate", total_bytes, popt);

  auto reject = [&](size_t file, uint64_t line, Reject reason, const std::string& why) {
    ++counts[static_cast<int>(reason)];
    const std::string where = opt.inputs[file] + ":" + std::to_string(line);
    if (opt.strict && is_bad_input(reason))
      throw Error(where + ": " + reject_name(reason) + ": " + why);
    auto& ex = examples[static_cast<int>(reason)];
    if (ex.size() < static_cast<size_t>(opt.max_examples)) ex.push_back(where + ": " + why);
  };

  run_pipeline(opt, file_categories, progress, [&](ChunkResult& r) {
    FileStats& fsx = file_stats[r.file];
    fsx.lines += r.lines;
    fsx.blank += r.blank;
    for (auto& rj : r.rejects) reject(r.file, rj.line, rj.reason, rj.why);
    for (size_t i = 0; i < r.items.size(); ++i) {
      CleanItem& it = r.items[i];
      const uint64_t title_key = hash64(normalize_title(it.title));
      const uint64_t text_key = hash64(it.text);
      if (opt.dedup) {
        if (seen_titles.count(title_key)) {
          reject(r.file, r.item_lines[i], Reject::DuplicateTitle, "title seen before");
          continue;
        }
        if (seen_texts.count(text_key)) {
          reject(r.file, r.item_lines[i], Reject::DuplicateText, "text seen before");
          continue;
        }
        seen_titles.insert(title_key);
        seen_texts.insert(text_key);
      }
      auto [cit, added] = category_index.emplace(it.category, categories.size());
      if (added) categories.push_back(it.category);
      Compact c{spill_at, text_key, it.price, static_cast<uint32_t>(it.title.size()),
                static_cast<uint32_t>(it.text.size()), it.length, cit->second};
      require(std::fwrite(it.title.data(), 1, it.title.size(), spill) == it.title.size() &&
                  std::fwrite(it.text.data(), 1, it.text.size(), spill) == it.text.size(),
              spill_path.string() + ": write failed (disk full?)");
      spill_at += it.title.size() + it.text.size();
      pool.push_back(c);
      ++fsx.accepted;
    }
  });
  progress.set(total_bytes);
  progress.finish();
  require(std::fflush(spill) == 0, spill_path.string() + ": write failed");

  // ---- Weighted sampling (Efraimidis-Spirakis: key log(u)/w, keep the largest). ----
  double max_price = 0;
  for (auto& c : pool) max_price = std::max(max_price, c.price);
  std::vector<double> cat_weight(categories.size(), 1.0);
  for (const auto& [key, w] : opt.category_weights) {
    std::string name = key;
    std::replace(name.begin(), name.end(), '_', ' ');  // categories are spelled with spaces
    for (size_t i = 0; i < categories.size(); ++i)
      if (categories[i] == name) cat_weight[i] = w;
  }
  struct Cand {
    double key;
    uint32_t idx;
  };
  std::vector<Cand> cands;
  cands.reserve(pool.size());
  for (uint32_t i = 0; i < pool.size(); ++i) {
    const Compact& c = pool[i];
    const double w = std::pow(c.price / max_price, opt.price_weight_power) * cat_weight[c.category];
    if (!(w > 0)) continue;
    // u in (0, 1) from the item's own hash: the draw does not depend on input order or threads.
    const double u = (static_cast<double>(mix64(opt.seed ^ c.key) >> 11) + 0.5) * 0x1p-53;
    cands.push_back({std::log(u) / w, i});
  }
  const bool all_counts = !opt.train.fraction && !opt.val.fraction && !opt.test.fraction;
  uint64_t want = opt.sample;
  if (want == 0)
    want = all_counts ? static_cast<uint64_t>(opt.train.value + opt.val.value + opt.test.value)
                      : cands.size();
  const size_t n_sel = static_cast<size_t>(std::min<uint64_t>(want, cands.size()));
  auto better = [&](const Cand& a, const Cand& b) {
    if (a.key != b.key) return a.key > b.key;
    return pool[a.idx].key < pool[b.idx].key;
  };
  const size_t eligible = cands.size();
  if (n_sel < cands.size())
    std::nth_element(cands.begin(), cands.begin() + n_sel, cands.end(), better);
  cands.resize(n_sel);
  // Shuffle the sample so the split does not follow the sampling weights.
  const uint64_t shuffle_seed = mix64(opt.seed + 0x5851F42D4C957F2Dull);
  std::sort(cands.begin(), cands.end(), [&](const Cand& a, const Cand& b) {
    const uint64_t ka = mix64(pool[a.idx].key ^ shuffle_seed),
                   kb = mix64(pool[b.idx].key ^ shuffle_seed);
    return ka != kb ? ka < kb : pool[a.idx].key < pool[b.idx].key;
  });

  auto size_of = [&](const SplitSize& s) {
    return s.fraction ? static_cast<uint64_t>(std::llround(s.value * n_sel))
                      : static_cast<uint64_t>(s.value);
  };
  // Test and val are filled first: a shortfall shrinks train.
  const uint64_t n_test = std::min<uint64_t>(size_of(opt.test), n_sel);
  const uint64_t n_val = std::min<uint64_t>(size_of(opt.val), n_sel - n_test);
  const uint64_t n_train = std::min<uint64_t>(size_of(opt.train), n_sel - n_test - n_val);
  struct Split {
    const char* name;
    size_t begin, end;
  };
  const Split splits[3] = {{"train", n_test + n_val, n_test + n_val + n_train},
                           {"val", n_test, n_test + n_val},
                           {"test", 0, n_test}};

  // ---- Outputs ----
  CurateResult result;
  nlohmann::ordered_json& st = result.stats;
  st["inputs"] = nlohmann::ordered_json::array();
  uint64_t total_lines = 0, total_blank = 0;
  for (size_t f = 0; f < opt.inputs.size(); ++f) {
    st["inputs"].push_back({{"path", opt.inputs[f]},
                            {"bytes", file_size(opt.inputs[f])},
                            {"lines", file_stats[f].lines},
                            {"blank_lines", file_stats[f].blank},
                            {"accepted", file_stats[f].accepted}});
    total_lines += file_stats[f].lines;
    total_blank += file_stats[f].blank;
  }
  const bool tokens = opt.tokenizer != nullptr;
  st["budget"] = {{"unit", tokens ? "tokens" : "words"},
                  {"token_budget", co.token_budget},
                  {"tokenizer", tokens ? nlohmann::ordered_json(opt.tokenizer_path) : nullptr}};
  if (!tokens) {
    st["budget"]["word_budget"] = co.word_budget();
    st["budget"]["note"] = "no tokenizer given: summaries cut to " +
                           std::to_string(co.word_budget()) + " words (" +
                           std::to_string(co.words_per_token) + " words per token x " +
                           std::to_string(co.token_budget) + " tokens)";
  }
  nlohmann::ordered_json drops = co.drop_details;
  st["rules"] = {{"min_price", co.min_price},
                 {"max_price", co.max_price},
                 {"min_chars", co.min_chars},
                 {"max_chars", co.max_chars},
                 {"scrub_part_numbers", co.scrub_part_numbers},
                 {"specs", spec_placement_name(co.specs)},
                 {"drop_details", drops},
                 {"max_line_bytes", co.max_line_bytes},
                 {"dedup", opt.dedup},
                 {"seed", opt.seed},
                 {"price_weight_power", opt.price_weight_power},
                 {"category_weights", opt.category_weights},
                 {"prompt_template", opt.prompt_template},
                 {"completion_template", opt.completion_template}};
  uint64_t rejected = 0;
  nlohmann::ordered_json rej = nlohmann::ordered_json::object();
  for (int r = 1; r < kNumRejects; ++r) {
    rejected += counts[r];
    if (counts[r] == 0) continue;
    rej[reject_name(static_cast<Reject>(r))] = {{"count", counts[r]}, {"examples", examples[r]}};
  }
  st["counts"] = {{"lines", total_lines},   {"blank_lines", total_blank},
                  {"accepted", pool.size()}, {"rejected", rejected},
                  {"eligible", eligible},
                  {"sampled", n_sel},        {"train", n_train},
                  {"val", n_val},            {"test", n_test}};
  if (size_of(opt.train) + size_of(opt.val) + size_of(opt.test) > n_sel)
    st["counts"]["shortfall"] = size_of(opt.train) + size_of(opt.val) + size_of(opt.test) - n_sel;
  st["rejections"] = rej;
  {
    std::vector<double> prices;
    std::map<std::string, uint64_t> cat_counts;
    for (auto& c : pool) {
      prices.push_back(c.price);
      ++cat_counts[categories[c.category]];
    }
    st["pool"] = {{"price", distribution(prices)}, {"categories", cat_counts}};
  }

  std::vector<char> strbuf;
  auto read_spill = [&](const Compact& c, std::string& title, std::string& text) {
    strbuf.resize(c.title_len + c.text_len);
    require(fseeko(spill, static_cast<off_t>(c.offset), SEEK_SET) == 0 &&
                std::fread(strbuf.data(), 1, strbuf.size(), spill) == strbuf.size(),
            spill_path.string() + ": read failed");
    title.assign(strbuf.data(), c.title_len);
    text.assign(strbuf.data() + c.title_len, c.text_len);
  };

  const int n_threads = std::max(1, opt.threads > 0 ? opt.threads : pricer::threads());
  std::vector<double> all_prices, all_lengths;
  std::map<std::string, uint64_t> all_cats;
  nlohmann::ordered_json split_stats = nlohmann::ordered_json::object();
  for (const Split& sp : splits) {
    const fs::path jsonl_path = out_dir / (std::string(sp.name) + ".jsonl");
    std::ofstream out(jsonl_path, std::ios::binary);
    require(out.good(), jsonl_path.string() + ": cannot create");
    std::unique_ptr<ShardWriter> shard;
    // A shard left from an earlier run with a tokenizer would no longer match the JSON lines.
    if (!tokens) fs::remove(out_dir / (std::string(sp.name) + ".bin"));
    if (tokens)
      shard = std::make_unique<ShardWriter>((out_dir / (std::string(sp.name) + ".bin")).string(),
                                            opt.tokenizer->vocab_size(), opt.tokenizer->bos_id(),
                                            opt.tokenizer->eos_id());
    std::vector<double> prices, lengths, summary_lengths;
    std::map<std::string, std::vector<double>> cat_prices;
    // Batches: strings read in order, tokenized in parallel, written in order.
    constexpr size_t kBatch = 512;
    for (size_t b = sp.begin; b < sp.end; b += kBatch) {
      const size_t e = std::min(sp.end, b + kBatch);
      std::vector<std::string> prompts(e - b), completions(e - b);
      std::vector<std::vector<int32_t>> ids(e - b);
      std::vector<uint32_t> cstart(e - b);
      std::string title, text;
      for (size_t k = b; k < e; ++k) {
        const Compact& c = pool[cands[k].idx];
        read_spill(c, title, text);
        const std::string& cat = categories[c.category];
        prompts[k - b] = fill_template(opt.prompt_template,
                                       {{"text", text}, {"title", title}, {"category", cat}});
        completions[k - b] = fill_template(
            opt.completion_template, {{"price", std::to_string(std::llround(c.price))}});
        nlohmann::ordered_json j;
        j["prompt"] = prompts[k - b];
        j["completion"] = completions[k - b];
        j["price"] = c.price;
        j["category"] = cat;
        j["title"] = title;
        out << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
        prices.push_back(c.price);
        summary_lengths.push_back(c.length);
        cat_prices[cat].push_back(c.price);
      }
      if (tokens) {
        const Tokenizer& tok = *opt.tokenizer;
#pragma omp parallel for schedule(dynamic, 8) num_threads(n_threads)
        for (size_t k = 0; k < e - b; ++k) {
          std::vector<int32_t>& v = ids[k];
          if (tok.bos_id() >= 0) v.push_back(tok.bos_id());
          auto p = tok.encode(prompts[k]);
          v.insert(v.end(), p.begin(), p.end());
          cstart[k] = static_cast<uint32_t>(v.size());
          auto c = tok.encode(completions[k]);
          v.insert(v.end(), c.begin(), c.end());
          if (tok.eos_id() >= 0) v.push_back(tok.eos_id());
        }
        for (size_t k = 0; k < e - b; ++k) {
          shard->add(ids[k], cstart[k], pool[cands[b + k].idx].price);
          lengths.push_back(static_cast<double>(ids[k].size()));
        }
      }
    }
    out.close();
    require(out.good(), jsonl_path.string() + ": write failed");
    if (shard) shard->finish();

    nlohmann::ordered_json s;
    s["count"] = sp.end - sp.begin;
    s["price"] = distribution(prices);
    s["summary_length"] = distribution(summary_lengths);
    if (tokens) s["sequence_tokens"] = distribution(lengths);
    nlohmann::ordered_json cats = nlohmann::ordered_json::object();
    for (auto& [cat, ps] : cat_prices) {
      cats[cat] = distribution(ps);
      all_cats[cat] += ps.size();
    }
    s["categories"] = cats;
    split_stats[sp.name] = s;
    all_prices.insert(all_prices.end(), prices.begin(), prices.end());
    const auto& lens = tokens ? lengths : summary_lengths;
    all_lengths.insert(all_lengths.end(), lens.begin(), lens.end());
  }
  st["splits"] = split_stats;
  write_file(out_dir / "stats.json", st.dump(2) + "\n");

  if (opt.charts) {
    report::ChartOptions c;
    c.title = "Price distribution (" + std::to_string(all_prices.size()) + " items)";
    c.x_label = "price (USD)";
    c.y_label = "items";
    write_file(out_dir / "price_hist.svg",
               report::histogram_svg(all_prices, 50, c, co.min_price, co.max_price));
    c.title = tokens ? "Sequence length (prompt + completion tokens)" : "Summary length (words)";
    c.x_label = tokens ? "tokens" : "words";
    write_file(out_dir / "token_length_hist.svg", report::histogram_svg(all_lengths, 40, c));
    std::vector<report::Bar> bars;
    for (auto& [cat, n] : all_cats) bars.push_back({cat, static_cast<double>(n)});
    std::stable_sort(bars.begin(), bars.end(),
                     [](const report::Bar& a, const report::Bar& b) { return a.value > b.value; });
    c.title = "Category mix";
    c.x_label = "";
    write_file(out_dir / "category_mix.svg", report::bar_chart_svg(bars, c));
  }

  if (opt.progress) {
    std::fprintf(stderr, "curate: %llu lines, %zu accepted, %llu rejected\n",
                 static_cast<unsigned long long>(total_lines), pool.size(),
                 static_cast<unsigned long long>(rejected));
    for (int r = 1; r < kNumRejects; ++r) {
      if (counts[r] == 0) continue;
      std::fprintf(stderr, "  %-20s %10llu%s%s\n", reject_name(static_cast<Reject>(r)),
                   static_cast<unsigned long long>(counts[r]),
                   examples[r].empty() ? "" : "  e.g. ",
                   examples[r].empty() ? "" : examples[r][0].c_str());
    }
    std::fprintf(stderr, "curate: train %llu, val %llu, test %llu -> %s\n",
                 static_cast<unsigned long long>(n_train), static_cast<unsigned long long>(n_val),
                 static_cast<unsigned long long>(n_test), out_dir.c_str());
    if (st["counts"].contains("shortfall"))
      std::fprintf(stderr, "curate: warning: %llu fewer items than requested were available\n",
                   static_cast<unsigned long long>(st["counts"]["shortfall"].get<uint64_t>()));
  }
  result.train = n_train;
  result.val = n_val;
  result.test = n_test;
  return result;
}

}  // namespace pricer::data
