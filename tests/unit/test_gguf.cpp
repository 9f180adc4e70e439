// GGUF reader and writer: hand-built bytes (valid and hostile), round trips, the spec twin
// (tests/ref/twin_gguf.py, plain struct from the spec) and real llama.cpp vocab files from ../shared.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "common/compare.h"
#include "common/refdump.h"
#include "core/quant.h"
#include "formats/gguf.h"

using namespace aigc;
namespace fs = std::filesystem;

namespace {

// Little-endian byte builder for crafted files.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T> Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& u8(uint8_t v) { return put(v); }
  Bytes& u32(uint32_t v) { return put(v); }
  Bytes& u64(uint64_t v) { return put(v); }
  Bytes& raw(std::string_view s) {
    for (char c : s) b.push_back(static_cast<uint8_t>(c));  // (insert() trips a GCC 12 false warning)
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& type(GgufType t) { return u32(static_cast<uint32_t>(t)); }
  Bytes& key(std::string_view k, GgufType t) { return str(k).type(t); }
  Bytes& array_header(GgufType elem, uint64_t n) { return type(elem).u64(n); }
  // Tensor info: ne in GGML order (innermost first).
  Bytes& tensor(std::string_view name, std::initializer_list<uint64_t> ne, uint32_t ggml_type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t n : ne) u64(n);
    return u32(ggml_type).u64(offset);
  }
  Bytes& pad(size_t a) {
    while (b.size() % a) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
  size_t size() const { return b.size(); }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes x;
  x.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  return x;
}

GgufFile parse(const Bytes& x) { return GgufFile::parse(x.b, nullptr, "test.gguf"); }

// The parse throws one aigc::Error whose what/where contain the given text, with a hint.
::testing::AssertionResult fails_with(const std::vector<uint8_t>& bytes, std::string_view what,
                                      std::string_view where = {}) {
  try {
    GgufFile::parse(bytes, nullptr, "test.gguf");
  } catch (const Error& e) {
    if (e.what_msg().find(what) == std::string::npos)
      return ::testing::AssertionFailure() << "error '" << e.what() << "' lacks '" << what << "'";
    if (e.where().find("test.gguf") == std::string::npos || e.where().find(where) == std::string::npos)
      return ::testing::AssertionFailure() << "error '" << e.what() << "': where lacks 'test.gguf' or '" << where << "'";
    if (e.hint().empty()) return ::testing::AssertionFailure() << "error '" << e.what() << "' has no hint";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-aigc exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "parsed without an error";
}
::testing::AssertionResult fails_with(const Bytes& x, std::string_view what, std::string_view where = {}) {
  return fails_with(x.b, what, where);
}

std::string temp_path(const std::string& name) {
  return (fs::path(::testing::TempDir()) / (std::to_string(getpid()) + "_" + name)).string();
}

std::vector<uint8_t> file_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A valid file with metadata of several kinds and two tensors; the last tensor's data ends exactly
// at the end of the file, so every strict prefix is truncated somewhere that matters.
Bytes rich_file() {
  Bytes x = header(2, 6);
  x.key("general.architecture", GgufType::STRING).str("llama");
  x.key("a.count", GgufType::UINT32).u32(7);
  x.key("a.flag", GgufType::BOOL).u8(1);
  x.key("a.scores", GgufType::ARRAY).array_header(GgufType::FLOAT32, 3).put(0.5f).put(-1.0f).put(2.0f);
  x.key("a.tokens", GgufType::ARRAY).array_header(GgufType::STRING, 2).str("<s>").str("hi");
  x.key("a.nested", GgufType::ARRAY).array_header(GgufType::ARRAY, 2);
  x.array_header(GgufType::INT16, 1).put(int16_t{-3});
  x.array_header(GgufType::ARRAY, 1).array_header(GgufType::BOOL, 2).u8(0).u8(1);
  x.tensor("w", {3, 2}, 0, 0);   // f32 [2, 3]: 24 bytes, padded to 32
  x.tensor("b", {8}, 0, 32);     // f32 [8]: 32 bytes, ends the file
  x.pad(32);
  for (int i = 0; i < 6; ++i) x.put(static_cast<float>(i));
  for (int i = 0; i < 2; ++i) x.put(0.0f);
  for (int i = 0; i < 8; ++i) x.put(static_cast<float>(10 + i));
  return x;
}

// Parses without crashing and, when the parse succeeds, every tensor lies inside the bytes.
void parse_must_be_safe(const std::vector<uint8_t>& bytes) {
  try {
    GgufFile f = GgufFile::parse(bytes, nullptr, "test.gguf");
    uint64_t sum = 0;
    for (const TensorInfo& ti : f.tensor_infos()) {
      ASSERT_LE(ti.offset, bytes.size());
      ASSERT_LE(ti.nbytes, bytes.size() - ti.offset);
      Tensor t = f.tensor(ti.name);
      const auto* p = static_cast<const uint8_t*>(t.data());
      ASSERT_EQ(t.nbytes(), ti.nbytes);
      for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
    }
    for (const GgufKV& kv : f.metadata()) {
      (void)kv.value.to_string();
      (void)kv.value.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    (void)sum;
  } catch (const Error&) {
  } catch (const std::exception& e) {
    FAIL() << "non-aigc exception: " << e.what();
  }
}

}  // namespace

// ---- valid files ------------------------------------------------------------------------------

TEST(Gguf, MinimalFile) {
  GgufFile f = parse(header(0, 0));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensor_infos().empty());
  EXPECT_EQ(parse(header(0, 0, 2)).version(), 2u);  // v2: same layout
}

TEST(Gguf, EveryScalarType) {
  Bytes x = header(0, 13);
  x.key("u8", GgufType::UINT8).u8(250);
  x.key("i8", GgufType::INT8).put(int8_t{-5});
  x.key("u16", GgufType::UINT16).put(uint16_t{65000});
  x.key("i16", GgufType::INT16).put(int16_t{-32000});
  x.key("u32", GgufType::UINT32).u32(4000000000u);
  x.key("i32", GgufType::INT32).put(int32_t{-7});
  x.key("f32", GgufType::FLOAT32).put(1.5f);
  x.key("b", GgufType::BOOL).u8(0);
  x.key("s", GgufType::STRING).str("tab\there");
  x.key("arr", GgufType::ARRAY).array_header(GgufType::UINT64, 2).u64(1).u64(2);
  x.key("u64", GgufType::UINT64).u64(~0ull);
  x.key("i64", GgufType::INT64).put(int64_t{-9000000000});
  x.key("f64", GgufType::FLOAT64).put(-0.25);
  GgufFile f = parse(x);
  ASSERT_EQ(f.metadata().size(), 13u);
  EXPECT_EQ(f.get("u8").as<uint8_t>(), 250);
  EXPECT_EQ(f.get("i8").as<int8_t>(), -5);
  EXPECT_EQ(f.get("u16").as<uint16_t>(), 65000);
  EXPECT_EQ(f.get("i16").as<int16_t>(), -32000);
  EXPECT_EQ(f.get_u32("u32"), 4000000000u);
  EXPECT_EQ(f.get("i32").as<int32_t>(), -7);
  EXPECT_EQ(f.get_f32("f32"), 1.5f);
  EXPECT_FALSE(f.get_bool("b"));
  EXPECT_EQ(f.get_string("s"), "tab\there");
  EXPECT_EQ(f.get_array("arr", GgufType::UINT64).array_values<uint64_t>(), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(f.get("u64").as<uint64_t>(), ~0ull);
  EXPECT_EQ(f.get("i64").as<int64_t>(), -9000000000);
  EXPECT_EQ(f.get("f64").as<double>(), -0.25);
  EXPECT_EQ(f.metadata()[0].key, "u8");  // file order kept
  EXPECT_EQ(f.metadata()[12].key, "f64");
}

TEST(Gguf, TypedGettersSayWhatIsWrong) {
  Bytes x = header(0, 4);
  x.key("s", GgufType::STRING).str("x");
  x.key("n32", GgufType::UINT32).u32(5);
  x.key("neg", GgufType::INT32).put(int32_t{-1});
  x.key("toks", GgufType::ARRAY).array_header(GgufType::STRING, 1).str("a");
  GgufFile f = parse(x);
  try {
    f.get_u32("s");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.what_msg().find("key 's' has type string, expected uint32"), std::string::npos) << e.what();
    EXPECT_EQ(e.where(), "test.gguf");
  }
  EXPECT_THROW(f.get_string("missing"), Error);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.get_uint("n32"), 5u);
  EXPECT_THROW(f.get_uint("neg"), Error);
  EXPECT_THROW(f.get_uint("s"), Error);
  EXPECT_THROW(f.get_array("toks", GgufType::INT32), Error);
  EXPECT_EQ(f.get_array("toks", GgufType::STRING).array_strings()[0], "a");
  EXPECT_THROW(f.get("toks").array_values<int32_t>(), Error);
  EXPECT_THROW(f.get("n32").as<int32_t>(), Error);
  EXPECT_THROW(f.get("n32").at(0), Error);
}

