#!/usr/bin/env python3
"""Twin for the sampling chain (tests/unit/test_sampling.cpp).

Written from the samplers' definitions (llama.cpp's documented semantics), not from our C++:
  penalties    for each token t with count c > 0 in the window (the last `last_n` history tokens):
               l = l * r if l <= 0 else l / r    (CTRL repetition penalty, as llama.cpp)
               l = l - (c * freq + presence)     (OpenAI frequency / presence penalties)
  top_k        keep the k largest logits (k <= 0: all; at least min_keep)
  top_p        sort by probability, keep the shortest prefix whose cumulative probability >= p
               (and at least min_keep)
  min_p        keep tokens whose probability >= min_p * (largest probability); if fewer than
               min_keep survive, keep the min_keep largest
  temperature  l = l / temp
  chain order  penalties -> top_k -> top_p -> min_p -> temperature (llama.cpp's default order)
  greedy       (temp <= 0) argmax of the penalised logits
Ties: the order "logit descending, then token id ascending" (aigc's documented rule; llama.cpp
leaves ties to std::sort) decides which equal logits a top_k / top_p cut keeps, and greedy picks
the lowest id. Logit arithmetic in float32 like the engine; probabilities in float64.

Writes OUT_DIR/sampling.bin; for each case c:
  c{c}_logits f32 [V], c{c}_history i32 [H] (oldest first; absent when empty),
  c{c}_params f32 [9] = temp, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
                        frequency_penalty, presence_penalty, min_keep
  c{c}_after_{penalties,top_k,top_p,min_p,temp} f32 [V]: the distribution (softmax over the
      surviving tokens, 0 elsewhere) after each step
  c{c}_greedy i32 [1]: argmax after the penalties
  c0_draws_seed42 i32 [50]: the tokens a sampler seeded with 42 draws from case 0's final
      distribution (history accepted, draws not accepted, so the distribution stays fixed):
      std::mt19937_64 implemented below from the C++ standard's definition (checked against the
      standard's required 10000th output), u = (x >> 11) * 2^-53, and the first candidate, in the
      order logit descending / id ascending, whose cumulative probability exceeds u.
The cases avoid threshold knife-edges (asserted below), so 1e-6 tolerances cannot flip a cut.
"""
import sys

import numpy as np

import refdump

V = 1000
F = np.float32
EDGE = 1e-5  # no cumulative sum / min_p ratio lies this close to its threshold


def order_of(alive, l):
    return sorted(alive, key=lambda t: (-float(l[t]), t))


def softmax_over(alive, l):
    a = np.array(sorted(alive), dtype=np.int64)
    x = l[a].astype(np.float64)
    e = np.exp(x - x.max())
    p = np.zeros(V)
    p[a] = e / e.sum()
    return p


def penalties(l, history, r, last_n, freq, pres):
    l = l.copy()
    window = history[len(history) - last_n:] if last_n > 0 else []
    counts = {}
    for t in window:
        counts[t] = counts.get(t, 0) + 1
    for t, c in counts.items():
        x = l[t]
        x = F(x * F(r)) if x <= 0 else F(x / F(r))
        l[t] = F(x - F(F(c) * F(freq) + F(pres)))
    return l


def top_k(alive, l, k, min_keep):
    n = len(alive)
    keep = n if k <= 0 else min(n, max(k, min_keep))
    return order_of(alive, l)[:keep]


def top_p(alive, l, p, min_keep):
    if p >= 1:
        return alive
    order = order_of(alive, l)
    probs = softmax_over(alive, l)
    cum = np.cumsum([probs[t] for t in order])
    for i in range(len(order)):
        assert abs(cum[i] - p) > EDGE, "top_p knife edge: choose another case"
        if cum[i] >= p and i + 1 >= min_keep:
            return order[:i + 1]
    return order


def min_p(alive, l, p, min_keep):
    if p <= 0:
        return alive
    probs = softmax_over(alive, l)
    pmax = max(probs[t] for t in alive)
    for t in alive:
        assert abs(probs[t] / pmax - p) > EDGE, "min_p knife edge: choose another case"
    kept = [t for t in alive if probs[t] >= p * pmax]
    if len(kept) < min_keep:
        return order_of(alive, l)[:min_keep]
    return kept


def run_case(logits, history, prm):
    temp, k, p, mp, r, last_n, freq, pres, min_keep = prm
    out = {}
    l = penalties(logits, history, r, int(last_n), freq, pres)
    alive = list(range(V))
    out["after_penalties"] = softmax_over(alive, l)
    out["greedy"] = np.array([order_of(alive, l)[0]], dtype=np.int32)
    if temp <= 0:  # greedy: the filters do not run
        return out
    alive = top_k(alive, l, int(k), int(min_keep))
    out["after_top_k"] = softmax_over(alive, l)
    alive = top_p(alive, l, p, int(min_keep))
    out["after_top_p"] = softmax_over(alive, l)
    alive = min_p(alive, l, mp, int(min_keep))
    out["after_min_p"] = softmax_over(alive, l)
    lt = l.copy()
    lt[alive] = (l[alive] / F(temp)).astype(F)
    out["after_temp"] = softmax_over(alive, lt)
    return out


