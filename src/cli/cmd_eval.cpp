// `pricer eval`: scores pricers (classic baselines, a human, a hosted model, the LLMs) on a split
// and writes results.json, report.html and a leaderboard.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "eval/evaluate.h"
#include "eval/human.h"
#include "eval/pricer.h"
#include "monitor/recorder.h"

namespace {

namespace fs = std::filesystem;
using namespace pricer::eval;

struct EvalArgs {
  std::string data;
  std::string split;
  std::string train;
  std::string pricers = "mean,random,linear,tfidf";
  std::string out = "eval-out";
  std::size_t limit = 0;
  std::size_t train_limit = 0;
  int bootstrap = 1000;
  std::string human_export;
  std::vector<std::string> params;
  std::string run_name;
  std::string runs_db;
  bool record = true;
  PricerContext ctx;
};

// The figures of every pricer that priced every item (the others: how many went unpriced); the
// run fails when a pricer priced nothing.
void record_results(pricer::monitor::RunRecorder& rec, const std::vector<PricerResult>& results, const std::string& out,
                    const std::string& failed) {
  std::map<std::string, double> m;
  for (const auto& r : results) {
    if (!r.complete()) {
      m[r.name + "/unpriced"] = static_cast<double>(r.unpriced);
      continue;
    }
    const auto& x = r.metrics;
    m[r.name + "/mae"] = x.mae;
    m[r.name + "/rmsle"] = x.rmsle;
    m[r.name + "/r2"] = x.r2;
    m[r.name + "/hit_rate"] = static_cast<double>(x.green) / static_cast<double>(x.n);
    m[r.name + "/items_per_s"] = r.items_per_second;
    if (r.stats.contains("interval_coverage"))
      m[r.name + "/interval_coverage"] = r.stats["interval_coverage"].get<double>();
  }
  rec.log_metrics(0, m);
  rec.add_artifact("results", fs::path(out) / "results.json");
  rec.add_artifact("report", fs::path(out) / "report.html");
  if (failed.empty()) rec.finish();
  else rec.fail("could not price any item: " + failed);
  std::printf("recorded as run %lld\n", static_cast<long long>(rec.id()));
}

// --param key=value settings into the pricers' context; a malformed, repeated or unknown key fails.
void parse_params(EvalArgs& a) {
  for (const auto& p : a.params) {
    const auto eq = p.find('=');
    pricer::require(eq != std::string::npos && eq > 0, "--param \"" + p + "\" is not key=value");
    pricer::require(a.ctx.params.emplace(p.substr(0, eq), p.substr(eq + 1)).second,
                    "--param " + p.substr(0, eq) + " is given twice");
  }
  check_param_keys(a.ctx.params);
}

// Every pricer is built before the first (possibly long) run, so a bad name fails at once;
// `need_train` is set when one of them needs training items.
std::vector<std::unique_ptr<Pricer>> build_pricers(const EvalArgs& a, bool& need_train) {
  std::vector<std::unique_ptr<Pricer>> pricers;
  for (const auto& name : split_comma_list(a.pricers)) {
    pricers.push_back(make_pricer(name, a.ctx));
    need_train = need_train || pricers.back()->needs_training();
  }
  pricer::require(!pricers.empty(), "--pricers names no pricer");
  return pricers;
}

// The run goes into the run database before the first pricer, so a failed one is on record.
// Under MPI every rank prices its share of the items; rank 0 alone records (the others, and
// --no-record, get nullptr).
std::unique_ptr<pricer::monitor::RunRecorder> start_run_record(const EvalArgs& a, const std::string& split,
                                                               std::size_t n_items) {
  if (!a.record || !pricer::comm::root()) return nullptr;
  pricer::monitor::NewRun nr;
  nr.name = !a.run_name.empty() ? a.run_name : "eval-" + fs::path(a.out).filename().string();
  nr.kind = pricer::monitor::RunKind::eval;
  nr.command_line = pricer::cli::command_line();
  nr.base_model = a.ctx.params.count("model") ? a.ctx.params.at("model") : "";
  nr.dataset = a.data;
  nr.output_dir = a.out;
  pricer::monitor::RecorderOptions ro;
  if (!a.runs_db.empty()) ro.db_path = a.runs_db;
  auto rec = std::make_unique<pricer::monitor::RunRecorder>(nr, ro);
  rec->log_params({{"pricers", a.pricers},
                   {"split", split},
                   {"items", n_items},
                   {"params", a.ctx.params},
                   {"seed", a.ctx.seed},
                   {"bootstrap", a.bootstrap}});
  return rec;
}

// Runs each pricer in turn, saying on stderr how it went.
std::vector<PricerResult> evaluate_pricers(const std::vector<std::unique_ptr<Pricer>>& pricers,
                                           const std::vector<Item>& train, const std::vector<Item>& items,
                                           const EvalArgs& a) {
  MetricOptions mopt;
  mopt.bootstrap_resamples = a.bootstrap;
  mopt.bootstrap_seed = a.ctx.seed;
  std::vector<PricerResult> results;
  for (auto& p : pricers) {
    std::fprintf(stderr, "eval: %s on %zu items...\n", p->name().c_str(), items.size());
    results.push_back(evaluate_pricer(*p, train, items, mopt));
    const PricerResult& r = results.back();
    if (r.complete()) std::fprintf(stderr, "eval: %s MAE $%.2f\n", r.name.c_str(), r.metrics.mae);
    else
      std::fprintf(stderr, "eval: %s %s: %s\n", r.name.c_str(), r.failed() ? "FAILED" : "incomplete",
                   r.failure.c_str());
  }
  return results;
}

// The names of the pricers that priced nothing, comma-separated; empty when none failed.
std::string failed_pricers(const std::vector<PricerResult>& results) {
  std::string failed;
  for (const auto& r : results)
    if (r.failed()) failed += (failed.empty() ? "" : ", ") + r.name;
  return failed;
}

int run_eval(EvalArgs& a) {
  const bool data_is_dir = fs::is_directory(a.data);
  const std::string split = !a.split.empty() ? a.split : data_is_dir ? default_eval_split(a.data) : "";
  const auto items = read_split(a.data, split, a.limit);
  pricer::require(!items.empty(), a.data + ": no items to evaluate");
  if (!a.human_export.empty()) {
    write_human_csv(a.human_export, items);
    std::printf(
        "wrote %zu items to %s; add a \"price\" column (or write id,price) and pass it "
        "back with --human-import\n",
        items.size(), a.human_export.c_str());
    return 0;
  }

  parse_params(a);
  if (pricer::comm::root()) pricer::ensure_output_dir(a.out, "--out");  // before the pricers run, not after
  bool need_train = false;
  const std::vector<std::unique_ptr<Pricer>> pricers = build_pricers(a, need_train);

  std::vector<Item> train;
  std::string train_source = a.train.empty() && data_is_dir ? a.data : a.train;
  if (need_train) {
    pricer::require(!train_source.empty(), "the chosen pricers need training data: pass --train FILE_OR_DIR");
    train = read_split(train_source, "train", a.train_limit);
  }

  const std::unique_ptr<pricer::monitor::RunRecorder> rec = start_run_record(a, split, items.size());
  std::vector<PricerResult> results = evaluate_pricers(pricers, train, items, a);
  sort_by_mae(results);
  const nlohmann::json meta = {{"data", a.data},
                               {"split", split.empty() ? "(file)" : split},
                               {"train", need_train ? train_source : ""},
                               {"train_items", train.size()},
                               {"seed", a.ctx.seed},
                               {"bootstrap_resamples", a.bootstrap},
                               {"ranks", pricer::comm::size()}};
  if (pricer::comm::root()) write_results(a.out, items, results, meta);
  const std::string failed = failed_pricers(results);
  if (rec) record_results(*rec, results, a.out, failed);
  std::fputs(leaderboard_text(results).c_str(), stdout);
  std::printf("wrote %s and %s\n", (fs::path(a.out) / "results.json").c_str(),
              (fs::path(a.out) / "report.html").c_str());
  if (!failed.empty()) {
    std::fprintf(stderr, "error: %s could not price any item (see above); the others' results are written\n",
                 failed.c_str());
    return 1;
  }
  return 0;
}

// The options of the "frontier" pricer, a hosted model behind an OpenAI-compatible API.
void add_frontier_options(CLI::App& sub, FrontierConfig& f) {
  sub.add_option("--frontier-url", f.base_url, "OpenAI-compatible API base URL")->capture_default_str();
  sub.add_option("--frontier-model", f.model, "Model name sent to the API")->capture_default_str();
  sub.add_option("--frontier-key-env", f.api_key_env, "Environment variable holding the API key")
      ->capture_default_str();
  sub.add_option("--frontier-concurrency", f.concurrency, "Requests in flight")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub.add_option("--frontier-retries", f.max_retries, "Retries after a 429, 5xx or timeout")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  sub.add_option("--frontier-timeout", f.timeout_s, "Seconds per request attempt")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub.add_option("--frontier-backoff", f.backoff_s, "First retry delay in seconds (doubles)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--frontier-max-tokens", f.max_tokens, "max_tokens sent (0 = not sent)")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--frontier-temperature", f.temperature, "temperature sent (default: not sent)")
      ->check(CLI::Range(0.0, 2.0));
  sub.add_option("--frontier-prompt", f.user_template,
                 "User message, {text} the product text (\"{text}\" for a served pricer model)")
      ->capture_default_str();
  sub.add_option("--frontier-usd-in", f.usd_per_m_input, "USD per million prompt tokens")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--frontier-usd-out", f.usd_per_m_output, "USD per million completion tokens")
      ->check(CLI::NonNegativeNumber);
}

pricer::cli::Registrar reg{
    "eval", "Evaluate pricers on a data split: metrics, leaderboard, results.json and report.html",
    [](CLI::App& sub) -> pricer::cli::Runner {
      auto a = std::make_shared<EvalArgs>();
      sub.add_option("--data", a->data, "Items to price: a JSON-lines file or a directory with test/val splits")
          ->required();
      sub.add_option("--split", a->split, "Split of a --data directory (default: test, else val)");
      sub.add_option("--train", a->train,
                     "Training items for the baselines: a JSON-lines file or a directory with "
                     "train.jsonl or train-*.jsonl (default: the --data directory)");
      sub.add_option("--pricers", a->pricers, "Comma-separated pricers to evaluate")->capture_default_str();
      sub.add_option("--out", a->out, "Directory for results.json and report.html")->capture_default_str();
      sub.add_option("--limit", a->limit, "Evaluate only the first N items (0 = all)");
      sub.add_option("--train-limit", a->train_limit, "Train on only the first N items (0 = all)");
      sub.add_option("--seed", a->ctx.seed, "Seed of the random pricer and the bootstrap")->capture_default_str();
      sub.add_option("--bootstrap", a->bootstrap, "Bootstrap resamples for the MAE interval")
          ->capture_default_str()
          ->check(CLI::Range(1, 1000000));
      sub.add_option("--human-export", a->human_export,
                     "Write the items as CSV (id,text) for a person to price, then exit");
      sub.add_option("--human-import", a->ctx.human_csv,
                     "CSV of a person's guesses (id,price) for the \"human\" pricer");
      sub.add_option("--param", a->params,
                     "key=value setting for a pricer (repeatable). LLM pricers (finetuned, base, "
                     "and their -top3 / -greedy variants): model=PATH, adapter=PATH, "
                     "finetuned_model=PATH (a merged model instead of model + adapter), "
                     "tokenizer=PATH, base_dtype=nf4|q8_0|q4_0|bf16|f32, compute_dtype=bf16|f32|q8_0, "
                     "mode=expected|top3|greedy|median, "
                     "coverage=0.8, batch=16, max_prompt_tokens=256, text_tokens=110, prompt_template=TEXT");
      sub.add_option("--run-name", a->run_name, "Name in the run database (default eval-<out dir>)");
      sub.add_option("--runs-db", a->runs_db, "Run database (default runs/pricer.db or $PRICER_RUNS_DB)");
      sub.add_flag("!--no-record", a->record, "Do not record the run in the run database");
      add_frontier_options(sub, a->ctx.frontier);
      return [a] { return run_eval(*a); };
    }};

}  // namespace
