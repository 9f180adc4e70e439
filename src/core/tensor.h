// Tensor: a typed, strided view of memory that it may or may not own.
//
// Shapes are in PyTorch order (outermost dimension first): a linear weight is [out, in], an
// activation batch [T, C], attention [B, H, T, D]. NOTE: this is the reverse of GGML's `ne`
// (innermost first); the GGUF reader reverses dims when it builds tensors.
//   shape[d]  elements along dim d
//   nb[d]     bytes between consecutive elements along dim d (for quantised types, between
//             consecutive *blocks* along the last dim, and rows must be contiguous there)
// Storage: `owner` keeps the memory alive — an aligned heap buffer (Tensor::empty), a mapped model
// file (MappedFile), or nothing for arena tensors (the Arena must outlive them).
//
//   Tensor x = Tensor::empty(DType::F32, {2, 3});   // owned, contiguous, uninitialised
//   x.at<float>(1, 2) = 5.0f;
//   Tensor xt = x.transpose(0, 1);                   // [3, 2] view, no copy
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace aigc {

constexpr int kMaxDims = 4;
constexpr size_t kTensorAlign = 64;  // bytes; one cache line, one AVX-512 register

class Tensor {
 public:
  Tensor() = default;

  // Owned, contiguous, 64-byte aligned, uninitialised.
  static Tensor empty(DType type, std::span<const int64_t> shape);
  static Tensor empty(DType type, std::initializer_list<int64_t> shape) {
    return empty(type, std::span<const int64_t>(shape.begin(), shape.size()));
  }
  static Tensor zeros(DType type, std::initializer_list<int64_t> shape);
  // Contiguous view of existing memory; `owner` (may be null) keeps it alive.
  static Tensor view_of(DType type, std::span<const int64_t> shape, void* data,
                        std::shared_ptr<void> owner = nullptr);

  DType type() const { return type_; }
  int ndim() const { return ndim_; }
  int64_t size(int d) const { return shape_[dim_index(d)]; }  // d may be negative (from the end)
  int64_t stride_bytes(int d) const { return nb_[dim_index(d)]; }
  std::span<const int64_t> shape() const { return {shape_.data(), static_cast<size_t>(ndim_)}; }
  std::vector<int64_t> shape_vec() const { return {shape_.begin(), shape_.begin() + ndim_}; }
  int64_t numel() const;
  size_t nbytes() const;  // bytes spanned when contiguous
  bool is_contiguous() const;
  bool defined() const { return data_ != nullptr || numel() == 0; }
  bool same_shape(const Tensor& o) const;
  std::string shape_str() const;  // "[2, 3] f32"

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T> T* ptr() { return static_cast<T*>(data_); }
  template <typename T> const T* ptr() const { return static_cast<const T*>(data_); }
  const std::shared_ptr<void>& owner() const { return owner_; }

  // Element access for plain types (not quantised): at<float>(i, j, ...)
  template <typename T, typename... I>
  T& at(I... idx) {
    const int64_t ix[] = {static_cast<int64_t>(idx)...};
    char* p = static_cast<char*>(data_);
    for (size_t d = 0; d < sizeof...(I); ++d) p += ix[d] * nb_[d];
    return *reinterpret_cast<T*>(p);
  }
  template <typename T, typename... I>
  const T& at(I... idx) const { return const_cast<Tensor*>(this)->at<T>(idx...); }

  // Views (no copy). Views share `owner`.
  Tensor reshape(std::span<const int64_t> shape) const;  // requires contiguous; one dim may be -1
  Tensor reshape(std::initializer_list<int64_t> shape) const {
    return reshape(std::span<const int64_t>(shape.begin(), shape.size()));
  }
  Tensor transpose(int d0, int d1) const;
  Tensor permute(std::span<const int> order) const;
  Tensor permute(std::initializer_list<int> order) const {
    return permute(std::span<const int>(order.begin(), order.size()));
  }
  Tensor slice(int d, int64_t start, int64_t length) const;  // along dim d
  Tensor select(int d, int64_t index) const;                 // drops dim d

  // Row r (over all dims but the last, row-major) of a tensor whose last dim is contiguous.
  const void* row_ptr(int64_t r) const;
  void* row_ptr(int64_t r) { return const_cast<void*>(std::as_const(*this).row_ptr(r)); }
  int64_t rows() const {  // a product, not numel / last dim: the last dim may be 0
    int64_t r = 1;
    for (int d = 0; d + 1 < ndim_; ++d) r *= shape_[d];
    return r;
  }

  std::string name;  // optional, for messages

 private:
  int dim_index(int d) const;
  void set_contiguous_strides();

  DType type_ = DType::F32;
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> nb_{};
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

// Allocates `bytes` aligned to kTensorAlign; freed when the last shared_ptr goes.
std::shared_ptr<void> buffer_alloc(size_t bytes);

}  // namespace aigc