TEST(Gguf, TensorsAreZeroCopyViewsInPyTorchOrder) {
  Bytes x = header(2, 1);
  x.key("general.alignment", GgufType::UINT32).u32(16);
  x.tensor("w", {3, 2}, 0, 0);    // ne [3, 2] -> PyTorch [2, 3]
  x.tensor("s", {}, 0, 32);       // 0 dims: a scalar
  x.pad(16);
  const size_t data = x.size();
  for (int i = 0; i < 6; ++i) x.put(static_cast<float>(i));
  x.zeros(8).put(42.0f).pad(16);
  auto owner = std::make_shared<std::vector<uint8_t>>(x.b);
  GgufFile f = GgufFile::parse(*owner, owner, "mem.gguf");
  EXPECT_EQ(f.alignment(), 16u);
  EXPECT_EQ(f.data_offset(), data);
  const TensorInfo* ti = f.tensor_info_find("w");
  ASSERT_NE(ti, nullptr);
  EXPECT_EQ(ti->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ti->type, DType::F32);
  EXPECT_EQ(ti->type_name, "f32");
  EXPECT_EQ(ti->offset, data);
  EXPECT_EQ(ti->nbytes, 24u);
  EXPECT_EQ(ti->file, "mem.gguf");
  Tensor w = f.tensor("w");
  EXPECT_EQ(w.data(), owner->data() + data);  // no copy
  EXPECT_EQ(w.owner(), owner);
  EXPECT_EQ(w.name, "w");
  EXPECT_EQ(w.at<float>(1, 2), 5.0f);
  Tensor s = f.tensor("s");
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(*s.ptr<float>(), 42.0f);
  EXPECT_THROW(f.tensor("nope"), Error);
}

TEST(Gguf, OpenMappedAndRead) {
  const std::string path = temp_path("open.gguf");
  {
    std::ofstream o(path, std::ios::binary);
    const Bytes x = rich_file();
    o.write(reinterpret_cast<const char*>(x.b.data()), static_cast<std::streamsize>(x.size()));
  }
  for (bool mmap : {true, false}) {
    GgufFile f = GgufFile::open(path, {.use_mmap = mmap});
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.tensor_infos().size(), 2u);
    Tensor b = f.tensor("b");
    EXPECT_EQ(b.at<float>(7), 17.0f);
    EXPECT_EQ(f.tensor_infos()[0].file, path);
  }
  fs::remove(path);
  EXPECT_THROW(GgufFile::open(path), Error);
}

