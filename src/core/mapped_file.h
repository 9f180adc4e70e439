// A model file's bytes: memory-mapped read-only (zero copy, the default) or read into memory
// (`--no-mmap`, for benchmarks on machines that page out cold file-backed memory). `--mlock` pins
// the pages. Tensors loaded from the file keep it alive through their `owner`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace aigc {

struct FileLoadOptions {
  bool use_mmap = true;
  bool mlock = false;
};

class MappedFile {
 public:
  // Throws aigc::Error (missing, unreadable, a directory...) with the path and a hint.
  static std::shared_ptr<MappedFile> open(const std::string& path, FileLoadOptions opt = {});
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_mapped() const { return mapped_; }
  // The bytes [offset, offset + size) made writable for this process alone (a mapping is private:
  // written pages are copied, the file never changes); nullptr if the range is outside the file
  // or the pages cannot be made writable. Used to rewrite weights into the layout the kernels want
  // without a second copy of them.
  uint8_t* writable(size_t offset, size_t size);

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  bool locked_ = false;
  std::shared_ptr<void> heap_;  // when not mapped
};

}  // namespace aigc
