// Counts heap allocations made through operator new (std::vector, std::string, make_shared...)
// while an AllocCounter is alive, so tests can prove hot loops allocate nothing. The test binary
// replaces the global operator new/delete (tests/common/alloc_counter.cpp) with malloc/free plus a
// counter. Direct malloc/aligned_alloc calls (Tensor::empty, Arena) are not counted: those happen
// at set-up, never in loops, and the loops under test use arenas.
//
//   test::AllocCounter allocs;
//   for (...) sampler.sample(logits);
//   EXPECT_EQ(allocs.count(), 0);
#pragma once

namespace aigc::test {

class AllocCounter {
 public:
  AllocCounter();
  ~AllocCounter();
  AllocCounter(const AllocCounter&) = delete;
  AllocCounter& operator=(const AllocCounter&) = delete;
  long count() const;  // operator new calls (any thread) since construction

 private:
  long start_;
};

}  // namespace aigc::test