TEST(Gguf, NestedArraysAndPrinting) {
  GgufFile f = parse(rich_file());
  const GgufValue& n = f.get("a.nested");
  EXPECT_EQ(n.type_str(), "array<array>");
  ASSERT_EQ(n.size(), 2u);
  EXPECT_EQ(n.array_arrays()[0].array_values<int16_t>(), std::vector<int16_t>{-3});
  EXPECT_EQ(n.array_arrays()[1].array_arrays()[0].array_values<bool>(), (std::vector<bool>{false, true}));
  EXPECT_EQ(n.to_string(), "[[-3], [[false, true]]]");
  EXPECT_EQ(f.get("a.scores").to_string(), "[0.5, -1, 2]");
  EXPECT_EQ(f.get("a.tokens").to_string(), "[\"<s>\", \"hi\"]");
  EXPECT_EQ(f.get("a.tokens").to_json(), nlohmann::json::parse(R"(["<s>", "hi"])"));
  EXPECT_EQ(n.to_json(), nlohmann::json::parse("[[-3], [[false, true]]]"));

  std::vector<uint32_t> many(100);
  for (uint32_t i = 0; i < 100; ++i) many[i] = i;
  const GgufValue big = GgufValue::array(many);
  EXPECT_EQ(big.to_string(), "[0, 1, 2, 3, 4, 5, 6, 7, ...] (100 items)");
  EXPECT_EQ(big.to_string(2), "[0, 1, ...] (100 items)");
  EXPECT_EQ(big.to_json(3), nlohmann::json::parse("[0, 1, 2]"));
  EXPECT_EQ(big.to_json().size(), 100u);
  EXPECT_EQ(GgufValue(std::string(100, 'a')).to_string(8, 4), "\"aaaa\"... (100 bytes)");
  EXPECT_EQ(GgufValue("q\"\n\x01").to_string(), "\"q\\\"\\n\\x01\"");
  EXPECT_EQ(GgufValue(true).to_json(), nlohmann::json(true));
  EXPECT_EQ(GgufValue(uint64_t{1} << 63).to_json().get<uint64_t>(), uint64_t{1} << 63);
}

// ---- hostile input ----------------------------------------------------------------------------

TEST(GgufHostile, HeaderErrors) {
  EXPECT_TRUE(fails_with(Bytes{}, "too short"));
  EXPECT_TRUE(fails_with(Bytes().raw("GGU"), "too short"));
  EXPECT_TRUE(fails_with(Bytes().raw("GGUX").u32(3).u64(0).u64(0), "not a GGUF file", "byte 0"));
  Bytes ggjt;
  ggjt.raw("tjgg").u32(3).u64(0);
  try {
    parse(ggjt);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("re-convert"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fails_with(Bytes().raw("GGUF"), "file ends inside the header", "byte 4"));
  EXPECT_TRUE(fails_with(Bytes().raw("GGUF").u32(3).u64(0), "file ends inside the header", "byte 16"));
  try {
    parse(header(0, 0, 1));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.what_msg().find("version 1 is not supported"), std::string::npos);
    EXPECT_NE(e.hint().find("re-convert"), std::string::npos);
    EXPECT_EQ(e.where(), "test.gguf, byte 4");
  }
  Bytes be;
  be.raw("GGUF").u32(__builtin_bswap32(3)).u64(0).u64(0);
  EXPECT_TRUE(fails_with(be, "big-endian", "byte 4"));
  EXPECT_TRUE(fails_with(header(0, 0, 4), "unsupported GGUF version 4"));
  EXPECT_TRUE(fails_with(header(0, 0, 0), "unsupported GGUF version 0"));
}

TEST(GgufHostile, AbsurdCounts) {
  EXPECT_TRUE(fails_with(header(uint64_t{1} << 60, 0), "tensor count 1152921504606846976 is impossible"));
  EXPECT_TRUE(fails_with(header(0, uint64_t{1} << 60), "metadata count"));
  EXPECT_TRUE(fails_with(header(~0ull, ~0ull), "impossible"));
  // Each count alone fits, together they cannot.
  Bytes x = header(1, 2);
  x.zeros(40);
  EXPECT_TRUE(fails_with(x, "cannot fit"));
}

TEST(GgufHostile, StringsPastTheEnd) {
  Bytes a = header(0, 1);
  a.u64(1000).raw("general");  // key length past the end
  EXPECT_TRUE(fails_with(a, "metadata key of 1000 bytes runs past the end", "byte 24"));
  Bytes b = header(0, 1);
  b.key("k", GgufType::STRING).u64(~0ull).raw("abc");
  EXPECT_TRUE(fails_with(b, "string value of 18446744073709551615 bytes runs past the end", "key \"k\""));
  Bytes c = header(0, 1);
  c.key("k", GgufType::ARRAY).array_header(GgufType::STRING, 2).str("ok").u64(50).raw("short");
  EXPECT_TRUE(fails_with(c, "string in an array of 50 bytes runs past the end"));
  Bytes d = header(0, 1);
  d.u64(65536).zeros(65536 + 8);
  EXPECT_TRUE(fails_with(d, "more than the limit of 65535"));
  Bytes e = header(0, 1);
  e.key("", GgufType::UINT8).u8(0).zeros(1);
  EXPECT_TRUE(fails_with(e, "empty metadata key"));
}

