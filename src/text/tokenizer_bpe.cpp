// Byte-level BPE ("gpt2" vocabularies): pre-tokenize into words; write each word's bytes as GPT-2's
// printable characters; merge adjacent symbols by merge rank (lowest first, ties leftmost) until no
// ranked pair is left. Work per word is O(w log w); words are short, so the text costs O(n log w).
#include <queue>

#include "text/unicode.h"
#include "text/vocab.h"

namespace aigc::text {

namespace {

struct Symbol {
  uint32_t start, len;  // bytes in the byte-level word
  int prev, next;
};

struct Bigram {
  int32_t rank;
  int left, right;
  uint32_t left_len, right_len;  // a stale entry no longer matches its symbols
};

struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);  // top: lowest rank, leftmost
  }
};

void word_encode(const Vocab& vocab, std::string_view word, std::vector<Symbol>& syms, std::vector<TokenId>& out) {
  syms.clear();
  for (size_t pos = 0; pos < word.size();) {
    uint32_t cp;
    const size_t len = utf8_decode(word, pos, &cp);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), idx - 1,
                    pos + len == word.size() ? -1 : idx + 1});
    pos += len;
  }
  if (syms.empty()) return;

  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
  auto text_of = [&](int i) { return word.substr(syms[i].start, syms[i].len); };
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int32_t rank = vocab.merge_rank(text_of(left), text_of(right));
    if (rank < 0) return;
    queue.push({rank, left, right, syms[left].len, syms[right].len});
  };
  for (int i = 1; i < static_cast<int>(syms.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.len != b.left_len || r.len != b.right_len || l.next != b.right) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int i = 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = text_of(i);
    const TokenId id = vocab.token_find(piece);
    if (id != token_null) {
      out.push_back(id);
      continue;
    }
    // A merge produced text that is not a token (a malformed vocabulary): fall back to one token
    // per character, and [UNK] (if any) for characters that are not tokens either.
    for (size_t pos = 0; pos < piece.size();) {
      uint32_t cp;
      const size_t len = utf8_decode(piece, pos, &cp);
      TokenId c = vocab.token_find(piece.substr(pos, len));
      if (c == token_null) c = vocab.data().unk;
      if (c != token_null) out.push_back(c);
      pos += len;
    }
  }
}

}  // namespace

void bpe_encode(const Vocab& vocab, const PreTokenizer& pre, std::string_view text, std::vector<TokenId>& out) {
  std::string word;
  std::vector<Symbol> syms;
  for (std::string_view piece : pre.split(text)) {
    word.clear();
    for (unsigned char c : piece) utf8_append(word, byte_to_unicode(c));
    if (vocab.data().ignore_merges) {
      const TokenId id = vocab.token_find(word);
      if (id != token_null) {
        out.push_back(id);
        continue;
      }
    }
    word_encode(vocab, word, syms, out);
  }
}

}  // namespace aigc::text
