#pragma once
// Chat prompts for models that carry a chat template. The templates are Jinja programs; like
// llama.cpp, pricer recognises the common families by their marker tokens and writes their
// format itself (no Jinja engine is packaged for C++), so a template it does not know is refused
// by name rather than rendered wrong. A model without a template (a price model) is priced: the
// last user message goes through the model's price prompt.
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "serve/api.h"

namespace pricer::serve {

enum class ChatFormat {
  PricePrompt,  // no template: the last user message is a product text to price
  Llama3,  // Llama 3 Instruct: every message under its header, content trimmed
  Llama31,  // Llama 3.1-3.3 Instruct: a system header with the knowledge cutoff and date first
  ChatML,  // <|im_start|>role ... <|im_end|> (Qwen, SmolLM, Hermes)
  Gemma,  // <start_of_turn>user|model, the system message folded into the first user turn
  Phi3,  // <|user|> ... <|end|>
};

struct ChatStyle {
  ChatFormat format = ChatFormat::PricePrompt;
  std::string today;  // Llama31: the "Today Date" line ("26 Jul 2024" when the template fixes it)
};

const char* chat_format_name(ChatFormat f);
// "auto" is resolved by the caller; the names chat_format_name gives, "none" = PricePrompt.
ChatFormat chat_format_from_name(std::string_view name);
// The format a Jinja chat template writes, by its markers; nullopt for a template not known.
std::optional<ChatStyle> detect_chat_style(std::string_view jinja);

// The prompt text (special tokens as text, no BOS) for the messages, ending with the assistant's
// header so that the model writes the reply. Not for PricePrompt.
std::string render_chat(const ChatStyle& style, std::span<const ChatMessage> messages);
// The special token that ends an assistant turn (generation stops at it).
std::vector<std::string> chat_end_tokens(ChatFormat f);

// The chat template a model carries: GGUF tokenizer.chat_template, or in a Hugging Face
// directory chat_template.jinja or tokenizer_config.json's chat_template (its "default" one when
// it lists several); "" when there is none. Throws Error on an unreadable tokenizer_config.json.
std::string read_chat_template(const std::string& model_path);

}  // namespace pricer::serve
