#!/usr/bin/env python3
"""Twin for the diffusion schedules and samplers (tests/unit/test_samplers.cpp), in torch float64.

Written from the published algorithms, not from our C++:
  schedule   SD's scaled_linear betas (0.00085 .. 0.012, 1000 steps) -> alphas_cumprod -> sigmas;
             k-diffusion's DiscreteSchedule (sigma_to_t / t_to_sigma, log-sigma interpolation,
             get_sigmas(n) = "normal") and get_sigmas_karras (rho 7); diffusers' DDIM timestep
             spacings (leading + steps_offset 1, trailing, linspace) and LCMScheduler.set_timesteps.
  k-diffusion samplers (k_diffusion/sampling.py): sample_euler, sample_euler_ancestral (eta 1),
             sample_heun, sample_dpmpp_2m; model wrapper CompVisDenoiser / CompVisVDenoiser.
  diffusers  DDIMScheduler.step (eta, set_alpha_to_one False), DDPMScheduler.step (fixed_small,
             prev_t = next timestep), LCMScheduler.step (timestep_scaling 10, sigma_data 0.5).
  guidance   out = uncond + scale * (cond - uncond) on the model output.
  img2img    diffusers: int(steps * strength) steps from index steps - int(steps * strength);
             k-diffusion: x = init + sigma * noise; DDPM space: add_noise. LCM: set_timesteps(strength).
Fake models (deterministic; x_in is the model input, t the timestep):
  eps:  cond = 0.1 x + 0.05 sin(t / 100),  uncond = 0.05 x - 0.02 cos(t / 50)
  v:    cond = 0.3 x - 0.1 sin(t / 200),   uncond = 0.2 x + 0.05 cos(t / 80)
Noise (initial and injected) is drawn with torch.randn and rounded to f32 (so the C++ test, which
is fed the same f32 values through a NoiseSource, sees exactly what the twin used); everything
else is float64.

Writes OUT_DIR/samplers.bin:
  alphas_cumprod, sigmas [1000]; sigma_to_t_in / _out, t_to_sigma_in / _out [K]
  sigmas_{normal,karras}_{1,4,20,30} [n+1]
  ts_{leading,trailing,linspace}_{1,3,4,7,20,50} i32; ts_lcm_{1,2,4,8}, ts_lcm_s05_4 i32
  rng_seed42 [9], rng_seed7 [4]: NoiseRng's normals (mt19937_64 from twin_sampling + Box-Muller)
  per case c: c{c}_params f32 [9] = sampler id, prediction (0 eps, 1 v), cfg, steps, schedule
      (0 default, 1 normal, 2 karras, 3 trailing), spacing (0 leading, 1 trailing, 2 linspace),
      eta, strength (0: txt2img), LCM original steps
      c{c}_noise0 [B,C,H,W], c{c}_init (img2img), c{c}_x{i} latent after step i,
      c{c}_eps{j}: the j-th noise injected by the sampler
"""
import math
import sys

import numpy as np
import torch

import refdump
from twin_sampling import MT19937_64

torch.set_num_threads(1)
D = torch.float64
T = 1000
SHAPE = (2, 4, 3, 5)

betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=D) ** 2
ac = torch.cumprod(1.0 - betas, 0)
sigmas_all = ((1 - ac) / ac) ** 0.5
log_sigmas = sigmas_all.log()


def sigma_to_t(sigma):
    ls = torch.log(torch.as_tensor(sigma, dtype=D)).reshape(1)
    dists = ls - log_sigmas[:, None]
    low = dists.ge(0).cumsum(0).argmax(0).clamp(max=T - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = ((lo - ls) / (lo - hi)).clamp(0, 1)
    return float((1 - w) * low + w * (low + 1))


def t_to_sigma(t):
    t = torch.as_tensor(t, dtype=D)
    lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()


def sigmas_normal(n):
    t = torch.linspace(T - 1, 0, n, dtype=D)
    return torch.cat([t_to_sigma(t), torch.zeros(1, dtype=D)])


def sigmas_karras(n, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=D)
    lo, hi = sigmas_all[0].item() ** (1 / rho), sigmas_all[-1].item() ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1, dtype=D)])


def timesteps(n, spacing):
    if spacing == "leading":
        return (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + 1
    if spacing == "trailing":
        return np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    return np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)


