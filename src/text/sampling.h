// Sampling: picks the next token from a logits vector through a chain of small samplers.
//
// The chain follows llama.cpp's default order (common_params_sampling::samplers:
// penalties, dry, top_n_sigma, top_k, typical_p, top_p, min_p, xtc, temperature, then dist);
// we implement the samplers of that list that are on by default or asked for here and skip
// dry, top_n_sigma, typical_p and xtc (all off by default in llama.cpp):
//
//   penalties -> top_k -> top_p -> min_p -> temperature -> softmax -> draw
//
// temp <= 0 is greedy: the argmax after the penalties (the filters never remove the argmax, so
// running them would not change the result).
//
//   SamplingParams sp;                 // llama.cpp defaults; sp.seed = 42 for reproducible runs
//   Sampler sampler(sp, vocab_size);
//   for (int32_t t : prompt) sampler.token_accept(t);     // the penalty window sees the prompt
//   for (;;) {
//     std::span<const float> logits = model_forward(...);  // [V]
//     int32_t tok = sampler.sample(logits);
//     sampler.token_accept(tok);
//     ...
//   }
//
// Determinism: a seed fixes the token sequence on every platform. The generator is
// std::mt19937_64 (fully specified by the standard); its 64-bit outputs are turned into a double in
// [0, 1) here (std::uniform_real_distribution is implementation-defined, so it is not used);
// candidates are ordered by a strict total order (logit descending, then token id ascending);
// probabilities and cumulative sums are in double. The only platform-dependent step left is
// std::exp, whose last-bit differences can only matter when a draw lands within ~1e-16 of a
// bucket edge.
//
// Ties: where llama.cpp leaves the order of equal logits to std::sort (unspecified), the lower
// token id comes first; top_k and top_p cut ties by that order, greedy returns the lowest id.
//
// Allocation: a Sampler allocates in its constructor only; sample() and token_accept() reuse
// their buffers (tested).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace aigc {

// Defaults as llama.cpp's common_params_sampling.
struct SamplingParams {
  float temp = 0.8f;               // <= 0: greedy
  int32_t top_k = 40;              // <= 0: off
  float top_p = 0.95f;             // >= 1: off
  float min_p = 0.05f;             // <= 0: off
  float repeat_penalty = 1.0f;     // 1: off. CTRL style: positive logits / r, negative * r
  int32_t repeat_last_n = 64;      // penalty window: the last n accepted tokens (0: penalties off)
  float frequency_penalty = 0.0f;  // OpenAI style: logit -= count * frequency_penalty
  float presence_penalty = 0.0f;   //               logit -= (count > 0) * presence_penalty
  int64_t seed = -1;               // < 0: a random seed (std::random_device); see Sampler::seed()
  int32_t min_keep = 1;            // top_k / top_p / min_p keep at least this many candidates
};

struct TokenLogit {
  int32_t id;
  float logit;
};

// The candidates a chain works on: starts as the whole vocabulary in id order; filters shrink it.
struct TokenCandidates {
  std::vector<TokenLogit> items;  // alive candidates
  std::vector<double> probs;      // softmax of items' logits, parallel to items (sample_softmax)
  bool sorted = false;            // items ordered by logit descending, id ascending
};

// ---- the samplers (each one step of the chain) ------------------------------------------------

// items = every token in id order, logits copied. Reuses the buffers' capacity.
void candidates_fill(TokenCandidates& c, std::span<const float> logits);
// Orders items by logit descending, token id ascending (a strict total order: one result).
void candidates_sort(TokenCandidates& c);

// Penalises the tokens that occur in `window` (the recent tokens). Needs the whole vocabulary in
// id order (call right after candidates_fill). `counts` is scratch of vocabulary size, all zero on
// entry; it is all zero again on return. Token ids outside the vocabulary are ignored.
void sample_penalties(TokenCandidates& c, std::span<const int32_t> window, float repeat_penalty,
                      float frequency_penalty, float presence_penalty, std::span<int32_t> counts);
// Keeps the k highest logits (k <= 0: all); leaves items sorted.
void sample_top_k(TokenCandidates& c, int32_t k, size_t min_keep = 1);
// Keeps the smallest prefix (sorted order) whose probability sums to >= p; leaves items sorted.
void sample_top_p(TokenCandidates& c, float p, size_t min_keep = 1);
// Keeps the tokens with probability >= p * (largest probability); keeps the order.
void sample_min_p(TokenCandidates& c, float p, size_t min_keep = 1);
// logit /= t (t > 0).
void sample_temperature(TokenCandidates& c, float t);
// Fills c.probs with the softmax of the items' logits (double precision).
void sample_softmax(TokenCandidates& c);
// Draws from c.probs (call sample_softmax first) with u in [0, 1): the first item whose cumulative
// probability exceeds u * total.
int32_t sample_dist(const TokenCandidates& c, double u);
// The id of the largest logit (lowest id among equals).
int32_t sample_greedy(const TokenCandidates& c);

// A double in [0, 1) from the generator's next 64 bits (the top 53; platform independent).
double rng_uniform(std::mt19937_64& rng);

// ---- the chain ---------------------------------------------------------------------------------

class Sampler {
 public:
  // Checks the parameters (throws aigc::Error naming the bad one).
  Sampler(const SamplingParams& params, int32_t vocab_size);

  // Next token for logits [V]. Does not record it: call token_accept().
  int32_t sample(std::span<const float> logits);
  // Records a token (prompt or generated) for the penalty window.
  void token_accept(int32_t id);
  // Forgets the accepted tokens and restarts the generator from the seed.
  void reset();

  uint64_t seed() const { return seed_; }  // the seed in use (drawn at random when params.seed < 0)
  const SamplingParams& params() const { return params_; }
  // The candidates after the last sample() (before the draw), e.g. for log-probabilities.
  const TokenCandidates& candidates() const { return cand_; }

 private:
  SamplingParams params_;
  int32_t vocab_size_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  TokenCandidates cand_;
  std::vector<int32_t> counts_;   // [V] scratch for the penalties
  std::vector<int32_t> history_;  // ring buffer of the last repeat_last_n tokens
  size_t history_next_ = 0, history_count_ = 0;
  std::vector<int32_t> window_;   // history_ in order, oldest first
};

}  // namespace aigc
