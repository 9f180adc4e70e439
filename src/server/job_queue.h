// JobQueue: a bounded first-in-first-out queue served by one worker thread.
//
// Generation is compute-bound: one job at a time per model, in arrival order. A full queue
// refuses at once (the route answers 503 with Retry-After) rather than letting clients pile up.
//
//   JobQueue q("tiny", /*capacity=*/8);
//   if (!q.push({.run = [] { ... }, .drop = [] { ... }})) { /* full: 503 */ }
//
// `drop` runs instead of `run` for jobs still waiting when the queue shuts down, so every waiter
// hears back exactly once.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace aigc::server {

struct Job {
  std::function<void()> run;
  std::function<void()> drop;
};

class JobQueue {
 public:
  // capacity: most jobs waiting or running at once (>= 1).
  JobQueue(std::string name, size_t capacity);
  ~JobQueue();  // shutdown(), then joins the worker
  JobQueue(const JobQueue&) = delete;
  JobQueue& operator=(const JobQueue&) = delete;

  // false when full or shut down (the job is not taken).
  bool push(Job job);
  // Jobs waiting plus the one running.
  size_t depth() const;
  bool busy() const;  // a job is running
  // Refuses new jobs and drops the waiting ones (their `drop` runs here); the running job
  // finishes (cancel it through its own flag). Idempotent.
  void shutdown();
  const std::string& name() const { return name_; }

 private:
  void worker_loop();

  std::string name_;
  size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool running_ = false, stopping_ = false;
  std::thread worker_;
};

}  // namespace aigc::server
