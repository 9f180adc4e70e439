// safetensors: files written by the Python twin (json + struct from the spec), real TAEF2 weights
// against torch.load of the .pth, writer round trips, and hostile files (each a clean aigc::Error).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/compare.h"
#include "common/refdump.h"
#include "core/half.h"
#include "formats/safetensors.h"

using namespace aigc;
namespace fs = std::filesystem;

namespace {

// A fresh folder per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path(::testing::TempDir()) /
            fmt::format("aigc_st_{}_{}_{}", info->test_suite_name(), info->name(), ::getpid());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void bytes_write(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string u64_le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A safetensors image: header length, header text as given, then `data_bytes` bytes of data.
std::string st_image(const std::string& header, size_t data_bytes) {
  return u64_le(header.size()) + header + std::string(data_bytes, '\x01');
}

std::string file_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs fn, expects one aigc::Error whose message holds `what` and whose where holds `where`
// (and always the file name) and that carries a hint.
template <typename Fn>
void error_expect(Fn fn, const std::string& what, const std::string& where, const std::string& file) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected: " << what;
  } catch (const Error& e) {
    EXPECT_NE(e.what_msg().find(what), std::string::npos) << "message: " << e.what();
    EXPECT_NE(e.where().find(where), std::string::npos) << "where: " << e.where();
    EXPECT_NE(e.where().find(file), std::string::npos) << "where: " << e.where();
    EXPECT_FALSE(e.hint().empty()) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not an aigc::Error: " << e.what();
  }
}

// Writes header + data to a file and expects open() to fail as described.
void hostile_expect(const TempDir& dir, const std::string& image, const std::string& what,
                    const std::string& where = "") {
  const std::string path = dir.file("bad.safetensors");
  bytes_write(path, image);
  SCOPED_TRACE(image.substr(0, 160));
  error_expect([&] { SafetensorsFile::open(path); }, what, where, "bad.safetensors");
  // The in-memory parser (the fuzz target's entry) agrees.
  error_expect([&] { SafetensorsFile::parse({reinterpret_cast<const uint8_t*>(image.data()), image.size()}, path); },
               what, where, "bad.safetensors");
}

const std::string kOk = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

}  // namespace

// ---- files from the Python twin ----------------------------------------------------------------

TEST(Safetensors, TwinSingleFile) {
  test::RefDump ref = test::RefDump::load("safetensors_twin");
  const std::string path = test::ref_dir() + "/safetensors_single.safetensors";
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensor_infos().size(), 6u);
  // In file (data) order, as the twin laid it out.
  const char* order[] = {"w.f32", "scalar", "ids.i32", "empty", "w.bf16", "w.f16"};
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(f.tensor_infos()[i].name, order[i]);
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "twin \xc3\xbcnicode \xe2\x9c\x93");

  const std::string raw = file_read(path);
  for (const char* name : order) {
    SCOPED_TRACE(name);
    const TensorInfo* ti = f.find(name);
    ASSERT_NE(ti, nullptr);
    EXPECT_EQ(ti->file, path);
    Tensor t = f.tensor(name);
    Tensor want = ref.get(name);
    // refdump.py stores a 0-d tensor as [1] (np.ascontiguousarray returns ndim >= 1).
    if (std::string(name) == "scalar") {
      EXPECT_EQ(ti->shape, std::vector<int64_t>{});
      ASSERT_EQ(want.shape_vec(), std::vector<int64_t>{1});
      want = want.reshape(std::span<const int64_t>());
    }
    EXPECT_EQ(t.shape_vec(), want.shape_vec());
    EXPECT_EQ(ti->shape, want.shape_vec());
    // Exact: the file and the dump hold the same values (f16 upcast to f32 exactly in the dump).
    EXPECT_TENSORS_CLOSE(t, want, 0.0f, 0.0f);
    // offset is absolute in the file.
    ASSERT_LE(ti->offset + ti->nbytes, raw.size());
    EXPECT_EQ(std::memcmp(raw.data() + ti->offset, t.data(), ti->nbytes), 0);
  }
  EXPECT_EQ(f.find("w.f16")->type, DType::F16);
  EXPECT_EQ(f.find("w.bf16")->type_name, "BF16");
  EXPECT_EQ(f.find("ids.i32")->type, DType::I32);
  EXPECT_EQ(f.tensor("scalar").ndim(), 0);
  EXPECT_EQ(f.tensor("empty").numel(), 0);
  // Aligned data is a zero-copy view that keeps the mapping alive.
  Tensor w = f.tensor("w.f32");
  EXPECT_EQ(w.data(), f.tensor_bytes(*f.find("w.f32")).data());
  EXPECT_NE(w.owner(), nullptr);
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.tensor("nope"), Error);

  // Same through read-into-memory and through the in-memory parser.
  SafetensorsFile g = SafetensorsFile::open(path, {.use_mmap = false});
  EXPECT_TENSORS_CLOSE(g.tensor("w.bf16"), ref.get("w.bf16"), 0.0f, 0.0f);
  SafetensorsFile h = SafetensorsFile::parse({reinterpret_cast<const uint8_t*>(raw.data()), raw.size()});
  EXPECT_TENSORS_CLOSE(h.tensor("w.f32"), ref.get("w.f32"), 0.0f, 0.0f);
}

