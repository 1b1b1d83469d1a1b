"""Checks for lecture 12 (score-based models): the score of a Gaussian mixture perturbed by noise, the denoising
score-matching loss, Tweedie's denoiser and the sliced score-matching loss.

Every check builds its own random problem from a fixed seed, in float64, and computes the reference without the
lecture's code: log-densities by logsumexp and autograd, posterior means in closed form, Jacobians by autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


def _random_mixture(seed: int, k: int, d: int):
    """Weights (K,), means (K, D) and per-component isotropic standard deviations (K,), float64."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=g, dtype=DOUBLE) + 0.2
    means = 3 * torch.randn(k, d, generator=g, dtype=DOUBLE)
    stds = 0.3 + torch.rand(k, generator=g, dtype=DOUBLE)
    return weights / weights.sum(), means, stds


def _mixture_log_prob(x, weights, means, stds, sigma):
    """log sum_k w_k N(x; mu_k, (s_k^2 + sigma^2) I) for x (B, D), by logsumexp."""
    var = stds**2 + sigma**2                                                # (K,)
    d = x.shape[1]
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)                       # (B, K)
    comp = weights.log() - 0.5 * d * torch.log(2 * math.pi * var) - sq / (2 * var)
    return torch.logsumexp(comp, 1)


def _reference_score(x, weights, means, stds, sigma):
    """grad_x log p_sigma(x) by autograd of the log-density."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(_mixture_log_prob(x, weights, means, stds, sigma).sum(), x)[0]


def _as_double(out: torch.Tensor) -> torch.Tensor:
    return out.detach().to("cpu", DOUBLE)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the score of a perturbed Gaussian mixture
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_mixture_score", "Exercise 1: the score of a perturbed Gaussian mixture")
def check_mixture_score(mixture_score: Callable) -> None:
    """Exercise 1: `mixture_score(x, weights, means, stds, sigma)` -> (B, D), the score of
    p_sigma = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I) at each row of x."""
    for seed, (k, d, sigma) in enumerate([(2, 2, 0.0), (3, 2, 0.7), (4, 3, 2.5), (1, 2, 0.3)]):
        weights, means, stds = _random_mixture(seed, k, d)
        x = 4 * torch.randn(64, d, generator=torch.Generator().manual_seed(seed + 10), dtype=DOUBLE)
        got = mixture_score(x.clone(), weights, means, stds, sigma)
        checks.check_tensor("mixture_score's output", got, shape=(64, d))
        want = _reference_score(x, weights, means, stds, sigma)
        got = _as_double(got)
        if k > 1 and torch.allclose(got, _reference_score(x, weights, means, stds, 0.0), atol=1e-6) and sigma > 0:
            checks.fail(f"the score ignores the noise level (sigma = {sigma})", "the score of p convolved with "
                        "N(0, sigma^2 I)", "the score of the clean mixture",
                        "adding independent Gaussian noise adds sigma^2 to each component's variance")
        prior_mixed = sum(w * -(x - m) / (s**2 + sigma**2) for w, m, s in zip(weights, means, stds, strict=True))
        if k > 1 and torch.allclose(got, prior_mixed, atol=1e-6):
            checks.fail("the score averages the components with their prior weights", "weights r_k(x) that depend on x",
                        "the fixed weights w_k", "the score of a mixture weights each component's score by its "
                        "responsibility r_k(x) = w_k N_k(x) / sum_j w_j N_j(x)")
        checks.check_close(f"the score (K = {k}, D = {d}, sigma = {sigma})", got, want, atol=1e-8, rtol=1e-6,
                           hint="grad log p = sum_k r_k(x) * (-(x - mu_k) / (s_k^2 + sigma^2)); compute the "
                                "responsibilities with a softmax over log-terms")
    # far from every mode the densities underflow: a stable implementation still returns the right score
    weights, means, stds = _random_mixture(7, 3, 2)
    x = torch.tensor([[60.0, -45.0], [-80.0, 0.0], [0.0, 100.0]], dtype=DOUBLE)
    got = mixture_score(x.clone(), weights, means, stds, 0.1)
    checks.check_tensor("mixture_score's output far from the modes", got, shape=(3, 2), finite=False)
    if not torch.isfinite(got).all():
        checks.fail("the score is NaN or inf far from the modes", "finite values at |x| = 100", "NaN or inf",
                    "exp(-|x - mu|^2 / 2 var) underflows to 0 there; compute the responsibilities from log-terms "
                    "(torch.softmax or logsumexp)")
    checks.check_close("the score far from the modes", _as_double(got), _reference_score(x, weights, means, stds, 0.1),
                       atol=1e-6, rtol=1e-6, hint="compute the responsibilities from log-terms")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the denoising score-matching loss
# ----------------------------------------------------------------------------------------------------------

class _RandomScore(torch.nn.Module):
    """A random smooth vector field R^D -> R^D (float64) with a trainable matrix, standing in for a score network."""

    def __init__(self, d: int, seed: int, hidden: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = torch.nn.Parameter(torch.randn(d, d, generator=g, dtype=DOUBLE))
        self.w1 = torch.randn(hidden, d, generator=g, dtype=DOUBLE)
        self.b1 = torch.randn(hidden, generator=g, dtype=DOUBLE)
        self.w2 = torch.randn(d, hidden, generator=g, dtype=DOUBLE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.a.T + torch.tanh(x @ self.w1.T + self.b1) @ self.w2.T


_MEAN = "the loss is the mean over the batch: sum over the coordinates, then average over the batch"


@checks.exercise("ex2_dsm_loss", "Exercise 2: the denoising score-matching loss")
def check_dsm_loss(dsm_loss: Callable) -> None:
    """Exercise 2: `dsm_loss(score, x, sigma, z)` = mean_b 1/2 || score(x + sigma z) + z / sigma ||^2."""
    for seed, (b, d, sigma) in enumerate([(32, 2, 0.5), (17, 3, 1.7), (8, 2, 0.05)]):
        g = torch.Generator().manual_seed(seed + 20)
        score = _RandomScore(d, seed)
        x, z = torch.randn(b, d, generator=g, dtype=DOUBLE), torch.randn(b, d, generator=g, dtype=DOUBLE)
        loss = checks.check_scalar("dsm_loss", dsm_loss(score, x.clone(), sigma, z.clone()), _MEAN)
        x_tilde = x + sigma * z
        want = 0.5 * ((score(x_tilde) + z / sigma) ** 2).sum(1).mean()
        wrong = {
            "the target has the wrong sign: the score points from the noisy point back to the clean one, "
            "-(x_tilde - x) / sigma^2 = -z / sigma": 0.5 * ((score(x_tilde) - z / sigma) ** 2).sum(1).mean(),
            "the target is -(x_tilde - x) / sigma^2 = -z / sigma, not -z / sigma^2":
                0.5 * ((score(x_tilde) + z / sigma**2) ** 2).sum(1).mean(),
            "the target is -(x_tilde - x) / sigma^2 = -z / sigma, not -z":
                0.5 * ((score(x_tilde) + z) ** 2).sum(1).mean(),
            "the score is evaluated at the noisy point x_tilde = x + sigma z, not at x":
                0.5 * ((score(x) + z / sigma) ** 2).sum(1).mean(),
        }
        for hint, value in wrong.items():
            if abs(float(loss.detach()) - float(value.detach())) < 1e-9 * max(1.0, float(value.detach())):
                checks.fail(f"dsm_loss is wrong (sigma = {sigma})", f"{float(want.detach()):.6g}", f"{float(loss.detach()):.6g}", hint)
        checks.check_close(f"dsm_loss (B = {b}, D = {d}, sigma = {sigma})", loss.detach(), want.detach(),
                           atol=1e-9, rtol=1e-7,
                           hint="1/2 times the squared norm summed over coordinates, averaged over the batch")
        if not loss.requires_grad:
            checks.fail("dsm_loss carries no gradient", "a loss connected to the score network's parameters",
                        "a tensor without grad", "do not compute it under torch.no_grad or detach the score")
    # the minimizer over scores s_a(x) = -a x, for data N(0, tau^2 I), is the perturbed score: a = 1/(tau^2 + sigma^2)
    tau, sigma, d = 1.5, 0.8, 2
    g = torch.Generator().manual_seed(5)
    x, z = tau * torch.randn(200_000, d, generator=g, dtype=DOUBLE), torch.randn(200_000, d, generator=g, dtype=DOUBLE)
    a = torch.tensor(0.3, dtype=DOUBLE, requires_grad=True)
    loss = checks.check_scalar("dsm_loss", dsm_loss(lambda v: -a * v, x, sigma, z), _MEAN)
    (grad,) = torch.autograd.grad(loss, a)
    a_star = float(a.detach()) - float(grad) / float(((x + sigma * z) ** 2).sum(1).mean())   # one Newton step: quadratic in a
    checks.check_close("the minimizer a of the DSM loss over s(x) = -a x on N(0, tau^2 I) data", a_star,
                       1 / (tau**2 + sigma**2), atol=0.01,
                       hint="the DSM minimizer is the score of the perturbed data N(0, (tau^2 + sigma^2) I)")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: Tweedie's denoiser
# ----------------------------------------------------------------------------------------------------------

def _posterior_mean(x_tilde, weights, means, stds, sigma):
    """E[x | x_tilde] for x ~ sum_k w_k N(mu_k, s_k^2 I), x_tilde = x + sigma z: closed form per component."""
    var = stds**2 + sigma**2                                                # (K,)
    d = x_tilde.shape[1]
    sq = ((x_tilde[:, None, :] - means[None]) ** 2).sum(-1)                 # (B, K)
    r = torch.softmax(weights.log() - 0.5 * d * var.log() - sq / (2 * var), 1)     # responsibilities (B, K)
    comp = (stds[:, None] ** 2 * x_tilde[:, None, :] + sigma**2 * means[None]) / var[:, None]   # (B, K, D)
    return (r[..., None] * comp).sum(1)


@checks.exercise("ex3_tweedie", "Exercise 3: Tweedie's denoiser")
def check_tweedie(tweedie_denoiser: Callable) -> None:
    """Exercise 3: `tweedie_denoiser(x_tilde, sigma, score)` -> E[x | x_tilde] (B, D), where `score` maps (B, D) to
    grad log p_sigma at those points."""
    for seed, (k, d, sigma) in enumerate([(2, 2, 0.5), (3, 2, 2.0), (3, 3, 1.2)]):
        weights, means, stds = _random_mixture(seed + 30, k, d)
        x_tilde = 4 * torch.randn(50, d, generator=torch.Generator().manual_seed(seed + 40), dtype=DOUBLE)

        def score(v, weights=weights, means=means, stds=stds, sigma=sigma):
            return _reference_score(v, weights, means, stds, sigma)

        got = tweedie_denoiser(x_tilde.clone(), sigma, score)
        checks.check_tensor("tweedie_denoiser's output", got, shape=(50, d))
        got = _as_double(got)
        want = _posterior_mean(x_tilde, weights, means, stds, sigma)
        s = score(x_tilde)
        for hint, value in (("the correction moves along the score, not against it: it points uphill, towards "
                             "the data", x_tilde - sigma**2 * s),
                            ("the step is sigma^2 times the score, not sigma times it", x_tilde + sigma * s)):
            if torch.allclose(got, value, atol=1e-8):
                checks.fail(f"the denoiser is wrong (sigma = {sigma})", "E[x | x_tilde] in closed form",
                            "a different point", hint)
        checks.check_close(f"E[x | x_tilde] (K = {k}, D = {d}, sigma = {sigma})", got, want, atol=1e-8, rtol=1e-6,
                           hint="Tweedie: E[x | x_tilde] = x_tilde + sigma^2 grad log p_sigma(x_tilde)")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the sliced score-matching loss
# ----------------------------------------------------------------------------------------------------------

def _exact_sm_objective(score: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mean_x [ tr(d score / dx) + 1/2 |score(x)|^2 ], the trace by one autograd pass per coordinate."""
    x = x.detach().clone().requires_grad_(True)
    s = score(x)
    trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (s**2).sum(1)).mean()


