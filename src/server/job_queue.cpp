#include "server/job_queue.h"

#include <exception>

#include "core/log.h"

namespace aigc::server {

JobQueue::JobQueue(std::string name, size_t capacity)
    : name_(std::move(name)), capacity_(capacity < 1 ? 1 : capacity), worker_([this] { worker_loop(); }) {}

JobQueue::~JobQueue() {
  shutdown();
  if (worker_.joinable()) worker_.join();
}

bool JobQueue::push(Job job) {
  {
    std::lock_guard lk(mu_);
    if (stopping_ || jobs_.size() + (running_ ? 1 : 0) >= capacity_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

size_t JobQueue::depth() const {
  std::lock_guard lk(mu_);
  return jobs_.size() + (running_ ? 1 : 0);
}

bool JobQueue::busy() const {
  std::lock_guard lk(mu_);
  return running_ || !jobs_.empty();
}

void JobQueue::shutdown() {
  std::deque<Job> dropped;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    dropped.swap(jobs_);
  }
  cv_.notify_all();
  for (Job& j : dropped)
    if (j.drop) j.drop();
}

void JobQueue::worker_loop() {
  std::unique_lock lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    lk.unlock();
    try {
      job.run();
    } catch (const std::exception& e) {  // jobs report their own errors; this is a last resort
      log_warn("queue {}: job failed: {}", name_, e.what());
    }
    job = {};  // release captured state before taking the lock again
    lk.lock();
    running_ = false;
  }
}

}  // namespace aigc::server
