// `pricer bench train|forward|serve`: one LoRA training step (forward + backward + AdamW) or prompt
// processing on a Llama-shaped model with random weights, printed as one JSON line. The default
// shape is Llama-3.2-1B's; the weights are generated tensor by tensor directly in the base format,
// so the benchmark's own set-up never holds an f32 copy of the model. `bench model` writes that
// model as a GGUF file, for measuring other runtimes (llama.cpp) on the very same weights.
#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "core/random.h"
#include "core/threads.h"
#include "io/model_file.h"
#include "kernels/backend.h"
#include "kernels/onednn.h"
#include "model/hf_names.h"
#include "model/llama.h"
#include "quant/half.h"
#include "serve/load.h"
#include "tokenizer/train_bpe.h"
#include "tokenizer/vocab_export.h"
#include "train/optimizer.h"

namespace pricer::cli {
namespace {

struct BenchOptions {
  int64_t dim = 2048, layers = 16, heads = 32, kv_heads = 8, ffn = 8192, vocab = 128256;
  int64_t batch = 2, seq = 128, loss_tokens = 3, rank = 16;
  std::string base_dtype = "nf4", embed_dtype = "bf16", backend = "cpu", targets = "all", compute = "bf16";
  std::string out, tokenizer;  // `bench model`: the GGUF file to write, and the vocab it embeds
  bool overwrite = false;
  int steps = 3, warmup = 1;
  bool checkpoint = false;
  uint64_t seed = 1;
};

// Uniform values with standard deviation 0.02 (Llama's init scale), from a counter-based hash so
// the rows can be filled in parallel and the result does not depend on the thread count.
Weight random_weight(int64_t rows, int64_t cols, DType dtype, uint64_t seed) {
  const float a = 0.02f * 1.7320508f;
  const int64_t band = 256;
  if (dtype == DType::BF16 || dtype == DType::F16 || dtype == DType::F32) {
    // Build in bands to bound the f32 staging memory, then assemble the raw storage.
    Weight probe = Weight::from_f32(std::vector<float>(cols, 0.f).data(), 1, cols, dtype);
    const size_t row_bytes = probe.bytes();
    std::vector<uint8_t> raw(static_cast<size_t>(rows) * row_bytes);
#pragma omp parallel
    {
      std::vector<float> buf(static_cast<size_t>(band * cols));
#pragma omp for schedule(static)
      for (int64_t r0 = 0; r0 < rows; r0 += band) {
        const int64_t nr = std::min(band, rows - r0);
        for (int64_t i = 0; i < nr * cols; ++i) {
          const uint64_t h = mix64(seed ^ mix64(static_cast<uint64_t>(r0 * cols + i)));
          buf[i] = a * (2.0f * static_cast<float>((h >> 40) * 0x1p-24) - 1.0f);
        }
        Weight part = Weight::from_f32(buf.data(), nr, cols, dtype);
        const auto& bytes =
            dtype == DType::F32
                ? std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(part.f32().data()),
                                       reinterpret_cast<const uint8_t*>(part.f32().data()) + nr * cols * 4)
                : part.file_bytes();
        std::copy(bytes.begin(), bytes.end(), raw.begin() + r0 * static_cast<int64_t>(row_bytes));
      }
    }
    if (dtype == DType::F32) {
      std::vector<float> f(static_cast<size_t>(rows * cols));
      std::memcpy(f.data(), raw.data(), raw.size());
      return Weight::from_f32(f.data(), rows, cols, DType::F32);
    }
    return Weight::from_raw(dtype, rows, cols, std::move(raw));
  }
  // Block formats quantize the whole tensor at once; projections are at most ffn x dim.
  std::vector<float> f(static_cast<size_t>(rows * cols));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows * cols; ++i) {
    const uint64_t h = mix64(seed ^ mix64(static_cast<uint64_t>(i)));
    f[i] = a * (2.0f * static_cast<float>((h >> 40) * 0x1p-24) - 1.0f);
  }
  return Weight::from_f32(f.data(), rows, cols, dtype);
}