def _projections(kind: str, shape, g) -> torch.Tensor:
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=g).to(DOUBLE) * 2 - 1
    return torch.randn(shape, generator=g, dtype=DOUBLE)


def _sliced_terms(score, x, v) -> torch.Tensor:
    """Per-row reference v^T J v + 1/2 (v^T s)^2 (for the spread of the estimator)."""
    x = x.detach().clone().requires_grad_(True)
    s = score(x)
    jv = torch.autograd.grad((s * v).sum(), x, create_graph=True)[0]
    return (jv * v).sum(1) + 0.5 * (s * v).sum(1) ** 2


@checks.exercise("ex4_sliced_loss", "Exercise 4: the sliced score-matching loss")
def check_sliced_loss(sliced_loss: Callable) -> None:
    """Exercise 4: `sliced_loss(score, x, v)` = mean_b [ v^T (d score/dx) v + 1/2 (v^T score(x))^2 ], an unbiased
    estimate of the score-matching objective E[ tr(d score/dx) + 1/2 |score|^2 ] for projections with E[v v^T] = I.

    Tested through its expectation over many projections (so the variance-reduced form with 1/2 |score|^2 also
    passes) and through its gradient with respect to the score's parameters.
    """
    d, reps = 3, 10_000
    for seed, kind in enumerate(("rademacher", "gaussian")):
        score = _RandomScore(d, seed + 50)
        g = torch.Generator().manual_seed(seed + 60)
        points = 1.5 * torch.randn(4, d, generator=g, dtype=DOUBLE)
        x = points.repeat_interleave(reps, 0)                               # (4 * reps, D): each point, many v
        v = _projections(kind, x.shape, g)
        loss = checks.check_scalar("sliced_loss", sliced_loss(score, x.clone(), v.clone()), _MEAN)
        exact = _exact_sm_objective(score, points)
        spread = _sliced_terms(score, x, v).detach()
        tol = 5 * float(spread.std()) / math.sqrt(len(x)) + 1e-3
        if abs(float(loss.detach()) - float(exact.detach())) > tol:
            checks.fail(f"the sliced loss does not estimate the score-matching objective ({kind} projections, "
                        f"{len(x)} of them)", f"{float(exact.detach()):.4f} +- {tol:.3f} (tr J + 1/2 |s|^2, exact)",
                        f"{float(loss.detach()):.4f}",
                        "v^T J v is v . grad_x (v . s(x)): differentiate the projected score v . s(x) (summed over "
                        "the batch) with respect to x, then dot with v; add 1/2 (v . s)^2")
        if not loss.requires_grad:
            checks.fail("sliced_loss carries no gradient", "a loss connected to the score's parameters",
                        "a tensor without grad", "keep the graph: torch.autograd.grad(..., create_graph=True)")
        try:
            (got,) = torch.autograd.grad(loss, score.a, allow_unused=True)
        except RuntimeError as err:  # e.g. the graph freed by an autograd.grad without create_graph
            checks.fail("the sliced loss cannot be differentiated", "a loss that backpropagates to the score's "
                        "parameters", f"RuntimeError: {str(err).splitlines()[0][:80]}",
                        "keep the graph: torch.autograd.grad(..., create_graph=True)")
        if got is None:
            checks.fail("the sliced loss does not depend on the score's parameters", "a gradient", "None",
                        "do not detach the score")
        (want,) = torch.autograd.grad(exact, score.a)
        checks.check_close(f"the gradient of the sliced loss with respect to the score's parameters ({kind})", got,
                           want, atol=0.25,
                           hint="the Jacobian-vector product must stay in the graph: torch.autograd.grad(..., "
                                "create_graph=True), or training never sees the trace term")