TEST(Safetensors, TwinSharded) {
  test::RefDump ref = test::RefDump::load("safetensors_twin");
  const std::string dir = test::ref_dir() + "/safetensors_sharded";
  SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors.index.json");
  ASSERT_EQ(f.tensor_infos().size(), 4u);
  EXPECT_EQ(f.metadata().at("total_size"), "148");  // a number in the index, kept as its JSON text
  // Shard 1 first, then shard 2, each in data order.
  EXPECT_EQ(f.tensor_infos()[0].name, "layer.0.weight");
  EXPECT_EQ(f.tensor_infos()[1].name, "layer.0.bias");
  EXPECT_EQ(f.tensor_infos()[2].name, "layer.1.weight");
  EXPECT_EQ(f.tensor_infos()[3].name, "head");
  EXPECT_EQ(f.find("layer.0.bias")->file, dir + "/model-00001-of-00002.safetensors");
  EXPECT_EQ(f.find("head")->file, dir + "/model-00002-of-00002.safetensors");
  for (const char* name : {"layer.0.weight", "layer.0.bias", "layer.1.weight", "head"}) {
    SCOPED_TRACE(name);
    Tensor t = f.tensor(name);
    EXPECT_TENSORS_CLOSE(t, ref.get(name), 0.0f, 0.0f);
  }
  // Shard 2's data starts at 2 mod 8 (twin): its f32 tensor comes back as an aligned copy.
  EXPECT_NE(f.find("layer.1.weight")->offset % 4, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor("layer.1.weight").data()) % 4, 0u);
}

// ---- real weights: TAEF2 decoder, safetensors copies against torch.load of the .pth ---------------

