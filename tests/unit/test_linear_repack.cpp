// The R16 layouts, Q4_0 / Q4_1 / Q5_0 / Q5_1 repacked (core/quant.h), and the model loader's
// repacking: the byte layouts checked by hand against the documented positions, conversions equal
// to the file types', the types invisible to files, and a model of each file type loaded from a file
// (mapped or read) repacked in place where the CPU has the kernel, giving the logits of the same
// weights unpacked back, with the file on disk untouched. (The kernels themselves: test_quant.cpp,
// LinearQuantized.DecodeKernelsMatchReferenceOnOddShapes.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "backend/cpu/linear_quantized.h"
#include "backend/cpu/ops.h"
#include "common/compare.h"
#include "core/quant.h"
#include "formats/gguf.h"
#include "text/llama_context.h"
#include "text/model_llama.h"

namespace aigc {
namespace {

// Blocks whose every byte is distinct enough to find (37: 2 full groups of 16 and a last group of 5).
std::vector<BlockQ4_0> blocks_make(int64_t nb) {
  std::vector<BlockQ4_0> b(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    b[i].d = static_cast<uint16_t>(0x3000 + i);  // small normal f16 values
    for (int j = 0; j < 16; ++j) b[i].qs[j] = static_cast<uint8_t>(i * 16 + j);
  }
  return b;
}

TEST(Q4_0_R16, PackLayoutByHand) {
  const int64_t nb = 37, n = nb * 32;
  const std::vector<BlockQ4_0> b = blocks_make(nb);
  std::vector<uint8_t> p(static_cast<size_t>(nb * 18));
  r16_pack(DType::Q4_0_R16, b.data(), p.data(), n);
  auto u16 = [&](size_t at) { return static_cast<uint16_t>(p[at] | p[at + 1] << 8); };
  // group 0: scales of blocks 0..15 at bytes 2L
  EXPECT_EQ(u16(0), b[0].d);
  EXPECT_EQ(u16(2 * 5), b[5].d);
  EXPECT_EQ(u16(2 * 15), b[15].d);
  // byte 32 + 64v + 32h + 4L + i = qs[4v + i] of block 8h + L
  EXPECT_EQ(p[32], b[0].qs[0]);                                  // v 0 h 0 L 0 i 0
  EXPECT_EQ(p[32 + 64 * 1 + 32 * 1 + 4 * 1 + 2], b[9].qs[6]);   // v 1 h 1 L 1 i 2
  EXPECT_EQ(p[32 + 64 * 3 + 32 * 1 + 4 * 7 + 3], b[15].qs[15]);  // the group's last byte
  EXPECT_EQ(p[32 + 64 * 2 + 4 * 3 + 1], b[3].qs[9]);             // v 2 h 0 L 3 i 1
  // group 1 starts at 288
  EXPECT_EQ(u16(288 + 2 * 3), b[19].d);
  EXPECT_EQ(p[288 + 32 + 64 * 0 + 32 * 1 + 4 * 6 + 0], b[30].qs[0]);
  // the last group, c = 5 blocks (32..36) at 576: scales at 2j, nibbles at 10 + 20v + 4j + i
  EXPECT_EQ(u16(576 + 2 * 4), b[36].d);
  EXPECT_EQ(p[576 + 10], b[32].qs[0]);                       // v 0 j 0 i 0
  EXPECT_EQ(p[576 + 10 + 20 * 2 + 4 * 3 + 1], b[35].qs[9]);  // v 2 j 3 i 1
  EXPECT_EQ(p[576 + 10 + 20 * 3 + 4 * 4 + 3], b[36].qs[15]);  // the row's last byte
  EXPECT_EQ(576 + 10 + 20 * 3 + 4 * 4 + 3 + 1, static_cast<int>(p.size()));

  std::vector<BlockQ4_0> back(static_cast<size_t>(nb));
  r16_unpack(DType::Q4_0_R16, p.data(), back.data(), n);
  EXPECT_EQ(std::memcmp(back.data(), b.data(), b.size() * sizeof(BlockQ4_0)), 0);
}

TEST(Q5_0_R16, PackLayoutByHand) {
  const int64_t nb = 37, n = nb * 32;
  std::vector<BlockQ5_0> b(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    b[i].d = static_cast<uint16_t>(0x3000 + i);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = static_cast<uint8_t>(i * 16 + j);
    const uint32_t qh = 0x9e3779b9u * static_cast<uint32_t>(i + 1);  // varied bits
    std::memcpy(b[i].qh, &qh, 4);
  }
  std::vector<uint8_t> p(static_cast<size_t>(nb * 22));
  r16_pack(DType::Q5_0_R16, b.data(), p.data(), n);
  auto u16 = [&](size_t at) { return static_cast<uint16_t>(p[at] | p[at + 1] << 8); };
  auto u32 = [&](size_t at) { uint32_t w; std::memcpy(&w, p.data() + at, 4); return w; };
  auto qh_bit = [&](int64_t blk, int e) { uint32_t w; std::memcpy(&w, b[blk].qh, 4); return (w >> e) & 1u; };
  // group 0: scales of blocks 0..15 at bytes 2L
  EXPECT_EQ(u16(0), b[0].d);
  EXPECT_EQ(u16(2 * 15), b[15].d);
  // fifth bits: block L's word at 32 + 4L; its bit 8i + v is qh bit 4v + i, bit 8i + 4 + v qh bit 16 + 4v + i
  for (int64_t blk : {0, 5, 9, 15})
    for (int v = 0; v < 4; ++v)
      for (int i = 0; i < 4; ++i) {
        EXPECT_EQ((u32(32 + 4 * blk) >> (8 * i + v)) & 1u, qh_bit(blk, 4 * v + i)) << blk << " " << v << " " << i;
        EXPECT_EQ((u32(32 + 4 * blk) >> (8 * i + 4 + v)) & 1u, qh_bit(blk, 16 + 4 * v + i)) << blk << " " << v << " " << i;
      }
  // nibbles: byte 96 + 64v + 32h + 4L + i = qs[4v + i] of block 8h + L
  EXPECT_EQ(p[96], b[0].qs[0]);
  EXPECT_EQ(p[96 + 64 * 1 + 32 * 1 + 4 * 1 + 2], b[9].qs[6]);
  EXPECT_EQ(p[96 + 64 * 3 + 32 * 1 + 4 * 7 + 3], b[15].qs[15]);  // the group's last byte
  // group 1 starts at 352
  EXPECT_EQ(u16(352 + 2 * 3), b[19].d);
  EXPECT_EQ(p[352 + 96 + 32 * 1 + 4 * 6], b[30].qs[0]);
  EXPECT_EQ((u32(352 + 32 + 4 * 14) >> (8 * 2 + 4 + 1)) & 1u, qh_bit(30, 16 + 4 * 1 + 2));  // i 2, v 1, high half
  // the last group, c = 5 blocks at 704: scales at 2j, fifth-bit words at 10 + 4j, nibbles at
  // 30 + 20v + 4j + i
  EXPECT_EQ(u16(704 + 2 * 4), b[36].d);
  for (int v = 0; v < 4; ++v)
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ((u32(704 + 10 + 4 * 3) >> (8 * i + v)) & 1u, qh_bit(35, 4 * v + i)) << v << " " << i;
      EXPECT_EQ((u32(704 + 10 + 4 * 3) >> (8 * i + 4 + v)) & 1u, qh_bit(35, 16 + 4 * v + i)) << v << " " << i;
    }
  EXPECT_EQ(p[704 + 30 + 20 * 1 + 4 * 2 + 3], b[34].qs[7]);   // v 1 j 2 i 3
  EXPECT_EQ(p[704 + 30 + 20 * 3 + 4 * 4 + 3], b[36].qs[15]);  // the row's last byte
  EXPECT_EQ(704 + 30 + 20 * 3 + 4 * 4 + 3 + 1, static_cast<int>(p.size()));

