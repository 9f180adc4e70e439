// Chat templates: turn a conversation into the prompt text a chat model was trained on.
//
// GGUF files carry the template as Jinja source (`tokenizer.chat_template`). aigc does not run
// Jinja: it recognises the template's family by distinctive markers (as llama.cpp's
// llm_chat_detect_template does) and renders that family with a small C++ formatter. The names and
// the rendering follow llama.cpp's built-in formatter (llm_chat_apply_template), so
// `--chat-template NAME` means the same here as there.
//
//   ChatTemplate t = chat_template_resolve(cli_name, gguf_chat_template);   // name wins if given
//   std::vector<ChatMessage> msgs = {{"system", "Be brief."}, {"user", "Hi"}};
//   std::string prompt = chat_template_render(t, msgs, /*add_generation_prompt=*/true, "<s>", "</s>");
//   // tokenize `prompt` with special-token parsing; the tokenizer adds the leading BOS.
//
// Families (names as llama.cpp's):
//   chatml              <|im_start|>role\n...<|im_end|>\n
//   llama2              [INST] ... [/INST] answer</s>   (system folded into the first turn + "\n")
//   llama2-sys          ... with <<SYS>>\n...\n<</SYS>>\n\n
//   llama2-sys-bos      ... and BOS written before every later [INST]
//   llama2-sys-strip    ... and every message stripped of surrounding whitespace
//   llama3              <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
//   mistral-v1          " [INST] ... [/INST] answer</s>"
//   mistral-v3          "[INST] ...[/INST] answer</s>" (answers trimmed)
//   mistral-v3-tekken   "[INST]...[/INST]answer</s>"
//   mistral-v7          [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] answer</s>
//   gemma               <start_of_turn>user\n...<end_of_turn>\n, assistant -> "model", trimmed;
//                       no system role: the system text + "\n\n" opens the next user turn
//   phi3                <|role|>\n...<|end|>\n
//
// BOS/EOS: the leading BOS is never written (the tokenizer adds it); BOS/EOS inside the
// conversation are written as text (`bos`, `eos` below), as the templates write bos_token and
// eos_token. Known differences from the models' own Jinja templates (as in llama.cpp):
// mistral-v3/-tekken put the system text in the first user turn (the Jinja puts it in the last);
// llama2-sys-bos/-strip write no space around answers; gemma folds with "\n\n" (llama.cpp's Jinja
// path uses "\n"); phi3-mini/-medium templates drop the system message, we keep it as <|system|>.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aigc {

enum class ChatTemplate {
  ChatTemplateChatml,
  ChatTemplateLlama2,
  ChatTemplateLlama2Sys,
  ChatTemplateLlama2SysBos,
  ChatTemplateLlama2SysStrip,
  ChatTemplateLlama3,
  ChatTemplateMistralV1,
  ChatTemplateMistralV3,
  ChatTemplateMistralV3Tekken,
  ChatTemplateMistralV7,
  ChatTemplateGemma,
  ChatTemplatePhi3,
};

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The family's name ("chatml", "llama3", ...).
std::string_view chat_template_name(ChatTemplate t);
// All supported names, comma separated (for help texts and errors).
std::string chat_template_names();
// The family with this name; nullopt when unknown.
std::optional<ChatTemplate> chat_template_from_name(std::string_view name);
// Recognises a Jinja template (or a bare family name) by its markers; nullopt when unknown.
std::optional<ChatTemplate> chat_template_detect(std::string_view jinja);
// `name` if not empty (must be a supported name), else detection of `jinja`. Throws aigc::Error
// listing the supported names when neither gives a family.
ChatTemplate chat_template_resolve(std::string_view name, std::string_view jinja);

// Renders the conversation. add_generation_prompt opens the assistant's turn where the family has
// a header for it (chatml, llama3, gemma, phi3; the [INST] families end ready for the answer).
// Throws aigc::Error on a role other than system/user/assistant.
std::string chat_template_render(ChatTemplate t, std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 std::string_view bos = "<s>", std::string_view eos = "</s>");

}  // namespace aigc
