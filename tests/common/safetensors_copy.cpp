#include "common/safetensors_copy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>

#include "formats/safetensors.h"

namespace aigc::test {

std::map<std::string, Tensor> safetensors_tensors_copy(const std::string& path) {
  const SafetensorsFile f = SafetensorsFile::open(path);
  std::map<std::string, Tensor> m;
  for (const TensorInfo& ti : f.tensor_infos()) {
    const Tensor t = f.tensor(ti.name);
    Tensor c = Tensor::empty(t.type(), t.shape());
    std::memcpy(c.data(), t.data(), t.nbytes());
    m[ti.name] = c;
  }
  return m;
}

std::filesystem::path temp_dir_make(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(::testing::TempDir()) / (name + "_" + std::to_string(getpid()));
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace aigc::test
