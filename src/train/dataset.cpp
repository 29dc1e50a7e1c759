#include "train/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "core/random.h"
#include "data/shard.h"
#include "io/json_util.h"

namespace fs = std::filesystem;

namespace pricer {

namespace {

// Fisher-Yates with a counter-based generator: identical on every platform.
template <typename T>
void shuffle(std::vector<T>& v, uint64_t seed) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = mix64(seed + i) % i;
    std::swap(v[i - 1], v[j]);
  }
}

double price_of(const nlohmann::json& j) {
  auto it = j.find("price");
  if (it != j.end() && it->is_number()) return it->get<double>();
  return std::numeric_limits<double>::quiet_NaN();
}

// Calls `each(json, where)` for every non-blank line of a JSON-lines file, each an object.
void for_each_record(const std::string& path,
                     const std::function<void(const nlohmann::json&, const std::string&)>& each) {
  std::ifstream in(path);
  require(in.good(), path + ": cannot open");
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    const nlohmann::json j = parse_json_strict(line, where);
    require(j.is_object(), where + ": not a JSON object");
    each(j, where);
  }
}

std::vector<PricedExample> load_jsonl(const std::string& path, const Tokenizer& tok, int64_t vocab,
                                      const DatasetOptions& opt) {
  std::vector<PricedExample> out;
  for_each_record(path, [&](const nlohmann::json& j, const std::string& where) {
    PricedExample ex;
    ex.price = price_of(j);
    if (j.contains("input_ids")) {
      require(!opt.rewrite_prompt, where + ": pre-tokenized records hold no prompt text to add comparables to");
      require(!opt.keep_prompt, where + ": pre-tokenized records hold no prompt text to cut cross-fitting's folds by");
      require(j["input_ids"].is_array() && j.contains("completion_start") && j["completion_start"].is_number_integer(),
              where + ": pre-tokenized records need an input_ids array and an integer completion_start");
      for (const auto& v : j["input_ids"]) {
        require(v.is_number_integer(), where + ": input_ids holds a non-integer");
        const int64_t id = v.get<int64_t>();
        require(id >= 0 && id < vocab, where + ": token id " + std::to_string(id) + " outside the vocabulary");
        ex.tokens.push_back(static_cast<int32_t>(id));
      }
      ex.prompt_len = j["completion_start"].get<int64_t>();
    } else {
      require(
          j.contains("prompt") && j["prompt"].is_string() && j.contains("completion") && j["completion"].is_string(),
          where + ": expected string fields prompt and completion (or input_ids + completion_start)");
      const std::string& prompt = j["prompt"].get_ref<const std::string&>();
      if (opt.keep_prompt && !opt.keep_prompt(prompt)) return;
      if (opt.add_bos && tok.bos_id() >= 0) ex.tokens.push_back(tok.bos_id());
      for (int32_t id : tok.encode(opt.rewrite_prompt ? opt.rewrite_prompt(prompt, out.size()) : prompt))
        ex.tokens.push_back(id);
      ex.prompt_len = static_cast<int64_t>(ex.tokens.size());
      for (int32_t id : tok.encode(j["completion"].get<std::string>())) ex.tokens.push_back(id);
      if (opt.add_eos && tok.eos_id() >= 0) ex.tokens.push_back(tok.eos_id());
    }
    require(ex.prompt_len >= 1 && ex.prompt_len < static_cast<int64_t>(ex.tokens.size()),
            where + ": the completion must start after at least one prompt token and be non-empty");
    fit_length(ex, opt.max_length, opt.keep_prompt_tail);
    out.push_back(std::move(ex));
  });
  return out;
}

std::string jsonl_of(const std::string& source, const std::string& split) {
  if (!fs::is_directory(source)) return source;
  const fs::path jsonl = fs::path(source) / (split + ".jsonl");
  require(fs::exists(jsonl), source + ": no " + split + ".jsonl in this dataset directory");
  return jsonl.string();
}

}  // namespace

void fit_length(PricedExample& ex, int64_t max_length, int64_t keep_tail) {
  const int64_t n = static_cast<int64_t>(ex.tokens.size());
  if (n <= max_length) return;
  const int64_t completion = n - ex.prompt_len;
  const int64_t room = max_length - completion;  // prompt tokens we may keep
  require(room >= 2, "an example's completion (" + std::to_string(completion) + " tokens) does not fit in max_length " +
                         std::to_string(max_length));
  const int64_t tail = std::min(keep_tail, room - 1);
  const int64_t head = room - tail;
  std::vector<int32_t> t(ex.tokens.begin(), ex.tokens.begin() + head);
  t.insert(t.end(), ex.tokens.begin() + ex.prompt_len - tail, ex.tokens.end());
  ex.tokens = std::move(t);
  ex.prompt_len = head + tail;
}

std::vector<PromptRecord> load_prompt_records(const std::string& source, const std::string& split) {
  std::vector<PromptRecord> out;
  for_each_record(jsonl_of(source, split), [&](const nlohmann::json& j, const std::string& where) {
    require(j.contains("prompt") && j["prompt"].is_string(), where + ": expected a string field prompt");
    out.push_back({j["prompt"].get<std::string>(), price_of(j)});
  });
  return out;
}

