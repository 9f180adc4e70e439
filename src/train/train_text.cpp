// The text training loop (see train_text.h).
#include "train/train_text.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/log.h"
#include "formats/gguf.h"
#include "text/vocab.h"
#include "train/loss_curve.h"
#include "train/train_loop.h"
#include "train/train_progress.h"

namespace aigc::train {

namespace {

std::string file_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) error_throw("cannot open the corpus", path, "check the path");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Encodes line by line (each line keeps its '\n'): the pre-tokenizer never sees a huge piece.
std::vector<int32_t> corpus_encode(const text::Vocab& vocab, const std::string& text) {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    for (int32_t id : vocab.encode(std::string_view(text).substr(pos, end - pos))) out.push_back(id);
    pos = end;
  }
  return out;
}

void batch_draw(std::span<const int32_t> tokens, int64_t B, int64_t T, std::mt19937_64& rng, std::vector<int32_t>& out) {
  std::uniform_int_distribution<int64_t> pick(0, static_cast<int64_t>(tokens.size()) - T - 1);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t o = pick(rng);
    std::copy(tokens.begin() + o, tokens.begin() + o + T + 1, out.begin() + b * (T + 1));
  }
}

// Mean loss over fixed windows of the held-out part (evenly spaced, the same every time).
float val_loss_eval(GptTrainer& gpt, std::span<const int32_t> val, int64_t n_batches, std::vector<int32_t>& buf) {
  const int64_t B = gpt.batch(), T = gpt.seq_len();
  const int64_t windows = B * n_batches;
  const int64_t stride = std::max<int64_t>(1, (static_cast<int64_t>(val.size()) - T - 1) / windows);
  double total = 0;
  for (int64_t nb = 0; nb < n_batches; ++nb) {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t o = std::min<int64_t>((nb * B + b) * stride, static_cast<int64_t>(val.size()) - T - 1);
      std::copy(val.begin() + o, val.begin() + o + T + 1, buf.begin() + b * (T + 1));
    }
    gpt.batch_set(buf);
    total += gpt.forward();
  }
  return static_cast<float>(total / static_cast<double>(n_batches));
}

void optim_save(const std::string& path, AdamW& opt, int64_t step, uint64_t seed,
                const std::vector<LossPoint>& train, const std::vector<LossPoint>& val) {
  GgufWriter w;
  w.metadata_add("general.name", "aigc train text optimiser state");
  w.metadata_add("train.step", static_cast<uint64_t>(step));
  w.metadata_add("train.adam_t", static_cast<uint64_t>(opt.t()));
  w.metadata_add("train.seed", static_cast<uint64_t>(seed));
  std::vector<int64_t> ts, vs;
  std::vector<float> tl, vl;
  for (const LossPoint& p : train) { ts.push_back(p.step); tl.push_back(p.loss); }
  for (const LossPoint& p : val) { vs.push_back(p.step); vl.push_back(p.loss); }
  w.metadata_add("train.loss_steps", GgufValue::array(ts));
  w.metadata_add("train.loss", GgufValue::array(tl));
  w.metadata_add("train.val_steps", GgufValue::array(vs));
  w.metadata_add("train.val_loss", GgufValue::array(vl));
  const std::array<int64_t, 1> n{static_cast<int64_t>(opt.m().size())};
  w.tensor_add("adam.m", Tensor::view_of(DType::F32, n, opt.m().data()));
  w.tensor_add("adam.v", Tensor::view_of(DType::F32, n, opt.v().data()));
  w.write(path);
}

}  // namespace

