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
    p_sigma = sum_k w_k N(mu_k, (s_k^2 + sigma^2) I) at each row of x; finite far from every mode."""
    for seed, (k, d, sigma) in enumerate([(2, 2, 0.0), (3, 2, 0.7), (4, 3, 2.5), (1, 2, 0.3)]):
        weights, means, stds = _random_mixture(seed, k, d)
        x = 4 * torch.randn(64, d, generator=torch.Generator().manual_seed(seed + 10), dtype=DOUBLE)
        got = checks.plain("mixture_score's output", mixture_score(x.clone(), weights, means, stds, sigma))
        checks.check_tensor("mixture_score's output", got, shape=(64, d))
        atol, rtol = checks.tolerance(got.dtype, 100)
        want = _reference_score(x, weights, means, stds, sigma)
        got = _as_double(got)
        if k > 1 and sigma > 0 and torch.allclose(got, _reference_score(x, weights, means, stds, 0.0), atol=atol, rtol=rtol):
            checks.fail(f"the score ignores the noise level (sigma = {sigma})", "the score of p convolved with "
                        "N(0, sigma^2 I)", "the score of the clean mixture",
                        "adding independent Gaussian noise adds sigma^2 to each component's variance")
        prior_mixed = sum(w * -(x - m) / (s**2 + sigma**2) for w, m, s in zip(weights, means, stds, strict=True))
        if k > 1 and torch.allclose(got, prior_mixed, atol=atol, rtol=rtol):
            checks.fail("the score averages the components with their prior weights", "weights r_k(x) that depend on x",
                        "the fixed weights w_k", "the score of a mixture weights each component's score by its "
                        "responsibility r_k(x) = w_k N_k(x) / sum_j w_j N_j(x)")
        checks.check_close(f"the score (K = {k}, D = {d}, sigma = {sigma})", got, want, atol=atol, rtol=rtol,
                           hint="grad log p = sum_k r_k(x) * (-(x - mu_k) / (s_k^2 + sigma^2)), with the "
                                "responsibilities r_k(x) normalized over the components k for each point")
    # far from every mode the densities underflow: a stable implementation still returns the right score
    weights, means, stds = _random_mixture(7, 3, 2)
    x = torch.tensor([[60.0, -45.0], [-80.0, 0.0], [0.0, 100.0]], dtype=DOUBLE)
    got = checks.plain("mixture_score's output far from the modes", mixture_score(x.clone(), weights, means, stds, 0.1))
    checks.check_tensor("mixture_score's output far from the modes", got, shape=(3, 2), finite=False)
    if not torch.isfinite(got).all():
        checks.fail("the score is NaN or inf far from the modes", "finite values at |x| = 100", "NaN or inf",
                    "exp(-|x - mu|^2 / 2 var) underflows to 0 there; compute the responsibilities from log-terms "
                    "(torch.softmax or logsumexp)")
    atol, rtol = checks.tolerance(got.dtype, 100)
    checks.check_close("the score far from the modes", _as_double(got), _reference_score(x, weights, means, stds, 0.1),
                       atol=atol, rtol=rtol, hint="compute the responsibilities from log-terms")


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
    """Exercise 2: `dsm_loss(score, x, sigma, z)` = mean_b 1/2 || score(x + sigma z) + z / sigma ||^2, with the
    caller's noise z, differentiable with respect to the score's parameters."""
    for seed, (b, d, sigma) in enumerate([(32, 2, 0.5), (17, 3, 1.7), (8, 2, 0.05)]):
        g = torch.Generator().manual_seed(seed + 20)
        score = _RandomScore(d, seed)
        x, z = torch.randn(b, d, generator=g, dtype=DOUBLE), torch.randn(b, d, generator=g, dtype=DOUBLE)
        loss = checks.check_scalar("dsm_loss", checks.plain("dsm_loss", dsm_loss(score, x.clone(), sigma, z.clone()),
                                                            differentiable=True), _MEAN)
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
        atol, rtol = checks.tolerance(loss.dtype, 10)
        for hint, value in wrong.items():
            if abs(float(loss.detach()) - float(value.detach())) < rtol * max(1.0, float(value.detach())):
                checks.fail(f"dsm_loss is wrong (sigma = {sigma})", f"{float(want.detach()):.6g}", f"{float(loss.detach()):.6g}", hint)
        checks.check_close(f"dsm_loss (B = {b}, D = {d}, sigma = {sigma})", loss.detach(), want.detach(),
                           atol=atol, rtol=rtol,
                           hint="use the z you are given (do not draw new noise); 1/2 times the squared norm summed "
                                "over coordinates, averaged over the batch")
        if not loss.requires_grad:
            checks.fail("dsm_loss carries no gradient", "a loss connected to the score network's parameters",
                        "a tensor without grad", "do not compute it under torch.no_grad or detach the score")
    # the minimizer over scores s_a(x) = -a x, for data N(0, tau^2 I), is the perturbed score: a = 1/(tau^2 + sigma^2)
    # (x, z) run over all sign patterns: E|x|^2 = tau^2 D, E|z|^2 = D and E[x . z] = 0 exactly, as for the population
    tau, sigma, d = 1.5, 0.8, 2
    signs = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0], dtype=DOUBLE)] * (2 * d))      # (16, 2 D)
    x, z = tau * signs[:, :d], signs[:, d:]
    a = torch.tensor(0.3, dtype=DOUBLE, requires_grad=True)
    loss = checks.check_scalar("dsm_loss", checks.plain("dsm_loss", dsm_loss(lambda v: -a * v, x, sigma, z),
                                                        differentiable=True), _MEAN)
    (grad,) = torch.autograd.grad(loss, a)
    a_star = float(a.detach()) - float(grad) / float(((x + sigma * z) ** 2).sum(1).mean())   # one Newton step: quadratic in a
    checks.check_close("the minimizer a of the DSM loss over s(x) = -a x on N(0, tau^2 I) data", a_star,
                       1 / (tau**2 + sigma**2), atol=1e-4,
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
    grad log p_sigma at those points; x_tilde is left unchanged."""
    for seed, (k, d, sigma) in enumerate([(2, 2, 0.5), (3, 2, 2.0), (3, 3, 1.2)]):
        weights, means, stds = _random_mixture(seed + 30, k, d)
        x_tilde = 4 * torch.randn(50, d, generator=torch.Generator().manual_seed(seed + 40), dtype=DOUBLE)

        def score(v, weights=weights, means=means, stds=stds, sigma=sigma):
            return _reference_score(v, weights, means, stds, sigma)

        x_in = x_tilde.clone()
        got = checks.plain("tweedie_denoiser's output", tweedie_denoiser(x_in, sigma, score))
        if not torch.equal(x_in, x_tilde):
            checks.fail("tweedie_denoiser changed its input x_tilde in place", "x_tilde left as it is (the lecture "
                        "uses the noisy points again)", "x_tilde modified", "return a new tensor (x_tilde + ...) "
                        "instead of x_tilde += ...")
        checks.check_tensor("tweedie_denoiser's output", got, shape=(50, d))
        atol, rtol = checks.tolerance(got.dtype, 100)
        got = _as_double(got)
        want = _posterior_mean(x_tilde, weights, means, stds, sigma)
        s = score(x_tilde)
        for hint, value in (("the correction moves along the score, not against it: it points uphill, towards "
                             "the data", x_tilde - sigma**2 * s),
                            ("the step is sigma^2 times the score, not sigma times it", x_tilde + sigma * s)):
            if torch.allclose(got, value, atol=atol, rtol=rtol):
                checks.fail(f"the denoiser is wrong (sigma = {sigma})", "E[x | x_tilde] in closed form",
                            "a different point", hint)
        checks.check_close(f"E[x | x_tilde] (K = {k}, D = {d}, sigma = {sigma})", got, want, atol=atol, rtol=rtol,
                           hint="the posterior mean starts at the noisy point and moves along the score of the noisy "
                                "density, by an amount set by the noise variance")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the sliced score-matching loss