bool has_split(const std::string& source, const std::string& split) {
  return fs::is_directory(source) &&
         (fs::exists(fs::path(source) / (split + ".bin")) || fs::exists(fs::path(source) / (split + ".jsonl")));
}

std::vector<PricedExample> load_examples(const std::string& source, const std::string& split, const Tokenizer& tok,
                                         int64_t vocab, const DatasetOptions& opt) {
  if (!fs::is_directory(source)) return load_jsonl(source, tok, vocab, opt);
  const fs::path shard = fs::path(source) / (split + ".bin");
  if (fs::exists(shard) && !opt.rewrite_prompt && !opt.keep_prompt) {
    data::ShardReader r(shard.string());
    require(r.vocab_size() <= vocab, shard.string() + ": tokenized for a vocabulary of " +
                                         std::to_string(r.vocab_size()) + ", the model has " + std::to_string(vocab));
    std::vector<PricedExample> out(r.size());
    for (size_t i = 0; i < r.size(); ++i) {
      const data::ShardRecord rec = r[i];
      out[i].tokens.assign(rec.ids.begin(), rec.ids.end());
      out[i].prompt_len = rec.completion_start;
      out[i].price = rec.price;
      require(out[i].prompt_len >= 1 && out[i].prompt_len < static_cast<int64_t>(out[i].tokens.size()),
              shard.string() + ": record " + std::to_string(i) + " has an empty prompt or completion");
      fit_length(out[i], opt.max_length, opt.keep_prompt_tail);
    }
    return out;
  }
  return load_jsonl(jsonl_of(source, split), tok, vocab, opt);
}

std::vector<std::vector<int64_t>> epoch_batches(const std::vector<PricedExample>& data, int64_t batch_size,
                                                uint64_t seed, int64_t epoch) {
  require(batch_size >= 1, "batch size must be at least 1");
  std::vector<int64_t> idx(data.size());
  std::iota(idx.begin(), idx.end(), 0);
  shuffle(idx, mix64(seed) ^ mix64(static_cast<uint64_t>(epoch) + 1));
  const size_t window = static_cast<size_t>(batch_size) * 50;
  for (size_t w = 0; w < idx.size(); w += window) {
    auto end = idx.begin() + static_cast<int64_t>(std::min(idx.size(), w + window));
    std::stable_sort(idx.begin() + static_cast<int64_t>(w), end,
                     [&](int64_t a, int64_t b) { return data[a].tokens.size() < data[b].tokens.size(); });
  }
  std::vector<std::vector<int64_t>> batches;
  for (size_t i = 0; i < idx.size(); i += static_cast<size_t>(batch_size))
    batches.emplace_back(idx.begin() + static_cast<int64_t>(i),
                         idx.begin() + static_cast<int64_t>(std::min(idx.size(), i + batch_size)));
  shuffle(batches, mix64(seed ^ 0x5bd1e995ull) ^ mix64(static_cast<uint64_t>(epoch) + 7));
  return batches;
}

Batch batch_of(const std::vector<PricedExample>& data, const std::vector<int64_t>& idx) {
  std::vector<Example> ex;
  ex.reserve(idx.size());
  for (int64_t i : idx) ex.push_back({data[i].tokens, data[i].prompt_len});
  return make_batch(ex, BatchMode::Packing, 0);
}

void add_price_smoothing(Batch& b, const std::vector<PricedExample>& data, const std::vector<int64_t>& idx,
                         const NumberTokens& numbers, double sigma) {
  require(sigma > 0 && std::isfinite(sigma), "price smoothing: sigma must be positive");
  require(static_cast<int64_t>(idx.size()) == b.n_sequences(), "price smoothing: the batch is not these examples");
  for (size_t s = 0; s < idx.size(); ++s) {
    const PricedExample& ex = data[idx[s]];
    const int64_t pos = b.cu_seqlens[s] + ex.prompt_len - 1;  // predicts the first completion token
    if (ex.prompt_len < 1 || ex.prompt_len >= static_cast<int64_t>(ex.tokens.size()) || !b.loss_mask[pos]) continue;
    const auto hit = std::find(numbers.ids.begin(), numbers.ids.end(), b.targets[pos]);
    if (hit == numbers.ids.end()) continue;
    const double center = std::log1p(numbers.values[hit - numbers.ids.begin()]);
    SoftTarget st;
    st.position = pos;
    double sum = 0;
    for (size_t k = 0; k < numbers.ids.size(); ++k) {
      const double z = (std::log1p(numbers.values[k]) - center) / sigma;
      const double w = std::exp(-0.5 * z * z);
      if (w < 1e-3) continue;
      st.ids.push_back(numbers.ids[k]);
      st.probs.push_back(static_cast<float>(w));
      sum += w;
    }
    for (float& p : st.probs) p = static_cast<float>(p / sum);
    b.soft_targets.push_back(std::move(st));
  }
}

}  // namespace pricer
