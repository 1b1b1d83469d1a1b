"""Checks for lecture 13 (noise-conditional score networks and SDEs): the geometric noise schedule, the
sigma^2-weighted denoising score matching loss, annealed Langevin dynamics and one Euler-Maruyama step of the
reverse variance-exploding SDE.

Every check builds its own random problem from a fixed seed, in float64. The samplers are checked on Gaussian
targets, where every Langevin or Euler-Maruyama step is a linear-Gaussian map: the mean and variance after any
number of steps are known exactly, and the samples are compared with them within a few standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


def _within(what: str, found: torch.Tensor, expected: torch.Tensor, tol: torch.Tensor, hint: str) -> None:
    """Fail when any entry of `found` is further than `tol` from `expected` (statistical comparisons)."""
    gap = (found - expected).abs() / tol
    if gap.max() > 1:
        i = int(gap.argmax())
        checks.fail(what, f"{float(expected.reshape(-1)[i]):.4g} (± {float(tol.reshape(-1)[i]):.2g})",
                    f"{float(found.reshape(-1)[i]):.4g}", hint)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the geometric noise schedule
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_sigma_schedule", "Exercise 1: the noise schedule")
def check_sigma_schedule(sigma_schedule: Callable) -> None:
    """Exercise 1: `sigma_schedule(x, sigma_min, L)` -> (L,) decreasing, geometric, from the data's diameter to sigma_min."""
    cases = [(40, 2, 0.1, 10, DOUBLE), (60, 5, 0.03, 7, torch.float32), (25, 12, 0.5, 3, DOUBLE)]
    for seed, (n, d, sigma_min, L, dtype) in enumerate(cases):
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(n, d, generator=g, dtype=DOUBLE) * torch.rand(d, generator=g, dtype=DOUBLE) * 3
             + torch.randn(d, generator=g, dtype=DOUBLE))
        diameter = (x[:, None] - x[None]).norm(dim=-1).max()
        sigmas = checks.check_tensor("the schedule", sigma_schedule(x.to(dtype), sigma_min, L), shape=(L,))
        sigmas = sigmas.detach().cpu().double()
        rtol = 1e-4 if dtype == torch.float32 else 1e-9
        if not (sigmas[1:] < sigmas[:-1]).all():
            checks.fail("the noise levels do not decrease", "sigma_1 > sigma_2 > ... > sigma_L",
                        f"{sigmas.tolist()}", "the sampler walks from the largest level to the smallest: list them so")
        checks.check_close("sigma_1 (the largest level)", sigmas[0], diameter, atol=0, rtol=rtol,
                           hint="sigma_1 is the largest Euclidean distance between two data points (torch.cdist)")
        checks.check_close("sigma_L (the smallest level)", sigmas[-1], torch.tensor(float(sigma_min), dtype=DOUBLE),
                           atol=0, rtol=rtol, hint="the last level must be exactly sigma_min: mind the exponent (i-1)/(L-1)")
        ratios = sigmas[:-1] / sigmas[1:]
        checks.check_close("the ratios sigma_i / sigma_(i+1)", ratios, ratios.mean().expand(L - 1), atol=0,
                           rtol=10 * rtol, hint="a geometric schedule is evenly spaced in log sigma, not in sigma")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the sigma^2-weighted denoising score matching loss
# ----------------------------------------------------------------------------------------------------------

class _RandomScore(torch.nn.Module):
    """A random noise-conditional function s(x, sigma) shaped like x, with parameters (to check that gradients flow)."""

    def __init__(self, dim: int, seed: int, hidden: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(dim, hidden, generator=g, dtype=DOUBLE))
        self.u = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=DOUBLE))
        self.w2 = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=DOUBLE) / math.sqrt(hidden))
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(len(x))
        h = torch.tanh(x.reshape(len(x), -1) @ self.w1 + sigma.log()[:, None] * self.u)
        return (h @ self.w2).reshape(x.shape) / sigma.reshape(-1, *[1] * (x.ndim - 1))


def _reference_ncsn_loss(score, x, sigma, z):
    s = sigma.reshape(-1, *[1] * (x.ndim - 1))
    residual = score(x + s * z, sigma) + z / s
    return 0.5 * (s**2 * residual**2).reshape(len(x), -1).sum(1).mean()


@checks.exercise("ex2_ncsn_loss", "Exercise 2: the weighted denoising score matching loss")
def check_ncsn_loss(ncsn_loss: Callable) -> None:
    """Exercise 2: `ncsn_loss(score, x, sigma, z)` = mean_b 1/2 sigma_b^2 ||score(x_b + sigma_b z_b, sigma_b) + z_b / sigma_b||^2."""
    for seed, shape in enumerate([(16, 3), (8, 1, 4, 4), (5, 7)]):
        g = torch.Generator().manual_seed(seed + 10)
        x = torch.randn(*shape, generator=g, dtype=DOUBLE)
        z = torch.randn(*shape, generator=g, dtype=DOUBLE)
        sigma = 0.05 * 100 ** torch.rand(shape[0], generator=g, dtype=DOUBLE)   # log-uniform in [0.05, 5]
        score = _RandomScore(math.prod(shape[1:]), seed)
        loss = ncsn_loss(score, x, sigma, z)
        checks.check_tensor("the loss", loss, shape=())
        if score.calls == 0:
            checks.fail("the loss never calls the score network", "score(x + sigma z, sigma)", "no call")
        if not loss.requires_grad:
            checks.fail("the loss carries no gradient", "a tensor that backpropagates into the score network",
                        "a tensor without grad_fn", "keep it a tensor: no .item(), no torch.no_grad(), no detach")
        with torch.no_grad():
            expected = _reference_ncsn_loss(score, x, sigma, z)
        checks.check_close(f"the loss on a batch of shape {shape}", loss, expected, atol=1e-10, rtol=1e-8,
                           hint="perturb with x + sigma z; the target score is -z / sigma; weight each example by "
                                "sigma^2; sum the squares over all non-batch dimensions and average over the batch")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: annealed Langevin dynamics
