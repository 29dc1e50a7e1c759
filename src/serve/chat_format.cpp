#include "serve/chat_format.h"

#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/json_util.h"

namespace pricer::serve {

namespace {

constexpr std::size_t kMaxTemplateFile = 16u << 20;

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1));
}

bool has(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// transformers' strftime_now("%d %b %Y"), as Llama 3.2's template dates its system header.
std::string today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return buf;
}

// OpenAI's "developer" is the system role under its newer name.
std::string role_of(const ChatMessage& m) { return m.role == "developer" ? "system" : m.role; }

std::string llama3(const ChatStyle& style, std::span<const ChatMessage> messages) {
  auto turn = [](const std::string& role, const std::string& content) {
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>";
  };
  std::string out;
  if (style.format == ChatFormat::Llama31) {
    // The 3.1+ templates always open with a system header carrying the knowledge cutoff and the
    // date; a leading system message is appended to it rather than sent on its own.
    std::string system;
    if (!messages.empty() && role_of(messages[0]) == "system") {
      system = messages[0].content;
      messages = messages.subspan(1);
    }
    out += "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: " +
           style.today + "\n\n" + trim(system) + "<|eot_id|>";
  }
  for (const ChatMessage& m : messages) {
    const std::string role = role_of(m);
    if (style.format == ChatFormat::Llama31 && role == "tool") {
      // A tool's result goes under "ipython", as JSON and untrimmed.
      out += "<|start_header_id|>ipython<|end_header_id|>\n\n" + nlohmann::json(m.content).dump() + "<|eot_id|>";
    } else {
      out += turn(role, m.content);
    }
  }
  return out + "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

std::string chatml(std::span<const ChatMessage> messages) {
  std::string out;
  for (const ChatMessage& m : messages) out += "<|im_start|>" + role_of(m) + "\n" + m.content + "<|im_end|>\n";
  return out + "<|im_start|>assistant\n";
}

std::string gemma(std::span<const ChatMessage> messages) {
  std::string system, out;
  for (const ChatMessage& m : messages) {
    const std::string role = role_of(m);
    if (role == "system") {
      system += trim(m.content) + "\n\n";
      continue;
    }
    std::string content = trim(m.content);
    if (role == "user" && !system.empty()) content = system + content, system.clear();
    out += "<start_of_turn>" + std::string(role == "assistant" ? "model" : role) + "\n" + content + "<end_of_turn>\n";
  }
  return out + "<start_of_turn>model\n";
}

std::string phi3(std::span<const ChatMessage> messages) {
  std::string out;
  for (const ChatMessage& m : messages) out += "<|" + role_of(m) + "|>\n" + m.content + "<|end|>\n";
  return out + "<|assistant|>\n";
}

}  // namespace

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::PricePrompt: return "none";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Llama31: return "llama3.1";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Gemma: return "gemma";
    case ChatFormat::Phi3: return "phi3";
  }
  return "?";
}

ChatFormat chat_format_from_name(std::string_view name) {
  for (ChatFormat f : {ChatFormat::PricePrompt, ChatFormat::Llama3, ChatFormat::Llama31, ChatFormat::ChatML,
                       ChatFormat::Gemma, ChatFormat::Phi3}) {
    if (name == chat_format_name(f)) return f;
  }
  throw Error("unknown chat template '" + std::string(name) +
              "' (auto, none, llama3, llama3.1, chatml, gemma or phi3)");
}

std::optional<ChatStyle> detect_chat_style(std::string_view jinja) {
  if (has(jinja, "<|start_header_id|>") && has(jinja, "<|end_header_id|>")) {
    if (!has(jinja, "Cutting Knowledge Date")) return ChatStyle{ChatFormat::Llama3, ""};
    // 3.2 dates the header with strftime_now; 3.1 and 3.3 fall back to a fixed date.
    return ChatStyle{ChatFormat::Llama31, has(jinja, "strftime_now") ? today() : "26 Jul 2024"};
  }
  if (has(jinja, "<|im_start|>")) return ChatStyle{ChatFormat::ChatML, ""};
  if (has(jinja, "<start_of_turn>")) return ChatStyle{ChatFormat::Gemma, ""};
  if (has(jinja, "<|assistant|>") && has(jinja, "<|end|>")) return ChatStyle{ChatFormat::Phi3, ""};
  return std::nullopt;
}

std::string render_chat(const ChatStyle& style, std::span<const ChatMessage> messages) {
  switch (style.format) {
    case ChatFormat::Llama3:
    case ChatFormat::Llama31: return llama3(style, messages);
    case ChatFormat::ChatML: return chatml(messages);
    case ChatFormat::Gemma: return gemma(messages);
    case ChatFormat::Phi3: return phi3(messages);
    case ChatFormat::PricePrompt: break;
  }
  throw Error("render_chat: a price prompt is not a chat format");
}

std::vector<std::string> chat_end_tokens(ChatFormat f) {
  switch (f) {
    case ChatFormat::Llama3:
    case ChatFormat::Llama31: return {"<|eot_id|>", "<|eom_id|>"};
    case ChatFormat::ChatML: return {"<|im_end|>"};
    case ChatFormat::Gemma: return {"<end_of_turn>"};
    case ChatFormat::Phi3: return {"<|end|>"};
    case ChatFormat::PricePrompt: break;
  }
  return {};
}

std::string read_chat_template(const std::string& model_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path path(model_path);
  if (fs::is_regular_file(path, ec)) {
    char magic[4] = {};
    std::ifstream(path, std::ios::binary).read(magic, 4);
    if (std::string_view(magic, 4) == "GGUF")
      return GgufFile::open(model_path).get_string_opt("tokenizer.chat_template").value_or("");
  }
  // A Hugging Face directory, or a file inside one (model.safetensors, tokenizer.json).
  const fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  if (fs::exists(dir / "chat_template.jinja")) return read_file(dir / "chat_template.jinja", kMaxTemplateFile);
  const fs::path cfg_path = dir / "tokenizer_config.json";
  if (!fs::exists(cfg_path)) return "";
  const nlohmann::json cfg = parse_json_strict(read_file(cfg_path, kMaxTemplateFile), cfg_path.string());
  if (!cfg.is_object() || !cfg.contains("chat_template")) return "";
  const nlohmann::json& t = cfg["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (t.is_array()) {
    for (const auto& named : t) {
      if (named.is_object() && named.value("name", "") == "default" && named.contains("template") &&
          named["template"].is_string())
        return named["template"].get<std::string>();
    }
  }
  throw Error(cfg_path.string() + ": chat_template is neither a string nor a list holding a \"default\" template");
}

}  // namespace pricer::serve
