// Exchange: what a route's handler (HTTP thread) and the model's worker (job) share for one
// request: the server-sent events not yet written, the non-streaming result or the error, and the
// cancel flag. See http_server.cpp (handlers) and generation_jobs.cpp (jobs).
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/api_error.h"

namespace aigc::server {

using Clock = std::chrono::steady_clock;

// One server-sent event: "data: JSON\n\n" (invalid UTF-8 in model text becomes U+FFFD).
inline std::string sse(const nlohmann::json& j) {
  return "data: " + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

// What a route's handler and the model's worker share for one request.
// The end of a job (its last events, its result or its error) is held back until release(),
// which the worker calls after it let go of the model: a client that sends its next request as
// soon as it has the answer then finds the model idle (the memory budget may unload it).
struct Exchange {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> chunks;  // server-sent events not yet written
  bool started = false, done = false;
  std::optional<ApiError> error;   // before started: the HTTP answer
  std::optional<ApiError> failure; // after started: the error, for a non-streaming answer
  nlohmann::json result;                     // non-streaming answer
  std::atomic<bool> cancel{false}; // client gone, timed out, or server stopping
  std::vector<std::string> tail;   // the last events, held until release()
  bool ended = false;              // fail() or finish() was called

  void push(std::string s) {
    {
      std::lock_guard lk(mu);
      chunks.push_back(std::move(s));
    }
    cv.notify_all();
  }
  void push_last(std::string s) {
    std::lock_guard lk(mu);
    tail.push_back(std::move(s));
  }
  void start() {
    {
      std::lock_guard lk(mu);
      started = true;
    }
    cv.notify_all();
  }
  void fail(ApiError e) {
    std::lock_guard lk(mu);
    if (ended) return;
    if (!started) error = std::move(e);
    else {
      tail.push_back(sse(e.body()) + "data: [DONE]\n\n");
      failure = std::move(e);
    }
    ended = true;
  }
  void finish() {
    std::lock_guard lk(mu);
    ended = true;
  }
  // Publishes the end (call once the model is free). A job that ended without fail()/finish()
  // is reported as an internal error.
  void release() {
    {
      std::lock_guard lk(mu);
      if (!ended) {
        const ApiError e = ApiError::internal("The job ended without an answer");
        if (!started) error = e;
        else tail.push_back(sse(e.body()) + "data: [DONE]\n\n");
      }
      for (std::string& t : tail) chunks.push_back(std::move(t));
      tail.clear();
      started = done = true;
    }
    cv.notify_all();
  }
  // Waits until the job started (or failed) or the deadline passed; false on the deadline.
  bool wait_started(Clock::time_point deadline) {
    std::unique_lock lk(mu);
    return cv.wait_until(lk, deadline, [&] { return started || done; });
  }
  bool wait_done(Clock::time_point deadline) {
    std::unique_lock lk(mu);
    return cv.wait_until(lk, deadline, [&] { return done; });
  }
};

}  // namespace aigc::server
