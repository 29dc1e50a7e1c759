// What a training run needs in memory, and what the machine has, checked before any data is read.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/format.h"
#include "train/trainer.h"

namespace pricer {

uint64_t parse_memory_size(const std::string& text, const std::string& what) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  if (unit.ends_with("IB")) unit.erase(unit.size() - 2);
  else if (unit.ends_with("B")) unit.pop_back();
  const double mult = unit.empty()  ? 1.0
                      : unit == "K" ? 0x1p10
                      : unit == "M" ? 0x1p20
                      : unit == "G" ? 0x1p30
                      : unit == "T" ? 0x1p40
                                    : -1.0;
  require(used > 0 && mult > 0 && std::isfinite(v) && v >= 0 && v * mult < 0x1p62,
          what + ": '" + text + "' is not a memory size (bytes, or a number with K, M, G or T)");
  return static_cast<uint64_t>(v * mult);
}

uint64_t available_memory() {
  if (const char* env = std::getenv("PRICER_AVAILABLE_MEMORY"); env && *env)
    return parse_memory_size(env, "PRICER_AVAILABLE_MEMORY");
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

uint64_t estimate_training_memory(const LlamaModel& model, const TrainConfig& cfg, bool mode_full) {
  const ModelConfig& c = model.config();
  uint64_t weights = model.embedding().bytes() + (c.tied_embeddings ? 0 : model.head().bytes());
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const Weight& w : model.layer(l).proj) weights += w.bytes();
  const uint64_t trainable = mode_full ? static_cast<uint64_t>(c.n_params())
                                       : static_cast<uint64_t>(cfg.rank) * c.n_layers * (9 * c.dim + 3 * c.ffn_dim);
  const uint64_t T = static_cast<uint64_t>(cfg.micro() * cfg.max_length);
  // Saved per layer: inputs, norms, q/k/v/attention output, gate/up/hidden (f32).
  const uint64_t per_layer = T * (6 * c.dim + 2 * c.n_kv_heads * c.head_dim + 3 * c.ffn_dim) * 4;
  const uint64_t acts = cfg.checkpoint_layers ? T * c.dim * 4 * c.n_layers + per_layer : per_layer * c.n_layers;
  const uint64_t loss_rows = mode_full ? T : static_cast<uint64_t>(cfg.micro()) * 4;
  // Per trainable weight: its gradient and the two Adam moments (and the weight when full), plus
  // the moving average's copy with --ema.
  return weights + trainable * (cfg.ema > 0 ? 20 : 16) + acts + loss_rows * c.vocab_size * 4 * 2;
}

uint64_t check_training_memory(const LlamaModel& model, const TrainConfig& cfg, bool mode_full) {
  const uint64_t need = estimate_training_memory(model, cfg, mode_full), have = available_memory();
  if (have > 0 && need > have)
    throw Error("this run needs about " + human_bytes(need) + " but only " + human_bytes(have) +
                " are available: lower micro_batch or max_length, use checkpoint_layers, or a 4-bit base");
  return need;
}

}  // namespace pricer
