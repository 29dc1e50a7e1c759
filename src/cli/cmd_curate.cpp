// pricer curate: product metadata (or a synthetic catalog) -> a price-prediction dataset.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/command.h"
#include "core/error.h"
#include "data/curate.h"
#include "data/synthetic.h"
#include "tokenizer/tokenizer.h"

namespace {

// Templates arrive through a shell: "\n" and "\t" escapes become the characters.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[i + 1];
      if (c == 'n' || c == 't' || c == '\\') {
        out += c == 'n' ? '\n' : c == 't' ? '\t' : '\\';
        ++i;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

struct Args {
  pricer::data::CurateOptions opt;
  std::string out, tokenizer, train = "0.8", val = "0.1", test = "0.1";
  std::string prompt, completion, specs = "first";
  std::vector<std::string> category_weights, drop_details;
  uint64_t synthetic = 0;
  bool keep_part_numbers = false, no_dedup = false, quiet = false, no_charts = false;
  size_t max_line_kb = 1024;
};

int run(Args& a) {
  using namespace pricer;
  data::CurateOptions& o = a.opt;
  o.out_dir = a.out;
  o.train = data::parse_split_size(a.train, "--train");
  o.val = data::parse_split_size(a.val, "--val");
  o.test = data::parse_split_size(a.test, "--test");
  if (!a.prompt.empty()) o.prompt_template = unescape(a.prompt);
  if (!a.completion.empty()) o.completion_template = unescape(a.completion);
  for (auto& cw : a.category_weights) {
    const auto eq = cw.rfind('=');
    require(eq != std::string::npos && eq > 0, "--category-weight: expected Category=weight, got '" + cw + "'");
    const std::string w = cw.substr(eq + 1);
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(used == w.size() && !w.empty() && v >= 0, "--category-weight: bad weight in '" + cw + "'");
    o.category_weights[cw.substr(0, eq)] = v;
  }
  if (!a.drop_details.empty()) o.clean.drop_details = a.drop_details;
  o.clean.specs = data::parse_spec_placement(a.specs);
  o.clean.scrub_part_numbers = !a.keep_part_numbers;
  o.clean.max_line_bytes = a.max_line_kb * 1024;
  o.dedup = !a.no_dedup;
  o.progress = !a.quiet;
  o.charts = !a.no_charts;

  std::unique_ptr<Tokenizer> tok;
  if (!a.tokenizer.empty()) {
    tok = load_tokenizer(a.tokenizer);
    o.tokenizer = tok.get();
    o.tokenizer_path = a.tokenizer;
  }
  if (a.synthetic > 0) {
    std::filesystem::create_directories(a.out);
    const std::string raw = (std::filesystem::path(a.out) / "synthetic_catalog.jsonl").string();
    const uint64_t bytes = data::write_synthetic_catalog(raw, a.synthetic, o.seed);
    if (!a.quiet)
      std::fprintf(stderr, "curate: wrote %llu synthetic products (%.1f MB) to %s\n",
                   static_cast<unsigned long long>(a.synthetic), bytes / 1e6, raw.c_str());
    o.inputs.push_back(raw);
  }
  require(!o.inputs.empty(), "curate: give input files or --synthetic N");
  data::curate(o);
  return 0;
}

pricer::cli::Registrar reg{
    "curate", "Clean, deduplicate, balance and split product data into a training dataset",
    [](CLI::App& sub) -> pricer::cli::Runner {
      auto a = std::make_shared<Args>();
      auto& o = a->opt;
      sub.add_option("inputs", o.inputs, "meta_<Category>.jsonl[.gz] (Amazon Reviews 2023) or curated JSON lines");
      sub.add_option("-o,--out", a->out, "Output dataset directory")->required();
      sub.add_option("--synthetic", a->synthetic,
                     "Generate N synthetic products (written to OUT/synthetic_catalog.jsonl) and "
                     "curate them");
      sub.add_option("--seed", o.seed, "Seed for sampling, splitting and --synthetic")->capture_default_str();
      sub.add_option("--tokenizer", a->tokenizer,
                     "Tokenizer for the token budget and .bin shards (tokenizer.model, "
                     "tokenizer.json, tok*.bin, .gguf or a model directory)");
      sub.add_option("--train", a->train, "Train size: a count, or a fraction of the sample")->capture_default_str();
      sub.add_option("--val", a->val, "Validation size: a count or a fraction")->capture_default_str();
      sub.add_option("--test", a->test, "Test size: a count or a fraction")->capture_default_str();
      sub.add_option("--sample", o.sample,
                     "Items to draw by weighted sampling before splitting (0: the sum of the "
                     "counts, or everything)")
          ->capture_default_str();
      sub.add_option("--price-weight-power", o.price_weight_power,
                     "Sampling weight (price/max)^P: favours pricier items to balance the skew")
          ->capture_default_str();
      sub.add_option("--category-weight", a->category_weights,
                     "Category=weight multiplier for sampling (repeatable; 0 drops a category)");
      sub.add_option("--min-price", o.clean.min_price, "Lowest accepted price")->capture_default_str();
      sub.add_option("--max-price", o.clean.max_price, "Highest accepted price")->capture_default_str();
      sub.add_option("--min-chars", o.clean.min_chars, "Shortest accepted cleaned text")->capture_default_str();
      sub.add_option("--max-chars", o.clean.max_chars, "Cleaned text is cut to this first")->capture_default_str();
      sub.add_option("--token-budget", o.clean.token_budget, "Summary length in tokens")->capture_default_str();
      sub.add_option("--words-per-token", o.clean.words_per_token,
                     "Word budget = this x token budget when no tokenizer is given")
          ->capture_default_str();
      sub.add_option("--specs", a->specs,
                     "Where the summary puts the category and spec table: first (after the "
                     "title, kept by the token budget), last (after the description) or none")
          ->capture_default_str();
      sub.add_option("--drop-detail", a->drop_details,
                     "Spec-table key left out of the text (repeatable; replaces the default "
                     "list: Part Number, Best Sellers Rank, Batteries Included?, Batteries "
                     "Required?, Item model number, Application Permissions, Approximate "
                     "Download Time, Date first listed on Amazon)");
      sub.add_flag("--keep-part-numbers", a->keep_part_numbers, "Keep words that look like part numbers");
      sub.add_option("--prompt-template", a->prompt, "Prompt with {text}, {title}, {category} (\\n for newlines)");
      sub.add_option("--completion-template", a->completion,
                     "Completion with {price} = rounded dollars (default \"{price}.00\")");
      sub.add_option("--max-line-kb", a->max_line_kb, "Longer lines are skipped as bad input")->capture_default_str();
      sub.add_flag("--strict", o.strict, "Stop with an error at the first bad input line");
      sub.add_flag("--no-dedup", a->no_dedup, "Keep duplicate titles and texts");
      sub.add_flag("--no-charts", a->no_charts, "Do not write the SVG charts");
      sub.add_flag("-q,--quiet", a->quiet, "No progress bar or summary on stderr");
      return [a] { return run(*a); };
    }};

}  // namespace
