// aigc train tokenizer | text | image, and aigc bench train.
//   aigc train tokenizer --corpus FILE --vocab-size N -o tokenizer.gguf
//   aigc train text --corpus FILE --tokenizer tokenizer.gguf -o model.gguf [sizes, steps, lr...]
//   aigc train image -o model.safetensors [--glyphs, --prediction epsilon|v, --ema DECAY, sizes, steps, lr...]
//   aigc bench train [--threads-list 1,2]: training speed of the GPT (tokens/s) and of the UNet
//     (ms per step), each a full step: forward, backward, AdamW
// The work is in src/train (bpe_trainer, train_text, train_image, gpt, unet_tiny); this file maps
// flags to options.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "train/bpe_trainer.h"
#include "train/ddpm.h"
#include "train/shapes_dataset.h"
#include "train/train_image.h"
#include "train/train_text.h"

namespace aigc::cli {

namespace {

struct TrainTokenizerArgs {
  std::string corpus, out = "tokenizer.gguf", pre = "gpt-2";
  int64_t vocab_size = 4096;
};

void train_tokenizer_run(const TrainTokenizerArgs& a) {
  std::ifstream f(a.corpus, std::ios::binary);
  if (!f) error_throw("cannot open the corpus", a.corpus, "check the path");
  std::ostringstream ss;
  ss << f.rdbuf();
  const auto t0 = std::chrono::steady_clock::now();
  const train::BpeTokenizer tok = train::bpe_train(ss.str(), {.vocab_size = a.vocab_size, .pre = a.pre});
  train::bpe_gguf_write(tok, a.out);
  std::fprintf(stderr, "wrote %s: %zu tokens (%zu merges, <|endoftext|> = %d) in %.1f s\n", a.out.c_str(),
               tok.tokens.size(), tok.merges.size(), tok.eos,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

struct BenchTrainArgs {
  train::GptConfig model{.n_vocab = 2048, .n_ctx = 128, .n_embd = 192, .n_layer = 4, .n_head = 6, .n_ff = 512};
  int64_t batch = 8, seq_len = 128, steps = 5;
  std::vector<int> threads;
  std::string which = "all";  // gpt | unet | all
  // The UNet of the built-in image model (scripts/train_image_default.sh), its batch.
  train::UnetConfig unet{.image = 32, .ch = 32, .groups = 8, .t_dim = 32, .text_vocab = 0, .text_len = 0,
                         .text_dim = 32, .heads = 4};
  int64_t unet_batch = 32;
};

// ms per UNet training step (forward, backward, AdamW) on a fixed batch of the shapes data set.
void bench_train_unet_run(const BenchTrainArgs& a, const std::vector<int>& threads) {
  train::UnetConfig cfg = a.unet;
  cfg.text_vocab = train::shapes_vocab_size();
  cfg.text_len = train::kShapesCaptionTokens;
  const std::vector<float> ac = train::ddpm_alphas_cumprod({});
  std::printf("| model | params | batch | threads | ms/step | images/s |\n|---|---|---|---|---|---|\n");
  for (int t : threads) {
    thread_count_set(t);
    train::UnetTrainer unet(cfg, a.unet_batch);
    unet.params_init(1);
    train::AdamW opt(unet.graph().params_flat().size());
    train::image_batch_fill(unet, a.unet_batch, 0, {}, ac);
    auto step = [&] {
      unet.forward_backward();
      opt.step(unet.graph().params_flat(), unet.graph().grads_flat(), 1e-4f);
    };
    step();  // warm-up: oneDNN primitives, pages
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < a.steps; ++s) step();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.steps;
    // channels per level: "c32" for the first version's graph, "c32/64/128" with levels 2
    std::string chans = fmt::format("c{}", cfg.ch);
    if (cfg.levels == 2 || train::unet_ch1(cfg) != cfg.ch) chans += fmt::format("/{}", train::unet_ch1(cfg));
    if (cfg.levels == 2) chans += fmt::format("/{}", train::unet_ch2(cfg));
    std::printf("| unet S%lld %s G%lld H%lld text%lld t%lld | %.3fM | %lld | %d | %.1f | %.1f |\n",
                static_cast<long long>(cfg.image), chans.c_str(), static_cast<long long>(cfg.groups),
                static_cast<long long>(cfg.heads), static_cast<long long>(cfg.text_dim), static_cast<long long>(cfg.t_dim),
                static_cast<double>(unet.graph().params_flat().size()) / 1e6, static_cast<long long>(a.unet_batch), t,
                sec * 1e3, static_cast<double>(a.unet_batch) / sec);
    std::fflush(stdout);
  }
}

void bench_train_gpt_run(const BenchTrainArgs& a, const std::vector<int>& threads) {
  train::GptConfig cfg = a.model;
  cfg.n_ctx = std::max(cfg.n_ctx, a.seq_len);
  std::printf("| model | params | B x T | threads | ms/step | tokens/s |\n|---|---|---|---|---|---|\n");
  for (int t : threads) {
    thread_count_set(t);
    train::GptTrainer gpt(cfg, a.batch, a.seq_len);
    gpt.init_random(1);
    train::AdamW opt(gpt.graph().params_flat().size());
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(cfg.n_vocab - 1));
    std::vector<int32_t> tokens(static_cast<size_t>(a.batch * (a.seq_len + 1)));
    for (int32_t& x : tokens) x = pick(rng);
    gpt.batch_set(tokens);
    gpt.forward_backward();  // warm-up: oneDNN primitives, pages
    opt.step(gpt.graph().params_flat(), gpt.graph().grads_flat(), 1e-4f);
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < a.steps; ++s) {
      gpt.batch_set(tokens);
      gpt.forward_backward();
      opt.step(gpt.graph().params_flat(), gpt.graph().grads_flat(), 1e-4f);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.steps;
    std::printf("| llama V%lld C%lld L%lld H%lld F%lld | %.2fM | %lld x %lld | %d | %.1f | %.0f |\n",
                static_cast<long long>(cfg.n_vocab), static_cast<long long>(cfg.n_embd),
                static_cast<long long>(cfg.n_layer), static_cast<long long>(cfg.n_head),
                static_cast<long long>(cfg.n_ff), gpt.param_count() / 1e6, static_cast<long long>(a.batch),
                static_cast<long long>(a.seq_len), t, sec * 1e3, static_cast<double>(a.batch * a.seq_len) / sec);
    std::fflush(stdout);
  }
}

void bench_train_run(const BenchTrainArgs& a) {
  std::vector<int> threads = a.threads;
  if (threads.empty()) threads.push_back(thread_count());
  for (int t : threads) AIGC_CHECK(t >= 1 && t <= 4096, "bench train: thread count {} is out of range", t);
  AIGC_CHECK(a.steps > 0 && a.unet_batch > 0, "bench train: --steps and --unet-batch must be positive");
  if (a.which != "unet") bench_train_gpt_run(a, threads);
  if (a.which == "all") std::printf("\n");
  if (a.which != "gpt") bench_train_unet_run(a, threads);
}

void model_options_add(CLI::App* cmd, train::GptConfig& m, int64_t& batch, int64_t& seq_len) {
  cmd->add_option("--embd", m.n_embd, "Embedding width")->capture_default_str();
  cmd->add_option("--layers", m.n_layer, "Transformer blocks")->capture_default_str();
  cmd->add_option("--heads", m.n_head, "Attention heads (head size = embd / heads, even)")->capture_default_str();
  cmd->add_option("--kv-heads", m.n_head_kv, "Key/value heads (0: = heads)")->capture_default_str();
  cmd->add_option("--ff", m.n_ff, "Feed-forward width")->capture_default_str();
  cmd->add_option("--batch", batch, "Sequences per step (B)")->capture_default_str();
  cmd->add_option("--ctx", seq_len, "Tokens per sequence (T; also the model's context length)")->capture_default_str();
}

// The options of a training loop that text and image share (the same member names in both).
template <class Options>
void loop_options_add(CLI::App* cmd, Options& o) {
  cmd->add_option("--steps", o.steps, "Optimiser steps in all")->capture_default_str();
  cmd->add_option("--lr", o.lr.lr_max, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o.lr.lr_min, "Final learning rate of the cosine decay")->capture_default_str();
  cmd->add_option("--warmup", o.lr.warmup, "Linear warm-up steps")->capture_default_str();
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay (matrices only)")
      ->capture_default_str();
  cmd->add_option("--clip", o.adamw.grad_clip, "Clip gradients to this global norm (0: off)")->capture_default_str();
  cmd->add_option("--seed", o.seed, "Seed of initialisation and batches")->capture_default_str();
  cmd->add_option("--eval-every", o.eval_every, "Validation every N steps")->capture_default_str();
  cmd->add_option("--eval-batches", o.eval_batches, "Batches per validation")->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Checkpoint every N steps")->capture_default_str();
  cmd->add_option("--curve", o.curve, "Loss-curve PNG (default: OUT.png)")->type_name("FILE");
  cmd->add_option("--max-seconds", o.max_seconds, "Stop and save after this much training time (0: no limit)")
      ->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from OUT and OUT.optim (same options, same or more --steps)");
}

void unet_options_add(CLI::App* cmd, train::UnetConfig& m, int64_t& batch, const std::string& prefix) {
  cmd->add_option("--" + prefix + "image", m.image, "Image side in pixels (even, >= 16)")->capture_default_str();
  cmd->add_option("--" + prefix + "ch", m.ch, "UNet channels at full resolution")->capture_default_str();
  cmd->add_option("--" + prefix + "levels", m.levels,
                  "Resolution steps down and up: 1 or 2 (2: --" + prefix + "image a multiple of 4)")
      ->capture_default_str();
  cmd->add_option("--" + prefix + "ch1", m.ch1, "UNet channels at 1/2 resolution (0: --" + prefix + "ch)")
      ->capture_default_str();
  cmd->add_option("--" + prefix + "ch2", m.ch2,
                  "UNet channels at 1/4 resolution, --" + prefix + "levels 2 only (0: --" + prefix + "ch1)")
      ->capture_default_str();
  cmd->add_option("--" + prefix + "groups", m.groups, "Group-norm groups (divide every channel count)")
      ->capture_default_str();
  cmd->add_option("--" + prefix + "heads", m.heads, "Attention heads (divide --" + prefix + "ch1 and --" + prefix + "ch2)")
      ->capture_default_str();
  cmd->add_option("--" + prefix + "text-dim", m.text_dim, "Caption embedding width")->capture_default_str();
  cmd->add_option("--" + prefix + "t-dim", m.t_dim, "Timestep embedding width (even)")->capture_default_str();
  cmd->add_option("--" + prefix + "batch", batch, "Images per step")->capture_default_str();
}

}  // namespace

void command_train_register(CLI::App& app) {
  auto* train_cmd = app.add_subcommand("train", "Train models from scratch: a BPE tokenizer, a text model, an image model");
  train_cmd->require_subcommand(1);
  train_cmd->fallthrough();

  auto* tk = train_cmd->add_subcommand("tokenizer", "Learn a byte-level BPE tokenizer from a text corpus (GGUF out)");
  tk->fallthrough();
  auto ta = std::make_shared<TrainTokenizerArgs>();
  tk->add_option("--corpus", ta->corpus, "UTF-8 text file")->required()->type_name("FILE");
  tk->add_option("-o,--output", ta->out, "Tokenizer GGUF to write")->capture_default_str()->type_name("FILE");
  tk->add_option("--vocab-size", ta->vocab_size, "Tokens in all (256 bytes + merges + <|endoftext|>)")
      ->capture_default_str();
  tk->add_option("--pre", ta->pre, "Pre-tokenizer (tokenizer.ggml.pre): gpt-2, llama-bpe, ...")->capture_default_str();
  tk->callback([ta]() { train_tokenizer_run(*ta); });

  auto* tx = train_cmd->add_subcommand(
      "text", "Train a Llama-style GPT from scratch on a text corpus; writes a GGUF that `aigc text` runs");
  tx->fallthrough();
  auto o = std::make_shared<train::TrainTextOptions>();
  o->model = train::GptConfig{.n_vocab = 0, .n_ctx = 128, .n_embd = 192, .n_layer = 4, .n_head = 6, .n_ff = 512};
  tx->add_option("--corpus", o->corpus, "UTF-8 text file")->required()->type_name("FILE");
  tx->add_option("--tokenizer", o->tokenizer, "Tokenizer GGUF (from `aigc train tokenizer`)")->required()->type_name("FILE");
  tx->add_option("-o,--output", o->out, "Model GGUF to write (and OUT.optim: optimiser state)")
      ->capture_default_str()->type_name("FILE");
  model_options_add(tx, o->model, o->batch, o->seq_len);
  tx->add_option("--val-fraction", o->val_fraction, "Held-out tail of the corpus for validation")->capture_default_str();
  loop_options_add(tx, *o);
  tx->callback([o]() {
    train::TrainTextOptions opt = *o;
    opt.lr.total = opt.steps;
    AIGC_CHECK(opt.eval_every > 0 && opt.save_every > 0 && opt.eval_batches > 0,
               "--eval-every, --save-every and --eval-batches must be positive");
    train::train_text_run(opt);
  });

  auto* im = train_cmd->add_subcommand(
      "image", "Train a text-conditioned pixel diffusion model (small UNet, DDPM) on the built-in captioned shapes "
               "data set; writes a .safetensors that `aigc image` runs");
  im->fallthrough();
  auto io = std::make_shared<train::TrainImageOptions>();
  im->add_option("-o,--output", io->out, "Model .safetensors to write (and OUT.optim: optimiser state)")
      ->capture_default_str()->type_name("FILE");
  unet_options_add(im, io->model, io->batch, "");
  im->add_flag("--glyphs", io->glyphs, "A quarter of the samples are digits and letters (needs fonts-dejavu-core)");
  im->add_option("--caption-dropout", io->caption_dropout,
                 "Probability of training on the empty caption (classifier-free guidance)")->capture_default_str();
  im->add_option("--beta-start", io->schedule.beta_start, "DDPM linear schedule: first beta")->capture_default_str();
  im->add_option("--beta-end", io->schedule.beta_end, "DDPM linear schedule: last beta")->capture_default_str();
  im->add_option("--timesteps", io->schedule.steps, "DDPM timesteps")->capture_default_str();
  im->add_option("--beta1", io->adamw.beta1, "AdamW beta1")->capture_default_str();
  im->add_option("--beta2", io->adamw.beta2, "AdamW beta2")->capture_default_str();
  auto prediction = std::make_shared<std::string>("epsilon");
  im->add_option("--prediction", *prediction,
                 "What the UNet learns to predict: epsilon (the noise) or v = sqrt(abar) eps - sqrt(1 - abar) x0 "
                 "(v-prediction); the checkpoint records it for `aigc image`")
      ->capture_default_str()
      ->check(CLI::IsMember({"epsilon", "v"}));
  im->add_option("--ema", io->ema,
                 "EMA decay of the weights, in [0, 1) (0: off; typical 0.999): after each step ema = d ema + (1 - d) "
                 "w with warm-up d = min(DECAY, (1 + step) / (10 + step)); OUT and the validation loss use the EMA "
                 "weights, OUT.optim keeps the raw ones")
      ->capture_default_str();
  loop_options_add(im, *io);
  im->callback([io, prediction]() {
    train::TrainImageOptions opt = *io;
    opt.prediction = *prediction == "v" ? train::DiffusionTarget::V : train::DiffusionTarget::Epsilon;
    opt.lr.total = opt.steps;
    train::train_image_run(opt);
  });

  // `aigc bench train` joins the bench command (registered before this one in main.cpp).
  CLI::App* bench = nullptr;
  for (CLI::App* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "bench"; })) bench = sub;
  if (bench) {
    auto* bt = bench->add_subcommand(
        "train", "Training speed of the GPT (tokens/s) and the image UNet (ms/step): a full step (forward, backward, "
        "AdamW), per thread count");
    bt->fallthrough();
    auto ba = std::make_shared<BenchTrainArgs>();
    model_options_add(bt, ba->model, ba->batch, ba->seq_len);
    bt->add_option("--vocab", ba->model.n_vocab, "Vocabulary size")->capture_default_str();
    bt->add_option("--steps", ba->steps, "Timed steps per thread count")->capture_default_str();
    bt->add_option("--threads-list", ba->threads, "Thread counts, e.g. 1,2 (default: the global -t)")
        ->delimiter(',')
        ->type_name("N,N,...");
    bt->add_option("--model", ba->which, "What to time: gpt, unet or all")
        ->capture_default_str()
        ->check(CLI::IsMember({"gpt", "unet", "all"}));
    unet_options_add(bt, ba->unet, ba->unet_batch, "unet-");
    bt->callback([ba]() { bench_train_run(*ba); });
  }
}

}  // namespace aigc::cli
