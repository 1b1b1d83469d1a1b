"""Checks for lecture 10 (energy-based models): log Z by quadrature, the Metropolis-Hastings transition matrix of a
discrete chain, one random-walk Metropolis-Hastings step, and the contrastive-divergence loss.

Every check builds its own random problem from a fixed seed and compares with a reference computed independently
of the lecture: closed-form Gaussian normalizers and their gradients, detailed balance, the known acceptance rate
(2/pi) arctan(2/sigma) of random-walk Metropolis on a standard normal, a Kolmogorov-Smirnov test, and the
exponential-family gradient E_model[phi] - E_data[phi]. Tolerances follow the dtype of the answer; answers are
converted to plain tensors before they are compared. The decorator runs each check on its own random stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from scipy import stats

from .. import checks

DOUBLE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: log Z by quadrature on a 2-D grid
# ----------------------------------------------------------------------------------------------------------

def _gaussian_f(mean: torch.Tensor, cov: torch.Tensor, shift: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) = log N(x; mean, cov) + shift: its integral over the plane is exactly e^shift."""
    dist = torch.distributions.MultivariateNormal(mean, cov)

    def f(x):
        return dist.log_prob(x.double()).to(x.dtype) + shift
    return f


def _ring_f(x: torch.Tensor) -> torch.Tensor:
    r = x.double().norm(dim=1)
    return (-0.5 * ((r - 1.5) / 0.3) ** 2 + 0.8 * torch.sin(3 * torch.atan2(x[:, 1].double(), x[:, 0].double()))).to(x.dtype)


def _log_z_reference(f: Callable, lim: float, n: int = 801) -> float:
    axis = torch.linspace(-lim, lim, n, dtype=DOUBLE)
    w = torch.full((n,), 1.0, dtype=DOUBLE)
    w[0] = w[-1] = 0.5                                              # trapezoidal weights
    pts = torch.cartesian_prod(axis, axis)
    log_w = (w[:, None] * w[None, :]).log().reshape(-1)
    return float(torch.logsumexp(f(pts) + log_w, 0) + 2 * math.log(axis[1] - axis[0]))


_LOG_Z_HINT = ("log Z = logsumexp_i f(x_i) + log(cell area); with n points per axis from -lim to lim the spacing is "
               "2 lim / (n - 1) and the cell area its square")


def _log_z_answer(log_partition: Callable, f: Callable, lim: float, n: int, what: str) -> torch.Tensor:
    found = checks.plain(f"log Z for f(x) = {what}", log_partition(f, lim, n), differentiable=True)
    checks.check_tensor(f"log Z for f(x) = {what}", found, shape=(), finite=False)
    if not torch.isfinite(found):
        checks.fail(f"log Z for f(x) = {what} is not finite", "a finite number", f"{float(found)}",
                    "exp(f) overflows (or underflows to 0) when f is large in magnitude: add the terms in log space "
                    "with torch.logsumexp and add the log of the cell area afterwards")
    return found


