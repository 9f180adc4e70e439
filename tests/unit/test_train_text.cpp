// Text training end to end: the BPE trainer against its twin (tests/ref/twin_train_bpe.py), the
// tokenizer GGUF through text/vocab, train_text_run (resume is exact, validation, curve PNG), and
// the CLI: `aigc train tokenizer`, `aigc train text`, then `aigc text` on the result.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/refdump.h"
#include "common/run_cli.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "formats/image.h"
#include "text/text_model.h"
#include "text/vocab.h"
#include "train/bpe_trainer.h"
#include "train/loss_curve.h"
#include "train/train_text.h"

namespace aigc::train {
namespace {

namespace fs = std::filesystem;

std::string bytes_of(const Tensor& t) { return std::string(t.ptr<char>(), static_cast<size_t>(t.numel())); }

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size() && !s.empty()) {
    const size_t end = s.find('\n', pos);
    out.push_back(s.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return out;
}

struct TempDir {
  fs::path path = fs::path(::testing::TempDir()) / ("aigc_train_" + std::to_string(getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& f) const { return (path / f).string(); }
};

TEST(TrainBpe, MergesMatchTwin) {
  const test::RefDump ref = test::RefDump::load("train_bpe");
  const std::string corpus = bytes_of(ref.get("corpus"));
  const BpeTokenizer tok = bpe_train(corpus, {.vocab_size = ref.get("vocab_size").ptr<int32_t>()[0]});
  const std::vector<std::string> want = lines_of(bytes_of(ref.get("merges")));
  ASSERT_GT(want.size(), 50u);
  EXPECT_EQ(tok.merges, want);  // exact: same counts, same tie-break, same stop rule
  EXPECT_EQ(static_cast<int32_t>(tok.tokens.size()), ref.get("n_tokens").ptr<int32_t>()[0]);
  EXPECT_EQ(tok.tokens.back(), "<|endoftext|>");
  EXPECT_EQ(tok.types.back(), 3);
}

TEST(TrainBpe, GgufLoadsAsVocabAndRoundTrips) {
  const test::RefDump ref = test::RefDump::load("train_bpe");
  const std::string corpus = bytes_of(ref.get("corpus"));
  const BpeTokenizer tok = bpe_train(corpus, {.vocab_size = 420});
  TempDir dir;
  bpe_gguf_write(tok, dir / "tok.gguf");
  const GgufFile f = GgufFile::open(dir / "tok.gguf");
  const text::Vocab vocab = text::vocab_load_gguf(f);
  EXPECT_EQ(vocab.size(), tok.tokens.size());
  EXPECT_EQ(vocab.model(), text::VocabModel::Bpe);
  const std::vector<text::TokenId> ids = vocab.encode(corpus);
  EXPECT_EQ(vocab.decode(ids), corpus);
  EXPECT_LT(ids.size() * 3, corpus.size());  // merges compress the text
  EXPECT_EQ(vocab.encode(" the").size(), 1u);
  EXPECT_EQ(vocab.token_find("<|endoftext|>"), tok.eos);
  EXPECT_EQ(vocab.data().eos, tok.eos);
}

TEST(TrainBpe, BadArgumentsThrow) {
  EXPECT_THROW(bpe_train("abc", {.vocab_size = 100}), Error);
  EXPECT_THROW(bpe_train("abc", {.vocab_size = 300, .pre = "no-such-pre"}), Error);
}

// A corpus of a few KB (the twin's), a tiny model: 6 steps straight equal 3 steps + resume + 3.
TEST(TrainText, ResumeIsExactAndOutputsLoad) {
  thread_count_set(1);  // one thread: bitwise reproducible sums
  const test::RefDump ref = test::RefDump::load("train_bpe");
  TempDir dir;
  {
    std::ofstream f(dir / "corpus.txt", std::ios::binary);
    for (int i = 0; i < 4; ++i) f << bytes_of(ref.get("corpus"));
  }
  bpe_gguf_write(bpe_train(bytes_of(ref.get("corpus")), {.vocab_size = 420}), dir / "tok.gguf");
  TrainTextOptions o;
  o.corpus = dir / "corpus.txt";
  o.tokenizer = dir / "tok.gguf";
  o.model = GptConfig{.n_vocab = 0, .n_ctx = 16, .n_embd = 32, .n_layer = 2, .n_head = 4, .n_ff = 48};
  o.batch = 2;
  o.seq_len = 16;
  o.steps = 6;
  o.lr = {1e-2f, 1e-3f, 2, 6};
  o.eval_every = 3;
  o.eval_batches = 2;
  o.save_every = 100;
  o.out = dir / "straight.gguf";
  const TrainTextResult straight = train_text_run(o);
  EXPECT_EQ(straight.steps_done, 6);
  EXPECT_GT(straight.val_loss, 0.0f);
  o.out = dir / "resumed.gguf";
  o.steps = 3;
  const TrainTextResult half = train_text_run(o);
  EXPECT_EQ(half.steps_done, 3);
  o.steps = 6;
  o.resume = true;
  train_text_run(o);
  const GgufFile a = GgufFile::open(dir / "straight.gguf"), b = GgufFile::open(dir / "resumed.gguf");
  ASSERT_EQ(a.tensor_infos().size(), b.tensor_infos().size());
  for (const TensorInfo& ti : a.tensor_infos()) {
    const Tensor ta = a.tensor(ti.name), tb = b.tensor(ti.name);
    ASSERT_TRUE(ta.same_shape(tb)) << ti.name;
    EXPECT_EQ(std::memcmp(ta.data(), tb.data(), ta.nbytes()), 0) << ti.name << " differs after resume";
  }
  // The model file runs in the inference code and carries the tokenizer.
  const auto model = text_model_load(dir / "resumed.gguf");
  EXPECT_EQ(model->arch(), "llama");
  const text::Vocab vocab = text::vocab_load_gguf(model->gguf());
  EXPECT_EQ(static_cast<int64_t>(vocab.size()), model->n_vocab());
  auto ctx = model->context_create({.n_ctx = 16});
  const std::vector<text::TokenId> prompt = vocab.encode("And God said");
  EXPECT_EQ(ctx->eval(prompt).size(-1), model->n_vocab());
  // The loss curve is a PNG of the default size.
  const Tensor png = image_read(dir / "resumed.gguf.png");
  EXPECT_EQ(png.size(2), 500);
  EXPECT_EQ(png.size(3), 800);
  thread_count_set(0);
}

TEST(TrainText, CliTrainsAndTextRuns) {
  const test::RefDump ref = test::RefDump::load("train_bpe");
  TempDir dir;
  {
    std::ofstream f(dir / "corpus.txt", std::ios::binary);
    for (int i = 0; i < 4; ++i) f << bytes_of(ref.get("corpus"));
  }
  test::CliResult r = test::cli_run({"train", "tokenizer", "--corpus", dir / "corpus.txt", "--vocab-size", "400",
                                     "-o", dir / "tok.gguf"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::cli_run({"-t", "1", "train", "text", "--corpus", dir / "corpus.txt", "--tokenizer", dir / "tok.gguf", "-o",
                     dir / "m.gguf", "--steps", "4", "--embd", "32", "--layers", "1", "--heads", "2", "--ff", "48",
                     "--batch", "2", "--ctx", "16", "--eval-every", "2", "--eval-batches", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 4/4"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos);
  EXPECT_NE(r.err.find("ETA"), std::string::npos);
  EXPECT_NE(r.err.find("validation loss"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir / "m.gguf.optim"));
  r = test::cli_run({"-t", "1", "text", "-m", dir / "m.gguf", "-p", "And God", "-n", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("And God", 0), 0u) << r.out;
  // User errors: one line, exit 1.
  r = test::cli_run({"train", "text", "--corpus", dir / "missing.txt", "--tokenizer", dir / "tok.gguf", "-o",
                     dir / "x.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("aigc: error:"), std::string::npos) << r.err;
}

TEST(TrainText, LossCurvePlacesPoints) {
  std::vector<LossPoint> train;
  for (int64_t s = 1; s <= 100; ++s) train.push_back({s, 4.0f - 2.0f * static_cast<float>(s) / 100.0f});
  const Tensor img = loss_curve_draw(train, {{50, 3.0f}}, 800, 500, 1);
  ASSERT_EQ(img.size(1), 3);
  auto px = [&](int c, int y, int x) { return img.ptr<float>()[(c * 500 + y) * 800 + x]; };
  // Plot area: x 40..776 (steps 0..100), y 470..20 (loss 0..4). Validation (50, 3.0) at (408, 132.5).
  EXPECT_FLOAT_EQ(px(0, 133, 408), 0.9f);
  EXPECT_FLOAT_EQ(px(1, 133, 408), 0.1f);
  // The train line at step 100 (loss 2.0): x 776, y 245; blue.
  EXPECT_FLOAT_EQ(px(2, 245, 776), 0.9f);
  EXPECT_FLOAT_EQ(px(0, 245, 776), 0.1f);
  EXPECT_FLOAT_EQ(px(0, 400, 600), 1.0f);  // background elsewhere
}

TEST(TrainText, BenchTrainPrintsATable) {
  const test::CliResult r =
      test::cli_run({"bench", "train", "--model", "gpt", "--vocab", "64", "--embd", "16", "--layers", "1", "--heads", "2", "--ff", "24",
                     "--batch", "2", "--ctx", "8", "--steps", "1", "--threads-list", "1,2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| tokens/s |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 x 8 | 1 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| 2 x 8 | 2 |"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace aigc::train
