"""Lecture 06 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones (tests/exercise_cases.py)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as _Liar
from scipy import special, stats
from torch.distributions import Normal

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture06

# ---------------------------------------------------------------- Exercise 1: the mixture-CDF flow


def cdf_flow(x, logits, mu, log_sigma):
    log_pi = torch.log_softmax(logits, 0)
    t = (x[:, None] - mu) / log_sigma.exp()
    z = (log_pi.exp() * torch.special.ndtr(t)).sum(1)
    return z, torch.logsumexp(log_pi + Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_flow_distributions(x, logits, mu, log_sigma):  # correct: torch.distributions
    comp = Normal(mu, log_sigma.exp())
    pi = torch.softmax(logits, 0)
    z = (pi * comp.cdf(x[:, None])).sum(1)
    return z, torch.logsumexp(pi.log() + comp.log_prob(x[:, None]), 1)


def cdf_flow_loop(x, logits, mu, log_sigma):  # correct: a loop over the components, a running logaddexp
    log_pi = logits - torch.logsumexp(logits, 0)
    z, log_det = torch.zeros_like(x), torch.full_like(x, -math.inf)
    for k in range(len(mu)):
        t = (x - mu[k]) / torch.exp(log_sigma[k])
        z = z + torch.exp(log_pi[k]) * 0.5 * torch.erfc(-t / math.sqrt(2))
        log_det = torch.logaddexp(log_det, log_pi[k] - 0.5 * t**2 - 0.5 * math.log(2 * math.pi) - log_sigma[k])
    return z, log_det


def cdf_flow_float32(x, logits, mu, log_sigma):  # correct: computed in float32 whatever comes in
    return cdf_flow(x.float(), logits.float(), mu.float(), log_sigma.float())


def cdf_no_softmax(x, logits, mu, log_sigma):  # formula: logits used as weights
    t = (x[:, None] - mu) / log_sigma.exp()
    z = (logits * torch.special.ndtr(t)).sum(1)
    return z, torch.logsumexp(logits.abs().log() + Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_missing_chain_rule(x, logits, mu, log_sigma):  # formula: forgets the 1/sigma_k
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    log_pi = torch.log_softmax(logits, 0)
    t = (x[:, None] - mu) / log_sigma.exp()
    return z, torch.logsumexp(log_pi + Normal(0.0, 1.0).log_prob(t), 1)


def cdf_missing_weights(x, logits, mu, log_sigma):  # formula: density without the mixing weights
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    t = (x[:, None] - mu) / log_sigma.exp()
    return z, torch.logsumexp(Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_log_of_cdf(x, logits, mu, log_sigma):  # formula: log_det = log z
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    return z, z.log()


def cdf_log_of_sum(x, logits, mu, log_sigma):  # precision: -inf in the float32 tails
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    pi = torch.softmax(logits, 0)
    return z, (pi * Normal(mu, log_sigma.exp()).log_prob(x[:, None]).exp()).sum(1).log()


def cdf_scipy(x, logits, mu, log_sigma):  # property: right numbers, computed outside autograd
    xs, lg, m, ls = (v.detach().cpu().numpy() for v in (x, logits, mu, log_sigma))
    log_pi = lg - special.logsumexp(lg)
    z = (np.exp(log_pi) * stats.norm.cdf(xs[:, None], m, np.exp(ls))).sum(1)
    log_det = special.logsumexp(log_pi + stats.norm.logpdf(xs[:, None], m, np.exp(ls)), axis=1)
    return torch.from_numpy(z).to(x.dtype), torch.from_numpy(log_det).to(x.dtype)


def cdf_log_det_column(x, logits, mu, log_sigma):  # shape: log_det (N, 1)
    z, log_det = cdf_flow(x, logits, mu, log_sigma)
    return z, log_det[:, None]


def cdf_subclass(x, logits, mu, log_sigma):  # lie
    z, log_det = cdf_flow(x, logits, mu, log_sigma)
    return z, log_det.as_subclass(_Liar)


def cdf_no_broadcast(x, logits, mu, log_sigma):  # raw: x (N,) against parameters (K,) without x[:, None]
    comp = Normal(mu, log_sigma.exp())
    return (torch.softmax(logits, 0) * comp.cdf(x)).sum(1), comp.log_prob(x).logsumexp(1)


# ---------------------------------------------------------------- Exercise 2: the change of variables formula


def cov(x, f_inverse, log_p_z):
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) + torch.linalg.slogdet(jac)[1]


def cov_loop(x, f_inverse, log_p_z):  # correct: one Jacobian per point
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v[None])[0], row)
        out.append(log_p_z(f_inverse(row[None]))[0] + torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def cov_func(x, f_inverse, log_p_z):  # correct: torch.func, per-point Jacobians by vmap(jacrev)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: f_inverse(v[None])[0]))(x)
    return log_p_z(f_inverse(x)) + torch.linalg.slogdet(jac)[1]


def cov_float32(x, f_inverse, log_p_z):  # correct: the determinant taken in float32
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return (log_p_z(f_inverse(x)).float() + torch.linalg.slogdet(jac.float())[1])


def cov_logdet_no_abs(x, f_inverse, log_p_z):  # edge: NaN for a negative determinant
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) + torch.logdet(jac)


def cov_sign_error(x, f_inverse, log_p_z):  # formula: minus the log-det of f^-1
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) - torch.linalg.slogdet(jac)[1]


def cov_base_at_x(x, f_inverse, log_p_z):  # formula: log p_Z at x instead of at z = f^-1(x)
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(x) + torch.linalg.slogdet(jac)[1]


def cov_no_jacobian(x, f_inverse, log_p_z):  # formula
    return log_p_z(f_inverse(x))


def cov_transposed_jacobian_blocks(x, f_inverse, log_p_z):  # formula: d x / d z by a wrong permute is fine...
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 2, 0)
    return log_p_z(f_inverse(x)) + torch.linalg.slogdet(jac)[1]   # ...transposed: the same det, so correct


def cov_column(x, f_inverse, log_p_z):  # shape: (N, 1)
    return cov(x, f_inverse, log_p_z)[:, None]


def cov_subclass(x, f_inverse, log_p_z):  # lie
    return cov(x, f_inverse, log_p_z).as_subclass(_Liar)


def cov_full_jacobian(x, f_inverse, log_p_z):  # raw: slogdet of the whole (N, D, N, D) Jacobian
    jac = torch.autograd.functional.jacobian(f_inverse, x)
    return log_p_z(f_inverse(x)) + torch.linalg.slogdet(jac)[1]


# ---------------------------------------------------------------- Exercise 3: the planar layer


def planar(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))


def planar_psi(z, u, w, b):  # correct: psi(z) written out, then the lemma
    a = z @ w + b
    psi = (1 / torch.cosh(a) ** 2)[:, None] * w             # (N, D)
    return z + torch.tanh(a)[:, None] * u, (1 + psi @ u).abs().log()


def planar_loop(z, u, w, b):  # correct: one point at a time
    xs, lds = [], []
    for row in z:
        h = torch.tanh((row * w).sum() + b)
        xs.append(row + h * u)
        lds.append(torch.log(torch.abs(1 + (1 - h * h) * (w * u).sum())))
    return torch.stack(xs), torch.stack(lds)


def planar_float64(z, u, w, b):  # correct: computed in float64, returned in z's dtype
    x, log_det = planar(z.double(), u.double(), w.double(), b.double())
    return x.to(z.dtype), log_det.to(z.dtype)


def planar_no_abs(z, u, w, b):  # edge: 1 + u^T psi < 0 where the layer is not invertible
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(1 + (1 - h**2) * (w @ u))


def planar_h_not_derivative(z, u, w, b):  # formula: h instead of h'
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + h * (w @ u)))


def planar_no_h_prime(z, u, w, b):  # formula: log|1 + w^T u|
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + w @ u)).expand(len(z))


def planar_sign_error(z, u, w, b):  # formula
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 - (1 - h**2) * (w @ u)))


def planar_u_w_swapped(z, u, w, b):  # formula: moves along w instead of u
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * w, torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))


def planar_no_log_det(z, u, w, b):  # formula
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, z.new_zeros(len(z))


def planar_detached_log_det(z, u, w, b):  # property: log q would not train u and w
    x, log_det = planar(z, u, w, b)
    return x, log_det.detach()


def planar_in_place(z, u, w, b):  # property: moves the caller's z
    h = torch.tanh(z @ w + b)
    log_det = torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))
    return z.add_(h[:, None] * u), log_det


def planar_log_det_column(z, u, w, b):  # shape
    x, log_det = planar(z, u, w, b)
    return x, log_det[:, None]


def planar_subclass(z, u, w, b):  # lie
    x, log_det = planar(z, u, w, b)
    return x.as_subclass(_Liar), log_det


def planar_dot(z, u, w, b):  # raw: torch.dot on a batch
    h = torch.tanh(torch.dot(z, w) + b)
    return z + h * u, torch.log(torch.abs(1 + (1 - h**2) * torch.dot(w, u)))


# ---------------------------------------------------------------- Exercise 4: the constraint


def u_hat(u, w):
    wu = w @ u
    return u + (-1 + F.softplus(wu) - wu) * w / (w @ w)


def u_hat_projection(u, w):  # correct: split u into its parts along and across w
    w_unit = w / w.norm()
    along = (u @ w_unit) * w_unit
    return u - along + (-1 + torch.log1p(torch.exp(-(w @ u).abs())) + torch.relu(w @ u)) * w / (w @ w)


def u_hat_loop(u, w):  # correct: explicit sums over the coordinates
    wu, ww = 0.0, 0.0
    for i in range(len(u)):
        wu = wu + w[i] * u[i]
        ww = ww + w[i] * w[i]
    m = -1 + torch.logaddexp(torch.zeros_like(wu), wu)
    return torch.stack([u[i] + (m - wu) * w[i] / ww for i in range(len(u))])


def u_hat_float64(u, w):  # correct: computed in float64, returned in u's dtype
    return u_hat(u.double(), w.double()).to(u.dtype)


def u_hat_sign_error(u, w):  # formula
    wu = w @ u
    return u + (wu - (-1 + F.softplus(wu))) * w / (w @ w)


def u_hat_norm_not_squared(u, w):  # formula
    wu = w @ u
    return u + (-1 + F.softplus(wu) - wu) * w / w.norm()


def u_hat_without_minus_one(u, w):  # formula: m(a) = softplus(a), not the paper's choice
    wu = w @ u
    return u + (F.softplus(wu) - wu) * w / (w @ w)


def u_hat_clamp(u, w):  # formula: only repairs u when w^T u < -1
    wu = w @ u
    return u + torch.clamp(-1 - wu, min=0) * w / (w @ w)


def u_hat_naive_softplus(u, w):  # precision: log(1 + exp(a)) overflows in float32 for a > 88
    wu = w @ u
    return u + (-1 + torch.log(1 + torch.exp(wu)) - wu) * w / (w @ w)


def u_hat_item(u, w):  # property: w^T u taken out of the graph
    wu = (w @ u).item()
    return u + (-1 + F.softplus(torch.tensor(wu, dtype=u.dtype)) - wu) * w / (w @ w)


def u_hat_in_place(u, w):  # property: changes the trained parameter
    wu = (w @ u).detach()
    with torch.no_grad():
        u += (-1 + F.softplus(wu) - wu) * w / (w @ w)
    return u


def u_hat_row(u, w):  # shape: (1, D)
    return u_hat(u, w)[None]


def u_hat_subclass(u, w):  # lie
    return u_hat(u, w).as_subclass(_Liar)


def u_hat_softplus_of_float(u, w):  # raw: F.softplus of a Python number
    wu = w @ u
    return u + (-1 + F.softplus(wu.item()) - wu) * w / (w @ w)


EXERCISES = {
    "ex1_cdf_flow": Exercise(
        check=lecture06.check_cdf_flow,
        correct=[cdf_flow, cdf_flow_distributions, cdf_flow_loop, cdf_flow_float32],
        wrong=[
            Wrong(cdf_no_softmax, "leaves \\[0, 1\\]", "formula"),
            Wrong(cdf_missing_chain_rule, "log_det = log F'\\(x\\)", "formula"),
            Wrong(cdf_missing_weights, "log_det = log F'\\(x\\)", "formula"),
            Wrong(cdf_log_of_cdf, "log_det = log F'\\(x\\)", "formula"),
            Wrong(cdf_log_of_sum, "not finite far in the tails", "precision"),
            Wrong(cdf_scipy, "not differentiable", "property"),
            Wrong(cdf_log_det_column, "wrong shape", "shape"),
            Wrong(cdf_subclass, "wrong type", "lie"),
            Wrong(cdf_no_broadcast, "raised", "raw"),
        ],
    ),
    "ex2_change_of_variables": Exercise(
        check=lecture06.check_change_of_variables,
        correct=[cov, cov_loop, cov_func, cov_float32, cov_transposed_jacobian_blocks],
        wrong=[
            Wrong(cov_sign_error, "not close enough", "formula"),
            Wrong(cov_base_at_x, "not close enough", "formula"),
            Wrong(cov_no_jacobian, "not close enough", "formula"),
            Wrong(cov_logdet_no_abs, "NaN or inf", "edge"),
            Wrong(cov_column, "wrong shape", "shape"),
            Wrong(cov_subclass, "wrong type", "lie"),
            Wrong(cov_full_jacobian, "raised", "raw"),
        ],
    ),
    "ex3_planar_layer": Exercise(
        check=lecture06.check_planar_layer,
        correct=[planar, planar_psi, planar_loop, planar_float64],
        wrong=[
            Wrong(planar_no_abs, "NaN or inf", "edge"),
            Wrong(planar_h_not_derivative, "log_det .*autograd Jacobian", "formula"),
            Wrong(planar_no_h_prime, "log_det .*autograd Jacobian", "formula"),
            Wrong(planar_sign_error, "log_det .*autograd Jacobian", "formula"),
            Wrong(planar_u_w_swapped, "f\\(z\\)", "formula"),
            Wrong(planar_no_log_det, "log_det .*autograd Jacobian", "formula"),
            Wrong(planar_detached_log_det, "log_det .*not differentiable", "property"),
            Wrong(planar_in_place, "changed z in place", "property"),
            Wrong(planar_log_det_column, "wrong shape", "shape"),
            Wrong(planar_subclass, "wrong type", "lie"),
            Wrong(planar_dot, "raised RuntimeError", "raw"),
        ],
    ),
    "ex4_constraint": Exercise(
        check=lecture06.check_constraint,
        correct=[u_hat, u_hat_projection, u_hat_loop, u_hat_float64],
        wrong=[
            Wrong(u_hat_sign_error, "w\\^T u_hat < -1", "formula"),
            Wrong(u_hat_norm_not_squared, "u_hat|w\\^T u_hat < -1", "formula"),
            Wrong(u_hat_without_minus_one, "u_hat .*not close enough", "formula"),
            Wrong(u_hat_clamp, "u_hat .*not close enough", "formula"),
            Wrong(u_hat_naive_softplus, "NaN or inf", "precision"),
            Wrong(u_hat_item, "gradient", "property"),
            Wrong(u_hat_in_place, "changed its inputs", "property"),
            Wrong(u_hat_row, "wrong shape", "shape"),
            Wrong(u_hat_subclass, "wrong type", "lie"),
            Wrong(u_hat_softplus_of_float, "raised TypeError", "raw"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_tails_are_checked_in_float32():
    """The float64 cases alone accept the log of a sum; the float32 far-tail case is what rejects it."""
    x = torch.tensor([-40.0, 40.0])
    assert not torch.isfinite(cdf_log_of_sum(x, torch.zeros(2), torch.zeros(2), torch.zeros(2))[1]).all()
    with pytest.raises(CheckError, match="far in the tails"):
        lecture06.check_cdf_flow(cdf_log_of_sum)
