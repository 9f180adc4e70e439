// Sampling chain; see sampling.h for the order, the tie rule and the determinism argument.
#include "text/sampling.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace aigc {

namespace {

// Strict total order: higher logit first, then lower id. One sorted result on every platform.
bool logit_before(const TokenLogit& a, const TokenLogit& b) {
  if (a.logit != b.logit) return a.logit > b.logit;
  return a.id < b.id;
}

}  // namespace

void candidates_fill(TokenCandidates& c, std::span<const float> logits) {
  c.items.resize(logits.size());
  // NaN would break the strict order the sorts rely on: it counts as impossible.
  for (size_t i = 0; i < logits.size(); ++i)
    c.items[i] = {static_cast<int32_t>(i), std::isnan(logits[i]) ? -INFINITY : logits[i]};
  c.probs.clear();
  c.sorted = false;
}

void candidates_sort(TokenCandidates& c) {
  if (c.sorted) return;
  std::sort(c.items.begin(), c.items.end(), logit_before);
  c.sorted = true;
}

void sample_penalties(TokenCandidates& c, std::span<const int32_t> window, float repeat_penalty,
                      float frequency_penalty, float presence_penalty, std::span<int32_t> counts) {
  AIGC_ASSERT(!c.sorted && c.items.size() == counts.size(), "penalties run first, on the whole vocabulary");
  const int64_t n_vocab = static_cast<int64_t>(counts.size());
  for (int32_t t : window)
    if (t >= 0 && t < n_vocab) ++counts[t];
  // Each distinct token once: the first visit applies its penalty and clears its count.
  for (int32_t t : window) {
    if (t < 0 || t >= n_vocab || counts[t] == 0) continue;
    float& l = c.items[t].logit;
    // CTRL (Keskar et al. 2019) as llama.cpp: dividing a negative logit would raise it.
    l = l <= 0.0f ? l * repeat_penalty : l / repeat_penalty;
    l -= static_cast<float>(counts[t]) * frequency_penalty + presence_penalty;
    counts[t] = 0;
  }
}

void sample_top_k(TokenCandidates& c, int32_t k, size_t min_keep) {
  const size_t n = c.items.size();
  size_t keep = k <= 0 ? n : std::min(n, std::max(static_cast<size_t>(k), min_keep));
  if (keep == n) {
    candidates_sort(c);
    return;
  }
  if (!c.sorted) std::partial_sort(c.items.begin(), c.items.begin() + keep, c.items.end(), logit_before);
  c.items.resize(keep);
  c.sorted = true;
}

void sample_top_p(TokenCandidates& c, float p, size_t min_keep) {
  if (p >= 1.0f || c.items.empty()) return;
  candidates_sort(c);
  sample_softmax(c);
  double cum = 0.0;
  size_t keep = c.items.size();
  for (size_t i = 0; i < c.items.size(); ++i) {
    cum += c.probs[i];
    if (cum >= p && i + 1 >= min_keep) {
      keep = i + 1;
      break;
    }
  }
  c.items.resize(keep);
  c.probs.clear();
}

void sample_min_p(TokenCandidates& c, float p, size_t min_keep) {
  if (p <= 0.0f || c.items.empty()) return;
  float max_logit = c.items[0].logit;
  for (const TokenLogit& t : c.items) max_logit = std::max(max_logit, t.logit);
  // p_i >= p * p_max  <=>  exp(l_i - l_max) >= p  (the softmax normaliser cancels).
  auto keeps = [&](const TokenLogit& t) { return std::exp(double(t.logit) - double(max_logit)) >= double(p); };
  size_t kept = 0;
  for (const TokenLogit& t : c.items) kept += keeps(t);
  if (kept < min_keep) {
    sample_top_k(c, static_cast<int32_t>(std::min(min_keep, c.items.size())), min_keep);
    return;
  }
  // Stable compaction keeps the order (sorted stays sorted).
  size_t w = 0;
  for (size_t i = 0; i < c.items.size(); ++i)
    if (keeps(c.items[i])) c.items[w++] = c.items[i];
  c.items.resize(w);
  c.probs.clear();
}

void sample_temperature(TokenCandidates& c, float t) {
  AIGC_ASSERT(t > 0.0f, "temperature {} (greedy is handled by the caller)", t);
  for (TokenLogit& x : c.items) x.logit /= t;
  c.probs.clear();
}

void sample_softmax(TokenCandidates& c) {
  AIGC_ASSERT(!c.items.empty());
  float max_logit = c.items[0].logit;
  for (const TokenLogit& t : c.items) max_logit = std::max(max_logit, t.logit);
  c.probs.resize(c.items.size());
  if (max_logit == -INFINITY) {  // nothing is possible: fall back to uniform rather than NaN
    std::fill(c.probs.begin(), c.probs.end(), 1.0 / double(c.items.size()));
    return;
  }
  double sum = 0.0;
  for (size_t i = 0; i < c.items.size(); ++i) {
    c.probs[i] = std::exp(double(c.items[i].logit) - double(max_logit));
    sum += c.probs[i];
  }
  for (double& p : c.probs) p /= sum;
}

