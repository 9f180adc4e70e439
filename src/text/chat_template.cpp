// Chat template families: detection by markers and rendering; see chat_template.h.
#include "text/chat_template.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace aigc {

namespace {

constexpr std::array<std::pair<ChatTemplate, std::string_view>, 12> kNames = {{
    {ChatTemplate::ChatTemplateChatml, "chatml"},
    {ChatTemplate::ChatTemplateLlama2, "llama2"},
    {ChatTemplate::ChatTemplateLlama2Sys, "llama2-sys"},
    {ChatTemplate::ChatTemplateLlama2SysBos, "llama2-sys-bos"},
    {ChatTemplate::ChatTemplateLlama2SysStrip, "llama2-sys-strip"},
    {ChatTemplate::ChatTemplateLlama3, "llama3"},
    {ChatTemplate::ChatTemplateMistralV1, "mistral-v1"},
    {ChatTemplate::ChatTemplateMistralV3, "mistral-v3"},
    {ChatTemplate::ChatTemplateMistralV3Tekken, "mistral-v3-tekken"},
    {ChatTemplate::ChatTemplateMistralV7, "mistral-v7"},
    {ChatTemplate::ChatTemplateGemma, "gemma"},
    {ChatTemplate::ChatTemplatePhi3, "phi3"},
}};

std::string_view trim(std::string_view s) {
  constexpr std::string_view ws = " \t\n\v\f\r";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

enum class Role { System, User, Assistant };

Role role_of(const ChatMessage& m) {
  if (m.role == "system") return Role::System;
  if (m.role == "user") return Role::User;
  if (m.role == "assistant") return Role::Assistant;
  error_throw(fmt::format("unsupported chat role '{}'", m.role), "chat_template_render",
              "roles are system, user and assistant");
}

// "<tag>role<tag>content<end>" families that write every role by name.
void render_headed(std::string& out, std::span<const ChatMessage> msgs, std::string_view open,
                   std::string_view after_role, std::string_view close, bool trimmed) {
  for (const ChatMessage& m : msgs) {
    role_of(m);
    out.append(open).append(m.role).append(after_role);
    out.append(trimmed ? trim(m.content) : std::string_view(m.content)).append(close);
  }
}

// [INST] families of Llama 2: the first "[INST] " is opened before any message; the system text
// sits inside the first turn; a turn closes with the answer and its EOS.
void render_llama2(std::string& out, std::span<const ChatMessage> msgs, bool system_block, bool bos_in_history,
                   bool strip, std::string_view bos, std::string_view eos) {
  out += "[INST] ";
  bool in_turn = true;
  for (const ChatMessage& m : msgs) {
    const Role r = role_of(m);
    const std::string_view c = strip ? trim(m.content) : std::string_view(m.content);
    if (!in_turn) {
      if (bos_in_history) out += bos;
      out += "[INST] ";
      in_turn = true;
    }
    if (r == Role::System) {
      if (system_block)
        out.append("<<SYS>>\n").append(c).append("\n<</SYS>>\n\n");
      else
        out.append(c).append("\n");
    } else if (r == Role::User) {
      out.append(c).append(" [/INST]");
    } else {
      out.append(c).append(eos);
      in_turn = false;
    }
  }
}

// Mistral v1 / v3 / v3-tekken: the same turn shape with different spaces.
void render_mistral(std::string& out, std::span<const ChatMessage> msgs, std::string_view lead,
                    std::string_view trail, bool trim_answers, std::string_view eos) {
  bool in_turn = false;
  for (const ChatMessage& m : msgs) {
    const Role r = role_of(m);
    if (!in_turn) {
      out.append(lead).append("[INST]").append(trail);
      in_turn = true;
    }
    if (r == Role::System) {
      out.append(m.content).append("\n\n");
    } else if (r == Role::User) {
      out.append(m.content).append(lead).append("[/INST]");
    } else {
      out.append(trail).append(trim_answers ? trim(m.content) : std::string_view(m.content)).append(eos);
      in_turn = false;
    }
  }
}

void render_mistral_v7(std::string& out, std::span<const ChatMessage> msgs, std::string_view eos) {
  for (const ChatMessage& m : msgs) {
    switch (role_of(m)) {
      case Role::System: out.append("[SYSTEM_PROMPT] ").append(m.content).append("[/SYSTEM_PROMPT]"); break;
      case Role::User: out.append("[INST] ").append(m.content).append("[/INST]"); break;
      case Role::Assistant: out.append(" ").append(m.content).append(eos); break;
    }
  }
}

// Gemma has no system role: the system text opens the next user turn.
void render_gemma(std::string& out, std::span<const ChatMessage> msgs, bool add_generation_prompt) {
  std::string system;
  for (const ChatMessage& m : msgs) {
    const Role r = role_of(m);
    if (r == Role::System) {
      system.append(trim(m.content)).append("\n\n");
      continue;
    }
    out.append("<start_of_turn>").append(r == Role::User ? "user" : "model").append("\n");
    if (r == Role::User) {
      out += system;
      system.clear();
    }
    out.append(trim(m.content)).append("<end_of_turn>\n");
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
}

}  // namespace

std::string_view chat_template_name(ChatTemplate t) {
  for (const auto& [k, name] : kNames)
    if (k == t) return name;
  AIGC_ASSERT(false, "chat template {} has no name", static_cast<int>(t));
  return {};
}

std::string chat_template_names() {
  std::string s;
  for (const auto& [k, name] : kNames) s.append(s.empty() ? "" : ", ").append(name);
  return s;
}

std::optional<ChatTemplate> chat_template_from_name(std::string_view name) {
  for (const auto& [k, n] : kNames)
    if (n == name) return k;
  return std::nullopt;
}

std::optional<ChatTemplate> chat_template_detect(std::string_view jinja) {
  if (auto named = chat_template_from_name(jinja)) return named;
  auto has = [&](std::string_view marker) { return jinja.find(marker) != std::string_view::npos; };
  using T = ChatTemplate;
  if (has("<|im_start|>")) {
    // phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) reuse the tag but are not chatml.
    if (has("<|im_sep|>") || has("<end_of_utterance>")) return std::nullopt;
    return T::ChatTemplateChatml;
  }
  if (jinja.starts_with("mistral") || has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) return T::ChatTemplateMistralV7;
    // Mistral's own v1/v3 templates: v1 puts the system message after ' [INST] '; v3 and
    // v3-tekken are the ones with tool blocks; tekken writes "[INST]" with no space.
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return T::ChatTemplateMistralV1;
      if (has("\"[INST]\"")) return T::ChatTemplateMistralV3Tekken;
      return T::ChatTemplateMistralV3;
    }
    // Llama 2 and its fine-tunes: the variant from what the template does with its content.
    if (has("content.strip()")) return T::ChatTemplateLlama2SysStrip;
    if (has("bos_token + '[INST]")) return T::ChatTemplateLlama2SysBos;
    if (has("<<SYS>>")) return T::ChatTemplateLlama2Sys;
    return T::ChatTemplateLlama2;
  }
  if (has("<|assistant|>") && has("<|end|>")) return T::ChatTemplatePhi3;
  if (has("<start_of_turn>")) return T::ChatTemplateGemma;
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return T::ChatTemplateLlama3;
  return std::nullopt;
}