# ----------------------------------------------------------------------------------------------------------

def _gaussian_score(m: torch.Tensor, v: torch.Tensor) -> Callable:
    """The exact score of N(m, diag(v)) perturbed with noise sigma: -(x - m) / (v + sigma^2)."""
    def score(x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
        return -(x - m) / (v + sigma**2)
    return score


@checks.exercise("ex3_annealed_langevin", "Exercise 3: annealed Langevin dynamics")
def check_annealed_langevin(annealed_langevin: Callable) -> None:
    """Exercise 3: `annealed_langevin(score, x, sigmas, eps, n_steps)` -> (L, N, D), the state after each level.

    On a Gaussian target each step x <- x + alpha/2 s + sqrt(alpha) z is linear-Gaussian, so the mean and the
    variance after every level follow exactly from those of the starting points; 20000 chains are compared with
    them within six standard errors.
    """
    n, eps, n_steps = 20000, 0.01, 3
    m, v = torch.tensor([1.0, -2.0], dtype=DOUBLE), torch.tensor([0.5, 2.0], dtype=DOUBLE)
    sigmas = torch.tensor([2.0, 1.0, 0.5, 0.25], dtype=DOUBLE)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=DOUBLE)
    x0 = torch.tensor([4.0, 3.0], dtype=DOUBLE) + noise * torch.tensor([1.0, 0.5], dtype=DOUBLE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        states = annealed_langevin(_gaussian_score(m, v), x0.clone(), sigmas, eps, n_steps)
    checks.check_tensor("the returned states", states, shape=(len(sigmas), n, 2))
    states = states.detach().cpu().double()
    mean, var = x0.mean(0), x0.var(0)
    for i, sigma in enumerate(sigmas.tolist()):
        alpha = eps * sigma**2 / sigmas[-1].item() ** 2
        a = 1 - alpha / (2 * (v + sigma**2))                             # x <- a x + (1 - a) m + sqrt(alpha) z
        for _ in range(n_steps):
            mean, var = a * mean + (1 - a) * m, a**2 * var + alpha
        level = f"level {i + 1} (sigma = {sigma:g})"
        _within(f"the chains' mean after {level} is off", states[i].mean(0), mean, 6 * (var / n).sqrt(),
                "run n_steps steps at each level, largest sigma first, with alpha_i = eps sigma_i^2 / sigma_L^2 "
                "and the drift alpha_i / 2 * score(x, sigma_i)")
        _within(f"the chains' variance after {level} is off", states[i].var(0), var, 6 * var * math.sqrt(2 / n),
                "the noise of each step is sqrt(alpha_i) z with z ~ N(0, I), fresh at every step")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: one Euler-Maruyama step of the reverse VE SDE
# ----------------------------------------------------------------------------------------------------------

class _VESDE:
    """sigma(t) = sigma_min (sigma_max / sigma_min)^t and g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))."""

    def __init__(self, sigma_min: float, sigma_max: float):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def g(self, t):
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))


@checks.exercise("ex4_reverse_sde_step", "Exercise 4: a reverse-SDE step")
def check_reverse_sde_step(reverse_sde_step: Callable) -> None:
    """Exercise 4: `reverse_sde_step(sde, score, x, t, dt)` = x + g(t)^2 s(x, sigma(t)) dt + g(t) sqrt(dt) z.

    From one fixed point repeated 40000 times the step's output is Gaussian with a known mean and variance.
    """
    n = 40000
    m, v = torch.tensor([0.5, -1.0, 2.0], dtype=DOUBLE), torch.tensor([1.0, 0.3, 2.0], dtype=DOUBLE)
    score = _gaussian_score(m, v)
    for seed, (sigma_min, sigma_max, t, dt) in enumerate([(0.1, 5.0, 0.6, 0.02), (0.05, 20.0, 0.3, 0.1)]):
        sde = _VESDE(sigma_min, sigma_max)
        point = m + torch.tensor([2.5, -1.5, 3.0], dtype=DOUBLE) * (1 + seed)
        x = point.expand(n, 3).clone()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = reverse_sde_step(sde, score, x, t, dt)
        checks.check_tensor("the step's output", out, shape=(n, 3))
        out = out.detach().cpu().double()
        g2 = sde.g(t) ** 2
        mean = point + g2 * score(point[None], sde.sigma(t))[0] * dt
        var = torch.full((3,), g2 * dt, dtype=DOUBLE)
        case = f"(t = {t}, dt = {dt})"
        _within(f"the mean of x_(t-dt) {case} is off", out.mean(0), mean, 6 * (var / n).sqrt(),
                "the drift of the reverse SDE is + g(t)^2 * score(x, sigma(t)) * dt (no factor 1/2: that is the ODE)")
        _within(f"the variance of x_(t-dt) {case} is off", out.var(0), var, 6 * var * math.sqrt(2 / n),
                "the noise is g(t) * sqrt(dt) * z with z ~ N(0, I)")
