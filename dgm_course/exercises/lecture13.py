"""Checks for lecture 13 (noise-conditional score networks and SDEs): the geometric noise schedule, the NCSN
objective over noise levels, annealed Langevin dynamics and one Euler-Maruyama step of the reverse
variance-exploding SDE.

Every check builds its own random problem from a fixed seed. The samplers are checked on Gaussian targets, where
every Langevin or Euler-Maruyama step is a linear-Gaussian map: the mean and variance after any number of steps
are known exactly, the samples are compared with them within a few standard errors, and a chain started from one
point is compared with the whole Gaussian law by a Kolmogorov-Smirnov test. The NCSN objective is checked through
a recording score network (which draws it made, and whether the value, its gradient and its average over the draws
are right) on Gaussian data, where the expected loss of a linear score model is known in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from .. import checks

DOUBLE = torch.float64
#: p-value below which a Kolmogorov-Smirnov test rejects (about five standard errors)
KS_ALPHA = 1e-6


def _within(what: str, found: torch.Tensor, expected: torch.Tensor, tol: torch.Tensor, hint: str) -> None:
    """Fail when any entry of `found` is further than `tol` from `expected` (statistical comparisons)."""
    gap = (found - expected).abs() / tol
    if gap.max() > 1:
        i = int(gap.argmax())
        checks.fail(what, f"{float(expected.reshape(-1)[i]):.4g} (± {float(tol.reshape(-1)[i]):.2g})",
                    f"{float(found.reshape(-1)[i]):.4g}", hint)


def _ks(what: str, values: torch.Tensor, cdf: str, expected: str, hint: str) -> None:
    """Kolmogorov-Smirnov test of `values` against scipy's "norm" or "uniform" (on [0, 1]) law."""
    p = stats.kstest(values.reshape(-1).double().numpy(), cdf).pvalue
    if p < KS_ALPHA:
        checks.fail(what, expected, f"a distribution a Kolmogorov-Smirnov test rejects (p = {p:.2g})", hint)


def _unchanged(x: torch.Tensor, before: torch.Tensor, name: str) -> None:
    if not torch.equal(x, before):
        checks.fail(f"your function changed its input `{name}` in place", f"`{name}` left as it was",
                    f"`{name}` modified", "write x = x + ... (a new tensor), not x += ... or x.add_(...)")


def _answer(name: str, value, shape, differentiable: bool = False) -> torch.Tensor:
    checks.check_tensor(name, value)
    value = checks.plain(name, value, differentiable=differentiable)
    return checks.check_tensor(name, value, shape=shape)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the geometric noise schedule
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_sigma_schedule", "Exercise 1: the noise schedule")
def check_sigma_schedule(sigma_schedule: Callable) -> None:
    """Exercise 1: `sigma_schedule(x, sigma_min, L)` -> (L,) decreasing, geometric, from the data's diameter to sigma_min."""
    cases = [(40, 2, 0.1, 10, DOUBLE), (60, 5, 0.03, 7, torch.float32), (25, 12, 0.5, 3, DOUBLE),
             (30, 3, 0.2, 2, torch.float32)]
    for seed, (n, d, sigma_min, L, dtype) in enumerate(cases):
        g = torch.Generator().manual_seed(seed)
        x = (torch.randn(n, d, generator=g, dtype=DOUBLE) * torch.rand(d, generator=g, dtype=DOUBLE) * 3
             + torch.randn(d, generator=g, dtype=DOUBLE))
        diameter = (x[:, None] - x[None]).norm(dim=-1).max()
        x_in = x.to(dtype).clone()
        sigmas = _answer("the schedule", sigma_schedule(x_in, sigma_min, L), (L,)).double()
        _unchanged(x_in, x.to(dtype), "x")
        atol, rtol = checks.tolerance(dtype, scale=10)
        if not (sigmas[1:] < sigmas[:-1]).all():
            checks.fail("the noise levels do not decrease", "sigma_1 > sigma_2 > ... > sigma_L",
                        f"{sigmas.tolist()}", "the sampler walks from the largest level to the smallest: list them so")
        checks.check_close(f"sigma_1 (the largest level; {dtype} data)", sigmas[0], diameter, atol=0, rtol=rtol,
                           hint="sigma_1 is the largest Euclidean distance between two data points")
        checks.check_close(f"sigma_L (the smallest level; L = {L})", sigmas[-1],
                           torch.tensor(float(sigma_min), dtype=DOUBLE), atol=0, rtol=rtol,
                           hint="the last level must be exactly sigma_min: mind the exponent (i-1)/(L-1)")
        if L > 2:
            ratios = sigmas[:-1] / sigmas[1:]
            checks.check_close("the ratios sigma_i / sigma_(i+1)", ratios, ratios.mean().expand(L - 1), atol=0,
                               rtol=rtol, hint="a geometric schedule is evenly spaced in log sigma, not in sigma")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the NCSN objective over noise levels
