// pricer tokenize: text lines (or JSON lines with a "text" field) on stdin -> one JSON array of
// token ids per line on stdout.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

struct Options {
  std::string tokenizer;
  bool bos = false;
  bool special = false;
};

int run(const Options& o) {
  auto tok = pricer::load_tokenizer(o.tokenizer);
  if (o.bos && tok->bos_id() < 0) throw pricer::Error(o.tokenizer + ": --bos given but the tokenizer has no BOS token");
  std::ios::sync_with_stdio(false);
  std::string line, out;
  size_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string text;
    // A line that is a JSON object is a record; its "text" field is what gets tokenized.
    size_t first = line.find_first_not_of(" \t");
    if (first != std::string::npos && line[first] == '{') {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object())
        throw pricer::Error("stdin: line " + std::to_string(line_no) + ": invalid JSON");
      auto it = j.find("text");
      if (it == j.end() || !it->is_string())
        throw pricer::Error("stdin: line " + std::to_string(line_no) + ": no string field \"text\"");
      text = it->get<std::string>();
    } else {
      text = line;
    }
    std::vector<int32_t> ids;
    if (o.bos) ids.push_back(tok->bos_id());
    auto enc = tok->encode(text, o.special);
    ids.insert(ids.end(), enc.begin(), enc.end());
    out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    std::cout << out;
  }
  std::cout.flush();
  return std::cout ? 0 : 1;
}

pricer::cli::Registrar reg{"tokenize", "Tokenize stdin lines (or JSON lines with \"text\") into JSON arrays of ids",
                           [](CLI::App& sub) -> pricer::cli::Runner {
                             auto o = std::make_shared<Options>();
                             sub.add_option("--tokenizer", o->tokenizer,
                                            "tokenizer.model, tokenizer.json, tok*.bin, GGUF file or model directory")
                                 ->required();
                             sub.add_flag("--bos", o->bos, "Put the BOS token first");
                             sub.add_flag("--special", o->special,
                                          "Match special-token text (e.g. <|eot_id|>) as special tokens");
                             return [o] { return run(*o); };
                           }};

}  // namespace