TEST(GgufHostile, MetadataValues) {
  Bytes dup = header(0, 2);
  dup.key("k", GgufType::UINT8).u8(1);
  const size_t second = dup.size();
  dup.key("k", GgufType::UINT8).u8(2);
  EXPECT_TRUE(fails_with(dup, "duplicate metadata key", fmt::format("byte {}, key \"k\"", second)));

  Bytes type = header(0, 1);
  type.key("k", static_cast<GgufType>(13)).u8(0);
  EXPECT_TRUE(fails_with(type, "unknown metadata value type 13"));

  Bytes bad_bool = header(0, 1);
  bad_bool.key("k", GgufType::BOOL).u8(2);
  EXPECT_TRUE(fails_with(bad_bool, "invalid bool byte 0x02"));
  Bytes bad_bool_arr = header(0, 1);
  bad_bool_arr.key("k", GgufType::ARRAY).array_header(GgufType::BOOL, 3).u8(1).u8(0).u8(0xff);
  EXPECT_TRUE(fails_with(bad_bool_arr, "invalid bool byte 0xff in an array"));

  Bytes huge = header(0, 1);
  huge.key("k", GgufType::ARRAY).array_header(GgufType::UINT32, uint64_t{1} << 62).u32(1);
  EXPECT_TRUE(fails_with(huge, "cannot fit in the 4 bytes left"));
  Bytes huge_str = header(0, 1);
  huge_str.key("k", GgufType::ARRAY).array_header(GgufType::STRING, 3).u64(0).u64(0);  // needs 24 bytes
  EXPECT_TRUE(fails_with(huge_str, "array of 3 string elements cannot fit"));
  Bytes elem = header(0, 1);
  elem.key("k", GgufType::ARRAY).array_header(static_cast<GgufType>(99), 0);
  EXPECT_TRUE(fails_with(elem, "array of unknown metadata value type 99"));
  Bytes cut = header(0, 1);
  cut.key("k", GgufType::FLOAT64).u32(0);
  EXPECT_TRUE(fails_with(cut, "file ends inside a float64 value"));
}

TEST(GgufHostile, NestingDepthLimit) {
  auto nested = [](int levels) {
    Bytes x = header(0, 1);
    x.key("deep", GgufType::ARRAY);
    for (int i = 1; i < levels; ++i) x.array_header(GgufType::ARRAY, 1);
    x.array_header(GgufType::UINT8, 1).u8(7);
    return x;
  };
  GgufFile ok = parse(nested(8));  // 8 levels: allowed
  const GgufValue* v = &ok.get("deep");
  for (int i = 1; i < 8; ++i) v = &v->array_arrays()[0];
  EXPECT_EQ(v->array_values<uint8_t>(), std::vector<uint8_t>{7});
  EXPECT_TRUE(fails_with(nested(9), "nested more than 8 deep", "key \"deep\""));
  EXPECT_TRUE(fails_with(nested(5000), "nested more than 8 deep"));
}

TEST(GgufHostile, Alignment) {
  auto with_alignment = [](GgufType t, uint64_t v) {
    Bytes x = header(0, 1);
    x.key("general.alignment", t);
    return t == GgufType::UINT64 ? x.u64(v) : x.u32(static_cast<uint32_t>(v));
  };
  EXPECT_TRUE(fails_with(with_alignment(GgufType::UINT32, 48), "general.alignment 48 is not a power of two", "byte 24"));
  EXPECT_TRUE(fails_with(with_alignment(GgufType::UINT32, 0), "is not a power of two"));
  EXPECT_TRUE(fails_with(with_alignment(GgufType::UINT64, 32), "general.alignment has type uint64, expected uint32"));
  EXPECT_TRUE(fails_with(with_alignment(GgufType::INT32, 32), "expected uint32"));
  EXPECT_EQ(parse(with_alignment(GgufType::UINT32, 1)).alignment(), 1u);
  EXPECT_EQ(parse(with_alignment(GgufType::UINT32, 1u << 31)).alignment(), 1u << 31);
}

TEST(GgufHostile, TensorInfos) {
  // One tensor info followed by enough zero bytes for its data, under the default alignment 32.
  auto one = [](std::initializer_list<uint64_t> ne, uint32_t type, uint64_t offset, size_t data_bytes = 64) {
    Bytes x = header(1, 0);
    x.tensor("t", ne, type, offset).pad(32).zeros(data_bytes);
    return x;
  };
  EXPECT_NO_THROW(parse(one({4, 2}, 0, 0)));
  EXPECT_TRUE(fails_with(one({1, 1, 1, 1, 1}, 0, 0), "tensor has 5 dims; GGUF allows at most 4", "byte 24, tensor \"t\""));
  EXPECT_TRUE(fails_with(one({}, 8, 0), "not a multiple of the q8_0 block size 32"));  // 0-d quantised
  EXPECT_EQ(parse(one({}, 0, 0)).tensor("t").ndim(), 0);                               // 0-d f32: a scalar
  EXPECT_TRUE(fails_with(one({33}, 8, 0), "row of 33 elements is not a multiple of the q8_0 block size 32"));
  EXPECT_TRUE(fails_with(one({256, 1}, 12, 0), "lies outside the file"));  // q4_K row: 144 bytes > 64
  EXPECT_NO_THROW(parse(one({32, 1}, 8, 0)));
  EXPECT_TRUE(fails_with(one({4}, 4, 0), "unknown ggml tensor type id 4"));  // removed Q4_2
  EXPECT_TRUE(fails_with(one({4}, 1000, 0), "unknown ggml tensor type id 1000"));
  EXPECT_TRUE(fails_with(one({uint64_t{1} << 40, uint64_t{1} << 40}, 0, 0), "overflows 64 bits"));
  EXPECT_TRUE(fails_with(one({0, uint64_t{1} << 62, uint64_t{1} << 62}, 0, 0), "overflows 64 bits"));
  EXPECT_TRUE(fails_with(one({uint64_t{1} << 63}, 0, 0), "dimension 0 of size 9223372036854775808 is too large"));
  EXPECT_TRUE(fails_with(one({(uint64_t{1} << 61)}, 0, 0), "overflows 64 bits"));  // 2^61 * 4 bytes
  EXPECT_TRUE(fails_with(one({4}, 0, 16), "offset 16 is not a multiple of the alignment 32"));
  EXPECT_TRUE(fails_with(one({4}, 0, 64), "lies outside the file"));
  EXPECT_TRUE(fails_with(one({17}, 0, 0), "lies outside the file"));  // 68 bytes > 64
  EXPECT_TRUE(fails_with(one({4}, 0, ~0ull & ~31ull), "lies outside the file"));
  EXPECT_NO_THROW(parse(one({0, 5}, 0, 64)));  // empty tensor at the very end: allowed

  Bytes dup = header(2, 0);
  dup.tensor("t", {4}, 0, 0).tensor("t", {4}, 0, 32).pad(32).zeros(64);
  EXPECT_TRUE(fails_with(dup, "duplicate tensor name", "tensor \"t\""));
  Bytes overlap = header(2, 0);  // overlapping data is allowed (e.g. tied weights)
  overlap.tensor("a", {8}, 0, 0).tensor("b", {4}, 0, 0).pad(32).zeros(32);
  EXPECT_NO_THROW(parse(overlap));
  Bytes noname = header(1, 0);
  noname.tensor("", {4}, 0, 0).pad(32).zeros(32);
  EXPECT_TRUE(fails_with(noname, "empty tensor name"));
  Bytes cut = header(1, 0);
  cut.str("t").u32(4).u64(4).u64(4);  // 2 of 4 dims
  EXPECT_TRUE(fails_with(cut, "file ends inside a tensor info"));
  // No room for the padding before the data section: data of a 0-byte tensor is still "outside".
  Bytes nopad = header(1, 0);
  nopad.tensor("t", {0}, 0, 0);
  EXPECT_TRUE(fails_with(nopad, "lies outside the file"));
}

