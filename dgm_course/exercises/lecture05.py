"""Checks for lecture 05 (variational autoencoders): reparameterized sampling, the KL divergence between diagonal
Gaussians, the ELBO of a Bernoulli VAE, the importance-weighted (IWAE) bound, and the VAE's whole loss (the
negative ELBO of a batch, through encoder, reparameterized sample and decoder).

Every check builds its own random problem from a fixed seed, computes the reference in float64 with its own
formula, and tests the defining property (the distribution of the samples and the path of the gradient for the
reparameterization; closed forms for the KL and the ELBO; log-mean-exp for the IWAE bound), including the
extreme inputs where a numerically naive implementation breaks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from .. import checks

DOUBLE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: reparameterized sampling
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_reparameterize", "Exercise 1: reparameterized sampling")
def check_reparameterize(reparameterize: Callable) -> None:
    """Exercise 1: `reparameterize(mu, logvar)` draws z ~ N(mu, diag(exp(logvar))) as a differentiable function
    of mu and logvar, one independent draw per entry, shape (B, D)."""
    n, d = 10000, 3
    g = torch.Generator().manual_seed(5)
    mu0 = 2.0 * torch.randn(n, d, generator=g)
    logvar0 = 1.5 * torch.randn(n, d, generator=g)   # standard deviations from about 0.1 to 10
    mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
    with torch.random.fork_rng(devices=[]):            # a fixed draw that leaves the notebook's RNG untouched
        torch.manual_seed(0)
        z = checks.plain("z", reparameterize(mu, logvar), differentiable=True)
        z_a = checks.plain("z", reparameterize(mu0[:100].clone(), logvar0[:100].clone()))
        z_b = checks.plain("z", reparameterize(mu0[:100].clone(), logvar0[:100].clone()))
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
    # the whole distribution, not two moments: a Kolmogorov-Smirnov test of all n * d values against N(0, 1)
    p_value = stats.kstest(eps.reshape(-1).numpy(), "norm").pvalue
    if p_value < 1e-4:
        checks.fail(f"(z - mu) / sigma is not normally distributed (Kolmogorov-Smirnov p = {p_value:.2g})",
                    "eps ~ N(0, 1): a normal distribution, not just mean 0 and variance 1",
                    "a distribution of another shape", "draw eps with torch.randn_like(mu), not torch.rand")
    if torch.equal(z_a, z_b):
        checks.fail("two calls give the same z", "a fresh eps at every call", "the same sample twice",
                    "do not seed the random generator inside the function: draw eps with torch.randn_like(mu)")

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


def _check_gradients(function: str, call: Callable, inputs: list, names: tuple, reference: Callable) -> None:
    """The answer must be differentiable (the lecture trains through it): its gradient with respect to each input
    equals the reference's (float64 inputs; float32 tolerance)."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    out = checks.plain(f"{function}'s output", call(*leaves), differentiable=True)
    if not out.requires_grad:
        checks.fail(f"{function}'s output carries no gradient", "a result connected to its inputs by autograd",
                    "a tensor without autograd history",
                    "do not use .item(), .detach(), numpy or torch.no_grad(): the lecture trains through this function")
    grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True)
    ref_leaves = [t.detach().clone().requires_grad_() for t in inputs]
    ref_grads = torch.autograd.grad(reference(*ref_leaves).sum(), ref_leaves)
    atol, rtol = checks.tolerance(torch.float32, scale=10)
    for name, grad, ref in zip(names, grads, ref_grads, strict=True):
        if grad is None or not torch.allclose(grad.double(), ref, atol=atol, rtol=rtol):
            checks.fail(f"the gradient of {function} with respect to {name} is wrong",
                        "the gradient of the formula in the statement",
                        "no gradient" if grad is None else "a different gradient",
                        f"is {name} used through differentiable operations (no .detach(), no in-place change)?")


