// `pricer predict`: a base model (+ LoRA adapter, or a merged model) prices product texts given
// as an argument, on stdin, or as a JSON-lines batch; `--calibrate` measures how often the
// prediction interval holds the true price on a labelled split.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/atomic_file.h"
#include "core/comm.h"
#include "core/error.h"
#include "core/format.h"
#include "eval/ensemble.h"
#include "eval/item.h"
#include "io/json_util.h"
#include "predict/calibration.h"
#include "predict/model_average.h"
#include "predict/model_pricer.h"
#include "predict/prediction_json.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace pricer;

struct PredictArgs {
  ModelPricerOptions model;
  std::vector<std::string> models;  // several: priced as their average
  std::vector<std::string> adapters;  // several, on one base: priced as their average
  std::string mode = price_mode_name(kDefaultPriceMode);
  std::string text;
  std::string jsonl;
  std::string ensemble;  // a saved ensemble's directory, instead of --model
  bool raw_prompt = false;
  bool as_json = false;
  bool skip_invalid = false;
  std::string calibrate;
  std::string split = "val";
  std::size_t limit = 0;
  std::string out = "calibration-out";
  std::vector<double> levels = {0.5, 0.6, 0.7, 0.8, 0.9, 0.95};
};

// One product to price: where it came from, and its prompt (used verbatim) or its text (which
// fills the prompt template), with the title and category an ensemble's classic members read.
struct Request {
  std::size_t line = 0;  // JSON-lines input: its line number
  json id;  // echoed back when the input line has one
  std::string prompt, text, title, category;
};

std::string optional_text(const json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string read_stream(std::istream& in) { return std::string(std::istreambuf_iterator<char>(in), {}); }

// Reads the whole batch before any model work, so a bad line fails fast instead of after
// minutes of pricing. Lines are {"text": ...} (templated) or {"prompt": ...} (used verbatim).
std::vector<Request> read_requests(std::istream& in, const std::string& name, bool skip_invalid) {
  std::vector<Request> reqs;
  std::string line, first_error;
  std::size_t line_no = 0, skipped = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = name + ":" + std::to_string(line_no);
    std::string error;
    Request r;
    r.line = line_no;
    json j;
    try {
      j = parse_json_strict(line, where);  // malformed, or a key given twice
    } catch (const Error& e) {
      error = e.what();
    }
    if (!error.empty()) {
    } else if (!j.is_object()) {
      error = where + ": expected a JSON object with a \"text\" field";
    } else if (r.prompt = optional_text(j, "prompt"), r.text = optional_text(j, "text");
               r.prompt.empty() && r.text.empty()) {
      error = where + ": needs a non-empty string \"text\" (or \"prompt\")";
    } else {
      r.title = optional_text(j, "title");
      r.category = optional_text(j, "category");
    }
    if (!error.empty()) {
      if (!skip_invalid) throw Error(error + " (--skip-invalid skips such lines)");
      if (first_error.empty()) first_error = error;
      ++skipped;
      continue;
    }
    if (j.contains("id")) r.id = j["id"];
    reqs.push_back(std::move(r));
  }
  if (skipped > 0)
    std::fprintf(stderr, "predict: skipped %zu invalid line%s (first: %s)\n", skipped, skipped == 1 ? "" : "s",
                 first_error.c_str());
  return reqs;
}

// A model trained with comparables prices with them: say where they come from.
void note_comparables(const ModelPricer& mp) {
  if (const auto* c = mp.comparables())
    std::fprintf(stderr, "prompts get the prices of their %d most similar training items (comparables: %s)\n", c->k(),
                 mp.comparables_path().c_str());
}

