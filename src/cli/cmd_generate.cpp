// pricer generate: text generation from a model file (GGUF, Hugging Face directory, llama2.c
// .bin), KV-cached, streamed to stdout as tokens are decoded. stdout holds exactly the text
// (prompt echo included, no newline added), so it can be compared or piped; timings go to stderr.
// With an empty prompt this is llama2.c's `run model.bin -z tok.bin -t T -n N`: BOS is the first
// input, N tokens follow, the space SentencePiece puts after BOS is not printed.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "io/model_file.h"
#include "model/generate.h"
#include "monitor/interrupt.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace pricer::cli {
namespace {

struct Options {
  std::string model, tokenizer, prompt, base_dtype = "auto", compute_dtype = "f32";
  int64_t max_tokens = 256;
  SamplingOptions sampling;
  uint64_t seed = 0;
  bool seed_given = false;
  bool bos = false, no_bos = false, no_echo = false, ignore_eos = false, quiet = false;
};

// The tokenizer beside or inside the model unless one is given.
std::unique_ptr<Tokenizer> open_tokenizer(const Options& o, const ModelFile& mf) {
  if (!o.tokenizer.empty()) return load_tokenizer(o.tokenizer);
  if (mf.format == "llama2c")
    throw Error(o.model + ": a llama2.c checkpoint holds no tokenizer; give --tokenizer tok*.bin");
  if (mf.format == "safetensors") return load_tokenizer(std::filesystem::path(o.model).parent_path().string());
  return load_tokenizer(o.model);
}

// GGUF files say whether their vocab wants BOS; otherwise BOS goes first when there is one (as
// llama2.c, Llama 2 and Llama 3 do).
bool default_bos(const ModelFile& mf, const Tokenizer& tok, bool tokenizer_from_model) {
  if (tok.bos_id() < 0) return false;
  if (tokenizer_from_model) {
    for (const GgufKV& kv : mf.gguf_metadata)
      if (kv.key == "tokenizer.ggml.add_bos_token" && !kv.value.ints.empty()) return kv.value.ints[0] != 0;
  }
  return true;
}

int run(const Options& o) {
  // Arguments are checked before a possibly large model is loaded.
  o.sampling.validate();
  require(o.max_tokens >= 1, "--max-tokens must be >= 1, got " + std::to_string(o.max_tokens));
  auto be = make_cpu_backend(dtype_from_name(o.compute_dtype));
  std::optional<DType> base;
  if (o.base_dtype != "auto") base = dtype_from_name(o.base_dtype);
  ModelFile mf = load_model_file(o.model, base);
  const auto tok = open_tokenizer(o, mf);
  require(tok->vocab_size() <= mf.config.vocab_size, "the tokenizer has " + std::to_string(tok->vocab_size()) +
                                                         " tokens, more than the model's vocab of " +
                                                         std::to_string(mf.config.vocab_size));
  const ModelConfig cfg = mf.config;
  LlamaModel model = LlamaModel::from_weights(cfg, std::move(mf.tensors), mf.source);

  bool bos = default_bos(mf, *tok, o.tokenizer.empty());
  if (o.bos) {
    require(tok->bos_id() >= 0, "--bos given but the tokenizer has no BOS token");
    bos = true;
  }
  if (o.no_bos) bos = false;
  std::vector<int32_t> prompt;
  if (bos) prompt.push_back(tok->bos_id());
  const std::vector<int32_t> text_ids = tok->encode(o.prompt);
  prompt.insert(prompt.end(), text_ids.begin(), text_ids.end());
  require(!prompt.empty(), "nothing to start from: the prompt is empty and no BOS is put first (--bos)");
  require(static_cast<int64_t>(prompt.size()) <= cfg.max_seq_len, "the prompt has " + std::to_string(prompt.size()) +
                                                                      " tokens, more than the model's context of " +
                                                                      std::to_string(cfg.max_seq_len));

  GenerationOptions g;
  g.max_tokens = o.max_tokens;
  g.sample_vocab = tok->vocab_size();
  g.sampling = o.sampling;
  g.sampling.seed = o.seed_given ? o.seed : std::random_device{}();
  if (!o.ignore_eos) {
    // EOS ends a text; a BOS sampled mid-text starts another one (llama2.c stops there too).
    for (int32_t id : {tok->eos_id(), cfg.eos_id, tok->bos_id()})
      if (id >= 0) g.stop_ids.push_back(id);
  }

  // Echo: the prompt is decoded after BOS exactly as generated text would be.
  const size_t hidden = o.no_echo ? prompt.size() : (bos ? 1 : 0);
  TextStream stream(*tok, std::vector<int32_t>(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(hidden)));
  std::string last;
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
    last = s;
  };
  for (size_t i = hidden; i < prompt.size(); ++i) emit(stream.push(prompt[i]));

