#include "sweep/state.h"

#include <algorithm>
#include <cmath>

#include "core/atomic_file.h"
#include "core/error.h"

namespace pricer::sweep {

std::string_view to_string(TrialStatus s) {
  switch (s) {
    case TrialStatus::running: return "running";
    case TrialStatus::complete: return "complete";
    case TrialStatus::pruned: return "pruned";
    case TrialStatus::failed: return "failed";
  }
  return "?";
}

namespace {

TrialStatus parse_status(const std::string& s) {
  for (auto st : {TrialStatus::running, TrialStatus::complete, TrialStatus::pruned, TrialStatus::failed})
    if (to_string(st) == s) return st;
  throw Error("unknown trial status '" + s + "'");
}

}  // namespace

nlohmann::json TrialRecord::to_json() const {
  nlohmann::json rj = nlohmann::json::object();
  for (const auto& [step, v] : rungs) rj[std::to_string(step)] = v;
  nlohmann::json j = {{"number", number},   {"params", params},   {"status", to_string(status)},
                      {"steps", steps},     {"rungs", rj},        {"run_ids", run_ids},
                      {"out_dir", out_dir}, {"message", message}, {"seconds", seconds}};
  j["objective"] = has_objective && std::isfinite(objective) ? nlohmann::json(objective) : nlohmann::json(nullptr);
  return j;
}

TrialRecord TrialRecord::from_json(const nlohmann::json& j) {
  TrialRecord t;
  t.number = j.at("number").get<int64_t>();
  t.params = j.at("params");
  t.status = parse_status(j.at("status").get<std::string>());
  t.steps = j.value("steps", int64_t{0});
  for (const auto& [k, v] : j.at("rungs").items()) t.rungs[std::stoll(k)] = v.get<double>();
  t.run_ids = j.at("run_ids").get<std::vector<int64_t>>();
  t.out_dir = j.value("out_dir", std::string());
  t.message = j.value("message", std::string());
  t.seconds = j.value("seconds", 0.0);
  if (j.contains("objective") && j["objective"].is_number()) {
    t.objective = j["objective"].get<double>();
    t.has_objective = true;
  }
  return t;
}

nlohmann::json SweepState::to_json() const {
  nlohmann::json tj = nlohmann::json::array();
  for (const auto& t : trials) tj.push_back(t.to_json());
  return {{"version", 1}, {"name", name}, {"settings", settings}, {"elapsed_s", elapsed_s}, {"trials", tj}};
}

void SweepState::save(const std::filesystem::path& path) const { write_file_atomic(path, to_json().dump(1) + "\n"); }

std::optional<SweepState> SweepState::load(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  const std::string text = read_file(path, uint64_t(1) << 30);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(path.string() + ": not a sweep state (corrupt JSON)");
  try {
    require(j.at("version").get<int>() == 1, "unsupported version " + j.at("version").dump());
    SweepState s;
    s.name = j.at("name").get<std::string>();
    s.settings = j.at("settings");
    s.elapsed_s = j.value("elapsed_s", 0.0);
    for (const auto& t : j.at("trials")) s.trials.push_back(TrialRecord::from_json(t));
    for (size_t i = 0; i < s.trials.size(); ++i)
      require(s.trials[i].number == static_cast<int64_t>(i),
              "trial " + std::to_string(i) + " is numbered " + std::to_string(s.trials[i].number));
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": malformed sweep state: " + e.what());
  } catch (const Error& e) {
    throw Error(path.string() + ": malformed sweep state: " + e.what());
  }
}

std::vector<const TrialRecord*> ranked_trials(const SweepState& state) {
  std::vector<const TrialRecord*> out;
  for (const auto& t : state.trials)
    if ((t.status == TrialStatus::complete || t.status == TrialStatus::pruned) && t.has_objective) out.push_back(&t);
  auto depth = [](const TrialRecord* t) {
    return t->status == TrialStatus::complete ? INT64_MAX : (t->rungs.empty() ? 0 : t->rungs.rbegin()->first);
  };
  std::stable_sort(out.begin(), out.end(), [&](const TrialRecord* a, const TrialRecord* b) {
    if (depth(a) != depth(b)) return depth(a) > depth(b);
    return a->objective < b->objective;
  });
  return out;
}

}  // namespace pricer::sweep
