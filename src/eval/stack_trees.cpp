// The tree stacker: a linear blend of the members in log price, then libxgboost's gradient
// boosting of its residual (squared log-price error) over every column and the blend itself.
// Trees alone approximate "follow this member" only in steps; starting from the blend they learn
// the corrections: where to trust which member more. Its importances (share of the total split
// gain per column) go to the report.
#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/format.h"
#include "core/threads.h"
#include "eval/stacker.h"
#include "eval/xgboost_handles.h"

namespace pricer::eval {

#ifdef PRICER_HAVE_XGBOOST

namespace {

constexpr const char* kBlendColumn = "linear blend";

std::vector<float> row_major(const StackTable& t) {
  const std::size_t rows = t.rows(), cols = t.columns.size();
  std::vector<float> data(rows * cols);
  for (std::size_t j = 0; j < cols; ++j)
    for (std::size_t i = 0; i < rows; ++i) data[i * cols + j] = static_cast<float>(t.columns[j][i]);
  return data;
}

StackTable members_of(const StackTable& t) {
  StackTable m;
  m.names.assign(t.names.begin(), t.names.begin() + static_cast<std::ptrdiff_t>(t.members));
  m.columns.assign(t.columns.begin(), t.columns.begin() + static_cast<std::ptrdiff_t>(t.members));
  m.members = t.members;
  return m;
}

class TreeStacker : public Stacker {
 public:
  explicit TreeStacker(const TreeStackerOptions& opt) : opt_(opt) {
    require(opt.rounds >= 1 && opt.rounds <= 10000, "ensemble: tree rounds must be 1 to 10000");
    require(opt.depth >= 1 && opt.depth <= 12, "ensemble: tree depth must be 1 to 12");
    require(opt.loss == "squared" || opt.loss == "absolute", "ensemble: tree loss must be squared or absolute");
  }
  std::string name() const override { return "trees"; }
  bool reads_everything() const override { return true; }

  void fit(const StackTable& t, const std::vector<double>& log_prices) override {
    require(t.rows() == log_prices.size() && t.rows() > 0, "ensemble: nothing to fit the trees on");
    names_ = t.names;
    blend_.fit(members_of(t), log_prices);
    const auto [m, columns] = matrix(t);
    m->set_labels(std::vector<float>(log_prices.begin(), log_prices.end()));
    booster_ = std::make_unique<xgb::Booster>(
        *m,
        std::vector<std::pair<std::string, std::string>>{
            {"objective", opt_.loss == "absolute" ? "reg:absoluteerror" : "reg:squarederror"},
            {"tree_method", "hist"},
            {"max_depth", std::to_string(opt_.depth)},
            {"eta", std::to_string(opt_.eta)},
            {"min_child_weight", std::to_string(opt_.min_child_weight)},
            {"seed", std::to_string(opt_.seed)},
            {"nthread", std::to_string(opt_.threads > 0 ? opt_.threads : threads())},
            {"verbosity", "0"},
        },
        opt_.rounds);
    gain_ = booster_->total_gain(columns.size());
    columns_ = columns;
  }

  std::vector<double> predict(const StackTable& t) const override {
    require(booster_ != nullptr, "ensemble: the trees predict before fit");
    require(t.names == names_, "ensemble: the trees are asked for other columns than they were fitted on");
    if (t.rows() == 0) return {};
    const std::vector<float> out = booster_->predict(*matrix(t).first, t.rows());
    return {out.begin(), out.end()};
  }

  // Settings, and each column's share of the total split gain, largest first.
  nlohmann::json describe() const override {
    const double total = std::accumulate(gain_.begin(), gain_.end(), 0.0);
    std::vector<std::size_t> order(columns_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return gain_[a] > gain_[b]; });
    nlohmann::json shares = nlohmann::json::array();
    std::string top;
    for (std::size_t k = 0; k < order.size(); ++k) {
      const double share = total > 0 ? gain_[order[k]] / total : 0.0;
      shares.push_back({{"column", columns_[order[k]]}, {"gain_share", share}});
      if (k < 5) top += (top.empty() ? "" : ", ") + columns_[order[k]] + fmt(" %.0f%%", 100 * share);
    }
    nlohmann::json d = settings();
    d.update(
        {{"columns", columns_.size()}, {"blend", blend_.describe()}, {"importances", shares}, {"top_columns", top}});
    return d;
  }

