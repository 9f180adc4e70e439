// GPT-2 model and the architecture-independent TextModel interface: GGUF loading, batched prefill
// and KV-cache decode against the PyTorch twin (tests/ref/twin_gpt2.py), the learned-position
// context limit, zero allocations per token, hostile files, dispatch on general.architecture, and
// `aigc text` on a GPT-2 file carrying the real GPT-2 tokenizer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/model_twin.h"
#include "common/refdump.h"
#include "common/run_cli.h"
#include "backend/cpu/ops.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "text/generator.h"
#include "text/gpt2_context.h"
#include "text/llama_context.h"

namespace aigc {
namespace {

namespace fs = std::filesystem;

std::string twin_path(const std::string& name) { return test::ref_dir() + "/gpt2_" + name + ".gguf"; }

int64_t argmax_row(const Tensor& logits, int64_t r) {
  const float* p = static_cast<const float*>(logits.row_ptr(r));
  return std::max_element(p, p + logits.size(-1)) - p;
}

struct TwinCase {
  const char* name;
  // Logits tolerance (|got - want| <= atol + rtol |want|, rtol 1e-4; logits here are O(1..20)).
  //  f32 / f16: weights exact in f32 (f16 widens exactly), so only f32 rounding of short sums (and
  //    of layer_norm / gelu_tanh) vs the twin's float64: 1e-4.
  //  q8_0: ops::linear quantises each activation row to Q8_0 as GGML does, and the twin emulates
  //    that, so the same tight bound holds except where an activation lands within f32 rounding of a
  //    Q8_0 rounding boundary and flips one step (amax/127) in one of the two, moving logits by
  //    step * |w| (the reasoning of test_model_llama.cpp): atol 0.03 (here no flip: all within 1e-4).
  float atol;
};

void PrintTo(const TwinCase& c, std::ostream* os) { *os << c.name << " (atol " << c.atol << ")"; }

class Gpt2Twin : public ::testing::TestWithParam<TwinCase> {};

TEST_P(Gpt2Twin, PrefillAndDecodeMatchTwin) {
  const TwinCase& c = GetParam();
  const test::RefDump ref = test::RefDump::load(std::string("gpt2_") + c.name);
  const Gpt2Model model = Gpt2Model::load(twin_path(c.name));
  EXPECT_EQ(model.hp.n_vocab, 96);
  EXPECT_EQ(model.hp.n_layer, 2);
  // A Gpt2Context for all positions; through the TextModel interface, the prompt in chunks of 3.
  Gpt2Context all(model, {.n_ctx = 16, .logits_all = true});
  const std::unique_ptr<TextModel> tm = text_model_load(twin_path(c.name));
  EXPECT_EQ(tm->arch(), "gpt2");
  EXPECT_EQ(tm->n_vocab(), 96);
  EXPECT_EQ(tm->n_ctx_train(), 16);
  const std::unique_ptr<TextContext> chunked = tm->context_create({.n_ctx = 16, .n_batch = 3});
  test::twin_logits_check(all, *chunked, ref, c.atol);
}

// An f16 KV cache against the twin that rounds keys and values to f16 (gpt2_NAME_f16kv; the
// tolerance as in test_model_llama.cpp).
TEST_P(Gpt2Twin, F16CacheMatchesTwinWithF16KeysAndValues) {
  const TwinCase& c = GetParam();
  const test::RefDump ref = test::RefDump::load(std::string("gpt2_") + c.name + "_f16kv");
  const Gpt2Model model = Gpt2Model::load(twin_path(c.name));
  Gpt2Context all(model, {.n_ctx = 16, .logits_all = true, .cache_type_k = DType::F16, .cache_type_v = DType::F16});
  Gpt2Context chunked(model, {.n_ctx = 16, .n_batch = 3, .cache_type_k = DType::F16, .cache_type_v = DType::F16});
  EXPECT_EQ(all.cache_bytes(), Gpt2Context(model, {.n_ctx = 16}).cache_bytes() / 2);
  test::twin_logits_check(all, chunked, ref, std::max(c.atol, 5e-3f));
}

INSTANTIATE_TEST_SUITE_P(Twin, Gpt2Twin,
                         ::testing::Values(TwinCase{"f32", 1e-4f}, TwinCase{"tied_f16", 1e-4f},
                                           TwinCase{"q8_0", 0.03f}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Gpt2Model, HyperParametersFromMetadata) {
  const Gpt2Model m = Gpt2Model::load(twin_path("q8_0"));
  EXPECT_EQ(m.hp.arch, "gpt2");
  EXPECT_EQ(m.hp.n_embd, 64);
  EXPECT_EQ(m.hp.n_ff, 256);
  EXPECT_EQ(m.hp.n_head, 4);
  EXPECT_EQ(m.hp.head_dim, 16);
  EXPECT_EQ(m.hp.n_ctx_train, 16);
  EXPECT_FLOAT_EQ(m.hp.norm_eps, 1e-5f);
  EXPECT_EQ(m.output.data(), m.tok_embd.data()) << "tied classifier";
  EXPECT_EQ(m.layers[1].wqkv.type(), DType::Q8_0);
  EXPECT_EQ(m.pos_embd.size(0), 16);
  const Gpt2Model f = Gpt2Model::load(twin_path("f32"));
  EXPECT_NE(f.output.data(), f.tok_embd.data());
  // Weights are views of the mapped file, not copies.
  EXPECT_EQ(f.layers[0].wqkv.data(), f.file->tensor("blk.0.attn_qkv.weight").data());
}

TEST(Gpt2Context, LearnedPositionsLimitTheContext) {
  const Gpt2Model model = Gpt2Model::load(twin_path("f32"));
  try {
    Gpt2Context big(model, {.n_ctx = 17});
    ADD_FAILURE() << "a context longer than position_embd was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("position_embd"), std::string::npos) << msg;
    EXPECT_NE(msg.find("16"), std::string::npos) << msg;
  }
  Gpt2Context dflt(model);
  EXPECT_EQ(dflt.n_ctx(), 16);
  const int32_t fifteen[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  dflt.eval(fifteen);
  const int32_t one = 3, two[] = {3, 4};
  EXPECT_THROW(dflt.eval(two), Error);  // 15 + 2 > 16: nothing evaluated
  EXPECT_EQ(dflt.n_past(), 15);
  dflt.eval({&one, 1});
  EXPECT_THROW(dflt.eval({&one, 1}), Error);
  dflt.reset();
  const int32_t bad[] = {5, 96};
  EXPECT_THROW(dflt.eval(bad), Error);
  const int32_t neg = -1;
  EXPECT_THROW(dflt.eval({&neg, 1}), Error);
  EXPECT_THROW(dflt.eval({}), Error);
  EXPECT_EQ(dflt.n_past(), 0);
}

TEST(Gpt2Context, DecodeAllocatesNothing) {
  for (const char* name : {"f32", "tied_f16", "q8_0"})
  for (int threads : {1, 2}) {
    const Gpt2Model model = Gpt2Model::load(twin_path(name));
    const int saved = thread_count();
    thread_count_set(threads);
    Gpt2Context ctx(model, {.n_ctx = 16});
    const int32_t prompt[] = {1, 5, 9, 13};
    ctx.eval(prompt);
    int32_t tok = 7;
    ctx.eval({&tok, 1});  // first decode step: kernels' per-thread scratch may grow here
    test::AllocCounter allocs;
    for (int i = 0; i < 10; ++i) {
      const Tensor& l = ctx.eval({&tok, 1});
      tok = static_cast<int32_t>(argmax_row(l, 0));
    }
    EXPECT_EQ(allocs.count(), 0) << "operator new calls in 10 decode steps, " << name << ", " << threads << " threads";
    thread_count_set(saved);
  }
}

TEST(TextModel, DispatchesOnArchitecture) {
  const std::unique_ptr<TextModel> g = text_model_load(twin_path("tied_f16"));
  EXPECT_NE(dynamic_cast<const Gpt2Model*>(g.get()), nullptr);
  const std::unique_ptr<TextModel> l = text_model_load(test::ref_dir() + "/llama_qwen2_f32.gguf");
  ASSERT_NE(dynamic_cast<const LlamaModel*>(l.get()), nullptr);
  EXPECT_EQ(l->arch(), "qwen2");
  EXPECT_EQ(l->n_vocab(), 96);
  // The interface's context is the architecture's own: same logits as a LlamaContext.
  const auto& lm = static_cast<const LlamaModel&>(*l);
  LlamaContext direct(lm, {.n_ctx = 8});
  const std::unique_ptr<TextContext> via = l->context_create({.n_ctx = 8});
  const int32_t toks[] = {1, 7, 42};
  Tensor want = Tensor::empty(DType::F32, {1, 96});
  ops::copy(direct.eval(toks), want);
  EXPECT_TENSORS_CLOSE(via->eval(toks), want, 0.0f, 0.0f);
}

// ---- hostile and inconsistent files ----------------------------------------------------------

class Gpt2BadFile : public ::testing::Test {
 protected:
  // Rewrites the f32 twin with `edit` applied to its metadata and tensors.
  std::string rewrite(const std::string& tag, const std::function<void(std::vector<GgufKV>&,
                                                                       std::vector<std::pair<std::string, Tensor>>&)>& edit) {
    const GgufFile f = GgufFile::open(twin_path("f32"));
    std::vector<GgufKV> kvs = f.metadata();
    std::vector<std::pair<std::string, Tensor>> ts;
    for (const TensorInfo& ti : f.tensor_infos()) ts.emplace_back(ti.name, f.tensor(ti.name));
    edit(kvs, ts);
    GgufWriter w;
    for (const GgufKV& kv : kvs) w.metadata_add(kv.key, kv.value);
    for (const auto& [name, t] : ts) w.tensor_add(name, t);
    const std::string path =
        (fs::path(::testing::TempDir()) / ("gpt2_bad_" + tag + "_" + std::to_string(getpid()) + ".gguf")).string();
    w.write(path);
    return path;
  }
  static std::string load_error(const std::string& path) {
    std::string msg = "(no error)";
    try {
      text_model_load(path);
    } catch (const Error& e) {
      msg = e.what();
    }
    fs::remove(path);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    return msg;
  }
};

TEST_F(Gpt2BadFile, UnknownArchitectureListsSupported) {
  const std::string msg = load_error(rewrite("arch", [](auto& kvs, auto&) {
    for (GgufKV& kv : kvs)
      if (kv.key == "general.architecture") kv.value = GgufValue("mamba");
  }));
  EXPECT_NE(msg.find("mamba"), std::string::npos) << msg;
  for (const char* a : {"llama", "qwen2", "gpt2"}) EXPECT_NE(msg.find(a), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, MissingTensor) {
  const std::string msg = load_error(rewrite("missing", [](auto&, auto& ts) {
    std::erase_if(ts, [](const auto& p) { return p.first == "blk.1.attn_qkv.bias"; });
  }));
  EXPECT_NE(msg.find("blk.1.attn_qkv.bias"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, MissingPositionEmbedding) {
  const std::string msg = load_error(rewrite("nopos", [](auto&, auto& ts) {
    std::erase_if(ts, [](const auto& p) { return p.first == "position_embd.weight"; });
  }));
  EXPECT_NE(msg.find("position_embd.weight"), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, WrongShapeNamesExpectedAndFound) {
  const std::string msg = load_error(rewrite("shape", [](auto&, auto& ts) {
    for (auto& [name, t] : ts)
      if (name == "blk.0.attn_qkv.weight") t = t.slice(0, 0, 64);  // [64, 64] instead of [192, 64]
  }));
  EXPECT_NE(msg.find("blk.0.attn_qkv.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[64, 64]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[192, 64]"), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, PositionRowsDisagreeWithContextLength) {
  const std::string msg = load_error(rewrite("ctx", [](auto& kvs, auto&) {
    for (GgufKV& kv : kvs)
      if (kv.key == "gpt2.context_length") kv.value = GgufValue(uint32_t{1024});
  }));
  EXPECT_NE(msg.find("position_embd.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1024, 64]"), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, HeadCountDoesNotDivide) {
  const std::string msg = load_error(rewrite("heads", [](auto& kvs, auto&) {
    for (GgufKV& kv : kvs)
      if (kv.key == "gpt2.attention.head_count") kv.value = GgufValue(uint32_t{5});
  }));
  EXPECT_NE(msg.find("head_count"), std::string::npos) << msg;
}

TEST_F(Gpt2BadFile, HugeBlockCount) {
  const std::string msg = load_error(rewrite("blocks", [](auto& kvs, auto&) {
    for (GgufKV& kv : kvs)
      if (kv.key == "gpt2.block_count") kv.value = GgufValue(uint32_t{2000000000});
  }));
  EXPECT_NE(msg.find("block_count"), std::string::npos) << msg;
}

// ---- the real GPT-2 tokenizer through the CLI ----------------------------------------------------

// A tiny random-weight GPT-2 (n_embd 32, 1 layer) carrying the tokenizer metadata of llama.cpp's
// ggml-vocab-gpt-2.gguf (the real 50257-token GPT-2 BPE vocabulary).
TEST(Gpt2Cli, TextWithTheRealGpt2Vocabulary) {
  const std::string shared = test::shared_dir();
  const std::string vocab_path = shared + "/tokenizers/llama.cpp-vocab/ggml-vocab-gpt-2.gguf";
  if (shared.empty() || !fs::exists(vocab_path)) GTEST_SKIP() << "../shared not found (set AIGC_SHARED): " << vocab_path;
  const GgufFile vf = GgufFile::open(vocab_path);
  const int64_t V = static_cast<int64_t>(vf.get("tokenizer.ggml.tokens").size());
  ASSERT_EQ(V, 50257);
  const int64_t C = 32, F = 128, P = 64;
  GgufWriter w;
  w.metadata_add("general.architecture", GgufValue("gpt2"));
  w.metadata_add("gpt2.context_length", GgufValue(uint32_t{P}));
  w.metadata_add("gpt2.embedding_length", GgufValue(uint32_t{C}));
  w.metadata_add("gpt2.block_count", GgufValue(uint32_t{1}));
  w.metadata_add("gpt2.feed_forward_length", GgufValue(uint32_t{F}));
  w.metadata_add("gpt2.attention.head_count", GgufValue(uint32_t{2}));
  w.metadata_add("gpt2.attention.layer_norm_epsilon", GgufValue(1e-5f));
  for (const GgufKV& kv : vf.metadata())
    if (kv.key.rfind("tokenizer.", 0) == 0) w.metadata_add(kv.key, kv.value);
  uint32_t seed = 1;
  auto add = [&](const std::string& name, std::initializer_list<int64_t> shape, float scale) {
    w.tensor_add(name, test::random_f32(shape, seed++, -scale, scale));
  };
  add("token_embd.weight", {V, C}, 1.0f);
  add("position_embd.weight", {P, C}, 0.3f);
  add("blk.0.attn_norm.weight", {C}, 1.0f);
  add("blk.0.attn_norm.bias", {C}, 0.1f);
  add("blk.0.attn_qkv.weight", {3 * C, C}, 0.3f);
  add("blk.0.attn_qkv.bias", {3 * C}, 0.1f);
  add("blk.0.attn_output.weight", {C, C}, 0.3f);
  add("blk.0.attn_output.bias", {C}, 0.1f);
  add("blk.0.ffn_norm.weight", {C}, 1.0f);
  add("blk.0.ffn_norm.bias", {C}, 0.1f);
  add("blk.0.ffn_up.weight", {F, C}, 0.3f);
  add("blk.0.ffn_up.bias", {F}, 0.1f);
  add("blk.0.ffn_down.weight", {C, F}, 0.15f);
  add("blk.0.ffn_down.bias", {C}, 0.1f);
  add("output_norm.weight", {C}, 1.0f);
  add("output_norm.bias", {C}, 0.1f);
  const std::string path = ::testing::TempDir() + "/gpt2_vocab_smoke." + std::to_string(getpid()) + ".gguf";
  w.write(path);

  // GPT-2's BPE turns "Hello" into the single token 15496 (its published encoding).
  {
    const std::unique_ptr<TextModel> m = text_model_load(path);
    TextGenerator gen(*m, {.n_ctx = 32});
    EXPECT_EQ(gen.vocab().encode("Hello", {.add_special = true}), std::vector<text::TokenId>{15496});
  }
  const auto r = test::cli_run({"text", "-m", path, "-p", "Hello", "-n", "5", "--temp", "0"});
  fs::remove(path);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Hello", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("prompt 1 tokens"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace aigc
