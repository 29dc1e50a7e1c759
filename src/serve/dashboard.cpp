#include "serve/dashboard.h"

#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/error.h"
#include "monitor/run_db.h"
#include "serve/api.h"

namespace pricer::serve {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// NaN and infinities are not JSON: they travel as null.
json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }
template <class T>
json maybe(const std::optional<T>& v) {
  if (!v) return nullptr;
  if constexpr (std::is_floating_point_v<T>) return number(*v);
  return *v;
}

std::optional<double> last_of(const std::vector<monitor::MetricPoint>& s) {
  for (auto it = s.rbegin(); it != s.rend(); ++it)
    if (std::isfinite(it->value)) return it->value;
  return std::nullopt;
}

json series_json(const std::vector<monitor::MetricPoint>& s, int64_t after_step) {
  json out = json::array();
  for (const auto& p : s)
    if (p.step > after_step) out.push_back({p.step, number(p.value), number(p.wall_time)});
  return out;
}

json run_row(const monitor::RunSummary& s, double now) {
  const monitor::RunInfo& r = s.run;
  const double end = r.ended.value_or(now);
  return {{"id", r.id},
          {"name", r.name},
          {"kind", std::string(monitor::to_string(r.kind))},
          {"status", std::string(monitor::shown_status(r, now))},
          {"message", r.message},
          {"sweep", r.sweep_id ? json(*r.sweep_id) : json(nullptr)},
          {"started", r.started},
          {"duration_s", std::max(0.0, end - r.started)},
          {"steps", maybe(s.last_step)},
          {"last_loss", maybe(s.last_loss)},
          {"best_loss", maybe(s.best_loss)},
          {"best_val_mae", maybe(s.best_mae)},
          {"tokens_per_s", maybe(s.last_tokens_per_s)},
          {"output_dir", r.output_dir}};
}

// The database, or nothing when no run has been recorded yet.
std::unique_ptr<monitor::RunDb> open(const fs::path& path) {
  if (!fs::exists(path)) return nullptr;
  return std::make_unique<monitor::RunDb>(path, monitor::RunDb::Mode::existing, 5000);
}

// A recorded artifact's text, or "" when it is gone, unreadable or implausibly large (the page
// then says it is missing rather than failing).
std::string read_artifact(const fs::path& p) {
  constexpr std::size_t kMaxArtifactBytes = std::size_t(1) << 30;
  try {
    return read_file(p, kMaxArtifactBytes);
  } catch (const Error&) {
    return {};
  }
}

}  // namespace

json Dashboard::runs() const {
  json out = json::array();
  auto db = open(db_);
  if (!db) return out;
  const double now = unix_seconds();
  for (const auto& s : db->summarize_runs()) out.push_back(run_row(s, now));
  return out;
}

json Dashboard::run(int64_t id, int64_t after_step) const {
  auto db = open(db_);
  std::optional<monitor::RunSummary> found;
  if (db)
    for (auto& s : db->summarize_runs())
      if (s.run.id == id) found = s;
  if (!found)
    throw ApiError(404, "no run " + std::to_string(id) + " in " + db_.string(), "invalid_request_error", "id");
  json j = run_row(*found, unix_seconds());
  j["command_line"] = found->run.command_line;
  j["base_model"] = found->run.base_model;
  j["dataset"] = found->run.dataset;
  j["host"] = found->run.host;
  j["params"] = db->params(id);
  j["metrics"] = json::object();
  for (const auto& name : db->metric_names(id))
    j["metrics"][name] = series_json(db->metric_series(id, name), after_step);
  j["artifacts"] = json::array();
  for (const auto& a : db->artifacts(id))
    j["artifacts"].push_back({{"kind", a.kind}, {"path", a.path}, {"step", maybe(a.step)}});
  return j;
}

json Dashboard::sweeps() const {
  json out = json::array();
  auto db = open(db_);
  if (!db) return out;
  const double now = unix_seconds();
  std::map<std::string, json> by_sweep;
  for (const auto& s : db->summarize_runs()) {
    if (!s.run.sweep_id) continue;
    json t = run_row(s, now);
    t["params"] = db->params(s.run.id);
    t["pruned"] = s.run.message.rfind("pruned", 0) == 0;
    for (const char* m : {"eval/mae", "eval/loss"}) {
      const auto series = db->metric_series(s.run.id, m);
      t["series"][m] = series_json(series, -1);
      t["final"][m] = maybe(last_of(series));
    }
    by_sweep[*s.run.sweep_id].push_back(std::move(t));
  }
  for (auto& [name, trials] : by_sweep) out.push_back({{"name", name}, {"trials", trials}});
  return out;
}

json Dashboard::evals() const {
  json out = json::array();
  auto db = open(db_);
  if (!db) return out;
  const double now = unix_seconds();
  const auto all = db->summarize_runs();
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->run.kind != monitor::RunKind::eval) continue;
    json e = run_row(*it, now);
    e["results"] = nullptr;
    for (const auto& a : db->artifacts(it->run.id)) {
      if (a.kind != "results") continue;
      json r = json::parse(read_artifact(a.path), nullptr, false);
      if (r.is_discarded() || !r.is_object()) {
        e["results_missing"] = a.path;
        continue;
      }
      r.erase("items");  // the per-item predictions stay in the file
      e["results"] = std::move(r);
    }
    e["has_report"] = false;
    for (const auto& a : db->artifacts(it->run.id))
      e["has_report"] = e["has_report"].get<bool>() || (a.kind == "report" && fs::exists(a.path));
    out.push_back(std::move(e));
  }
  return out;
}

std::string Dashboard::eval_report(int64_t id) const {
  auto db = open(db_);
  if (db) {
    for (const auto& a : db->artifacts(id)) {
      if (a.kind != "report") continue;
      std::string html = read_artifact(a.path);
      if (!html.empty()) return html;
    }
  }
  throw ApiError(404, "no report.html for run " + std::to_string(id), "invalid_request_error", "id");
}

}  // namespace pricer::serve
