// SD conditioning: chunks through the text encoder as one batch, A1111's weighting per chunk, the
// CFG pair padded with the empty prompt's chunks.
#include "image/sd_conditioning.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/ops.h"

namespace aigc::image {

namespace {

constexpr int64_t kChunk = static_cast<int64_t>(clip_context);  // 77

void chunks_check(std::span<const ClipChunk> chunks) {
  const char* where = "sd_conditioning";
  if (chunks.empty()) error_throw("no chunks to encode", where, "an empty prompt still gives one chunk (tokenize_for_sd)");
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (chunks[c].ids.size() != clip_context || chunks[c].weights.size() != clip_context)
      error_throw(fmt::format("chunk {} has {} ids and {} weights, expected {} of each", c, chunks[c].ids.size(),
                              chunks[c].weights.size(), clip_context),
                  where);
    for (float w : chunks[c].weights)
      if (!std::isfinite(w))
        error_throw(fmt::format("chunk {} has a weight that is not a finite number ({})", c, w), where,
                    "use a weight such as (word:1.3)");
  }
}

// A1111 "Original" emphasis on one encoded chunk z [77, W]: z[t] *= w[t], then rescale so the mean
// over the chunk is what it was. Means in double.
void chunk_weights_apply(float* z, std::span<const float> weights, int64_t width) {
  if (std::all_of(weights.begin(), weights.end(), [](float w) { return w == 1.0f; })) return;  // z * 1: unchanged
  const int64_t n = kChunk * width;
  double before = 0.0, after = 0.0;
  for (int64_t i = 0; i < n; ++i) before += z[i];
  for (int64_t t = 0; t < kChunk; ++t) {
    const float w = weights[static_cast<size_t>(t)];
    for (int64_t i = 0; i < width; ++i) {
      z[t * width + i] *= w;
      after += z[t * width + i];
    }
  }
  if (after == 0.0) return;  // A1111 would divide by zero; keep the weighted values
  const float scale = static_cast<float>(before / after);
  for (int64_t i = 0; i < n; ++i) z[i] *= scale;
}

// Weighted encodings of all chunks: [chunks, 77, W].
Tensor chunks_encode(ClipTextModel& model, std::span<const ClipChunk> chunks, int clip_skip) {
  chunks_check(chunks);
  std::vector<int32_t> ids;
  ids.reserve(chunks.size() * clip_context);
  for (const ClipChunk& c : chunks) ids.insert(ids.end(), c.ids.begin(), c.ids.end());
  const int64_t n = static_cast<int64_t>(chunks.size()), width = model.config().width;
  Tensor z = Tensor::empty(DType::F32, {n, kChunk, width});
  model.encode(ids, n, clip_skip, z);
  for (int64_t c = 0; c < n; ++c)
    chunk_weights_apply(z.ptr<float>() + c * kChunk * width, chunks[static_cast<size_t>(c)].weights, width);
  return z;
}

}  // namespace

Tensor sd_conditioning_from_chunks(ClipTextModel& model, std::span<const ClipChunk> chunks, int clip_skip) {
  Tensor z = chunks_encode(model, chunks, clip_skip);  // [n, 77, W] is [1, 77 n, W] in memory
  return z.reshape({1, z.size(0) * kChunk, z.size(2)});
}

Tensor sd_conditioning_encode(ClipTextModel& model, const ClipTokenizer& tok, std::string_view prompt,
                              const SdConditioningOptions& opt) {
  const std::vector<ClipChunk> chunks = tok.tokenize_for_sd(prompt, opt.tokenize);
  return sd_conditioning_from_chunks(model, chunks, opt.clip_skip);
}

Tensor sd_conditioning_cfg(ClipTextModel& model, const ClipTokenizer& tok, std::string_view prompt,
                           std::string_view negative, const SdConditioningOptions& opt, int64_t batch) {
  if (batch < 1) error_throw(fmt::format("batch size {} must be at least 1", batch), "sd_conditioning_cfg");
  std::vector<ClipChunk> all = tok.tokenize_for_sd(prompt, opt.tokenize);
  const size_t n_cond = all.size();
  const std::vector<ClipChunk> neg = tok.tokenize_for_sd(negative, opt.tokenize);
  const size_t n_uncond = neg.size();
  all.insert(all.end(), neg.begin(), neg.end());
  const size_t n = std::max(n_cond, n_uncond);
  const size_t empty_index = all.size();  // the empty prompt's chunk, when one side needs padding
  if (n_cond != n_uncond) all.push_back(tok.tokenize_for_sd("", opt.tokenize).front());
  const Tensor z = chunks_encode(model, all, opt.clip_skip);  // [chunks, 77, W]

  const int64_t width = z.size(2), T = static_cast<int64_t>(n) * kChunk;
  const size_t chunk_bytes = static_cast<size_t>(kChunk * width) * sizeof(float);
  Tensor out = Tensor::empty(DType::F32, {2 * batch, T, width});
  const size_t first[2] = {0, n_cond}, count[2] = {n_cond, n_uncond};
  for (int side = 0; side < 2; ++side)
    for (int64_t b = 0; b < batch; ++b) {
      float* row = out.ptr<float>() + (side * batch + b) * T * width;
      for (size_t j = 0; j < n; ++j) {
        const size_t src = j < count[side] ? first[side] + j : empty_index;
        std::memcpy(row + static_cast<int64_t>(j) * kChunk * width,
                    z.ptr<float>() + static_cast<int64_t>(src) * kChunk * width, chunk_bytes);
      }
    }
  return out;
}

Tensor sd_conditioning_repeat(const Tensor& cond, int64_t batch) {
  if (cond.ndim() != 3 || batch < 1)
    error_throw(fmt::format("cannot repeat {} {} times; expected [n, T, W] and a batch of at least 1",
                            cond.shape_str(), batch),
                "sd_conditioning_repeat");
  const int64_t n = cond.size(0);
  Tensor out = Tensor::empty(DType::F32, {n * batch, cond.size(1), cond.size(2)});
  for (int64_t r = 0; r < n; ++r)
    for (int64_t b = 0; b < batch; ++b) {
      Tensor dst = out.slice(0, r * batch + b, 1);
      ops::copy(cond.slice(0, r, 1), dst);
    }
  return out;
}

}  // namespace aigc::image