# ----------------------------------------------------------------------------------------------------------

def _exact_sm_objective(score: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mean_x [ tr(d score / dx) + 1/2 |score(x)|^2 ], the trace by one autograd pass per coordinate."""
    x = x.detach().clone().requires_grad_(True)
    s = score(x)
    trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (s**2).sum(1)).mean()


def _designs(d: int) -> dict[str, torch.Tensor]:
    """Sets of projections whose second moment is exactly the identity: the mean of any sliced estimator over such a
    set equals the exact score-matching objective (its terms are quadratic in v)."""
    signs = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0], dtype=DOUBLE)] * d)           # all 2^d sign vectors
    axes = math.sqrt(d) * torch.cat([torch.eye(d, dtype=DOUBLE), -torch.eye(d, dtype=DOUBLE)])   # +- sqrt(d) e_i
    return {"all Rademacher sign vectors": signs, "the vectors +- sqrt(D) e_i": axes}


@checks.exercise("ex4_sliced_loss", "Exercise 4: the sliced score-matching loss")
def check_sliced_loss(sliced_loss: Callable) -> None:
    """Exercise 4: `sliced_loss(score, x, v)` = mean_b [ v^T (d score/dx) v + 1/2 (v^T score(x))^2 ], an unbiased
    estimate of the score-matching objective E[ tr(d score/dx) + 1/2 |score|^2 ] for projections with E[v v^T] = I.

    Tested on sets of projections whose second moment is exactly I (so the variance-reduced form with 1/2 |score|^2
    also passes): its value and its gradient with respect to the score's parameters must equal the exact ones.
    """
    d = 3
    for seed, (name, design) in enumerate(_designs(d).items()):
        score = _RandomScore(d, seed + 50)
        g = torch.Generator().manual_seed(seed + 60)
        points = 1.5 * torch.randn(4, d, generator=g, dtype=DOUBLE)
        x = points.repeat_interleave(len(design), 0)                        # (4 * V, D): each point with every v
        v = design.repeat(len(points), 1)
        v_in = v.clone()
        loss = checks.check_scalar("sliced_loss", checks.plain("sliced_loss", sliced_loss(score, x.clone(), v_in),
                                                               differentiable=True), _MEAN)
        exact = _exact_sm_objective(score, points)
        atol, rtol = checks.tolerance(loss.dtype, 100)
        checks.check_close(f"the sliced loss averaged over {name} (second moment exactly I), against the exact "
                           "score-matching objective tr J + 1/2 |s|^2", loss.detach(), exact.detach(),
                           atol=atol * max(1.0, float(exact.detach().abs())), rtol=rtol,
                           hint="use the projections v you are given; v^T J v is v . grad_x (v . s(x)): differentiate "
                                "the projected score v . s(x) (summed over the batch) with respect to x, then dot "
                                "with v; add 1/2 (v . s)^2")
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
        checks.check_close(f"the gradient of the sliced loss with respect to the score's parameters ({name})", got,
                           want, atol=atol * max(1.0, float(want.abs().max())), rtol=rtol,
                           hint="the Jacobian-vector product must stay in the graph: torch.autograd.grad(..., "
                                "create_graph=True), or training never sees the trace term")
