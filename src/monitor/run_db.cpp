#include "monitor/run_db.h"

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include "core/error.h"

namespace pricer::monitor {

std::string_view to_string(RunKind kind) {
  switch (kind) {
    case RunKind::train: return "train";
    case RunKind::pretrain: return "pretrain";
    case RunKind::eval: return "eval";
    case RunKind::sweep_trial: return "sweep-trial";
  }
  return "?";
}

std::string_view to_string(RunStatus status) {
  switch (status) {
    case RunStatus::running: return "running";
    case RunStatus::finished: return "finished";
    case RunStatus::failed: return "failed";
    case RunStatus::interrupted: return "interrupted";
  }
  return "?";
}

RunKind parse_run_kind(std::string_view text) {
  for (auto k : {RunKind::train, RunKind::pretrain, RunKind::eval, RunKind::sweep_trial})
    if (to_string(k) == text) return k;
  throw Error("unknown run kind '" + std::string(text) + "' (expected train, pretrain, eval or sweep-trial)");
}

RunStatus parse_run_status(std::string_view text) {
  for (auto s : {RunStatus::running, RunStatus::finished, RunStatus::failed, RunStatus::interrupted})
    if (to_string(s) == text) return s;
  throw Error("unknown run status '" + std::string(text) + "' (expected running, finished, failed or interrupted)");
}

class RunDb::Statement {
 public:
  Statement(RunDb& db, const char* sql) : db_(db) {
    int rc = sqlite3_prepare_v3(db.db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) db.fail("cannot prepare query", rc);
  }
  ~Statement() { sqlite3_finalize(stmt_); }

  // Cached statements are reused: start each use from a clean slate.
  Statement& reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  // SQLite stores NaN as NULL; reading NULL back gives NaN again.
  Statement& bind(int i, double v) { return check(sqlite3_bind_double(stmt_, i, v)); }
  Statement& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Statement& bind(int i, const std::optional<std::string>& v) {
    return v ? bind(i, std::string_view(*v)) : check(sqlite3_bind_null(stmt_, i));
  }
  Statement& bind(int i, const std::optional<std::int64_t>& v) {
    return v ? bind(i, *v) : check(sqlite3_bind_null(stmt_, i));
  }

  // Returns true while rows come back.
  bool step(const char* what) {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string detail = sqlite3_errmsg(db_.db_);
    sqlite3_reset(stmt_);
    throw Error("run database " + db_.path_.string() + ": " + what + ": " + detail);
  }
  void run(const char* what) {
    while (step(what)) {
    }
  }

  bool is_null(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t int64(int col) { return sqlite3_column_int64(stmt_, col); }
  double real(int col) {
    return is_null(col) ? std::numeric_limits<double>::quiet_NaN() : sqlite3_column_double(stmt_, col);
  }
  std::optional<std::int64_t> opt_int64(int col) {
    return is_null(col) ? std::nullopt : std::optional<std::int64_t>(int64(col));
  }
  std::optional<double> opt_real(int col) {
    return is_null(col) ? std::nullopt : std::optional<double>(sqlite3_column_double(stmt_, col));
  }
  std::string text(int col) {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }
  std::optional<std::string> opt_text(int col) {
    return is_null(col) ? std::nullopt : std::optional<std::string>(text(col));
  }

 private:
  Statement& check(int rc) {
    if (rc != SQLITE_OK) db_.fail("cannot bind query parameter", rc);
    return *this;
  }
  RunDb& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

namespace {

// A cached statement left mid-result keeps its read snapshot open, so later reads would see
// stale data; every use ends with a reset, also when an exception leaves early.
struct ResetOnExit {
  RunDb::Statement& q;
  ~ResetOnExit() { q.reset(); }
};

// Each step takes the schema from version i to i + 1. Version 1 had no sweeps, artifacts, log
// directory, status message or metric wall times, and allowed duplicate metric rows.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  started REAL NOT NULL,
  ended REAL,
  command_line TEXT NOT NULL DEFAULT '',
  base_model TEXT NOT NULL DEFAULT '',
  dataset TEXT NOT NULL DEFAULT '',
  output_dir TEXT NOT NULL DEFAULT '');
CREATE TABLE hyperparameters (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_id, key));
CREATE TABLE metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  name TEXT NOT NULL,
  value REAL);
)sql",
    R"sql(
