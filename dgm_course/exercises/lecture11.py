"""Checks for lecture 11 (training energy-based models): the Langevin step, the score-matching loss with the exact
Hessian trace, and the noise-contrastive estimation loss.

Every check builds its own random problem from a fixed seed and computes the reference independently of the
lecture: moments of the Langevin transition for a linear score, closed forms for Gaussian energies and full
autograd Hessians for a small network, and the NCE logistic loss with its minimizer at the true log Z.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from scipy import stats

from .. import checks

DOUBLE = torch.float64


def _call(fn: Callable, *args, what: str, hint: str):
    """Call a student function, turning an autograd error into a check failure with a hint."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except RuntimeError as err:
        checks.fail(f"{what} raised an error", "a result", f"RuntimeError: {str(err).splitlines()[0][:160]}", hint)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: one step of unadjusted Langevin dynamics
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_langevin_step", "Exercise 1: a Langevin step")
def check_langevin_step(langevin_step: Callable) -> None:
    """Exercise 1: `langevin_step(x, score, step)` = x + step * score(x) + sqrt(2 step) * xi, xi ~ N(0, I) fresh for
    every entry of x, same shape as x, x left unchanged."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    d, n = 3, 40000
    a = torch.randn(d, d, generator=g, dtype=DOUBLE)
    a = -(a @ a.T) / d - 0.5 * torch.eye(d, dtype=DOUBLE)           # a linear score A x + c (a Gaussian's)
    c = 2.0 * torch.randn(d, generator=g, dtype=DOUBLE)

    def score(v):
        return v @ a.T + c

    hint = "x + step * score(x) + sqrt(2 * step) * xi, with xi = torch.randn_like(x)"
    for step in (0.05, 0.003):
        x0 = 1.5 * torch.randn(d, generator=g, dtype=DOUBLE)
        x = x0.expand(n, d).clone()                                # n copies of one point: the law of one step
        x_in = x.clone()
        out = checks.plain(f"langevin_step's output (step {step})",
                           _call(langevin_step, x_in, score, step, what="langevin_step", hint=hint))
        checks.check_tensor(f"langevin_step's output (step {step})", out, shape=(n, d))
        if not torch.equal(x_in, x):
            checks.fail("langevin_step changed its input x in place", "x left as it is", "x modified",
                        "build a new tensor (x + ...) instead of x += ...")
        out = out.double()
        mean, cov = out.mean(0), torch.cov(out.T)
        drift = x0 + step * score(x0[None])[0]
        se = math.sqrt(2 * step / n)                               # standard error of each mean coordinate
        if cov.diagonal().max() < 1e-12:
            checks.fail(f"one Langevin step (step {step}) adds no noise", f"variance 2 * step = {2 * step:g}",
                        "0", "unadjusted Langevin adds fresh Gaussian noise sqrt(2 * step) * xi every step, "
                        "drawn independently for every sample of the batch (torch.randn_like(x))")
        if (cov - 2 * step * torch.eye(d, dtype=DOUBLE)).abs().max() > 0.06 * 2 * step:
            checks.fail(f"the noise of one Langevin step (step {step}) has the wrong covariance",
                        f"2 * step * I = {2 * step:g} on the diagonal, 0 off it",
                        f"diagonal {[round(v, 5) for v in cov.diagonal().tolist()]}, "
                        f"largest off-diagonal {float((cov - torch.diag(cov.diagonal())).abs().max()):.3g}",
                        "the noise is sqrt(2 * step) * xi with xi ~ N(0, I), drawn independently for every "
                        "coordinate and every sample (torch.randn_like(x))")
        if (mean - drift).abs().max() > 5 * se:
            checks.fail(f"the mean of one Langevin step (step {step}) is wrong",
                        f"x + step * score(x) = {[round(v, 4) for v in drift.tolist()]}",
                        f"{[round(v, 4) for v in mean.tolist()]}",
                        "the drift is +step * score(x) (uphill in log p), evaluated at the current x")
        xi = ((out - drift) / math.sqrt(2 * step))[:, 0].numpy()   # should be exactly N(0, 1) draws
        p_value = stats.kstest(xi, "norm").pvalue
        if p_value < 1e-3:
            checks.fail(f"the noise of one Langevin step (step {step}) is not Gaussian",
                        "(x_new - x - step * score(x)) / sqrt(2 step) ~ N(0, 1) (Kolmogorov-Smirnov p >= 0.001)",
                        f"p = {p_value:.2g}", "draw the noise from a standard normal (torch.randn_like), not from "
                        "another distribution with the same variance")

    # Fresh noise at every call: a chain needs new randomness at every step.
    x = torch.zeros(200, d, dtype=DOUBLE)
    first = checks.plain("langevin_step's output", _call(langevin_step, x.clone(), score, 0.01, what="langevin_step",
                                                         hint=hint))
    second = checks.plain("langevin_step's output", _call(langevin_step, x.clone(), score, 0.01, what="langevin_step",
                                                          hint=hint))
    if torch.equal(first, second):
        checks.fail("two calls with the same x return the same result", "fresh noise at every call",
                    "identical outputs", "do not reset the seed (torch.manual_seed) or reuse a fixed noise tensor "
                    "inside langevin_step")

    # Any shape: a batch of images, and a score that returns a tensor shaped like x.
    imgs = torch.rand(4, 1, 5, 5, generator=g)
    out = checks.plain("langevin_step's output on a batch of images",
                       _call(langevin_step, imgs.clone(), lambda v: -v, 0.01, what="langevin_step on images",
                             hint="use torch.randn_like(x) so that the noise has the shape of x"))
    checks.check_tensor("langevin_step's output on a batch of images", out, shape=(4, 1, 5, 5))


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the score-matching loss with the exact Hessian trace
# ----------------------------------------------------------------------------------------------------------

def _sm_reference(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """mean_n [tr H_f(x_n) + 0.5 |grad f(x_n)|^2], one full autograd Hessian per point."""
    terms = []
    for row in x:
        grad = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], row, create_graph=True)
        hess = torch.autograd.functional.hessian(lambda v: f(v[None])[0], row, create_graph=True)
        terms.append(hess.diagonal().sum() + 0.5 * (grad**2).sum())
    return torch.stack(terms).mean()


class _SmallNet(torch.nn.Module):
    def __init__(self, d: int, h: int, g: torch.Generator):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(h, d, generator=g, dtype=DOUBLE))
        self.b1 = torch.nn.Parameter(torch.randn(h, generator=g, dtype=DOUBLE))
        self.w2 = torch.nn.Parameter(torch.randn(h, generator=g, dtype=DOUBLE) / math.sqrt(h))

    def forward(self, x):                                          # (N, d) -> (N,), a smooth non-separable f
        return torch.tanh(x @ self.w1.T + self.b1) @ self.w2 - 0.1 * (x**2).sum(1)


@checks.exercise("ex2_score_matching_loss", "Exercise 2: the score-matching loss")
def check_score_matching_loss(score_matching_loss: Callable) -> None:
    """Exercise 2: `score_matching_loss(f, x)` = mean_n [tr(Hessian of f at x_n) + 0.5 |grad f(x_n)|^2], a scalar
    that stays differentiable with respect to the parameters of f."""
    g = torch.Generator().manual_seed(2)
    hint_graph = ("take the first derivative with create_graph=True, so that you can differentiate it again, and "
                  "the second with create_graph=True too, so that the loss can be trained")

    # 1. A Gaussian energy with a full precision matrix, in float32: the loss in closed form.
    d, n = 3, 64
    m = torch.randn(d, d, generator=g, dtype=DOUBLE)
    lam = m @ m.T + 0.5 * torch.eye(d, dtype=DOUBLE)               # precision, with off-diagonal entries
    mu = torch.randn(d, generator=g, dtype=DOUBLE)
    lam32, mu32 = lam.float(), mu.float()

    def f_gauss(v):                                                # log of an unnormalized N(mu, lam^-1)
        return -0.5 * (((v - mu32) @ lam32) * (v - mu32)).sum(1)

    x = torch.randn(n, d, generator=g, dtype=DOUBLE)
    loss = checks.plain("the score-matching loss", _call(score_matching_loss, f_gauss, x.float(),
                                                         what="score_matching_loss", hint=hint_graph))
    checks.check_tensor("the score-matching loss", loss, shape=())
    expected = (-lam.trace() + 0.5 * (((x - mu) @ lam) ** 2).sum(1)).mean()
    atol, rtol = checks.tolerance(torch.float32, 10)
    checks.check_close("the score-matching loss of a Gaussian energy f(x) = -(x - mu)^T Lam (x - mu) / 2 (float32)",
                       loss, expected, atol=atol * float(expected.abs()), rtol=rtol,
                       hint="the trace term is -tr(Lam) here: sum only the diagonal second derivatives "
                            "d^2 f / dx_i^2 (the gradient of grad_f.sum() gives row sums of the Hessian, not its "
                            "diagonal); add + 0.5 |grad f|^2 and average over the batch")

    # 2. A small tanh network in float64 (every Hessian entry non-zero): value and parameter gradient.
    net = _SmallNet(d, 16, g)
    x = 1.5 * torch.randn(12, d, generator=g, dtype=DOUBLE)
    loss = checks.plain("the score-matching loss of a network",
                        _call(score_matching_loss, net, x.clone(), what="score_matching_loss on a small network",
                              hint=hint_graph), differentiable=True)
    checks.check_tensor("the score-matching loss of a network", loss, shape=())
    ref = _sm_reference(net, x.clone())
    atol, rtol = checks.tolerance(loss.dtype, 10)
    checks.check_close("the score-matching loss of a small network", loss, ref, atol=atol, rtol=rtol,
                       hint="tr H = sum_i d/dx_i (df/dx_i): one backward pass per input dimension")
    if not loss.requires_grad:
        checks.fail("the score-matching loss cannot be trained", "a loss connected to the network's parameters",
                    "a tensor without a gradient", hint_graph)
    params = list(net.parameters())
    found = torch.autograd.grad(loss, params, allow_unused=True)
    wanted = torch.autograd.grad(ref, params)
    for p_name, fg, wg in zip(("w1", "b1", "w2"), found, wanted, strict=True):
        if fg is None:
            checks.fail(f"no gradient reaches the parameter {p_name}", "d loss / d theta from autograd", "None",
                        hint_graph)
        checks.check_close(f"the gradient of the loss with respect to the parameter {p_name}", fg, wg,
                           atol=100 * atol, rtol=100 * rtol, hint=hint_graph)


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the noise-contrastive estimation loss
# ----------------------------------------------------------------------------------------------------------

def _nce_reference(lp_x, lq_x, lp_y, lq_y):
    log_nu = math.log(len(lp_y) / len(lp_x))
    g_x, g_y = lp_x - lq_x - log_nu, lp_y - lq_y - log_nu
    return -(torch.nn.functional.logsigmoid(g_x).sum() + torch.nn.functional.logsigmoid(-g_y).sum()) / len(lp_x)


@checks.exercise("ex3_nce_loss", "Exercise 3: the NCE loss")
def check_nce_loss(nce_loss: Callable) -> None:
    """Exercise 3: `nce_loss(log_p_x, log_q_x, log_p_y, log_q_y)`, the NCE logistic loss with nu = M / N."""
    g = torch.Generator().manual_seed(3)
    hint_value = ("-(1/N) [sum_i log sigmoid(G(x_i)) + sum_j log sigmoid(-G(y_j))], G = log p - log q - log(M / N): "
                  "divide by N, the number of data points")

    # 1. The defining property: with data ~ p and noise ~ q, the loss of log p + c is smallest at c = 0 (the
    # learned log Z is right), for nu = 4 noise samples per data point.
    n, nu = 250, 4
    p, q = torch.distributions.Normal(0.3, 1.0), torch.distributions.Normal(0.0, 1.6)
    x = torch.as_tensor(stats.norm.ppf((torch.arange(n) + 0.5).numpy() / n, 0.3, 1.0), dtype=DOUBLE)  # quantiles:
    y = torch.as_tensor(stats.norm.ppf((torch.arange(nu * n) + 0.5).numpy() / (nu * n), 0.0, 1.6), dtype=DOUBLE)
    x, y = x[torch.randperm(n, generator=g)], y[torch.randperm(nu * n, generator=g)]   # samples without noise
    lp_x, lq_x, lp_y, lq_y = p.log_prob(x), q.log_prob(x), p.log_prob(y), q.log_prob(y)
    shifts = torch.linspace(-0.3, 0.3, 9, dtype=DOUBLE)
    values = []
    for c in shifts:
        out = checks.plain("the NCE loss", nce_loss(lp_x + c, lq_x.clone(), lp_y + c, lq_y.clone()))
        checks.check_tensor("the NCE loss", out, shape=(), finite=False)
        values.append(float(out))
    values_t = torch.tensor(values, dtype=DOUBLE)
    if not torch.isfinite(values_t).all():
        checks.fail("the NCE loss is not finite", "finite values", "NaN or inf",
                    "use torch.nn.functional.logsigmoid rather than log(sigmoid(...))")
    design = torch.stack([shifts**2, shifts, torch.ones_like(shifts)], 1)       # fit a parabola to find the minimum
    coef = torch.linalg.lstsq(design, values_t[:, None]).solution[:, 0]
    c_star = float(-coef[1] / (2 * coef[0])) if coef[0] > 0 else float("nan")
    if not abs(c_star) < 0.05:
        found = f"the loss is smallest at c = {c_star:.3f}" if math.isfinite(c_star) else "a loss without a minimum"
        checks.fail("NCE does not recover the normalization: with data ~ p, noise ~ q and nu = 4, the loss of "
                    "log p + c should be smallest at c = 0", "c = 0 (within 0.05)", found,
                    f"the logit is G(u) = log p(u) - log q(u) - log nu with nu = M / N (here log 4 = {math.log(4):.3f});"
                    " data enter through log sigmoid(G), noise through log sigmoid(-G)")

    # 2. The value on random inputs (N != M), including huge logits that overflow a naive log(sigmoid(.)).
    for n, m in ((7, 21), (30, 30), (5, 40)):
        args = [3.0 * torch.randn(k, generator=g, dtype=DOUBLE) for k in (n, n, m, m)]
        args[0][0], args[2][0] = -300.0, 300.0                     # a data point and a noise point far off
        args = [t.requires_grad_(True) for t in args]
        out = checks.plain(f"the NCE loss (N = {n}, M = {m})", nce_loss(*args), differentiable=True)
        checks.check_tensor(f"the NCE loss (N = {n}, M = {m})", out, shape=(), finite=False)
        if not torch.isfinite(out):
            checks.fail(f"the NCE loss (N = {n}, M = {m}) is not finite when a logit is large (|G| = 300)",
                        "a finite loss", f"{out.item()}",
                        "log(sigmoid(G)) underflows to log(0); use torch.nn.functional.logsigmoid(G) and "
                        "logsigmoid(-G)")
        atol, rtol = checks.tolerance(out.dtype, 100)
        checks.check_close(f"the NCE loss (N = {n}, M = {m})", out.detach(), _nce_reference(*args).detach(),
                           atol=atol, rtol=rtol, hint=hint_value)
        if not out.requires_grad:
            checks.fail("the NCE loss cannot be trained", "a loss connected to log p", "no gradient",
                        "do not use .item(), .detach() or numpy inside nce_loss")
