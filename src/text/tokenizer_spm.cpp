// SentencePiece-style BPE ("llama" vocabularies): start from single characters and repeatedly merge
// the adjacent pair whose concatenation is the token with the highest score (ties: leftmost);
// what remains of characters that are not tokens is written as <0xXX> byte tokens.
#include <queue>

#include "text/unicode.h"
#include "text/vocab.h"

namespace aigc::text {

namespace {

struct Symbol {
  uint32_t start, len;  // bytes in the text
  int prev, next;       // neighbours in the chain, -1 at the ends
};

struct Bigram {
  float score;
  int left, right;
  uint32_t len;  // bytes of the merged text: a stale entry no longer matches its symbols
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);  // top: best score, leftmost
  }
};

}  // namespace

void spm_encode(const Vocab& vocab, std::string_view text, std::vector<TokenId>& out) {
  std::vector<Symbol> syms;
  syms.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    uint32_t cp;
    const size_t len = utf8_decode(text, pos, &cp);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), idx - 1,
                    pos + len == text.size() ? -1 : idx + 1});
    pos += len;
  }
  if (syms.empty()) return;

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const uint32_t len = syms[left].len + syms[right].len;
    const TokenId id = vocab.token_find(text.substr(syms[left].start, len));
    if (id == token_null) return;
    queue.push({vocab.token_score(id), left, right, len});
  };
  for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len || l.next != b.right) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int i = 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = text.substr(syms[i].start, syms[i].len);
    const TokenId id = vocab.token_find(piece);
    if (id != token_null) {
      out.push_back(id);
      continue;
    }
    for (unsigned char c : piece) {  // byte fallback
      const TokenId bt = vocab.byte_token(c);
      const TokenId use = bt != token_null ? bt : vocab.data().unk;
      if (use != token_null) out.push_back(use);
    }
  }
}

}  // namespace aigc::text
