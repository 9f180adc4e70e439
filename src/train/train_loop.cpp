#include "train/train_loop.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "formats/image.h"
#include "train/train_progress.h"

namespace aigc::train {

float loss_tail_mean(const std::vector<LossPoint>& curve, size_t n) {
  n = std::min(n, curve.size());
  double s = 0;
  for (size_t i = curve.size() - n; i < curve.size(); ++i) s += curve[i].loss;
  return n ? static_cast<float>(s / static_cast<double>(n)) : 0.0f;
}

TrainLoopResult train_loop_run(const TrainLoopOptions& o, const TrainLoopCallbacks& cb, std::vector<LossPoint>& train_curve,
                               std::vector<LossPoint>& val_curve) {
  using Clock = std::chrono::steady_clock;
  const bool tty = isatty(2);
  const auto t0 = Clock::now();
  TrainLoopResult r;
  double train_seconds = 0;
  int64_t step = o.step0;
  for (; step < o.steps; ++step) {
    const auto ts = Clock::now();
    const TrainStep s = cb.step(step);
    train_seconds += std::chrono::duration<double>(Clock::now() - ts).count();
    train_curve.push_back({step + 1, s.loss});
    if (!std::isfinite(s.loss))
      error_throw(fmt::format("loss is {} at step {}", s.loss, step + 1), o.command, "lower --lr or raise --warmup");
    const int64_t done = step + 1 - o.step0;
    const double rate = static_cast<double>(done * o.items_per_step) / train_seconds;
    const double eta = train_seconds / static_cast<double>(done) * static_cast<double>(o.steps - step - 1);
    const std::string line = fmt::format("{} step {}/{} | loss {:.4f} | lr {:.2e} | norm {:.2f} | {:.{}f} {} | ETA {}",
                                         progress_bar(step + 1, o.steps), step + 1, o.steps,
                                         loss_tail_mean(train_curve, o.progress_window), s.lr, s.norm, rate,
                                         o.rate_decimals, o.rate_unit, duration_str(eta));
    const bool last = step + 1 == o.steps;
    progress_line_print(line, step, o.step0, o.steps, tty);
    const bool out_of_time = o.max_seconds > 0 && train_seconds >= o.max_seconds;
    if ((step + 1) % o.eval_every == 0 || last || out_of_time) {
      r.val_loss = cb.validate();
      val_curve.push_back({step + 1, r.val_loss});
      std::fprintf(stderr, "%sstep %lld: validation loss %.4f%s\n", tty ? "\r\x1b[K" : "",
                   static_cast<long long>(step + 1), r.val_loss, cb.validation_note(r.val_loss).c_str());
    }
    if ((step + 1) % o.save_every == 0 && !last) cb.save(step + 1, train_seconds);
    if (out_of_time) {
      std::fprintf(stderr, "stopping after %.0f s (--max-seconds)\n", train_seconds);
      ++step;
      break;
    }
  }
  r.steps_done = step;
  r.train_loss = loss_tail_mean(train_curve, o.result_window);
  cb.save(step, train_seconds);
  float hi = 0;
  for (const LossPoint& p : train_curve) hi = std::max(hi, p.loss);
  image_write_png(o.curve_path, loss_curve_draw(train_curve, val_curve, 800, 500, o.curve_smooth),
                  {{"Title", fmt::format("{}: loss (blue: train, {}-step mean; red: validation)", o.command, o.curve_smooth)},
                   {"Description", fmt::format("x: step 0..{}, y: loss 0..{:.0f} (grid every 1.0); train loss {:.4f} -> {:.4f}",
                                               step, std::ceil(hi), train_curve.empty() ? 0.0f : train_curve.front().loss,
                                               r.train_loss)}});
  r.train_seconds = train_seconds;
  r.items_per_second = train_seconds > 0 ? static_cast<double>((step - o.step0) * o.items_per_step) / train_seconds : 0;
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

}  // namespace aigc::train
