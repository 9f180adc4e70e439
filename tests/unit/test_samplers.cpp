// Diffusion schedules and samplers (src/image/): every schedule and every sampler step against a
// float64 PyTorch twin written from k-diffusion's and diffusers' algorithms
// (tests/ref/twin_samplers.py), with the twin's noise fed through a NoiseSource so ancestral steps
// compare exactly; the seeded RNG against the twin's own mt19937_64 + Box-Muller and its
// statistics; image size checks; parameter errors; determinism per seed and per batch image; and
// no allocation inside the step loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/alloc_counter.h"
#include "common/compare.h"
#include "common/refdump.h"
#include "core/error.h"
#include "image/denoiser.h"
#include "image/image_size.h"
#include "image/noise.h"
#include "image/noise_schedule.h"
#include "image/sampler.h"

using namespace aigc;
using namespace aigc::image;
using aigc::test::RefDump;

namespace {

std::vector<double> vec_f64(const Tensor& t) {
  const Tensor c = aigc::test::to_f32(t);
  return {c.ptr<float>(), c.ptr<float>() + c.numel()};
}
std::vector<int> vec_int(const Tensor& t) { return {t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel()}; }

Tensor tensor_of(const std::vector<double>& v) {
  Tensor t = Tensor::empty(DType::F32, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.ptr<float>()[i] = static_cast<float>(v[i]);
  return t;
}

// The twin's fake models (see twin_samplers.py), arithmetic in double like the twin.
struct FakeModel {
  Prediction pred;
  int uncond_calls = 0;
  void operator()(const Tensor& x_in, double t, Tensor& cond, Tensor* uncond) {
    const float* x = x_in.ptr<float>();
    float* c = cond.ptr<float>();
    float* u = uncond ? uncond->ptr<float>() : nullptr;
    if (u) ++uncond_calls;
    for (int64_t i = 0, n = x_in.numel(); i < n; ++i) {
      if (pred == Prediction::Epsilon) {
        c[i] = static_cast<float>(0.1 * x[i] + 0.05 * std::sin(t / 100));
        if (u) u[i] = static_cast<float>(0.05 * x[i] - 0.02 * std::cos(t / 50));
      } else {
        c[i] = static_cast<float>(0.3 * x[i] - 0.1 * std::sin(t / 200));
        if (u) u[i] = static_cast<float>(0.2 * x[i] + 0.05 * std::cos(t / 80));
      }
    }
  }
};

// Hands out the twin's injected noise tensors in order.
class QueueNoise : public NoiseSource {
 public:
  QueueNoise(const RefDump& d, int c) : d_(d), c_(c) {}
  void noise_fill(Tensor& out) override {
    const std::string name = fmt::format("c{}_eps{}", c_, used_);
    ASSERT_TRUE(d_.has(name)) << "the sampler drew more noise than the twin: " << name;
    const Tensor e = aigc::test::to_f32(d_.get(name));
    ASSERT_TRUE(e.same_shape(out));
    std::memcpy(out.data(), e.data(), out.nbytes());
    ++used_;
  }
  int used() const { return used_; }

 private:
  const RefDump& d_;
  int c_, used_ = 0;
};

float abs_max(const Tensor& t) {
  const Tensor f = aigc::test::to_f32(t);
  float m = 0;
  for (int64_t i = 0; i < f.numel(); ++i) m = std::max(m, std::fabs(f.ptr<float>()[i]));
  return m;
}

}  // namespace

// ---- schedules ----------------------------------------------------------------------------------

TEST(NoiseSchedule, AlphasAndSigmasMatchTwin) {
  const RefDump d = RefDump::load("samplers");
  const NoiseSchedule s = NoiseSchedule::sd();
  ASSERT_EQ(s.train_steps(), 1000);
  std::vector<double> ac(1000), sig(1000);
  for (int t = 0; t < 1000; ++t) ac[t] = s.alphas_cumprod(t), sig[t] = s.sigma(t);
  // Both sides compute in double; the dump is f32, so only f32 rounding (6e-8 relative) differs.
  EXPECT_TENSORS_CLOSE(tensor_of(ac), d.get("alphas_cumprod"), 0.0f, 1e-6f);
  EXPECT_TENSORS_CLOSE(tensor_of(sig), d.get("sigmas"), 0.0f, 1e-6f);
  // SD's published range (A1111 / ComfyUI report sigma_min 0.0292, sigma_max 14.6146).
  EXPECT_NEAR(s.sigma_min(), 0.0291675, 1e-6);
  EXPECT_NEAR(s.sigma_max(), 14.614642, 1e-5);
}

TEST(NoiseSchedule, SigmaTimestepMapMatchesTwin) {
  const RefDump d = RefDump::load("samplers");
  const NoiseSchedule s = NoiseSchedule::sd();
  std::vector<double> got;
  for (double v : vec_f64(d.get("sigma_to_t_in"))) got.push_back(s.sigma_to_t(v));
  // t in [0, 999]; the probes went through f32, 1e-4 absolute covers the f32 rounding of the input
  // sigma (d t / d log sigma is at most ~60 near t = 0).
  EXPECT_TENSORS_CLOSE(tensor_of(got), d.get("sigma_to_t_out"), 1e-4f, 1e-6f);
  got.clear();
  for (double t : vec_f64(d.get("t_to_sigma_in"))) got.push_back(s.t_to_sigma(t));
  EXPECT_TENSORS_CLOSE(tensor_of(got), d.get("t_to_sigma_out"), 0.0f, 1e-6f);
  // Round trip, and clamping outside the table.
  for (double t : {0.0, 0.5, 10.25, 500.0, 998.75, 999.0}) EXPECT_NEAR(s.sigma_to_t(s.t_to_sigma(t)), t, 1e-9);
  EXPECT_EQ(s.sigma_to_t(1e-3), 0.0);
  EXPECT_EQ(s.sigma_to_t(100.0), 999.0);
}

TEST(NoiseSchedule, SigmaSchedulesMatchTwin) {
  const RefDump d = RefDump::load("samplers");
  const NoiseSchedule s = NoiseSchedule::sd();
  for (int n : {1, 4, 20, 30}) {
    SCOPED_TRACE(n);
    const auto normal = sigmas_normal(s, n), karras = sigmas_karras(s, n);
    ASSERT_EQ(normal.size(), static_cast<size_t>(n + 1));
    EXPECT_EQ(normal.back(), 0.0);
    EXPECT_EQ(karras.back(), 0.0);
    EXPECT_NEAR(normal.front(), s.sigma_max(), 1e-12);
    EXPECT_NEAR(karras.front(), s.sigma_max(), 1e-9);
    if (n > 1) {
      EXPECT_NEAR(karras[n - 1], s.sigma_min(), 1e-12);
    }
    // f64 on both sides, f32 dump: 1e-6 relative.
    EXPECT_TENSORS_CLOSE(tensor_of(normal), d.get("sigmas_normal_" + std::to_string(n)), 0.0f, 1e-6f);
    EXPECT_TENSORS_CLOSE(tensor_of(karras), d.get("sigmas_karras_" + std::to_string(n)), 0.0f, 1e-6f);
  }
  EXPECT_THROW(sigmas_normal(s, 0), Error);
  EXPECT_THROW(sigmas_karras(s, -3), Error);
}

TEST(NoiseSchedule, TimestepSpacingsMatchTwin) {
  const RefDump d = RefDump::load("samplers");
  const std::pair<TimestepSpacing, const char*> kinds[] = {
      {TimestepSpacing::Leading, "leading"}, {TimestepSpacing::Trailing, "trailing"},
      {TimestepSpacing::Linspace, "linspace"}};
  for (auto [sp, name] : kinds)
    for (int n : {1, 3, 4, 7, 20, 50}) {
      SCOPED_TRACE(std::string(name) + " " + std::to_string(n));
      EXPECT_EQ(timesteps_spaced(n, sp), vec_int(d.get(std::string("ts_") + name + "_" + std::to_string(n))));
    }
  for (int n : {1, 2, 4, 8}) EXPECT_EQ(timesteps_lcm(n), vec_int(d.get("ts_lcm_" + std::to_string(n))));
  EXPECT_EQ(timesteps_lcm(4, 50, 0.5), vec_int(d.get("ts_lcm_s05_4")));
  // Published values: SD-Turbo's 4 trailing steps, LCM's 4 steps (diffusers docs).
  EXPECT_EQ(timesteps_spaced(4, TimestepSpacing::Trailing), (std::vector<int>{999, 749, 499, 249}));
  EXPECT_EQ(timesteps_lcm(4), (std::vector<int>{999, 759, 499, 259}));
  EXPECT_THROW(timesteps_lcm(51), Error);
  EXPECT_THROW(timesteps_spaced(0, TimestepSpacing::Leading), Error);
  const NoiseSchedule s = NoiseSchedule::sd();
  const std::vector<int> bad_ts{999, 1000};
  EXPECT_THROW(sigmas_from_timesteps(s, bad_ts), Error);
}

// ---- samplers, step by step ---------------------------------------------------------------------

TEST(Sampler, EveryStepMatchesTwin) {
  const RefDump d = RefDump::load("samplers");
  const NoiseSchedule sched = NoiseSchedule::sd();
  const int cases = d.get("case_count").ptr<int32_t>()[0];
  ASSERT_GE(cases, 20);
  for (int c = 0; c < cases; ++c) {
    const std::string pre = fmt::format("c{}_", c);
    const std::vector<double> prm = vec_f64(d.get(pre + "params"));
    SampleParams p;
    p.sampler = static_cast<SamplerKind>(static_cast<int>(prm[0]));
    p.prediction = prm[1] == 0 ? Prediction::Epsilon : Prediction::V;
    p.cfg_scale = static_cast<float>(prm[2]);
    p.steps = static_cast<int>(prm[3]);
    p.schedule = static_cast<SigmaSchedule>(static_cast<int>(prm[4]));
    p.spacing = static_cast<TimestepSpacing>(static_cast<int>(prm[5]));
    p.eta = prm[6];
    p.strength = prm[7] > 0 ? prm[7] : 1.0;
    p.lcm_original_steps = static_cast<int>(prm[8]);
    const bool img2img = prm[7] > 0;
    SCOPED_TRACE(fmt::format("case {}: {} pred {} cfg {} steps {} strength {}", c, sampler_kind_name(p.sampler),
                             static_cast<int>(prm[1]), p.cfg_scale, p.steps, prm[7]));
    const Tensor noise = aigc::test::to_f32(d.get(pre + "noise0"));
    const Tensor init = img2img ? aigc::test::to_f32(d.get(pre + "init")) : Tensor();
    FakeModel fake{p.prediction};
    QueueNoise qn(d, c);
    int seen = 0;
    auto on_step = [&](int step, const Tensor& x) {
      const std::string name = pre + "x" + std::to_string(step);
      ASSERT_TRUE(d.has(name)) << "more steps than the twin: " << name;
      EXPECT_EQ(step, seen);
      const Tensor& want = d.get(name);
      // f32 state vs the f64 twin: each step rounds the latent (6e-8 relative) and the guided
      // model output; over <= 8 steps that stays below 1e-5 relative to the largest value
      // (latents start at sigma_max * noise ~ 40 in k-diffusion space). Observed: <= 3e-6
      // absolute at |x| ~ 40, i.e. 1-2 f32 ulps; a bug (e.g. 1.05x on DPM++'s history term,
      // 0.02% on Heun's average) fails by far more.
      EXPECT_TENSORS_CLOSE(x, want, 1e-5f * std::max(1.0f, abs_max(want)), 1e-5f) << name;
      ++seen;
    };
    const Tensor out = sampler_run(std::ref(fake), sched, p, noise, img2img ? &init : nullptr, qn, on_step);
    EXPECT_FALSE(d.has(pre + "x" + std::to_string(seen))) << "fewer steps than the twin";
    EXPECT_FALSE(d.has(pre + "eps" + std::to_string(qn.used()))) << "less noise drawn than the twin";
    EXPECT_GT(seen, 0);
    EXPECT_TENSORS_CLOSE(out, d.get(pre + "x" + std::to_string(seen - 1)), 1e-5f * std::max(1.0f, abs_max(out)), 1e-5f);
    if (p.cfg_scale == 1.0f) {
      EXPECT_EQ(fake.uncond_calls, 0) << "cfg 1 must not ask for uncond";
    } else {
      EXPECT_GT(fake.uncond_calls, 0);
    }
  }
}

// Edge step counts: one step (every sampler's last-step branch at once) and many steps.
TEST(Sampler, OneStepAndManyStepsStayFinite) {
  const NoiseSchedule s = NoiseSchedule::sd();
  for (int k = 0; k < 8; ++k)
    for (int steps : {1, 2, 49}) {
      SampleParams p;
      p.sampler = static_cast<SamplerKind>(k);
      p.steps = steps;
      p.eta = 0.7;
      SCOPED_TRACE(fmt::format("{} {} steps", sampler_kind_name(p.sampler), steps));
      FakeModel fake{Prediction::Epsilon};
      SeededNoise rng(9, 1);
      Tensor noise = Tensor::empty(DType::F32, latent_shape(1, 8, 16));
      rng.noise_fill(noise);
      int seen = 0;
      const Tensor out = sampler_run(std::ref(fake), s, p, noise, nullptr, rng, [&](int, const Tensor&) { ++seen; });
      EXPECT_EQ(seen, steps);
      for (int64_t i = 0; i < out.numel(); ++i) ASSERT_TRUE(std::isfinite(out.ptr<float>()[i])) << i;
    }
  // 1000 leading steps would reach timestep 1000 (diffusers indexes out of range there).
  SampleParams p;
  p.sampler = SamplerKind::Ddim;
  p.steps = 1000;
  EXPECT_THROW(sampler_plan(s, p, false), Error);
  p.spacing = TimestepSpacing::Trailing;
  EXPECT_EQ(sampler_plan(s, p, false).timesteps.back(), 0);
}

TEST(Sampler, PlanStartsImg2ImgAtStrength) {
  const NoiseSchedule s = NoiseSchedule::sd();
  SampleParams p;
  p.sampler = SamplerKind::Euler;
  p.steps = 20;
  p.strength = 0.75;
  SamplerPlan plan = sampler_plan(s, p, true);
  EXPECT_EQ(plan.start, 5);
  EXPECT_EQ(plan.steps(), 15);
  EXPECT_EQ(sampler_plan(s, p, false).steps(), 20);  // strength ignored for txt2img
  p.sampler = SamplerKind::Ddim;
  plan = sampler_plan(s, p, true);
  EXPECT_EQ(plan.steps(), 15);
  EXPECT_EQ(plan.timesteps[plan.start], 701);  // leading, offset 1: 50 * 14 + 1
  p.sampler = SamplerKind::Dpmpp2mKarras;
  plan = sampler_plan(s, p, false);
  EXPECT_NEAR(plan.sigmas[19], s.sigma_min(), 1e-12);  // karras by default
  p.sampler = SamplerKind::Dpmpp2m;
  EXPECT_NEAR(sampler_plan(s, p, false).sigmas[19], s.sigma(0), 1e-12);  // normal: last t = 0
}

TEST(Sampler, BadParametersAreErrors) {
  const NoiseSchedule s = NoiseSchedule::sd();
  auto bad = [&](auto edit, bool img2img = false) {
    SampleParams p;
    edit(p);
    EXPECT_THROW(sampler_plan(s, p, img2img), Error);
  };
  bad([](SampleParams& p) { p.steps = 0; });
  bad([](SampleParams& p) { p.steps = 1001; });
  bad([](SampleParams& p) { p.cfg_scale = NAN; });
  bad([](SampleParams& p) { p.eta = -0.1; p.sampler = SamplerKind::Ddim; });
  bad([](SampleParams& p) { p.strength = 0.0; }, true);
  bad([](SampleParams& p) { p.strength = 1.5; }, true);
  bad([](SampleParams& p) { p.strength = 0.04; p.steps = 20; }, true);  // int(0.8) == 0 steps
  bad([](SampleParams& p) { p.sampler = SamplerKind::Lcm; p.steps = 60; });
  bad([](SampleParams& p) { p.sampler = SamplerKind::Lcm; p.lcm_original_steps = 0; });
  // init latent of the wrong shape
  SampleParams p;
  FakeModel fake{Prediction::Epsilon};
  SeededNoise rng(1, 1);
  Tensor noise = Tensor::zeros(DType::F32, {1, 4, 2, 2}), init = Tensor::zeros(DType::F32, {1, 4, 2, 3});
  EXPECT_THROW(sampler_run(std::ref(fake), s, p, noise, &init, rng), Error);
}

TEST(Sampler, NamesParse) {
  for (int k = 0; k < 8; ++k) {
    const auto kind = static_cast<SamplerKind>(k);
    EXPECT_EQ(sampler_kind_parse(sampler_kind_name(kind)), kind);
  }
  try {
    sampler_kind_parse("euler_b");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("dpm++2m_karras"), std::string::npos);
  }
}

