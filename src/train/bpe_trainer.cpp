// Byte-level BPE training (see bpe_trainer.h).
#include "train/bpe_trainer.h"

#include <queue>
#include <unordered_map>

#include "text/pretokenize.h"
#include "text/unicode.h"

namespace aigc::train {

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

struct HeapItem {
  int64_t count;
  uint64_t pair;
  bool operator<(const HeapItem& o) const {  // max-heap on count, then the smaller pair first
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

}  // namespace

BpeTokenizer bpe_train(std::string_view text, const BpeTrainParams& p) {
  const char* special = "<|endoftext|>";
  AIGC_CHECK(p.vocab_size >= 257, "bpe: vocab size {} must be at least 257 (256 bytes + <|endoftext|>)", p.vocab_size);
  const text::PreTokenizer pre = text::PreTokenizer::from_name(p.pre);
  BpeTokenizer tok;
  tok.pre = p.pre;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    text::utf8_append(s, text::byte_to_unicode(static_cast<uint8_t>(b)));
    tok.tokens.push_back(s);
    tok.types.push_back(1);
  }
  std::unordered_map<std::string, int32_t> token_id;
  for (int32_t i = 0; i < 256; ++i) token_id[tok.tokens[static_cast<size_t>(i)]] = i;

  // Distinct words and their counts. Lines are split first (the pre-tokenizer would keep
  // newlines with the next word anyway; this bounds the work per split call).
  std::unordered_map<std::string, int64_t> word_count;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string_view::npos ? text.size() : end + 1;
    for (std::string_view w : pre.split(text.substr(pos, end - pos))) ++word_count[std::string(w)];
    pos = end;
  }
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  words.reserve(word_count.size());
  for (const auto& [w, c] : word_count) {
    std::vector<int32_t> sym;
    for (unsigned char ch : w) sym.push_back(ch);
    words.push_back(std::move(sym));
    freq.push_back(c);
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> pair_words;
  auto pairs_add = [&](int32_t wi, int64_t sign) {
    const std::vector<int32_t>& s = words[static_cast<size_t>(wi)];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += sign * freq[static_cast<size_t>(wi)];
      if (sign > 0) pair_words[k].push_back(wi);
    }
  };
  for (int32_t wi = 0; wi < static_cast<int32_t>(words.size()); ++wi) pairs_add(wi, +1);
  std::priority_queue<HeapItem> heap;
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  const int64_t n_merges = p.vocab_size - 256 - 1;
  std::vector<int64_t> seen(words.size(), -1);
  for (int64_t m = 0; m < n_merges && !heap.empty();) {
    const HeapItem top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    if (it == pair_count.end() || it->second != top.count) continue;  // stale entry
    if (top.count < p.min_pair_count) break;
    const int32_t a = static_cast<int32_t>(top.pair >> 32), b = static_cast<int32_t>(top.pair & 0xffffffffu);
    const std::string merged = tok.tokens[static_cast<size_t>(a)] + tok.tokens[static_cast<size_t>(b)];
    int32_t id;
    if (auto f = token_id.find(merged); f != token_id.end()) {
      id = f->second;  // the same string reached by another merge path
    } else {
      id = static_cast<int32_t>(tok.tokens.size());
      tok.tokens.push_back(merged);
      tok.types.push_back(1);
      token_id[merged] = id;
    }
    tok.merges.push_back(tok.tokens[static_cast<size_t>(a)] + " " + tok.tokens[static_cast<size_t>(b)]);
    ++m;
    std::vector<int32_t> affected = std::move(pair_words[top.pair]);
    pair_words.erase(top.pair);
    for (int32_t wi : affected) {
      if (seen[static_cast<size_t>(wi)] == m) continue;
      seen[static_cast<size_t>(wi)] = m;
      std::vector<int32_t>& s = words[static_cast<size_t>(wi)];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size(); ++i) has |= s[i] == a && s[i + 1] == b;
      if (!has) continue;
      pairs_add(wi, -1);
      std::vector<int32_t> out;
      out.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(s[i]);
        }
      }
      s = std::move(out);
      pairs_add(wi, +1);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        heap.push({pair_count[k], k});
      }
    }
    pair_count.erase(top.pair);
    if (tok.tokens.size() + 1 >= static_cast<size_t>(p.vocab_size)) break;
  }
  tok.eos = static_cast<int32_t>(tok.tokens.size());
  tok.tokens.push_back(special);
  tok.types.push_back(3);
  return tok;
}

std::vector<GgufKV> bpe_gguf_kvs(const BpeTokenizer& tok) {
  return {
      {"tokenizer.ggml.model", "gpt2"},
      {"tokenizer.ggml.pre", tok.pre},
      {"tokenizer.ggml.tokens", GgufValue::array(tok.tokens)},
      {"tokenizer.ggml.token_type", GgufValue::array(tok.types)},
      {"tokenizer.ggml.merges", GgufValue::array(tok.merges)},
      {"tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.eos)},
      {"tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos)},
      {"tokenizer.ggml.add_bos_token", false},
  };
}

void bpe_gguf_write(const BpeTokenizer& tok, const std::string& path) {
  GgufWriter w;
  w.metadata_add("general.name", "aigc bpe tokenizer");
  for (GgufKV& kv : bpe_gguf_kvs(tok)) w.metadata_add(kv.key, kv.value);
  w.write(path);
}

}  // namespace aigc::train
