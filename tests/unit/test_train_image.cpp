// Image training end to end: the caption vocabulary, the UNet learning a fixed batch, train_image_run
// (the checkpoint reads back through image/pixel_diffusion_file with equal parameters; resume is
// exact; validation; curve PNG), and the CLI: `aigc train image`, `aigc bench train --model unet`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <map>

#include "common/run_cli.h"
#include "core/thread_pool.h"
#include "formats/image.h"
#include "image/pixel_diffusion_file.h"
#include "train/ddpm.h"
#include "train/shapes_dataset.h"
#include "train/train_image.h"

namespace aigc::train {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::path(::testing::TempDir()) / ("aigc_trainimg_" + std::to_string(getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

UnetConfig tiny_config() {
  return UnetConfig{.image = 16, .ch = 8, .groups = 2, .t_dim = 8, .text_vocab = shapes_vocab_size(),
                    .text_len = kShapesCaptionTokens, .text_dim = 8, .heads = 2};
}

TEST(TrainImage, VocabIsWhatTheTokenizerUses) {
  const std::vector<std::string>& v = shapes_vocab();
  ASSERT_EQ(static_cast<int>(v.size()), shapes_vocab_size());
  EXPECT_EQ(v[0], "<pad>");
  EXPECT_EQ(v[1], "<empty>");
  std::vector<int32_t> ids(kShapesCaptionTokens);
  for (size_t i = 2; i < v.size(); ++i) {
    shapes_caption_tokenize(v[i], ids);
    EXPECT_EQ(ids[0], static_cast<int32_t>(i)) << v[i];
    EXPECT_EQ(ids[1], 0);
  }
  shapes_caption_tokenize("two green squares on a white background", ids);
  std::string back;
  for (int32_t id : ids)
    if (id > 1) back += (back.empty() ? "" : " ") + v[static_cast<size_t>(id)];
  EXPECT_EQ(back, "two green squares on a white background");
  for (const char* w : {"digit", "letter", "7", "K", "triangles", "gray", "three"})
    EXPECT_NE(std::find(v.begin(), v.end(), w), v.end()) << w;
}

// The model can fit one fixed batch: the loss falls well below its start.
TEST(TrainImage, LossFallsOnAFixedBatch) {
  thread_count_set(1);
  UnetTrainer u(tiny_config(), 4);
  u.params_init(3);
  const std::vector<float> ac = ddpm_alphas_cumprod({});
  image_batch_fill(u, 4, 0, {.seed = 5, .glyphs = false, .caption_dropout = 0.0f}, ac);
  AdamW opt(u.graph().params_flat().size(), {.beta1 = 0.9f, .beta2 = 0.999f, .weight_decay = 0.0f, .grad_clip = 1.0f});
  const float first = u.forward();
  float last = first;
  for (int s = 0; s < 60; ++s) {
    last = u.forward_backward();
    opt.step(u.graph().params_flat(), u.graph().grads_flat(), 1e-2f);
  }
  last = u.forward();
  EXPECT_GT(first, 0.5f);        // eps-prediction starts near the noise's variance (1)
  EXPECT_LT(last, 0.6f * first) << "first " << first << " last " << last;
  thread_count_set(0);
}

// 6 steps straight equal 3 steps + resume + 3, bit for bit; the checkpoint reads back with the
// trainer's parameters, config and vocabulary; "aigc.training" records the run.
TEST(TrainImage, CheckpointReadsBackAndResumeIsExact) {
  thread_count_set(1);  // one thread: bitwise reproducible sums
  TempDir dir;
  TrainImageOptions o;
  o.model = tiny_config();
  o.model.text_vocab = 0;  // filled in from the data set
  o.model.text_len = 0;
  o.batch = 2;
  o.steps = 6;
  o.lr = {5e-3f, 1e-3f, 2, 6};
  o.eval_every = 3;
  o.eval_batches = 2;
  o.save_every = 100;
  o.out = dir / "straight.safetensors";
  const TrainImageResult straight = train_image_run(o);
  EXPECT_EQ(straight.steps_done, 6);
  EXPECT_GT(straight.val_loss, 0.0f);
  EXPECT_GT(straight.samples_per_second, 0.0);
  o.out = dir / "resumed.safetensors";
  o.steps = 3;
  EXPECT_EQ(train_image_run(o).steps_done, 3);
  o.steps = 6;
  o.resume = true;
  const TrainImageResult resumed = train_image_run(o);
  EXPECT_EQ(resumed.steps_done, 6);
  EXPECT_EQ(resumed.val_loss, straight.val_loss);  // same parameters, same fixed validation set

  const image::PixelDiffusionFile a = image::pixel_diffusion_read(dir / "straight.safetensors");
  const image::PixelDiffusionFile b = image::pixel_diffusion_read(dir / "resumed.safetensors");
  ASSERT_EQ(a.params.size(), b.params.size());
  for (const auto& [name, ta] : a.params) {
    const Tensor& tb = b.params.at(name);
    ASSERT_TRUE(ta.same_shape(tb)) << name;
    EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.nbytes()), 0) << name << " differs after resume";
  }
  EXPECT_EQ(a.config.unet.ch, 8);
  EXPECT_EQ(a.config.unet.image, 16);
  EXPECT_EQ(a.config.unet.text_len, kShapesCaptionTokens);
  EXPECT_EQ(a.config.vocab, shapes_vocab());
  EXPECT_EQ(a.config.schedule.steps, 1000);
  const nlohmann::json tr = nlohmann::json::parse(b.config.training_json);
  EXPECT_EQ(tr.at("steps").get<int64_t>(), 6);
  EXPECT_EQ(tr.at("batch").get<int64_t>(), 2);
  EXPECT_NE(tr.at("data").get<std::string>().find("shapes"), std::string::npos);
  EXPECT_FLOAT_EQ(tr.at("val_loss").get<float>(), resumed.val_loss);

  // The file holds exactly the trainer's parameters: load them into a fresh trainer, compare.
  UnetTrainer fresh(a.config.unet, 1);
  image::pixel_diffusion_params_load(b, fresh);
  for (const Graph::ParamInfo& p : fresh.graph().params()) {
    const Tensor& t = fresh.graph().value(p.var);
    EXPECT_EQ(std::memcmp(t.data(), b.params.at(p.name).data(), t.nbytes()), 0) << p.name;
  }
  const Tensor png = image_read(dir / "resumed.safetensors.png");
  EXPECT_EQ(png.size(3), 800);

  // A bigger --ch does not resume a smaller model; nor does a finished run go on.
  o.model.ch = 16;
  EXPECT_THROW(train_image_run(o), Error);
  o.model.ch = 8;
  EXPECT_THROW(train_image_run(o), Error);  // already at step 6 of --steps 6
  thread_count_set(0);
}

TEST(TrainImage, CliTrainsAndReportsProgress) {
  TempDir dir;
  test::CliResult r = test::cli_run({"-t", "1", "train", "image", "-o", dir / "m.safetensors", "--image", "16", "--ch",
                                     "8", "--groups", "2", "--heads", "2", "--text-dim", "8", "--t-dim", "8", "--batch",
                                     "2", "--steps", "3", "--eval-every", "2", "--eval-batches", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 3/3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("samples/s"), std::string::npos);
  EXPECT_NE(r.err.find("ETA"), std::string::npos);
  EXPECT_NE(r.err.find("validation loss"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "m.safetensors.optim"));
  EXPECT_TRUE(fs::exists(dir / "m.safetensors.png"));
  EXPECT_NO_THROW(image::pixel_diffusion_read(dir / "m.safetensors"));
  // User errors: one line, exit 1.
  auto args_with = [&](const std::map<std::string, std::string>& over) {
    std::map<std::string, std::string> m{{"-o", dir / "x.safetensors"}, {"--image", "16"}, {"--ch", "8"},
                                         {"--groups", "2"}, {"--heads", "2"}, {"--batch", "1"}, {"--steps", "1"}};
    for (const auto& [k, v] : over) m[k] = v;
    std::vector<std::string> a{"train", "image"};
    for (const auto& [k, v] : m) {
      a.push_back(k);
      if (!v.empty()) a.push_back(v);
    }
    return a;
  };
  for (const std::map<std::string, std::string>& bad :
       {std::map<std::string, std::string>{{"--ch", "10"}, {"--groups", "4"}}, {{"--image", "15"}}, {{"--steps", "0"}},
        {{"--caption-dropout", "1.5"}}, {{"--t-dim", "7"}}, {{"--resume", ""}, {"-o", dir / "missing.safetensors"}}}) {
    r = test::cli_run(args_with(bad));
    EXPECT_EQ(r.exit_code, 1) << bad.begin()->first;
    EXPECT_NE(r.err.find("aigc: error:"), std::string::npos) << r.err;
  }
}

TEST(TrainImage, BenchTrainTimesTheUnet) {
  const test::CliResult r =
      test::cli_run({"bench", "train", "--model", "unet", "--unet-image", "16", "--unet-ch", "8", "--unet-groups", "2",
                     "--unet-heads", "2", "--unet-text-dim", "8", "--unet-t-dim", "8", "--unet-batch", "2", "--steps",
                     "1", "--threads-list", "1,2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| ms/step |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| unet S16 c8 G2 H2 text8 t8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 | 1 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 | 2 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("tokens/s"), std::string::npos) << "--model unet times the GPT too";
}

}  // namespace
}  // namespace aigc::train
