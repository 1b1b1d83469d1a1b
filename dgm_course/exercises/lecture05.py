"""Checks for lecture 05 (variational autoencoders): reparameterized sampling, the KL divergence between diagonal
Gaussians, the ELBO of a Bernoulli VAE and the importance-weighted (IWAE) bound.

Every check builds its own random problem from a fixed seed, computes the reference in float64 with its own
formula, and tests the defining property (the distribution of the samples and the path of the gradient for the
reparameterization; closed forms for the KL and the ELBO; log-mean-exp for the IWAE bound), including the
extreme inputs where a numerically naive implementation breaks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: reparameterized sampling
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_reparameterize", "Exercise 1: reparameterized sampling")
def check_reparameterize(reparameterize: Callable) -> None:
    """Exercise 1: `reparameterize(mu, logvar)` draws z ~ N(mu, diag(exp(logvar))) as a differentiable function
    of mu and logvar, one independent draw per entry, shape (B, D)."""
    n, d = 20000, 3
    g = torch.Generator().manual_seed(5)
    mu0 = 2.0 * torch.randn(n, d, generator=g)
    logvar0 = 1.5 * torch.randn(n, d, generator=g)   # standard deviations from about 0.1 to 10
    mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
    with torch.random.fork_rng(devices=[]):            # a fixed draw that leaves the notebook's RNG untouched
        torch.manual_seed(0)
        z = reparameterize(mu, logvar)
    checks.check_tensor("z", z, shape=(n, d))
    if not torch.is_floating_point(z):
        checks.fail("z has the wrong dtype", "floating point samples", str(z.dtype))

    # the distribution: eps = (z - mu) / sigma must be standard normal, independent across the batch
    sigma = (0.5 * logvar0).exp()
    eps = ((z.detach() - mu0) / sigma).double()
    mean, var = eps.mean(0), eps.var(0)
    if (var < 0.5).any() and (z.detach() - mu0).abs().max() < 1e-6:
        checks.fail("z is not random", "z = mu + sigma * eps with eps ~ N(0, I)", "z equal to mu",
                    "draw eps with torch.randn_like(mu)")
    if (mean.abs() > 5 / math.sqrt(n)).any() or ((var - 1).abs() > 6 * math.sqrt(2 / n)).any():
        checks.fail("(z - mu) / sigma is not standard normal, column by column",
                    "mean 0 and variance 1 in every column", f"means {_list(mean)}, variances {_list(var)}",
                    "logvar is log sigma^2, so the standard deviation is exp(0.5 * logvar); and each entry "
                    "needs its own eps (same shape as mu)")

    # the gradient path: dz/dmu = 1 and dz/dlogvar = sigma * eps / 2 = (z - mu) / 2, whatever eps was drawn
    if not z.requires_grad:
        checks.fail("no gradient flows from z back to mu and logvar", "z to be a differentiable function of mu and logvar",
                    "z has no autograd history", "do not sample with torch.normal or detach z: write z = mu + sigma * eps")
    grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
    if grad_mu is None or grad_logvar is None:
        missing = "mu" if grad_mu is None else "logvar"
        checks.fail(f"z does not depend on {missing} through autograd", "gradients for both mu and logvar",
                    f"no gradient for {missing}", "z = mu + exp(0.5 * logvar) * eps, with eps drawn without gradient")
    checks.check_close("dz/dmu", grad_mu, torch.ones_like(mu0), atol=1e-5,
                       hint="z must move one-for-one with mu: z = mu + sigma * eps")
    checks.check_close("dz/dlogvar", grad_logvar, 0.5 * (z.detach() - mu0), atol=1e-4, rtol=1e-4,
                       hint="with sigma = exp(0.5 * logvar), dz/dlogvar = 0.5 * sigma * eps; is eps detached from "
                            "the graph (torch.randn_like), and is z built from mu and logvar themselves?")


def _list(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{float(v):.3f}" for v in t) + "]"


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the KL divergence between two diagonal Gaussians
# ----------------------------------------------------------------------------------------------------------

def _kl_reference(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) summed over the last axis, written from the densities."""
    var_q, var_p = logvar_q.exp(), logvar_p.exp()
    return 0.5 * (logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / var_p - 1).sum(-1)


