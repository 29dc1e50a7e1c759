// `pricer pretrain`: trains a byte-level BPE tokenizer on a text corpus and a small
// Llama-architecture model from scratch (every parameter) on it; saves a GGUF model with the
// tokenizer embedded, which every other command loads.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/train_options.h"
#include "core/comm.h"
#include "core/error.h"
#include "predict/validation_prices.h"
#include "tokenizer/train_bpe.h"

namespace fs = std::filesystem;

namespace pricer::cli {
namespace {

struct PretrainShape {
  std::vector<std::string> corpus;
  int64_t vocab = 4096, dim = 256, layers = 4, heads = 8, kv_heads = 4, ffn = 768, context = 512;
  int64_t max_texts = 0, tokenizer_texts = 20000;
  bool with_completions = false;
};

// Corpus texts: JSON lines with a "text" field (or a curate split's "prompt", with its
// completion only when asked: product pages read together with their prices), or plain text, a
// document per line.
std::vector<std::string> read_corpus(const std::vector<std::string>& files, int64_t max_texts, bool with_completions) {
  std::vector<std::string> texts;
  for (const auto& path : files) {
    std::ifstream in(path);
    require(in.good(), path + ": cannot open");
    std::string line;
    int64_t lineno = 0;
    const bool jsonl = path.ends_with(".jsonl") || path.ends_with(".json");
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty()) continue;
      if (!jsonl) {
        texts.push_back(line);
      } else {
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        require(!j.is_discarded() && j.is_object(), path + ":" + std::to_string(lineno) + ": not a JSON object");
        if (j.contains("text") && j["text"].is_string()) texts.push_back(j["text"].get<std::string>());
        else if (j.contains("prompt") && j["prompt"].is_string()) {
          std::string text = j["prompt"].get<std::string>();
          if (with_completions && j.contains("completion") && j["completion"].is_string())
            text += j["completion"].get<std::string>();
          texts.push_back(std::move(text));
        } else throw Error(path + ":" + std::to_string(lineno) + ": no \"text\" (or \"prompt\") string field");
      }
      if (max_texts > 0 && static_cast<int64_t>(texts.size()) >= max_texts) return texts;
    }
  }
  return texts;
}

// The training settings this run uses, checked before the output directory is touched.
TrainConfig checked_config(const TrainConfig& cfg, const PretrainShape& sh, bool quiet) {
  require(!sh.corpus.empty(), "pretrain: --corpus is required (JSON lines with a text field, or plain text)");
  TrainConfig c = cfg;
  c.progress = !quiet;
  c.dataset = sh.corpus.front();
  c.validate();
  require(sh.context >= c.max_length, "--context " + std::to_string(sh.context) + " is shorter than --max-length " +
                                          std::to_string(c.max_length) +
                                          ": the model could not read its own training windows");
  return c;
}

// Deterministic: a resumed run trains the same tokenizer again (and every rank the same one, so
// rank 0 alone saves it to `tok_path`).
TrainedBpe train_tokenizer(const std::vector<std::string>& texts, const PretrainShape& sh, const fs::path& tok_path) {
  BpeTrainOptions bo;
  bo.vocab_size = static_cast<int32_t>(sh.vocab);
  std::vector<std::string> sample(
      texts.begin(), texts.begin() + std::min<int64_t>(sh.tokenizer_texts, static_cast<int64_t>(texts.size())));
  std::fprintf(stderr, "training a %lld-token BPE tokenizer on %zu texts\n", static_cast<long long>(sh.vocab),
               sample.size());
  TrainedBpe bpe = train_bpe(sample, bo);
  if (comm::root()) save_tokenizer_json(bpe, tok_path.string());
  return bpe;
}

// The token stream: each text then EOS.
std::vector<int32_t> token_stream(const std::vector<std::string>& texts, const Tokenizer& tok) {
  std::vector<int32_t> stream;
  for (const auto& t : texts) {
    for (int32_t id : tok.encode(t)) stream.push_back(id);
    stream.push_back(tok.eos_id());
  }
  return stream;
}