int run_calibration(const PredictArgs& a, ModelPricerOptions opt) {
  ensure_output_dir(a.out, "--out");
  const auto items = eval::read_split(a.calibrate, a.split, a.limit);
  require(!items.empty(), a.calibrate + ": no items to calibrate on");
  opt.keep_distribution = true;
  opt.progress = true;
  ModelPricer mp(opt);
  note_comparables(mp);
  std::vector<std::string> prompts;
  std::vector<double> truth;
  for (const auto& it : items) {
    prompts.push_back(it.prompt.empty() ? mp.prompt_for(it.text) : it.prompt);
    truth.push_back(it.price);
  }
  // Intervals come from the first completion token's distribution, the same in every mode.
  const auto preds = mp.predict(prompts, kDefaultPriceMode);
  const Calibration c = calibrate(mp.distribution(), preds, truth, a.levels);
  std::printf("interval calibration on %zu items of %s (mean probability on number tokens %.3f)\n", c.n,
              a.calibrate.c_str(), c.mean_number_mass);
  std::printf("%9s %10s %12s\n", "nominal", "observed", "mean width $");
  for (const auto& p : c.points)
    std::printf("%8.0f%% %9.1f%% %12.2f\n", 100 * p.nominal, 100 * p.observed, p.mean_width);
  const std::vector<double> configured = {opt.coverage};
  const CoveragePoint at = calibrate(mp.distribution(), preds, truth, configured).points[0];
  std::printf("the %.0f%% interval holds %.1f%% of the true prices\n", 100 * at.nominal, 100 * at.observed);
  fs::create_directories(a.out);
  json j = calibration_json(c);
  j["data"] = a.calibrate;
  j["split"] = fs::is_directory(a.calibrate) ? a.split : "(file)";
  j["model"] = opt.model;
  j["adapter"] = opt.adapter;
  j["configured"] = {{"nominal", at.nominal}, {"observed", at.observed}, {"mean_width", at.mean_width}};
  write_file_atomic(fs::path(a.out) / "calibration.json", j.dump(2) + "\n");
  write_file_atomic(fs::path(a.out) / "calibration.svg",
                    calibration_svg(c, "Prediction interval coverage on " + std::to_string(c.n) + " items"));
  std::printf("wrote %s and %s\n", (fs::path(a.out) / "calibration.json").c_str(),
              (fs::path(a.out) / "calibration.svg").c_str());
  return 0;
}

// The products to price: the lines of --jsonl, or one text (the argument, or stdin).
std::vector<Request> requests_of(const PredictArgs& a) {
  require(a.text.empty() || a.jsonl.empty(), "give either a product text or --jsonl, not both");
  if (a.jsonl == "-") {
    require(comm::size() == 1, "--jsonl -: under mpirun stdin reaches rank 0 only; give the batch as a file");
    return read_requests(std::cin, "stdin", a.skip_invalid);
  }
  if (!a.jsonl.empty()) {
    require(!fs::is_directory(a.jsonl), a.jsonl + ": a directory; --jsonl reads one JSON-lines file (or - for stdin)");
    std::ifstream in(a.jsonl, std::ios::binary);
    require(in.good(), a.jsonl + ": cannot open");
    return read_requests(in, a.jsonl, a.skip_invalid);
  }
  if (a.text.empty())
    require(!isatty(STDIN_FILENO), "no product text: give it as an argument, pipe it on stdin, or use --jsonl FILE");
  std::string text = a.text.empty() ? read_stream(std::cin) : a.text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  require(!text.empty(), "empty product text");
  Request r;
  r.text = text;
  return {r};
}

// Under MPI each rank prices a contiguous share of a batch; rank 0 prints every share in order.
std::pair<std::size_t, std::size_t> my_share(const PredictArgs& a, std::size_t n) {
  return a.jsonl.empty() ? std::pair<std::size_t, std::size_t>{0, n} : comm::share(n);
}

void print_lines(const PredictArgs& a, const std::string& lines) {
  for (const std::string& share : a.jsonl.empty() ? std::vector<std::string>{lines} : comm::all_texts(lines))
    if (comm::root()) std::cout << share;
}

// One JSON line's place in the input: its line number (batch) and id.
void tag(json& j, const PredictArgs& a, const Request& r) {
  if (!a.jsonl.empty()) j["line"] = r.line;
  if (!r.id.is_null()) j["id"] = r.id;
}