ModelConfig bench_config(const BenchOptions& o) {
  ModelConfig cfg;
  cfg.vocab_size = o.vocab;
  cfg.dim = o.dim;
  cfg.n_layers = o.layers;
  cfg.n_heads = o.heads;
  cfg.n_kv_heads = o.kv_heads;
  cfg.head_dim = o.dim / o.heads;
  cfg.ffn_dim = o.ffn;
  cfg.max_seq_len = std::max<int64_t>(o.seq, 2048);
  cfg.rope_theta = 500000.0f;
  cfg.rope_scaling = {32.0f, 1.0f, 4.0f, 8192};
  cfg.tied_embeddings = true;
  cfg.validate("bench model");
  return cfg;
}

std::map<std::string, Weight> random_tensors(const BenchOptions& o, const ModelConfig& cfg) {
  const DType base = dtype_from_name(o.base_dtype), embed = dtype_from_name(o.embed_dtype);
  std::map<std::string, Weight> w;
  uint64_t seed = o.seed;
  w["model.embed_tokens.weight"] = random_weight(cfg.vocab_size, cfg.dim, embed, ++seed);
  std::vector<float> ones(cfg.dim, 1.0f);
  const int64_t hd = cfg.head_dim;
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const std::string p = hf_layer_prefix(l);
    w[p + "input_layernorm.weight"] = Weight::from_f32(ones.data(), 1, cfg.dim, DType::F32);
    w[p + "post_attention_layernorm.weight"] = Weight::from_f32(ones.data(), 1, cfg.dim, DType::F32);
    w[p + "self_attn.q_proj.weight"] = random_weight(cfg.n_heads * hd, cfg.dim, base, ++seed);
    w[p + "self_attn.k_proj.weight"] = random_weight(cfg.n_kv_heads * hd, cfg.dim, base, ++seed);
    w[p + "self_attn.v_proj.weight"] = random_weight(cfg.n_kv_heads * hd, cfg.dim, base, ++seed);
    w[p + "self_attn.o_proj.weight"] = random_weight(cfg.dim, cfg.n_heads * hd, base, ++seed);
    w[p + "mlp.gate_proj.weight"] = random_weight(cfg.ffn_dim, cfg.dim, base, ++seed);
    w[p + "mlp.up_proj.weight"] = random_weight(cfg.ffn_dim, cfg.dim, base, ++seed);
    w[p + "mlp.down_proj.weight"] = random_weight(cfg.dim, cfg.ffn_dim, base, ++seed);
  }
  w["model.norm.weight"] = Weight::from_f32(ones.data(), 1, cfg.dim, DType::F32);
  return w;
}

LlamaModel build_model(const BenchOptions& o) {
  const ModelConfig cfg = bench_config(o);
  return LlamaModel::from_weights(cfg, random_tensors(o, cfg), "bench model");
}

// `bench model`: the benchmark's random model as a GGUF file with a vocab (the one given, or the
// smallest trained one: bytes, the numbers 0-999, BOS and EOS) padded to the model's rows.
int run_bench_model(const BenchOptions& o) {
  require(!o.out.empty(), "bench model: --out is required");
  require(o.overwrite || !std::filesystem::exists(o.out),
          "bench model: " + o.out + " exists; give --overwrite to replace it");
  const ModelConfig cfg = bench_config(o);
  std::unique_ptr<Tokenizer> tok =
      o.tokenizer.empty() ? make_trained_tokenizer(train_bpe({})) : load_tokenizer(o.tokenizer);
  GgufExportOptions go;
  go.name = "random " + std::to_string(cfg.n_layers) + "-layer llama (pricer bench)";
  go.extra = gguf_tokenizer_metadata(*tok, cfg.vocab_size);
  save_gguf(o.out, cfg, random_tensors(o, cfg), go);
  std::printf("%s\n", nlohmann::json({{"bench", "model"}, {"out", o.out}, {"dtype", o.base_dtype}}).dump().c_str());
  return 0;
}

