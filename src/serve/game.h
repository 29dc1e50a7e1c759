#pragma once
// "Beat the model": the course's human test as a game. Items of a dataset split are shown in
// order, exactly as `pricer eval --data DIR --split S` reads them; each guess is saved at once to a
// CSV in the form `eval --human-import` reads (id,price; ids are positions in the split), so
// after K guesses `eval --limit K --pricers human,... --human-import FILE` puts the person on the
// leaderboard. A restarted server continues after the last saved guess. Beside the CSV,
// <file>.game.json records which data, split and items the guesses are for, so a restart on other
// data is refused instead of mixing guesses; one server at a time holds the file (a lock).
#include <cstddef>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dir_lock.h"
#include "eval/item.h"

namespace pricer::serve {

class Game {
 public:
  // Throws Error naming the file when the split cannot be read, the guesses file is not a
  // contiguous run of guesses for this split (or was made for other items), or another process
  // holds it.
  Game(std::filesystem::path data, std::string split, std::filesystem::path guesses);

  std::size_t size() const { return items_.size(); }
  const eval::Item& item(std::size_t id) const { return items_.at(id); }
  // The item to guess next ({"id", "text"}, null when every item is guessed), the guesses so far
  // and the command that puts them on the leaderboard.
  nlohmann::json state() const;
  // Saves the guess for item `id`, which must be the next one (ApiError 409 otherwise); returns
  // the item's true price.
  double guess(std::size_t id, double price);
  // Guesses made so far, in item order.
  std::vector<double> guesses() const;

 private:
  void save() const;
  void check_record() const;
  nlohmann::json make_record() const;
  std::filesystem::path data_, file_;
  DirectoryLock lock_;
  std::string split_;
  std::vector<eval::Item> items_;
  mutable std::mutex mu_;
  std::vector<double> guesses_;
  nlohmann::json record_;  // data, split and fingerprint of the items, computed once
  mutable bool record_written_ = false;
};

}  // namespace pricer::serve