# ----------------------------------------------------------------------------------------------------------

class _LinearScore(torch.nn.Module):
    """s(x, sigma) = -(x - mu) / (v + sigma^2) with parameters mu (the data's shape) and log v: the exact score of
    N(mu, v I) perturbed with noise sigma, so the optimum on Gaussian data is known. It records every call."""

    def __init__(self, shape: tuple[int, ...], mu: torch.Tensor | float = 0.0, v: float = 1.0):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(shape, dtype=DOUBLE) + mu)
        self.log_v = torch.nn.Parameter(torch.tensor(math.log(v), dtype=DOUBLE))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x_tilde: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_tilde, torch.Tensor) or not isinstance(sigma, torch.Tensor):
            checks.fail("score was called with the wrong arguments", "score(x_tilde, sigma), both tensors",
                        f"score({type(x_tilde).__name__}, {type(sigma).__name__})")
        shape = tuple(self.mu.shape)
        if x_tilde.ndim != len(shape) + 1 or tuple(x_tilde.shape[1:]) != shape or tuple(sigma.shape) != (len(x_tilde),):
            checks.fail("score was called with the wrong shapes",
                        f"x_tilde of shape (n, {', '.join(map(str, shape))}) and sigma of shape (n,)",
                        f"x_tilde {tuple(x_tilde.shape)}, sigma {tuple(sigma.shape)}",
                        "keep the batch dimension, also for one example: x_tilde[b:b+1], sigma[b:b+1]")
        self.calls.append((x_tilde.detach().double(), sigma.detach().double()))
        return self.value(x_tilde, sigma)

    def value(self, x_tilde: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The score without recording the call."""
        shape = tuple(self.mu.shape)
        v = self.log_v.exp().to(x_tilde.dtype)
        var = (v + sigma**2).reshape(-1, *[1] * len(shape))
        return -(x_tilde - self.mu.to(x_tilde.dtype)) / var

    def recorded(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([c[0] for c in self.calls]), torch.cat([c[1] for c in self.calls])


def _per_example(score: _LinearScore, x: torch.Tensor, x_tilde: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """1/2 sigma^2 ||s(x_tilde, sigma) + z / sigma||^2 = 1/2 ||sigma s + z||^2 per example, z = (x_tilde - x) / sigma."""
    s = sigma.reshape(-1, *[1] * (x.ndim - 1))
    z = (x_tilde - x) / s
    return 0.5 * (s * score.value(x_tilde, sigma) + z).pow(2).reshape(len(x), -1).sum(1)


def _expected_loss(m: float, V: float, mu: torch.Tensor, v: float, sigma_min: float, sigma_max: float) -> float:
    """E over log sigma ~ U[log sigma_min, log sigma_max], x ~ N(m, V I), z of 1/2 ||sigma s(x + sigma z) + z||^2 for
    s = -(x - mu) / (v + sigma^2): 1/2 sum_d [sigma^2 ((m - mu_d)^2 + V) + v^2] / (v + sigma^2)^2, by quadrature."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    sigma = sigma_min * (sigma_max / sigma_min) ** ((nodes + 1) / 2)
    gap2 = ((m - mu.detach().double()) ** 2).sum().item()
    dims = mu.numel()
    per_sigma = 0.5 * (sigma**2 * (gap2 + dims * V) + dims * v**2) / (v + sigma**2) ** 2
    return float((weights * per_sigma).sum() / 2)


_HINT_DRAWS = ("for each example draw u ~ U(0, 1) and sigma = sigma_min (sigma_max / sigma_min)^u, and z ~ N(0, I) "
               "shaped like the example, all with the generator")


def _call(ncsn_loss: Callable, score: _LinearScore, x: torch.Tensor, sigma_min: float, sigma_max: float,
          seed: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's loss (0-d, differentiable) and the recorded draws (x_tilde, sigma) in batch order."""
    score.calls = []
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    x_in = x.clone()
    loss = ncsn_loss(score, x_in, sigma_min, sigma_max, generator)
    _unchanged(x_in, x, "x")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = f"tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        checks.fail("the loss is not one number", "a 0-d tensor: the mean over the batch", got,
                    "average the per-example losses over the batch")
    loss = checks.plain("the loss", loss, differentiable=True).reshape(())
    if not torch.isfinite(loss):
        checks.fail("the loss is not finite", "a finite number", f"{loss.item()}", "look for a division by zero")
    if not score.calls:
        checks.fail("the loss never calls the score network", "score(x_tilde, sigma) at the perturbed batch",
                    "no call")
    x_tilde, sigma = score.recorded()
    if len(x_tilde) != len(x):
        checks.fail("the score network was evaluated on the wrong number of points",
                    f"{len(x)} points, once at each perturbed example (all at once or one by one, in batch order)",
                    f"{len(x_tilde)} points", "evaluate score once at x_tilde, not also at x or twice")
    return loss, x_tilde, sigma


@checks.exercise("ex2_ncsn_loss", "Exercise 2: the NCSN objective over noise levels")
def check_ncsn_loss(ncsn_loss: Callable) -> None:
    """Exercise 2: `ncsn_loss(score, x, sigma_min, sigma_max, generator)` = mean_b 1/2 sigma_b^2 ||s(x_b + sigma_b z_b,
    sigma_b) + z_b / sigma_b||^2 with log sigma_b ~ U[log sigma_min, log sigma_max] and z_b ~ N(0, I).

    A linear score model records the points and levels it is called at, so the returned value, its gradient and
    the laws of sigma and z are checked on the draws the answer made; on Gaussian data the average of the loss is
    compared with its closed form; twenty Adam steps on a fixed batch must lower the exact objective like the
    reference's steps do; and the draws must come from the given generator.
    """
    # 1. Vectors, float64: value, gradient, the laws of the draws, the expectation in closed form.
    m, V, n, sigma_min, sigma_max = 1.0, 0.5, 3000, 0.1, 10.0
    x = m + math.sqrt(V) * torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=DOUBLE)
    score = _LinearScore((2,), mu=torch.tensor([0.5, 2.0], dtype=DOUBLE), v=2.0)
    state = torch.get_rng_state()
    loss, x_tilde, sigma = _call(ncsn_loss, score, x, sigma_min, sigma_max, seed=0)
    if not torch.equal(state, torch.get_rng_state()):
        checks.fail("the loss draws from PyTorch's global random generator", "every draw made with `generator`",
                    "the global random state changed", "pass generator=generator to torch.rand / torch.randn")
    if ((sigma < sigma_min * (1 - 1e-6)) | (sigma > sigma_max * (1 + 1e-6))).any():
        checks.fail("a noise level lies outside [sigma_min, sigma_max]", f"sigma in [{sigma_min}, {sigma_max}]",
                    f"sigma from {sigma.min().item():.4g} to {sigma.max().item():.4g}", _HINT_DRAWS)
    _ks("the noise levels do not have log sigma uniform on [log sigma_min, log sigma_max]",
        (sigma / sigma_min).log() / math.log(sigma_max / sigma_min), "uniform",
        "u = log(sigma / sigma_min) / log(sigma_max / sigma_min) uniform on [0, 1], one draw per example",
        _HINT_DRAWS)
    _ks("the noise z = (x_tilde - x) / sigma is not standard normal", (x_tilde - x) / sigma[:, None], "norm",
        "z ~ N(0, I), independent of sigma", "perturb as x_tilde = x + sigma * z with z from torch.randn")
    per_example = _per_example(score, x, x_tilde, sigma)
    expected = per_example.mean()
    hint = ("the loss is the mean over the batch of 1/2 sigma^2 ||score(x_tilde, sigma) + z / sigma||^2, the squared "
            "norm summed over every non-batch dimension")
    checks.check_close("the loss, recomputed from your draws", loss.detach(), expected.detach(), hint=hint)
    if not loss.requires_grad:
        checks.fail("the loss carries no gradient", "a tensor that backpropagates into the score network",
                    "a tensor without grad_fn", "keep it a tensor: no .item(), no torch.no_grad(), no detach")
    grads = torch.autograd.grad(loss, [score.mu, score.log_v], allow_unused=True)
    expected_grads = torch.autograd.grad(expected, [score.mu, score.log_v])
    for name, found, want in zip(["mu", "log v"], grads, expected_grads, strict=True):
        if found is None:
            checks.fail(f"no gradient reaches the network's parameter {name}", "a gradient", "None",
                        "compute the loss from score(x_tilde, sigma) itself, not from a detached copy")
        checks.check_close(f"the gradient of the loss with respect to {name}", found, want, hint=hint)
    closed_form = _expected_loss(m, V, score.mu, 2.0, sigma_min, sigma_max)
    se = per_example.detach().std() / math.sqrt(n)
    _within("the loss does not average to the NCSN objective", loss.detach().reshape(1),
            torch.tensor([closed_form], dtype=DOUBLE), 5 * se.reshape(1), _HINT_DRAWS)

    # 2. Images, float32: the shapes of the statement, and the generator.
    x_img = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    img_score = _LinearScore((1, 4, 4), mu=0.3, v=0.1)
    first, x_t, s_t = _call(ncsn_loss, img_score, x_img, 0.01, 5.0, seed=3)
    checks.check_close("the loss on a batch of images (6, 1, 4, 4), float32", first.detach(),
                       _per_example(img_score, x_img.double(), x_t, s_t).mean().detach(), atol=1e-4, rtol=1e-4,
                       hint=hint)
    again, _, _ = _call(ncsn_loss, img_score, x_img, 0.01, 5.0, seed=3)
    _call(ncsn_loss, img_score, x_img, 0.01, 5.0, seed=None)            # generator=None: the global generator
    other, _, _ = _call(ncsn_loss, img_score, x_img, 0.01, 5.0, seed=4)
    if first.item() != again.item() or first.item() == other.item():
        checks.fail("the loss does not follow the generator it is given",
                    "the same value from two generators with the same seed, another with another seed",
                    f"{first.item():.6g} and {again.item():.6g} with seed 3, {other.item():.6g} with seed 4",
                    "draw sigma and z with generator=generator; do not make or re-seed a generator inside")

    # 3. Training: 20 Adam steps on a fixed batch lower the exact objective like the reference's steps.
    batch = m + math.sqrt(V) * torch.randn(128, 2, generator=torch.Generator().manual_seed(5), dtype=DOUBLE)
    start = dict(mu=torch.tensor([-1.0, 3.0], dtype=DOUBLE), v=4.0)
    finals = {}
    for who, loss_fn in [("yours", ncsn_loss), ("reference", _reference_ncsn_loss)]:
        model = _LinearScore((2,), **start)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for step in range(20):
            model.calls = []
            opt.zero_grad()
            loss_fn(model, batch, sigma_min, sigma_max, torch.Generator().manual_seed(100 + step)).backward()
            opt.step()
        finals[who] = _expected_loss(m, V, model.mu, model.log_v.exp().item(), sigma_min, sigma_max)
    initial = _expected_loss(m, V, start["mu"], start["v"], sigma_min, sigma_max)
    if finals["yours"] > initial - 0.5 * (initial - finals["reference"]):
        checks.fail("training with your loss does not lower the NCSN objective like the reference's",
                    f"after 20 Adam steps from {initial:.4f}: about {finals['reference']:.4f}",
                    f"{finals['yours']:.4f}", hint)


