#include "serve/game.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/record.h"
#include "eval/human.h"
#include "serve/api.h"

namespace pricer::serve {

using nlohmann::json;

namespace {

// What a person reads: the product, without the question and the "Price is $" cue of a curated
// prompt ("<question>\n\n<product>\n\nPrice is $").
std::string shown_text(const eval::Item& it) {
  if (it.prompt.empty() || it.text != it.prompt) return it.text;
  const size_t first = it.prompt.find("\n\n"), last = it.prompt.rfind("\n\n");
  if (first == std::string::npos || last <= first) return it.text;
  return it.prompt.substr(first + 2, last - first - 2);
}

}  // namespace

Game::Game(std::filesystem::path data, std::string split, std::filesystem::path guesses)
    : data_(std::move(data)), file_(std::move(guesses)), split_(std::move(split)) {
  items_ = eval::read_split(data_, split_);
  require(!items_.empty(), data_.string() + ": no items in split " + split_);
  if (std::filesystem::exists(file_)) {
    std::ifstream in(file_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::size_t records = eval::parse_csv(ss.str(), file_.string()).size();
    const std::size_t n = records > 0 ? records - 1 : 0;  // the header is no guess
    require(n <= items_.size(), file_.string() + ": more guesses than items in the split");
    guesses_ = eval::read_human_csv(file_, n);  // ids 0..n-1, each once
  }
}

json Game::state() const {
  std::lock_guard lock(mu_);
  const std::size_t k = guesses_.size();
  json j = {{"guessed", k}, {"total", items_.size()}, {"file", file_.string()}, {"split", split_}};
  j["item"] = k < items_.size() ? json{{"id", k}, {"text", shown_text(items_[k])}} : json(nullptr);
  j["command"] = "pricer eval --data " + data_.string() + " --split " + split_ + " --limit " + std::to_string(k) +
                 " --pricers human,finetuned --human-import " + file_.string() + " --param model=...";
  return j;
}

double Game::guess(std::size_t id, double price) {
  std::lock_guard lock(mu_);
  if (id != guesses_.size())
    throw ApiError(409, "item " + std::to_string(id) + " is not the one to guess (next is " +
                            std::to_string(guesses_.size()) + ")", "invalid_request_error", "id", "not_next_item");
  if (id >= items_.size()) throw ApiError(409, "every item has been guessed", "invalid_request_error", "id", "game_over");
  if (!std::isfinite(price) || price < 0 || price > data::kMaxPlausiblePrice)
    throw ApiError(400, "a guess is a price: a finite number from 0 up", "invalid_request_error", "price");
  guesses_.push_back(price);
  try {
    save();
  } catch (...) {
    guesses_.pop_back();  // what is not on disk was not guessed
    throw;
  }
  return items_[id].price;
}

std::vector<double> Game::guesses() const {
  std::lock_guard lock(mu_);
  return guesses_;
}

void Game::save() const {
  std::string csv = "id,price\n";
  char buf[64];
  for (std::size_t i = 0; i < guesses_.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%zu,%.2f\n", i, guesses_[i]);
    csv += buf;
  }
  write_file_atomic(file_, csv);
}

}  // namespace pricer::serve