def timesteps_lcm(n, original=50, strength=1.0):
    k = T // original
    origin = (np.asarray(list(range(1, int(original * strength) + 1))) * k - 1)[::-1]
    idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return origin[idx]


def fake(pred):
    if pred == "eps":
        return (lambda x, t: 0.1 * x + 0.05 * math.sin(t / 100),
                lambda x, t: 0.05 * x - 0.02 * math.cos(t / 50))
    return (lambda x, t: 0.3 * x - 0.1 * math.sin(t / 200),
            lambda x, t: 0.2 * x + 0.05 * math.cos(t / 80))


def guided(pred, cfg):
    cond, uncond = fake(pred)

    def out(x_in, t):
        c = cond(x_in, t)
        if cfg == 1:
            return c
        u = uncond(x_in, t)
        return u + cfg * (c - u)
    return out


def k_denoiser(pred, cfg):
    """CompVisDenoiser / CompVisVDenoiser forward: D(x, sigma)."""
    model = guided(pred, cfg)

    def D_(x, sigma):
        sigma = float(sigma)
        c_in = 1 / (sigma ** 2 + 1) ** 0.5
        m = model(x * c_in, sigma_to_t(sigma))
        if pred == "eps":
            return x + m * (-sigma)
        return m * (-sigma / (sigma ** 2 + 1) ** 0.5) + x * (1 / (sigma ** 2 + 1))
    return D_


class Noise:
    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.drawn = []

    def __call__(self):
        e = torch.randn(SHAPE, generator=self.g, dtype=torch.float32).to(D)
        self.drawn.append(e)
        return e


def to_d(x, sigma, den):
    return (x - den) / sigma


def run_euler(Dn, x, sig, rec, noise):
    for i in range(len(sig) - 1):
        d = to_d(x, sig[i], Dn(x, sig[i]))
        x = x + d * (sig[i + 1] - sig[i])
        rec(x)


def run_euler_a(Dn, x, sig, rec, noise):
    for i in range(len(sig) - 1):
        den = Dn(x, sig[i])
        s, sn = sig[i], sig[i + 1]
        up = (sn ** 2 * (s ** 2 - sn ** 2) / s ** 2) ** 0.5
        down = (sn ** 2 - up ** 2) ** 0.5
        x = x + to_d(x, s, den) * (down - s)
        if up > 0:
            x = x + noise() * up
        rec(x)