@checks.exercise("ex1_log_partition", "Exercise 1: log Z by quadrature")
def check_log_partition(log_partition: Callable) -> None:
    """Exercise 1: `log_partition(f, lim, n)` = log of the integral of exp(f) over [-lim, lim]^2, an n x n grid;
    finite for |f| in the thousands, and differentiable with respect to the parameters of f."""
    g = torch.Generator().manual_seed(101)
    cases = []
    for shift in (0.0, 1000.0, -1000.0):
        a = torch.randn(2, 2, generator=g, dtype=DOUBLE) * 0.5
        cov = a @ a.T + 0.3 * torch.eye(2, dtype=DOUBLE)
        mean = 0.5 * torch.randn(2, generator=g, dtype=DOUBLE)
        cases.append((_gaussian_f(mean, cov, shift), 6.0, 121, shift, f"log N(x; m, S) + {shift:g}"))
    cases.append((_ring_f, 3.0, 151, _log_z_reference(_ring_f, 3.0), "a ring with three bumps"))
    for f, lim, n, expected, what in cases:
        found = _log_z_answer(log_partition, f, lim, n, what)
        checks.check_close(f"log Z for f(x) = {what} on [-{lim:g}, {lim:g}]^2 with n = {n}", found.detach(), expected,
                           atol=2e-3, rtol=0, hint=_LOG_Z_HINT)

    # Differentiable: f(x) = -a |x|^2 / 2 has Z = 2 pi / a, so d log Z / da = -1 / a.
    a = torch.tensor(1.3, dtype=DOUBLE, requires_grad=True)

    def f_param(x):
        return (-0.5 * a * (x.double() ** 2).sum(1)).to(x.dtype)

    found = _log_z_answer(log_partition, f_param, 6.0, 121, "-a |x|^2 / 2 with a learnable a")
    if not found.requires_grad:
        checks.fail("log Z carries no gradient", "a tensor connected to the parameters of f (section 4 trains "
                    "through log Z)", "a tensor without an autograd graph",
                    "do not call .item(), .detach() or torch.no_grad() inside log_partition")
    (grad,) = torch.autograd.grad(found, a, allow_unused=True)
    if grad is None:
        checks.fail("no gradient of log Z reaches the parameters of f", "d log Z / da", "None",
                    "log Z must be computed from the values f(x) of the grid points")
    checks.check_close("d log Z / da for f(x) = -a |x|^2 / 2 (exact: -1 / a)", grad, -1 / 1.3, atol=1e-3, rtol=0,
                       hint=_LOG_Z_HINT)


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the Metropolis-Hastings transition matrix of a discrete chain
# ----------------------------------------------------------------------------------------------------------

