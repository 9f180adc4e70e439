// TextModel / TextContext: what the generator and the text commands need from a decoder-only
// language model, whatever its architecture (Llama family, GPT-2, ...).
//
//   std::unique_ptr<TextModel> model = text_model_load("model.gguf");   // dispatches on
//                                                                       // general.architecture
//   std::unique_ptr<TextContext> ctx = model->context_create({.n_ctx = 256});
//   const Tensor& logits = ctx->eval(prompt_tokens);                   // [1, n_vocab]
//
// Virtual functions rather than std::variant: callers (TextGenerator, the CLI, later the server)
// stay unchanged when an architecture is added, and the cost is one indirect call per eval() --
// nothing next to a forward pass. Each architecture keeps its own concrete model and context
// types (LlamaModel/LlamaContext, Gpt2Model/Gpt2Context) for tests and tools that want their
// hyper-parameters and weights directly.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace aigc {

class GgufFile;

struct TextContextParams {
  int64_t n_ctx = 0;         // positions the cache holds; 0: the model's context_length (which
                             // can be 128K: pass n_ctx for large models, the cache grows with it)
  int64_t n_batch = 512;     // most tokens per forward pass (longer inputs run in chunks)
  int n_threads = 0;         // > 0: sets the engine's (process-wide) thread count on creation
  bool logits_all = false;   // eval returns logits of every input token, not just the last
  DType cache_type_k = DType::F32;  // KV cache element types: F32 or F16 (half the memory; keys and
  DType cache_type_v = DType::F32;  // values rounded to f16 as they are stored, as llama.cpp does)
};

// A model's running state: the KV cache and activation buffers of one sequence. The checks and the
// chunking of eval() are shared; an architecture supplies forward() for one chunk.
class TextContext {
 public:
  virtual ~TextContext() = default;
  // Appends `tokens` at positions n_past() .. n_past() + T - 1 and returns their logits:
  // [T, n_vocab] with logits_all (then T <= n_batch), else [1, n_vocab] for the last token. The
  // tensor lives in the context and is overwritten by the next eval. Throws aigc::Error for an
  // empty input, a token id outside [0, n_vocab), or a sequence that would pass n_ctx (nothing
  // is evaluated then).
  const Tensor& eval(std::span<const int32_t> tokens);
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  // Forgets the sequence (positions restart at 0); keeps all memory.
  void reset() { n_past_ = 0; }
  // Drops positions >= n (e.g. to rewind to a shared prompt prefix).
  void truncate(int64_t n);
  // Memory held, allocated once at construction: activation buffers and the KV cache.
  virtual size_t arena_bytes() const = 0;
  virtual size_t cache_bytes() const = 0;

 protected:
  TextContext(TextContextParams params, int64_t n_vocab, int64_t n_ctx)
      : params_(params), n_vocab_(n_vocab), n_ctx_(n_ctx), n_batch_(params.n_batch < n_ctx ? params.n_batch : n_ctx) {}

  // Runs tokens (at most n_batch_) at positions n_past_.., advances n_past_, and when
  // want_logits sets out_ to the logits eval() returns.
  virtual void forward(std::span<const int32_t> tokens, bool want_logits) = 0;

  TextContextParams params_;
  int64_t n_vocab_ = 0, n_ctx_ = 0, n_batch_ = 0, n_past_ = 0;
  Tensor out_;
};

class TextModel {
 public:
  virtual ~TextModel() = default;
  virtual const std::string& arch() const = 0;  // general.architecture
  virtual int64_t n_vocab() const = 0;
  virtual int64_t n_ctx_train() const = 0;      // context length the model was trained with
  virtual int64_t n_ctx_max() const = 0;        // most positions a context can hold (GPT-2: its
                                                // learned positions; Llama: 2^24)
  virtual int64_t n_layer() const = 0;
  virtual int64_t n_embd() const = 0;
  virtual const GgufFile& gguf() const = 0;     // metadata (tokenizer, chat template)
  // Weight bytes one decode step reads: every layer's matrices, biases and norms, the output
  // matrix and norm, one embedding row (and position row). What bounds generation speed.
  virtual uint64_t decode_bytes_per_token() const = 0;
  // From the first to the end of the last weight matrix a decode step reads in full, one run of
  // the file's data section: what a benchmark reads beside a decode run to see what the memory
  // gives for these bytes.
  virtual std::span<const uint8_t> decode_weights_span() const = 0;
  // The model must outlive the context.
  virtual std::unique_ptr<TextContext> context_create(TextContextParams params) const = 0;
};

// For the models' decode_* functions: the bytes of the defined, non-empty tensors among `ts`,
// and the run of memory from the first of them to the end of the last.
uint64_t tensors_nbytes(std::span<const Tensor* const> ts);
std::span<const uint8_t> tensors_extent(std::span<const Tensor* const> ts);

// Architectures text_model_load accepts, comma separated (for messages and --help).
const char* text_model_arch_names();

// Opens a GGUF model of any supported architecture; throws aigc::Error naming the file and the
// supported architectures for another one, or the loader's error for a damaged file.
std::unique_ptr<TextModel> text_model_load(const std::string& path, FileLoadOptions opt = {});

}  // namespace aigc
