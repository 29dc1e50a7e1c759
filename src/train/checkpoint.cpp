#include "train/checkpoint.h"

#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"

namespace pricer {

namespace {

constexpr char kCkptMagic[8] = {'P', 'R', 'I', 'C', 'E', 'R', 'C', 'K'};

void put_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }

}  // namespace

nlohmann::json LoopState::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"step", step},
          {"epoch", epoch},
          {"batch_in_epoch", batch_in_epoch},
          {"skipped", skipped},
          {"evals_without_improvement", evals_without_improvement},
          {"last_train_loss", num(last_train_loss)},
          {"first_eval_loss", num(first_eval_loss)},
          {"best_eval_loss", num(best_eval_loss)},
          {"last_eval_loss", num(last_eval_loss)},
          {"first_eval_mae", num(first_eval_mae)},
          {"best_eval_mae", num(best_eval_mae)},
          {"last_eval_mae", num(last_eval_mae)},
          {"best_metric", num(best_metric)}};
}

void LoopState::from_json(const nlohmann::json& j) {
  auto num = [&](const char* k, double dflt) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : dflt; };
  step = j.at("step").get<int64_t>();
  epoch = j.at("epoch").get<int64_t>();
  batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
  skipped = j.at("skipped").get<int64_t>();
  evals_without_improvement = j.at("evals_without_improvement").get<int64_t>();
  last_train_loss = num("last_train_loss", 0);
  first_eval_loss = num("first_eval_loss", NAN);
  best_eval_loss = num("best_eval_loss", NAN);
  last_eval_loss = num("last_eval_loss", NAN);
  first_eval_mae = num("first_eval_mae", -1);
  best_eval_mae = num("best_eval_mae", -1);
  last_eval_mae = num("last_eval_mae", -1);
  best_metric = num("best_metric", INFINITY);
}

void save_checkpoint(const std::string& path, const LoopState& st, const nlohmann::json& cfg,
                     const std::vector<Param>& params, const Optimizer& opt, const WeightAverage* avg) {
  std::string out(kCkptMagic, 8);
  nlohmann::json header = {{"version", 1}, {"state", st.to_json()}, {"config", cfg}};
  nlohmann::json tensors = nlohmann::json::array();
  for (const Param& p : params) tensors.push_back({{"name", p.name}, {"size", p.size}});
  header["tensors"] = tensors;
  const std::string h = header.dump();
  put_u64(out, h.size());
  out += h;
  for (const Param& p : params) out.append(reinterpret_cast<const char*>(p.value), static_cast<size_t>(p.size) * 4);
  const std::vector<uint8_t> o = opt.save_state();
  put_u64(out, o.size());
  out.append(reinterpret_cast<const char*>(o.data()), o.size());
  if (avg) {  // only with --ema: checkpoints of other runs are unchanged
    const std::vector<uint8_t> a = avg->save_state();
    put_u64(out, a.size());
    out.append(reinterpret_cast<const char*>(a.data()), a.size());
  }
  write_file_atomic(path, out);
}

LoopState load_checkpoint(const std::string& path, std::vector<Param>& params, Optimizer& opt, WeightAverage* avg,
                          const std::function<void(const nlohmann::json&)>& check_config) {
  const std::string data = read_file(path, uint64_t(1) << 40);
  size_t pos = 0;
  auto need = [&](size_t n, const char* what) {
    require(data.size() - pos >= n, path + ": truncated at byte " + std::to_string(pos) + " (" + what + ")");
  };
  need(16, "header");
  require(std::memcmp(data.data(), kCkptMagic, 8) == 0, path + ": not a pricer checkpoint (bad magic)");
  pos = 8;
  uint64_t hlen;
  std::memcpy(&hlen, data.data() + pos, 8);
  pos += 8;
  need(hlen, "header JSON");
  nlohmann::json header = nlohmann::json::parse(data.substr(pos, hlen), nullptr, false);
  require(!header.is_discarded() && header.is_object(), path + ": corrupt header JSON");
  pos += hlen;
  check_config(header.at("config"));
  const auto& tensors = header.at("tensors");
  require(tensors.size() == params.size(), path + ": holds " + std::to_string(tensors.size()) +
                                               " tensors, the model being trained has " +
                                               std::to_string(params.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    require(tensors[i].at("name").get<std::string>() == params[i].name &&
                tensors[i].at("size").get<int64_t>() == params[i].size,
            path + ": tensor " + std::to_string(i) + " is " + tensors[i].at("name").get<std::string>() + ", expected " +
                params[i].name + " of the same size (different model or LoRA settings?)");
    const size_t n = static_cast<size_t>(params[i].size) * 4;
    need(n, "tensor data");
    std::memcpy(params[i].value, data.data() + pos, n);
    pos += n;
  }
  need(8, "optimizer state length");
  uint64_t olen;
  std::memcpy(&olen, data.data() + pos, 8);
  pos += 8;
  need(olen, "optimizer state");
  opt.load_state({reinterpret_cast<const uint8_t*>(data.data() + pos), olen}, path);
  pos += olen;
  if (avg) {
    need(8, "weight average length");
    uint64_t alen;
    std::memcpy(&alen, data.data() + pos, 8);
    pos += 8;
    need(alen, "weight average");
    avg->load_state({reinterpret_cast<const uint8_t*>(data.data() + pos), alen}, path);
  }
  LoopState st;
  st.from_json(header.at("state"));
  return st;
}

}  // namespace pricer
