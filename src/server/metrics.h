// Metrics: the server's counters, rendered in the Prometheus text exposition format (version
// 0.0.4) for GET /metrics. Thread-safe; every update is a short critical section.
//
//   metrics.request_observe("/v1/chat/completions", 200, 0.41);   // route, status, seconds
//   metrics.tokens_add(12, 30);                                    // prompt, generated
//   std::string text = metrics.render({{"tiny", 2}});              // queue depth per model
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace aigc::server {

class Metrics {
 public:
  // Latency histogram bucket upper bounds, seconds (plus +Inf).
  static constexpr std::array<double, 12> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

  void request_observe(const std::string& route, int status, double seconds);
  void tokens_add(int64_t prompt, int64_t generated);
  void images_add(int64_t n);
  void cancelled_add();  // generations ended because the client left

  struct ModelGauge {
    std::string model;
    size_t queue_depth = 0;
    bool loaded = false;
  };
  std::string render(const std::vector<ModelGauge>& models) const;

 private:
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};  // non-cumulative per bucket
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, Histogram> latency_;
  int64_t tokens_prompt_ = 0, tokens_generated_ = 0, images_ = 0, cancelled_ = 0;
};

// Resident set size of this process in bytes (/proc/self/statm), 0 when unknown; and the peak
// (VmHWM from /proc/self/status).
int64_t rss_bytes();
int64_t rss_peak_bytes();

}  // namespace aigc::server
