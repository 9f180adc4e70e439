// Restores the thread pool's thread count when a test that changes it ends, even on failure.
#pragma once

#include "core/thread_pool.h"

namespace aigc::test {

struct ThreadCountGuard {
  int saved = thread_count();
  ~ThreadCountGuard() { thread_count_set(saved); }
};

}  // namespace aigc::test