TEST(Safetensors, Taef2DecoderMatchesPth) {
  const std::string shared = test::shared_dir();
  if (shared.empty()) GTEST_SKIP() << "shared data folder absent ($AIGC_SHARED or ../shared)";
  const std::string listing = test::ref_dir() + "/safetensors_taef2.txt";
  if (!fs::exists(listing)) GTEST_SKIP() << "twin wrote no TAEF2 reference (it found no shared data): " << listing;
  test::RefDump ref = test::RefDump::load("safetensors_taef2");
  struct Line { std::string name, dtype; std::vector<int64_t> shape; double sum, abs_sum; };
  std::vector<Line> lines;
  {
    std::ifstream in(listing);
    std::string name, dtype, shape;
    double s, a;
    while (in >> name >> dtype >> shape >> s >> a) {
      Line l{name, dtype, {}, s, a};
      std::stringstream ss(shape);
      for (std::string d; std::getline(ss, d, ',');) l.shape.push_back(std::stoll(d));
      lines.push_back(l);
    }
  }
  ASSERT_EQ(lines.size(), 79u);
  for (const char* file : {"taef2_decoder.safetensors", "taef2_decoder.f32.safetensors"}) {
    SCOPED_TRACE(file);
    const bool is_f32 = std::string(file).find("f32") != std::string::npos;
    SafetensorsFile f = SafetensorsFile::open(shared + "/models/taesd/" + file);
    ASSERT_EQ(f.tensor_infos().size(), lines.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      const Line& l = lines[i];
      const TensorInfo& ti = f.tensor_infos()[i];  // same order as the state_dict
      SCOPED_TRACE(l.name);
      ASSERT_EQ(ti.name, l.name);
      ASSERT_EQ(l.dtype, "float16");  // the .pth stores f16 (PROVENANCE.md)
      EXPECT_EQ(ti.type, is_f32 ? DType::F32 : DType::F16);
      EXPECT_EQ(ti.shape, l.shape);
      // Sums in f64 of the same values: only summation order differs (torch vs a plain loop), which
      // for <= 37k terms of magnitude <= 1e2 moves the result by far less than 1e-9 relative.
      Tensor v = test::to_f32(f.tensor(ti.name));
      double s = 0, a = 0;
      for (int64_t k = 0; k < v.numel(); ++k) {
        s += v.ptr<float>()[k];
        a += std::fabs(v.ptr<float>()[k]);
      }
      EXPECT_NEAR(s, l.sum, 1e-9 * l.abs_sum + 1e-12);
      EXPECT_NEAR(a, l.abs_sum, 1e-9 * l.abs_sum + 1e-12);
    }
    // Element by element, exactly: the f16 file holds the .pth's f16 values, and f16 -> f32 is exact
    // on both sides; the f32 file is an exact upcast of them.
    for (const auto& [name, want] : ref.all()) {
      SCOPED_TRACE(name);
      EXPECT_TENSORS_CLOSE(f.tensor(name), want, 0.0f, 0.0f);
    }
  }
}

// ---- writer --------------------------------------------------------------------------------------

