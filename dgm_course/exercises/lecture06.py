"""Checks for lecture 06 (normalizing flows): the 1-D mixture-CDF flow, the change of variables formula with an
autograd Jacobian, the planar layer with its log-determinant, and the invertibility constraint on u.

Every check builds its own random problem from a fixed seed and computes the reference independently of the
lecture (SciPy for the mixture CDF, closed-form Gaussians, autograd Jacobians through `checks.check_log_det`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import special, stats

from .. import checks

DOUBLE = torch.float64


def _pair(out, what: str, n: int, d: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack and shape-check `(y, log_det)` with y (n,) or (n, d) and log_det (n,)."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"{what} returns the wrong thing", "a pair (output, log_det)", type(out).__name__)
    y, log_det = out
    checks.check_tensor(f"{what}'s output", y, shape=(n,) if d is None else (n, d), finite=False)
    checks.check_tensor(f"{what}'s log_det", log_det, shape=(n,), finite=False)
    return y, log_det


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the mixture-CDF flow in 1-D
# ----------------------------------------------------------------------------------------------------------

def _mixture_reference(x: np.ndarray, logits: np.ndarray, mu: np.ndarray, log_sigma: np.ndarray):
    """SciPy's z = sum_k pi_k Phi((x - mu_k)/sigma_k) and log sum_k pi_k N(x; mu_k, sigma_k)."""
    log_pi = logits - special.logsumexp(logits)
    sigma = np.exp(log_sigma)
    z = (np.exp(log_pi) * stats.norm.cdf(x[:, None], mu, sigma)).sum(1)
    log_det = special.logsumexp(log_pi + stats.norm.logpdf(x[:, None], mu, sigma), axis=1)
    return torch.from_numpy(z), torch.from_numpy(log_det)


@checks.exercise("ex1_cdf_flow", "Exercise 1: the 1-D density of a CDF flow")
def check_cdf_flow(mixture_cdf_forward: Callable) -> None:
    """Exercise 1: `mixture_cdf_forward(x, logits, mu, log_sigma)` returns (F(x), log F'(x)), each (N,)."""
    g = torch.Generator().manual_seed(11)
    k = 4
    logits = 1.5 * torch.randn(k, generator=g, dtype=DOUBLE)       # not normalized: the softmax is the student's
    mu = 2.0 * torch.randn(k, generator=g, dtype=DOUBLE)
    log_sigma = 0.6 * torch.randn(k, generator=g, dtype=DOUBLE) - 0.3
    x = 4.0 * torch.randn(40, generator=g, dtype=DOUBLE)
    params = (logits, mu, log_sigma)

    def forward(v):
        return mixture_cdf_forward(v, *(p.clone() for p in params))

    z, log_det = _pair(forward(x.clone()), "mixture_cdf_forward", len(x))
    if (z < 0).any() or (z > 1).any() or not torch.isfinite(z).all():
        checks.fail("z = F(x) leaves [0, 1]", "values of a CDF, in [0, 1]",
                    f"values from {float(z.min()):.4g} to {float(z.max()):.4g}",
                    "the weights pi_k must be positive and sum to 1: softmax the logits")
    if not torch.isfinite(log_det).all():
        checks.fail("log_det contains NaN or inf", "finite values", "non-finite entries",
                    "compute log F'(x) with torch.logsumexp over the components")
    z_ref, log_det_ref = _mixture_reference(x.numpy(), *(p.numpy() for p in params))
    checks.check_close("z = F(x)", z, z_ref, atol=1e-6,
                       hint="z = sum_k pi_k Phi((x - mu_k) / sigma_k) with pi = softmax(logits), sigma = exp(log_sigma)")

    # The defining property of a 1-D flow's log_det: the log of |dz/dx|, here by autograd.
    def as_2d(v):                                                  # (B, 1) -> ((B, 1), (B,))
        out_z, out_ld = forward(v[:, 0])
        return out_z[:, None], out_ld
    checks.check_log_det(as_2d, x[:12, None], atol=1e-6, name="the mixture-CDF flow")
    checks.check_close("log_det = log F'(x)", log_det, log_det_ref, atol=1e-6,
                       hint="log F'(x) = logsumexp_k [log pi_k + log N(x; mu_k, sigma_k)]")
    # With p_U = 1 on (0, 1), exp(log_det) is the model's density: it must integrate to one.
    lo, hi = float(mu.min() - 12 * log_sigma.exp().max()), float(mu.max() + 12 * log_sigma.exp().max())
    checks.check_normalized(lambda v: forward(v.double())[1], lo, hi, n=20001, atol=1e-3,
                            name="the flow's density exp(log_det)")

    # Far in the tails (15 standard deviations) every component density underflows to 0 in float32.
    far = torch.stack([mu.min() - 15 * log_sigma.exp().max(), mu.max() + 15 * log_sigma.exp().max()])
    z_far, ld_far = _pair(mixture_cdf_forward(far.float(), *(p.float() for p in params)),
                          "mixture_cdf_forward (float32, far in the tails)", 2)
    if not torch.isfinite(ld_far).all():
        checks.fail("log_det is not finite far in the tails (float32, 15 standard deviations out)",
                    "finite log-densities (about -100)", f"{ld_far.tolist()}",
                    "each pi_k N(x; mu_k, sigma_k) underflows to 0 there: add the logs with torch.logsumexp "
                    "instead of taking the log of a sum")
    checks.check_close("log_det far in the tails (float32)", ld_far, _mixture_reference(far.numpy(), *(
        p.numpy() for p in params))[1], atol=2e-3, rtol=1e-5, hint="use torch.logsumexp over the components")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the change of variables formula with an autograd Jacobian