def _not_reversed(found, expected, swapped):
    if torch.allclose(found.double(), swapped, atol=1e-4) and not torch.allclose(found.double(), expected, atol=1e-4):
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
    kl_std = checks.plain("KL(q || N(0, I))", gaussian_kl(mu_q.clone(), logvar_q.clone(), zero.clone(), zero.clone()))
    checks.check_tensor("KL(q || N(0, I))", kl_std, shape=(b,))
    atol, rtol = checks.tolerance(torch.float32)     # float32 work is correct too; every wrong answer is far off
    _not_reversed(kl_std, _kl_reference(mu_q, logvar_q, zero, zero), _kl_reference(zero, zero, mu_q, logvar_q))
    checks.check_close("KL(q || N(0, I))", kl_std, _kl_reference(mu_q, logvar_q, zero, zero), atol=atol, rtol=rtol,
                       hint="KL(q || N(0, I)) = 0.5 * sum_d (mu^2 + sigma^2 - 1 - log sigma^2): check the factor "
                            "1/2, the sign of each term, and sum (not average) over the D dimensions")
    same = checks.plain("KL(q || q)", gaussian_kl(mu_q.clone(), logvar_q.clone(), mu_q.clone(), logvar_q.clone()))
    checks.check_close("KL(q || q)", same, torch.zeros(b, dtype=DOUBLE), atol=10 * atol, rtol=0,
                       hint="the divergence of a distribution from itself is 0: are mu_p and logvar_p used?")

    kl = checks.plain("KL(q || p)", gaussian_kl(*args))
    checks.check_tensor("KL(q || p)", kl, shape=(b,))
    expected = _kl_reference(mu_q, logvar_q, mu_p, logvar_p)
    _not_reversed(kl, expected, _kl_reference(mu_p, logvar_p, mu_q, logvar_q))
    checks.check_close("KL(q || p)", kl, expected, atol=atol, rtol=rtol,
                       hint="0.5 * sum_d [log(sigma_p^2 / sigma_q^2) + (sigma_q^2 + (mu_q - mu_p)^2) / sigma_p^2 - 1]")
    if (kl < -atol).any():
        checks.fail("the KL is negative", "KL >= 0 always", f"minimum {float(kl.min()):.3g}")

    # the statement's shapes (..., D) -> (...): a leading axis of samples, as the lecture uses
    lead = [t.reshape(4, b // 4, d) for t in args]
    kl_3d = checks.plain("KL(q || p) of (4, B/4, D) inputs", gaussian_kl(*(t.clone() for t in lead)))
    checks.check_tensor("KL(q || p) of (4, B/4, D) inputs", kl_3d, shape=(4, b // 4))
    checks.check_close("KL(q || p) of (4, B/4, D) inputs", kl_3d, expected.reshape(4, b // 4), atol=atol, rtol=rtol,
                       hint="sum over the last axis (dim=-1), whatever the leading axes are")
    _check_gradients("gaussian_kl", lambda *t: gaussian_kl(*t), [t.clone() for t in args],
                     ("mu_q", "logvar_q", "mu_p", "logvar_p"), lambda *t: _kl_reference(*t))


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

    out = checks.plain("the ELBO", elbo(x.clone(), logits.clone(), mu.clone(), logvar.clone()))
    checks.check_tensor("the ELBO", out, shape=(b,))
    atol, rtol = checks.tolerance(torch.float32)     # float32 work is correct too; every wrong answer is far off
    expected = _elbo_reference(x, logits, mu, logvar)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    if torch.allclose(out.double(), expected + 2 * kl, atol=atol, rtol=rtol):
        checks.fail("the KL term has the wrong sign", "ELBO = log p(x|z) - KL", "log p(x|z) + KL",
                    "the KL is a penalty: subtract it")
    if torch.allclose(out.double(), expected + kl, atol=atol, rtol=rtol):
        checks.fail("the KL term is missing", "ELBO = log p(x|z) - KL", "log p(x|z) alone")
    if (out > 0).all():
        checks.fail("the ELBO has the wrong sign", "a negative number per image (a log-probability minus a KL)",
                    f"positive values, e.g. {float(out[0]):.4g}",
                    "binary_cross_entropy is -log p(x|z): the ELBO uses its negative")
    checks.check_close("the ELBO", out, expected, atol=atol, rtol=rtol,
                       hint="sum the Bernoulli log-likelihood over the 784 pixels (not the mean), and use "
                            "KL = 0.5 * sum_d (mu^2 + exp(logvar) - 1 - logvar)")

    # confident logits (|logit| = 40): sigmoid rounds to exactly 0 or 1, so log(sigmoid) breaks
    x_hard = x[:2].clone()
    logits_hard = 40.0 * (2 * x_hard - 1)
    logits_hard[:, :5] *= -1                                   # five confidently wrong pixels per image
    out_hard = checks.plain("the ELBO for confident logits",
                            elbo(x_hard.clone(), logits_hard.clone(), mu[:2].clone(), logvar[:2].clone()))
    if out_hard.shape != (2,) or not torch.isfinite(out_hard).all():
        checks.fail("the ELBO is not finite for confident logits (|logit| = 40)", "finite values near -200",
                    "NaN, inf or a wrong shape",
                    "log(sigmoid(l)) and log(1 - sigmoid(l)) underflow; use the logits directly: "
                    "x * l - softplus(l), or F.binary_cross_entropy_with_logits")
    checks.check_close("the ELBO for confident logits", out_hard, _elbo_reference(x_hard, logits_hard, mu[:2], logvar[:2]),
                       atol=atol, rtol=rtol,
                       hint="work with the logits (binary_cross_entropy_with_logits), not the probabilities")
    _check_gradients("elbo", lambda lg, m, lv: elbo(x.clone(), lg, m, lv), [logits, mu, logvar],
                     ("logits", "mu", "logvar"), lambda lg, m, lv: _elbo_reference(x, lg, m, lv))


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: the importance-weighted bound
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex5_iwae_bound", "Exercise 5: the importance-weighted bound")
def check_iwae_bound(iwae_bound: Callable) -> None:
    """Exercise 5: `iwae_bound(log_w)` maps log weights (K, B) to L_K = log (1/K) sum_k w_k per column, (B,)."""
    g = torch.Generator().manual_seed(13)
    k, b = 50, 8
    log_w = 3.0 * torch.randn(k, b, generator=g, dtype=DOUBLE) - 90.0
    out = checks.plain("L_K", iwae_bound(log_w.clone()))
    checks.check_tensor("L_K", out, shape=(b,))
    atol, rtol = checks.tolerance(torch.float32)     # float32 work is correct too; every wrong answer is far off
    expected = torch.logsumexp(log_w, 0) - math.log(k)
    if torch.allclose(out.double(), expected + math.log(k), atol=atol, rtol=rtol):
        checks.fail("L_K is off by log K", "log of the MEAN of the K weights", "log of their sum",
                    "subtract log K: L_K = logsumexp(log_w, 0) - log K")
    if torch.allclose(out.double(), log_w.mean(0), atol=atol, rtol=rtol):
        checks.fail("L_K is the ELBO, not the importance-weighted bound", "log of the mean of the weights",
                    "the mean of the log weights", "average the weights w_k = exp(log_w_k), then take the log")
    checks.check_close("L_K", out, expected, atol=atol, rtol=rtol,
                       hint="reduce over dim 0 (the K samples), one bound per image")

    one = checks.plain("L_1", iwae_bound(log_w[:1].clone()))
    checks.check_close("L_1 (a single sample)", one, log_w[0], atol=atol, rtol=rtol,
                       hint="with K = 1 the bound is log w itself")

    # log weights of a real image are around -100 to -1000: exp() of them is 0 in float32 and float64
    far = log_w - 700.0
    given = far.clone()
    out_far = checks.plain("L_K for log weights near -790", iwae_bound(given))
    if out_far.shape != (b,) or not torch.isfinite(out_far).all():
        checks.fail("L_K is not finite for log weights near -790", "finite values near -790",
                    "NaN, inf or a wrong shape",
                    "exp(-790) underflows to 0: subtract the maximum before exponentiating (torch.logsumexp does it)")
    checks.check_close("L_K for log weights near -790", out_far, expected - 700.0, atol=atol, rtol=rtol,
                       hint="use torch.logsumexp over the K axis")
    if not torch.equal(given, far):
        checks.fail("iwae_bound changed its argument log_w in place", "log_w left as it was given", "log_w modified",
                    "compute new tensors (log_w - m, not log_w -= m)")
    _check_gradients("iwae_bound", iwae_bound, [log_w], ("log_w",), lambda t: torch.logsumexp(t, 0) - math.log(k))


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the VAE's negative ELBO for a batch (a whole model's loss)
# ----------------------------------------------------------------------------------------------------------

class _LinearEncoder(torch.nn.Module):
    """x (B, D) -> (mu, logvar), each (B, D_z): one linear map."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    def forward(self, x):
        return self.linear(x).chunk(2, dim=-1)


def _linear_decoder(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Linear:
    """z (B, D_z) -> Bernoulli logits (B, D)."""
    dec = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        dec.weight.copy_(weight)
        dec.bias.copy_(bias)
    return dec


def _log_lik_1d(x: torch.Tensor, z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log p(x | z) of the 1-D-latent linear Bernoulli decoder: x (P, D), z (P, G) -> (P, G), float64."""
    logits = z[..., None] * w + b                                                   # (P, G, D)
    return (x[:, None, :] * logits - torch.nn.functional.softplus(logits)).sum(-1)


def _hermite(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of E_{eps ~ N(0, 1)}[f(eps)] ~ sum_i w_i f(t_i) (probabilists' Gauss-Hermite)."""
    t, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.from_numpy(t), torch.from_numpy(w / w.sum())


def _exact_terms(x, mu, logvar, w, b):
    """For a 1-D latent: E_q[log p(x|z)], its variance under q, KL(q || N(0, 1)) and the variances of the
    one-sample gradients with respect to mu and logvar (all (P,), float64, differentiable in mu and logvar)."""
    t, wt = _hermite()
    sigma = (0.5 * logvar).exp()
    z = mu[:, None] + sigma[:, None] * t                                           # (P, G)
    ll = _log_lik_1d(x, z, w, b)                                                   # (P, G)
    # d log p(x|z) / dz = sum_i (x_i - sigmoid(w_i z + b_i)) w_i
    dll = ((x[:, None, :] - torch.sigmoid(z[..., None] * w + b)) * w).sum(-1)     # (P, G)
    mean = lambda f: (f * wt).sum(-1)                                               # noqa: E731
    recon = mean(ll)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar)
    var_ll = mean(ll**2) - recon**2
    var_dmu = mean(dll**2) - mean(dll) ** 2
    g_logvar = 0.5 * dll * (z - mu[:, None])
    var_dlogvar = mean(g_logvar**2) - mean(g_logvar) ** 2
    return recon, var_ll, kl, var_dmu, var_dlogvar


def _exact_log_px(x, w, b):
    """log p(x) = log int N(z; 0, 1) p(x | z) dz by quadrature on a fine grid: (P,)."""
    z = torch.linspace(-12, 12, 8001, dtype=DOUBLE)
    log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi) + math.log(float(z[1] - z[0]))
    return torch.logsumexp(_log_lik_1d(x, z.expand(len(x), -1), w, b) + log_prior, -1)


def _as_loss(out, what: str) -> torch.Tensor:
    out = checks.plain(what, out, differentiable=True)
    return checks.check_scalar(what, out, hint="average over the batch: one number, the mean of -ELBO over images")


def _expected_gradient_fail(name, found, expected, tol, hint):
    checks.fail(f"the gradient of the loss with respect to the {name} is wrong",
                f"{expected:.4f} (exact expectation; the check allows +- {tol:.3f} of Monte Carlo noise)",
                f"{found:.4f}", hint)


@checks.exercise("ex4_negative_elbo", "Exercise 4: the VAE's negative ELBO")
def check_negative_elbo(negative_elbo: Callable) -> None:
    """Exercise 4: `negative_elbo(x, encoder, decoder, beta=1.0)` is the batch mean of
    -(log p(x|z) - beta KL(q(z|x) || N(0, I))) with one reparameterized z ~ q(z|x) per image: a scalar.

    Tested on a tiny model (D = 6 pixels, D_z = 1, linear networks) whose log p(x), ELBO and gradients are
    computed exactly by quadrature, and by training a small VAE for a fixed number of steps."""
    g = torch.Generator().manual_seed(17)
    d_x = 6
    patterns = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 1], [1, 0, 1, 0, 1, 0], [1, 1, 1, 0, 0, 0]],
                            dtype=DOUBLE)                                           # (P, D)
    w_dec = torch.tensor([2.0, 1.5, -2.0, -1.0, 1.0, -1.5], dtype=DOUBLE)          # (D,), z -> logits
    b_dec = 0.3 * torch.randn(d_x, generator=g, dtype=DOUBLE)
    w_enc = 0.5 * torch.randn(2, d_x, generator=g, dtype=DOUBLE)
    b_enc = torch.tensor([0.2, -1.0], dtype=DOUBLE)

    # 1. A decoder that ignores z: the posterior is the prior, and with q = the prior the bound is tight,
    #    -ELBO = -log p(x) exactly, for every sample of z.
    flat = _linear_decoder(torch.zeros(d_x, 1), b_dec.float())
    prior_q = _LinearEncoder(torch.zeros(2, d_x), torch.zeros(2))
    x_all = patterns.float()
    loss = _as_loss(negative_elbo(x_all.clone(), prior_q, flat), "negative_elbo(x, encoder, decoder)")
    log_px = (patterns * b_dec - torch.nn.functional.softplus(b_dec)).sum(-1)      # the decoder ignores z
    checks.check_close("-ELBO at the true posterior (q = p(z|x) = the prior), which must equal -log p(x)",
                       loss, -log_px.mean(), atol=1e-4, rtol=1e-5,
                       hint="with q equal to the posterior the bound is tight: check the sign of log p(x|z) "
                            "(the loss is its negative), that it sums over the D pixels, and that you average "
                            "over the batch")

    # ... also for a confident decoder (logits of +-40, as a trained one has): still finite and exact
    sure = _linear_decoder(torch.zeros(d_x, 1), torch.tensor([40.0, -40.0, 40.0, -40.0, 40.0, -40.0]))
    loss = _as_loss(negative_elbo(x_all.clone(), prior_q, sure), "negative_elbo(x, encoder, decoder) for logits of +-40")
    b_sure = sure.bias.detach().double()
    log_px = (patterns * b_sure - torch.nn.functional.softplus(b_sure)).sum(-1)
    checks.check_close("-ELBO for a decoder with logits of +-40", loss, -log_px.mean(), atol=1e-3, rtol=1e-5,
                       hint="log(sigmoid(l)) and log(1 - sigmoid(l)) round to log 0 for |l| = 40: compute "
                            "log p(x|z) from the logits (binary_cross_entropy_with_logits, or x * l - softplus(l))")

    # 2. A decoder that uses z (the posterior is not Gaussian): the expected bound is the exact ELBO, below log p(x).
    reps = 500
    x_rep = patterns.repeat_interleave(reps, 0)                                     # (P * reps, D)
    enc = _LinearEncoder(w_enc.float(), b_enc.float())
    dec = _linear_decoder(w_dec[:, None].float(), b_dec.float())
    mu, logvar = (t.double() for t in enc(patterns.float()))
    mu, logvar = mu[:, 0].detach(), logvar[:, 0].detach()
    recon, var_ll, kl, _, _ = _exact_terms(patterns, mu, logvar, w_dec, b_dec)
    log_px = _exact_log_px(patterns, w_dec, b_dec)
    se = float((var_ll.mean() / len(x_rep)).sqrt())                                 # of a batch mean
    tol = 5 * se + 1e-3
    loss = float(_as_loss(negative_elbo(x_rep.float(), enc, dec), "negative_elbo(x, encoder, decoder)").detach())
    if -loss > float(log_px.mean()) + tol:
        checks.fail("the bound is above the exact log-likelihood",
                    f"-loss <= mean log p(x) = {float(log_px.mean()):.4f} (computed exactly)", f"-loss = {-loss:.4f}",
                    "the ELBO is a lower bound: subtract the KL (times beta), do not add it")
    first = _as_loss(negative_elbo(x_all.clone(), enc, dec), "negative_elbo(x, encoder, decoder)").detach()
    second = _as_loss(negative_elbo(x_all.clone(), enc, dec), "negative_elbo(x, encoder, decoder)").detach()
    if torch.equal(first, second):
        checks.fail("two calls on the same batch give the same value", "a fresh sample z ~ q(z|x) at every call",
                    f"{float(first):.6f} twice", "decode a sample z = mu + sigma * eps, not mu itself, with a fresh "
                    "eps from torch.randn_like(mu); do not seed the random generator inside the function")
    exact = -float((recon - kl).mean())
    if abs(loss - exact) > tol:
        closer = {"the KL term is missing": -float(recon.mean()), "the KL is added": -float((recon + kl).mean()),
                  "log p(x|z) has the wrong sign": float((recon + kl).mean())}
        name = min(closer, key=lambda key: abs(closer[key] - loss))
        hint = (f"your value is close to what it would be if {name}" if abs(closer[name] - loss) < tol else
                "one reparameterized z ~ q(z|x) per image, log p(x|z) summed over pixels, KL(q || N(0, I)) "
                "summed over latent dimensions, then the mean of -(log p(x|z) - beta KL) over the batch")
        checks.fail("the loss is not the negative ELBO on a model where it is known exactly",
                    f"{exact:.4f} (+- {tol:.3f}: the Monte Carlo error of one sample per image)", f"{loss:.4f}", hint)

    # 3. beta weighs the KL term only
    loss_beta = float(_as_loss(negative_elbo(x_rep.float(), enc, dec, beta=0.25), "negative_elbo(..., beta=0.25)").detach())
    exact_beta = -float((recon - 0.25 * kl).mean())
    if abs(loss_beta - exact_beta) > tol:
        checks.fail("the loss with beta = 0.25 is wrong", f"{exact_beta:.4f} (+- {tol:.3f})", f"{loss_beta:.4f}",
                    "beta multiplies the KL term and nothing else: -(log p(x|z) - beta * KL)")

    # 4. Gradients reach the encoder (through the reparameterized z and the KL) and the decoder
    enc.zero_grad()
    dec.zero_grad()
    loss = _as_loss(negative_elbo(x_rep.float(), enc, dec), "negative_elbo(x, encoder, decoder)")
    if not loss.requires_grad:
        checks.fail("the loss carries no gradient", "a tensor connected to the encoder's and decoder's parameters",
                    "a tensor without autograd history",
                    "do not call .item(), .detach() or torch.no_grad(): the lecture trains through this loss")
    loss.backward()
    missing = [name for name, p in (("encoder", enc.linear.bias), ("decoder", dec.bias)) if p.grad is None or not p.grad.abs().sum() > 0]
    if missing:
        checks.fail(f"no gradient reaches the {missing[0]}", "gradients for both networks' parameters",
                    f"none for the {missing[0]}", "z must be mu + sigma * eps with mu, logvar from encoder(x) "
                    "(not detached), and the logits must come from decoder(z)")
    mu_p, logvar_p = (t.double() for t in enc(patterns.float()))
    mu_p, logvar_p = mu_p[:, 0].detach().requires_grad_(), logvar_p[:, 0].detach().requires_grad_()
    recon_p, _, kl_p, var_dmu, var_dlogvar = _exact_terms(patterns, mu_p, logvar_p, w_dec, b_dec)
    grad_mu, grad_logvar = torch.autograd.grad(-(recon_p - kl_p).mean(), (mu_p, logvar_p))
    # the encoder bias's gradient is the batch mean of the per-image gradients with respect to (mu, logvar)
    found = enc.linear.bias.grad.double()
    for i, (name, exact_grad, var) in enumerate((("encoder's mu output (its bias)", grad_mu, var_dmu),
                                                   ("encoder's logvar output (its bias)", grad_logvar, var_dlogvar))):
        tol_g = 5 * float((var.detach().mean() / len(x_rep)).sqrt()) + 1e-3
        expected = float(exact_grad.sum())
        if abs(float(found[i]) - expected) > tol_g:
            _expected_gradient_fail(name, float(found[i]), expected, tol_g,
                                    "gradients reach mu and logvar through z = mu + exp(0.5 * logvar) * eps (eps drawn "
                                    "without gradient) and through the KL; do not detach mu, logvar or sigma")
    # decoder bias: d(-log p(x|z))/db_i = sigmoid(w_i z + b_i) - x_i, averaged over q and the batch
    t, wt = _hermite()
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * t                              # (P, G)
    resid = torch.sigmoid(z[..., None] * w_dec + b_dec) - patterns[:, None, :]        # (P, G, D)
    mean_resid = (resid * wt[:, None]).sum(1)                                         # (P, D)
    var_resid = (resid**2 * wt[:, None]).sum(1) - mean_resid**2
    expected_dec = mean_resid.mean(0)
    tol_dec = 5 * (var_resid.mean(0) / len(x_rep)).sqrt() + 1e-3
    err = (dec.bias.grad.double() - expected_dec).abs()
    if (err > tol_dec).any():
        i = int((err / tol_dec).argmax())
        _expected_gradient_fail(f"decoder's logit {i} (its bias)", float(dec.bias.grad[i]), float(expected_dec[i]),
                                float(tol_dec[i]), "log p(x|z) must be computed from decoder(z), summed over pixels "
                                "and averaged over the batch")

    # 5. A fixed number of Adam steps on a fixed batch lowers the loss as the reference loss does
    before, after = _train_small_vae(negative_elbo), _reference_training()
    start = before[0]
    if not before[1] < start - 0.5 * (start - after[1]):
        checks.fail("training a small VAE with your loss does not lower its negative ELBO like the reference's",
                    f"after 60 Adam steps about {after[1]:.3f} (from {start:.3f})", f"{before[1]:.3f}",
                    "the loss must be differentiable in both networks' parameters and equal the negative ELBO")


def _reference_negative_elbo(x, encoder, decoder, beta=1.0):
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
    return -(log_px_z - beta * kl).mean()


@functools.lru_cache(maxsize=1)
def _reference_training() -> tuple[float, float]:
    return _train_small_vae(_reference_negative_elbo)


def _train_small_vae(loss_fn: Callable, steps: int = 60) -> tuple[float, float]:
    """Train a 12-pixel, 2-latent VAE on 16 fixed images with Adam: (-ELBO before, -ELBO after), each the mean
    over 200 reference samples per image (so that the comparison does not depend on one draw)."""
    torch.manual_seed(3)
    x = torch.bernoulli(torch.full((16, 12), 0.5))
    x[:8, :6], x[8:, 6:] = 1.0, 0.0                                                    # two kinds of image
    encoder = _MLPEncoder()
    decoder = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12))
    params = list(encoder.parameters()) + list(decoder.parameters())

    def evaluate() -> float:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            return float(_reference_negative_elbo(x.repeat(200, 1), encoder, decoder))

    start = evaluate()
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(steps):
        loss = _as_loss(loss_fn(x.clone(), encoder, decoder), "negative_elbo(x, encoder, decoder)")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return start, evaluate()


class _MLPEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x).chunk(2, dim=-1)