class MT19937_64:
    """std::mt19937_64 as [rand.predef] defines it: mersenne_twister_engine<uint_fast64_t, 64, 312,
    156, 31, 0xb5026f5aa96619e9, 29, 0x5555555555555555, 17, 0x71d67fffeda60000, 37,
    0xfff7eee000000000, 43, 6364136223846793005>."""
    N, M, MASK = 312, 156, (1 << 64) - 1

    def __init__(self, seed):
        self.mt = [seed & self.MASK]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & self.MASK)
        self.i = self.N

    def __call__(self):
        if self.i >= self.N:
            lower = (1 << 31) - 1
            upper = ~lower & self.MASK
            for k in range(self.N):
                y = (self.mt[k] & upper) | (self.mt[(k + 1) % self.N] & lower)
                v = self.mt[(k + self.M) % self.N] ^ (y >> 1)
                if y & 1:
                    v ^= 0xB5026F5AA96619E9
                self.mt[k] = v
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & self.MASK


def draws(dist, l_after, seed, n):
    """dist: final distribution [V]; l_after: the logits that ordered it (ties by id)."""
    alive = [int(t) for t in np.nonzero(dist)[0]]
    order = order_of(alive, l_after)
    cum = np.cumsum([dist[t] for t in order])
    rng = MT19937_64(seed)
    out = []
    for _ in range(n):
        u = (rng() >> 11) * 2.0 ** -53
        target = u * cum[-1]
        i = int(np.searchsorted(cum, target, side="right"))
        assert min(abs(cum - target)) > 1e-7, "draw knife edge: choose another seed"
        out.append(order[min(i, len(order) - 1)])
    return np.array(out, dtype=np.int32)


def logits_with_ties(rng):
    l = (rng.standard_normal(V) * 2.0).astype(F)
    src = rng.integers(0, V, 60)
    dst = rng.integers(0, V, 60)
    l[dst] = l[src]  # scattered ties
    return l


def main(out_dir):
    rng = np.random.default_rng(20261129)
    cases = []

    # 0: llama.cpp defaults plus all three penalties over a 64-token window of a 100-token history
    #    (tokens only in the older 36 must not be penalised); the window holds top tokens.
    l = logits_with_ties(rng)
    top = order_of(range(V), l)
    hist = list(rng.integers(0, V, 100))
    hist[:36] = [top[0]] * 10 + list(rng.integers(0, V, 26))  # top[0] only outside the window
    hist[50:56] = [top[1], top[1], top[2], top[3], top[5], top[5]]
    hist[60] = int(np.argmin(l))  # a negative logit: multiplied by the penalty
    cases.append((l, hist, [0.8, 40, 0.95, 0.05, 1.1, 64, 0.2, 0.3, 1]))

    # 1: top_k off, top_p 0.5, min_p 0.3, hot temperature, no penalties.
    l = logits_with_ties(rng)
    cases.append((l, [], [1.5, 0, 0.5, 0.3, 1.0, 64, 0.0, 0.0, 1]))

    # 2: ties across the top_k boundary (sorted positions 3..6 equal): the lower ids survive.
    l = logits_with_ties(rng)
    top = order_of(range(V), l)
    l[top[3:7]] = l[top[3]]
    cases.append((l, [], [0.5, 5, 1.0, 0.02, 1.0, 64, 0.0, 0.0, 1]))

    # 3: short window (8) of a 20-token history; strong penalties; top tokens outside the window.
    l = logits_with_ties(rng)
    top = order_of(range(V), l)
    hist = [top[0], top[1], top[0]] + list(rng.integers(0, V, 9)) + [top[2], top[3], top[3], top[3]] + \
        [top[4], int(np.argmin(l)), top[2], top[6]]
    cases.append((l, hist, [1.0, 40, 0.9, 0.05, 1.5, 8, 0.5, 0.7, 1]))

    # 4: min_keep 5 overrides top_k 2, top_p 0.1 and min_p 0.9.
    l = logits_with_ties(rng)
    cases.append((l, [], [0.7, 2, 0.1, 0.9, 1.0, 64, 0.0, 0.0, 5]))

    # 5: greedy with a tie at the maximum (ids 10 and 20): the penalty on 10 leaves 20 the argmax.
    l = logits_with_ties(rng)
    l[10] = l[20] = F(l.max() + 1)
    cases.append((l, [10, 3, 10], [0.0, 40, 0.95, 0.05, 1.2, 64, 0.0, 0.0, 1]))

    # 6: the same tie without penalties: the lower id (10) wins.
    cases.append((l.copy(), [], [0.0, 40, 0.95, 0.05, 1.0, 64, 0.0, 0.0, 1]))

    tensors, final64 = {}, {}
    for c, (l, hist, prm) in enumerate(cases):
        tensors[f"c{c}_logits"] = l.astype(F)
        if hist:  # (absent when empty: the reader takes no zero-size tensors)
            tensors[f"c{c}_history"] = np.array(hist, dtype=np.int32).reshape(-1)
        tensors[f"c{c}_params"] = np.array(prm, dtype=F)
        outs = run_case(l.astype(F), [int(t) for t in hist], prm)
        final64[c] = outs.get("after_temp")
        for name, v in outs.items():
            tensors[f"c{c}_{name}"] = v.astype(F) if v.dtype != np.int32 else v
    # The standard requires the 10000th output of a default-seeded (5489) mt19937_64.
    g = MT19937_64(5489)
    for _ in range(9999):
        g()
    assert g() == 9981545732273789042
    l0, h0, p0 = cases[0]
    lp = penalties(l0.astype(F), [int(t) for t in h0], p0[4], p0[5], p0[6], p0[7])
    tensors["c0_draws_seed42"] = draws(final64[0], lp, 42, 50)
    assert tensors["c5_greedy"][0] == 20 and tensors["c6_greedy"][0] == 10
    assert np.count_nonzero(tensors["c2_after_top_k"]) == 5
    assert np.count_nonzero(tensors["c4_after_min_p"]) == 5
    refdump.write(f"{out_dir}/sampling.bin", tensors)


if __name__ == "__main__":
    main(sys.argv[1])