  nlohmann::json save(const std::filesystem::path& dir) const override {
    require(booster_ != nullptr, "ensemble: the trees are saved before fit");
    nlohmann::json saved = settings();
    saved.update({{"seed", opt_.seed},
                  {"names", names_},
                  {"columns", columns_},
                  {"gain", gain_},
                  {"blend", blend_.save(dir)},
                  {"booster", xgb::save_booster(*booster_, dir / "stacker.ubj")}});
    return saved;
  }

  static std::unique_ptr<Stacker> load(const nlohmann::json& state, const std::filesystem::path& dir) {
    TreeStackerOptions o;
    o.rounds = state.at("rounds").get<int>();
    o.depth = state.at("max_depth").get<int>();
    o.eta = state.at("eta").get<double>();
    o.min_child_weight = state.at("min_child_weight").get<double>();
    o.loss = state.at("loss").get<std::string>();
    o.seed = state.at("seed").get<uint64_t>();
    auto t = std::make_unique<TreeStacker>(o);
    t->names_ = state.at("names").get<std::vector<std::string>>();
    t->columns_ = state.at("columns").get<std::vector<std::string>>();
    t->gain_ = state.at("gain").get<std::vector<double>>();
    t->blend_ = std::move(*LinearStacker::load(state.at("blend")));
    require(t->gain_.size() == t->columns_.size() && t->columns_.size() >= t->names_.size(),
            dir.string() + ": the saved trees' columns do not fit together");
    t->booster_ = xgb::load_booster(dir / "stacker.ubj", state.at("booster"), threads());
    return t;
  }

 private:
  nlohmann::json settings() const {
    return {{"stacker", name()},
            {"rounds", opt_.rounds},
            {"max_depth", opt_.depth},
            {"eta", opt_.eta},
            {"min_child_weight", opt_.min_child_weight},
            {"loss", opt_.loss}};
  }

  // The trees' matrix: the table's columns and the blend's log price, which is also each row's
  // starting prediction; with the column names.
  std::pair<std::unique_ptr<xgb::DMatrix>, std::vector<std::string>> matrix(const StackTable& t) const {
    StackTable all = t;
    const std::vector<double> blend = blend_.predict(members_of(t));
    all.names.push_back(kBlendColumn);
    all.columns.push_back(blend);
    // How far each member strays from the blend: where to move is a split on one column.
    for (std::size_t j = 0; j < t.members; ++j) {
      all.names.push_back(t.names[j] + " - blend");
      std::vector<double> d(blend.size());
      for (std::size_t i = 0; i < d.size(); ++i) d[i] = t.columns[j][i] - blend[i];
      all.columns.push_back(std::move(d));
    }
    auto m = std::make_unique<xgb::DMatrix>(row_major(all), all.rows(), all.columns.size());
    m->set_base_margin(std::vector<float>(blend.begin(), blend.end()));
    return {std::move(m), all.names};
  }

  TreeStackerOptions opt_;
  LinearStacker blend_{StackObjective::LogSquares, 1e-3};
  std::vector<std::string> names_, columns_;
  std::unique_ptr<xgb::Booster> booster_;
  std::vector<double> gain_;
};

}  // namespace

std::unique_ptr<Stacker> make_tree_stacker(const TreeStackerOptions& opt) { return std::make_unique<TreeStacker>(opt); }

std::unique_ptr<Stacker> load_tree_stacker(const nlohmann::json& state, const std::filesystem::path& dir) {
  return TreeStacker::load(state, dir);
}

#else

std::unique_ptr<Stacker> make_tree_stacker(const TreeStackerOptions&) {
  throw Error("ensemble: the tree stacker needs libxgboost, which this build was made without (scripts/setup)");
}

std::unique_ptr<Stacker> load_tree_stacker(const nlohmann::json&, const std::filesystem::path& dir) {
  throw Error(dir.string() + ": a saved tree stacker needs libxgboost, which this build was made without");
}

#endif

}  // namespace pricer::eval