Batch random_batch(const BenchOptions& o) {
  std::vector<Example> ex(static_cast<size_t>(o.batch));
  for (int64_t b = 0; b < o.batch; ++b) {
    ex[b].tokens.resize(static_cast<size_t>(o.seq + 1));
    for (int64_t t = 0; t <= o.seq; ++t)
      ex[b].tokens[t] = static_cast<int32_t>(mix64(o.seed * 7919 + b * 100003 + t) % o.vocab);
    ex[b].prompt_len = o.seq + 1 - o.loss_tokens;
  }
  return make_batch(ex, BatchMode::Packing, 0);
}

// Multiply-adds of the frozen projections for T tokens, times two (FLOPs), where the last layer's
// output projection and MLP run at last_rows of them (the rows the head reads).
double projection_flops(const BenchOptions& o, int64_t T, int64_t last_rows) {
  const double hd = static_cast<double>(o.dim) / o.heads;
  const double every_row = o.dim * (o.heads * hd) + o.dim * (o.kv_heads * hd) * 2;  // q, k, v
  const double row_wise = o.dim * (o.heads * hd) + 3.0 * o.dim * o.ffn;  // o, gate, up, down
  return 2.0 * (every_row * o.layers * T + row_wise * ((o.layers - 1) * T + last_rows));
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

using Clock = std::chrono::steady_clock;

// CPU seconds of the whole process (all threads): with other work on the machine, wall time
// measures the machine, CPU time still measures the step.
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

// Wall and CPU seconds of each measured step (after the warmup ones), and the last loss or logit.
struct Timings {
  std::vector<double> wall, cpu;
  double loss = 0;
};

// Runs `step` warmup + steps times, keeping the measured ones.
template <class Step>
Timings time_steps(const BenchOptions& o, Step&& step) {
  Timings t;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    const auto t0 = Clock::now();
    const double c0 = process_cpu_s();
    t.loss = step(s);
    if (s < o.warmup) continue;
    t.wall.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    t.cpu.push_back(process_cpu_s() - c0);
  }
  return t;
}

// QLoRA training steps: forward, backward into the adapters, clipping, AdamW.
Timings time_training(LlamaModel& model, Backend& backend, const Batch& batch, const BenchOptions& o) {
  LoraConfig lc;
  lc.rank = o.rank;
  lc.alpha = 2.0f * o.rank;
  lc.dropout = 0.1f;
  lc.targets = parse_lora_targets(o.targets);
  model.add_lora(lc, o.seed);
  Optimizer opt(OptimizerConfig{}, make_param_groups(model.trainable_params(), 0.001f));
  return time_steps(o, [&](int s) {
    model.zero_grad();
    TrainOptions to{.checkpoint = o.checkpoint, .dropout_seed = o.seed, .step = static_cast<uint64_t>(s)};
    const double loss = model.forward_backward(batch, backend, to);
    clip_grad_norm(opt.groups(), 0.3f);
    opt.step(backend, 1e-4f);
    return loss;
  });
}

// This machine's bf16 GEMM rate on the step's widest linears: `tokens` x `in` activations against
// an `out`-row weight in bands of 256 rows, each thread multiplying its own bands as the linears
// split them, every operand already in bf16 and nothing else running. The best of three passes:
// the peak that the step's linear GFLOP/s is a share of.
double bf16_gemm_peak_gflops(int64_t tokens, int64_t in, int64_t out) {
  constexpr int64_t kBand = 256;
  const int nt = threads();
  const int64_t bands = std::max<int64_t>(out / kBand, nt);
  const std::vector<uint16_t> x(static_cast<size_t>(tokens * in), f32_to_bf16(0.01f));
  const std::vector<uint16_t> w(static_cast<size_t>(nt * kBand * in), f32_to_bf16(0.02f));
  std::vector<float> y(static_cast<size_t>(nt * tokens * kBand));
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    kernels::SerialGemms serial;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < bands; ++b) {
      const int64_t tid = omp_get_thread_num();
      kernels::gemm_bf16(true, tokens, kBand, in, x.data(), in, w.data() + tid * kBand * in, in, 0.0f,
                         y.data() + tid * tokens * kBand, kBand);
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(tokens * in * kBand * bands) / s * 1e-9);
  }
  require(y[0] > 0.0f, "bench: the bf16 GEMM pass computed nothing");
  return best;
}