// Same seed -> same latent; another seed -> another; image b of a batch == a batch of one with
// seed + b; and the step loop allocates nothing.
TEST(Sampler, SeedsAreReproducibleAndPerImage) {
  const NoiseSchedule s = NoiseSchedule::sd();
  SampleParams p;
  p.sampler = SamplerKind::EulerAncestral;  // draws noise at every step
  p.steps = 6;
  auto run = [&](uint64_t seed, int batch) {
    FakeModel fake{Prediction::Epsilon};
    SeededNoise rng(seed, batch);
    Tensor noise = Tensor::empty(DType::F32, latent_shape(batch, 32, 24));
    rng.noise_fill(noise);
    return sampler_run(std::ref(fake), s, p, noise, nullptr, rng);
  };
  const Tensor a = run(42, 2), b = run(42, 2), c = run(43, 1), e = run(44, 1);
  ASSERT_EQ(a.nbytes(), b.nbytes());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.nbytes()), 0);
  const size_t per = c.nbytes();
  EXPECT_EQ(std::memcmp(static_cast<const char*>(a.data()) + per, c.data(), per), 0) << "image 1 == seed 43 alone";
  EXPECT_NE(std::memcmp(c.data(), e.data(), per), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), per), 0);
}

TEST(Sampler, StepLoopAllocatesNothing) {
  const NoiseSchedule s = NoiseSchedule::sd();
  for (int k = 0; k < 8; ++k) {
    SampleParams p;
    p.sampler = static_cast<SamplerKind>(k);
    p.steps = 5;
    p.eta = 1.0;
    SCOPED_TRACE(sampler_kind_name(p.sampler));
    FakeModel fake{Prediction::V};
    SeededNoise rng(3, 1);
    Tensor noise = Tensor::empty(DType::F32, latent_shape(1, 16, 16));
    rng.noise_fill(noise);
    std::unique_ptr<test::AllocCounter> counter;
    long allocs = -1;
    auto on_step = [&](int step, const Tensor&) {
      if (step == 0) counter = std::make_unique<test::AllocCounter>();
      if (step == 4) allocs = counter->count();
    };
    sampler_run(std::ref(fake), s, p, noise, nullptr, rng, on_step);
    EXPECT_EQ(allocs, 0) << "operator new calls between the end of step 0 and the end of step 4";
  }
}