TEST(GgufHostile, EveryTruncationFails) {
  const Bytes x = rich_file();
  EXPECT_NO_THROW(parse(x));
  for (size_t n = 0; n < x.size(); ++n) {
    std::vector<uint8_t> cut(x.b.begin(), x.b.begin() + static_cast<std::ptrdiff_t>(n));
    ASSERT_TRUE(fails_with(cut, "")) << "prefix of " << n << " bytes";
  }
}

TEST(GgufHostile, ByteFlipsNeverCrash) {
  const Bytes x = rich_file();
  for (size_t i = 0; i < x.size(); ++i)
    for (uint8_t m : {uint8_t{0xff}, uint8_t{0x01}, uint8_t{0x80}}) {
      std::vector<uint8_t> y = x.b;
      y[i] ^= m;
      SCOPED_TRACE(fmt::format("byte {} ^ {:#x}", i, m));
      parse_must_be_safe(y);
    }
}

// ---- crashers found by tests/fuzz/fuzz_gguf.cpp, kept as regression tests ----------------------

// crash-21d0c6ae (UBSan: division by zero): a tensor whose innermost dim is 0 made Tensor::rows()
// divide numel by that dim when nbytes() was asked.
TEST(GgufFuzzRegression, EmptyInnermostDim) {
  Bytes x = header(1, 0);
  x.tensor("t", {0, 5}, 0, 0).pad(32);
  GgufFile f = parse(x);
  Tensor t = f.tensor("t");
  EXPECT_EQ(t.shape_vec(), (std::vector<int64_t>{5, 0}));
  EXPECT_EQ(t.rows(), 5);
  EXPECT_EQ(t.nbytes(), 0u);
  parse_must_be_safe(x.b);
  GgufWriter w;
  w.tensor_add("t", t);
  EXPECT_EQ(GgufFile::parse(w.to_bytes()).tensor("t").shape_vec(), (std::vector<int64_t>{5, 0}));
}

// ---- writer -----------------------------------------------------------------------------------

namespace {

Tensor patterned(DType type, std::initializer_list<int64_t> shape, uint8_t seed) {
  Tensor t = Tensor::empty(type, shape);
  auto* p = static_cast<uint8_t*>(t.data());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 31 + seed);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.type() == b.type() && a.same_shape(b) && a.nbytes() == b.nbytes() &&
         std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

TEST(GgufWriter, RoundTripEveryTypeAndTensorKind) {
  GgufWriter w;
  w.metadata_add("general.architecture", "llama");
  w.metadata_add("u8", uint8_t{1});
  w.metadata_add("i8", int8_t{-1});
  w.metadata_add("u16", uint16_t{2});
  w.metadata_add("i16", int16_t{-2});
  w.metadata_add("u32", uint32_t{3});
  w.metadata_add("i32", int32_t{-3});
  w.metadata_add("f32", 0.1f);
  w.metadata_add("b", true);
  w.metadata_add("u64", uint64_t{1} << 40);
  w.metadata_add("i64", int64_t{-1} << 40);
  w.metadata_add("f64", 1e-310);  // subnormal double
  w.metadata_add("nan", std::numeric_limits<float>::quiet_NaN());
  w.metadata_add("s", std::string("x\0y", 3));
  w.metadata_add("tokens", GgufValue::array(std::vector<std::string>{"<s>", "", "é"}));
  w.metadata_add("scores", GgufValue::array(std::vector<float>{-1.5f, 0.0f}));
  w.metadata_add("flags", GgufValue::array(std::vector<bool>{true, false}));
  w.metadata_add("i64s", GgufValue::array(std::vector<int64_t>{}));
  w.metadata_add("empty_strs", GgufValue::array_empty(GgufType::STRING));
  w.metadata_add("nested", GgufValue::array(std::vector<GgufValue>{
                               GgufValue::array(std::vector<double>{1.0}),
                               GgufValue::array(std::vector<GgufValue>{GgufValue::array(std::vector<std::string>{"z"})})}));
  w.alignment_set(128);

  std::vector<float> q_src(3 * 64);
  for (size_t i = 0; i < q_src.size(); ++i) q_src[i] = std::sin(0.1f * static_cast<float>(i));
  Tensor q8 = Tensor::empty(DType::Q8_0, {3, 64});
  for (int r = 0; r < 3; ++r)
    quantize_row_q8_0_ref(&q_src[r * 64], static_cast<BlockQ8_0*>(q8.row_ptr(r)), 64);
  Tensor x = test::random_f32({4, 6}, 7);
  Tensor xt = x.transpose(0, 1);  // [6, 4], strided: written contiguous
  Tensor q3 = patterned(DType::Q8_0, {2, 3, 64}, 5);
  Tensor q3_mid = q3.select(1, 1);  // [2, 64] q8_0 rows 3 blocks apart
  Tensor scalar = Tensor::empty(DType::F32, std::span<const int64_t>{});
  *scalar.ptr<float>() = 3.25f;
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", test::random_f32({3, 5}, 1)}, {"f16", patterned(DType::F16, {2, 3, 4}, 1)},
      {"bf16", patterned(DType::BF16, {5}, 2)}, {"q8_0", q8}, {"q4_0", patterned(DType::Q4_0, {2, 32}, 3)},
      {"q4_K", patterned(DType::Q4_K, {1, 256}, 4)}, {"i8", patterned(DType::I8, {3}, 5)},
      {"i32", patterned(DType::I32, {1, 1, 2, 3}, 6)}, {"f64", patterned(DType::F64, {2}, 7)},
      {"xt", xt}, {"q3_mid", q3_mid}, {"scalar", scalar}, {"empty", Tensor::empty(DType::F32, {0, 3})},
  };
  for (const auto& [n, t] : tensors) w.tensor_add(n, t);