TEST(Safetensors, WriteRoundTrip) {
  TempDir dir;
  std::map<std::string, Tensor> ts;
  Tensor a = test::random_f32({3, 5}, 1);
  ts["a.f32"] = a;
  ts["b.t"] = a.transpose(0, 1);  // strided: written in logical order
  Tensor h = Tensor::empty(DType::F16, {7});
  Tensor b = Tensor::empty(DType::BF16, {2, 3});
  for (int i = 0; i < 7; ++i) h.ptr<uint16_t>()[i] = f16_from_f32(0.5f * i - 1.0f);
  for (int i = 0; i < 6; ++i) b.ptr<uint16_t>()[i] = bf16_from_f32(1.5f * i - 2.0f);
  ts["c.f16"] = h;
  ts["d.bf16"] = b;
  Tensor i8 = Tensor::empty(DType::I8, {3});
  Tensor i16 = Tensor::empty(DType::I16, {3});
  Tensor i32 = Tensor::empty(DType::I32, {3});
  Tensor i64 = Tensor::empty(DType::I64, {3});
  Tensor f64 = Tensor::empty(DType::F64, {2});
  for (int i = 0; i < 3; ++i) {
    i8.ptr<int8_t>()[i] = static_cast<int8_t>(-i - 1);
    i16.ptr<int16_t>()[i] = static_cast<int16_t>(-300 * i);
    i32.ptr<int32_t>()[i] = -70000 * i;
    i64.ptr<int64_t>()[i] = -(int64_t{1} << 40) * i;
  }
  f64.ptr<double>()[0] = 1e300;
  f64.ptr<double>()[1] = -0.1;
  ts["e.i8"] = i8;
  ts["f.i16"] = i16;
  ts["g.i32"] = i32;
  ts["h.i64"] = i64;
  ts["i.f64"] = f64;
  Tensor scalar = Tensor::empty(DType::F32, std::span<const int64_t>());
  scalar.ptr<float>()[0] = 42.0f;
  ts["j.scalar"] = scalar;
  ts["k.empty"] = Tensor::empty(DType::F16, {0, 4});
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"x", "\xc3\xa9t\xc3\xa9"}};

  const std::string path = dir.file("rt.safetensors");
  safetensors_write(path, ts, meta);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const std::string raw = file_read(path);
  uint64_t n = 0;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);  // header padded to 8 bytes
  EXPECT_EQ(raw[8], '{');

  SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensor_infos().size(), ts.size());
  for (const auto& [name, want] : ts) {
    SCOPED_TRACE(name);
    const TensorInfo* ti = f.find(name);
    ASSERT_NE(ti, nullptr);
    EXPECT_EQ(ti->type, want.type());
    EXPECT_EQ(ti->offset % dtype_traits(want.type()).block_bytes, 0u);  // aligned to its element
    Tensor got = f.tensor(name);
    EXPECT_EQ(got.shape_vec(), want.shape_vec());
    // Compare bytes of the logical (row-major) order.
    Tensor wc = Tensor::empty(want.type(), want.shape_vec());
    for (int64_t r = 0; r < want.numel(); ++r) {
      // contiguous copy of the (maybe transposed) source, element by element
      std::vector<int64_t> idx(want.ndim());
      int64_t rem = r;
      for (int d = want.ndim() - 1; d >= 0; --d) { idx[d] = rem % want.size(d); rem /= want.size(d); }
      int64_t off = 0;
      for (int d = 0; d < want.ndim(); ++d) off += idx[d] * want.stride_bytes(d);
      const size_t es = dtype_traits(want.type()).block_bytes;
      std::memcpy(static_cast<char*>(wc.data()) + r * es, static_cast<const char*>(want.data()) + off, es);
    }
    ASSERT_EQ(got.nbytes(), wc.nbytes());
    EXPECT_EQ(std::memcmp(got.data(), wc.data(), wc.nbytes()), 0);
  }
  EXPECT_EQ(f.tensor("b.t").at<float>(4, 2), a.at<float>(2, 4));

  // Deterministic: writing again gives the same bytes.
  const std::string path2 = dir.file("rt2.safetensors");
  safetensors_write(path2, ts, meta);
  EXPECT_EQ(file_read(path2), raw);

  // Refused: quantised types, the reserved name, an unwritable folder.
  EXPECT_THROW(safetensors_write(dir.file("q.safetensors"), {{"q", Tensor::empty(DType::Q8_0, {32})}}), Error);
  EXPECT_THROW(safetensors_write(dir.file("m.safetensors"), {{"__metadata__", a}}), Error);
  EXPECT_THROW(safetensors_write(dir.file("no/such/dir.safetensors"), {{"a", a}}), Error);
  EXPECT_FALSE(fs::exists(dir.file("q.safetensors")));
}

// ---- dtypes the engine lists but cannot load --------------------------------------------------

