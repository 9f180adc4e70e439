// The engine's threads. Built on OpenMP so that our kernels and oneDNN's GEMM/convolution share
// one set of worker threads (two pools would oversubscribe the cores and spin against each other).
// Default: one thread per physical core; `-t/--threads` sets it for every command.
//
//   thread_pool_run([&](int ith, int nth) { ... rows ith, ith+nth, ... });
//   parallel_for(n, [&](int64_t i0, int64_t i1) { for (i = i0; i < i1; ++i) ... });
#pragma once

#include <cstdint>
#include <functional>  // kept for files that relied on it through this header
#include <memory>
#include <type_traits>
#include <utility>

namespace aigc {

// Non-owning reference to a callable. Unlike std::function it never allocates (a lambda with more
// than two captures would), so the token loop can call parallel kernels with zero allocations.
// Valid while the callable lives: here, for the duration of the call it is passed to.
template <typename Sig> class FunctionRef;
template <typename R, typename... A>
class FunctionRef<R(A...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f) noexcept  // NOLINT: implicit, like std::function
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

int physical_core_count();
void thread_count_set(int n);  // n <= 0: physical cores
int thread_count();

// Runs fn(ith, nth) on nth = thread_count() threads (the caller is thread 0) and waits.
void thread_pool_run(FunctionRef<void(int ith, int nth)> fn);

// Splits [0, n) into contiguous chunks, one per thread; calls fn(begin, end) for each non-empty one.
// Runs inline when n < min_per_thread * 2 (not worth waking threads).
void parallel_for(int64_t n, FunctionRef<void(int64_t begin, int64_t end)> fn,
                  int64_t min_per_thread = 1);

}  // namespace aigc
