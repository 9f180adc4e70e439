// Sampling chain (src/text/sampling.h): every sampler's output distribution against an
// independent numpy twin (tests/ref/twin_sampling.py), the chain order, greedy, seeds (including
// the exact tokens a seed gives, computed by the twin's own mt19937_64), the empirical frequencies
// of many draws, the penalty window, parameter checks, and no allocation per token.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <set>
#include <vector>

#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "core/error.h"
#include "text/sampling.h"


using namespace aigc;
using aigc::test::RefDump;

namespace {

constexpr int kVocab = 1000;
constexpr int kCases = 7;

std::vector<float> vec_f32(const Tensor& t) {
  const Tensor c = aigc::test::to_f32(t);
  return {c.ptr<float>(), c.ptr<float>() + c.numel()};
}
std::vector<int32_t> vec_i32(const Tensor& t) {
  return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()};
}

SamplingParams params_of(const std::vector<float>& p) {
  SamplingParams s;
  s.temp = p[0];
  s.top_k = static_cast<int32_t>(p[1]);
  s.top_p = p[2];
  s.min_p = p[3];
  s.repeat_penalty = p[4];
  s.repeat_last_n = static_cast<int32_t>(p[5]);
  s.frequency_penalty = p[6];
  s.presence_penalty = p[7];
  s.min_keep = static_cast<int32_t>(p[8]);
  s.seed = 1;
  return s;
}

// The distribution the candidates stand for: softmax over the survivors, 0 elsewhere. [V]
Tensor dist_of(TokenCandidates c) {
  sample_softmax(c);
  Tensor d = Tensor::zeros(DType::F32, {kVocab});
  for (size_t i = 0; i < c.items.size(); ++i) d.ptr<float>()[c.items[i].id] = static_cast<float>(c.probs[i]);
  return d;
}

struct Case {
  std::vector<float> logits;
  std::vector<int32_t> history;
  SamplingParams sp;
};

Case case_load(const RefDump& d, int c) {
  const std::string p = "c" + std::to_string(c) + "_";
  return {vec_f32(d.get(p + "logits")), d.has(p + "history") ? vec_i32(d.get(p + "history")) : std::vector<int32_t>{},
          params_of(vec_f32(d.get(p + "params")))};
}

// The penalty window as the Sampler keeps it: the last repeat_last_n tokens.
std::vector<int32_t> window_of(const Case& k) {
  const size_t n = std::min(k.history.size(), static_cast<size_t>(k.sp.repeat_last_n));
  return {k.history.end() - n, k.history.end()};
}

Sampler sampler_with_history(const Case& k, int64_t seed) {
  SamplingParams sp = k.sp;
  sp.seed = seed;
  Sampler s(sp, kVocab);
  for (int32_t t : k.history) s.token_accept(t);
  return s;
}

}  // namespace

// Each sampler, step by step, against the twin's distributions. Tolerance 1e-6 absolute on
// probabilities: logit arithmetic is float32 on both sides (same operations), softmax is double
// here and float64 there, and the dump stores f32 (relative 6e-8); the twin asserts that no
// threshold lies within 1e-5 of a cut, so a rounding difference cannot change which tokens survive.
TEST(Sampling, EachSamplerMatchesTwin) {
  const RefDump d = RefDump::load("sampling");
  for (int c = 0; c < kCases; ++c) {
    SCOPED_TRACE("case " + std::to_string(c));
    const std::string p = "c" + std::to_string(c) + "_";
    const Case k = case_load(d, c);
    TokenCandidates cand;
    candidates_fill(cand, k.logits);
    std::vector<int32_t> counts(kVocab, 0);
    sample_penalties(cand, window_of(k), k.sp.repeat_penalty, k.sp.frequency_penalty, k.sp.presence_penalty,
                     counts);
    EXPECT_EQ(std::count(counts.begin(), counts.end(), 0), kVocab) << "scratch counts left dirty";
    EXPECT_TENSORS_CLOSE(dist_of(cand), d.get(p + "after_penalties"), 1e-6f, 0.0f);
    EXPECT_EQ(sample_greedy(cand), d.get(p + "greedy").ptr<int32_t>()[0]);
    if (k.sp.temp <= 0.0f) continue;
    const size_t mk = static_cast<size_t>(k.sp.min_keep);
    sample_top_k(cand, k.sp.top_k, mk);
    EXPECT_TENSORS_CLOSE(dist_of(cand), d.get(p + "after_top_k"), 1e-6f, 0.0f);
    sample_top_p(cand, k.sp.top_p, mk);
    EXPECT_TENSORS_CLOSE(dist_of(cand), d.get(p + "after_top_p"), 1e-6f, 0.0f);
    sample_min_p(cand, k.sp.min_p, mk);
    EXPECT_TENSORS_CLOSE(dist_of(cand), d.get(p + "after_min_p"), 1e-6f, 0.0f);
    sample_temperature(cand, k.sp.temp);
    EXPECT_TENSORS_CLOSE(dist_of(cand), d.get(p + "after_temp"), 1e-6f, 0.0f);
  }
}