// What the bf16 dot-product instruction itself delivers on every thread: 24 independent
// accumulators, so no result waits on another and nothing is read from memory. No GEMM can go
// past it; the GEMM peak above is a share of it. The best of three passes; 0 where the build has
// no AVX512-BF16.
double bf16_instruction_peak_gflops() {
#if defined(__AVX512BF16__)
  constexpr int kChains = 24;
  constexpr int64_t kRounds = 2'000'000;
  const int nt = threads();
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    float sink = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(nt) reduction(+ : sink)
    {
      __m512 acc[kChains];
      for (auto& a : acc) a = _mm512_setzero_ps();
      __m512bh a = (__m512bh)_mm512_set1_epi32(0x3c003c00), b = a;  // bf16 pairs of 2^-7
      for (int64_t r = 0; r < kRounds; ++r) {
#pragma GCC unroll 24  // every accumulator in its own register
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
        __asm__ volatile("" : "+v"(a));  // one operand opaque: the loop is not folded away
      }
      alignas(64) float lanes[16];
      for (const auto& c : acc) {
        _mm512_store_ps(lanes, c);
        sink += lanes[0];
      }
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    require(sink > 0.0f, "bench: the bf16 instruction pass computed nothing");
    best = std::max(best, 64.0 * kChains * static_cast<double>(kRounds) * nt / s * 1e-9);
  }
  return best;
#else
  return 0;
#endif
}

// Prompt processing: the forward pass with the head at each sequence's last token.
Timings time_forward(LlamaModel& model, Backend& backend, const Batch& batch, const BenchOptions& o) {
  const std::vector<int64_t> last = last_rows(batch);
  return time_steps(o, [&](int) { return static_cast<double>(model.logits(batch, last, backend)[0]); });
}

// `bench decode`: a model file's prompt processing and greedy decoding, and what decoding moves.
struct DecodeOptions {
  std::string model, base_dtype = "auto", compute = "f32";
  int64_t prompt = 256, decode = 64;
  int repeats = 3;
};

// Read bandwidth of this machine in GB/s, all threads (STREAM-like: sums a buffer far larger than
// the caches, the best of three passes): what a memory-bound decode can at most move per second.
// The buffer is filled once, so that each decode repeat can be followed by a measurement (the
// bandwidth of this virtual machine moves from minute to minute).
class ReadBandwidth {
 public:
  ReadBandwidth() : buf_(size_t{1} << 27, 1) {}  // 1 GiB of 8-byte integers (integer sums vectorise freely)

  double measure() const {
    const auto n = static_cast<int64_t>(buf_.size());
    const uint64_t* buf = buf_.data();
    double best = 0;
    uint64_t sink = 0;
    for (int pass = 0; pass < 3; ++pass) {
      const auto t0 = Clock::now();
      uint64_t total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
      for (int64_t i = 0; i < n; ++i) total += buf[i];
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      best = std::max(best, static_cast<double>(n) * 8 / s * 1e-9);
      sink += total;
    }
    require(sink == static_cast<uint64_t>(3 * n), "bench: the bandwidth pass read wrong values");
    return best;
  }

 private:
  std::vector<uint64_t> buf_;
};

// Bytes of weights one decoded token reads: every matrix once, the embedding only as the head.
int64_t weight_bytes_per_token(const ModelFile& mf) {
  int64_t total = 0;
  for (const auto& [name, w] : mf.tensors)
    if (name != kHfEmbedding || mf.config.tied_embeddings) total += static_cast<int64_t>(w.bytes());
  return total;
}

