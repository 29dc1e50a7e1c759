#pragma once
// Helpers shared by the curate tests: a byte-level tokenizer (each byte one token) so token
// budgets and shards can be tested without a real vocabulary, temp dirs, and JSON-line builders.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace curate_test {

class ByteTokenizer : public pricer::Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool = false) const override {
    std::vector<int32_t> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id < 256) s += static_cast<char>(id);
    return s;
  }
  std::string token_bytes(int32_t id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : std::string();
  }
  int32_t vocab_size() const override { return 258; }
  int32_t bos_id() const override { return 256; }
  int32_t eos_id() const override { return 257; }
};

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::random_device rd;
    // Built with append(): GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
    std::string name = "pricer-curate-";
    name.append(std::to_string(rd())).append(std::to_string(rd()));
    path = std::filesystem::temp_directory_path() / name;
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A raw Amazon-style record whose text is comfortably over 600 characters; `salt` makes the
// title and text unique.
inline nlohmann::json raw_record(const std::string& salt, double price) {
  nlohmann::json j;
  j["title"] = std::string("Sturdy Item ").append(salt).append(" for Everyday Use");
  std::string desc;
  for (int i = 0; i < 12; ++i)
    desc.append("Sentence number ")
        .append(std::to_string(i))
        .append(" about item ")
        .append(salt)
        .append(" and why it is useful. ");
  j["description"] = {desc};
  j["features"] = {std::string("Feature one of ").append(salt), std::string("Feature two of ").append(salt)};
  j["details"] = {{"Brand", std::string("Brand").append(salt)}, {"Color", "Blue"}};
  j["price"] = price;
  return j;
}

}  // namespace curate_test
