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
    """Unpack and shape-check `(y, log_det)` with y (n,) or (n, d) and log_det (n,), as plain tensors (still in
    the autograd graph)."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"{what} returns the wrong thing", "a pair (output, log_det)", type(out).__name__)
    y = checks.plain(f"{what}'s output", out[0], differentiable=True)
    log_det = checks.plain(f"{what}'s log_det", out[1], differentiable=True)
    checks.check_tensor(f"{what}'s output", y, shape=(n,) if d is None else (n, d), finite=False)
    checks.check_tensor(f"{what}'s log_det", log_det, shape=(n,), finite=False)
    return y, log_det


def _atol(found: torch.Tensor, scale: float, *inputs: torch.Tensor) -> float:
    """Absolute tolerance for work done in the coarser of found's and the inputs' dtypes."""
    coarse = torch.float32 if torch.float32 in (found.dtype, *(v.dtype for v in inputs)) else DOUBLE
    return checks.tolerance(coarse, scale)[0]


def _log_det_by_autograd(forward: Callable, v: torch.Tensor) -> torch.Tensor:
    """log|det d forward(v)_n / d v_n| for each row n of v (N, D), from the autograd Jacobian."""
    out = []
    for row in v:
        jac = torch.autograd.functional.jacobian(
            lambda r: checks.plain("output", _pair(forward(r[None]), "the flow", 1, v.shape[1])[0],
                                   differentiable=True)[0], row)
        out.append(torch.linalg.slogdet(jac.double())[1])
    return torch.stack(out)


def _check_gradients(what: str, value: torch.Tensor, params: dict, reference: Callable, hint: str,
                     scale: float = 100) -> None:
    """The gradient of value.sum() with respect to each parameter equals that of the float64 reference."""
    if not value.requires_grad:
        checks.fail(f"{what} is not differentiable", "a tensor connected to the parameters in the autograd graph",
                    "no gradient", hint)
    grads = torch.autograd.grad(value.sum(), list(params.values()), allow_unused=True, retain_graph=True)
    ref_params = {k: p.detach().double().clone().requires_grad_(True) for k, p in params.items()}
    ref_grads = torch.autograd.grad(reference(**ref_params).sum(), list(ref_params.values()))
    for (name, p), found, want in zip(params.items(), grads, ref_grads, strict=True):
        if found is None:
            checks.fail(f"no gradient of {what} reaches {name}", f"d {what} / d {name} from autograd", "None", hint)
        checks.check_close(f"the gradient of {what} with respect to {name}", found, want,
                           atol=_atol(found, scale, p, value), rtol=_atol(found, scale, p, value), hint=hint)


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


def _mixture_log_det_torch(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor):
    """log F'(x) in float64 torch (differentiable in the parameters), for the gradient reference."""
    t = (x.double()[:, None] - mu) / log_sigma.exp()
    return torch.logsumexp(torch.log_softmax(logits, 0) - 0.5 * t**2 - 0.5 * math.log(2 * math.pi) - log_sigma, 1)


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
    z, log_det = z.detach(), log_det.detach()
    if (z < 0).any() or (z > 1).any() or not torch.isfinite(z).all():
        checks.fail("z = F(x) leaves [0, 1]", "values of a CDF, in [0, 1]",
                    f"values from {float(z.min()):.4g} to {float(z.max()):.4g}",
                    "the weights pi_k must be positive and sum to 1: softmax the logits")
    if not torch.isfinite(log_det).all():
        checks.fail("log_det contains NaN or inf", "finite values", "non-finite entries",
                    "compute log F'(x) with torch.logsumexp over the components")
    z_ref, log_det_ref = _mixture_reference(x.numpy(), *(p.numpy() for p in params))
    checks.check_close("z = F(x)", z, z_ref, atol=_atol(z, 10, x),
                       hint="z = sum_k pi_k Phi((x - mu_k) / sigma_k) with pi = softmax(logits), sigma = exp(log_sigma)")
    checks.check_close("log_det = log F'(x)", log_det, log_det_ref, atol=_atol(log_det, 100, x),
                       hint="log F'(x) = logsumexp_k [log pi_k + log N(x; mu_k, sigma_k)], the log of dz/dx")

    # The lecture trains logits, mu and log_sigma by maximizing log_det: it must be differentiable in them.
    trained = {name: p.clone().requires_grad_(True) for name, p in zip(("logits", "mu", "log_sigma"), params,
                                                                       strict=True)}
    _, log_det_g = _pair(mixture_cdf_forward(x.clone(), *trained.values()), "mixture_cdf_forward", len(x))
    _check_gradients("log_det", log_det_g, trained, lambda **p: _mixture_log_det_torch(x, **p),
                     "training maximizes log_det: keep it in the autograd graph (torch operations only, no "
                     ".item(), .detach() or numpy)")

    # The defining property of a 1-D flow's log_det: the log of |dz/dx|, here by autograd.
    def as_2d(v):                                                  # (B, 1) -> ((B, 1), (B,))
        out_z, out_ld = _pair(forward(v[:, 0]), "mixture_cdf_forward", len(v))
        return out_z[:, None], out_ld
    true = _log_det_by_autograd(as_2d, x[:12, None])
    checks.check_close("log_det against log|dz/dx| from autograd", log_det[:12], true,
                       atol=_atol(log_det, 100, x), hint="log_det must be the log of the derivative of your z")
    # With p_U = 1 on (0, 1), exp(log_det) is the model's density: it must integrate to one.
    lo, hi = float(mu.min() - 12 * log_sigma.exp().max()), float(mu.max() + 12 * log_sigma.exp().max())
    checks.check_normalized(lambda v: checks.plain("log_det", forward(v.double())[1]), lo, hi, n=20001, atol=1e-3,
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
    x_in = x.clone()
    out = checks.plain(f"log p_X(x) {what}", fn(x_in, f_inverse, _std_normal_log_prob))
    checks.check_tensor(f"log p_X(x) {what}", out, shape=(len(x),), finite=False)
    if not torch.equal(x_in, x):
        checks.fail(f"log_prob_change_of_variables changed x in place {what}", "x left as it is",
                    "modified entries", "compute on new tensors; x belongs to the caller")
    if not torch.isfinite(out).all():
        checks.fail(f"log p_X(x) {what} contains NaN or inf", "finite values", "non-finite entries",
                    "the determinant can be negative (an orientation flip): take log|det| with "
                    "torch.linalg.slogdet, not torch.logdet or log(det)")
    return out


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
    checks.check_close("log p_X(x) for x = A z + b (exactly N(b, A A^T))", found, expected, atol=_atol(found, 100, x),
                       hint="log p_Z evaluated at z = f^-1(x) (not at x), plus (not minus) log|det d f^-1/dx|")

    # 2. A nonlinear map: z = f^-1(x) = B2 g(B1 x + c), g(v) = v + 0.5 tanh(v) elementwise (increasing),
    #    in float64 and in float32 (x and f_inverse in the same dtype).
    d = 2
    b1 = torch.randn(d, d, generator=g, dtype=DOUBLE) + 1.5 * torch.eye(d, dtype=DOUBLE)
    b2 = torch.randn(d, d, generator=g, dtype=DOUBLE) + 1.5 * torch.eye(d, dtype=DOUBLE)
    c = torch.randn(d, generator=g, dtype=DOUBLE)
    x = 1.5 * torch.randn(9, d, generator=g, dtype=DOUBLE)
    s = x @ b1.T + c
    log_det = torch.linalg.slogdet(b1)[1] + torch.linalg.slogdet(b2)[1] + torch.log1p(0.5 * (1 - torch.tanh(s) ** 2)).sum(1)
    for dtype in (DOUBLE, torch.float32):
        m1, m2, shift = b1.to(dtype), b2.to(dtype), c.to(dtype)

        def net_inverse(v, m1=m1, m2=m2, shift=shift):
            s = v @ m1.T + shift
            return (s + 0.5 * torch.tanh(s)) @ m2.T

        expected = _std_normal_log_prob(net_inverse(x)) + log_det if dtype == DOUBLE else \
            _std_normal_log_prob((lambda s: (s + 0.5 * torch.tanh(s)) @ b2.T)(x.to(dtype).double() @ b1.T + c)) + \
            torch.linalg.slogdet(b1)[1] + torch.linalg.slogdet(b2)[1] + \
            torch.log1p(0.5 * (1 - torch.tanh(x.to(dtype).double() @ b1.T + c) ** 2)).sum(1)
        what = f"for a small nonlinear flow ({str(dtype).replace('torch.', '')})"
        found = _call_cov(log_prob_change_of_variables, x.to(dtype), net_inverse, what)
        checks.check_close(f"log p_X(x) {what}", found, expected, atol=_atol(found, 100, x.to(dtype)),
                           hint="each point needs the determinant of its own D x D Jacobian d z_n / d x_n")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the planar layer and its log-determinant
# ----------------------------------------------------------------------------------------------------------

def _planar_reference(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))