TEST(Safetensors, UnsupportedDtypesAreListedNotLoaded) {
  TempDir dir;
  const std::string hdr =
      R"({"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},)"
      R"("u":{"dtype":"U16","shape":[1],"data_offsets":[2,4]},)"
      R"("e":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[4,6]},)"
      R"("f":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[6,7]},)"
      R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[7,8]},)"
      R"("u32":{"dtype":"U32","shape":[1],"data_offsets":[8,12]},)"
      R"("u64":{"dtype":"U64","shape":[1],"data_offsets":[16,24]},)"
      R"("five":{"dtype":"I8","shape":[1,1,1,1,4],"data_offsets":[12,16]}})";
  const std::string path = dir.file("odd.safetensors");
  bytes_write(path, st_image(hdr, 24));
  SafetensorsFile f = SafetensorsFile::open(path);
  ASSERT_EQ(f.tensor_infos().size(), 8u);
  EXPECT_EQ(f.find("b")->type, std::nullopt);
  EXPECT_EQ(f.find("b")->type_name, "BOOL");
  EXPECT_EQ(f.find("u64")->nbytes, 8u);
  error_expect([&] { f.tensor("b"); }, "unsupported dtype BOOL", "'b'", "odd.safetensors");
  error_expect([&] { f.tensor("e"); }, "unsupported dtype F8_E4M3", "dtype", "odd.safetensors");
  // Listed with 5 dims; the engine's tensors hold at most kMaxDims.
  EXPECT_EQ(f.find("five")->shape.size(), 5u);
  error_expect([&] { f.tensor("five"); }, "5 dims", "'five'", "odd.safetensors");
  EXPECT_EQ(f.tensor_bytes(*f.find("five")).size(), 4u);
}

// ---- hostile single files ------------------------------------------------------------------------

TEST(Safetensors, HostileSizes) {
  TempDir dir;
  hostile_expect(dir, "", "shorter than the 8-byte header length");
  hostile_expect(dir, "1234567", "shorter than the 8-byte header length");
  hostile_expect(dir, u64_le(100) + "{}", "runs past the end");
  hostile_expect(dir, u64_le(~uint64_t{0}) + "{}", "exceeds the");
  hostile_expect(dir, u64_le((100u << 20) + 1) + "{}", "exceeds the");
  hostile_expect(dir, u64_le(0), "not valid JSON");
}

TEST(Safetensors, HostileJson) {
  TempDir dir;
  hostile_expect(dir, st_image("{\"a\":", 0), "not valid JSON");
  hostile_expect(dir, st_image("[1,2]", 0), "not an object");
  hostile_expect(dir, st_image("\"str\"", 0), "not an object");
  hostile_expect(dir, st_image("{\"a\":\"\xff\xfe\"}", 0), "not valid JSON");  // ill-formed UTF-8
  hostile_expect(dir, st_image(std::string(64, '[') + std::string(64, ']'), 0), "nests deeper");
  hostile_expect(dir, st_image("{\"__metadata__\":{\"k\":" + std::string(40, '[') + std::string(40, ']') + "}}", 0),
                 "nests deeper");
  hostile_expect(dir, st_image("{\"a\":1}", 0), "not an object", "'a'");
  hostile_expect(dir, st_image("{\"a\":null}", 0), "not an object", "'a'");
}