// The Sampler runs the chain in the twin's (llama.cpp's) order: its final candidates are the
// twin's final distribution, and temp <= 0 gives the twin's greedy token.
TEST(Sampling, ChainOrderMatchesTwin) {
  const RefDump d = RefDump::load("sampling");
  for (int c = 0; c < kCases; ++c) {
    SCOPED_TRACE("case " + std::to_string(c));
    const std::string p = "c" + std::to_string(c) + "_";
    const Case k = case_load(d, c);
    Sampler s = sampler_with_history(k, 3);
    const int32_t tok = s.sample(k.logits);
    if (k.sp.temp <= 0.0f) {
      EXPECT_EQ(tok, d.get(p + "greedy").ptr<int32_t>()[0]);
      continue;
    }
    EXPECT_TENSORS_CLOSE(dist_of(s.candidates()), d.get(p + "after_temp"), 1e-6f, 0.0f);
    EXPECT_GT(d.get(p + "after_temp").ptr<float>()[tok], 0.0f) << "drew a token outside the distribution";
  }
}

TEST(Sampling, GreedyIsArgmax) {
  std::mt19937 gen(5);
  std::normal_distribution<float> normal;  // inputs only; exactness of the values does not matter
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> l(kVocab);
    for (float& x : l) x = normal(gen);
    SamplingParams sp;
    sp.temp = 0.0f;
    Sampler s(sp, kVocab);
    EXPECT_EQ(s.sample(l), std::max_element(l.begin(), l.end()) - l.begin());
  }
}

// The exact tokens of seed 42, computed by the twin with its own mt19937_64 (from the standard's
// definition) and its own draw: pins the sequence on every platform.
TEST(Sampling, SeedGivesTwinTokens) {
  const RefDump d = RefDump::load("sampling");
  const Case k = case_load(d, 0);
  Sampler s = sampler_with_history(k, 42);
  const std::vector<int32_t> want = vec_i32(d.get("c0_draws_seed42"));
  std::vector<int32_t> got;
  for (size_t i = 0; i < want.size(); ++i) got.push_back(s.sample(k.logits));
  EXPECT_EQ(got, want);
  // The standard library's engine itself: [rand.predef] fixes its 10000th output.
  std::mt19937_64 e;
  e.discard(9999);
  EXPECT_EQ(e(), 9981545732273789042ull);
}

TEST(Sampling, SameSeedSameSequenceOtherSeedOther) {
  const RefDump d = RefDump::load("sampling");
  const Case k = case_load(d, 0);
  auto run = [&](int64_t seed) {
    Sampler s = sampler_with_history(k, seed);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      out.push_back(s.sample(k.logits));
      s.token_accept(out.back());  // penalties change the distribution as the sequence grows
    }
    return out;
  };
  const std::vector<int32_t> a = run(1234), b = run(1234), c = run(1235);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 5u) << "the draws should vary";
  // reset() forgets the accepted tokens and replays the generator from the seed.
  Sampler s = sampler_with_history(k, 1234);
  s.reset();
  for (int32_t t : k.history) s.token_accept(t);
  std::vector<int32_t> again;
  for (int i = 0; i < 200; ++i) {
    again.push_back(s.sample(k.logits));
    s.token_accept(again.back());
  }
  EXPECT_EQ(again, a);
}

