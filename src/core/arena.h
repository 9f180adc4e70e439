// Arena: one buffer sized up front, carved into tensors by bumping an offset. Hot loops (token
// decode, denoising steps, training steps) allocate from an arena and reset() it, so they never
// call malloc. Tensors from an arena do not own memory: the arena must outlive them.
//
//   Arena arena(64 << 20);
//   Tensor h = arena.alloc(DType::F32, {T, C});
//   ...
//   arena.reset();   // everything carved so far is free again
#pragma once

#include <memory>

#include "core/tensor.h"

namespace aigc {

class Arena {
 public:
  explicit Arena(size_t capacity_bytes);

  Tensor alloc(DType type, std::span<const int64_t> shape);
  Tensor alloc(DType type, std::initializer_list<int64_t> shape) {
    return alloc(type, std::span<const int64_t>(shape.begin(), shape.size()));
  }
  void* alloc_bytes(size_t bytes);  // aligned to kTensorAlign

  void reset() { used_ = 0; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  size_t high_water() const { return high_water_; }  // most ever used between resets

 private:
  std::shared_ptr<void> buffer_;
  size_t capacity_ = 0;
  size_t used_ = 0;
  size_t high_water_ = 0;
};

}  // namespace aigc