TEST(Safetensors, HostileFields) {
  TempDir dir;
  auto one = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return "{\"t\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offs + "}}";
  };
  // dtype
  hostile_expect(dir, st_image(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), "missing dtype", "'t', field \"dtype\"");
  hostile_expect(dir, st_image(one("4", "[2]", "[0,8]"), 8), "dtype is not a string", "field \"dtype\"");
  hostile_expect(dir, st_image(one("\"F33\"", "[2]", "[0,8]"), 8), "unknown dtype 'F33'", "field \"dtype\"");
  hostile_expect(dir, st_image(one("\"f32\"", "[2]", "[0,8]"), 8), "unknown dtype", "field \"dtype\"");
  // shape
  hostile_expect(dir, st_image(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "missing shape", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "2", "[0,8]"), 8), "shape is not an array", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[-2]", "[0,8]"), 8), "is negative", "'t', field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[2.0]", "[0,8]"), 8), "is not an integer", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[1e30]", "[0,8]"), 8), "is not an integer", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[\"2\"]", "[0,8]"), 8), "is not a number", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[[2]]", "[0,8]"), 8), "is not a number", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"U8\"", "[18446744073709551615]", "[0,8]"), 8), "overflows", "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[4294967296,4294967296]", "[0,8]"), 8), "overflows",
                 "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F64\"", "[2305843009213693952]", "[0,8]"), 8), "byte size overflows",
                 "field \"shape\"");
  // A zero dim makes the tensor empty, but the other dims still set its strides: refused too.
  hostile_expect(dir, st_image(one("\"F32\"", "[0,4294967296,4294967296]", "[0,0]"), 0), "overflows",
                 "field \"shape\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[4294967296,4294967296,0]", "[0,0]"), 0), "overflows",
                 "field \"shape\"");
  // data_offsets
  hostile_expect(dir, st_image(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "missing data_offsets", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[0,8,9]"), 8), "not a [begin, end] pair", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[8]"), 8), "not a [begin, end] pair", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "{\"a\":0,\"b\":8}"), 8), "not a [begin, end] pair", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[8,0]"), 8), "ends before it begins", "'t', field \"data_offsets\"");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[-1,8]"), 8), "is negative", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[0,8.5]"), 8), "is not an integer", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[0,8]"), 7), "run past the 7-byte data buffer", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[2]", "[0,18446744073709551615]"), 8), "run past", "data_offsets");
  hostile_expect(dir, st_image(one("\"F32\"", "[3]", "[0,8]"), 8), "hold 8 bytes but 3 elements of F32 need 12",
                 "data_offsets");
  hostile_expect(dir, st_image(one("\"F16\"", "[0]", "[0,8]"), 8), "need 0", "data_offsets");
  // __metadata__
  hostile_expect(dir, st_image(R"({"__metadata__":[1]})", 0), "__metadata__ is a JSON array");
  hostile_expect(dir, st_image(R"({"__metadata__":{"k":1}})", 0), "value 'k' is a JSON number, not a string");
  hostile_expect(dir, st_image(R"({"__metadata__":{"k":{"x":"y"}}})", 0), "not a string");
  hostile_expect(dir, st_image(R"({"__metadata__":{"k":null}})", 0), "not a string");
}

TEST(Safetensors, HostileLayout) {
  TempDir dir;
  // Duplicate names: nlohmann::json would keep one silently.
  hostile_expect(dir,
                 st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
                 "duplicate key 'a'");
  hostile_expect(dir, st_image(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4),
                 "duplicate key 'dtype'");
  hostile_expect(dir, st_image(R"({"__metadata__":{"k":"1","k":"2"}})", 0), "duplicate key 'k'");
  // Overlap, including a zero-size tensor inside another.
  hostile_expect(dir,
                 st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                 "overlaps tensor 'a'", "'b'");
  hostile_expect(dir,
                 st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
                 "overlaps");
  hostile_expect(dir,
                 st_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
                 "overlaps", "'z'");
  // Holes and trailing bytes (the spec forbids both).
  hostile_expect(dir, st_image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "4 unused bytes",
                 "'a'");
  hostile_expect(dir, st_image(kOk, 9), "1 bytes after the last tensor");
  hostile_expect(dir, st_image("{}", 3), "3 bytes after the last tensor");
  // Control: the well-formed ones around these load.
  for (const std::string& good : {st_image(kOk, 8), st_image("{}", 0), st_image(kOk + "   ", 8),
                                  st_image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                           R"("b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})", 0)}) {
    const std::string path = dir.file("good.safetensors");
    bytes_write(path, good);
    EXPECT_NO_THROW(SafetensorsFile::open(path)) << good.substr(8);
  }
}

// ---- hostile sharded checkpoints -----------------------------------------------------------------

