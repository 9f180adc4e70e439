#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <utility>

namespace aigc {

std::shared_ptr<void> buffer_alloc(size_t bytes) {
  // Large buffers (model weights read with --no-mmap, big activations) on 2 MiB boundaries, asked
  // for transparent huge pages before first touch: streaming them with 4 KiB pages costs a TLB
  // miss per page, and under virtualisation (nested page walks) that measured ~40% of the read
  // bandwidth (bench/bench_probe, 1 thread: 20 vs 35 GB/s). The size is NOT rounded up to 2 MiB
  // (only the whole huge pages get the advice): a faulted huge page at the tail made up to 2 MiB
  // of padding resident per buffer, ~95 MB over the SD 1.5 UNet's packed weights.
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = bytes >= 2 * kHuge ? kHuge : kTensorAlign;
  size_t rounded = (bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  if (rounded == 0) rounded = kTensorAlign;
  void* p = nullptr;
  if (posix_memalign(&p, align, rounded) != 0) p = nullptr;
  if (p && align == kHuge) madvise(p, rounded / kHuge * kHuge, MADV_HUGEPAGE);  // advice only: failure is harmless
  if (!p) error_throw(fmt::format("out of memory allocating {} bytes", bytes), "buffer_alloc",
                      "close other programs or use a smaller model / context");
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

static void shape_check(DType type, std::span<const int64_t> shape) {
  AIGC_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "tensor has {} dims, at most {} supported",
             shape.size(), kMaxDims);
  for (int64_t s : shape) AIGC_CHECK(s >= 0, "negative tensor dimension {}", s);
  const DTypeTraits& t = dtype_traits(type);
  if (t.block_size > 1 && !shape.empty())
    AIGC_CHECK(shape.back() % t.block_size == 0,
               "last dimension {} of a {} tensor is not a multiple of its block size {}", shape.back(),
               t.name, t.block_size);
}

void Tensor::set_contiguous_strides() {
  const DTypeTraits& t = dtype_traits(type_);
  int64_t stride = static_cast<int64_t>(t.block_bytes);
  for (int d = ndim_ - 1; d >= 0; --d) {
    nb_[d] = stride;
    stride *= (d == ndim_ - 1) ? shape_[d] / t.block_size : shape_[d];
  }
}

Tensor Tensor::view_of(DType type, std::span<const int64_t> shape, void* data,
                       std::shared_ptr<void> owner) {
  shape_check(type, shape);
  Tensor t;
  t.type_ = type;
  t.ndim_ = static_cast<int>(shape.size());
  for (int d = 0; d < t.ndim_; ++d) t.shape_[d] = shape[d];
  t.set_contiguous_strides();
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::empty(DType type, std::span<const int64_t> shape) {
  shape_check(type, shape);
  Tensor t = view_of(type, shape, nullptr);
  t.owner_ = buffer_alloc(t.nbytes());
  t.data_ = t.owner_.get();
  return t;
}

Tensor Tensor::zeros(DType type, std::initializer_list<int64_t> shape) {
  Tensor t = empty(type, shape);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

int Tensor::dim_index(int d) const {
  int i = d < 0 ? d + ndim_ : d;
  AIGC_ASSERT(i >= 0 && i < ndim_, "dim {} out of range for {}-d tensor", d, ndim_);
  return i;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim_; ++d) n *= shape_[d];
  return n;
}

size_t Tensor::nbytes() const {
  if (ndim_ == 0) return dtype_traits(type_).block_bytes;
  auto row = dtype_row_bytes(type_, shape_[ndim_ - 1]);
  AIGC_ASSERT(row.has_value());
  return *row * static_cast<size_t>(rows());
}

bool Tensor::is_contiguous() const {
  const DTypeTraits& t = dtype_traits(type_);
  int64_t stride = static_cast<int64_t>(t.block_bytes);
  for (int d = ndim_ - 1; d >= 0; --d) {
    if (shape_[d] != 1 && nb_[d] != stride) return false;
    stride *= (d == ndim_ - 1) ? shape_[d] / t.block_size : shape_[d];
  }
  return true;
}

bool Tensor::same_shape(const Tensor& o) const {
  if (ndim_ != o.ndim_) return false;
  for (int d = 0; d < ndim_; ++d)
    if (shape_[d] != o.shape_[d]) return false;
  return true;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int d = 0; d < ndim_; ++d) s += (d ? ", " : "") + std::to_string(shape_[d]);
  return s + "] " + std::string(dtype_name(type_));
}

Tensor Tensor::reshape(std::span<const int64_t> shape) const {
  AIGC_CHECK(is_contiguous(), "reshape of a non-contiguous tensor {}", shape_str());
  std::vector<int64_t> s(shape.begin(), shape.end());
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      AIGC_CHECK(infer < 0, "reshape: more than one -1");
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    AIGC_CHECK(known > 0 && numel() % known == 0, "reshape {} to {} elements", shape_str(), known);
    s[infer] = numel() / known;
    known *= s[infer];
  }
  AIGC_CHECK(known == numel(), "reshape {} to a shape of {} elements", shape_str(), known);
  Tensor t = view_of(type_, s, data_, owner_);
  t.name = name;
  return t;
}

Tensor Tensor::transpose(int d0, int d1) const {
  AIGC_CHECK(!dtype_traits(type_).quantized, "transpose of a quantised tensor");
  Tensor t = *this;
  int a = dim_index(d0), b = dim_index(d1);
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.nb_[a], t.nb_[b]);
  return t;
}