ALTER TABLE runs ADD COLUMN sweep_id TEXT;
ALTER TABLE runs ADD COLUMN message TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN log_dir TEXT NOT NULL DEFAULT '';
CREATE INDEX runs_by_sweep ON runs(sweep_id);
ALTER TABLE metrics ADD COLUMN wall_time REAL;
DELETE FROM metrics WHERE rowid NOT IN
  (SELECT max(rowid) FROM metrics GROUP BY run_id, name, step);
CREATE UNIQUE INDEX metrics_by_run ON metrics(run_id, name, step);
CREATE TABLE artifacts (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  path TEXT NOT NULL,
  step INTEGER);
CREATE INDEX artifacts_by_run ON artifacts(run_id);
)sql",
    R"sql(
ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat REAL;
)sql",
};
static_assert(std::size(kMigrations) == RunDb::kSchemaVersion);

constexpr const char* kRunColumns =
    "id, name, kind, sweep_id, status, message, started, ended, command_line, base_model, "
    "dataset, output_dir, log_dir, host, pid, heartbeat";
constexpr int kRunColumnCount = 16;

// BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that upgrades from read to
// write can fail with SQLITE_BUSY without waiting, which parallel trials would hit.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::filesystem::path& path) : db_(db), path_(path) {
    run("BEGIN IMMEDIATE", "cannot start a transaction");
  }
  ~Transaction() {
    // On an error path the original error is the one worth reporting; ignore this result.
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  void commit() {
    run("COMMIT", "cannot commit");
    done_ = true;
  }

 private:
  void run(const char* sql, const char* what) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK)
      throw Error("run database " + path_.string() + ": " + what + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  const std::filesystem::path& path_;
  bool done_ = false;
};

}  // namespace

RunDb::RunDb(const std::filesystem::path& path, Mode mode, int busy_timeout_ms) : path_(path) {
  std::error_code ec;
  if (mode == Mode::existing) {
    require(std::filesystem::exists(path, ec), "no run database at " + path.string());
  } else if (path.has_parent_path()) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw Error("cannot create directory for run database " + path.string() + ": " + ec.message());
  }
  require(!std::filesystem::is_directory(path, ec), "run database " + path.string() + " is a directory");
  int flags = SQLITE_OPEN_READWRITE | (mode == Mode::create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error("cannot open run database " + path.string() + ": " + msg);
  }
  try {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, busy_timeout_ms);
    // The first statement reads the header: a file that is not SQLite fails here.
    enable_wal(busy_timeout_ms);
    // NORMAL in WAL mode never corrupts the file; at worst a power cut loses the last steps.
    exec("PRAGMA synchronous=NORMAL", "cannot set synchronous mode");
    exec("PRAGMA foreign_keys=ON", "cannot enable foreign keys");
    migrate();
  } catch (...) {
    statements_.clear();
    sqlite3_close(db_);
    throw;
  }
}

RunDb::~RunDb() {
  statements_.clear();
  sqlite3_close(db_);
}

void RunDb::fail(const std::string& what, int rc) {
  std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  throw Error("run database " + path_.string() + ": " + what + ": " + detail);
}

void RunDb::set_busy_timeout(int ms) { sqlite3_busy_timeout(db_, ms); }

std::string this_host() {
  char name[256] = {};
  return ::gethostname(name, sizeof name - 1) == 0 ? std::string(name) : std::string();
}

RunLiveness liveness(const RunInfo& run, double now) {
  if (run.status != RunStatus::running) return RunLiveness::ended;
  if (run.pid && !run.host.empty() && run.host == this_host() && ::kill(static_cast<pid_t>(*run.pid), 0) != 0 &&
      errno == ESRCH)
    return RunLiveness::crashed;
  const double last = run.heartbeat.value_or(run.started);
  return now - last > kStaleAfterSeconds ? RunLiveness::stale : RunLiveness::alive;
}

