"""Checks for lecture 10 (energy-based models): log Z by quadrature, the Metropolis-Hastings transition matrix of a
discrete chain, one random-walk Metropolis-Hastings step, and the contrastive-divergence loss.

Every check builds its own random problem from a fixed seed and compares with a reference computed independently
of the lecture: closed-form Gaussian normalizers, detailed balance, the known acceptance rate (2/pi) arctan(2/sigma)
of random-walk Metropolis on a standard normal, a Kolmogorov-Smirnov test, and the exponential-family gradient
E_model[phi] - E_data[phi]. Checks that draw random numbers do so inside `torch.random.fork_rng`, so running a check
does not change the notebook's random stream.
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


@checks.exercise("ex1_log_partition", "Exercise 1: log Z by quadrature")
def check_log_partition(log_partition: Callable) -> None:
    """Exercise 1: `log_partition(f, lim, n)` = log of the integral of exp(f) over [-lim, lim]^2, an n x n grid."""
    g = torch.Generator().manual_seed(101)
    cases = []
    for shift in (0.0, 1000.0, -1000.0):
        a = torch.randn(2, 2, generator=g, dtype=DOUBLE) * 0.5
        cov = a @ a.T + 0.3 * torch.eye(2, dtype=DOUBLE)
        mean = 0.5 * torch.randn(2, generator=g, dtype=DOUBLE)
        cases.append((_gaussian_f(mean, cov, shift), 6.0, 121, shift, f"log N(x; m, S) + {shift:g}"))
    cases.append((_ring_f, 3.0, 151, _log_z_reference(_ring_f, 3.0), "a ring with three bumps"))
    for f, lim, n, expected, what in cases:
        found = log_partition(f, lim, n)
        checks.check_tensor(f"log Z for f(x) = {what}", torch.as_tensor(found), shape=(), finite=False)
        found = torch.as_tensor(found).detach().double()
        if not torch.isfinite(found):
            checks.fail(f"log Z for f(x) = {what} is not finite", f"{expected:.6g}", f"{float(found)}",
                        "exp(f) overflows (or underflows to 0) when f is large in magnitude: add the terms in log space "
                        "with torch.logsumexp and add the log of the cell area afterwards")
        checks.check_close(f"log Z for f(x) = {what} on [-{lim:g}, {lim:g}]^2 with n = {n}", found, expected, atol=2e-3,
                           hint="log Z = logsumexp_i f(x_i) + log(cell area); with n points per axis from -lim to lim "
                                "the spacing is 2 lim / (n - 1) and the cell area its square")


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
    """Exercise 2: `mh_transition_matrix(p_tilde, Q)` is the (K, K) Metropolis-Hastings kernel for target p_tilde."""
    g = torch.Generator().manual_seed(202)
    for k, scale in [(4, 1.0), (7, 1e3), (9, 1e-2)]:
        p_tilde = scale * torch.rand(k, generator=g, dtype=DOUBLE) + 0.05 * scale   # unnormalized
        q = _random_proposal(k, g)
        case = f"(K = {k}, unnormalized weights summing to {float(p_tilde.sum()):.3g})"
        t = mh_transition_matrix(p_tilde.clone(), q.clone())
        checks.check_tensor(f"T {case}", t, shape=(k, k), finite=False)
        t = t.detach().double()
        if not torch.isfinite(t).all():
            checks.fail(f"T {case} contains NaN or inf", "finite probabilities", "non-finite entries",
                        "Q has zeros: write T_ij = min(Q_ij, p_j Q_ji / p_i) instead of dividing by Q_ij")
        checks.check_sum_to_one(f"the rows of T {case}", t, dim=1, atol=1e-9)
        if ((t > 1e-12) & (q == 0) & ~torch.eye(k, dtype=torch.bool)).any():
            checks.fail(f"T {case} moves where Q never proposes", "T_ij = 0 when Q_ij = 0 (i != j)",
                        "positive entries there", "a move can only happen if it was proposed")
        pi = p_tilde / p_tilde.sum()
        flow = pi[:, None] * t                                           # pi_i T_ij
        if not torch.allclose(flow, flow.T, atol=1e-10, rtol=1e-8):
            i, j = divmod(int((flow - flow.T).abs().argmax()), k)
            checks.fail(f"T {case} violates detailed balance", f"pi_{i} T_{i}{j} = pi_{j} T_{j}{i}",
                        f"{float(flow[i, j]):.5g} vs {float(flow[j, i]):.5g}",
                        "Q is not symmetric: the acceptance ratio needs the Hastings factor Q_ji / Q_ij")
        checks.check_close(f"T {case}", t, _mh_matrix_reference(p_tilde, q), atol=1e-10,
                           hint="accept with probability min(1, p_j Q_ji / (p_i Q_ij)): the largest acceptance that "
                                "keeps detailed balance")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: one random-walk Metropolis-Hastings step
# ----------------------------------------------------------------------------------------------------------

def _call_step(mh_step: Callable, x: torch.Tensor, log_p: Callable, sigma: float, what: str):
    out = mh_step(x.clone(), log_p, sigma)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"mh_step {what} returns the wrong thing", "a pair (x_new, accepted)", type(out).__name__)
    x_new, accepted = out
    checks.check_tensor(f"x_new {what}", x_new, shape=tuple(x.shape))
    checks.check_tensor(f"accepted {what}", accepted, shape=(len(x),))
    if accepted.dtype != torch.bool:
        checks.fail(f"accepted {what} has the wrong dtype", "torch.bool (one decision per chain)", str(accepted.dtype))
    return x_new.detach(), accepted


def _mixture_1d_log_p(x: torch.Tensor) -> torch.Tensor:
    comps = torch.stack([math.log(0.3) - 0.5 * ((x[:, 0] + 1.5) / 0.6) ** 2 - math.log(0.6),
                         math.log(0.7) - 0.5 * ((x[:, 0] - 1.0) / 0.8) ** 2 - math.log(0.8)], 1)
    return torch.logsumexp(comps, 1)


def _mixture_1d_cdf(v):
    return 0.3 * stats.norm.cdf(v, -1.5, 0.6) + 0.7 * stats.norm.cdf(v, 1.0, 0.8)


@checks.exercise("ex3_mh_step", "Exercise 3: a Metropolis-Hastings step")
def check_mh_step(mh_step: Callable) -> None:
    """Exercise 3: `mh_step(x, log_p, sigma)` -> (x_new, accepted), random-walk Metropolis on each chain (row)."""
    with torch.random.fork_rng(devices=[]):
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

        # 2. The acceptance rate at stationarity, known in closed form for a standard normal target.
        sigma, n = 2.5, 200_000
        x = torch.randn(n, 1)
        _, accepted = _call_step(mh_step, x, lambda v: -0.5 * (v**2).sum(1), sigma, "(1-D standard normal)")
        rate, expected = float(accepted.double().mean()), 2 / math.pi * math.atan(2 / sigma)
        if abs(rate - expected) > 0.006:
            checks.fail(f"acceptance rate at stationarity (target N(0, 1), sigma = {sigma})",
                        f"(2/pi) arctan(2/sigma) = {expected:.4f}", f"{rate:.4f}",
                        "propose x' = x + sigma * eps with eps ~ N(0, I) (sigma is a standard deviation), and accept "
                        "if log u < log p(x') - log p(x) with u ~ U(0, 1)")

        # 3. From a bad start, the chains must converge to a bimodal target (Kolmogorov-Smirnov test).
        x = torch.full((4000, 1), 3.0)
        for _ in range(300):
            x, _ = _call_step(mh_step, x, _mixture_1d_log_p, 1.0, "(1-D mixture)")
        p_value = stats.kstest(x[:, 0].double().numpy(), _mixture_1d_cdf).pvalue
        if p_value < 1e-3:
            checks.fail("4000 chains after 300 steps do not follow the target (1-D mixture of two Gaussians)",
                        "a Kolmogorov-Smirnov p-value >= 0.001", f"p = {p_value:.2g} (mean {float(x.mean()):.3f}, "
                        f"target mean {0.3 * -1.5 + 0.7 * 1.0:.3f})",
                        "accept uphill moves always and downhill moves with probability p(x') / p(x)")

        # 4. In 2-D, from a corner, to a correlated Gaussian: mean and covariance.
        cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
        prec = torch.linalg.inv(cov)
        x = torch.tensor([[3.0, -3.0]]).repeat(4000, 1)
        for _ in range(300):
            x, _ = _call_step(mh_step, x, lambda v: -0.5 * ((v @ prec) * v).sum(1), 0.8, "(2-D Gaussian)")
        checks.check_close("the chains' mean (2-D Gaussian target, mean 0)", x.mean(0), torch.zeros(2), atol=0.1,
                           hint="each chain (row of x) makes its own proposal and its own accept decision")
        checks.check_close("the chains' covariance (2-D Gaussian target)", torch.cov(x.T), cov, atol=0.12,
                           hint="each chain (row of x) makes its own proposal and its own accept decision")


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
    loss = cd_loss(f, x_data.clone(), x_model.clone())
    checks.check_tensor("the CD loss", loss, shape=())
    if not loss.requires_grad:
        checks.fail("the CD loss has no gradient", "a scalar connected to f's parameters", "no autograd graph",
                    "do not wrap the computation in torch.no_grad() or call .item()")
    (grad,) = torch.autograd.grad(loss, f.theta, allow_unused=True)
    if grad is None:
        checks.fail("no gradient reaches f's parameters", "d loss / d theta", "None", "the loss must use f(x_data) and f(x_model)")
    expected = f.phi(x_model).mean(0) - f.phi(x_data).mean(0)
    checks.check_close("the gradient of the CD loss for f = theta^T phi(x)", grad, expected, atol=1e-8,
                       hint="minimizing the loss must raise f on the data and lower it on the model samples: "
                            "loss = mean f(x_model) - mean f(x_data), each a mean over its own batch")

    # The samples are constants: no gradient may flow into them (with Langevin samplers it would).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(405)
        net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()

    def f_net(x):
        return net(x).squeeze(-1)
    x_model_leaf = x_model.clone().requires_grad_(True)
    cd_loss(f_net, x_data.clone(), x_model_leaf).backward()
    if x_model_leaf.grad is not None and float(x_model_leaf.grad.abs().max()) > 0:
        checks.fail("gradient flows into the model samples", "x_model treated as a constant (no gradient)",
                    f"a gradient of size {float(x_model_leaf.grad.abs().max()):.3g} on x_model",
                    "detach the samples: f(x_model.detach())")