// The stream cut into windows of L tokens: BOS, then the first L - 1 tokens of each L-token
// stretch of the stream (a partial last stretch is dropped); no price to score.
std::vector<PricedExample> stream_windows(const std::vector<int32_t>& stream, const Tokenizer& tok, int64_t L) {
  std::vector<PricedExample> chunks;
  for (size_t i = 0; i + static_cast<size_t>(L) <= stream.size(); i += static_cast<size_t>(L)) {
    PricedExample ex;
    ex.tokens.push_back(tok.bos_id());
    ex.tokens.insert(ex.tokens.end(), stream.begin() + static_cast<int64_t>(i),
                     stream.begin() + static_cast<int64_t>(i) + L - 1);
    ex.prompt_len = 1;
    ex.price = std::numeric_limits<double>::quiet_NaN();
    chunks.push_back(std::move(ex));
  }
  return chunks;
}

ModelConfig pretrain_model_config(const PretrainShape& sh, const TrainedBpe& bpe) {
  ModelConfig mc;
  mc.vocab_size = static_cast<int64_t>(bpe.tokens.size());
  mc.dim = sh.dim;
  mc.n_layers = sh.layers;
  mc.n_heads = sh.heads;
  mc.n_kv_heads = sh.kv_heads;
  mc.head_dim = sh.dim / sh.heads;
  mc.ffn_dim = sh.ffn;
  mc.max_seq_len = sh.context;
  mc.rope_theta = 500000.0f;
  mc.tied_embeddings = true;
  mc.bos_id = bpe.bos_id;
  mc.eos_id = bpe.eos_id;
  mc.validate("pretrain model");
  return mc;
}

int run_pretrain(const TrainConfig& cfg, const PretrainShape& sh, bool quiet) {
  const TrainConfig c = checked_config(cfg, sh, quiet);
  const auto out_lock = prepare_output_dir(c);
  fs::create_directories(c.out_dir);
  const auto texts = read_corpus(sh.corpus, sh.max_texts, sh.with_completions);
  require(texts.size() >= 2, "pretrain: the corpus holds fewer than 2 texts");
  std::fprintf(stderr, "%zu texts\n", texts.size());

  const fs::path tok_path = fs::path(c.out_dir) / "tokenizer.json";
  const TrainedBpe bpe = train_tokenizer(texts, sh, tok_path);
  auto tok = make_trained_tokenizer(bpe);

  const std::vector<int32_t> stream = token_stream(texts, *tok);
  const int64_t L = c.max_length;
  std::vector<PricedExample> chunks = stream_windows(stream, *tok, L);
  require(chunks.size() >= 4, "pretrain: the corpus is too small for max_length " + std::to_string(L));
  const size_t n_val = std::max<size_t>(1, chunks.size() / 50);
  std::vector<PricedExample> val(chunks.end() - static_cast<int64_t>(n_val), chunks.end());
  chunks.resize(chunks.size() - n_val);
  std::fprintf(stderr, "%zu tokens: %zu training and %zu validation windows of %lld\n", stream.size(), chunks.size(),
               val.size(), static_cast<long long>(L));

  const ModelConfig mc = pretrain_model_config(sh, bpe);
  LlamaModel model = LlamaModel::random(mc, c.seed);
  model.enable_full_training();

  const TrainHooks hooks = with_price_scores(full_model_output_hooks(*tok, mc, "pricer-pretrained"), *tok);
  const TrainSummary s = run_training(c, model, *tok, chunks, val, true, hooks, command_line());
  const fs::path final_model = fs::path(c.out_dir) / "model.gguf";
  if (s.interrupted) {
    // The checkpoint holds the run; a model.gguf now would pass for a finished base.
    std::printf("run %lld: interrupted at step %lld of its schedule (train loss %.4f): continue it with --resume\n",
                static_cast<long long>(s.run_id), static_cast<long long>(s.steps), s.last_train_loss);
    return 130;
  }
  if (comm::root()) hooks.save_output(model, c.out_dir);
  std::printf(
      "run %lld: %lld steps, train loss %.4f, eval loss %.4f -> %.4f\nmodel: %s (tokenizer embedded; also %s)\n",
      static_cast<long long>(s.run_id), static_cast<long long>(s.steps), s.last_train_loss, s.first_eval_loss,
      s.last_eval_loss, final_model.c_str(), tok_path.c_str());
  return 0;
}