def _reference_ncsn_loss(score, x, sigma_min, sigma_max, generator=None):
    u = torch.rand(len(x), generator=generator, dtype=x.dtype)
    sigma = sigma_min * (sigma_max / sigma_min) ** u
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    s = sigma.reshape(-1, *[1] * (x.ndim - 1))
    return 0.5 * (s * score(x + s * z, sigma) + z).pow(2).reshape(len(x), -1).sum(1).mean()


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: annealed Langevin dynamics
# ----------------------------------------------------------------------------------------------------------

def _gaussian_score(m: torch.Tensor, v: torch.Tensor) -> Callable:
    """The exact score of N(m, diag(v)) perturbed with noise sigma: -(x - m) / (v + sigma^2)."""
    def score(x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1)
        return -(x - m.to(x.dtype)) / (v.to(x.dtype) + sigma**2)
    return score


def _seeded(fn: Callable, seed: int, *args):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn(*args)


_HINT_LANGEVIN = ("run n_steps steps at each level, largest sigma first, with eta_i = step sigma_i^2 / sigma_L^2 and "
                  "x <- x + eta_i * score(x, sigma_i) + sqrt(2 eta_i) z")


@checks.exercise("ex3_annealed_langevin", "Exercise 3: annealed Langevin dynamics")
def check_annealed_langevin(annealed_langevin: Callable) -> None:
    """Exercise 3: `annealed_langevin(score, x, sigmas, step, n_steps)` -> (L, N, D), the state after each level.

    On a Gaussian target each step x <- x + eta s + sqrt(2 eta) z is linear-Gaussian, so the mean and the
    variance after every level follow exactly from those of the starting points; 20000 chains are compared with
    them within six standard errors (in float64 and in float32). Chains started at one point take one step at one
    level: their law is then exactly Gaussian, and a Kolmogorov-Smirnov test compares the whole of it.
    """
    n, step, n_steps = 20000, 0.005, 3
    m, v = torch.tensor([1.0, -2.0], dtype=DOUBLE), torch.tensor([0.5, 2.0], dtype=DOUBLE)
    score = _gaussian_score(m, v)
    sigmas = torch.tensor([2.0, 1.0, 0.5, 0.25], dtype=DOUBLE)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=DOUBLE)
    x0 = torch.tensor([4.0, 3.0], dtype=DOUBLE) + noise * torch.tensor([1.0, 0.5], dtype=DOUBLE)
    for dtype in (DOUBLE, torch.float32):
        x_in = x0.to(dtype).clone()
        states = _answer("the returned states", _seeded(annealed_langevin, 0, score, x_in, sigmas.to(dtype), step,
                                                        n_steps), (len(sigmas), n, 2)).double()
        _unchanged(x_in, x0.to(dtype), "x")
        mean, var = x0.mean(0), x0.var(0)
        for i, sigma in enumerate(sigmas.tolist()):
            eta = step * sigma**2 / sigmas[-1].item() ** 2
            a = 1 - eta / (v + sigma**2)                                  # x <- a x + (1 - a) m + sqrt(2 eta) z
            for _ in range(n_steps):
                mean, var = a * mean + (1 - a) * m, a**2 * var + 2 * eta
            level = f"level {i + 1} (sigma = {sigma:g}, {dtype})"
            _within(f"the chains' mean after {level} is off", states[i].mean(0), mean, 6 * (var / n).sqrt(),
                    _HINT_LANGEVIN)
            _within(f"the chains' variance after {level} is off", states[i].var(0), var, 6 * var * math.sqrt(2 / n),
                    "the noise of each step is sqrt(2 eta_i) z with z ~ N(0, I), fresh at every step")
    # one step at one level from one point: x_1 ~ N(a x_0 + (1 - a) m, 2 eta)
    point, one = torch.tensor([3.0, 0.0], dtype=DOUBLE), torch.tensor([0.7], dtype=DOUBLE)
    out = _answer("the returned states", _seeded(annealed_langevin, 1, score, point.expand(n, 2).clone(), one, step, 1),
                  (1, n, 2))[0].double()
    a = 1 - step / (v + 0.49)
    _ks("one Langevin step from a single point is not Gaussian", (out - a * point - (1 - a) * m) / math.sqrt(2 * step),
        "norm", "N(x + eta score(x), 2 eta I): Gaussian noise", "draw z with torch.randn_like(x): standard normal")
    # fresh randomness from PyTorch's generator: two global seeds, two different runs
    small = x0[:50]
    runs = [_seeded(annealed_langevin, seed, score, small.clone(), sigmas, step, 1) for seed in (5, 5, 6)]
    runs = [checks.plain("the returned states", r).double() for r in runs]
    if not torch.equal(runs[0], runs[1]) or torch.equal(runs[0], runs[2]):
        checks.fail("the chains do not follow PyTorch's random generator",
                    "the same chains after torch.manual_seed(5) twice, other chains after torch.manual_seed(6)",
                    "chains that ignore the global seed", "draw the noise with torch.randn_like(x); no generator of your own")


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

    From one fixed point repeated 20000 times the step's output is Gaussian with a known mean and variance: the
    mean and variance are compared within six standard errors, and the whole law by a Kolmogorov-Smirnov test.
    """
    n = 20000
    m, v = torch.tensor([0.5, -1.0, 2.0], dtype=DOUBLE), torch.tensor([1.0, 0.3, 2.0], dtype=DOUBLE)
    score = _gaussian_score(m, v)
    cases = [(0.1, 5.0, 0.6, 0.02, DOUBLE), (0.05, 20.0, 0.3, 0.1, torch.float32)]
    for seed, (sigma_min, sigma_max, t, dt, dtype) in enumerate(cases):
        sde = _VESDE(sigma_min, sigma_max)
        point = m + torch.tensor([2.5, -1.5, 3.0], dtype=DOUBLE) * (1 + seed)
        x = point.expand(n, 3).to(dtype).clone()
        out = _answer("the step's output", _seeded(reverse_sde_step, seed, sde, score, x, t, dt), (n, 3)).double()
        _unchanged(x, point.expand(n, 3).to(dtype), "x")
        g2 = sde.g(t) ** 2
        mean = point + g2 * score(point[None], sde.sigma(t))[0] * dt
        var = torch.full((3,), g2 * dt, dtype=DOUBLE)
        case = f"(t = {t}, dt = {dt}, {dtype})"
        _within(f"the mean of x_(t-dt) {case} is off", out.mean(0), mean, 6 * (var / n).sqrt(),
                "the drift of the reverse SDE is + g(t)^2 * score(x, sigma(t)) * dt (no factor 1/2: that is the ODE)")
        _within(f"the variance of x_(t-dt) {case} is off", out.var(0), var, 6 * var * math.sqrt(2 / n),
                "the noise is g(t) * sqrt(dt) * z with z ~ N(0, I)")
        _ks(f"x_(t-dt) {case} is not Gaussian", (out - mean) / var.sqrt(), "norm",
            "N(x + g^2 s dt, g^2 dt I): Gaussian noise", "draw z with torch.randn_like(x): standard normal")
    runs = [checks.plain("the step's output", _seeded(reverse_sde_step, s, _VESDE(0.1, 5.0), score,
                                                      m.expand(20, 3).clone(), 0.5, 0.1)) for s in (5, 5, 6)]
    if not torch.equal(runs[0], runs[1]) or torch.equal(runs[0], runs[2]):
        checks.fail("the step does not follow PyTorch's random generator",
                    "the same output after torch.manual_seed(5) twice, another after torch.manual_seed(6)",
                    "output that ignores the global seed", "draw z with torch.randn_like(x); no generator of your own")