// ---- noise --------------------------------------------------------------------------------------

TEST(Noise, MatchesTwinsGenerator) {
  const RefDump d = RefDump::load("samplers");
  NoiseRng r42(42), r7(7);
  std::vector<float> a(9), b(4);
  r42.normal_fill(a);
  r7.normal_fill(b);
  Tensor ta = Tensor::view_of(DType::F32, std::array<int64_t, 1>{9}, a.data());
  Tensor tb = Tensor::view_of(DType::F32, std::array<int64_t, 1>{4}, b.data());
  // Same double arithmetic in Python; only f32 rounding of the output differs.
  EXPECT_TENSORS_CLOSE(ta, d.get("rng_seed42"), 0.0f, 1e-6f);
  EXPECT_TENSORS_CLOSE(tb, d.get("rng_seed7"), 0.0f, 1e-6f);
}

TEST(Noise, SameSeedSameStreamAcrossFillSizes) {
  NoiseRng x(5), y(5), z(6);
  std::vector<float> one(101), parts(101), other(101);
  x.normal_fill(one);
  y.normal_fill(std::span(parts).subspan(0, 3));   // odd cuts keep the Box-Muller spare
  y.normal_fill(std::span(parts).subspan(3, 50));
  y.normal_fill(std::span(parts).subspan(53));
  z.normal_fill(other);
  EXPECT_EQ(one, parts);
  EXPECT_NE(one, other);
  // SeededNoise: image b is NoiseRng(seed + b).
  SeededNoise sn(10, 3);
  Tensor t = Tensor::empty(DType::F32, {3, 7});
  sn.noise_fill(t);
  for (int b = 0; b < 3; ++b) {
    NoiseRng r(10 + b);
    std::vector<float> want(7);
    r.normal_fill(want);
    EXPECT_EQ(std::memcmp(want.data(), t.ptr<float>() + 7 * b, 7 * sizeof(float)), 0) << b;
  }
}