@checks.exercise("ex3_planar_layer", "Exercise 3: a planar layer and its log-determinant")
def check_planar_layer(planar_forward: Callable) -> None:
    """Exercise 3: `planar_forward(z, u, w, b)` returns (z + u tanh(w^T z + b), log|1 + u^T psi(z)|)."""
    g = torch.Generator().manual_seed(31)
    for d, wu_target, dtype in [(2, 0.7, DOUBLE), (5, -0.8, DOUBLE), (3, -4.0, DOUBLE), (4, -0.6, torch.float32)]:
        w = torch.randn(d, generator=g, dtype=DOUBLE)
        u = torch.randn(d, generator=g, dtype=DOUBLE)
        u = u + (wu_target - w @ u) * w / (w @ w)                  # set w^T u, keep the rest random
        b = torch.randn((), generator=g, dtype=DOUBLE)
        z = torch.randn(8, d, generator=g, dtype=DOUBLE) * 1.5
        z[:3] -= ((z[:3] @ w + b) / (w @ w))[:, None] * w          # three points on the hyperplane: h' = 1
        z, u, w, b = (v.to(dtype) for v in (z, u, w, b))
        case = f"(D = {d}, w^T u = {wu_target}, {str(dtype).replace('torch.', '')})"

        def forward(v, u=u, w=w, b=b):
            return planar_forward(v, u.clone(), w.clone(), b.clone())

        z_in = z.clone()
        x, log_det = _pair(forward(z_in), f"planar_forward {case}", len(z), d)
        if not torch.equal(z_in, z):
            checks.fail(f"planar_forward changed z in place {case}", "z left as it is", "modified entries",
                        "return z + u h(...) as a new tensor; the caller still needs z")
        x_ref, log_det_ref = _planar_reference(*(v.double() for v in (z, u, w, b)))
        checks.check_close(f"f(z) {case}", x.detach(), x_ref, atol=_atol(x, 10, z),
                           hint="f(z) = z + u h(w^T z + b): the move is along u, its size set by w^T z + b")
        if not torch.isfinite(log_det).all():
            checks.fail(f"log_det {case} contains NaN or inf", "finite values", "non-finite entries",
                        "with w^T u < -1 the layer is not invertible and 1 + u^T psi(z) can be negative; the "
                        "formula is log|det|, so take the absolute value before the log")
        true = _log_det_by_autograd(forward, z)
        checks.check_close(f"the planar layer's log_det {case} against slogdet of the autograd Jacobian",
                           log_det.detach(), true, atol=_atol(log_det, 100, z),
                           hint="log|det df/dz| = log|1 + u^T psi(z)| with psi(z) = h'(w^T z + b) w and "
                                "h' = 1 - tanh^2")
        # The lecture trains u, w and b through this layer (sampling and log q): gradients must reach them.
        trained = {"u": u.clone().requires_grad_(True), "w": w.clone().requires_grad_(True),
                   "b": b.clone().requires_grad_(True)}
        x_g, log_det_g = _pair(planar_forward(z.clone(), *trained.values()), f"planar_forward {case}", len(z), d)
        hint = "keep f(z) and log_det in the autograd graph: no .item(), .detach() or numpy"
        z64 = z.double()
        _check_gradients(f"f(z) {case}", x_g, trained, lambda z64=z64, **p: _planar_reference(z64, **p)[0], hint)
        _check_gradients(f"log_det {case}", log_det_g, trained,
                         lambda z64=z64, **p: _planar_reference(z64, **p)[1], hint)


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
    for d, wu_target, scale, dtype in [(2, -6.0, 1.0, DOUBLE), (3, -1.2, 0.3, DOUBLE), (7, 0.4, 2.0, DOUBLE),
                                       (4, 25.0, 1.5, DOUBLE), (2, -60.0, 0.5, DOUBLE), (3, 120.0, 1.0, torch.float32),
                                       (5, -3.0, 0.7, torch.float32)]:
        w = scale * torch.randn(d, generator=g, dtype=DOUBLE)
        u = torch.randn(d, generator=g, dtype=DOUBLE)
        u = u + (wu_target - w @ u) * w / (w @ w)
        u, w = u.to(dtype), w.to(dtype)
        case = f"(D = {d}, w^T u = {wu_target:g}, |w| = {float(w.norm()):.2f}, {str(dtype).replace('torch.', '')})"
        u_in, w_in = u.clone().requires_grad_(True), w.clone().requires_grad_(True)
        u_hat = checks.plain(f"u_hat {case}", constrain_u(u_in, w_in), differentiable=True)
        checks.check_tensor(f"u_hat {case}", u_hat, shape=(d,), finite=False)
        if not torch.isfinite(u_hat).all():
            checks.fail(f"u_hat {case} contains NaN or inf", "finite values", "non-finite entries",
                        "log(1 + exp(a)) overflows for large a (in float32 already at a = 89): use F.softplus")
        if not torch.equal(u_in.detach(), u) or not torch.equal(w_in.detach(), w):
            checks.fail(f"constrain_u changed its inputs {case}", "u and w left as they are", "modified in place",
                        "build a new tensor (u + ...) instead of updating u in place: u is a trained parameter")
        wu_hat = float(w.double() @ u_hat.detach().double())
        if not wu_hat >= -1 - _atol(u_hat, 10, u) * (1 + abs(wu_target)):
            checks.fail(f"w^T u_hat < -1 {case}: the planar layer would not be invertible", "w^T u_hat >= -1",
                        f"w^T u_hat = {wu_hat:.4g}",
                        "u_hat = u + (m(w^T u) - w^T u) w / |w|^2 gives w^T u_hat = m(w^T u) > -1; check the sign "
                        "and that you divide by |w|^2 (the squared norm)")
        ud, wd = u.double(), w.double()
        across = (u_hat.detach().double() - ud) - ((u_hat.detach().double() - ud) @ wd / (wd @ wd)) * wd
        if float(across.abs().max()) > _atol(u_hat, 100, u) * (1 + float(ud.abs().max())):
            checks.fail(f"u_hat changes u across w {case}", "u_hat - u parallel to w",
                        f"a component of size {float(across.abs().max()):.3g} orthogonal to w",
                        "only the component of u along w may change: add a multiple of w")
        expected = _u_hat_reference(u.double(), w.double())
        checks.check_close(f"u_hat {case}", u_hat.detach(), expected, atol=_atol(u_hat, 10, u),
                           rtol=_atol(u_hat, 10, u),
                           hint="w^T u_hat must equal m(w^T u) = -1 + softplus(w^T u) (the paper's choice)")
        # The optimizer trains the free u (and w) through u_hat: the gradient must flow through every term.
        probe = torch.randn(d, generator=g, dtype=DOUBLE).to(dtype)
        if not u_hat.requires_grad:
            checks.fail(f"u_hat is not differentiable {case}", "u_hat connected to u and w in the autograd graph",
                        "no gradient", "do not use .item(), .detach() or numpy inside constrain_u")
        grads = torch.autograd.grad(u_hat @ probe, (u_in, w_in), allow_unused=True)
        u_ref, w_ref = u.double().requires_grad_(True), w.double().requires_grad_(True)
        grads_ref = torch.autograd.grad(_u_hat_reference(u_ref, w_ref) @ probe.double(), (u_ref, w_ref))
        for name, found, ref in zip(("u", "w"), grads, grads_ref, strict=True):
            if found is None:
                checks.fail(f"no gradient reaches {name} through u_hat {case}", f"d u_hat / d {name} from autograd",
                            "None", "do not use .item(), .detach() or numpy inside constrain_u")
            checks.check_close(f"the gradient through u_hat with respect to {name} {case}", found, ref,
                               atol=_atol(found, 100, u), rtol=_atol(found, 100, u),
                               hint="every term (w^T u, m(w^T u), w / |w|^2) must stay in the autograd graph: no "
                                    ".item() or .detach()")
