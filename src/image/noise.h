// Seeded Gaussian noise for diffusion: the same seed gives the same latents on every machine.
//
// Generator (fully specified, no implementation-defined distribution):
//   std::mt19937_64 seeded with the 64-bit seed (the engine itself is fixed by the C++ standard);
//   each pair of normals takes two raw outputs a, b:
//     u1 = ((a >> 11) + 1) * 2^-53      in (0, 1]   (so log(u1) is finite)
//     u2 = (b >> 11) * 2^-53            in [0, 1)
//     z0 = sqrt(-2 ln u1) * cos(2 pi u2),  z1 = sqrt(-2 ln u1) * sin(2 pi u2)   (Box-Muller, in double)
//   and is emitted z0 then z1, rounded to f32. An odd-length fill keeps z1 for the next call, so a
//   stream never depends on how it was cut into fills. std::normal_distribution is not used: its
//   algorithm differs between standard libraries. (libm's log/cos/sin may differ in the last bit
//   between platforms; after rounding to f32 that can flip at most a rare last bit.)
//
// Batches: image b of a batch draws from its own generator seeded with seed + b (A1111's
// convention), so an image does not depend on the batch it was made in. A run of several batches
// (batch count N, batch size B) gives batch k SeededNoise(seed + k * B, B): image i of the run
// always has seed + i. Each image's stream gives its initial latent noise first, then the
// ancestral samplers' step noise in step order.
//
// Samplers take noise through the NoiseSource interface, so a test can inject known noise:
//   SeededNoise noise(42, batch);                   // batch streams: seeds 42, 43, ...
//   Tensor x = Tensor::empty(DType::F32, {batch, 4, 64, 64});
//   noise.noise_fill(x);                            // initial latent noise; samplers draw the rest
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "core/tensor.h"

namespace aigc::image {

// One stream of standard normals (see above).
class NoiseRng {
 public:
  explicit NoiseRng(uint64_t seed) : engine_(seed) {}
  double normal();                      // one N(0, 1) draw
  void normal_fill(std::span<float> out);

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// Where samplers get their Gaussian noise from: the initial latent and ancestral steps.
class NoiseSource {
 public:
  virtual ~NoiseSource() = default;
  // Fills a contiguous f32 tensor [B, ...] with N(0, 1) noise; image b from stream b.
  virtual void noise_fill(Tensor& out) = 0;
};

// The production source: image b from NoiseRng(seed + b).
class SeededNoise : public NoiseSource {
 public:
  SeededNoise(uint64_t seed, int batch);
  void noise_fill(Tensor& out) override;

 private:
  std::vector<NoiseRng> rngs_;
};

}  // namespace aigc::image
