// Chat formats: each family's prompt for one conversation, recognising templates by their
// markers, and finding a model's template in GGUF and Hugging Face files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "io/gguf.h"
#include "serve/chat_format.h"

using namespace pricer;
using namespace pricer::serve;

namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", " Be brief. "}, {"user", "Price this kettle.\n"}, {"assistant", "$25"}, {"user", "And the toaster?"}};

std::string render(ChatFormat f, std::vector<ChatMessage> m = kConversation) {
  return render_chat(ChatStyle{f, "26 Jul 2024"}, m);
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("pricer_chat_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p) << text; }

}  // namespace

TEST(ChatFormat, Llama3PutsEveryMessageUnderItsHeaderTrimmed) {
  EXPECT_EQ(render(ChatFormat::Llama3),
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nPrice this kettle.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n$25<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nAnd the toaster?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatFormat, Llama31OpensWithTheDatedSystemHeader) {
  const std::string head =
      "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
      "Today Date: 26 Jul 2024\n\n";
  EXPECT_EQ(render(ChatFormat::Llama31), head +
                                             "Be brief.<|eot_id|>"
                                             "<|start_header_id|>user<|end_header_id|>\n\nPrice this kettle.<|eot_id|>"
                                             "<|start_header_id|>assistant<|end_header_id|>\n\n$25<|eot_id|>"
                                             "<|start_header_id|>user<|end_header_id|>\n\nAnd the toaster?<|eot_id|>"
                                             "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // Without a system message the header is there all the same, empty; "developer" is "system".
  EXPECT_EQ(render(ChatFormat::Llama31, {{"user", "Hi"}}),
            head +
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render(ChatFormat::Llama31, {{"developer", "Terse"}, {"user", "Hi"}}),
            render(ChatFormat::Llama31, {{"system", "Terse"}, {"user", "Hi"}}));
  EXPECT_EQ(render(ChatFormat::Llama31, {{"tool", " 42 "}}),
            head +
                "<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\" 42 \"<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatFormat, ChatMLGemmaAndPhi3) {
  EXPECT_EQ(render(ChatFormat::ChatML),
            "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\nPrice this kettle.\n<|im_end|>\n"
            "<|im_start|>assistant\n$25<|im_end|>\n<|im_start|>user\nAnd the toaster?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render(ChatFormat::Gemma),
            "<start_of_turn>user\nBe brief.\n\nPrice this kettle.<end_of_turn>\n"
            "<start_of_turn>model\n$25<end_of_turn>\n<start_of_turn>user\nAnd the toaster?<end_of_turn>\n"
            "<start_of_turn>model\n");
  EXPECT_EQ(render(ChatFormat::Phi3),
            "<|system|>\n Be brief. <|end|>\n<|user|>\nPrice this kettle.\n<|end|>\n<|assistant|>\n$25<|end|>\n"
            "<|user|>\nAnd the toaster?<|end|>\n<|assistant|>\n");
  EXPECT_THROW(render(ChatFormat::PricePrompt), Error);
}

TEST(ChatFormat, TemplatesAreRecognisedByTheirMarkers) {
  EXPECT_EQ(detect_chat_style("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}")->format, ChatFormat::Llama3);
  const auto fixed = detect_chat_style("<|start_header_id|>system<|end_header_id|> Cutting Knowledge Date: ...");
  ASSERT_TRUE(fixed);
  EXPECT_EQ(fixed->format, ChatFormat::Llama31);
  EXPECT_EQ(fixed->today, "26 Jul 2024");
  // Llama 3.2 dates its header with today's date, as transformers' strftime_now gives it.
  const auto dated =
      detect_chat_style("<|start_header_id|><|end_header_id|>Cutting Knowledge Date strftime_now(\"%d %b %Y\")");
  ASSERT_TRUE(dated);
  EXPECT_TRUE(std::regex_match(dated->today, std::regex("[0-9]{2} [A-Z][a-z]{2} [0-9]{4}"))) << dated->today;
  EXPECT_EQ(detect_chat_style("{{'<|im_start|>' + message['role']}}")->format, ChatFormat::ChatML);
  EXPECT_EQ(detect_chat_style("{{ '<start_of_turn>' + role }}")->format, ChatFormat::Gemma);
  EXPECT_EQ(detect_chat_style("{{'<|user|>'}}{{'<|assistant|>'}}{{'<|end|>'}}")->format, ChatFormat::Phi3);
  EXPECT_FALSE(detect_chat_style("{% for m in messages %}[INST] {{ m.content }} [/INST]{% endfor %}"));
  EXPECT_EQ(chat_format_from_name("llama3.1"), ChatFormat::Llama31);
  EXPECT_EQ(chat_format_from_name("none"), ChatFormat::PricePrompt);
  EXPECT_THROW(chat_format_from_name("jinja"), Error);
}

TEST(ChatFormat, TheTemplateIsFoundInGgufAndHuggingFaceFiles) {
  const auto dir = scratch_dir("files");
  GgufWriter w;
  w.add("general.architecture", GgufValue::string("llama"));
  w.add("tokenizer.chat_template", GgufValue::string("<|im_start|>"));
  w.write((dir / "chat.gguf").string());
  EXPECT_EQ(read_chat_template((dir / "chat.gguf").string()), "<|im_start|>");
  GgufWriter plain;
  plain.add("general.architecture", GgufValue::string("llama"));
  plain.write((dir / "plain.gguf").string());
  EXPECT_EQ(read_chat_template((dir / "plain.gguf").string()), "");

  // Hugging Face: tokenizer_config.json's string, its named list, or chat_template.jinja first.
  const auto hf = dir / "hf";
  std::filesystem::create_directories(hf);
  EXPECT_EQ(read_chat_template(hf.string()), "");
  write(hf / "tokenizer_config.json", R"({"chat_template": "<start_of_turn>"})");
  EXPECT_EQ(read_chat_template(hf.string()), "<start_of_turn>");
  EXPECT_EQ(read_chat_template((hf / "model.safetensors").string()), "<start_of_turn>");
  write(hf / "tokenizer_config.json",
        R"({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "<|end|>"}]})");
  EXPECT_EQ(read_chat_template(hf.string()), "<|end|>");
  write(hf / "tokenizer_config.json", R"({"chat_template": 7})");
  EXPECT_THROW(read_chat_template(hf.string()), Error);
  write(hf / "tokenizer_config.json", R"({"chat_template": )");
  EXPECT_THROW(read_chat_template(hf.string()), Error);
  write(hf / "chat_template.jinja", "<|im_start|>{{ role }}");
  EXPECT_EQ(read_chat_template(hf.string()), "<|im_start|>{{ role }}");
  std::filesystem::remove_all(dir);
}