def _mh_matrix_reference(p_tilde: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    k = len(p_tilde)
    t = torch.zeros(k, k, dtype=DOUBLE)
    for i in range(k):
        for j in range(k):
            if i != j and q[i, j] > 0:
                t[i, j] = q[i, j] * min(1.0, float(p_tilde[j] * q[j, i] / (p_tilde[i] * q[i, j])))
        t[i, i] = 1 - t[i].sum()
    return t


def _random_proposal(k: int, g: torch.Generator) -> torch.Tensor:
    """A random asymmetric proposal matrix with some zeros, Q[i, j] > 0 exactly when Q[j, i] > 0, rows sum to 1."""
    allowed = torch.rand(k, k, generator=g) < 0.6
    allowed = allowed | allowed.T
    idx = torch.arange(k)
    allowed[idx, (idx + 1) % k] = allowed[(idx + 1) % k, idx] = True   # a ring keeps the chain irreducible
    q = torch.rand(k, k, generator=g, dtype=DOUBLE) * allowed
    return q / q.sum(1, keepdim=True)


@checks.exercise("ex2_mh_matrix", "Exercise 2: the Metropolis-Hastings transition matrix")
def check_mh_transition_matrix(mh_transition_matrix: Callable) -> None:
    """Exercise 2: `mh_transition_matrix(p_tilde, Q)` is the (K, K) Metropolis-Hastings kernel for target p_tilde;
    p_tilde and Q are left unchanged."""
    g = torch.Generator().manual_seed(202)
    for k, scale in [(4, 1.0), (7, 1e3), (9, 1e-2)]:
        p_tilde = scale * torch.rand(k, generator=g, dtype=DOUBLE) + 0.05 * scale   # unnormalized
        q = _random_proposal(k, g)
        case = f"(K = {k}, unnormalized weights summing to {float(p_tilde.sum()):.3g})"
        p_in, q_in = p_tilde.clone(), q.clone()
        t = checks.plain(f"T {case}", mh_transition_matrix(p_in, q_in))
        if not (torch.equal(p_in, p_tilde) and torch.equal(q_in, q)):
            checks.fail(f"mh_transition_matrix changed its inputs {case}", "p_tilde and Q left as they were",
                        "p_tilde or Q modified in place", "the lecture uses Q again after building T: work on a copy "
                        "(Q.clone(), or operations that return new tensors instead of fill_diagonal_ or +=)")
        checks.check_tensor(f"T {case}", t, shape=(k, k), finite=False)
        if not torch.is_floating_point(t):
            checks.fail(f"T {case} has the wrong dtype", "floating-point probabilities", str(t.dtype))
        if not torch.isfinite(t).all():
            checks.fail(f"T {case} contains NaN or inf", "finite probabilities", "non-finite entries",
                        "Q has zeros: write T_ij = min(Q_ij, p_j Q_ji / p_i) instead of dividing by Q_ij")
        atol, rtol = checks.tolerance(t.dtype, 10)
        t = t.double()
        checks.check_sum_to_one(f"the rows of T {case}", t, dim=1, atol=atol)
        if ((t > atol) & (q == 0) & ~torch.eye(k, dtype=torch.bool)).any():
            checks.fail(f"T {case} moves where Q never proposes", "T_ij = 0 when Q_ij = 0 (i != j)",
                        "positive entries there", "a move can only happen if it was proposed")
        pi = p_tilde / p_tilde.sum()
        flow = pi[:, None] * t                                           # pi_i T_ij
        if not torch.allclose(flow, flow.T, atol=atol * float(pi.max()), rtol=rtol):
            i, j = divmod(int((flow - flow.T).abs().argmax()), k)
            checks.fail(f"T {case} violates detailed balance", f"pi_{i} T_{i}{j} = pi_{j} T_{j}{i}",
                        f"{float(flow[i, j]):.8g} vs {float(flow[j, i]):.8g}",
                        "Q is not symmetric: the acceptance ratio needs the Hastings factor Q_ji / Q_ij")
        checks.check_close(f"T {case}", t, _mh_matrix_reference(p_tilde, q), atol=atol, rtol=rtol,
                           hint="accept with probability min(1, p_j Q_ji / (p_i Q_ij)): the largest acceptance that "
                                "keeps detailed balance")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: one random-walk Metropolis-Hastings step
# ----------------------------------------------------------------------------------------------------------

def _call_step(mh_step: Callable, x: torch.Tensor, log_p: Callable, sigma: float, what: str):
    x_in = x.clone()
    out = mh_step(x_in, log_p, sigma)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"mh_step {what} returns the wrong thing", "a pair (x_new, accepted)", type(out).__name__)
    x_new, accepted = checks.plain(f"x_new {what}", out[0]), checks.plain(f"accepted {what}", out[1])
    if not torch.equal(x_in, x):
        checks.fail(f"mh_step {what} changed its input x in place", "x left as it is (the caller keeps it)",
                    "x modified", "build x_new as a new tensor (torch.where(...)) instead of writing into x")
    checks.check_tensor(f"x_new {what}", x_new, shape=tuple(x.shape))
    checks.check_tensor(f"accepted {what}", accepted, shape=(len(x),))
    if accepted.dtype != torch.bool:
        checks.fail(f"accepted {what} has the wrong dtype", "torch.bool (one decision per chain)", str(accepted.dtype))
    return x_new, accepted


def _mixture_1d_log_p(x: torch.Tensor) -> torch.Tensor:
    comps = torch.stack([math.log(0.3) - 0.5 * ((x[:, 0] + 1.5) / 0.6) ** 2 - math.log(0.6),
                         math.log(0.7) - 0.5 * ((x[:, 0] - 1.0) / 0.8) ** 2 - math.log(0.8)], 1)
    return torch.logsumexp(comps, 1)


def _mixture_1d_cdf(v):
    return 0.3 * stats.norm.cdf(v, -1.5, 0.6) + 0.7 * stats.norm.cdf(v, 1.0, 0.8)


def _mixture_1d_sample(n: int) -> torch.Tensor:
    comp = torch.rand(n) < 0.3
    return torch.where(comp, -1.5 + 0.6 * torch.randn(n), 1.0 + 0.8 * torch.randn(n))[:, None]