  const std::string path = temp_path("roundtrip.gguf");
  w.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(file_read(path), w.to_bytes());
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 128u);
  EXPECT_EQ(f.data_offset() % 128, 0u);
  ASSERT_EQ(f.metadata().size(), 21u);
  EXPECT_EQ(f.metadata().back().key, "general.alignment");
  const GgufFile from_mem = GgufFile::parse(w.to_bytes());
  for (size_t i = 0; i < f.metadata().size(); ++i) EXPECT_EQ(f.metadata()[i].key, from_mem.metadata()[i].key);
  EXPECT_EQ(f.get_string("s"), std::string("x\0y", 3));
  EXPECT_EQ(f.get("f64").as<double>(), 1e-310);
  EXPECT_EQ(f.get("nested").to_string(), "[[1], [[\"z\"]]]");
  EXPECT_EQ(f.get_array("flags", GgufType::BOOL).array_values<bool>(), (std::vector<bool>{true, false}));
  EXPECT_TRUE(f.get("nan") == GgufValue(std::numeric_limits<float>::quiet_NaN()));

  // Metadata: identical values (bitwise) in the same order.
  GgufWriter again;
  for (const GgufKV& kv : f.metadata()) again.metadata_add(kv.key, kv.value);
  for (size_t i = 0; i < f.metadata().size(); ++i) EXPECT_TRUE(f.metadata()[i].value == from_mem.metadata()[i].value);

  ASSERT_EQ(f.tensor_infos().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, src] = tensors[i];
    SCOPED_TRACE(name);
    const TensorInfo& ti = f.tensor_infos()[i];
    EXPECT_EQ(ti.name, name);
    EXPECT_EQ(ti.offset % 128, 0u);
    Tensor got = f.tensor(name);
    if (src.ndim() == 0) {
      EXPECT_EQ(got.shape_vec(), std::vector<int64_t>{1});  // GGML has no 0-d tensors
      EXPECT_EQ(*got.ptr<float>(), 3.25f);
      continue;
    }
    EXPECT_EQ(got.shape_vec(), src.shape_vec());
    if (src.is_contiguous()) {
      EXPECT_TRUE(same_bytes(got, src));
    } else {
      Tensor dense = Tensor::empty(src.type(), src.shape());
      for (int64_t r = 0; r < src.rows(); ++r) {
        const size_t row = *dtype_row_bytes(src.type(), src.size(-1));
        if (src.type() == DType::F32) {
          for (int64_t j = 0; j < src.size(-1); ++j) dense.at<float>(r, j) = src.at<float>(r, j);
        } else {
          std::memcpy(dense.row_ptr(r), src.row_ptr(r), row);
        }
      }
      EXPECT_TRUE(same_bytes(got, dense));
    }
  }
  // Values, not only bytes: the q8_0 tensor still dequantises to the source within its step.
  EXPECT_TENSORS_CLOSE(f.tensor("q8_0"), Tensor::view_of(DType::F32, std::vector<int64_t>{3, 64}, q_src.data()),
                       1.0f / 127, 0.0f);  // |x| <= 1: q8_0 error <= d/2 = amax/254
  fs::remove(path);
}

TEST(GgufWriter, DefaultAlignmentAndNoKey) {
  GgufWriter w;
  w.tensor_add("a", test::random_f32({3}, 1));
  w.tensor_add("b", test::random_f32({5}, 2));
  GgufFile f = GgufFile::parse(w.to_bytes());
  EXPECT_EQ(f.find("general.alignment"), nullptr);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.tensor_infos()[1].offset - f.data_offset(), 32u);
  EXPECT_EQ(w.to_bytes().size() % 32, 0u);  // the last tensor is padded too
}

