// libFuzzer target for the Stable Diffusion prompt path: A1111 prompt weights
// (image/prompt_weights.h) and CLIP tokenization (image/clip_tokenizer.h) on arbitrary bytes,
// invalid UTF-8 included. Every input either parses or throws aigc::Error (a malformed weight);
// then the invariants below must hold, else: trap. The CLIP vocabulary is a tiny one built here
// (byte tokens plus a few merges), so the target needs no files. Build and run: tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "image/clip_tokenizer.h"
#include "image/prompt_weights.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

const aigc::image::ClipTokenizer& tokenizer() {
  // Merges over ASCII letters, "</w>" ends and a multi-byte character (é = Ã ©), so BPE merges
  // really happen on fuzzed text.
  static const aigc::image::ClipTokenizer tok = aigc::image::ClipTokenizer::from_merges({
      {"a", "b</w>"}, {"c", "a"}, {"ca", "t</w>"}, {"a", "t</w>"}, {"t", "h"}, {"th", "e</w>"},
      {"i", "n"}, {"in", "g</w>"}, {"\xc3\x83", "\xc2\xa9</w>"}, {"\xc3\x83", "\xc2\xa9"}, {"e", "r"},
      {"er", "</w>"}, {",", "</w>"},
  });
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: options; the rest: the prompt.
  const uint8_t flags = data[0];
  const std::string_view prompt(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto& tok = tokenizer();

  // Prompt weights: segments' texts are pieces of the prompt (escapes drop bytes), never more.
  try {
    const auto segs = aigc::image::prompt_weights_parse(prompt);
    check(!segs.empty());
    size_t bytes = 0;
    for (const auto& s : segs) {
      bytes += s.text.size();
      check(!s.is_break || s.text.empty());
    }
    check(bytes <= prompt.size());
  } catch (const aigc::Error&) {
  }

  // Encode / decode: ids in range; decode of them works.
  const auto ids = tok.encode(prompt);
  for (auto id : ids) check(id >= 0 && static_cast<size_t>(id) < tok.size());
  const std::string text = tok.decode(ids);
  (void)aigc::image::html_unescape(prompt);

  // SD chunks: each 77 ids and weights, BOS first, an EOS, ids in range.
  aigc::image::SdTokenizeOptions opt;
  opt.pad_id = (flags & 1) ? 0 : -1;
  opt.comma_backtrack = (flags >> 1) & 31;
  opt.weighting = (flags & 64) == 0;
  try {
    const auto chunks = tok.tokenize_for_sd(prompt, opt);
    check(!chunks.empty());
    for (const auto& c : chunks) {
      check(c.ids.size() == aigc::image::clip_context && c.weights.size() == aigc::image::clip_context);
      check(c.ids[0] == tok.bos());
      bool eos = false;
      for (auto id : c.ids) {
        check(id >= 0 && static_cast<size_t>(id) < tok.size());
        eos = eos || id == tok.eos();
      }
      check(eos);
    }
  } catch (const aigc::Error&) {
  }
  return 0;
}