int run_bench_decode(const DecodeOptions& o) {
  require(o.prompt >= 1 && o.decode >= 1 && o.repeats >= 1, "bench decode: counts must be at least 1");
  std::optional<DType> base;
  if (o.base_dtype != "auto") base = dtype_from_name(o.base_dtype);
  ModelFile mf = load_model_file(o.model, base);
  const int64_t bytes = weight_bytes_per_token(mf);
  LlamaModel model = LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source);
  auto be = make_cpu_backend(dtype_from_name(o.compute));
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt));
  for (int64_t t = 0; t < o.prompt; ++t) prompt[t] = static_cast<int32_t>(mix64(t + 1) % model.config().vocab_size);
  // The best decode rate against the best bandwidth measured right after each repeat: both over
  // the same minutes.
  const ReadBandwidth probe;
  double prefill_best = 0, decode_best = 0, bandwidth = 0;
  for (int r = 0; r < o.repeats; ++r) {
    KvCache cache = model.make_cache(o.prompt + o.decode);
    auto t0 = Clock::now();
    std::vector<float> logits = model.prefill(cache, prompt, *be);
    prefill_best = std::max(prefill_best, o.prompt / std::chrono::duration<double>(Clock::now() - t0).count());
    t0 = Clock::now();
    for (int64_t i = 0; i < o.decode; ++i) {
      const auto next = std::max_element(logits.begin(), logits.end()) - logits.begin();
      logits = model.decode(cache, static_cast<int32_t>(next), *be);
    }
    decode_best = std::max(decode_best, o.decode / std::chrono::duration<double>(Clock::now() - t0).count());
    bandwidth = std::max(bandwidth, probe.measure());
  }
  const double moved = decode_best * static_cast<double>(bytes) * 1e-9;
  nlohmann::json j = {{"bench", "decode"},
                      {"impl", "pricer"},
                      {"model", o.model},
                      {"base_dtype", o.base_dtype},
                      {"compute", o.compute},
                      {"threads", threads()},
                      {"prompt_tokens", o.prompt},
                      {"prompt_tok_s", prefill_best},
                      {"decode_tokens", o.decode},
                      {"decode_tok_s", decode_best},
                      {"weight_mib_per_token", static_cast<double>(bytes) / (1 << 20)},
                      {"decode_gbs", moved},
                      {"read_bandwidth_gbs", bandwidth},
                      {"bandwidth_fraction", moved / bandwidth},
                      {"peak_rss_mib", peak_rss_mib()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int run_bench(const std::string& what, const BenchOptions& o) {
  const auto t_build = Clock::now();
  LlamaModel model = build_model(o);
  const double build_s = std::chrono::duration<double>(Clock::now() - t_build).count();
  const DType compute = dtype_from_name(o.compute);
  auto backend = o.backend == "reference" ? make_reference_backend(compute) : make_cpu_backend(compute);
  const Batch batch = random_batch(o);
  const int64_t T = batch.size();
  Timings t = what == "train" ? time_training(model, *backend, batch, o) : time_forward(model, *backend, batch, o);
  std::vector<double>& times = t.wall;
  std::vector<double>& cpu_times = t.cpu;
  const double loss = t.loss;
  std::sort(times.begin(), times.end());
  std::sort(cpu_times.begin(), cpu_times.end());
  const double sec = times[times.size() / 2], cpu_sec = cpu_times[cpu_times.size() / 2];
  // Training: projections forward and input-gradient backward (and a second forward when
  // layers are recomputed); the head at the loss positions forward and backward.
  const int64_t heads_rows = what == "train" ? batch.n_loss_tokens() : o.batch;
  double flops = projection_flops(o, T, heads_rows) * (what == "train" ? (o.checkpoint ? 3 : 2) : 1) +
                 2.0 * heads_rows * o.dim * o.vocab * (what == "train" ? 2 : 1);
  const double peak = bf16_gemm_peak_gflops(T, o.dim, o.ffn);
  const double instruction_peak = bf16_instruction_peak_gflops();
  const auto share_of = [](double x, double of) { return of > 0 ? nlohmann::json(x / of) : nlohmann::json(nullptr); };
  nlohmann::json j = {{"bench", what},
                      {"impl", std::string("pricer-") + o.base_dtype + "-" + o.compute},
                      {"compute", o.compute},
                      {"backend", backend->name()},
                      {"threads", threads()},
                      {"shape",
                       {{"dim", o.dim},
                        {"layers", o.layers},
                        {"heads", o.heads},
                        {"kv_heads", o.kv_heads},
                        {"ffn", o.ffn},
                        {"vocab", o.vocab}}},
                      {"batch", o.batch},
                      {"seq", o.seq},
                      {"rank", what == "train" ? o.rank : 0},
                      {"checkpoint", o.checkpoint},
                      {"step_s", sec},
                      {"tokens_per_s", T / sec},
                      {"cpu_s", cpu_sec},
                      {"tokens_per_cpu_s", T / cpu_sec},
                      {"linear_gflops", flops / sec * 1e-9},
                      {"bf16_gemm_peak_gflops", peak},
                      {"linear_share_of_bf16_peak", flops / sec * 1e-9 / peak},
                      {"bf16_instruction_peak_gflops",
                       instruction_peak > 0 ? nlohmann::json(instruction_peak) : nlohmann::json(nullptr)},
                      {"bf16_gemm_peak_share_of_instruction_peak", share_of(peak, instruction_peak)},
                      {"linear_share_of_instruction_peak", share_of(flops / sec * 1e-9, instruction_peak)},
                      {"peak_rss_mib", peak_rss_mib()},
                      {"build_s", build_s},
                      {"loss_or_logit", loss}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

// The model: its shape, formats and seed.
void add_shape_options(CLI::App& sub, BenchOptions& o) {
  sub.add_option("--dim", o.dim, "Hidden size")->capture_default_str();
  sub.add_option("--layers", o.layers, "Decoder layers")->capture_default_str();
  sub.add_option("--heads", o.heads, "Attention heads")->capture_default_str();
  sub.add_option("--kv-heads", o.kv_heads, "Key/value heads (GQA)")->capture_default_str();
  sub.add_option("--ffn", o.ffn, "MLP intermediate size")->capture_default_str();
  sub.add_option("--vocab", o.vocab, "Vocabulary size")->capture_default_str();
  sub.add_option("--dtype,--base-dtype", o.base_dtype,
                 "Base projection format: nf4, bf16, f16, f32, q8_0, q4_0, q4_k, q5_k, q6_k")
      ->capture_default_str();
  sub.add_option("--embed-dtype", o.embed_dtype, "Embedding / tied head format")->capture_default_str();
  sub.add_option("--seed", o.seed, "Weights and batch seed")->capture_default_str();
}

void add_options(CLI::App& sub, BenchOptions& o) {
  add_shape_options(sub, o);
  sub.add_option("--batch", o.batch, "Sequences per step")->capture_default_str();
  sub.add_option("--seq", o.seq, "Tokens per sequence")->capture_default_str();
  sub.add_option("--loss-tokens", o.loss_tokens, "Completion tokens per sequence (loss positions)")
      ->capture_default_str();
  sub.add_option("--rank", o.rank, "LoRA rank (alpha = 2 x rank)")->capture_default_str();
  sub.add_option("--targets", o.targets, "LoRA target projections")->capture_default_str();
  sub.add_option("--compute", o.compute,
                 "Precision of the base linears: bf16 (operands in bf16, f32 sums), f32, or q8_0 (8-bit "
                 "activations and integer dot products for q8_0/q4_0 weights)")
      ->capture_default_str();
  sub.add_option("--backend", o.backend, "cpu or reference")->capture_default_str();
  sub.add_option("--steps", o.steps, "Timed steps (the median is reported)")->capture_default_str();
  sub.add_option("--warmup", o.warmup, "Untimed steps first")->capture_default_str();
  sub.add_flag("--checkpoint", o.checkpoint, "Recompute each layer in backward");
}

// `bench serve`: the server under load, one JSON line per measurement.
// A measurement with failed requests is no measurement: exit 1, saying how many failed.
int run_bench_serve(const serve::ServeBenchOptions& o) {
  int64_t errors = 0;
  for (const auto& j : serve::bench_serve(o)) {
    std::printf("%s\n", j.dump().c_str());
    errors += j["errors"].get<int64_t>();
  }
  if (errors > 0) std::fprintf(stderr, "bench serve: %lld requests failed\n", static_cast<long long>(errors));
  return errors > 0 ? 1 : 0;
}

void add_serve_options(CLI::App& s, serve::ServeBenchOptions& o) {
  s.add_option("-m,--model", o.model.model, "Model (GGUF, Hugging Face directory)")->required();
  s.add_option("--adapter", o.model.adapter, "LoRA adapter");
  s.add_option("--base-dtype", o.model.base_dtype, "How the projections are held: nf4, q8_0, q4_0, bf16, f32")
      ->capture_default_str();
  s.add_option("--clients", o.clients, "Concurrent clients, one setting each")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024));
  s.add_option("--requests", o.per_client, "Requests per client")->capture_default_str()->check(CLI::Range(1, 1000000));
  s.add_option("--max-tokens", o.max_tokens, "Tokens generated per completion request")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
}

Registrar reg{
    "bench", "Benchmark a LoRA training step, prompt processing or the server (JSON lines)", [](CLI::App& sub) {
      auto o = std::make_shared<BenchOptions>();
      auto so = std::make_shared<serve::ServeBenchOptions>();
      auto what = std::make_shared<std::string>();
      sub.require_subcommand(1);
      CLI::App* s = sub.add_subcommand("serve",
                                       "pricer serve under load: requests/s and p50/p99 latency at 1, 4 and 16 "
                                       "clients, price and completion requests, and the gain from batching");
      add_serve_options(*s, *so);
      s->callback([what] { *what = "serve"; });
      for (const char* name : {"train", "forward"}) {
        CLI::App* s =
            sub.add_subcommand(name, std::string(name) == "train"
                                         ? "Forward + backward + AdamW on LoRA adapters over a frozen base"
                                         : "Prompt processing: forward over the batch, logits at each sequence end");
        add_options(*s, *o);
        s->callback([what, name] { *what = name; });
      }
      auto d = std::make_shared<DecodeOptions>();
      CLI::App* dec = sub.add_subcommand(
          "decode", "A model file's prompt processing and greedy decoding (tokens/s), against memory bandwidth");
      dec->add_option("-m,--model", d->model, "Model (GGUF, Hugging Face directory)")->required();
      dec->add_option("--base-dtype", d->base_dtype, "Projections in memory: auto (as stored), f32, bf16, nf4")
          ->capture_default_str();
      dec->add_option("--compute", d->compute, "Precision of the linears: f32, bf16 or q8_0")->capture_default_str();
      dec->add_option("--prompt-tokens", d->prompt, "Prompt length")->capture_default_str();
      dec->add_option("--decode-tokens", d->decode, "Tokens decoded after it")->capture_default_str();
      dec->add_option("--repeats", d->repeats, "Runs (the best is reported)")->capture_default_str();
      dec->callback([what] { *what = "decode"; });
      CLI::App* m = sub.add_subcommand("model", "Write the benchmark's random model as a GGUF file (for llama.cpp)");
      add_shape_options(*m, *o);
      m->add_option("-o,--out", o->out, "GGUF file to write")->required();
      m->add_flag("--overwrite", o->overwrite, "Replace --out when it exists");
      m->add_option("--tokenizer", o->tokenizer, "Vocab to embed (default: bytes, numbers 0-999, BOS, EOS)");
      m->callback([what] { *what = "model"; });
      return [o, so, d, what]() {
        if (*what == "serve") return run_bench_serve(*so);
        if (*what == "decode") return run_bench_decode(*d);
        return *what == "model" ? run_bench_model(*o) : run_bench(*what, *o);
      };
    }};

}  // namespace
}  // namespace pricer::cli
