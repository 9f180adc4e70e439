// A1111 prompt weighting: "(word)", "[word]", "(word:1.5)", escapes and BREAK, parsed into text
// segments with weights, as AUTOMATIC1111's stable-diffusion-webui does (modules/prompt_parser.py,
// parse_prompt_attention):
//   (text)       weight x 1.1          ((text))  x 1.21 (brackets nest by multiplying)
//   [text]       weight / 1.1          (text:1.5) weight x 1.5 (any [+-]?[.0-9]+ number)
//   \( \) \[ \] \\   the literal character; a lone backslash is dropped
//   BREAK        (a whole word, upper case) ends the current 75-token chunk (clip_tokenizer.h)
// Unbalanced brackets as A1111: a ')' or ']' with no open bracket is plain text; a bracket left
// open at the end applies to everything after it. Adjacent segments of equal weight are merged.
//
//   prompt_weights_parse("an (important) word")
//     -> {"an ", 1.0}, {"important", 1.1}, {" word", 1.0}
//
// Where we differ from A1111, on purpose:
//  - BREAK is a segment of its own (is_break) that brackets do not touch; A1111 stores it as the
//    text "BREAK" with weight -1, so inside brackets, or next to another BREAK, it stops being a
//    break and becomes the word "break" with a negative weight.
//  - A weight that is not a number (e.g. "(a:1.2.3)") throws aigc::Error; A1111's float() raises.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace aigc::image {

struct PromptSegment {
  std::string text;
  double weight = 1.0;    // double, as Python computes it (merging compares weights exactly)
  bool is_break = false;  // BREAK: text is empty
};

// Never fails on any bytes except a malformed weight number (aigc::Error, see above). Invalid
// UTF-8 is passed through unchanged inside the segments' text.
std::vector<PromptSegment> prompt_weights_parse(std::string_view prompt);

}  // namespace aigc::image
