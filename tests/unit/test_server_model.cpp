#include "test_server_model.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/tensor.h"
#include "formats/gguf.h"

namespace aigc::test {

void server_tiny_model_write(const std::string& path, int64_t n_ctx) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
  std::vector<int32_t> types = {2, 3, 3, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
  }
  for (const char* w : {"\xe2\x96\x81", "\xe2\x96\x81the", "\xe2\x96\x81a", "\xe2\x96\x81cat", "\xe2\x96\x81dog",
                        "\xe2\x96\x81sat", "\xe2\x96\x81on", "\xe2\x96\x81mat", "\xe2\x96\x81Hello", "\xe2\x96\x81world",
                        "e", "t", "a", "o", "n", "s", "r", "h", "l", "d", ".", ",", "!", "?"}) {
    tokens.push_back(w);
    types.push_back(1);
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
  const int64_t V = static_cast<int64_t>(tokens.size()), C = 32, L = 2, H = 4, Hkv = 2, D = C / H, F = 64;

  GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("general.name", "aigc server test model");
  w.metadata_add("llama.context_length", static_cast<uint32_t>(n_ctx));
  w.metadata_add("llama.embedding_length", static_cast<uint32_t>(C));
  w.metadata_add("llama.block_count", static_cast<uint32_t>(L));
  w.metadata_add("llama.feed_forward_length", static_cast<uint32_t>(F));
  w.metadata_add("llama.attention.head_count", static_cast<uint32_t>(H));
  w.metadata_add("llama.attention.head_count_kv", static_cast<uint32_t>(Hkv));
  w.metadata_add("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.metadata_add("llama.rope.freq_base", 10000.0f);
  w.metadata_add("llama.rope.dimension_count", static_cast<uint32_t>(D));
  w.metadata_add("tokenizer.ggml.model", "llama");
  w.metadata_add("tokenizer.ggml.tokens", GgufValue::array(tokens));
  w.metadata_add("tokenizer.ggml.scores", GgufValue::array(scores));
  w.metadata_add("tokenizer.ggml.token_type", GgufValue::array(types));
  w.metadata_add("tokenizer.ggml.bos_token_id", uint32_t{1});
  w.metadata_add("tokenizer.ggml.eos_token_id", uint32_t{2});
  w.metadata_add("tokenizer.chat_template", "chatml");

  std::mt19937 rng(20261129);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto rand = [&](std::initializer_list<int64_t> shape, float scale) {
    Tensor t = Tensor::empty(DType::F32, shape);
    float* p = t.ptr<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng) * scale;
    return t;
  };
  auto ones = [&](int64_t n) {
    Tensor t = Tensor::empty(DType::F32, {n});
    for (int64_t i = 0; i < n; ++i) t.ptr<float>()[i] = 1.0f;
    return t;
  };
  const float s = 1.0f / std::sqrt(static_cast<float>(C));
  w.tensor_add("token_embd.weight", rand({V, C}, 1.0f));
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w.tensor_add(p + "attn_norm.weight", ones(C));
    w.tensor_add(p + "attn_q.weight", rand({C, C}, s));
    w.tensor_add(p + "attn_k.weight", rand({Hkv * D, C}, s));
    w.tensor_add(p + "attn_v.weight", rand({Hkv * D, C}, s));
    w.tensor_add(p + "attn_output.weight", rand({C, C}, s));
    w.tensor_add(p + "ffn_norm.weight", ones(C));
    w.tensor_add(p + "ffn_gate.weight", rand({F, C}, s));
    w.tensor_add(p + "ffn_up.weight", rand({F, C}, s));
    w.tensor_add(p + "ffn_down.weight", rand({C, F}, 1.0f / std::sqrt(static_cast<float>(F))));
  }
  w.tensor_add("output_norm.weight", ones(C));
  Tensor out = rand({V, C}, 3.0f * s);  // [V, C]
  // Rows scaled so words (ids 261 and up) usually beat single bytes: readable text, mostly ASCII.
  for (int64_t id = 0; id < V; ++id) {
    const float k = id < 5 ? 0.0f : id < 261 ? 0.25f : 1.5f;
    for (int64_t c = 0; c < C; ++c) out.ptr<float>()[id * C + c] *= k;
  }
  w.tensor_add("output.weight", out);
  w.write(path);
}

}  // namespace aigc::test