// `predict --ensemble DIR`: the saved ensemble prices as the evaluation that fitted it did.
int run_ensemble_predict(const PredictArgs& a) {
  require(a.models.empty() && a.adapters.empty() && a.calibrate.empty(),
          "--ensemble prices with the saved ensemble's own members: it cannot go with --model, --adapter or "
          "--calibrate");
  const auto ens = eval::EnsemblePricer::read(a.ensemble);
  const std::vector<Request> reqs = requests_of(a);
  const auto [begin, end] = my_share(a, reqs.size());
  std::vector<eval::Item> items;
  for (std::size_t i = begin; i < end; ++i) {
    eval::Item it;
    it.title = reqs[i].title;
    it.category = reqs[i].category;
    it.prompt = reqs[i].prompt;
    it.text = reqs[i].text.empty() ? reqs[i].prompt : reqs[i].text;
    items.push_back(std::move(it));
  }
  const std::vector<double> prices = items.empty() ? std::vector<double>{} : ens->predict(items);
  const auto& names = ens->member_names();
  const auto& members = ens->member_prices();
  std::string lines;
  for (std::size_t i = 0; i < prices.size(); ++i) {
    json j = {{"price", prices[i]}, {"members", json::object()}};
    for (std::size_t m = 0; m < names.size(); ++m) j["members"][names[m]] = members[m][i];
    tag(j, a, reqs[begin + i]);
    lines += a.jsonl.empty() && !a.as_json ? "" : j.dump() + "\n";
  }
  if (a.jsonl.empty() && !a.as_json) {
    std::string parts;
    for (std::size_t m = 0; m < names.size(); ++m) parts += (m ? ", " : "") + names[m] + fmt(" $%.2f", members[m][0]);
    lines = fmt("$%.2f", prices.front()) + "  (ensemble of " + parts + ")\n";
  }
  print_lines(a, lines);
  std::cout.flush();
  return std::cout ? 0 : 1;
}

