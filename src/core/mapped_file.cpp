#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "core/tensor.h"

namespace aigc {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path, FileLoadOptions opt) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    error_throw(fmt::format("cannot open file: {}", std::strerror(e)), path,
                e == ENOENT ? "check the path" : "check the file's permissions");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    error_throw("not a regular file", path, "give the path of a model file, not a folder");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ == 0) {
    ::close(fd);
    return f;  // empty: parsers report it as truncated
  }
  if (opt.use_mmap) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      error_throw(fmt::format("cannot map file: {}", std::strerror(e)), path, "try --no-mmap");
    }
    f->data_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
  } else {
    f->heap_ = buffer_alloc(f->size_);
    size_t done = 0;
    while (done < f->size_) {
      ssize_t r = ::pread(fd, static_cast<char*>(f->heap_.get()) + done, f->size_ - done, static_cast<off_t>(done));
      if (r <= 0) {
        int e = errno;
        ::close(fd);
        error_throw(fmt::format("read failed after {} of {} bytes: {}", done, f->size_, r == 0 ? "unexpected end" : std::strerror(e)), path);
      }
      done += static_cast<size_t>(r);
    }
    f->data_ = static_cast<const uint8_t*>(f->heap_.get());
  }
  ::close(fd);
  if (opt.mlock) {
    if (::mlock(f->data_, f->size_) == 0)
      f->locked_ = true;
    else
      log_warn("mlock of {} ({} MiB) failed: {}; raise 'ulimit -l' to pin model memory", path,
               f->size_ >> 20, std::strerror(errno));
  }
  return f;
}

uint8_t* MappedFile::writable(size_t offset, size_t size) {
  if (offset > size_ || size > size_ - offset) return nullptr;
  uint8_t* p = const_cast<uint8_t*>(data_) + offset;
  if (!mapped_ || size == 0) return p;  // a heap copy is ours already
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + size;
  if (::mprotect(reinterpret_cast<void*>(begin), end - begin, PROT_READ | PROT_WRITE) != 0) return nullptr;
  return p;
}

MappedFile::~MappedFile() {
  if (locked_) ::munlock(data_, size_);
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace aigc
