// Vocab: validation, lookups, special-token partitioning, decode. The algorithms are in
// tokenizer_{spm,bpe,wpm}.cpp.
#include "text/vocab.h"

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "formats/gguf.h"
#include "text/unicode.h"

namespace aigc::text {

namespace {

const std::string space_marker = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xAB>" -> 0xAB; -1 when the text is not a byte token.
int byte_token_value(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int hi = hex_value(t[3]), lo = hex_value(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

Vocab::Vocab(VocabData data, std::string where) : data_(std::move(data)) {
  const size_t n = data_.tokens.size();
  if (n == 0) error_throw("vocabulary has no tokens", where, "is tokenizer.ggml.tokens present?");
  if (!data_.scores.empty() && data_.scores.size() != n) {
    error_throw(fmt::format("{} scores for {} tokens", data_.scores.size(), n), where,
                "tokenizer.ggml.scores must have one score per token");
  }
  if (!data_.types.empty() && data_.types.size() != n) {
    error_throw(fmt::format("{} token types for {} tokens", data_.types.size(), n), where,
                "tokenizer.ggml.token_type must have one type per token");
  }

  token_ids_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = data_.tokens[i];
    token_length_max_ = std::max(token_length_max_, t.size());
    if (t.empty()) continue;  // never matched; decodes to nothing
    auto [it, fresh] = token_ids_.emplace(t, static_cast<TokenId>(i));
    if (!fresh) {
      error_throw(fmt::format("duplicate token '{}' (ids {} and {})", t, it->second, i), where,
                  "the tokenizer.ggml.tokens list is corrupt");
    }
  }

  // Special ids outside the vocabulary are dropped, as llama.cpp does, with a warning.
  for (auto* id : {&data_.bos, &data_.eos, &data_.unk, &data_.sep, &data_.pad, &data_.cls, &data_.mask}) {
    if (*id != token_null && (*id < 0 || static_cast<size_t>(*id) >= n)) {
      log_warn("{}: special token id {} is outside the vocabulary ({} tokens); ignored", where, *id, n);
      *id = token_null;
    }
  }

  byte_tokens_.fill(token_null);
  for (int b = 0; b < 256; ++b) {
    TokenId id = token_null;
    if (data_.model == VocabModel::Bpe) {
      std::string s;
      utf8_append(s, byte_to_unicode(static_cast<uint8_t>(b)));
      id = token_find(s);
    } else {
      id = token_find(fmt::format("<0x{:02X}>", b));
      if (id == token_null) id = token_find(std::string(1, static_cast<char>(b)));
    }
    byte_tokens_[static_cast<size_t>(b)] = id;
  }

  if (data_.model == VocabModel::Bpe) {
    merge_ranks_.reserve(data_.merges.size());
    for (size_t r = 0; r < data_.merges.size(); ++r) {
      const std::string& m = data_.merges[r];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= m.size()) {
        error_throw(fmt::format("merge {} '{}' is not of the form 'left right'", r, m), where,
                    "tokenizer.ggml.merges is corrupt");
      }
      merge_ranks_.emplace(m, static_cast<int32_t>(r));  // the first of duplicate merges wins
    }
    pre_ = std::make_unique<PreTokenizer>(PreTokenizer::from_name(data_.pre));
  }
  if (data_.model == VocabModel::Wpm && data_.unk == token_null) {
    data_.unk = token_find("[UNK]");
    if (data_.unk == token_null) error_throw("WordPiece vocabulary has no [UNK] token", where);
  }

  for (size_t i = 0; i < n; ++i) {
    const std::string& t = data_.tokens[i];
    const TokenType type = token_type(static_cast<TokenId>(i));
    if (t.empty() || (type != TokenType::UserDefined && type != TokenType::Control)) continue;
    added_by_byte_[static_cast<uint8_t>(t[0])].push_back(static_cast<TokenId>(i));
  }
  for (auto& list : added_by_byte_) {
    std::sort(list.begin(), list.end(), [&](TokenId a, TokenId b) {
      const size_t la = data_.tokens[static_cast<size_t>(a)].size(), lb = data_.tokens[static_cast<size_t>(b)].size();
      return la != lb ? la > lb : a < b;
    });
  }
}

TokenType Vocab::token_type(TokenId id) const {
  return data_.types.empty() ? TokenType::Normal : data_.types.at(static_cast<size_t>(id));
}

float Vocab::token_score(TokenId id) const {
  return data_.scores.empty() ? 0.0f : data_.scores.at(static_cast<size_t>(id));
}

TokenId Vocab::token_find(std::string_view text) const {
  auto it = token_ids_.find(text);
  return it == token_ids_.end() ? token_null : it->second;
}

int32_t Vocab::merge_rank(std::string_view left, std::string_view right) const {
  // One reused key buffer per thread: this runs for every candidate pair while encoding.
  thread_local std::string key;
  key.assign(left);
  key += ' ';
  key.append(right);
  auto it = merge_ranks_.find(std::string_view(key));
  return it == merge_ranks_.end() ? -1 : it->second;
}

void Vocab::encode_text(std::string_view text, bool prev_special, std::vector<TokenId>& out) const {
  switch (data_.model) {
    case VocabModel::Spm: {
      std::string s;
      // Like SentencePiece: the text reads as if it followed a space (also after a special token).
      if (data_.add_space_prefix && prev_special) s = " ";
      s.append(text);
      replace_all(s, " ", space_marker);
      spm_encode(*this, s, out);
      break;
    }
    case VocabModel::Bpe: bpe_encode(*this, *pre_, text, out); break;
    case VocabModel::Wpm: wpm_encode(*this, text, out); break;
  }
}

std::vector<TokenId> Vocab::encode(std::string_view text, const EncodeOptions& opt) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  const bool wpm = data_.model == VocabModel::Wpm;
  if (opt.add_special) {
    const TokenId first = wpm ? (data_.cls != token_null ? data_.cls : data_.bos) : data_.bos;
    if ((wpm || data_.add_bos) && first != token_null) out.push_back(first);
  }

