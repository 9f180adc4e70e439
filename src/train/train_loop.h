// The step loop that `aigc train text` and `aigc train image` share: each step timed (the
// training-time rate and ETA exclude validation and saving), the progress line, validation every
// eval_every steps and at the end, a checkpoint every save_every steps, --max-seconds, a
// non-finite loss refused, and after the loop the final save and the loss-curve PNG. What a step,
// a validation or a save does is the trainer's own (callbacks).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/loss_curve.h"

namespace aigc::train {

struct TrainLoopOptions {
  std::string command;       // "aigc train text": error messages and the curve's title
  int64_t step0 = 0;         // first step of this run (resume: the checkpoint's)
  int64_t steps = 0;         // total steps
  int64_t eval_every = 1, save_every = 1;
  double max_seconds = 0;    // > 0: stop after this much training time
  int64_t items_per_step = 1;
  std::string rate_unit;     // "tok/s", "samples/s"
  int rate_decimals = 0;
  size_t progress_window = 1;  // the progress line shows the mean loss of the last N steps
  size_t result_window = 10;   // TrainLoopResult::train_loss: the mean of the last N steps
  std::string curve_path;      // the loss-curve PNG
  int curve_smooth = 10;       // its moving average of the train loss
};

struct TrainStep {
  float loss, lr, norm;
};

struct TrainLoopCallbacks {
  std::function<TrainStep(int64_t step)> step;        // one optimiser step (0-based)
  std::function<float()> validate;                     // the validation loss
  std::function<std::string(float)> validation_note;  // printed after "validation loss X.XXXX"
  // checkpoint after `step` steps; train_seconds: this run's time in steps so far
  std::function<void(int64_t step, double train_seconds)> save;
};

struct TrainLoopResult {
  int64_t steps_done = 0;     // the step count reached (step0 + steps run)
  double train_seconds = 0;   // time in steps of this run
  double items_per_second = 0;  // items_per_step x steps run / train_seconds
  double seconds = 0;         // wall time of the loop, validation and saving included
  float train_loss = 0;       // mean of the last result_window steps
  float val_loss = 0;         // the last validation
};

// Mean loss of the last n points (0 if none).
float loss_tail_mean(const std::vector<LossPoint>& curve, size_t n);

// Runs steps step0 .. steps-1 and appends to the curves (which hold the earlier runs' points on
// resume).
TrainLoopResult train_loop_run(const TrainLoopOptions& o, const TrainLoopCallbacks& cb, std::vector<LossPoint>& train_curve,
                               std::vector<LossPoint>& val_curve);

}  // namespace aigc::train