  monitor::InterruptGuard guard;
  const GenerationResult r = generate(model, *be, prompt, g, [&](int32_t id) {
    emit(stream.push(id));
    return !monitor::interrupt_requested();
  });
  emit(stream.finish());
  if (std::ferror(stdout)) throw Error("writing to stdout failed");

  if (!o.quiet) {
    const auto n = static_cast<double>(r.tokens.size());
    std::fprintf(stderr, "%s[prompt %zu tokens %.0f tok/s, generated %zu tokens %.1f tok/s, %s",
                 !last.empty() && last.back() != '\n' ? "\n" : "", prompt.size(),
                 r.prefill_seconds > 0 ? static_cast<double>(prompt.size()) / r.prefill_seconds : 0.0, r.tokens.size(),
                 r.decode_seconds > 0 ? n / r.decode_seconds : 0.0, stop_reason_name(r.reason));
    if (!g.sampling.greedy()) std::fprintf(stderr, ", seed %llu", static_cast<unsigned long long>(g.sampling.seed));
    std::fprintf(stderr, "]\n");
  }
  return r.reason == StopReason::Callback ? 130 : 0;
}

const Registrar reg{
    "generate", "Generate text from a model (KV-cached, streamed to stdout)", [](CLI::App& sub) -> Runner {
      auto o = std::make_shared<Options>();
      sub.add_option("-m,--model", o->model, "GGUF file, Hugging Face directory, .safetensors file or llama2.c .bin")
          ->required();
      sub.add_option("--tokenizer", o->tokenizer,
                     "tokenizer.model, tokenizer.json, tok*.bin or GGUF (default: the model's own)");
      sub.add_option("-p,--prompt", o->prompt, "Text to continue (echoed on stdout unless --no-echo)");
      sub.add_option("-n,--max-tokens", o->max_tokens, "New tokens at most (the model's context also ends generation)")
          ->capture_default_str();
      sub.add_option("--temperature", o->sampling.temperature, "Softmax temperature; 0 = greedy")
          ->capture_default_str();
      sub.add_option("--top-k", o->sampling.top_k, "Sample among the k most likely tokens; 0 = all")
          ->capture_default_str();
      sub.add_option("--top-p", o->sampling.top_p, "Sample among the most likely tokens holding this mass; 1 = all")
          ->capture_default_str();
      auto* seed = sub.add_option("--seed", o->seed, "Random seed for sampling (default: random, printed on stderr)");
      sub.add_option("--base-dtype", o->base_dtype, "Projection format in memory: auto (as stored), f32, bf16, nf4")
          ->capture_default_str();
      sub.add_option("--compute-dtype", o->compute_dtype,
                     "Precision of the linears through reduced weights: f32, bf16, or q8_0 (weights in q8_0, "
                     "q4_0 or nf4 blocks take 8-bit activations and integer dot products, as llama.cpp computes them)")
          ->capture_default_str();
      auto* bos = sub.add_flag("--bos", o->bos, "Put BOS first (default: as the tokenizer or GGUF file says)");
      sub.add_flag("--no-bos", o->no_bos, "Do not put BOS first")->excludes(bos);
      sub.add_flag("--no-echo", o->no_echo, "Print only the generated text, not the prompt");
      sub.add_flag("--ignore-eos", o->ignore_eos, "Keep generating past EOS (for timing)");
      sub.add_flag("-q,--quiet", o->quiet, "No statistics on stderr");
      return [o, seed] {
        o->seed_given = seed->count() > 0;
        return run(*o);
      };
    }};

}  // namespace
}  // namespace pricer::cli