int32_t sample_dist(const TokenCandidates& c, double u) {
  AIGC_ASSERT(!c.items.empty() && c.probs.size() == c.items.size(), "call sample_softmax first");
  double total = 0.0;
  for (double p : c.probs) total += p;
  const double target = u * total;
  double cum = 0.0;
  for (size_t i = 0; i < c.items.size(); ++i) {
    cum += c.probs[i];
    if (target < cum) return c.items[i].id;
  }
  // Rounding left u * total at or past the last sum: the last candidate with mass.
  for (size_t i = c.items.size(); i-- > 0;)
    if (c.probs[i] > 0.0) return c.items[i].id;
  return c.items.back().id;
}

int32_t sample_greedy(const TokenCandidates& c) {
  AIGC_ASSERT(!c.items.empty());
  const TokenLogit* best = &c.items[0];
  for (const TokenLogit& t : c.items)
    if (logit_before(t, *best)) best = &t;
  return best->id;
}

double rng_uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;  // 53 random bits: every double exact
}

Sampler::Sampler(const SamplingParams& params, int32_t vocab_size) : params_(params), vocab_size_(vocab_size) {
  AIGC_CHECK(vocab_size > 0, "vocabulary size {} must be positive", vocab_size);
  AIGC_CHECK(std::isfinite(params.temp), "temp {} is not a number", params.temp);
  AIGC_CHECK(params.top_p >= 0.0f && params.top_p <= 1.0f, "top_p {} must be in [0, 1]", params.top_p);
  AIGC_CHECK(params.min_p >= 0.0f && params.min_p <= 1.0f, "min_p {} must be in [0, 1]", params.min_p);
  AIGC_CHECK(params.repeat_penalty > 0.0f && std::isfinite(params.repeat_penalty),
             "repeat_penalty {} must be positive (1 = off)", params.repeat_penalty);
  AIGC_CHECK(params.repeat_last_n >= 0, "repeat_last_n {} must be >= 0 (0 = off)", params.repeat_last_n);
  AIGC_CHECK(std::isfinite(params.frequency_penalty) && std::isfinite(params.presence_penalty),
             "frequency_penalty {} / presence_penalty {} must be finite", params.frequency_penalty,
             params.presence_penalty);
  AIGC_CHECK(params.min_keep >= 1, "min_keep {} must be >= 1", params.min_keep);
  seed_ = params.seed >= 0 ? static_cast<uint64_t>(params.seed)
                           : (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
  rng_.seed(seed_);
  cand_.items.reserve(static_cast<size_t>(vocab_size));
  cand_.probs.reserve(static_cast<size_t>(vocab_size));
  counts_.assign(static_cast<size_t>(vocab_size), 0);
  history_.assign(static_cast<size_t>(params.repeat_last_n), 0);
  window_.reserve(static_cast<size_t>(params.repeat_last_n));
}

void Sampler::token_accept(int32_t id) {
  if (history_.empty()) return;
  history_[history_next_] = id;
  history_next_ = (history_next_ + 1) % history_.size();
  history_count_ = std::min(history_count_ + 1, history_.size());
}

void Sampler::reset() {
  history_next_ = history_count_ = 0;
  rng_.seed(seed_);
}

int32_t Sampler::sample(std::span<const float> logits) {
  AIGC_CHECK(logits.size() == static_cast<size_t>(vocab_size_), "logits have {} entries, vocabulary {}",
             logits.size(), vocab_size_);
  candidates_fill(cand_, logits);
  const bool penalties = params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f ||
                         params_.presence_penalty != 0.0f;
  if (penalties && history_count_ > 0) {
    window_.clear();
    const size_t start = (history_next_ + history_.size() - history_count_) % history_.size();
    for (size_t i = 0; i < history_count_; ++i) window_.push_back(history_[(start + i) % history_.size()]);
    sample_penalties(cand_, window_, params_.repeat_penalty, params_.frequency_penalty, params_.presence_penalty,
                     counts_);
  }
  if (params_.temp <= 0.0f) return sample_greedy(cand_);
  const size_t min_keep = static_cast<size_t>(params_.min_keep);
  sample_top_k(cand_, params_.top_k, min_keep);
  sample_top_p(cand_, params_.top_p, min_keep);
  sample_min_p(cand_, params_.min_p, min_keep);
  sample_temperature(cand_, params_.temp);
  sample_softmax(cand_);
  return sample_dist(cand_, rng_uniform(rng_));
}

}  // namespace aigc