# ----------------------------------------------------------------------------------------------------------

def _std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def _call_cov(fn: Callable, x: torch.Tensor, f_inverse: Callable, what: str) -> torch.Tensor:
    out = fn(x.clone(), f_inverse, _std_normal_log_prob)
    checks.check_tensor(f"log p_X(x) {what}", out, shape=(len(x),), finite=False)
    if not torch.isfinite(out).all():
        checks.fail(f"log p_X(x) {what} contains NaN or inf", "finite values", "non-finite entries",
                    "the determinant can be negative (an orientation flip): take log|det| with "
                    "torch.linalg.slogdet, not torch.logdet or log(det)")
    return out.detach().double()


@checks.exercise("ex2_change_of_variables", "Exercise 2: the change of variables formula")
def check_change_of_variables(log_prob_change_of_variables: Callable) -> None:
    """Exercise 2: `log_prob_change_of_variables(x, f_inverse, log_p_z)` = log p_Z(f^-1(x)) + log|det J|, (N,)."""
    g = torch.Generator().manual_seed(21)

    # 1. A linear map x = A z + b with det A < 0: p_X is N(b, A A^T) in closed form.
    d = 3
    a = torch.randn(d, d, generator=g, dtype=DOUBLE) + 0.5 * torch.eye(d, dtype=DOUBLE)
    if torch.linalg.det(a) > 0:
        a = a[[1, 0, 2]]                                           # swap two rows: det changes sign
    b = torch.randn(d, generator=g, dtype=DOUBLE)
    x = b + torch.randn(7, d, generator=g, dtype=DOUBLE) @ a.T
    expected = torch.distributions.MultivariateNormal(b, a @ a.T).log_prob(x)

    def linear_inverse(v):
        return torch.linalg.solve(a, (v - b).T).T

    found = _call_cov(log_prob_change_of_variables, x, linear_inverse, "for a linear flow")
    checks.check_close("log p_X(x) for x = A z + b (exactly N(b, A A^T))", found, expected, atol=1e-8,
                       hint="log p_Z evaluated at z = f^-1(x) (not at x), plus (not minus) log|det d f^-1/dx|")

    # 2. A nonlinear map: z = f^-1(x) = B2 g(B1 x + c), g(v) = v + 0.5 tanh(v) elementwise (increasing).
    d = 2
    b1 = torch.randn(d, d, generator=g, dtype=DOUBLE) + 1.5 * torch.eye(d, dtype=DOUBLE)
    b2 = torch.randn(d, d, generator=g, dtype=DOUBLE) + 1.5 * torch.eye(d, dtype=DOUBLE)
    c = torch.randn(d, generator=g, dtype=DOUBLE)
    x = 1.5 * torch.randn(9, d, generator=g, dtype=DOUBLE)

    def net_inverse(v):
        s = v @ b1.T + c
        return (s + 0.5 * torch.tanh(s)) @ b2.T

    s = x @ b1.T + c
    log_det = torch.linalg.slogdet(b1)[1] + torch.linalg.slogdet(b2)[1] + torch.log1p(0.5 * (1 - torch.tanh(s) ** 2)).sum(1)
    expected = _std_normal_log_prob(net_inverse(x)) + log_det
    found = _call_cov(log_prob_change_of_variables, x, net_inverse, "for a small nonlinear flow")
    checks.check_close("log p_X(x) for a nonlinear flow", found, expected, atol=1e-8,
                       hint="each point needs the determinant of its own D x D Jacobian d z_n / d x_n")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the planar layer and its log-determinant
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex3_planar_layer", "Exercise 3: a planar layer and its log-determinant")
def check_planar_layer(planar_forward: Callable) -> None:
    """Exercise 3: `planar_forward(z, u, w, b)` returns (z + u tanh(w^T z + b), log|1 + u^T psi(z)|)."""
    g = torch.Generator().manual_seed(31)
    for d, wu_target in [(2, 0.7), (5, -0.8), (3, -4.0)]:
        w = torch.randn(d, generator=g, dtype=DOUBLE)
        u = torch.randn(d, generator=g, dtype=DOUBLE)
        u = u + (wu_target - w @ u) * w / (w @ w)                  # set w^T u, keep the rest random
        b = torch.randn((), generator=g, dtype=DOUBLE)
        z = torch.randn(8, d, generator=g, dtype=DOUBLE) * 1.5
        z[:3] -= ((z[:3] @ w + b) / (w @ w))[:, None] * w          # three points on the hyperplane: h' = 1
        case = f"(D = {d}, w^T u = {wu_target})"

        def forward(v, u=u, w=w, b=b):
            return planar_forward(v, u.clone(), w.clone(), b.clone())

        x, log_det = _pair(forward(z.clone()), f"planar_forward {case}", len(z), d)
        checks.check_close(f"f(z) {case}", x, z + torch.tanh(z @ w + b)[:, None] * u, atol=1e-10,
                           hint="f(z) = z + u h(w^T z + b): the move is along u, its size set by w^T z + b")
        if not torch.isfinite(log_det).all():
            checks.fail(f"log_det {case} contains NaN or inf", "finite values", "non-finite entries",
                        "with w^T u < -1 the layer is not invertible and 1 + u^T psi(z) can be negative; the "
                        "formula is log|det|, so take the absolute value before the log")
        checks.check_log_det(forward, z, atol=1e-8, name=f"the planar layer {case}")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the invertibility constraint