@checks.exercise("ex3_mh_step", "Exercise 3: a Metropolis-Hastings step")
def check_mh_step(mh_step: Callable) -> None:
    """Exercise 3: `mh_step(x, log_p, sigma)` -> (x_new, accepted), random-walk Metropolis on each chain (row)."""
    torch.manual_seed(303)
    # 1. Bookkeeping: a rejected chain stays exactly where it was, an accepted one moves.
    x = torch.randn(500, 2)
    x_new, accepted = _call_step(mh_step, x, lambda v: -0.5 * (v**2).sum(1), 1.0, "(2-D standard normal)")
    moved = (x_new != x).any(1)
    if not torch.equal(moved, accepted):
        bad = int((moved != accepted).sum())
        checks.fail("accepted does not match the moves", "x_new == x exactly where a proposal was rejected, "
                    "x_new != x where it was accepted", f"{bad} of {len(x)} chains disagree",
                    "keep the old x for every rejected chain (torch.where with the accept mask)")
    if accepted.all() or not accepted.any():
        checks.fail("every proposal has the same fate", "some proposals accepted and some rejected",
                    "all accepted" if accepted.all() else "all rejected",
                    "accept with probability min(1, p(x') / p(x)): compare log u with log p(x') - log p(x)")
    x_again, _ = _call_step(mh_step, x, lambda v: -0.5 * (v**2).sum(1), 1.0, "(called a second time)")
    if torch.equal(x_again, x_new):
        checks.fail("two calls with the same x return the same result", "fresh random numbers at every call",
                    "identical proposals and decisions", "do not reset the seed (torch.manual_seed) inside mh_step: "
                    "a Markov chain needs new randomness at every step")

    # 1b. Each chain decides for itself: every proposal has probability 1/2 here, independently.
    x = torch.randn(2000, 1)
    start = x.clone()

    def half(v):                                                 # log p = 0 at the current states, log(1/2) elsewhere
        return torch.where((v == start).all(1), 0.0, math.log(0.5))

    rates = [float(_call_step(mh_step, x, half, 1.0, "(every proposal accepted with probability 1/2)")[1].double().mean())
             for _ in range(4)]
    if all(r in (0.0, 1.0) for r in rates) and len(set(rates)) > 1:
        checks.fail("the acceptance decisions are not independent across chains (each proposal here has "
                    "acceptance probability exactly 1/2)", "about half of 2000 chains accept at each call",
                    f"fractions {rates}", "draw one uniform number per chain (torch.rand(N)), not one for the "
                    "whole batch")
    if not all(0.42 < r < 0.58 for r in rates):
        checks.fail("a target where every proposal has acceptance probability exactly 1/2 (log p(x') - log p(x) = "
                    "log 1/2)", "about half of 2000 chains accept", f"fractions {[round(r, 3) for r in rates]}",
                    "accept when log u < log p(x') - log p(x), one u ~ U(0, 1) per chain")

    # 2. The acceptance rate at stationarity, known in closed form for a standard normal target.
    sigma, n = 2.5, 40_000
    x = torch.randn(n, 1)
    _, accepted = _call_step(mh_step, x, lambda v: -0.5 * (v**2).sum(1) - 1000, sigma,
                             "(1-D standard normal, log p = -x^2 / 2 - 1000)")
    rate, expected = float(accepted.double().mean()), 2 / math.pi * math.atan(2 / sigma)
    se = math.sqrt(expected * (1 - expected) / n)
    if abs(rate - expected) > 5 * se:
        checks.fail(f"acceptance rate at stationarity (target N(0, 1) given as log p = -x^2 / 2 - 1000, "
                    f"sigma = {sigma}, {n} chains)",
                    f"(2/pi) arctan(2/sigma) = {expected:.4f} +- {5 * se:.4f}", f"{rate:.4f}",
                    "propose x' = x + sigma * eps with eps ~ N(0, I) (sigma is a standard deviation), and accept "
                    "if log u < log p(x') - log p(x) with u ~ U(0, 1); exp(log p) underflows to 0 at -1000, so "
                    "compare in log space")

    # 3. Started at exact samples of a bimodal target, the chains must stay distributed as the target.
    x = _mixture_1d_sample(5000)
    for _ in range(15):
        x, _ = _call_step(mh_step, x, _mixture_1d_log_p, 1.0, "(1-D mixture)")
    p_value = stats.kstest(x[:, 0].double().numpy(), _mixture_1d_cdf).pvalue
    if p_value < 1e-3:
        checks.fail("5000 chains started at exact samples of the target (a 1-D mixture of two Gaussians) have "
                    "left it after 15 steps", "a Kolmogorov-Smirnov p-value >= 0.001",
                    f"p = {p_value:.2g} (mean {float(x.mean()):.3f}, target mean {0.3 * -1.5 + 0.7 * 1.0:.3f})",
                    "accept uphill moves always and downhill moves with probability p(x') / p(x)")

    # 4. A target with a support: log p = -inf outside the unit square. No chain may leave it.
    x = torch.rand(2000, 2)

    def box(v):
        return torch.where(((v >= 0) & (v <= 1)).all(1), 0.0, -math.inf)

    for _ in range(5):
        x, _ = _call_step(mh_step, x, box, 0.5, "(uniform on the unit square, -inf outside)")
    outside = int(((x < 0) | (x > 1)).any(1).sum())
    if outside:
        checks.fail("chains left the support of the target (log p = -inf outside the unit square)",
                    "every chain inside", f"{outside} of {len(x)} chains outside",
                    "a proposal with log p(x') = -inf has acceptance probability 0: compare log u < log p(x') - "
                    "log p(x) directly, without clamping or replacing infinities")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the contrastive-divergence loss