def _not_reversed(found, expected, swapped):
    if torch.allclose(found.double(), swapped, atol=1e-8) and not torch.allclose(found.double(), expected, atol=1e-8):
        checks.fail("the KL goes the wrong way", "KL(q || p) = E_q[log q - log p]", "KL(p || q)",
                    "q's variance goes in the numerator, divided by p's variance; (mu_q - mu_p)^2 is divided by p's")


@checks.exercise("ex2_gaussian_kl", "Exercise 2: the KL divergence between diagonal Gaussians")
def check_gaussian_kl(gaussian_kl: Callable) -> None:
    """Exercise 2: `gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)` is KL(q || p) for diagonal Gaussians, (B,)."""
    g = torch.Generator().manual_seed(7)
    b, d = 64, 5
    mu_q, mu_p = torch.randn(b, d, generator=g, dtype=DOUBLE), torch.randn(b, d, generator=g, dtype=DOUBLE)
    logvar_q, logvar_p = torch.randn(b, d, generator=g, dtype=DOUBLE), torch.randn(b, d, generator=g, dtype=DOUBLE)
    args = [t.clone() for t in (mu_q, logvar_q, mu_p, logvar_p)]

    zero = torch.zeros(b, d, dtype=DOUBLE)
    kl_std = gaussian_kl(mu_q.clone(), logvar_q.clone(), zero.clone(), zero.clone())
    checks.check_tensor("KL(q || N(0, I))", kl_std, shape=(b,))
    _not_reversed(kl_std, _kl_reference(mu_q, logvar_q, zero, zero), _kl_reference(zero, zero, mu_q, logvar_q))
    checks.check_close("KL(q || N(0, I))", kl_std, _kl_reference(mu_q, logvar_q, zero, zero), atol=1e-8,
                       hint="KL(q || N(0, I)) = 0.5 * sum_d (mu^2 + sigma^2 - 1 - log sigma^2): check the factor "
                            "1/2, the sign of each term, and sum (not average) over the D dimensions")
    same = gaussian_kl(mu_q.clone(), logvar_q.clone(), mu_q.clone(), logvar_q.clone())
    checks.check_close("KL(q || q)", same, torch.zeros(b, dtype=DOUBLE), atol=1e-10,
                       hint="the divergence of a distribution from itself is 0: are mu_p and logvar_p used?")

    kl = gaussian_kl(*args)
    checks.check_tensor("KL(q || p)", kl, shape=(b,))
    expected = _kl_reference(mu_q, logvar_q, mu_p, logvar_p)
    _not_reversed(kl, expected, _kl_reference(mu_p, logvar_p, mu_q, logvar_q))
    checks.check_close("KL(q || p)", kl, expected, atol=1e-8,
                       hint="0.5 * sum_d [log(sigma_p^2 / sigma_q^2) + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1]")
    if (kl < -1e-10).any():
        checks.fail("the KL is negative", "KL >= 0 always", f"minimum {float(kl.min()):.3g}")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the ELBO of a Bernoulli VAE
# ----------------------------------------------------------------------------------------------------------

def _elbo_reference(x, logits, mu, logvar):
    log_px_z = (x * logits - torch.nn.functional.softplus(logits)).sum(-1)   # log Bernoulli(x; sigmoid(logits))
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    return log_px_z - kl


