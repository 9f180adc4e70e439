// Helpers for the hostile-checkpoint tests: take a valid safetensors file apart, alter it, write
// it back to a private temp folder.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "core/tensor.h"

namespace aigc::test {

// Owned copies of every tensor of a safetensors file (the file may be closed afterwards).
std::map<std::string, Tensor> safetensors_tensors_copy(const std::string& path);

// TempDir()/NAME_<pid>, created: ctest runs tests in parallel processes, which must not share files.
std::filesystem::path temp_dir_make(const std::string& name);

}  // namespace aigc::test
