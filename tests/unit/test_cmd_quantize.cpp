// aigc quantize: a small f32/f16 GGUF written here is quantised to every target type through the
// command line; the output's tensor types follow the documented rules (and llama.cpp's K-quant
// mixes), its metadata is kept (with general.file_type set), and the dequantised weights are close
// to the originals. Bad input gives a one-line error.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "common/compare.h"
#include "common/run_cli.h"
#include "core/half.h"
#include "core/quant.h"
#include "formats/gguf.h"

using namespace aigc;
using aigc::test::cli_run;

namespace {

int line_count(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

std::string tmp_path(const std::string& name) {
  return "/tmp/aigc_test_quantize_" + std::to_string(getpid()) + "_" + name;
}

Tensor f16_of(const Tensor& f) {
  Tensor h = Tensor::empty(DType::F16, f.shape());
  for (int64_t i = 0; i < f.numel(); ++i) h.ptr<uint16_t>()[i] = f16_from_f32(f.ptr<float>()[i]);
  return h;
}

// A llama-like toy model: embeddings, one layer's matrices (one f16, one with rows of 96: not a
// multiple of 256), a norm, a bias, an output matrix.
struct Toy {
  std::string path;
  std::vector<std::pair<std::string, Tensor>> tensors;  // originals (f32 values)
};

Toy toy_write() {
  Toy toy{tmp_path("in.gguf"), {}};
  GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("general.name", "toy");
  w.metadata_add("general.file_type", uint32_t{0});
  w.metadata_add("llama.block_count", uint32_t{1});
  w.metadata_add("tokenizer.ggml.tokens", GgufValue::array(std::vector<std::string>{"a", "b"}));
  const auto add = [&](const std::string& name, Tensor t, bool as_f16) {
    toy.tensors.emplace_back(name, t);
    w.tensor_add(name, as_f16 ? f16_of(t) : t);
  };
  add("token_embd.weight", test::random_f32({7, 512}, 1), false);
  add("blk.0.attn_q.weight", test::random_f32({33, 512}, 2), false);
  add("blk.0.ffn_down.weight", test::random_f32({17, 256}, 3, -0.1f, 0.1f), true);  // stored f16
  add("blk.0.odd.weight", test::random_f32({5, 96}, 4), false);                     // K = 96
  add("blk.0.attn_norm.weight", test::random_f32({512}, 5), false);
  add("blk.0.attn_q.bias", test::random_f32({33}, 6), false);
  add("output.weight", test::random_f32({7, 512}, 7), false);
  w.write(toy.path);
  return toy;
}

// Largest relative root-mean-square error a type's rounding allows on uniform data: the step is
// range / levels, the rms error of rounding to it step / sqrt(12), the rms of U(-a, a) a / sqrt(3);
// so step/sqrt(12) / (a/sqrt(3)) = 1 / levels (levels - 1 steps over 2a). Checked with 30 % margin
// for the f16 scales and clamping; q4_K etc. do no worse than their legacy cousins on uniform data.
double rms_ratio_allowed(DType t) {
  switch (t) {
    case DType::Q4_0: case DType::Q4_1: case DType::Q4_K: return 1.3 / 15;
    case DType::Q5_0: case DType::Q5_1: case DType::Q5_K: return 1.3 / 31;
    case DType::Q6_K: return 1.3 / 63;
    case DType::Q8_0: return 1.3 / 254;
    default: return 1e-7;  // f32: exact; f16 from f16: exact
  }
}

}  // namespace

TEST(CmdQuantize, EveryTypeGivesTheDocumentedTypesAndCloseValues) {
  const Toy toy = toy_write();
  const std::string out = tmp_path("out.gguf");
  const std::pair<const char*, uint32_t> targets[] = {{"q4_0", 2}, {"q4_1", 3}, {"q8_0", 7}, {"q5_0", 8},
                                                      {"q5_1", 9}, {"q4_K", 14}, {"q5_K", 16}, {"Q6_K", 18}};
  for (const auto& [name, ftype] : targets) {
    SCOPED_TRACE(name);
    const auto r = cli_run({"quantize", toy.path, out, "--type", name});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const DType t = *dtype_from_name(name);
    const bool kq = dtype_traits(t).block_size == 256;
    const GgufFile f = GgufFile::open(out);
    EXPECT_EQ(f.get_u32("general.file_type"), ftype);
    EXPECT_EQ(f.get_u32("general.quantization_version"), 2u);
    EXPECT_EQ(f.get_string("general.name"), "toy");
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings(), (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(f.tensor_infos().size(), toy.tensors.size());

    for (const auto& [tname, orig] : toy.tensors) {
      SCOPED_TRACE(tname);
      const Tensor q = f.tensor(tname);
      DType want = t;
      if (tname == "output.weight" && t != DType::Q8_0 && t != DType::Q6_K) want = DType::Q6_K;
      if (tname == "blk.0.odd.weight" && kq) want = t == DType::Q4_K ? DType::Q5_0 : t == DType::Q5_K ? DType::Q5_1 : DType::Q8_0;
      if (orig.ndim() == 1) want = DType::F32;
      EXPECT_EQ(dtype_name(q.type()), dtype_name(want));
      ASSERT_EQ(std::vector<int64_t>(q.shape().begin(), q.shape().end()),
                std::vector<int64_t>(orig.shape().begin(), orig.shape().end()));

      // dequantised values against the originals (the f16-stored one against its f16 values)
      const int64_t rows = orig.ndim() == 1 ? 1 : orig.size(0), k = orig.size(-1);
      const bool stored_f16 = tname == "blk.0.ffn_down.weight";
      std::vector<float> got(k);
      double err2 = 0, x2 = 0, amax = 0;
      for (int64_t r = 0; r < rows; ++r) {
        row_to_f32(q.type(), orig.ndim() == 1 ? q.data() : q.row_ptr(r), got.data(), k);
        for (int64_t j = 0; j < k; ++j) {
          float x = orig.ptr<float>()[r * k + j];
          if (stored_f16) x = f16_to_f32(f16_from_f32(x));
          err2 += (got[j] - x) * static_cast<double>(got[j] - x);
          x2 += static_cast<double>(x) * x;
          amax = std::max(amax, std::fabs(static_cast<double>(got[j] - x)));
        }
      }
      const double ratio = std::sqrt(err2 / x2);
      EXPECT_LE(ratio, rms_ratio_allowed(q.type())) << "relative rms error";
      if (q.type() == DType::F32) {
        EXPECT_EQ(amax, 0.0);
      }
    }
  }
  std::remove(out.c_str());
  std::remove(toy.path.c_str());
}

// The K-quant mixes on an 8-layer model: which matrices get more bits, spelled out by hand from
// llama.cpp's rules (src/llama-quant.cpp, llama_tensor_get_type): with n = 8 layers, use_more_bits
// holds for layers 0 (i < n/8), 7 (i >= 7n/8), 3 and 6 ((i - n/8) % 3 == 2).
TEST(CmdQuantize, KQuantMixesGiveLlamaCppsTypes) {
  const std::string in = tmp_path("mix_in.gguf"), out = tmp_path("mix_out.gguf");
  {
    GgufWriter w;
    w.metadata_add("general.architecture", "llama");
    w.metadata_add("llama.block_count", uint32_t{8});
    w.tensor_add("token_embd.weight", test::random_f32({4, 256}, 1));
    for (int i = 0; i < 8; ++i) {
      const std::string b = "blk." + std::to_string(i) + ".";
      w.tensor_add(b + "attn_q.weight", test::random_f32({2, 256}, 10 + i));
      w.tensor_add(b + "attn_v.weight", test::random_f32({2, 256}, 20 + i));
      w.tensor_add(b + "ffn_down.weight", test::random_f32({2, 256}, 30 + i));
      w.tensor_add(b + "attn_norm.weight", test::random_f32({256}, 40 + i));
    }
    w.tensor_add("output.weight", test::random_f32({4, 256}, 2));
    w.write(in);
  }
  const DType q4 = DType::Q4_K, q5 = DType::Q5_K, q6 = DType::Q6_K;
  struct Want {
    const char* type;
    uint32_t ftype;
    DType base;
    std::vector<DType> attn_v, ffn_down;  // layers 0..7
  };
  const Want wants[] = {
      {"q4_K_M", 15, q4, {q6, q4, q4, q6, q4, q4, q6, q6}, {q6, q4, q4, q6, q4, q4, q6, q6}},
      {"Q5_K_M", 17, q5, {q6, q5, q5, q6, q5, q5, q6, q6}, {q6, q5, q5, q6, q5, q5, q6, q6}},
      {"q4_K_S", 14, q4, {q5, q5, q5, q5, q4, q4, q4, q4}, {q5, q4, q4, q4, q4, q4, q4, q4}},
      {"q5_K_S", 16, q5, {q5, q5, q5, q5, q5, q5, q5, q5}, {q5, q5, q5, q5, q5, q5, q5, q5}},
      {"q4_K", 14, q4, {q4, q4, q4, q4, q4, q4, q4, q4}, {q4, q4, q4, q4, q4, q4, q4, q4}},
  };
  for (const Want& want : wants) {
    SCOPED_TRACE(want.type);
    const auto r = cli_run({"quantize", in, out, "--type", want.type});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // not a terminal: no progress lines, one summary
    EXPECT_EQ(r.err.rfind("aigc: wrote " + out + " (", 0), 0u) << r.err;
    EXPECT_EQ(line_count(r.err), 1) << r.err;
    const GgufFile f = GgufFile::open(out);
    EXPECT_EQ(f.get_u32("general.file_type"), want.ftype);
    EXPECT_EQ(dtype_name(f.tensor("output.weight").type()), dtype_name(q6));
    EXPECT_EQ(dtype_name(f.tensor("token_embd.weight").type()), dtype_name(want.base));
    for (int i = 0; i < 8; ++i) {
      const std::string b = "blk." + std::to_string(i) + ".";
      EXPECT_EQ(dtype_name(f.tensor(b + "attn_q.weight").type()), dtype_name(want.base)) << i;
      EXPECT_EQ(dtype_name(f.tensor(b + "attn_v.weight").type()), dtype_name(want.attn_v[i])) << i;
      EXPECT_EQ(dtype_name(f.tensor(b + "ffn_down.weight").type()), dtype_name(want.ffn_down[i])) << i;
      EXPECT_EQ(dtype_name(f.tensor(b + "attn_norm.weight").type()), "f32") << i;
    }
  }
  // a fused attn_qkv (Phi-3): q5_K under q4_K_M, q6_K under q5_K_M
  {
    GgufWriter w;
    w.metadata_add("general.architecture", "phi3");
    w.metadata_add("phi3.block_count", uint32_t{1});
    w.tensor_add("blk.0.attn_qkv.weight", test::random_f32({6, 256}, 3));
    w.tensor_add("output.weight", test::random_f32({4, 256}, 4));
    w.write(in);
  }
  for (const auto& [type, want] : {std::pair{"q4_K_M", q5}, std::pair{"q5_K_M", q6}}) {
    const auto r = cli_run({"quantize", in, out, "--type", type, "-q"});
    EXPECT_EQ(r.err, "") << "--quiet";
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(dtype_name(GgufFile::open(out).tensor("blk.0.attn_qkv.weight").type()), dtype_name(want)) << type;
  }
  std::remove(out.c_str());
  std::remove(in.c_str());
}

TEST(CmdQuantize, BadInputIsOneLineError) {
  const Toy toy = toy_write();
  const std::string out = tmp_path("bad_out.gguf");

  auto r = cli_run({"quantize", toy.path, out, "--type", "q3_X"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("q3_X"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("q4_K"), std::string::npos) << "the hint lists the types: " << r.err;

  r = cli_run({"quantize", toy.path, out, "--type", "f32"});  // a known type, not a target
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(line_count(r.err), 1) << r.err;

  const std::string text = tmp_path("not.gguf");
  std::ofstream(text) << "this is not a model\n";
  r = cli_run({"quantize", text, out, "--type", "q8_0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("aigc: error: ", 0), 0u) << r.err;

  r = cli_run({"quantize", "/nonexistent/in.gguf", out, "--type", "q8_0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(line_count(r.err), 1) << r.err;

  r = cli_run({"quantize", toy.path, out});  // --type missing
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(line_count(r.err), 1) << r.err;

  EXPECT_NE(access(out.c_str(), F_OK), 0) << "no output written on failure";
  std::remove(text.c_str());
  std::remove(toy.path.c_str());
}