TEST(Noise, StandardNormalStatistics) {
  // Deterministic (fixed seed); bounds are ~5 standard errors for n = 1e6:
  // mean SE 0.001, std SE 0.0007, P(|z| < 1) SE 0.0005, kurtosis SE ~0.005.
  NoiseRng r(2024);
  const int n = 1000000;
  double s1 = 0, s2 = 0, s4 = 0, lo = 1e9, hi = -1e9;
  int inside = 0;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    s1 += z, s2 += z * z, s4 += z * z * z * z;
    inside += std::fabs(z) < 1.0;
    lo = std::min(lo, z), hi = std::max(hi, z);
  }
  const double mean = s1 / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.0035);
  EXPECT_NEAR(static_cast<double>(inside) / n, 0.682689, 0.0025);
  EXPECT_NEAR(s4 / n / (var * var), 3.0, 0.03);
  EXPECT_LT(lo, -4.0);
  EXPECT_GT(hi, 4.0);
}

// ---- image size ---------------------------------------------------------------------------------

TEST(ImageSize, MultiplesOfEight) {
  EXPECT_NO_THROW(image_size_check(512, 512));
  EXPECT_NO_THROW(image_size_check(8, 8192));
  EXPECT_EQ(latent_shape(2, 512, 768), (std::array<int64_t, 4>{2, 4, 96, 64}));
  for (auto [w, h] : std::vector<std::pair<int, int>>{{500, 512}, {512, 4}, {0, 512}, {-8, 512}, {512, 8200}})
    EXPECT_THROW(image_size_check(w, h), Error) << w << "x" << h;
  try {
    image_size_check(500, 512);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "--width");
    EXPECT_NE(e.hint().find("496 or 504"), std::string::npos) << e.hint();
  }
  EXPECT_THROW(latent_shape(0, 512, 512), Error);
}
