#include "predict/prediction_json.h"

namespace pricer {

using nlohmann::json;

namespace {

// One model's price, its readouts and its likeliest number tokens.
json member_json(const PricePrediction& p, const ModelPricer& mp) {
  json top = json::array();
  for (const auto& t : p.dist.top)
    top.push_back({{"token", mp.tokenizer().token_bytes(t.id)}, {"id", t.id}, {"prob", t.prob}});
  return {{"price", p.price},
          {"median", p.dist.median},
          {"expected", p.dist.expected},
          {"number_mass", p.dist.number_mass},
          {"top", top}};
}

}  // namespace

json prediction_json(const ModelAverage& avg, std::size_t i, const PricePrediction& p, PriceMode mode) {
  const auto& members = avg.members();
  json j = member_json(p, *members.front());
  j["mode"] = price_mode_name(mode);
  j["interval"] = {{"lo", p.dist.lo}, {"hi", p.dist.hi}, {"coverage", members.front()->options().coverage}};
  if (members.size() > 1) {
    j.erase("top");
    j["averaged"] = "log(1 + price) mean";
    j["models"] = json::array();
    for (std::size_t m = 0; m < members.size(); ++m) {
      json one = member_json(avg.member_predictions()[m][i], *members[m]);
      one["model"] = members[m]->options().model;
      if (!members[m]->options().adapter.empty()) one["adapter"] = members[m]->options().adapter;
      j["models"].push_back(one);
    }
  }
  if (mode == PriceMode::Greedy) {
    j["completion"] = p.text;
    j["parsed"] = p.parsed;
  }
  return j;
}

}  // namespace pricer