int run_predict(PredictArgs& a) {
  if (!a.ensemble.empty()) return run_ensemble_predict(a);
  require(!a.models.empty(), "--model is required (or --ensemble DIR, a saved ensemble)");
  ModelPricerOptions opt = a.model;
  require(!a.raw_prompt || opt.prompt_template == ModelPricerOptions{}.prompt_template,
          "--raw-prompt takes the text as the whole prompt: it cannot go with --prompt-template");
  if (a.raw_prompt) opt.prompt_template = "{text}";
  std::vector<ModelPricerOptions> members = member_options(opt, a.models, a.adapters);
  if (!a.calibrate.empty()) {
    require(members.size() == 1,
            "--calibrate measures one model's intervals: give one --model and at most one --adapter");
    return run_calibration(a, members.front());
  }
  const PriceMode mode = price_mode_from_name(a.mode);
  const std::vector<Request> reqs = requests_of(a);  // every line checked before a model loads
  const bool batch = !a.jsonl.empty();
  for (auto& m : members) m.progress = batch;
  ModelAverage mp(members);
  for (const auto& m : mp.members()) note_comparables(*m);
  if (mp.members().size() > 1)
    std::fprintf(stderr, "prices are the average of %zu models (log(1 + price) mean)\n", mp.members().size());
  const auto [begin, end] = my_share(a, reqs.size());
  std::vector<std::string> prompts;
  for (std::size_t i = begin; i < end; ++i)
    prompts.push_back(reqs[i].prompt.empty() ? mp.prompt_for(reqs[i].text) : reqs[i].prompt);
  const std::vector<PricePrediction> preds =
      prompts.empty() ? std::vector<PricePrediction>{} : mp.predict(prompts, mode);

  if (batch || a.as_json) {
    std::string lines;
    for (std::size_t i = 0; i < preds.size(); ++i) {
      json j = prediction_json(mp, i, preds[i], mode);
      tag(j, a, reqs[begin + i]);
      lines += j.dump() + "\n";
    }
    print_lines(a, lines);
  } else {
    const PricePrediction& p = preds.front();
    std::printf("$%.2f  (%.0f%% interval $%.0f - $%.0f, %s%s)\n", p.price, 100 * opt.coverage, p.dist.lo, p.dist.hi,
                price_mode_name(mode), mp.members().size() > 1 ? ", averaged over the models" : "");
    if (mode == PriceMode::Greedy && !p.parsed)
      std::printf("note: the completion \"%s\" held no number; price is the expected value\n", p.text.c_str());
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

pricer::cli::Registrar reg{
    "predict",
    "Price product texts with a model (+ adapter): point estimate, interval, top tokens; or calibrate intervals",
    [](CLI::App& sub) -> pricer::cli::Runner {
      auto a = std::make_shared<PredictArgs>();
      auto& m = a->model;
      sub.footer(
          "Input: the TEXT argument; or --jsonl FILE (- for stdin) with one {\"text\": ...} object "
          "a line ({\"prompt\": ...} is used verbatim; an \"id\" is echoed back); with neither, "
          "stdin is read as one product text. JSON-lines output: one JSON object per input line, in order, "
          "with its \"line\" number. A malformed or text-less line stops the run before any "
          "pricing with FILE:LINE and the reason; with --skip-invalid such lines are skipped "
          "and counted on stderr.\n"
          "Modes: median (the default, as training's validation MAE and eval read it) = the median of "
          "the next-token distribution over number tokens, the estimate with the least expected "
          "absolute error; expected = its mean; top3 = mean over the three likeliest; greedy = "
          "generate (KV cache) and parse the text.\n"
          "--calibrate DIR measures, on the labelled split (default val), how often intervals of "
          "several coverages hold the true price, and draws it to --out.\n"
          "Threads: pricer -t N predict ... (default: all cores).");
      sub.add_option("text", a->text, "Product text to price");
      sub.add_option("--model", a->models,
                     "Base (or merged) model: GGUF, safetensors dir, llama2.c; repeat it to average several "
                     "merged models (required unless --ensemble)")
          ->allow_extra_args(false);
      sub.add_option("--ensemble", a->ensemble,
                     "A saved ensemble (eval --param ensemble_save=DIR) prices instead, with its own members");
      sub.add_option("--adapter", a->adapters,
                     "LoRA adapter: PEFT directory or GGUF LoRA; repeat it to average several on one base")
          ->allow_extra_args(false);
      sub.add_option("--tokenizer", m.tokenizer, "Tokenizer (default: the model's)");
      sub.add_option("--base-dtype", m.base_dtype, "How the projections are held: nf4, q8_0, q4_0, bf16, f32")
          ->capture_default_str();
      sub.add_option("--compute-dtype", m.compute_dtype,
                     "Precision of the base's linears: bf16, f32, or q8_0 (bf16, with q8_0/q4_0 weights taking "
                     "8-bit activations and integer dot products, as llama.cpp)")
          ->capture_default_str();
      sub.add_option("--mode", a->mode, "median, expected, top3 or greedy")->capture_default_str();
      sub.add_option("--coverage", m.coverage, "Probability of the prediction interval")
          ->capture_default_str()
          ->check(CLI::Range(0.01, 0.99));
      sub.add_option("--top", m.top_k, "Number tokens listed with --json")
          ->capture_default_str()
          ->check(CLI::Range(0, 1000));
      sub.add_option("--batch", m.batch, "Prompts per forward pass")->capture_default_str()->check(CLI::Range(1, 4096));
      sub.add_option("--text-tokens", m.text_token_budget,
                     "Raw texts are cut to this many tokens before the template, as curate cuts them (0 = no cut)")
          ->capture_default_str()
          ->check(CLI::Range(0, 1 << 20));
      sub.add_option("--max-prompt-tokens", m.max_prompt_tokens, "Longer prompts lose their middle, as in training")
          ->capture_default_str()
          ->check(CLI::Range(18, 1 << 20));
      sub.add_option("--greedy-tokens", m.greedy_max_tokens, "Generation budget of greedy mode")
          ->capture_default_str()
          ->check(CLI::Range(1, 64));
      sub.add_option("--prompt-template", m.prompt_template, "Prompt with {text} (default: the curate prompt)");
      sub.add_flag("--raw-prompt", a->raw_prompt, "The text is already the whole prompt");
      sub.add_option("--jsonl", a->jsonl, "JSON-lines batch: FILE, or - for stdin");
      sub.add_flag("--json", a->as_json, "Print a JSON object: price, interval, top tokens");
      sub.add_flag("--skip-invalid", a->skip_invalid, "Skip malformed JSON lines (counted on stderr)");
      sub.add_option("--calibrate", a->calibrate, "Measure interval coverage on a labelled split (dir or file)");
      sub.add_option("--split", a->split, "Split of a --calibrate directory")->capture_default_str();
      sub.add_option("--limit", a->limit, "Calibrate on the first N items only (0 = all)");
      sub.add_option("--levels", a->levels, "Nominal coverages to measure")
          ->delimiter(',')
          ->check(CLI::Range(0.01, 0.99));
      sub.add_option("--out", a->out, "Directory for calibration.json and calibration.svg")->capture_default_str();
      return [a] { return run_predict(*a); };
    }};

}  // namespace
