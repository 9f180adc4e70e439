#include "server/metrics.h"

#include <unistd.h>

#include <cstdio>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

namespace aigc::server {

void Metrics::request_observe(const std::string& route, int status, double seconds) {
  std::lock_guard lk(mu_);
  ++requests_[{route, status}];
  Histogram& h = latency_[route];
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  if (b < kBuckets.size()) ++h.counts[b];
  ++h.count;
  h.sum += seconds;
}

void Metrics::tokens_add(int64_t prompt, int64_t generated) {
  std::lock_guard lk(mu_);
  tokens_prompt_ += prompt;
  tokens_generated_ += generated;
}

void Metrics::images_add(int64_t n) {
  std::lock_guard lk(mu_);
  images_ += n;
}

void Metrics::cancelled_add() {
  std::lock_guard lk(mu_);
  ++cancelled_;
}

namespace {
// Label values escape backslash, double quote and newline.
std::string label_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}
}  // namespace

std::string Metrics::render(const std::vector<ModelGauge>& models) const {
  std::lock_guard lk(mu_);
  std::string o;
  o += "# HELP aigc_requests_total HTTP requests by route and status.\n# TYPE aigc_requests_total counter\n";
  for (const auto& [k, n] : requests_)
    o += fmt::format("aigc_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", label_escape(k.first), k.second, n);
  o += "# HELP aigc_request_duration_seconds Time from request to the last byte of the answer.\n"
       "# TYPE aigc_request_duration_seconds histogram\n";
  for (const auto& [route, h] : latency_) {
    uint64_t cum = 0;
    const std::string r = label_escape(route);
    for (size_t b = 0; b < kBuckets.size(); ++b) {
      cum += h.counts[b];
      o += fmt::format("aigc_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n", r, kBuckets[b], cum);
    }
    o += fmt::format("aigc_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n", r, h.count);
    o += fmt::format("aigc_request_duration_seconds_sum{{route=\"{}\"}} {}\n", r, h.sum);
    o += fmt::format("aigc_request_duration_seconds_count{{route=\"{}\"}} {}\n", r, h.count);
  }
  o += "# HELP aigc_prompt_tokens_total Prompt tokens received.\n# TYPE aigc_prompt_tokens_total counter\n";
  o += fmt::format("aigc_prompt_tokens_total {}\n", tokens_prompt_);
  o += "# HELP aigc_generated_tokens_total Tokens generated.\n# TYPE aigc_generated_tokens_total counter\n";
  o += fmt::format("aigc_generated_tokens_total {}\n", tokens_generated_);
  o += "# HELP aigc_images_generated_total Images generated.\n# TYPE aigc_images_generated_total counter\n";
  o += fmt::format("aigc_images_generated_total {}\n", images_);
  o += "# HELP aigc_generations_cancelled_total Generations cut short by a client that left.\n"
       "# TYPE aigc_generations_cancelled_total counter\n";
  o += fmt::format("aigc_generations_cancelled_total {}\n", cancelled_);
  o += "# HELP aigc_queue_depth Jobs waiting or running, per model.\n# TYPE aigc_queue_depth gauge\n";
  for (const ModelGauge& m : models)
    o += fmt::format("aigc_queue_depth{{model=\"{}\"}} {}\n", label_escape(m.model), m.queue_depth);
  o += "# HELP aigc_model_loaded Whether the model is in memory.\n# TYPE aigc_model_loaded gauge\n";
  for (const ModelGauge& m : models)
    o += fmt::format("aigc_model_loaded{{model=\"{}\"}} {}\n", label_escape(m.model), m.loaded ? 1 : 0);
  o += "# HELP aigc_resident_memory_bytes Resident set size of the server process.\n"
       "# TYPE aigc_resident_memory_bytes gauge\n";
  o += fmt::format("aigc_resident_memory_bytes {}\n", rss_bytes());
  o += "# HELP aigc_resident_memory_peak_bytes Peak resident set size.\n# TYPE aigc_resident_memory_peak_bytes gauge\n";
  o += fmt::format("aigc_resident_memory_peak_bytes {}\n", rss_peak_bytes());
  return o;
}

int64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

int64_t rss_peak_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      int64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  return 0;
}

}  // namespace aigc::server