TrainTextResult train_text_run(const TrainTextOptions& o) {
  AIGC_CHECK(o.steps > 0 && o.batch > 0 && o.seq_len > 1, "train text: steps, batch and seq-len must be positive");
  AIGC_CHECK(o.val_fraction > 0 && o.val_fraction < 0.5, "train text: --val-fraction {} must be in (0, 0.5)",
             o.val_fraction);
  const GgufFile tok_file = GgufFile::open(o.tokenizer);
  const text::Vocab vocab = text::vocab_load_gguf(tok_file);
  std::vector<GgufKV> tok_kvs;
  for (const GgufKV& kv : tok_file.metadata())
    if (kv.key.rfind("tokenizer.", 0) == 0) tok_kvs.push_back(kv);

  const auto t_enc = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = corpus_encode(vocab, file_read(o.corpus));
  const int64_t n_val = static_cast<int64_t>(static_cast<double>(tokens.size()) * o.val_fraction);
  const int64_t n_train = static_cast<int64_t>(tokens.size()) - n_val;
  AIGC_CHECK(n_val > o.seq_len + 1 && n_train > o.seq_len + 1,
             "train text: the corpus has {} tokens, too few for windows of {} (+1) in both splits", tokens.size(),
             o.seq_len);
  const std::span<const int32_t> train_tok(tokens.data(), static_cast<size_t>(n_train));
  const std::span<const int32_t> val_tok(tokens.data() + n_train, static_cast<size_t>(n_val));
  std::fprintf(stderr, "corpus: %zu tokens (%lld train, %lld validation), encoded in %.1f s\n", tokens.size(),
               static_cast<long long>(n_train), static_cast<long long>(n_val),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t_enc).count());

  GptConfig cfg = o.model;
  cfg.n_vocab = static_cast<int64_t>(vocab.size());
  cfg.n_ctx = std::max(cfg.n_ctx, o.seq_len);
  const std::string optim_path = o.out + ".optim";
  GptTrainer gpt(cfg, o.batch, o.seq_len);
  AdamW opt(gpt.graph().params_flat().size(), o.adamw);
  opt.decay_mask_set(gpt.decay_mask());
  int64_t step0 = 0;
  std::vector<LossPoint> train_curve, val_curve;
  if (o.resume) {
    const GgufFile model_file = GgufFile::open(o.out);
    gpt.load(model_file);
    const GgufFile st = GgufFile::open(optim_path);
    step0 = static_cast<int64_t>(st.get_uint("train.step"));
    opt.t_set(static_cast<int64_t>(st.get_uint("train.adam_t")));
    const Tensor m = st.tensor("adam.m"), v = st.tensor("adam.v");
    AIGC_CHECK(m.numel() == static_cast<int64_t>(opt.m().size()) && v.numel() == m.numel(),
               "train text: {} holds moments for {} parameters, the model has {}", optim_path, m.numel(),
               opt.m().size());
    std::copy(m.ptr<float>(), m.ptr<float>() + m.numel(), opt.m().begin());
    std::copy(v.ptr<float>(), v.ptr<float>() + v.numel(), opt.v().begin());
    const auto ts = st.get("train.loss_steps").array_values<int64_t>();
    const auto tl = st.get("train.loss").array_values<float>();
    const auto vs = st.get("train.val_steps").array_values<int64_t>();
    const auto vl = st.get("train.val_loss").array_values<float>();
    for (size_t i = 0; i < std::min(ts.size(), tl.size()); ++i) train_curve.push_back({ts[i], tl[i]});
    for (size_t i = 0; i < std::min(vs.size(), vl.size()); ++i) val_curve.push_back({vs[i], vl[i]});
    if (step0 >= o.steps)
      error_throw(fmt::format("the checkpoint is already at step {} of --steps {}", step0, o.steps), o.out,
                  "raise --steps to train further");
    std::fprintf(stderr, "resuming %s at step %lld\n", o.out.c_str(), static_cast<long long>(step0));
  } else {
    gpt.init_random(o.seed);
  }
  std::fprintf(stderr, "model: %lld parameters (vocab %lld, embd %lld, layers %lld, heads %lld, ff %lld), batch %lld x %lld\n",
               static_cast<long long>(gpt.param_count()), static_cast<long long>(cfg.n_vocab),
               static_cast<long long>(cfg.n_embd), static_cast<long long>(cfg.n_layer),
               static_cast<long long>(cfg.n_head), static_cast<long long>(cfg.n_ff), static_cast<long long>(o.batch),
               static_cast<long long>(o.seq_len));

  auto save = [&](int64_t step, double /*train_seconds*/) {
    gpt.save(o.out, tok_kvs, "aigc gpt (trained by aigc train text)");
    optim_save(optim_path, opt, step, o.seed, train_curve, val_curve);
  };

  std::vector<int32_t> buf(static_cast<size_t>(o.batch * (o.seq_len + 1)));
  const int64_t tokens_per_step = o.batch * o.seq_len;
  TrainLoopOptions lo;
  lo.command = "aigc train text";
  lo.step0 = step0, lo.steps = o.steps, lo.eval_every = o.eval_every, lo.save_every = o.save_every;
  lo.max_seconds = o.max_seconds;
  lo.items_per_step = tokens_per_step, lo.rate_unit = "tok/s", lo.rate_decimals = 0;
  lo.progress_window = 1, lo.result_window = 10;
  lo.curve_path = o.curve.empty() ? o.out + ".png" : o.curve, lo.curve_smooth = 10;
  TrainLoopCallbacks cb;
  cb.step = [&](int64_t step) {
    std::mt19937_64 rng(o.seed * 1000003ull + static_cast<uint64_t>(step));
    batch_draw(train_tok, o.batch, o.seq_len, rng, buf);
    gpt.batch_set(buf);
    const float loss = gpt.forward_backward();
    const float lr = lr_cosine(step, o.lr);
    return TrainStep{loss, lr, opt.step(gpt.graph().params_flat(), gpt.graph().grads_flat(), lr)};
  };
  cb.validate = [&] { return val_loss_eval(gpt, val_tok, o.eval_batches, buf); };
  cb.validation_note = [](float vl) { return fmt::format(" (perplexity {:.2f})", std::exp(vl)); };
  cb.save = save;
  const TrainLoopResult run = train_loop_run(lo, cb, train_curve, val_curve);
  TrainTextResult r;
  r.steps_done = run.steps_done;
  r.train_loss = run.train_loss;
  r.val_loss = run.val_loss;
  r.seconds = run.seconds;
  r.tokens_per_second = run.items_per_second;
  std::fprintf(stderr, "saved %s (+ %s), loss curve %s; %lld steps in %s, %.0f tokens/s; train loss %.4f, validation loss %.4f (perplexity %.2f)\n",
               o.out.c_str(), optim_path.c_str(), lo.curve_path.c_str(), static_cast<long long>(run.steps_done - step0),
               duration_str(r.seconds).c_str(), r.tokens_per_second, r.train_loss, r.val_loss, std::exp(r.val_loss));
  return r;
}

}  // namespace aigc::train