# ----------------------------------------------------------------------------------------------------------

class _LinearEBM(torch.nn.Module):
    """f_theta(x) = theta^T phi(x) with fixed features phi: the CD gradient is E_model[phi] - E_data[phi]."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = torch.nn.Parameter(theta.clone())

    @staticmethod
    def phi(x):
        return torch.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 0] * x[:, 1], torch.sin(x[:, 1])], 1)

    def forward(self, x):
        return self.phi(x) @ self.theta


@checks.exercise("ex4_cd_loss", "Exercise 4: the contrastive-divergence loss")
def check_cd_loss(cd_loss: Callable) -> None:
    """Exercise 4: `cd_loss(f, x_data, x_model)`, a scalar whose gradient is E_model[grad f] - E_data[grad f]."""
    g = torch.Generator().manual_seed(404)
    f = _LinearEBM(torch.randn(5, generator=g, dtype=DOUBLE)).double()
    x_data = torch.randn(64, 2, generator=g, dtype=DOUBLE)
    x_model = 1.5 * torch.randn(100, 2, generator=g, dtype=DOUBLE) + 0.3     # a different batch size on purpose
    loss = checks.plain("the CD loss", cd_loss(f, x_data.clone(), x_model.clone()), differentiable=True)
    checks.check_tensor("the CD loss", loss, shape=())
    if not loss.requires_grad:
        checks.fail("the CD loss has no gradient", "a scalar connected to f's parameters", "no autograd graph",
                    "do not wrap the computation in torch.no_grad() or call .item()")
    (grad,) = torch.autograd.grad(loss, f.theta, allow_unused=True)
    if grad is None:
        checks.fail("no gradient reaches f's parameters", "d loss / d theta", "None", "the loss must use f(x_data) and f(x_model)")
    expected = f.phi(x_model).mean(0) - f.phi(x_data).mean(0)
    atol, rtol = checks.tolerance(loss.dtype, 10)
    checks.check_close("the gradient of the CD loss for f = theta^T phi(x)", grad, expected, atol=atol, rtol=rtol,
                       hint="minimizing the loss must raise f on the data and lower it on the model samples, each "
                            "term a mean over its own batch")

    # The samples are constants: no gradient may flow into them (with Langevin samplers it would).
    torch.manual_seed(405)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def f_net(x):
        return net(x).squeeze(-1)
    x_model_leaf = x_model.clone().requires_grad_(True)
    out = checks.plain("the CD loss", cd_loss(f_net, x_data.clone(), x_model_leaf), differentiable=True)
    checks.check_tensor("the CD loss", out, shape=())
    out.backward()
    if x_model_leaf.grad is not None and float(x_model_leaf.grad.abs().max()) > 0:
        checks.fail("gradient flows into the model samples", "x_model treated as a constant (no gradient)",
                    f"a gradient of size {float(x_model_leaf.grad.abs().max()):.3g} on x_model",
                    "the samples are constants of the loss: detach them before f sees them")