std::string_view shown_status(const RunInfo& run, double now) {
  switch (liveness(run, now)) {
    case RunLiveness::crashed: return "crashed";
    case RunLiveness::stale: return "stale";
    default: return to_string(run.status);
  }
}

// Switching a new file to WAL takes an exclusive lock; two processes opening it at once (the ranks
// of one job) can each hold the shared lock the other must wait out, and SQLite answers one of
// them "busy" at once rather than deadlock, without its busy handler: that one tries again.
void RunDb::enable_wal(int busy_timeout_ms) {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(busy_timeout_ms);
  for (;;) {
    const int rc = sqlite3_exec(db_, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
    if (rc == SQLITE_OK) return;
    if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() >= give_up) {
      fail("cannot enable WAL mode (is it an SQLite file?)", rc);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void RunDb::exec(const char* sql, const char* what) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) fail(what, rc);
}

RunDb::Statement& RunDb::prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) it = statements_.emplace(sql, std::make_unique<Statement>(*this, sql)).first;
  return it->second->reset();
}

int RunDb::schema_version() {
  auto& q = prepare("SELECT version FROM schema_version");
  ResetOnExit done{q};
  if (!q.step("cannot read the schema version")) fail("schema_version table is empty", SQLITE_CORRUPT);
  return static_cast<int>(q.int64(0));
}

