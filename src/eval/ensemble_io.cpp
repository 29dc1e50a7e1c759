// A fitted ensemble on disk, for `pricer predict --ensemble DIR`: ensemble.json (the members, the
// settings its LLM members are built from, the stack's columns, the items the stack was fitted
// on, the fit's stats) beside a directory per fitted member and one for the stacker.
#include <algorithm>

#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/ensemble.h"
#include "io/json_util.h"

namespace pricer::eval {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "pricer-ensemble";
constexpr int kVersion = 1;
constexpr std::size_t kMaxEnsembleJsonBytes = std::size_t{1} << 30;

// A member's directory as ensemble.json names it: one plain name inside the ensemble's.
fs::path member_dir(const fs::path& dir, const std::string& name) {
  require(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
          dir.string() + ": a member directory \"" + name + "\" outside the ensemble's");
  return dir / name;
}

}  // namespace

void EnsemblePricer::write(const fs::path& dir) const {
  require(!fit_items_.empty(), "ensemble: written before fit");
  // Checked when the ensemble was built too; again here, as a directory may have appeared since.
  require(!fs::exists(dir), dir.string() + ": exists, and a saved ensemble is never replaced");
  if (dir.has_parent_path()) fs::create_directories(dir.parent_path());
  replace_directory_atomic(dir, [&](const fs::path& staging) {
    json members = json::array();
    for (size_t j = 0; j < members_.size(); ++j) {
      json m = {{"name", members_[j].name}};
      if (fitted_[j]->needs_training()) {  // trained elsewhere: rebuilt from member_params
        const std::string sub = "member-" + std::to_string(j) + "-" + members_[j].name;
        fs::create_directories(staging / sub);
        m["dir"] = sub;
        m["state"] = fitted_[j]->save(staging / sub);
      }
      members.push_back(std::move(m));
    }
    fs::create_directories(staging / "stacker");
    std::vector<uint64_t> fitted_on(fit_items_.begin(), fit_items_.end());
    std::sort(fitted_on.begin(), fitted_on.end());
    const json doc = {{"format", kFormat},
                      {"version", kVersion},
                      {"members", members},
                      {"member_params", opt_.member_context.params},
                      {"seed", opt_.member_context.seed},
                      {"item_features", opt_.item_features},
                      {"categories", features_.categories()},
                      {"columns", columns_},
                      {"stacker", stacker_->save(staging / "stacker")},
                      {"fit_items", fitted_on},
                      {"fit", stats_}};
    write_file_atomic(staging / "ensemble.json", doc.dump(1));
  });
}

std::unique_ptr<EnsemblePricer> EnsemblePricer::read(const fs::path& dir) {
  const fs::path file = dir / "ensemble.json";
  require(fs::is_regular_file(file), dir.string() + ": no saved ensemble here (ensemble.json is missing)");
  const json doc = parse_json_strict(read_file(file, kMaxEnsembleJsonBytes), file.string());
  try {
    require(doc.at("format") == kFormat && doc.at("version") == kVersion,
            file.string() + ": not a saved ensemble of version " + std::to_string(kVersion));
    std::unique_ptr<EnsemblePricer> e(new EnsemblePricer());
    PricerContext& ctx = e->opt_.member_context;
    ctx.params = doc.at("member_params").get<std::map<std::string, std::string>>();
    ctx.seed = doc.at("seed").get<uint64_t>();
    check_param_keys(ctx.params);
    for (const auto& m : doc.at("members")) {
      const std::string name = m.at("name").get<std::string>();
      const fs::path sub = m.contains("dir") ? member_dir(dir, m.at("dir").get<std::string>()) : dir;
      e->members_.push_back({name, {}, {}});
      e->fitted_.push_back(load_pricer(name, m.value("state", json()), sub, ctx));
    }
    require(!e->members_.empty(), file.string() + ": no members");
    e->opt_.item_features = doc.at("item_features").get<bool>();
    e->features_ = SimpleFeatures(doc.at("categories").get<std::vector<std::string>>());
    e->columns_ = doc.at("columns").get<std::vector<std::string>>();
    e->stacker_ = load_stacker(doc.at("stacker"), dir / "stacker");
    for (uint64_t h : doc.at("fit_items").get<std::vector<uint64_t>>()) e->fit_items_.insert(h);
    require(!e->fit_items_.empty(), file.string() + ": no fit items");
    e->stats_ = doc.at("fit");
    e->refuse_fit_items_ = false;
    return e;
  } catch (const nlohmann::json::exception& ex) {
    throw Error(file.string() + ": not a saved ensemble this build reads: " + ex.what());
  }
}

}  // namespace pricer::eval