def run_heun(Dn, x, sig, rec, noise):
    for i in range(len(sig) - 1):
        d = to_d(x, sig[i], Dn(x, sig[i]))
        dt = sig[i + 1] - sig[i]
        if sig[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = to_d(x2, sig[i + 1], Dn(x2, sig[i + 1]))
            x = x + (d + d2) / 2 * dt
        rec(x)


def run_dpmpp_2m(Dn, x, sig, rec, noise):
    t_fn = lambda s: -torch.log(s)
    old = None
    for i in range(len(sig) - 1):
        den = Dn(x, sig[i])
        if sig[i + 1] == 0:
            x = den  # sigma_fn(t_next) = 0 and -expm1(-inf) = 1
        else:
            t, tn = t_fn(sig[i]), t_fn(sig[i + 1])
            h = tn - t
            if old is None:
                x = (sig[i + 1] / sig[i]) * x - torch.expm1(-h) * den
            else:
                r = (t - t_fn(sig[i - 1])) / h
                dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
                x = (sig[i + 1] / sig[i]) * x - torch.expm1(-h) * dd
        old = den
        rec(x)


def x0_eps(pred, a, x, m):
    if pred == "eps":
        return (x - (1 - a) ** 0.5 * m) / a ** 0.5, m
    return a ** 0.5 * x - (1 - a) ** 0.5 * m, a ** 0.5 * m + (1 - a) ** 0.5 * x


def run_ddim(model, pred, x, ts, n, eta, rec, noise):
    for t in ts:
        m = model(x, float(t))
        prev = t - T // n
        a, ap = ac[t], (ac[prev] if prev >= 0 else ac[0])
        x0, e = x0_eps(pred, a, x, m)
        var = (1 - ap) / (1 - a) * (1 - a / ap)
        sd = eta * var ** 0.5
        x = ap ** 0.5 * x0 + (1 - ap - sd ** 2) ** 0.5 * e
        if eta > 0:
            x = x + sd * noise()
        rec(x)


def run_ddpm(model, pred, x, ts, rec, noise):
    for i, t in enumerate(ts):
        m = model(x, float(t))
        prev = ts[i + 1] if i + 1 < len(ts) else -1
        a = ac[t]
        ap = ac[prev] if prev >= 0 else torch.tensor(1.0, dtype=D)
        cur_alpha = a / ap
        cur_beta = 1 - cur_alpha
        x0, _ = x0_eps(pred, a, x, m)
        x = (ap ** 0.5 * cur_beta / (1 - a)) * x0 + (cur_alpha ** 0.5 * (1 - ap) / (1 - a)) * x
        if t > 0:
            var = torch.clamp((1 - ap) / (1 - a) * cur_beta, min=1e-20)
            x = x + var ** 0.5 * noise()
        rec(x)


def run_lcm(model, pred, x, ts, rec, noise):
    for i, t in enumerate(ts):
        m = model(x, float(t))
        prev = ts[i + 1] if i + 1 < len(ts) else t
        a, ap = ac[t], ac[prev]
        st = t * 10.0
        c_skip = 0.5 ** 2 / (st ** 2 + 0.5 ** 2)
        c_out = st / (st ** 2 + 0.5 ** 2) ** 0.5
        x0, _ = x0_eps(pred, a, x, m)
        den = c_out * x0 + c_skip * x
        x = ap ** 0.5 * den + (1 - ap) ** 0.5 * noise() if i != len(ts) - 1 else den
        rec(x)


SAMPLERS = ["euler", "euler_a", "heun", "dpm++2m", "dpm++2m_karras", "ddim", "ddpm", "lcm"]
K_RUN = {"euler": run_euler, "euler_a": run_euler_a, "heun": run_heun, "dpm++2m": run_dpmpp_2m,
         "dpm++2m_karras": run_dpmpp_2m}
SCHEDULES = ["default", "normal", "karras", "trailing"]
SPACINGS = ["leading", "trailing", "linspace"]

# sampler, prediction, cfg, steps, schedule, spacing, eta, strength
CASES = [
    ("euler", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("euler", "eps", 1.0, 6, "default", "leading", 0.0, 0.0),
    ("euler_a", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("heun", "eps", 5.0, 5, "default", "leading", 0.0, 0.0),
    ("dpm++2m", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("dpm++2m_karras", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("dpm++2m_karras", "v", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("euler", "v", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("heun", "v", 3.0, 4, "karras", "leading", 0.0, 0.0),
    ("euler_a", "v", 5.0, 5, "karras", "leading", 0.0, 0.0),
    ("ddim", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("ddim", "eps", 5.0, 6, "default", "leading", 0.5, 0.0),
    ("ddim", "v", 5.0, 4, "default", "trailing", 0.0, 0.0),
    ("ddim", "v", 1.0, 5, "default", "linspace", 1.0, 0.0),
    ("ddpm", "eps", 5.0, 6, "default", "leading", 0.0, 0.0),
    ("ddpm", "v", 5.0, 5, "default", "linspace", 0.0, 0.0),
    ("lcm", "eps", 1.0, 4, "default", "leading", 0.0, 0.0),
    ("lcm", "v", 1.5, 4, "default", "leading", 0.0, 0.0),
    ("euler", "eps", 1.0, 4, "trailing", "leading", 0.0, 0.0),      # SD-Turbo style
    ("euler", "eps", 5.0, 8, "default", "leading", 0.0, 0.5),       # img2img: 4 of 8 steps
    ("dpm++2m", "eps", 5.0, 10, "default", "leading", 0.0, 0.6),    # 6 of 10
    ("ddim", "eps", 5.0, 8, "default", "leading", 0.0, 0.75),       # 6 of 8
    ("lcm", "eps", 1.0, 4, "default", "leading", 0.0, 0.5),         # LCM img2img: 4 steps, 25-grid
    # LCM on a 1000-step grid with strength 0.003: timesteps 2, 1, 0, where the boundary
    # scalings (c_skip = 1, c_out = 0 at t = 0) are visible; LCM's usual t >= 19 hides them.
    ("lcm", "v", 1.0, 3, "default", "leading", 0.0, 0.003, 1000),
]


def run_case(c, case, out):
    sampler, pred, cfg, steps, sched, spacing, eta, strength = case[:8]
    lcm_original = case[8] if len(case) > 8 else 50
    gen = torch.Generator().manual_seed(1000 + c)
    z = torch.randn(SHAPE, generator=gen, dtype=torch.float32).to(D)
    init = torch.randn(SHAPE, generator=gen, dtype=torch.float32).to(D) * 0.8 if strength > 0 else None
    noise = Noise(2000 + c)
    xs = []
    rec = xs.append
    out[f"c{c}_params"] = torch.tensor([SAMPLERS.index(sampler), 0 if pred == "eps" else 1, cfg, steps,
                                        SCHEDULES.index(sched), SPACINGS.index(spacing), eta, strength,
                                        lcm_original])
    out[f"c{c}_noise0"] = z
    if init is not None:
        out[f"c{c}_init"] = init
    if sampler in K_RUN:
        kind = sched if sched != "default" else ("karras" if sampler == "dpm++2m_karras" else "normal")
        if kind == "normal":
            sig = sigmas_normal(steps)
        elif kind == "karras":
            sig = sigmas_karras(steps)
        else:
            sig = torch.cat([sigmas_all[torch.from_numpy(timesteps(steps, "trailing"))], torch.zeros(1, dtype=D)])
        start = steps - int(steps * strength) if strength > 0 else 0
        sig = sig[start:]
        x = (init if init is not None else 0) + z * sig[0]
        K_RUN[sampler](k_denoiser(pred, cfg), x, sig, rec, noise)
    else:
        model = guided(pred, cfg)
        if sampler == "lcm":
            ts = timesteps_lcm(steps, lcm_original, strength if strength > 0 else 1.0)
        else:
            ts = timesteps(steps, spacing)
            if strength > 0:
                ts = ts[steps - int(steps * strength):]
        ts = [int(t) for t in ts]
        if init is not None:
            a = ac[ts[0]]
            x = a ** 0.5 * init + (1 - a) ** 0.5 * z
        else:
            x = z
        if sampler == "ddim":
            run_ddim(model, pred, x, ts, steps, eta, rec, noise)
        elif sampler == "ddpm":
            run_ddpm(model, pred, x, ts, rec, noise)
        else:
            run_lcm(model, pred, x, ts, rec, noise)
    for i, x in enumerate(xs):
        out[f"c{c}_x{i}"] = x
    for j, e in enumerate(noise.drawn):
        out[f"c{c}_eps{j}"] = e


def rng_normals(seed, n):
    """NoiseRng: pairs of mt19937_64 outputs -> Box-Muller (see src/image/noise.h)."""
    mt, out = MT19937_64(seed), []
    while len(out) < n:
        a, b = mt(), mt()
        u1 = ((a >> 11) + 1) * 2.0 ** -53
        u2 = (b >> 11) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u1))
        out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    return np.array(out[:n])


def main(out_dir):
    out = {"alphas_cumprod": ac, "sigmas": sigmas_all}
    probe = torch.tensor([0.0291675, 0.03, 0.1, 0.5, 1.0, 2.7, 9.9, 14.6146, 0.02, 20.0], dtype=D)
    out["sigma_to_t_in"] = probe
    out["sigma_to_t_out"] = torch.tensor([sigma_to_t(s) for s in probe], dtype=D)
    tin = torch.tensor([0.0, 0.25, 1.5, 17.3, 500.0, 998.9, 999.0], dtype=D)
    out["t_to_sigma_in"] = tin
    out["t_to_sigma_out"] = t_to_sigma(tin)
    for n in (1, 4, 20, 30):
        out[f"sigmas_normal_{n}"] = sigmas_normal(n)
        out[f"sigmas_karras_{n}"] = sigmas_karras(n)
    for sp in SPACINGS:
        for n in (1, 3, 4, 7, 20, 50):
            out[f"ts_{sp}_{n}"] = timesteps(n, sp).copy()
    for n in (1, 2, 4, 8):
        out[f"ts_lcm_{n}"] = timesteps_lcm(n).copy()
    out["ts_lcm_s05_4"] = timesteps_lcm(4, 50, 0.5).copy()
    out["rng_seed42"] = rng_normals(42, 9)
    out["rng_seed7"] = rng_normals(7, 4)
    for c, case in enumerate(CASES):
        run_case(c, case, out)
    out["case_count"] = np.array([len(CASES)], dtype=np.int32)
    refdump.write(f"{out_dir}/samplers.bin", out)


if __name__ == "__main__":
    main(sys.argv[1])