  // Added tokens are cut out of the text first, leftmost match first and the longest of those
  // (as Hugging Face's added-vocabulary matcher does); the text between them is tokenized.
  bool prev_special = true;
  size_t last = 0;
  for (size_t pos = 0; pos < text.size();) {
    TokenId hit = token_null;
    for (TokenId id : added_by_byte_[static_cast<uint8_t>(text[pos])]) {
      const std::string& t = data_.tokens[static_cast<size_t>(id)];
      if (!opt.parse_special && token_type(id) == TokenType::Control) continue;
      if (text.substr(pos, t.size()) == t) {
        hit = id;  // the longest, as the list is longest first
        break;
      }
    }
    if (hit == token_null) {
      ++pos;
      continue;
    }
    if (last < pos) encode_text(text.substr(last, pos - last), prev_special, out);
    out.push_back(hit);
    prev_special = true;
    pos += data_.tokens[static_cast<size_t>(hit)].size();
    last = pos;
  }
  if (last < text.size()) encode_text(text.substr(last), prev_special, out);

  if (opt.add_special) {
    if (wpm) {
      if (data_.sep != token_null) out.push_back(data_.sep);
    } else if (data_.add_eos && data_.eos != token_null) {
      out.push_back(data_.eos);
    }
  }
  return out;
}

std::string Vocab::token_to_piece(TokenId id, bool special) const {
  if (id < 0 || static_cast<size_t>(id) >= size()) {
    error_throw(fmt::format("token id {} is outside the vocabulary ({} tokens)", id, size()), "decode");
  }
  const std::string& text = data_.tokens[static_cast<size_t>(id)];
  switch (token_type(id)) {
    case TokenType::Control:
    case TokenType::Unknown: return special ? text : std::string();
    case TokenType::UserDefined: return text;
    case TokenType::Byte: {
      const int b = byte_token_value(text);
      return b < 0 ? text : std::string(1, static_cast<char>(b));
    }
    case TokenType::Normal: break;
    default: return std::string();  // unused / undefined: nothing, as llama.cpp
  }
  if (data_.model == VocabModel::Bpe) {
    std::string out;
    out.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      uint32_t cp;
      const size_t len = utf8_decode(text, pos, &cp);
      const int b = unicode_to_byte(cp);
      if (b >= 0) {
        out += static_cast<char>(b);
      } else {
        out.append(text, pos, len);  // not a byte-level character: keep it as written
      }
      pos += len;
    }
    return out;
  }
  std::string out = text;
  replace_all(out, space_marker, " ");
  return out;
}

std::string Vocab::decode(std::span<const TokenId> ids, const DecodeOptions& opt) const {
  std::string out;
  // The space SentencePiece added before the text (and WordPiece's word-start marker on the first
  // word) is not part of the text: drop it from the first piece that has text.
  bool strip_space = (data_.model == VocabModel::Spm && data_.add_space_prefix) || data_.model == VocabModel::Wpm;
  for (TokenId id : ids) {
    std::string piece = token_to_piece(id, opt.special);
    if (piece.empty()) continue;
    if (strip_space) {
      const TokenType t = token_type(id);
      if (t == TokenType::Normal && piece[0] == ' ') piece.erase(0, 1);
      if (t != TokenType::Control && t != TokenType::Unknown) strip_space = false;
    }
    out += piece;
  }
  return out;
}

namespace {

// Pre-tokenizers whose tokenizer.json sets "ignore_merges": a word that is a token is taken whole.
bool pre_ignores_merges(std::string_view pre) {
  for (std::string_view p : {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                             "lfm2", "tekken"}) {
    if (p == pre) return true;
  }
  return false;
}

}  // namespace

