#include "core/arena.h"

namespace aigc {

Arena::Arena(size_t capacity_bytes) : buffer_(buffer_alloc(capacity_bytes)), capacity_(capacity_bytes) {}

void* Arena::alloc_bytes(size_t bytes) {
  size_t rounded = (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  if (rounded > capacity_ - used_)
    error_throw(fmt::format("arena full: need {} more bytes, {} of {} used", rounded, used_, capacity_),
                "Arena::alloc", "the arena was sized too small for this workload (a bug in sizing)");
  void* p = static_cast<char*>(buffer_.get()) + used_;
  used_ += rounded;
  if (used_ > high_water_) high_water_ = used_;
  return p;
}

Tensor Arena::alloc(DType type, std::span<const int64_t> shape) {
  Tensor t = Tensor::view_of(type, shape, nullptr);
  Tensor r = Tensor::view_of(type, shape, alloc_bytes(t.nbytes()));
  return r;
}

}  // namespace aigc