  std::vector<BlockQ5_0> back(static_cast<size_t>(nb));
  r16_unpack(DType::Q5_0_R16, p.data(), back.data(), n);
  EXPECT_EQ(std::memcmp(back.data(), b.data(), b.size() * sizeof(BlockQ5_0)), 0);
}

TEST(Q5_1_R16, PackLayoutByHandWithMins) {
  // as Q5_0_R16, with the 16 mins after the scales: scales at 0, mins at 32, fifth bits at 64,
  // nibbles at 128; Q4_1_R16: mins at 32, nibbles at 64
  const int64_t nb = 18, n = nb * 32;
  std::vector<BlockQ5_1> b(static_cast<size_t>(nb));
  std::vector<BlockQ4_1> c(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    b[i].d = c[i].d = static_cast<uint16_t>(0x3000 + i);
    b[i].m = c[i].m = static_cast<uint16_t>(0x3400 + i);
    for (int j = 0; j < 16; ++j) b[i].qs[j] = c[i].qs[j] = static_cast<uint8_t>(i * 16 + j);
    const uint32_t qh = 0x85ebca6bu * static_cast<uint32_t>(i + 3);
    std::memcpy(b[i].qh, &qh, 4);
  }
  std::vector<uint8_t> p(static_cast<size_t>(nb * 24)), p4(static_cast<size_t>(nb * 20));
  r16_pack(DType::Q5_1_R16, b.data(), p.data(), n);
  r16_pack(DType::Q4_1_R16, c.data(), p4.data(), n);
  auto u16 = [](const std::vector<uint8_t>& v, size_t at) { return static_cast<uint16_t>(v[at] | v[at + 1] << 8); };
  uint32_t w7, qh7;
  std::memcpy(&w7, p.data() + 64 + 4 * 7, 4);
  std::memcpy(&qh7, b[7].qh, 4);
  EXPECT_EQ(u16(p, 2 * 7), b[7].d);
  EXPECT_EQ(u16(p, 32 + 2 * 7), b[7].m);
  EXPECT_EQ((w7 >> (8 * 3 + 2)) & 1u, (qh7 >> (4 * 2 + 3)) & 1u);          // v 2, i 3, low half
  EXPECT_EQ((w7 >> (8 * 1 + 4 + 3)) & 1u, (qh7 >> (16 + 4 * 3 + 1)) & 1u);  // v 3, i 1, high half
  EXPECT_EQ(p[128 + 64 * 2 + 32 * 1 + 4 * 5 + 1], b[13].qs[9]);            // v 2 h 1 L 5 i 1
  // the last group, c = 2 blocks (16, 17) at 384: scales 2j, mins 4 + 2j, fifth bits 8 + 4j,
  // nibbles 16 + 8v + 4j + i
  uint32_t w17, qh17;
  std::memcpy(&w17, p.data() + 384 + 8 + 4, 4);
  std::memcpy(&qh17, b[17].qh, 4);
  EXPECT_EQ(u16(p, 384 + 2), b[17].d);
  EXPECT_EQ(u16(p, 384 + 4 + 2), b[17].m);
  EXPECT_EQ((w17 >> (8 * 2 + 4 + 1)) & 1u, (qh17 >> (16 + 4 * 1 + 2)) & 1u);  // v 1, i 2, high half
  EXPECT_EQ(p[384 + 16 + 8 * 3 + 4 * 1 + 2], b[17].qs[14]);                    // v 3 j 1 i 2
  EXPECT_EQ(u16(p4, 32 + 2 * 15), c[15].m);
  EXPECT_EQ(p4[64 + 64 * 2 + 32 * 1 + 4 * 5 + 1], c[13].qs[9]);
  // Q4_1_R16's last group at 320: scales 2j, mins 4 + 2j, nibbles 8 + 8v + 4j + i
  EXPECT_EQ(u16(p4, 320 + 4), c[16].m);
  EXPECT_EQ(p4[320 + 8 + 8 * 2 + 4 * 1 + 0], c[17].qs[8]);  // v 2 j 1 i 0
  std::vector<BlockQ5_1> back(static_cast<size_t>(nb));
  r16_unpack(DType::Q5_1_R16, p.data(), back.data(), n);
  EXPECT_EQ(std::memcmp(back.data(), b.data(), b.size() * sizeof(BlockQ5_1)), 0);
  std::vector<BlockQ4_1> back4(static_cast<size_t>(nb));
  r16_unpack(DType::Q4_1_R16, p4.data(), back4.data(), n);
  EXPECT_EQ(std::memcmp(back4.data(), c.data(), c.size() * sizeof(BlockQ4_1)), 0);
}

// The conversions of each R16 type are its file type's, through pack / unpack, and no file holds it.
TEST(R16, ConversionsAreTheFileTypesAndFilesNeverHoldThem) {
  struct Pair { DType file, r16; const char* name; };
  for (const Pair& pr : {Pair{DType::Q4_0, DType::Q4_0_R16, "q4_0_r16"}, Pair{DType::Q4_1, DType::Q4_1_R16, "q4_1_r16"},
                         Pair{DType::Q5_0, DType::Q5_0_R16, "q5_0_r16"}, Pair{DType::Q5_1, DType::Q5_1_R16, "q5_1_r16"}}) {
    SCOPED_TRACE(pr.name);
    const size_t bb = dtype_traits(pr.file).block_bytes;
    for (int64_t nb : {1, 15, 16, 17, 48, 50}) {
      const int64_t n = nb * 32;
      const Tensor x = test::random_f32({n}, static_cast<uint32_t>(nb));
      std::vector<uint8_t> q(static_cast<size_t>(nb) * bb), r(q.size()), packed(q.size());
      row_from_f32(pr.file, x.ptr<float>(), q.data(), n);
      row_from_f32(pr.r16, x.ptr<float>(), r.data(), n);
      r16_pack(pr.r16, q.data(), packed.data(), n);
      EXPECT_EQ(r, packed) << nb << " blocks";
      EXPECT_EQ(r16_of(pr.file), pr.r16);
      EXPECT_EQ(r16_file_type(pr.r16), pr.file);
      std::vector<float> a(static_cast<size_t>(n)), c(static_cast<size_t>(n));
      row_to_f32(pr.file, q.data(), a.data(), n);
      row_to_f32(pr.r16, r.data(), c.data(), n);
      EXPECT_EQ(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)), 0) << nb << " blocks";
    }
    EXPECT_EQ(dtype_name(pr.r16), pr.name);
    EXPECT_FALSE(dtype_traits_find(static_cast<uint32_t>(pr.r16)).has_value()) << "no file type id";
    EXPECT_FALSE(dtype_from_name(pr.name).has_value());
    EXPECT_EQ(*dtype_row_bytes(pr.r16, 512), *dtype_row_bytes(pr.file, 512));
  }
}

