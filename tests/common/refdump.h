// Reads the reference dumps that the PyTorch twins (tests/ref/twin_*.py) write; format in
// tests/ref/refdump.py. Tests load a dump by name from $AIGC_REF_DIR (default: build/ref).
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace aigc::test {

class RefDump {
 public:
  // Loads REF_DIR/<name>.bin; throws aigc::Error if absent (run tests/ref/gen_all.py).
  static RefDump load(const std::string& name);
  const Tensor& get(const std::string& tensor) const;  // throws if missing
  bool has(const std::string& tensor) const { return tensors_.count(tensor) != 0; }
  const std::map<std::string, Tensor>& all() const { return tensors_; }

 private:
  std::map<std::string, Tensor> tensors_;
};

std::string ref_dir();
// ../shared, or $AIGC_SHARED; empty string when the folder does not exist.
std::string shared_dir();

}  // namespace aigc::test