TEST(GgufWriter, RejectsInvalidInput) {
  GgufWriter w;
  w.metadata_add("k", uint8_t{1});
  EXPECT_THROW(w.metadata_add("k", uint8_t{2}), Error);
  EXPECT_THROW(w.metadata_add("", uint8_t{2}), Error);
  EXPECT_THROW(w.metadata_add("general.alignment", uint32_t{48}), Error);
  EXPECT_THROW(w.metadata_add("general.alignment", uint64_t{32}), Error);
  EXPECT_THROW(w.alignment_set(0), Error);
  EXPECT_THROW(w.alignment_set(96), Error);
  GgufValue deep = GgufValue::array(std::vector<uint8_t>{1});
  for (int i = 0; i < 8; ++i) deep = GgufValue::array(std::vector<GgufValue>{deep});  // 9 levels
  EXPECT_THROW(w.metadata_add("deep", deep), Error);
  EXPECT_THROW(GgufValue::array(std::vector<GgufValue>{GgufValue(1)}), Error);
  w.tensor_add("t", test::random_f32({2}, 1));
  EXPECT_THROW(w.tensor_add("t", test::random_f32({2}, 1)), Error);
  EXPECT_THROW(w.tensor_add(std::string(64, 'n'), test::random_f32({2}, 1)), Error);
  EXPECT_THROW(w.tensor_add("", test::random_f32({2}, 1)), Error);
  EXPECT_THROW(w.tensor_add("undef", Tensor::view_of(DType::F32, std::vector<int64_t>{2}, nullptr)), Error);
  w.alignment_set(64);
  w.alignment_set(16);  // replaces the key, keeps its place
  EXPECT_EQ(w.alignment(), 16u);
  GgufFile f = GgufFile::parse(w.to_bytes());
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.get_u32("general.alignment"), 16u);
}

TEST(GgufWriter, FailedWriteKeepsTheOldFile) {
  const std::string path = temp_path("atomic.gguf");
  GgufWriter w1;
  w1.metadata_add("version", uint32_t{1});
  w1.write(path);
  fs::create_directory(path + ".tmp");  // blocks the temporary file
  GgufWriter w2;
  w2.metadata_add("version", uint32_t{2});
  EXPECT_THROW(w2.write(path), Error);
  EXPECT_EQ(GgufFile::open(path).get_u32("version"), 1u);
  fs::remove(path + ".tmp");
  w2.write(path);
  EXPECT_EQ(GgufFile::open(path).get_u32("version"), 2u);
  fs::remove(path);
  EXPECT_THROW(w2.write(temp_path("no/such/dir/x.gguf")), Error);
}

// ---- the spec twin (tests/ref/twin_gguf.py) -----------------------------------------------------

namespace {

template <typename F> GgufValue with_scalar_type(const std::string& t, F&& f) {
  if (t == "uint8") return f(uint8_t{});
  if (t == "int8") return f(int8_t{});
  if (t == "uint16") return f(uint16_t{});
  if (t == "int16") return f(int16_t{});
  if (t == "uint32") return f(uint32_t{});
  if (t == "int32") return f(int32_t{});
  if (t == "float32") return f(float{});
  if (t == "bool") return f(bool{});
  if (t == "uint64") return f(uint64_t{});
  if (t == "int64") return f(int64_t{});
  if (t == "float64") return f(double{});
  throw std::runtime_error("unknown type in twin json: " + t);
}

// The twin's description of a value ({"type", "elem", "value"}) as a GgufValue.
GgufValue value_from_json(const nlohmann::json& j) {
  const std::string type = j.at("type").get<std::string>();
  if (type == "string") return GgufValue(j.at("value").get<std::string>());
  if (type != "array")
    return with_scalar_type(type, [&](auto tag) { return GgufValue(j.at("value").get<decltype(tag)>()); });
  const std::string elem = j.at("elem").get<std::string>();
  if (elem == "string") return GgufValue::array(j.at("value").get<std::vector<std::string>>());
  if (elem == "array") {
    std::vector<GgufValue> items;
    for (const auto& it : j.at("value")) items.push_back(value_from_json(it));
    return GgufValue::array(items);
  }
  return with_scalar_type(elem, [&](auto tag) {
    std::vector<decltype(tag)> v;
    for (const auto& it : j.at("value")) v.push_back(it.get<decltype(tag)>());
    return GgufValue::array(v);
  });
}

struct Twin {
  nlohmann::json desc;
  test::RefDump ref;
  std::string dir;
};

Twin twin_load() {
  Twin t{{}, test::RefDump::load("gguf_twin"), test::ref_dir()};
  std::ifstream f(t.dir + "/gguf_twin.json");
  if (!f) throw std::runtime_error("gguf_twin.json missing: run tests/ref/gen_all.py");
  t.desc = nlohmann::json::parse(f);
  return t;
}

void expect_matches_twin(const GgufFile& f, const Twin& tw) {
  const auto& md = tw.desc.at("metadata");
  ASSERT_EQ(f.metadata().size(), md.size());
  for (size_t i = 0; i < md.size(); ++i) {
    SCOPED_TRACE(md[i].at("key").get<std::string>());
    EXPECT_EQ(f.metadata()[i].key, md[i].at("key").get<std::string>());
    EXPECT_TRUE(f.metadata()[i].value == value_from_json(md[i]))
        << f.metadata()[i].value.to_string() << " vs " << value_from_json(md[i]).to_string();
  }
  EXPECT_EQ(f.alignment(), tw.desc.at("alignment").get<uint32_t>());
  const auto& ts = tw.desc.at("tensors");
  ASSERT_EQ(f.tensor_infos().size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    const std::string name = ts[i].at("name").get<std::string>();
    SCOPED_TRACE(name);
    const TensorInfo& ti = f.tensor_infos()[i];
    EXPECT_EQ(ti.name, name);
    EXPECT_EQ(ti.type_name, ts[i].at("type").get<std::string>());
    EXPECT_EQ(ti.shape, ts[i].at("shape").get<std::vector<int64_t>>());
    EXPECT_EQ(ti.offset, ts[i].at("offset").get<uint64_t>());
    EXPECT_EQ(ti.nbytes, ts[i].at("nbytes").get<uint64_t>());
    const Tensor got = f.tensor(name);
    const Tensor& want = tw.ref.get(name);
    ASSERT_EQ(got.nbytes(), want.nbytes());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.nbytes()), 0);
    if (ti.type != DType::Q8_0) {
      EXPECT_TENSORS_CLOSE(got, want, 0.0f, 0.0f);  // same values, exactly
    }
  }
  // f16 scale * int8 is exact in f32, in numpy and here alike: no tolerance.
  EXPECT_TENSORS_CLOSE(f.tensor("t.q8_0"), tw.ref.get("t.q8_0.f32"), 0.0f, 0.0f);
}

}  // namespace

