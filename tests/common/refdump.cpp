#include "common/refdump.h"

#include <sys/stat.h>

#include <cstdlib>
#include <cstring>

#include "core/mapped_file.h"

namespace aigc::test {

std::string ref_dir() {
  const char* e = std::getenv("AIGC_REF_DIR");
  return e && *e ? e : AIGC_REF_DIR_DEFAULT;
}

std::string shared_dir() {
  const char* e = std::getenv("AIGC_SHARED");
  std::string d = e && *e ? e : AIGC_SHARED_DIR_DEFAULT;
  struct stat st {};
  return stat(d.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? d : std::string();
}

RefDump RefDump::load(const std::string& name) {
  const std::string path = ref_dir() + "/" + name + ".bin";
  std::shared_ptr<MappedFile> f;
  try {
    f = MappedFile::open(path, {.use_mmap = false});
  } catch (const Error& e) {
    error_throw("reference dump missing", path,
                "run: /usr/bin/python3 tests/ref/gen_all.py --out build/ref (ctest does it first)");
  }
  const uint8_t* p = f->data();
  const uint8_t* end = p + f->size();
  auto need = [&](size_t n) {
    if (static_cast<size_t>(end - p) < n) error_throw("truncated reference dump", path, "regenerate it");
  };
  auto u32 = [&]() { need(4); uint32_t v; std::memcpy(&v, p, 4); p += 4; return v; };
  need(8);
  if (std::memcmp(p, "AIGCREF\0", 8) != 0) error_throw("bad magic in reference dump", path);
  p += 8;
  if (u32() != 1) error_throw("unsupported reference dump version", path, "regenerate it");
  const uint32_t count = u32();
  RefDump d;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t nlen = u32();
    need(nlen);
    std::string tname(reinterpret_cast<const char*>(p), nlen);
    p += nlen;
    const uint32_t code = u32();
    const uint32_t ndim = u32();
    if (ndim > kMaxDims) error_throw("reference tensor has too many dims", path + ":" + tname);
    std::vector<int64_t> shape(ndim);
    for (auto& s : shape) {
      need(8);
      std::memcpy(&s, p, 8);
      p += 8;
    }
    static const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I8};
    if (code > 4) error_throw("unknown dtype code in reference dump", path + ":" + tname);
    Tensor t = Tensor::empty(kTypes[code], shape);
    need(t.nbytes());
    std::memcpy(t.data(), p, t.nbytes());
    p += t.nbytes();
    t.name = tname;
    d.tensors_[tname] = std::move(t);
  }
  return d;
}

const Tensor& RefDump::get(const std::string& tensor) const {
  auto it = tensors_.find(tensor);
  if (it == tensors_.end()) error_throw("tensor missing from reference dump", tensor, "regenerate the dumps");
  return it->second;
}

}  // namespace aigc::test
