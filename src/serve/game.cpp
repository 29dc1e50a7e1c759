#include "serve/game.h"

#include <cmath>
#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/random.h"
#include "data/record.h"
#include "data/text.h"
#include "eval/human.h"
#include "io/json_util.h"
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

// The lock beside the guesses file: ".guesses.csv.lock".
std::string lock_name(const std::filesystem::path& file) {
  std::string name(".");
  name += file.filename().string();
  name += ".lock";
  return name;
}

}  // namespace

Game::Game(std::filesystem::path data, std::string split, std::filesystem::path guesses)
    : data_(std::move(data)),
      file_(std::move(guesses)),
      lock_(file_.parent_path().empty() ? "." : file_.parent_path(), "--game-out", lock_name(file_), file_.string()),
      split_(std::move(split)) {
  items_ = eval::read_split(data_, split_);
  require(!items_.empty(), data_.string() + ": no items in split " + split_);
  record_ = make_record();
  if (!std::filesystem::exists(file_)) return;
  check_record();
  std::string text = read_file(file_, eval::kMaxCsvBytes);
  const std::size_t records = eval::parse_csv(text, file_.string()).size();
  const std::size_t n = records > 0 ? records - 1 : 0;  // the header is no guess
  require(n <= items_.size(), file_.string() + ": more guesses than items in the split");
  guesses_ = eval::parse_human_csv(text, file_.string(), n);  // ids 0..n-1, each once
}

// What the guesses are for: the data, the split and a fingerprint of its items (texts and prices).
json Game::make_record() const {
  uint64_t h = items_.size();
  for (const auto& it : items_)
    h = mix64(h ^ data::hash64(it.text)) ^ static_cast<uint64_t>(std::llround(it.price * 100));
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return {{"data", std::filesystem::absolute(data_).lexically_normal().string()},
          {"split", split_},
          {"items", items_.size()},
          {"fingerprint", hex}};
}

void Game::check_record() const {
  const std::filesystem::path meta = file_.string() + ".game.json";
  if (!std::filesystem::exists(meta)) return;  // guesses from elsewhere: nothing to check against
  const json was = parse_json_strict(read_file(meta, 1u << 20), meta.string());
  auto text = [&](const char* key) {
    return was.is_object() && was.contains(key) && was[key].is_string() ? was[key].get<std::string>() : "?";
  };
  require(text("fingerprint") == record_["fingerprint"].get<std::string>(),
          file_.string() + " holds guesses for split " + text("split") + " of " + text("data") + ", not for split " +
              split_ + " of " + record_["data"].get<std::string>() +
              ": choose another --game-out (or the data those guesses are for)");
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
    throw ApiError(
        409,
        "item " + std::to_string(id) + " is not the one to guess (next is " + std::to_string(guesses_.size()) + ")",
        "invalid_request_error", "id", "not_next_item");
  if (id >= items_.size())
    throw ApiError(409, "every item has been guessed", "invalid_request_error", "id", "game_over");
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
  if (!record_written_) write_file_atomic(file_.string() + ".game.json", record_.dump(2) + "\n");
  record_written_ = true;  // it does not change while the game runs
  write_file_atomic(file_, csv);
}

}  // namespace pricer::serve
