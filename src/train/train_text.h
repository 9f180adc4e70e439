// `aigc train text`: a Llama-style GPT trained from scratch on a plain-text corpus, written as a
// GGUF that `aigc text` / `aigc chat` load unchanged (train/gpt.h).
//
// Data: the corpus is encoded with the tokenizer GGUF (from `aigc train tokenizer`); the last
// val_fraction of the tokens is held out for validation. Each step draws B windows of T+1 tokens
// at random offsets of the training part (the generator is seeded by seed and step, so a resumed
// run draws the same batches as an uninterrupted one).
// Checkpoints: OUT (the model, loadable by `aigc text`) and OUT.optim (AdamW moments, the step,
// the loss history), written every save_every steps and at the end; resume continues from them.
// Output: a progress bar on stderr (step, loss, tokens/s, ETA), validation loss every eval_every
// steps, and at the end a loss-curve PNG.
#pragma once

#include <cstdint>
#include <string>

#include "train/adamw.h"
#include "train/gpt.h"

namespace aigc::train {

struct TrainTextOptions {
  std::string corpus;      // UTF-8 text file
  std::string tokenizer;   // GGUF with tokenizer.ggml.* (a vocab-only file is fine)
  std::string out = "model.gguf";
  std::string curve;       // loss-curve PNG; empty: OUT with .png added
  GptConfig model;         // n_vocab is taken from the tokenizer
  int64_t batch = 8;       // B
  int64_t seq_len = 128;   // T (also the model's context length)
  int64_t steps = 1000;
  CosineSchedule lr{3e-3f, 3e-4f, 50, 1000};
  AdamWParams adamw;
  uint64_t seed = 1;
  double val_fraction = 0.05;
  int64_t eval_every = 100;
  int64_t eval_batches = 8;
  int64_t save_every = 500;
  bool resume = false;
  double max_seconds = 0;  // > 0: stop (and save) after this much training time
};

struct TrainTextResult {
  int64_t steps_done = 0;
  float train_loss = 0;  // mean of the last 10 steps
  float val_loss = 0;    // last validation
  double seconds = 0;
  double tokens_per_second = 0;
};

TrainTextResult train_text_run(const TrainTextOptions& o);

}  // namespace aigc::train