TEST(GgufTwin, ReadsTheSpecTwinFile) {
  const Twin tw = twin_load();
  GgufFile f = GgufFile::open(tw.dir + "/gguf_twin.gguf");
  EXPECT_EQ(f.version(), 3u);
  expect_matches_twin(f, tw);
  // Spot checks written here, independent of the json description.
  EXPECT_EQ(f.get("twin.uint8").as<uint8_t>(), 200);
  EXPECT_EQ(f.get("twin.int16").as<int16_t>(), -30000);
  EXPECT_EQ(f.get("twin.uint64").as<uint64_t>(), (uint64_t{1} << 63) + 5);
  EXPECT_EQ(f.get_f32("twin.float32"), 0.1f);
  EXPECT_EQ(f.get_string("twin.string"), "h\xc3\xa9llo, GGUF \xe2\x9c\x93\n\"quoted\"");
  EXPECT_EQ(f.get_array("twin.arr_string", GgufType::STRING).array_strings()[3], "\xe2\x96\x81the");
  EXPECT_EQ(f.get("twin.arr_nested").array_arrays()[3].array_arrays()[1].array_values<bool>(),
            (std::vector<bool>{false, true}));
  EXPECT_EQ(f.tensor("t.f16").shape_vec(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(f.data_offset() % 64, 0u);
}

TEST(GgufTwin, ReadsTheV2File) {
  const Twin tw = twin_load();
  GgufFile f = GgufFile::open(tw.dir + "/gguf_twin_v2.gguf");
  EXPECT_EQ(f.version(), 2u);
  expect_matches_twin(f, tw);
}

TEST(GgufTwin, WriterProducesTheSameBytes) {
  const Twin tw = twin_load();
  GgufWriter w;
  for (const auto& kv : tw.desc.at("metadata")) w.metadata_add(kv.at("key").get<std::string>(), value_from_json(kv));
  for (const auto& ts : tw.desc.at("tensors")) {
    const std::string name = ts.at("name").get<std::string>();
    const Tensor& t = tw.ref.get(name);
    if (ts.at("type") == "q8_0")  // the dump holds the raw blocks as bytes [rows, row_bytes]
      w.tensor_add(name, Tensor::view_of(DType::Q8_0, ts.at("shape").get<std::vector<int64_t>>(),
                                         const_cast<void*>(t.data()), t.owner()));
    else
      w.tensor_add(name, t);
  }
  const std::vector<uint8_t> want = file_read(tw.dir + "/gguf_twin.gguf");
  const std::vector<uint8_t> got = w.to_bytes();
  ASSERT_EQ(got.size(), want.size());
  const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
  EXPECT_TRUE(diff.first == got.end()) << "first difference at byte " << (diff.first - got.begin());
}

// ---- real files: llama.cpp vocab-only GGUF files ------------------------------------------------

TEST(GgufConformance, LlamaCppVocabFiles) {
  const std::string shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "../shared (or $AIGC_SHARED) is absent";
  const fs::path dir = fs::path(shared) / "tokenizers" / "llama.cpp-vocab";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " is absent";
  int n_files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".gguf") continue;
    ++n_files;
    const std::string path = entry.path().string();
    SCOPED_TRACE(path);
    GgufFile f = GgufFile::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_FALSE(f.get_string("general.architecture").empty());
    EXPECT_FALSE(f.get_string("tokenizer.ggml.model").empty());
    const auto& tokens = f.get_array("tokenizer.ggml.tokens", GgufType::STRING).array_strings();
    EXPECT_GT(tokens.size(), 100u);
    if (const GgufValue* s = f.find("tokenizer.ggml.scores")) {
      EXPECT_EQ(s->array_values<float>().size(), tokens.size());
    }
    if (const GgufValue* t = f.find("tokenizer.ggml.token_type")) {
      EXPECT_EQ(t->array_values<int32_t>().size(), tokens.size());
    }
    if (const GgufValue* m = f.find("tokenizer.ggml.merges")) {
      EXPECT_GT(m->array_strings().size(), 0u);
    }
    if (f.find("tokenizer.ggml.bos_token_id")) {
      EXPECT_LT(f.get_uint("tokenizer.ggml.bos_token_id"), tokens.size());
    }
    for (const TensorInfo& ti : f.tensor_infos()) EXPECT_TRUE(f.tensor(ti.name).defined());
    for (const GgufKV& kv : f.metadata()) {
      EXPECT_FALSE(kv.value.to_string().empty());
      (void)kv.value.to_json(16).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    // Re-writing the same metadata reproduces the file byte for byte: gguf-py's writer (which made
    // these files) and ours agree on the layout.
    GgufWriter w;
    for (const GgufKV& kv : f.metadata()) w.metadata_add(kv.key, kv.value);
    for (const TensorInfo& ti : f.tensor_infos()) w.tensor_add(ti.name, f.tensor(ti.name));
    const std::vector<uint8_t> got = w.to_bytes();
    const std::vector<uint8_t> want = file_read(path);
    ASSERT_EQ(got.size(), want.size());
    const auto diff = std::mismatch(got.begin(), got.end(), want.begin());
    EXPECT_TRUE(diff.first == got.end()) << "first difference at byte " << (diff.first - got.begin());
  }
  EXPECT_GT(n_files, 0);
}