// 20000 draws through the whole Sampler against the twin's final distribution (case 0: 37
// tokens). Chi-square over the bins with expected count >= 5 (the rest pooled). The seed is fixed,
// so the statistic is a deterministic number (measured 31.42 over 37 bins, bound 68.08)
// and the bound, the 0.999 quantile of chi-square with df degrees of freedom (Wilson-Hilferty),
// cannot flake; a wrong distribution (e.g. temperature not applied) gives thousands.
TEST(Sampling, DrawFrequenciesMatchDistribution) {
  const RefDump d = RefDump::load("sampling");
  const Case k = case_load(d, 0);
  const std::vector<float> want = vec_f32(d.get("c0_after_temp"));
  Sampler s = sampler_with_history(k, 7);
  constexpr int kDraws = 20000;
  std::vector<int> hits(kVocab, 0);
  for (int i = 0; i < kDraws; ++i) ++hits[s.sample(k.logits)];
  double chi2 = 0.0, pooled_exp = 0.0, pooled_obs = 0.0;
  int bins = 0;
  for (int t = 0; t < kVocab; ++t) {
    const double e = double(want[t]) * kDraws;
    if (want[t] == 0.0f) {
      EXPECT_EQ(hits[t], 0) << "token " << t << " is outside the distribution";
    } else if (e >= 5.0) {
      chi2 += (hits[t] - e) * (hits[t] - e) / e;
      ++bins;
    } else {
      pooled_exp += e;
      pooled_obs += hits[t];
    }
  }
  if (pooled_exp > 0.0) {
    chi2 += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp;
    ++bins;
  }
  const double df = bins - 1, z = 3.090;  // z: the 0.999 normal quantile
  const double bound = df * std::pow(1.0 - 2.0 / (9.0 * df) + z * std::sqrt(2.0 / (9.0 * df)), 3.0);
  std::printf("chi-square %.2f with %d bins (bound %.2f)\n", chi2, bins, bound);
  EXPECT_GT(bins, 10);
  EXPECT_LT(chi2, bound);
}

// Only tokens inside the window are penalised; counts decide the frequency penalty.
TEST(Sampling, PenaltiesOnlyInWindow) {
  std::vector<float> l = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  SamplingParams sp;
  sp.temp = 0.0f;
  sp.repeat_penalty = 2.0f;
  sp.frequency_penalty = 0.25f;
  sp.presence_penalty = 0.125f;
  sp.repeat_last_n = 3;
  TokenCandidates c;
  candidates_fill(c, l);
  std::vector<int32_t> counts(5, 0);
  const std::vector<int32_t> window = {1, 0, 0, 7, -1};  // 7 and -1: not in the vocabulary, ignored
  sample_penalties(c, window, sp.repeat_penalty, sp.frequency_penalty, sp.presence_penalty, counts);
  EXPECT_FLOAT_EQ(c.items[0].logit, 2.0f / 2.0f - (2 * 0.25f + 0.125f));
  EXPECT_FLOAT_EQ(c.items[1].logit, -2.0f * 2.0f - (1 * 0.25f + 0.125f));
  EXPECT_EQ(c.items[2].logit, 1.0f);
  EXPECT_EQ(c.items[4].logit, 3.0f);
  // Through the Sampler: token 4 (the argmax) accepted, then pushed out of the 3-token window.
  Sampler s(sp, 5);
  s.token_accept(4);
  EXPECT_EQ(s.sample(l), 0);  // 4 penalised: 3/2 - 0.375 = 1.125 < 2
  for (int32_t t : {2, 3, 3}) s.token_accept(t);
  EXPECT_EQ(s.sample(l), 4);  // 4 left the window
}

TEST(Sampling, BadParamsAreErrors) {
  auto bad = [](auto edit) {
    SamplingParams sp;
    edit(sp);
    EXPECT_THROW(Sampler(sp, 10), Error);
  };
  bad([](SamplingParams& p) { p.top_p = 1.5f; });
  bad([](SamplingParams& p) { p.min_p = -0.1f; });
  bad([](SamplingParams& p) { p.repeat_penalty = 0.0f; });
  bad([](SamplingParams& p) { p.repeat_last_n = -1; });
  bad([](SamplingParams& p) { p.temp = NAN; });
  bad([](SamplingParams& p) { p.min_keep = 0; });
  EXPECT_THROW(Sampler(SamplingParams{}, 0), Error);
  Sampler s(SamplingParams{}, 10);
  std::vector<float> wrong(9, 0.0f);
  EXPECT_THROW(s.sample(wrong), Error);
  // NaN logits never win and never crash; all -inf still yields a token.
  std::vector<float> l(10, -INFINITY);
  l[3] = NAN;
  const int32_t t = s.sample(l);
  EXPECT_TRUE(t >= 0 && t < 10);
}

// After the first call, sample() and token_accept() allocate nothing (candidate buffers reused).
TEST(Sampling, NoAllocationPerToken) {
  const RefDump d = RefDump::load("sampling");
  for (int c : {0, 1, 3}) {
    const Case k = case_load(d, c);
    Sampler s = sampler_with_history(k, 11);
    s.token_accept(s.sample(k.logits));  // the first call may size buffers
    test::AllocCounter allocs;
    for (int i = 0; i < 100; ++i) s.token_accept(s.sample(k.logits));
    EXPECT_EQ(allocs.count(), 0) << "case " << c;
  }
}