Tensor Tensor::permute(std::span<const int> order) const {
  AIGC_CHECK(static_cast<int>(order.size()) == ndim_, "permute needs {} dims, got {}", ndim_, order.size());
  AIGC_CHECK(!dtype_traits(type_).quantized, "permute of a quantised tensor");
  Tensor t = *this;
  bool seen[kMaxDims] = {};
  for (int d = 0; d < ndim_; ++d) {
    int s = dim_index(order[d]);
    AIGC_CHECK(!seen[s], "permute: dim {} repeated", s);
    seen[s] = true;
    t.shape_[d] = shape_[s];
    t.nb_[d] = nb_[s];
  }
  return t;
}

Tensor Tensor::slice(int d, int64_t start, int64_t length) const {
  int i = dim_index(d);
  AIGC_CHECK(start >= 0 && length >= 0 && start + length <= shape_[i],
             "slice [{}, {}) out of range of dim {} (size {})", start, start + length, i, shape_[i]);
  const DTypeTraits& tr = dtype_traits(type_);
  Tensor t = *this;
  if (i == ndim_ - 1 && tr.block_size > 1) {
    AIGC_CHECK(start % tr.block_size == 0 && length % tr.block_size == 0,
               "slice of a quantised row must be whole blocks");
    t.data_ = static_cast<char*>(data_) + start / tr.block_size * nb_[i];
  } else {
    t.data_ = static_cast<char*>(data_) + start * nb_[i];
  }
  t.shape_[i] = length;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  int i = dim_index(d);
  AIGC_CHECK(index >= 0 && index < shape_[i], "index {} out of range of dim {} (size {})", index, i, shape_[i]);
  AIGC_CHECK(!(i == ndim_ - 1 && dtype_traits(type_).quantized), "select inside a quantised row");
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + index * nb_[i];
  for (int k = i; k + 1 < ndim_; ++k) {
    t.shape_[k] = shape_[k + 1];
    t.nb_[k] = nb_[k + 1];
  }
  t.ndim_ = ndim_ - 1;
  return t;
}

const void* Tensor::row_ptr(int64_t r) const {
  // Decompose r over dims [0, ndim-1) in row-major order.
  const char* p = static_cast<const char*>(data_);
  for (int d = ndim_ - 2; d >= 0; --d) {
    int64_t i = r % shape_[d];
    r /= shape_[d];
    p += i * nb_[d];
  }
  return p;
}

}  // namespace aigc