void RunDb::migrate() {
  Transaction tx(db_, path_);
  int version = 0;
  {
    // Statements used once here are not cached: the schema changes under them.
    Statement has_version(*this,
                          "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                          "name='schema_version'");
    has_version.step("cannot read the schema");
    if (has_version.int64(0) == 0) {
      Statement tables(*this, "SELECT count(*) FROM sqlite_master");
      tables.step("cannot read the schema");
      require(tables.int64(0) == 0, "run database " + path_.string() +
                                        ": an SQLite file, but not a pricer run database "
                                        "(no schema_version table)");
    } else {
      Statement v(*this, "SELECT version FROM schema_version");
      require(v.step("cannot read the schema version"),
              "run database " + path_.string() + ": schema_version table is empty");
      version = static_cast<int>(v.int64(0));
    }
  }
  require(version >= 0 && version <= kSchemaVersion,
          "run database " + path_.string() + ": schema version " + std::to_string(version) +
              " is not one this build knows (it reads versions up to " + std::to_string(kSchemaVersion) +
              "); it was written by a newer pricer");
  if (version == kSchemaVersion) {
    tx.commit();
    return;
  }
  for (int v = version; v < kSchemaVersion; ++v)
    exec(kMigrations[v], ("cannot migrate the schema to version " + std::to_string(v + 1)).c_str());
  exec("DELETE FROM schema_version", "cannot record the schema version");
  Statement set(*this, "INSERT INTO schema_version (version) VALUES (?)");
  set.bind(1, std::int64_t{kSchemaVersion}).run("cannot record the schema version");
  tx.commit();
}

std::int64_t RunDb::create_run(const NewRun& run, double started) {
  auto& q = prepare(
      "INSERT INTO runs (name, kind, sweep_id, status, started, command_line, base_model, "
      "dataset, output_dir, log_dir, host, pid, heartbeat) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  q.bind(1, std::string_view(run.name)).bind(2, to_string(run.kind)).bind(3, run.sweep_id);
  q.bind(4, started).bind(5, std::string_view(run.command_line));
  q.bind(6, std::string_view(run.base_model)).bind(7, std::string_view(run.dataset));
  q.bind(8, std::string_view(run.output_dir)).bind(9, std::string_view(run.log_dir));
  const std::string host = this_host();
  q.bind(10, std::string_view(host)).bind(11, static_cast<std::int64_t>(::getpid())).bind(12, started);
  q.run("cannot create run");
  return sqlite3_last_insert_rowid(db_);
}

void RunDb::set_status(std::int64_t run, RunStatus status, std::string_view message, double ended) {
  auto& q = prepare("UPDATE runs SET status = ?, message = ?, ended = ? WHERE id = ?");
  q.bind(1, to_string(status)).bind(2, message);
  if (status == RunStatus::running) q.bind(3, std::optional<std::int64_t>{});
  else q.bind(3, ended);
  q.bind(4, run).run("cannot set run status");
  require(sqlite3_changes(db_) == 1, "run database " + path_.string() + ": no run with id " + std::to_string(run));
}

void RunDb::set_log_dir(std::int64_t run, std::string_view log_dir) {
  auto& q = prepare("UPDATE runs SET log_dir = ? WHERE id = ?");
  q.bind(1, log_dir).bind(2, run).run("cannot set the log directory");
  require(sqlite3_changes(db_) == 1, "run database " + path_.string() + ": no run with id " + std::to_string(run));
}

void RunDb::set_sweep(std::int64_t run, std::string_view sweep_id) {
  auto& q = prepare("UPDATE runs SET kind = ?, sweep_id = ? WHERE id = ?");
  q.bind(1, to_string(RunKind::sweep_trial)).bind(2, sweep_id).bind(3, run).run("cannot set the sweep");
  require(sqlite3_changes(db_) == 1, "run database " + path_.string() + ": no run with id " + std::to_string(run));
}

void RunDb::log_params(std::int64_t run, const nlohmann::json& params) {
  require(params.is_object(), "run database " + path_.string() + ": hyperparameters must be a JSON object, got " +
                                  std::string(params.type_name()));
  Transaction tx(db_, path_);
  auto& q = prepare("INSERT OR REPLACE INTO hyperparameters (run_id, key, value) VALUES (?, ?, ?)");
  for (const auto& [key, value] : params.items()) {
    q.reset().bind(1, run).bind(2, std::string_view(key));
    q.bind(3, std::string_view(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    q.run("cannot store hyperparameters");
  }
  tx.commit();
}

void RunDb::log_metrics(std::int64_t run, std::int64_t step, const std::map<std::string, double>& metrics,
                        double wall_time) {
  Transaction tx(db_, path_);
  auto& q = prepare(
      "INSERT OR REPLACE INTO metrics (run_id, step, name, value, wall_time) VALUES (?, ?, ?, ?, "
      "?)");
  for (const auto& [name, value] : metrics) {
    q.reset().bind(1, run).bind(2, step).bind(3, std::string_view(name)).bind(4, value);
    q.bind(5, wall_time).run("cannot store metrics");
  }
  auto& beat = prepare("UPDATE runs SET heartbeat = ? WHERE id = ?");
  beat.bind(1, wall_time).bind(2, run).run("cannot record the heartbeat");
  tx.commit();
}

void RunDb::add_artifact(std::int64_t run, const Artifact& artifact) {
  auto& q = prepare("INSERT INTO artifacts (run_id, kind, path, step) VALUES (?, ?, ?, ?)");
  q.bind(1, run).bind(2, std::string_view(artifact.kind)).bind(3, std::string_view(artifact.path));
  q.bind(4, artifact.step).run("cannot store artifact");
}

namespace {

// Reads the kRunColumns (columns 0 to kRunColumnCount - 1) of the current row.
RunInfo read_run(RunDb::Statement& q, const std::filesystem::path& path) {
  RunInfo r;
  r.id = q.int64(0);
  r.name = q.text(1);
  try {
    r.kind = parse_run_kind(q.text(2));
    r.status = parse_run_status(q.text(4));
  } catch (const Error& e) {
    throw Error("run database " + path.string() + ": run " + std::to_string(r.id) + ": " + e.what());
  }
  r.sweep_id = q.opt_text(3);
  r.message = q.text(5);
  r.started = q.real(6);
  r.ended = q.opt_real(7);
  r.command_line = q.text(8);
  r.base_model = q.text(9);
  r.dataset = q.text(10);
  r.output_dir = q.text(11);
  r.log_dir = q.text(12);
  r.host = q.text(13);
  r.pid = q.opt_int64(14);
  r.heartbeat = q.opt_real(15);
  return r;
}

}  // namespace

std::vector<RunInfo> RunDb::list_runs() {
  static const std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs ORDER BY id";
  auto& q = prepare(sql.c_str());
  ResetOnExit done{q};
  std::vector<RunInfo> runs;
  while (q.step("cannot list runs")) runs.push_back(read_run(q, path_));
  return runs;
}

std::vector<RunSummary> RunDb::summarize_runs() {
  static const std::string sql =
      std::string("SELECT ") + kRunColumns +
      ", (SELECT max(step) FROM metrics m WHERE m.run_id = r.id)"
      ", (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.name = ?1"
      "   ORDER BY step DESC LIMIT 1)"
      ", (SELECT min(value) FROM metrics m WHERE m.run_id = r.id AND m.name = ?2)"
      ", (SELECT min(value) FROM metrics m WHERE m.run_id = r.id AND m.name = ?1)"
      ", (SELECT min(value) FROM metrics m WHERE m.run_id = r.id AND m.name = ?3)"
      ", (SELECT value FROM metrics m WHERE m.run_id = r.id AND m.name = ?4 ORDER BY step DESC LIMIT 1)"
      " FROM runs r ORDER BY id";
  auto& q = prepare(sql.c_str());
  ResetOnExit done{q};
  q.bind(1, kTrainLoss).bind(2, kEvalLoss).bind(3, kEvalMae).bind(4, kTokensPerSecond);
  std::vector<RunSummary> out;
  while (q.step("cannot summarize runs")) {
    RunSummary s;
    s.run = read_run(q, path_);
    // The summary columns follow the run's kRunColumnCount.
    if (!q.is_null(kRunColumnCount)) s.last_step = q.int64(kRunColumnCount);
    s.last_loss = q.opt_real(kRunColumnCount + 1);
    s.best_loss = q.opt_real(kRunColumnCount + 2) ? q.opt_real(kRunColumnCount + 2) : q.opt_real(kRunColumnCount + 3);
    s.best_mae = q.opt_real(kRunColumnCount + 4);
    s.last_tokens_per_s = q.opt_real(kRunColumnCount + 5);
    out.push_back(std::move(s));
  }
  return out;
}

RunInfo RunDb::get_run(std::int64_t run) {
  static const std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?";
  auto& q = prepare(sql.c_str());
  ResetOnExit done{q};
  q.bind(1, run);
  require(q.step("cannot read run"), "run database " + path_.string() + ": no run with id " + std::to_string(run));
  return read_run(q, path_);
}

nlohmann::json RunDb::params(std::int64_t run) {
  auto& q = prepare("SELECT key, value FROM hyperparameters WHERE run_id = ? ORDER BY key");
  ResetOnExit done{q};
  q.bind(1, run);
  nlohmann::json out = nlohmann::json::object();
  while (q.step("cannot read hyperparameters")) {
    auto key = q.text(0);
    auto parsed = nlohmann::json::parse(q.text(1), nullptr, /*allow_exceptions=*/false);
    require(!parsed.is_discarded(), "run database " + path_.string() + ": run " + std::to_string(run) +
                                        ": hyperparameter '" + key + "' is not valid JSON");
    out[key] = std::move(parsed);
  }
  return out;
}

std::vector<std::string> RunDb::metric_names(std::int64_t run) {
  auto& q = prepare("SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name");
  ResetOnExit done{q};
  q.bind(1, run);
  std::vector<std::string> names;
  while (q.step("cannot read metric names")) names.push_back(q.text(0));
  return names;
}

std::vector<MetricPoint> RunDb::metric_series(std::int64_t run, std::string_view name) {
  auto& q = prepare("SELECT step, value, wall_time FROM metrics WHERE run_id = ? AND name = ? ORDER BY step");
  ResetOnExit done{q};
  q.bind(1, run).bind(2, name);
  std::vector<MetricPoint> points;
  while (q.step("cannot read metrics")) points.push_back({q.int64(0), q.real(1), q.real(2)});
  return points;
}

std::vector<Artifact> RunDb::artifacts(std::int64_t run) {
  auto& q = prepare("SELECT kind, path, step FROM artifacts WHERE run_id = ? ORDER BY rowid");
  ResetOnExit done{q};
  q.bind(1, run);
  std::vector<Artifact> out;
  while (q.step("cannot read artifacts")) {
    Artifact a{q.text(0), q.text(1), std::nullopt};
    if (!q.is_null(2)) a.step = q.int64(2);
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace pricer::monitor