@checks.exercise("ex3_elbo", "Exercise 3: the ELBO")
def check_elbo(elbo: Callable) -> None:
    """Exercise 3: `elbo(x, logits, mu, logvar)` = log p(x|z) - KL(q(z|x) || N(0, I)) per image, (B,), for a
    Bernoulli decoder with logits (B, 784) and a diagonal Gaussian q with mu, logvar (B, D_z)."""
    g = torch.Generator().manual_seed(11)
    b, d_x, d_z = 16, 784, 10
    x = torch.bernoulli(torch.full((b, d_x), 0.3, dtype=DOUBLE), generator=g)
    logits = 3.0 * torch.randn(b, d_x, generator=g, dtype=DOUBLE)
    mu, logvar = torch.randn(b, d_z, generator=g, dtype=DOUBLE), torch.randn(b, d_z, generator=g, dtype=DOUBLE)

    out = elbo(x.clone(), logits.clone(), mu.clone(), logvar.clone())
    checks.check_tensor("the ELBO", out, shape=(b,))
    expected = _elbo_reference(x, logits, mu, logvar)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    if torch.allclose(out.double(), expected + 2 * kl, atol=1e-6):
        checks.fail("the KL term has the wrong sign", "ELBO = log p(x|z) - KL", "log p(x|z) + KL",
                    "the KL is a penalty: subtract it")
    if torch.allclose(out.double(), expected + kl, atol=1e-6):
        checks.fail("the KL term is missing", "ELBO = log p(x|z) - KL", "log p(x|z) alone")
    if (out > 0).all():
        checks.fail("the ELBO has the wrong sign", "a negative number per image (a log-probability minus a KL)",
                    f"positive values, e.g. {float(out[0]):.4g}",
                    "binary_cross_entropy is -log p(x|z): the ELBO uses its negative")
    checks.check_close("the ELBO", out, expected, atol=1e-6, rtol=1e-6,
                       hint="sum the Bernoulli log-likelihood over the 784 pixels (not the mean), and use "
                            "KL = 0.5 * sum_d (mu^2 + exp(logvar) - 1 - logvar)")

    # confident logits (|logit| = 40): sigmoid rounds to exactly 0 or 1, so log(sigmoid) breaks
    x_hard = x[:2].clone()
    logits_hard = 40.0 * (2 * x_hard - 1)
    logits_hard[:, :5] *= -1                                   # five confidently wrong pixels per image
    out_hard = elbo(x_hard.clone(), logits_hard.clone(), mu[:2].clone(), logvar[:2].clone())
    if not isinstance(out_hard, torch.Tensor) or out_hard.shape != (2,) or not torch.isfinite(out_hard).all():
        checks.fail("the ELBO is not finite for confident logits (|logit| = 40)", "finite values near -200",
                    "NaN, inf or a wrong shape",
                    "log(sigmoid(l)) and log(1 - sigmoid(l)) underflow; use the logits directly: "
                    "x * l - softplus(l), or F.binary_cross_entropy_with_logits")
    checks.check_close("the ELBO for confident logits", out_hard, _elbo_reference(x_hard, logits_hard, mu[:2], logvar[:2]),
                       atol=1e-5, hint="work with the logits (binary_cross_entropy_with_logits), not the probabilities")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the importance-weighted bound
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex4_iwae_bound", "Exercise 4: the importance-weighted bound")
def check_iwae_bound(iwae_bound: Callable) -> None:
    """Exercise 4: `iwae_bound(log_w)` maps log weights (K, B) to L_K = log (1/K) sum_k w_k per column, (B,)."""
    g = torch.Generator().manual_seed(13)
    k, b = 50, 8
    log_w = 3.0 * torch.randn(k, b, generator=g, dtype=DOUBLE) - 90.0
    out = iwae_bound(log_w.clone())
    checks.check_tensor("L_K", out, shape=(b,))
    expected = torch.logsumexp(log_w, 0) - math.log(k)
    if torch.allclose(out.double(), expected + math.log(k), atol=1e-8):
        checks.fail("L_K is off by log K", "log of the MEAN of the K weights", "log of their sum",
                    "subtract log K: L_K = logsumexp(log_w, 0) - log K")
    if torch.allclose(out.double(), log_w.mean(0), atol=1e-8):
        checks.fail("L_K is the ELBO, not the importance-weighted bound", "log of the mean of the weights",
                    "the mean of the log weights", "average the weights w_k = exp(log_w_k), then take the log")
    checks.check_close("L_K", out, expected, atol=1e-8, hint="reduce over dim 0 (the K samples), one bound per image")

    one = iwae_bound(log_w[:1].clone())
    checks.check_close("L_1 (a single sample)", one, log_w[0], atol=1e-8, hint="with K = 1 the bound is log w itself")

    # log weights of a real image are around -100 to -1000: exp() of them is 0 in float32 and float64
    far = log_w - 700.0
    out_far = iwae_bound(far.clone())
    if not isinstance(out_far, torch.Tensor) or out_far.shape != (b,) or not torch.isfinite(out_far).all():
        checks.fail("L_K is not finite for log weights near -790", "finite values near -790",
                    "NaN, inf or a wrong shape",
                    "exp(-790) underflows to 0: subtract the maximum before exponentiating (torch.logsumexp does it)")
    checks.check_close("L_K for log weights near -790", out_far, expected - 700.0, atol=1e-8,
                       hint="use torch.logsumexp over the K axis")
