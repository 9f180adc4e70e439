// llama2.c checkpoints (Karpathy's "legacy" run.c format) and tokenizer files, converted to GGUF the
// way llama.cpp's convert-llama2c-to-ggml writes them, so the Llama loader runs them unchanged.
//
//   GgufWriter w = llama2c_to_gguf("stories260K.bin", "tok512.bin");
//   w.write("stories260K.gguf");                  // or: aigc convert --llama2c M.bin --vocab T.bin -o M.gguf
//
// Checkpoint: 7 x int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
// a negative vocab_size means the classifier has its own weights at the end), then f32 arrays: token
// embedding [V, C], attention rms [L, C], wq [L, C, C], wk [L, KV, C], wv [L, KV, C], wo [L, C, C],
// ffn rms [L, C], w1 [L, F, C], w2 [L, C, F], w3 [L, F, C], final rms [C], legacy rope tables
// 2 x [seq_len, head_size/2] (skipped), classifier [V, C] when unshared. The file size must match.
// RoPE: run.c rotates adjacent pairs (2i, 2i+1) of the un-permuted weights, which is GGUF's
// "normal" llama rope, so Q and K are copied as they are.
// Tokenizer: int32 max_token_length, then per id: f32 score, int32 length, bytes.
// GGUF vocabulary, as llama.cpp's converter writes it: tokenizer.ggml.model "llama", tokens with ' '
// replaced by U+2581, id 0 "<unk>" (type 2 unknown), ids 1 "<s>" and 2 "</s>" (type 3 control),
// empty pieces control, "<0xXX>" pieces type 6 byte, the rest type 1 normal; scores as stored;
// bos 1, eos 2, unk 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace aigc {

struct Llama2cConfig {
  int64_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
};

struct Llama2cVocab {
  int32_t max_token_length = 0;
  std::vector<std::string> pieces;  // as stored (spaces, "\n<s>\n" for BOS)
  std::vector<float> scores;
};

// Reads and checks the header of a checkpoint's bytes; throws aigc::Error (with `name`) on a bad header.
Llama2cConfig llama2c_config_parse(std::span<const uint8_t> bytes, const std::string& name);
// Reads a tokenizer file holding `vocab_size` entries; throws aigc::Error when truncated or malformed.
Llama2cVocab llama2c_vocab_read(const std::string& path, int64_t vocab_size);
Llama2cVocab llama2c_vocab_parse(std::span<const uint8_t> bytes, int64_t vocab_size, const std::string& name);
// The GGUF the converter writes (tensors view the mapped checkpoint, kept alive by the writer).
GgufWriter llama2c_to_gguf(const std::string& model_path, const std::string& tokenizer_path);

}  // namespace aigc