# ----------------------------------------------------------------------------------------------------------

def _u_hat_reference(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    wu = w @ u
    return u + (torch.nn.functional.softplus(wu) - 1 - wu) * w / (w @ w)


@checks.exercise("ex4_constraint", "Exercise 4: the invertibility constraint")
def check_constraint(constrain_u: Callable) -> None:
    """Exercise 4: `constrain_u(u, w)` returns u_hat = u + (m(w^T u) - w^T u) w / |w|^2, m(a) = -1 + softplus(a)."""
    g = torch.Generator().manual_seed(41)
    for d, wu_target, scale in [(2, -6.0, 1.0), (3, -1.2, 0.3), (7, 0.4, 2.0), (4, 25.0, 1.5), (2, -60.0, 0.5)]:
        w = scale * torch.randn(d, generator=g, dtype=DOUBLE)
        u = torch.randn(d, generator=g, dtype=DOUBLE)
        u = u + (wu_target - w @ u) * w / (w @ w)
        case = f"(D = {d}, w^T u = {wu_target:g}, |w| = {float(w.norm()):.2f})"
        u_in, w_in = u.clone().requires_grad_(True), w.clone().requires_grad_(True)
        u_hat = constrain_u(u_in, w_in)
        checks.check_tensor(f"u_hat {case}", u_hat, shape=(d,))
        if not torch.equal(u_in.detach(), u) or not torch.equal(w_in.detach(), w):
            checks.fail(f"constrain_u changed its inputs {case}", "u and w left as they are", "modified in place",
                        "build a new tensor (u + ...) instead of updating u in place: u is a trained parameter")
        wu_hat = float(w @ u_hat.detach())
        if not wu_hat >= -1 - 1e-9:
            checks.fail(f"w^T u_hat < -1 {case}: the planar layer would not be invertible", "w^T u_hat >= -1",
                        f"w^T u_hat = {wu_hat:.4g}",
                        "u_hat = u + (m(w^T u) - w^T u) w / |w|^2 gives w^T u_hat = m(w^T u) > -1; check the sign "
                        "and that you divide by |w|^2 (the squared norm)")
        across = (u_hat.detach() - u) - ((u_hat.detach() - u) @ w / (w @ w)) * w
        if float(across.abs().max()) > 1e-8 * (1 + float(u.abs().max())):
            checks.fail(f"u_hat changes u across w {case}", "u_hat - u parallel to w",
                        f"a component of size {float(across.abs().max()):.3g} orthogonal to w",
                        "only the component of u along w may change: add a multiple of w")
        expected = _u_hat_reference(u, w)
        checks.check_close(f"u_hat {case}", u_hat, expected, atol=1e-9, rtol=1e-9,
                           hint="w^T u_hat must equal m(w^T u) = -1 + softplus(w^T u) (the paper's choice)")
        # The optimizer trains the free u (and w) through u_hat: the gradient must flow through every term.
        probe = torch.randn(d, generator=g, dtype=DOUBLE)
        if not u_hat.requires_grad:
            checks.fail(f"u_hat is not differentiable {case}", "u_hat connected to u and w in the autograd graph",
                        "no gradient", "do not use .item(), .detach() or numpy inside constrain_u")
        grads = torch.autograd.grad(u_hat @ probe, (u_in, w_in), allow_unused=True)
        u_ref, w_ref = u.clone().requires_grad_(True), w.clone().requires_grad_(True)
        grads_ref = torch.autograd.grad(_u_hat_reference(u_ref, w_ref) @ probe, (u_ref, w_ref))
        for name, found, ref in zip(("u", "w"), grads, grads_ref, strict=True):
            if found is None:
                checks.fail(f"no gradient reaches {name} through u_hat {case}", f"d u_hat / d {name} from autograd",
                            "None", "do not use .item(), .detach() or numpy inside constrain_u")
            checks.check_close(f"the gradient through u_hat with respect to {name} {case}", found, ref, atol=1e-8,
                               hint="every term (w^T u, m(w^T u), w / |w|^2) must stay in the autograd graph: no "
                                    ".item() or .detach()")