TEST(Safetensors, HostileShardedIndex) {
  TempDir dir;
  bytes_write(dir.file("s1.safetensors"), st_image(kOk, 8));
  bytes_write(dir.file("s2.safetensors"), st_image(R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
  bytes_write(dir.file("s3.safetensors"), st_image(kOk, 8));  // holds "a" again
  const std::string index = dir.file("model.safetensors.index.json");
  auto expect_index = [&](const std::string& json, const std::string& what, const std::string& where = "") {
    bytes_write(index, json);
    SCOPED_TRACE(json);
    error_expect([&] { SafetensorsFile::open(index); }, what, where, dir.file(""));
  };
  // Good control.
  bytes_write(index, R"({"metadata":{"total_size":12,"by":"x"},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  SafetensorsFile ok = SafetensorsFile::open(index);
  EXPECT_EQ(ok.tensor_infos().size(), 2u);
  EXPECT_EQ(ok.metadata().at("by"), "x");
  EXPECT_EQ(ok.tensor("b").numel(), 1);

  expect_index(R"({"weight_map":{"a":"../s1.safetensors"}})", "not a plain file name", "weight_map['a']");
  expect_index(R"({"weight_map":{"a":"/etc/passwd"}})", "not a plain file name");
  expect_index(R"({"weight_map":{"a":"sub/s1.safetensors"}})", "not a plain file name");
  expect_index(R"({"weight_map":{"a":".."}})", "not a plain file name");
  expect_index(R"({"weight_map":{"a":""}})", "not a plain file name");
  expect_index(R"({"weight_map":{"a":3}})", "not a file name");
  expect_index(R"({"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}})", "duplicate key 'a'");
  expect_index(R"({"metadata":{}})", "no \"weight_map\"");
  expect_index(R"({"weight_map":[]})", "not an object");
  expect_index(R"([])", "not an object");
  expect_index(R"({"weight_map":)", "not valid JSON");
  // Mapped to a shard that lacks it.
  expect_index(R"({"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}})", "does not hold it", "'b'");
  // In two shards.
  expect_index(R"({"weight_map":{"a":"s1.safetensors","x":"s3.safetensors"}})", "in two shards", "'a'");
  // A shard holds a tensor the index does not list.
  expect_index(R"({"weight_map":{"b":"s2.safetensors","a2":"s1.safetensors"}})", "not in the index's weight_map", "'a'");
  // A missing shard.
  expect_index(R"({"weight_map":{"a":"nope.safetensors"}})", "cannot open file", "nope.safetensors");
  // A hostile shard is reported with the shard's name.
  bytes_write(dir.file("bad.safetensors"), st_image("{\"a\":", 0));
  expect_index(R"({"weight_map":{"a":"bad.safetensors"}})", "not valid JSON", "bad.safetensors");
}

// ---- inputs the fuzzer found (tests/fuzz/fuzz_safetensors.cpp) ------------------------------------

TEST(Safetensors, FuzzRegressions) {
  TempDir dir;
  // crash-7a0fcfca: shape [0, 0] -> Tensor::nbytes() divided by the last dim (SIGFPE in rows()).
  {
    const std::string image = st_image(R"({"a":{"dtype":"F32","shape":[0,0],"data_offsets":[0,0]}})", 0);
    SafetensorsFile f = SafetensorsFile::parse({reinterpret_cast<const uint8_t*>(image.data()), image.size()});
    Tensor t = f.tensor("a");
    EXPECT_EQ(t.numel(), 0);
    EXPECT_EQ(t.nbytes(), 0u);
    EXPECT_EQ(t.rows(), 0);
  }
  // An empty tensor at a misaligned offset (used to take the copy path through Tensor::empty).
  {
    const std::string image = st_image(
        R"({"b":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"F32","shape":[3,0],"data_offsets":[1,1]}})", 1);
    SafetensorsFile f = SafetensorsFile::parse({reinterpret_cast<const uint8_t*>(image.data()), image.size()});
    EXPECT_EQ(f.tensor("a").nbytes(), 0u);
    EXPECT_EQ(f.tensor("a").rows(), 3);
  }
  // Found by review, confirmed with the fuzz build (UBSan: signed overflow in the strides of
  // Tensor::view_of): a zero dim beside dims whose product overflows.
  hostile_expect(dir, st_image(R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", 0),
                 "overflows", "'a', field \"shape\"");
}