Vocab vocab_load_gguf(const GgufFile& file) {
  const std::string& where = file.path();
  const GgufValue* model_value = file.find("tokenizer.ggml.model");
  if (!model_value) {
    error_throw("file has no tokenizer (tokenizer.ggml.model is missing)", where,
                "give a GGUF model or vocab file that carries tokenizer metadata");
  }
  if (model_value->type() != GgufType::STRING) {
    error_throw(fmt::format("tokenizer.ggml.model has type {}, expected string", model_value->type_str()), where);
  }
  const std::string& model = model_value->as_string();

  VocabData d;
  if (model == "llama") {
    d.model = VocabModel::Spm;
    d.bos = 1, d.eos = 2, d.unk = 0;
    d.add_space_prefix = true;
    d.add_bos = true;
  } else if (model == "gpt2") {
    d.model = VocabModel::Bpe;
  } else if (model == "bert") {
    d.model = VocabModel::Wpm;
    d.bos = d.cls = 101, d.unk = 100, d.sep = 102, d.pad = 0, d.mask = 103;
  } else {
    error_throw(fmt::format("unsupported tokenizer model '{}'", model), where + ": tokenizer.ggml.model",
                "supported: llama (SentencePiece), gpt2 (byte-level BPE), bert (WordPiece)");
  }

  d.tokens = file.get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings();
  const size_t n = d.tokens.size();
  if (const GgufValue* v = file.find("tokenizer.ggml.scores")) {
    if (v->is_array() && v->array_type() == GgufType::FLOAT32) {
      d.scores = v->array_values<float>();
    } else if (v->is_array() && v->array_type() == GgufType::INT32) {
      for (int32_t s : v->array_values<int32_t>()) d.scores.push_back(static_cast<float>(s));
    } else {
      error_throw(fmt::format("tokenizer.ggml.scores has type {}, expected array<float32>", v->type_str()), where);
    }
    if (d.scores.size() < n) {
      error_throw(fmt::format("{} scores for {} tokens", d.scores.size(), n), where + ": tokenizer.ggml.scores");
    }
    d.scores.resize(n);
  }
  if (file.find("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> types =
        file.get_array("tokenizer.ggml.token_type", GgufType::INT32).array_values<int32_t>();
    if (types.size() < n) {
      error_throw(fmt::format("{} token types for {} tokens", types.size(), n), where + ": tokenizer.ggml.token_type");
    }
    d.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = types[i];
      d.types.push_back(t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::Undefined);
    }
  }
  if (d.model == VocabModel::Bpe) {
    if (const GgufValue* v = file.find("tokenizer.ggml.pre")) {
      if (v->type() != GgufType::STRING) error_throw("tokenizer.ggml.pre is not a string", where);
      d.pre = v->as_string();
    } else {
      log_warn("{}: no tokenizer.ggml.pre; using the default pre-tokenizer (quality may suffer)", where);
    }
    d.ignore_merges = pre_ignores_merges(d.pre);
    d.add_bos = d.ignore_merges;  // llama-3 style vocabularies start with BOS
    d.merges = file.get_array("tokenizer.ggml.merges", GgufType::STRING).array_strings();
  }

  const std::pair<const char*, TokenId*> ids[] = {
      {"tokenizer.ggml.bos_token_id", &d.bos},       {"tokenizer.ggml.eos_token_id", &d.eos},
      {"tokenizer.ggml.unknown_token_id", &d.unk},   {"tokenizer.ggml.seperator_token_id", &d.sep},
      {"tokenizer.ggml.padding_token_id", &d.pad},   {"tokenizer.ggml.cls_token_id", &d.cls},
      {"tokenizer.ggml.mask_token_id", &d.mask},
  };
  for (const auto& [key, id] : ids) {
    const GgufValue* v = file.find(key);
    if (!v) continue;
    const std::optional<uint64_t> u = v->to_uint();
    if (!u || *u >= n) {
      log_warn("{}: {} = {} is not a token id; ignored", where, key, v->to_string());
      continue;
    }
    *id = static_cast<TokenId>(*u);
  }
  const std::pair<const char*, bool*> flags[] = {
      {"tokenizer.ggml.add_space_prefix", &d.add_space_prefix},
      {"tokenizer.ggml.add_bos_token", &d.add_bos},
      {"tokenizer.ggml.add_eos_token", &d.add_eos},
  };
  for (const auto& [key, flag] : flags) {
    const GgufValue* v = file.find(key);
    if (!v) continue;
    if (v->type() != GgufType::BOOL) {
      error_throw(fmt::format("{} has type {}, expected bool", key, v->type_str()), where);
    }
    *flag = v->as<bool>();
  }
  return Vocab(std::move(d), where);
}

}  // namespace aigc::text
