#pragma once
// Command-line options of `pricer train` and `pricer pretrain`, one per setting of the training
// settings table, layered over a YAML config: the command's defaults, then the --config file,
// then the options actually given on the command line.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "train/trainer.h"

namespace pricer::cli {

class TrainOptionSet {
 public:
  // Adds `command`'s settings to `sub`, their defaults shown as `defaults` has them.
  TrainOptionSet(CLI::App& sub, TrainCommand command, const TrainConfig& defaults)
      : command_(command), defaults_(defaults) {
    sub.add_option("--config", config_path_, "YAML file of settings (keys as the long options, with _)");
    for (const TrainSetting& s : train_settings())
      if (s.applies_to(command)) add(sub, s);
  }
  const std::string& config_path() const { return config_path_; }
  // Keys of the --config file that the command reads itself (see TrainConfig::apply_yaml).
  void set_other_keys(std::vector<std::string> keys) { other_keys_ = std::move(keys); }

  // The effective configuration after parsing.
  TrainConfig resolve() const {
    TrainConfig cfg = defaults_;
    if (!config_path_.empty()) cfg.apply_yaml_file(config_path_, command_, other_keys_);
    for (const auto& copy : copies_) copy(cfg, given_);
    return cfg;
  }

 private:
  void add(CLI::App& sub, const TrainSetting& s) {
    std::visit(
        [&](auto field) {
          CLI::Option* o;
          if constexpr (std::is_same_v<decltype(field), bool TrainConfig::*>) {
            o = sub.add_flag(s.option_names(), given_.*field, std::string(s.help));
          } else {
            o = sub.add_option(s.option_names(), given_.*field, std::string(s.help));
            const nlohmann::json d = setting_value(defaults_, s);
            o->default_str(d.is_string() ? d.get<std::string>() : d.dump());
          }
          copies_.push_back([o, field](TrainConfig& dst, const TrainConfig& src) {
            if (o->count() > 0) dst.*field = src.*field;
          });
        },
        s.field);
  }

  TrainCommand command_;
  TrainConfig defaults_, given_;
  std::string config_path_;
  std::vector<std::string> other_keys_;
  std::vector<std::function<void(TrainConfig&, const TrainConfig&)>> copies_;
};

}  // namespace pricer::cli