// The model-shape settings a pretraining --config file may hold besides the training ones, as
// the long options with "_"; the command line wins over the file.
const std::vector<std::string> kShapeKeys = {"corpus",          "max_texts", "with_completions", "vocab_size",
                                             "tokenizer_texts", "dim",       "layers",           "heads",
                                             "kv_heads",        "ffn",       "context"};

void apply_shape_yaml(const std::string& path, PretrainShape& sh, const CLI::App& sub) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw Error(path + ": " + e.what());
  }
  if (!root.IsMap()) return;  // TrainConfig::apply_yaml says what is wrong
  auto read = [&](const std::string& key, auto& into) {
    std::string option = "--" + key;
    std::replace(option.begin(), option.end(), '_', '-');
    if (!root[key] || sub.get_option(option)->count() > 0) return;
    try {
      into = root[key].as<std::remove_reference_t<decltype(into)>>();
    } catch (const YAML::Exception& e) {
      throw Error(path + ": key '" + key + "' at line " + std::to_string(root[key].Mark().line + 1) + ": " + e.what());
    }
  };
  if (root["corpus"] && root["corpus"].IsScalar() && sub.get_option("--corpus")->count() == 0)
    sh.corpus = {root["corpus"].as<std::string>()};
  else read("corpus", sh.corpus);
  read("max_texts", sh.max_texts);
  read("with_completions", sh.with_completions);
  read("vocab_size", sh.vocab);
  read("tokenizer_texts", sh.tokenizer_texts);
  read("dim", sh.dim);
  read("layers", sh.layers);
  read("heads", sh.heads);
  read("kv_heads", sh.kv_heads);
  read("ffn", sh.ffn);
  read("context", sh.context);
}

// Pretraining's defaults: a model learnt from nothing takes a larger rate and batch than an
// adapter on a trained base.
TrainConfig pretrain_defaults() {
  TrainConfig d;
  d.out_dir = "runs/pretrain";
  d.lr = 1e-3f;
  d.warmup_ratio = 0.05;
  d.weight_decay = 0.01f;
  d.max_grad_norm = 1.0f;
  d.batch_size = 16;
  d.micro_batch = 16;
  d.max_length = 128;
  d.eval_every = 100;
  d.eval_items = 64;
  return d;
}

Registrar reg{
    "pretrain", "Train a BPE tokenizer and a small Llama model from scratch on a text corpus", [](CLI::App& sub) {
      auto sh = std::make_shared<PretrainShape>();
      auto quiet = std::make_shared<bool>(false);
      sub.add_option("--corpus", sh->corpus, "Text corpus files (JSON lines with a text field, or plain text)");
      sub.add_option("--max-texts", sh->max_texts, "Use at most this many texts (0 = all)")->capture_default_str();
      sub.add_flag("--with-completions", sh->with_completions,
                   "Curate splits: read each prompt with its completion (product pages with their prices; "
                   "without it number tokens learn no sense of size)");
      sub.add_option("--vocab-size", sh->vocab, "Tokenizer vocabulary (>= 1248: bytes, numbers 0-999, specials)")
          ->capture_default_str();
      sub.add_option("--tokenizer-texts", sh->tokenizer_texts, "Texts the tokenizer is trained on")
          ->capture_default_str();
      sub.add_option("--dim", sh->dim, "Hidden size")->capture_default_str();
      sub.add_option("--layers", sh->layers, "Decoder layers")->capture_default_str();
      sub.add_option("--heads", sh->heads, "Attention heads")->capture_default_str();
      sub.add_option("--kv-heads", sh->kv_heads, "Key/value heads")->capture_default_str();
      sub.add_option("--ffn", sh->ffn, "MLP intermediate size")->capture_default_str();
      sub.add_option("--context", sh->context, "Maximum context of the saved model")->capture_default_str();
      auto set = std::make_shared<TrainOptionSet>(sub, TrainCommand::pretrain, pretrain_defaults());
      set->set_other_keys(kShapeKeys);
      sub.add_flag("--quiet,-q", *quiet, "No progress output");
      return [set, sh, quiet, &sub]() {
        if (!set->config_path().empty()) apply_shape_yaml(set->config_path(), *sh, sub);
        return run_pretrain(set->resolve(), *sh, *quiet);
      };
    }};

}  // namespace
}  // namespace pricer::cli
