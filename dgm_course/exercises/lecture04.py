"""Checks for lecture 04 (latent variable models): the E-step, the M-step, the importance-sampling estimate of
log p(x), the ELBO of a Gaussian q in closed form and a mean-field coordinate update.

Every check builds its own random problem from a fixed seed and computes the reference independently of the
lecture (SciPy for Gaussian densities, closed forms for the linear-Gaussian model, autograd for stationarity).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import special, stats

from .. import checks

DOUBLE = torch.float64
#: (atol, rtol) for answers computed in float32 or float64: every wrong answer the checks target is far outside
F32 = checks.tolerance(torch.float32)


def _unchanged(function: str, originals: dict[str, torch.Tensor], passed: dict[str, torch.Tensor]) -> None:
    """Fail if the function modified one of the tensors it was given (in place)."""
    for name, original in originals.items():
        if not torch.equal(original, passed[name]):
            checks.fail(f"{function} changed its argument {name} in place", f"{name} left as it was given",
                        f"{name} modified", "compute new tensors (x - mu, not x -= mu); the caller still needs its inputs")


# ----------------------------------------------------------------------------------------------------------
# Gaussian mixtures: shared helpers
# ----------------------------------------------------------------------------------------------------------

def _random_gmm(k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random mixture: weights (K,), means (K, D) and covariances (K, D, D), all float64."""
    g = torch.Generator().manual_seed(seed)
    pi = torch.softmax(torch.randn(k, generator=g, dtype=DOUBLE), 0)
    mu = 3.0 * torch.randn(k, d, generator=g, dtype=DOUBLE)
    a = torch.randn(k, d, d, generator=g, dtype=DOUBLE)
    sigma = a @ a.transpose(1, 2) / d + 0.3 * torch.eye(d, dtype=DOUBLE)
    return pi, mu, sigma