std::string tmp_path(const std::string& name) {
  return ::testing::TempDir() + "/aigc_repack_" + std::to_string(getpid()) + "_" + name;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A Llama GGUF with `type` (Q4_0, Q4_1, Q5_0, Q5_1) matrices wide enough to repack (n_embd 544: one group of
// 16 blocks and a tail of 1), f32 norms and embeddings; Q4_K: n_embd 512, n_ff 768 (3 blocks a
// row in the down projection) and a vocabulary of 48, every matrix's rows a multiple of 16; Q5_K, Q6_K the same.
void llama_write(const std::string& path, DType type) {
  const bool kq = type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K;
  const int64_t C = kq ? 512 : 544, F = kq ? 768 : 1088, V = kq ? 48 : 40, L = 2;
  GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("llama.context_length", uint32_t{64});
  w.metadata_add("llama.embedding_length", static_cast<uint32_t>(C));
  w.metadata_add("llama.block_count", static_cast<uint32_t>(L));
  w.metadata_add("llama.feed_forward_length", static_cast<uint32_t>(F));
  w.metadata_add("llama.attention.head_count", static_cast<uint32_t>(C / 32));  // head dim 32
  w.metadata_add("llama.attention.head_count_kv", static_cast<uint32_t>(C / 32));
  w.metadata_add("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  uint32_t seed = 11;
  auto add = [&](const std::string& name, std::initializer_list<int64_t> shape, bool q) {
    Tensor f = test::random_f32(shape, seed++, -0.2f, 0.2f);
    if (!q) return w.tensor_add(name, f);
    Tensor t = Tensor::empty(type, shape);
    ops::copy(f, t);
    w.tensor_add(name, t);
  };
  add("token_embd.weight", {V, C}, false);
  for (int64_t i = 0; i < L; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {C}, false);
    add(p + "attn_q.weight", {C, C}, true);
    add(p + "attn_k.weight", {C, C}, true);
    add(p + "attn_v.weight", {C, C}, true);
    add(p + "attn_output.weight", {C, C}, true);
    add(p + "ffn_norm.weight", {C}, false);
    add(p + "ffn_gate.weight", {F, C}, true);
    add(p + "ffn_up.weight", {F, C}, true);
    add(p + "ffn_down.weight", {C, F}, true);
  }
  add("output_norm.weight", {C}, false);
  add("output.weight", {V, C}, true);
  w.write(path);
}

// w (an R16 or X16 type) unpacked into a new tensor of its file type.
Tensor unpacked(const Tensor& w) {
  if (const std::optional<DType> ft = x16_file_type(w.type())) {
    Tensor q = Tensor::empty(*ft, w.shape());
    const size_t group = kX16Rows * w.stride_bytes(0);
    for (int64_t n = 0; n < w.size(0); n += kX16Rows)
      x16_unpack(w.type(), w.ptr<uint8_t>() + n * w.stride_bytes(0), q.ptr<uint8_t>() + n * w.stride_bytes(0), w.size(1));
    EXPECT_EQ(q.nbytes(), w.size(0) / kX16Rows * group);
    return q;
  }
  Tensor q = Tensor::empty(*r16_file_type(w.type()), w.shape());
  for (int64_t n = 0; n < w.size(0); ++n)
    r16_unpack(w.type(), static_cast<const uint8_t*>(w.row_ptr(n)), q.row_ptr(n), w.size(1));
  return q;
}

class R16Load : public ::testing::TestWithParam<DType> {};

TEST_P(R16Load, ModelLoadRepacksInPlaceAndKeepsTheLogits) {
  const DType file_type = GetParam();
  const std::string path = tmp_path(std::string(dtype_name(file_type)) + "_llama.gguf");
  llama_write(path, file_type);
  const std::vector<char> before = file_bytes(path);
  const std::optional<DType> r16 = ops::linear_repack_type(file_type, 48, x16_of(file_type) ? 512 : 544);
  const bool repacks = r16.has_value();
  for (bool mmap : {true, false}) {
    SCOPED_TRACE(mmap ? "mapped" : "read");
    LlamaModel m = LlamaModel::load(path, {.use_mmap = mmap});
    const DType want = repacks ? *r16 : file_type;
    EXPECT_EQ(dtype_name(m.layers[1].w_down.type()), dtype_name(want));
    EXPECT_EQ(dtype_name(m.output.type()), dtype_name(want));
    EXPECT_EQ(dtype_name(m.tok_embd.type()), "f32");
    // in place: the weight is still the file's own memory
    EXPECT_EQ(m.layers[0].wq.data(), m.file->tensor("blk.0.attn_q.weight").data());
    if (!repacks) continue;
    // the file now shows the rewritten weights as such: a second model over it takes them as they are
    const LlamaModel again = LlamaModel::from_gguf(m.file);
    EXPECT_EQ(dtype_name(again.layers[1].w_down.type()), dtype_name(*r16));
    EXPECT_EQ(again.layers[1].w_down.data(), m.layers[1].w_down.data());
    EXPECT_EQ(std::memcmp(again.output.data(), m.output.data(), m.output.nbytes()), 0);

    // a prompt's logits, then a decode step's
    auto logits_of = [](const LlamaModel& model) {
      LlamaContext ctx(model, {.n_ctx = 16});
      const int32_t prompt[] = {1, 7, 3, 39, 12, 5}, next = 9;
      const Tensor& l = ctx.eval(prompt);
      std::vector<float> v(l.ptr<float>(), l.ptr<float>() + l.numel());
      const Tensor& l2 = ctx.eval({&next, 1});
      v.insert(v.end(), l2.ptr<float>(), l2.ptr<float>() + l2.numel());
      return v;
    };
    const std::vector<float> got = logits_of(m);
    for (LlamaLayer& layer : m.layers)
      for (Tensor* w : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down})
        *w = unpacked(*w);
    m.output = unpacked(m.output);
    const std::vector<float> want_logits = logits_of(m);
    // the same integer block sums, summed in another order: f32 rounding apart, which the Q8_0
    // quantisation of the next linear's activations can turn into a step of one activation (Q4_1's
    // decode step: 4.7e-3 max|logit|, where every other logit here differs by under 1e-7). A wrong
    // nibble, bit, scale or min moves the logits by a good part of max|logit|.
    ASSERT_EQ(got.size(), want_logits.size());
    double amax = 0;
    for (float v : want_logits) amax = std::max(amax, std::fabs(static_cast<double>(v)));
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want_logits[i], 1e-2 * amax) << "logit " << i;
  }
  EXPECT_EQ(file_bytes(path), before) << "the file on disk is never written";
  std::filesystem::remove(path);
}

INSTANTIATE_TEST_SUITE_P(FileTypes, R16Load, ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K,
                                                               DType::Q5_K, DType::Q6_K),
                         [](const ::testing::TestParamInfo<DType>& i) { return std::string(dtype_name(i.param)); });

}  // namespace
}  // namespace aigc