ChatTemplate chat_template_resolve(std::string_view name, std::string_view jinja) {
  if (!name.empty()) {
    if (auto t = chat_template_from_name(name)) return *t;
    error_throw(fmt::format("unknown chat template '{}'", name), "--chat-template",
                "supported: " + chat_template_names());
  }
  if (jinja.empty())
    error_throw("the model has no chat template (tokenizer.chat_template)", "chat template",
                "pass --chat-template NAME, one of: " + chat_template_names());
  if (auto t = chat_template_detect(jinja)) return *t;
  error_throw("the model's chat template is not one aigc recognises", "tokenizer.chat_template",
              "pass --chat-template NAME, one of: " + chat_template_names());
}

std::string chat_template_render(ChatTemplate t, std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 std::string_view bos, std::string_view eos) {
  std::string out;
  using T = ChatTemplate;
  switch (t) {
    case T::ChatTemplateChatml:
      render_headed(out, messages, "<|im_start|>", "\n", "<|im_end|>\n", false);
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case T::ChatTemplateLlama3:
      render_headed(out, messages, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true);
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case T::ChatTemplatePhi3:
      render_headed(out, messages, "<|", "|>\n", "<|end|>\n", false);
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    case T::ChatTemplateLlama2: render_llama2(out, messages, false, false, false, bos, eos); break;
    case T::ChatTemplateLlama2Sys: render_llama2(out, messages, true, false, false, bos, eos); break;
    case T::ChatTemplateLlama2SysBos: render_llama2(out, messages, true, true, false, bos, eos); break;
    case T::ChatTemplateLlama2SysStrip: render_llama2(out, messages, true, false, true, bos, eos); break;
    case T::ChatTemplateMistralV1: render_mistral(out, messages, " ", " ", false, eos); break;
    case T::ChatTemplateMistralV3: render_mistral(out, messages, "", " ", true, eos); break;
    case T::ChatTemplateMistralV3Tekken: render_mistral(out, messages, "", "", false, eos); break;
    case T::ChatTemplateMistralV7: render_mistral_v7(out, messages, eos); break;
    case T::ChatTemplateGemma: render_gemma(out, messages, add_generation_prompt); break;
  }
  return out;
}

}  // namespace aigc