def _log_gauss(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """(N, K) log N(x_n; mu_k, Sigma_k), computed with SciPy so that it shares no code with the lecture."""
    return np.stack([stats.multivariate_normal(m, s).logpdf(x) for m, s in zip(mu, sigma, strict=True)], 1)


def _bayes(x: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Posterior p(z = k | x_n) by Bayes' rule in log space: (N, K)."""
    log_joint = np.log(pi.numpy())[None] + _log_gauss(x.numpy(), mu.numpy(), sigma.numpy())
    return torch.from_numpy(np.exp(log_joint - special.logsumexp(log_joint, 1, keepdims=True)))


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the E-step
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_e_step", "Exercise 1: the E-step")
def check_e_step(e_step: Callable) -> None:
    """Exercise 1: `e_step(x, pi, mu, Sigma)` returns the responsibilities r[n, k] = p(z = k | x_n), (N, K).

    Inputs are float64 (as in the lecture); an answer computed in float32 is held to float32 tolerances."""
    pi, mu, sigma = _random_gmm(4, 2, seed=1)
    g = torch.Generator().manual_seed(2)
    x = mu[torch.randint(0, 4, (200,), generator=g)] + 1.5 * torch.randn(200, 2, generator=g, dtype=DOUBLE)
    atol, rtol = F32

    given = {"x": x.clone(), "pi": pi.clone(), "mu": mu.clone(), "Sigma": sigma.clone()}
    r = checks.plain("responsibilities r", e_step(*given.values()))
    _unchanged("e_step", {"x": x, "pi": pi, "mu": mu, "Sigma": sigma}, given)
    checks.check_tensor("responsibilities r", r, shape=(200, 4))
    checks.check_sum_to_one("responsibilities r (each row, over the K components)", r, dim=1, atol=atol)
    checks.check_close("responsibilities r", r, _bayes(x, pi, mu, sigma), atol=atol, rtol=rtol,
                       hint="r[n, k] = pi_k N(x_n; mu_k, Sigma_k) / sum_j pi_j N(x_n; mu_j, Sigma_j); "
                            "did you include the mixing weights pi_k, and pass Sigma as a covariance?")

    # Points far from every component: each density is about exp(-1000), which is 0 in float64.
    far = mu.mean(0) + torch.tensor([[45.0, -40.0], [-50.0, 35.0], [0.0, 60.0]], dtype=DOUBLE)
    r_far = checks.plain("responsibilities of far-away points", e_step(far.clone(), pi.clone(), mu.clone(), sigma.clone()))
    if r_far.shape != (3, 4) or not torch.isfinite(r_far).all():
        checks.fail("responsibilities of points far from every component are not finite numbers",
                    "finite responsibilities that sum to 1", "NaN, inf or a wrong shape",
                    "each N(x; mu_k, Sigma_k) underflows to 0 there, so p / sum(p) is 0/0: normalize in log "
                    "space, log r = log_joint - logsumexp(log_joint) (or torch.softmax over k)")
    # log p(x, k) is about -1000 there: float32 rounds it by about 1e-4, which moves r by as much
    checks.check_close("responsibilities of far-away points", r_far, _bayes(far, pi, mu, sigma), atol=1e-3, rtol=0,
                       hint="compute log pi_k + log N(x_n; mu_k, Sigma_k) and normalize it in log space")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the M-step
# ----------------------------------------------------------------------------------------------------------

def _q_function(x: torch.Tensor, r: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Expected complete-data log-likelihood Q = sum_n sum_k r_nk [log pi_k + log N(x_n; mu_k, Sigma_k)]."""
    diff = x[:, None, :] - mu[None]                                                  # (N, K, D)
    maha = torch.einsum("nki,nki->nk", diff, torch.linalg.solve(sigma[None], diff[..., None])[..., 0])
    log_gauss = -0.5 * (maha + torch.logdet(sigma)[None] + x.shape[1] * math.log(2 * math.pi))
    return (r * (pi.log()[None] + log_gauss)).sum()


def _as_params(out, k: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(out, tuple | list) or len(out) != 3:
        checks.fail("m_step returns the wrong thing", "a tuple (pi, mu, Sigma)", f"{type(out).__name__}")
    pi, mu, sigma = (checks.plain(name, t) for name, t in zip(("pi", "mu", "Sigma"), out, strict=True))
    checks.check_tensor("pi", pi, shape=(k,))
    checks.check_tensor("mu", mu, shape=(k, d))
    checks.check_tensor("Sigma", sigma, shape=(k, d, d))
    return tuple(t.cpu().double() for t in (pi, mu, sigma))


@checks.exercise("ex2_m_step", "Exercise 2: the M-step")
def check_m_step(m_step: Callable) -> None:
    """Exercise 2: `m_step(x, r)` returns (pi, mu, Sigma) maximizing Q = sum r_nk log p(x_n, z_n = k)."""
    n, k, d = 300, 3, 2
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, d, generator=g, dtype=DOUBLE) * torch.tensor([2.0, 0.7], dtype=DOUBLE)
    x = x + torch.tensor([1.0, -2.0], dtype=DOUBLE)
    r = torch.softmax(1.5 * torch.randn(n, k, generator=g, dtype=DOUBLE) + x[:, :1], 1)  # soft, uneven

    given = {"x": x.clone(), "r": r.clone()}
    pi, mu, sigma = _as_params(m_step(*given.values()), k, d)
    _unchanged("m_step", {"x": x, "r": r}, given)
    atol, rtol = F32
    checks.check_sum_to_one("mixing weights pi", pi, dim=0, atol=atol)
    if (pi <= 0).any():
        checks.fail("mixing weights are not positive", "pi_k > 0", f"minimum {float(pi.min()):.4g}")
    if not torch.allclose(sigma, sigma.transpose(1, 2), atol=atol, rtol=rtol):
        checks.fail("covariances are not symmetric", "Sigma_k equal to its transpose", "an asymmetric matrix",
                    "an outer product (x - mu)(x - mu)^T needs the column vector first")
    if (torch.linalg.eigvalsh(sigma) <= 0).any():
        checks.fail("covariances are not positive definite", "all eigenvalues > 0",
                    f"smallest eigenvalue {float(torch.linalg.eigvalsh(sigma).min()):.4g}")

    # The defining property: Q is stationary at the returned parameters, so no small move of pi (along the
    # simplex), mu or Sigma changes it to first order. Tested with the exact gradient of Q.
    hints = {"pi": "pi_k = N_k / N with N_k = sum_n r_nk",
             "mu": "mu_k = sum_n r_nk x_n / N_k: a responsibility-weighted average of the points",
             "Sigma": "Sigma_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T / N_k: weighted by r_nk, centred at the "
                      "new mean mu_k, divided by N_k"}
    params = [t.clone().requires_grad_(True) for t in (pi, mu, sigma)]
    q0 = _q_function(x, r, *params)
    grads = dict(zip(("pi", "mu", "Sigma"), torch.autograd.grad(q0, params), strict=True))
    grads["pi"] = grads["pi"] - grads["pi"].mean()  # only moves that keep sum(pi) = 1
    for name, grad in grads.items():
        size = float(grad.abs().max())
        if size > 1e-4 * n:  # float32 parameters leave gradients of about 1e-5 * n
            checks.fail(f"the returned {name} does not maximize the expected complete-data log-likelihood Q",
                        f"Q = {float(q0.detach()):.6f} cannot be increased by a small change of {name} (zero gradient)",
                        f"a gradient of size {size:.3g}: moving {name} a little increases Q", hints[name])

    nk = r.sum(0)
    mu_ref = r.T @ x / nk[:, None]
    diff = x[:, None, :] - mu_ref[None]                                             # (N, K, D)
    sigma_ref = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None]
    checks.check_close("pi", pi, nk / n, atol=atol, rtol=rtol, hint=hints["pi"])
    checks.check_close("mu", mu, mu_ref, atol=atol, rtol=rtol, hint=hints["mu"])
    checks.check_close("Sigma", sigma, sigma_ref, atol=atol, rtol=rtol, hint=hints["Sigma"])


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: importance sampling of log p(x) on a linear-Gaussian model
# ----------------------------------------------------------------------------------------------------------

class _LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D): p(x) and p(z | x) are Gaussians known in closed form."""

    def __init__(self, d: int, dim_x: int, s: float, seed: int, scale: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        self.w = scale * torch.randn(dim_x, d, generator=g, dtype=DOUBLE)
        self.b = torch.randn(dim_x, generator=g, dtype=DOUBLE)
        self.s = s

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x, z) for x (N, D) and z (..., N, d): (..., N)."""
        log_prior = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        resid = x - z @ self.w.T - self.b
        log_lik = -0.5 * (resid**2).sum(-1) / self.s**2 - x.shape[-1] * (math.log(self.s) + 0.5 * math.log(2 * math.pi))
        return log_prior + log_lik

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log N(x; b, W W^T + s^2 I), (N,), through the low-rank (Woodbury) form: cheap for D = 2000."""
        dim_x, d = self.w.shape
        inner = self.w.T @ self.w + self.s**2 * torch.eye(d, dtype=DOUBLE)          # (d, d)
        resid = x - self.b                                                          # (N, D)
        proj = resid @ self.w                                                       # (N, d)
        maha = ((resid**2).sum(-1) - (proj * torch.linalg.solve(inner, proj.T).T).sum(-1)) / self.s**2
        log_det = (dim_x - d) * math.log(self.s**2) + torch.logdet(inner)
        return -0.5 * (maha + log_det + dim_x * math.log(2 * math.pi))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (N, d) and covariance (d, d) of p(z | x)."""
        d = self.w.shape[1]
        cov = torch.linalg.inv(torch.eye(d, dtype=DOUBLE) + self.w.T @ self.w / self.s**2)
        return (x - self.b) @ self.w @ cov / self.s**2, cov

    def sample_x(self, n: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.w.shape[1], generator=g, dtype=DOUBLE)
        return z @ self.w.T + self.b + self.s * torch.randn(n, len(self.b), generator=g, dtype=DOUBLE)


def _proposal(model: _LinearGaussian, x: torch.Tensor, widen: float, shift: float) -> torch.distributions.Normal:
    mean, cov = model.posterior(x)
    std = cov.diagonal().sqrt().expand_as(mean)
    return torch.distributions.Normal(mean + shift * std, widen * std)


def _run_is(importance_log_px: Callable, model: _LinearGaussian, q, x: torch.Tensor, k: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):  # a fixed seed here, without touching the notebook's random stream
        torch.manual_seed(0)
        est = importance_log_px(model.log_joint, q, x.clone(), k)
    est = checks.plain("the estimate of log p(x)", est)
    if est.shape != (len(x),):
        checks.fail("the estimate has the wrong shape", f"one log p(x) per data point: ({len(x)},)",
                    f"{tuple(est.shape)}", "reduce over the K samples (dim 0) only; sum log q(z) over the latent dimensions")
    return est.cpu().double()


@checks.exercise("ex3_importance_log_px", "Exercise 3: importance sampling of log p(x)")
def check_importance_log_px(importance_log_px: Callable) -> None:
    """Exercise 3: `importance_log_px(log_joint, q, x, K)` estimates log p(x) = log E_q[p(x, z) / q(z)], (N,)."""
    model = _LinearGaussian(d=2, dim_x=5, s=0.5, seed=4)
    x = model.sample_x(4, seed=5)
    exact = model.log_px(x)

    # 1. With q = p(z|x) every weight equals p(x). Orthogonal columns of W make the posterior covariance
    #    diagonal, so a factorized Normal can be the exact posterior.
    ortho = _LinearGaussian(d=2, dim_x=5, s=0.5, seed=4)
    ortho.w = torch.linalg.qr(ortho.w)[0] * torch.tensor([2.0, 1.0], dtype=DOUBLE)
    x_o = ortho.sample_x(4, seed=6)
    est = _run_is(importance_log_px, ortho, _proposal(ortho, x_o, 1.0, 0.0), x_o, 7)
    checks.check_close("log p(x) with the exact posterior as proposal", est, ortho.log_px(x_o),
                       atol=1e-5, hint="with q = p(z|x) every weight p(x, z) / q(z) equals p(x), whatever z: check "
                       "log w = log p(x, z) - log q(z) (log q summed over the latent dimensions) and the 1/K")

    # 2. A wider, shifted proposal and many samples: close to log p(x), not a lower bound far below it.
    est = _run_is(importance_log_px, model, _proposal(model, x, 1.5, 0.3), x, 4000)
    err = est - exact
    if not torch.isfinite(est).all() or err.abs().max() > 0.05:
        low = bool((err < -0.05).all())
        checks.fail("the importance-sampling estimate is far from the exact log p(x) (K = 4000)",
                    f"within 0.05 nats of {exact.numpy().round(3).tolist()}",
                    f"{est.numpy().round(3).tolist()}",
                    "the log of the MEAN of the weights, not the mean of the log weights (that is the ELBO, "
                    "which sits below log p(x) by KL(q || p(z|x)))" if low else
                    "log p(x) ~ log (1/K) sum_k p(x, z_k) / q(z_k) with z_k ~ q")

    # 3. Many observed dimensions: log p(x) is about -2800, exp of it is 0 even in float64.
    big = _LinearGaussian(d=2, dim_x=2000, s=1.0, seed=7)
    x_big = big.sample_x(3, seed=8)
    exact_big = big.log_px(x_big)
    est = _run_is(importance_log_px, big, _proposal(big, x_big, 1.2, 0.0), x_big, 500)
    if not torch.isfinite(est).all():
        checks.fail(f"the estimate is not finite when log p(x) is large and negative (about {float(exact_big[0]):.0f})",
                    "finite estimates", f"{est.numpy().tolist()}",
                    "exp(log w) underflows to 0: average the weights in log space with torch.logsumexp(log_w, 0) "
                    "- log K")
    checks.check_close("log p(x) with 2000 observed dimensions", est, exact_big, atol=0.05, rtol=0,
                       hint="average the weights in log space: torch.logsumexp(log_w, 0) - log K")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the ELBO of a Gaussian q on the linear-Gaussian model, in closed form
# ----------------------------------------------------------------------------------------------------------

class _Model:
    """What the lecture's LinearGaussian offers the exercise: W (D, d), b (D,), sigma (a float)."""

    def __init__(self, lg: _LinearGaussian):
        self.W, self.b, self.sigma = lg.w.clone(), lg.b.clone(), lg.s


def _kl_full(m_q, s_q, m_p, s_p):
    """KL(N(m_q, S_q) || N(m_p, S_p)) with full covariances, float64."""
    prec = torch.linalg.inv(s_p)
    dm = m_p - m_q
    return 0.5 * ((prec @ s_q).trace() + dm @ prec @ dm - len(m_q) + torch.logdet(s_p) - torch.logdet(s_q))


def _as_number(out, what: str) -> torch.Tensor:
    value = checks.plain(what, out)
    return checks.check_scalar(what, value, hint="the ELBO of one data point under one q is one number").double()


@checks.exercise("ex4_elbo_gaussian", "Exercise 4: the ELBO in closed form")
def check_elbo_gaussian(elbo_gaussian: Callable) -> None:
    """Exercise 4: `elbo_gaussian(model, x, m_q, S_q)` is E_q[log p(x, z)] + H(q) for q = N(m_q, S_q), one number.

    The defining property: ELBO(q) + KL(q || p(z|x)) = log p(x) for every q, so the ELBO equals log p(x) at the
    posterior. Tested on random full-covariance q, with p(x) and p(z|x) computed here in closed form."""
    lg = _LinearGaussian(d=3, dim_x=5, s=0.6, seed=21)
    model = _Model(lg)
    x = lg.sample_x(1, seed=22)                                                   # (1, D)
    log_px = float(lg.log_px(x)[0])
    m_post, s_post = lg.posterior(x)
    m_post = m_post[0]
    atol, rtol = checks.tolerance(torch.float32, scale=10)
    tol = atol + rtol * abs(log_px)

    def call(m_q, s_q):
        given = {"x": x[0].clone(), "m_q": m_q.clone(), "S_q": s_q.clone()}
        out = _as_number(elbo_gaussian(model, *given.values()), "elbo_gaussian(model, x, m_q, S_q)")
        _unchanged("elbo_gaussian", {"x": x[0], "m_q": m_q, "S_q": s_q}, given)
        return float(out)

    full_hint = "S_q is a full covariance matrix: use its trace and its log-determinant, not only its diagonal"

    def only_diagonal(found, m_q, s_q):                  # what an answer that keeps only diag(S_q) would give
        return abs(found - (log_px - float(_kl_full(m_q, torch.diag(s_q.diagonal()), m_post, s_post)))) < tol

    at_posterior = call(m_post, s_post)
    if abs(at_posterior - log_px) > tol:
        checks.fail("at the posterior q = p(z|x) the ELBO is not log p(x)",
                    f"ELBO = log p(x) = {log_px:.6f} (the bound is tight there)", f"{at_posterior:.6f}",
                    full_hint if only_diagonal(at_posterior, m_post, s_post) else
                    "check each of the three terms: E_q[log p(z)], E_q[log p(x|z)] (with its trace term "
                    "tr(W S_q W^T) / sigma^2; sigma is a standard deviation) and the entropy 0.5 log det(2 pi e S_q)")

    g = torch.Generator().manual_seed(23)
    for i in range(4):
        a = torch.randn(3, 3, generator=g, dtype=DOUBLE)
        s_q = a @ a.T + 0.1 * torch.eye(3, dtype=DOUBLE)                           # correlated, full covariance
        m_q = m_post + torch.randn(3, generator=g, dtype=DOUBLE)
        found = call(m_q, s_q)
        expected = log_px - float(_kl_full(m_q, s_q, m_post, s_post))
        if found > log_px + tol:
            checks.fail(f"the ELBO of q number {i} is above log p(x)", f"<= log p(x) = {log_px:.6f}",
                        f"{found:.6f}", "the ELBO is a lower bound for every q: check the signs of the terms")
        if abs(found - expected) > tol:
            hint = (full_hint if only_diagonal(found, m_q, s_q) else
                    "ELBO(q) + KL(q || p(z|x)) must equal log p(x): E_q[log p(z)] = -(d log 2 pi + |m_q|^2 + "
                    "tr S_q)/2, and the other two terms as in the statement")
            checks.fail(f"the ELBO of a random q (number {i}) is wrong", f"log p(x) - KL(q || p(z|x)) = {expected:.6f}",
                        f"{found:.6f}", hint)


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: a mean-field coordinate update for a Gaussian posterior
# ----------------------------------------------------------------------------------------------------------

def _mf_elbo(m: torch.Tensor, v: torch.Tensor, lam: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """ELBO (up to a constant) of q = prod_j N(m_j, v_j) for log p(x, z) = -z^T Lam z / 2 + eta^T z + c."""
    quad = m @ lam @ m + (lam.diagonal() * v).sum()
    return -0.5 * quad + eta @ m + 0.5 * torch.log(v).sum()


def _as_pair(out, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail("mean_field_update returns the wrong thing", "a pair (mean_j, var_j)", type(out).__name__)
    vals = []
    for name, value in zip(("mean_j", "var_j"), out, strict=True):
        t = checks.plain(name, value).cpu().double()
        if t.numel() != 1 or not torch.isfinite(t).all():
            checks.fail(f"{name} for coordinate j = {j} is not a finite number", "one finite number",
                        f"{'tensor of shape ' + str(tuple(t.shape)) if t.numel() != 1 else t.item()}")
        vals.append(t.reshape(()))
    return vals[0], vals[1]


@checks.exercise("ex5_mean_field_update", "Exercise 5: a mean-field coordinate update")
def check_mean_field_update(mean_field_update: Callable) -> None:
    """Exercise 5: `mean_field_update(j, m, Lambda, eta)` returns the optimal (mean, variance) of q_j.

    The model: log p(x, z) = -1/2 z^T Lambda z + eta^T z + const (a Gaussian posterior with precision Lambda);
    q(z) = prod_i N(z_i; m_i, v_i). The optimal q_j given the other factors maximizes the ELBO over (m_j, v_j).
    """
    d = 4
    g = torch.Generator().manual_seed(9)
    a = torch.randn(d, d, generator=g, dtype=DOUBLE)
    lam = a @ a.T + 0.5 * torch.eye(d, dtype=DOUBLE)          # strongly correlated posterior
    eta = 2.0 * torch.randn(d, generator=g, dtype=DOUBLE)
    m = torch.randn(d, generator=g, dtype=DOUBLE)
    v = torch.rand(d, generator=g, dtype=DOUBLE) + 0.2
    for j in range(d):
        given = {"m": m.clone(), "Lambda": lam.clone(), "eta": eta.clone()}
        mean_j, var_j = _as_pair(mean_field_update(j, *given.values()), j)
        _unchanged("mean_field_update", {"m": m, "Lambda": lam, "eta": eta}, given)
        if var_j <= 0:
            checks.fail(f"the variance of q_{j} is not positive", "var_j > 0", f"{float(var_j):.4g}")
        m_new, v_new = m.clone(), v.clone()
        m_new[j], v_new[j] = mean_j, var_j
        m_new.requires_grad_(True)
        v_new.requires_grad_(True)
        elbo = _mf_elbo(m_new, v_new, lam, eta)
        grad_m, grad_v = torch.autograd.grad(elbo, (m_new, v_new))
        scale = float(lam[j, j])
        if abs(float(grad_m[j])) > 1e-5 * scale * (1 + abs(float(mean_j))):  # float32 answers: ~1e-7
            checks.fail(f"the mean of q_{j} does not maximize the ELBO with the other factors fixed",
                        f"dELBO/dm_{j} = 0", f"dELBO/dm_{j} = {float(grad_m[j]):.4g}",
                        "E_{q_-j}[log p(x, z)] is quadratic in z_j; the other z_i (i != j) enter only through "
                        "their means m_i, and the old value of m_j must not appear")
        if abs(float(grad_v[j])) * float(var_j) > 1e-5:
            checks.fail(f"the variance of q_{j} does not maximize the ELBO with the other factors fixed",
                        f"dELBO/dv_{j} = 0", f"dELBO/dv_{j} = {float(grad_v[j]):.4g}",
                        "the variance is one over the coefficient of -z_j^2 / 2 in log p(x, z), a diagonal entry "
                        "of the precision, not of the posterior covariance")
        before = float(_mf_elbo(m, v, lam, eta))
        after = float(elbo.detach())
        if after < before - 1e-6 * (1 + abs(before)):
            checks.fail(f"the update of q_{j} lowered the ELBO", f">= {before:.6f}", f"{after:.6f}")
        m, v = m_new.detach(), v_new.detach()  # the next coordinate starts from the updated factors
