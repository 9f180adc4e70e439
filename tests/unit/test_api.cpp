// The public C API: errors become status codes and messages, never exceptions.
#include <gtest/gtest.h>

#include <string>

#include "aigc/aigc.h"
#include "common/refdump.h"
#include "formats/gguf.h"

TEST(Api, Version) { EXPECT_STREQ(aigc_version(), AIGC_VERSION); }

TEST(Api, MissingFileIsAStatusWithMessage) {
  aigc_model_file* f = reinterpret_cast<aigc_model_file*>(0x1);
  EXPECT_EQ(aigc_model_file_open("/nonexistent.gguf", &f), AIGC_ERROR_FILE);
  EXPECT_EQ(f, nullptr);
  EXPECT_NE(std::string(aigc_last_error()).find("/nonexistent.gguf"), std::string::npos);
  EXPECT_EQ(aigc_model_file_open(nullptr, &f), AIGC_ERROR_INVALID_ARGUMENT);
  aigc_model_file_free(nullptr);
}

TEST(Api, ReadsAGgufFile) {
  const std::string path = ::testing::TempDir() + "/api_test.gguf";
  aigc::GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("llama.block_count", uint32_t{3});
  aigc::Tensor t = aigc::Tensor::zeros(aigc::DType::F16, {4, 8});
  w.tensor_add("w", t);
  w.write(path);
  aigc_model_file* f = nullptr;
  ASSERT_EQ(aigc_model_file_open(path.c_str(), &f), AIGC_OK) << aigc_last_error();
  EXPECT_STREQ(aigc_model_file_format(f), "GGUF v3");
  EXPECT_STREQ(aigc_model_file_metadata(f, "general.architecture"), "llama");
  EXPECT_STREQ(aigc_model_file_metadata(f, "llama.block_count"), "3");
  EXPECT_EQ(aigc_model_file_metadata(f, "absent"), nullptr);
  ASSERT_EQ(aigc_model_file_tensor_count(f), 1);
  aigc_tensor_desc d;
  ASSERT_EQ(aigc_model_file_tensor(f, 0, &d), AIGC_OK);
  EXPECT_STREQ(d.name, "w");
  EXPECT_STREQ(d.type_name, "f16");
  EXPECT_EQ(d.n_dims, 2);
  EXPECT_EQ(d.shape[0], 4);
  EXPECT_EQ(d.shape[1], 8);
  EXPECT_EQ(d.nbytes, 64u);
  EXPECT_EQ(aigc_model_file_tensor(f, 1, &d), AIGC_ERROR_INVALID_ARGUMENT);
  aigc_model_file_free(f);
}

TEST(Api, ReadsRealSafetensors) {
  const std::string shared = aigc::test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared not found (set AIGC_SHARED)";
  aigc_model_file* f = nullptr;
  ASSERT_EQ(aigc_model_file_open((shared + "/models/taesd/taef2_decoder.safetensors").c_str(), &f), AIGC_OK)
      << aigc_last_error();
  EXPECT_STREQ(aigc_model_file_format(f), "safetensors");
  EXPECT_EQ(aigc_model_file_tensor_count(f), 79);
  aigc_model_file_free(f);
}
