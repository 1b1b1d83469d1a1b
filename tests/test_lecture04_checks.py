"""Lecture 04 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones, each for the reason its message gives (the registry of tests/exercise_cases.py)."""

import math

import pytest
import torch
from exercise_cases import AlwaysEqual, Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Agreeable
from torch.distributions import MultivariateNormal

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture04

# ---------------------------------------------------------------- Exercise 1: the E-step

def log_joint(x, pi, mu, sigma):
    return pi.log() + MultivariateNormal(mu, sigma).log_prob(x[:, None, :])   # (N, K)


def e_step(x, pi, mu, sigma):
    return torch.softmax(log_joint(x, pi, mu, sigma), dim=1)


def e_step_loop(x, pi, mu, sigma):  # one point and one component at a time, Gaussian density written out
    n, k = len(x), len(pi)
    r = torch.empty(n, k, dtype=x.dtype)
    for i in range(n):
        logs = []
        for j in range(k):
            diff = x[i] - mu[j]
            maha = diff @ torch.linalg.solve(sigma[j], diff)
            logs.append(pi[j].log() - 0.5 * (maha + torch.logdet(2 * math.pi * sigma[j])))
        logs = torch.stack(logs)
        m = logs.max()
        w = (logs - m).exp()
        r[i] = w / w.sum()
    return r


def e_step_float32(x, pi, mu, sigma):  # the whole computation in float32
    return torch.softmax(log_joint(x.float(), pi.float(), mu.float(), sigma.float()), dim=1)


def e_step_cholesky(x, pi, mu, sigma):  # another route: Cholesky factors, explicit log-sum-exp, float64
    chol = torch.linalg.cholesky(sigma)                                        # (K, D, D)
    diff = (x[:, None, :] - mu)[..., None]                                     # (N, K, D, 1)
    y = torch.linalg.solve_triangular(chol, diff, upper=False)[..., 0]         # (N, K, D)
    log_det = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)                # (K,)
    lj = pi.log() - 0.5 * ((y**2).sum(-1) + log_det + x.shape[1] * math.log(2 * math.pi))
    return (lj - torch.logsumexp(lj, 1, keepdim=True)).exp()


def e_step_wrong_axis(x, pi, mu, sigma):
    return torch.softmax(log_joint(x, pi, mu, sigma), dim=0)


def e_step_no_weights(x, pi, mu, sigma):
    return torch.softmax(MultivariateNormal(mu, sigma).log_prob(x[:, None, :]), dim=1)


def e_step_naive(x, pi, mu, sigma):  # correct in exact arithmetic, 0/0 far from the components
    p = log_joint(x, pi, mu, sigma).exp()
    return p / p.sum(1, keepdim=True)


def e_step_naive_float32(x, pi, mu, sigma):  # float32 densities: they underflow even sooner
    p = log_joint(x.float(), pi.float(), mu.float(), sigma.float()).exp()
    return p / p.sum(1, keepdim=True)


def e_step_precision(x, pi, mu, sigma):  # Sigma used as if it were the precision matrix
    return torch.softmax(pi.log() + MultivariateNormal(mu, precision_matrix=sigma).log_prob(x[:, None, :]), 1)


def e_step_transposed(x, pi, mu, sigma):  # (K, N) instead of (N, K)
    return e_step(x, pi, mu, sigma).T


def e_step_clamped(x, pi, mu, sigma):  # "fixes" the 0/0 with an epsilon: finite, and wrong far away
    p = log_joint(x, pi, mu, sigma).exp() + 1e-300
    return p / p.sum(1, keepdim=True)


def e_step_in_place(x, pi, mu, sigma):  # centres x in place: the caller's data move
    x -= x.mean(0)
    return e_step(x + x.new_zeros(()), pi, mu, sigma)


def e_step_subclass(x, pi, mu, sigma):
    return e_step(x, pi, mu, sigma).as_subclass(Agreeable)


def e_step_raw_error(x, pi, mu, sigma):  # a shape mistake that PyTorch reports by itself
    return torch.softmax(pi.log() + MultivariateNormal(mu, sigma).log_prob(x), dim=1)


# ---------------------------------------------------------------- Exercise 2: the M-step

def m_step(x, r):
    nk = r.sum(0)                                              # (K,)
    pi = nk / len(x)
    mu = r.T @ x / nk[:, None]                                 # (K, D)
    diff = x[:, None, :] - mu                                  # (N, K, D)
    sigma = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None]
    return pi, mu, sigma


def m_step_loop(x, r):  # one component and one point at a time
    pis, mus, sigmas = [], [], []
    for k in range(r.shape[1]):
        w = r[:, k]
        nk = w.sum()
        mu = sum(w[i] * x[i] for i in range(len(x))) / nk
        sigma = sum(w[i] * torch.outer(x[i] - mu, x[i] - mu) for i in range(len(x))) / nk
        pis.append(nk / len(x))
        mus.append(mu)
        sigmas.append(sigma)
    return torch.stack(pis), torch.stack(mus), torch.stack(sigmas)


def m_step_float32(x, r):
    return m_step(x.float(), r.float())


def m_step_cov_by_matmul(x, r):  # another route: weighted second moments about the new mean, float64
    nk = r.sum(0)
    mu = (r.T @ x) / nk[:, None]
    sigmas = []
    for k in range(r.shape[1]):
        c = (x - mu[k]) * r[:, k : k + 1].sqrt()
        sigmas.append(c.T @ c / nk[k])
    return nk / nk.sum(), mu, torch.stack(sigmas)


def m_step_unweighted_cov(x, r):
    pi, mu, _ = m_step(x, r)
    diff = x[:, None, :] - mu
    return pi, mu, torch.einsum("nki,nkj->kij", diff, diff) / len(x)


def m_step_uncentred_cov(x, r):
    pi, mu, _ = m_step(x, r)
    return pi, mu, torch.einsum("nk,ni,nj->kij", r, x, x) / r.sum(0)[:, None, None]


def m_step_cov_at_data_mean(x, r):  # centred at the overall mean instead of the new mu_k
    pi, mu, _ = m_step(x, r)
    c = x - x.mean(0)
    return pi, mu, torch.einsum("nk,ni,nj->kij", r, c, c) / r.sum(0)[:, None, None]


def m_step_mean_over_n(x, r):  # divides by N instead of N_k
    pi, _, sigma = m_step(x, r)
    return pi, r.T @ x / len(x), sigma


def m_step_unnormalized_pi(x, r):
    _, mu, sigma = m_step(x, r)
    return r.sum(0), mu, sigma


def m_step_half(x, r):  # half precision: about three significant digits
    pi, mu, sigma = m_step(x.half().float(), r.half().float())
    return pi.half().double(), mu.half().double(), sigma.half().double()


def m_step_transposed_mu(x, r):  # mu as (D, K)
    pi, mu, sigma = m_step(x, r)
    return pi, mu.T, sigma


def m_step_in_place(x, r):  # normalizes r in place
    r /= r.sum(0)
    return m_step(x, r * len(x) / len(x))


def m_step_subclass(x, r):
    pi, mu, sigma = m_step(x, r)
    return pi, mu.as_subclass(Agreeable), sigma


def m_step_raw_error(x, r):  # r @ x instead of r.T @ x
    nk = r.sum(0)
    return nk / len(x), r @ x / nk[:, None], None


def m_step_lie(x, r):
    pi, mu, sigma = m_step(x, r)
    return pi, mu, AlwaysEqual()


# ---------------------------------------------------------------- Exercise 3: importance sampling

def importance_log_px(log_joint, q, x, K):
    z = q.sample((K,))                                          # (K, N, d)
    log_w = log_joint(x, z) - q.log_prob(z).sum(-1)             # (K, N)
    return torch.logsumexp(log_w, 0) - math.log(K)


def importance_log_px_loop(log_joint, q, x, K):  # one sample at a time, a running log-sum-exp
    running = None
    for _ in range(K):
        z = q.loc + q.scale * torch.randn(q.loc.shape, dtype=q.loc.dtype)      # (N, d)
        log_w = log_joint(x, z) - q.log_prob(z).sum(-1)                      # (N,)
        running = log_w if running is None else torch.logaddexp(running, log_w)
    return running - math.log(K)


def importance_log_px_float32(log_joint, q, x, K):  # weights rounded to float32 before averaging
    z = q.sample((K,))
    log_w = (log_joint(x, z) - q.log_prob(z).sum(-1)).float()
    return torch.logsumexp(log_w, 0) - math.log(K)


def importance_log_px_max_shift(log_joint, q, x, K):  # another route: subtract the max explicitly
    z = q.rsample((K,))
    log_w = log_joint(x, z) - q.log_prob(z).sum(-1)
    m = log_w.max(0).values
    return m + (log_w - m).exp().mean(0).log()


def is_naive(log_joint, q, x, K):  # log of the mean of exp: underflows
    z = q.sample((K,))
    return (log_joint(x, z) - q.log_prob(z).sum(-1)).exp().mean(0).log()


def is_mean_of_logs(log_joint, q, x, K):  # the ELBO, not log p(x)
    z = q.sample((K,))
    return (log_joint(x, z) - q.log_prob(z).sum(-1)).mean(0)


def is_no_log_k(log_joint, q, x, K):
    z = q.sample((K,))
    return torch.logsumexp(log_joint(x, z) - q.log_prob(z).sum(-1), 0)


def is_no_proposal_term(log_joint, q, x, K):  # as if the samples came from the prior
    z = q.sample((K,))
    return torch.logsumexp(log_joint(x, z), 0) - math.log(K)


def is_log_q_not_summed(log_joint, q, x, K):  # log q left per coordinate: broadcasting error or wrong shape
    z = q.sample((K,))
    return torch.logsumexp(log_joint(x, z)[..., None] - q.log_prob(z), 0) - math.log(K)


def is_one_sample_repeated(log_joint, q, x, K):  # one draw used K times: no averaging at all
    z = q.sample((1,)).expand(K, -1, -1)
    return torch.logsumexp(log_joint(x, z) - q.log_prob(z).sum(-1), 0) - math.log(K)


def is_clamped(log_joint, q, x, K):  # avoids log(0) by clamping the log weights: finite and wrong
    z = q.sample((K,))
    log_w = (log_joint(x, z) - q.log_prob(z).sum(-1)).clamp(min=-700)
    return log_w.exp().mean(0).log()


def is_raw_error(log_joint, q, x, K):  # logsumexp without the axis to reduce
    z = q.sample((K,))
    return torch.logsumexp(log_joint(x, z) - q.log_prob(z).sum(-1)) - math.log(K)


def is_subclass(log_joint, q, x, K):
    return importance_log_px(log_joint, q, x, K).as_subclass(Agreeable)


def is_item(log_joint, q, x, K):  # a Python list instead of a tensor
    return importance_log_px(log_joint, q, x, K).tolist()


def test_importance_reference_log_px_matches_scipy():
    from scipy import stats
    model = lecture04._LinearGaussian(d=2, dim_x=6, s=0.7, seed=1)
    x = model.sample_x(5, seed=2)
    cov = (model.w @ model.w.T + 0.49 * torch.eye(6, dtype=torch.float64)).numpy()
    expected = stats.multivariate_normal(model.b.numpy(), cov).logpdf(x.numpy())
    assert torch.allclose(model.log_px(x), torch.from_numpy(expected), atol=1e-10)


# ---------------------------------------------------------------- Exercise 4: the ELBO in closed form

def elbo_gaussian(model, x, m_q, S_q):
    d, D, s2 = len(m_q), len(x), model.sigma**2
    e_log_prior = -0.5 * (d * math.log(2 * math.pi) + m_q @ m_q + S_q.trace())
    resid = x - model.b - model.W @ m_q
    e_log_lik = -0.5 * (D * math.log(2 * math.pi * s2) + (resid @ resid + (model.W @ S_q @ model.W.T).trace()) / s2)
    return e_log_lik + e_log_prior + 0.5 * torch.logdet(2 * math.pi * math.e * S_q)


def elbo_gaussian_loop(model, x, m_q, S_q):  # every sum written out; Python floats
    W, b, s2 = model.W.tolist(), model.b.tolist(), model.sigma**2
    D, d = len(W), len(W[0])
    m, S = m_q.tolist(), S_q.tolist()
    prior = -0.5 * (d * math.log(2 * math.pi) + sum(v * v for v in m) + sum(S[i][i] for i in range(d)))
    lik = -0.5 * D * math.log(2 * math.pi * s2)
    for r in range(D):
        mean = b[r] + sum(W[r][i] * m[i] for i in range(d))
        var = sum(W[r][i] * S[i][j] * W[r][j] for i in range(d) for j in range(d))
        lik -= 0.5 * ((float(x[r]) - mean) ** 2 + var) / s2
    entropy = 0.5 * (d * math.log(2 * math.pi * math.e) + math.log(float(torch.det(S_q))))
    return torch.tensor(prior + lik + entropy, dtype=torch.float64)


def elbo_gaussian_float32(model, x, m_q, S_q):
    class M:
        W, b, sigma = model.W.float(), model.b.float(), model.sigma
    return elbo_gaussian(M, x.float(), m_q.float(), S_q.float())


def elbo_gaussian_kl_form(model, x, m_q, S_q):  # another route: E_q[log p(x|z)] - KL(q || p(z)), torch.distributions
    q = MultivariateNormal(m_q, S_q)
    prior = MultivariateNormal(torch.zeros_like(m_q), torch.eye(len(m_q), dtype=m_q.dtype))
    resid = x - model.b - model.W @ m_q
    e_log_lik = -0.5 * (len(x) * math.log(2 * math.pi * model.sigma**2)
                        + (resid @ resid + (model.W @ S_q @ model.W.T).trace()) / model.sigma**2)
    return e_log_lik - torch.distributions.kl_divergence(q, prior)


def eg_no_entropy(model, x, m_q, S_q):
    return elbo_gaussian(model, x, m_q, S_q) - 0.5 * torch.logdet(2 * math.pi * math.e * S_q)


def eg_entropy_without_2pie(model, x, m_q, S_q):
    return eg_no_entropy(model, x, m_q, S_q) + 0.5 * torch.logdet(S_q)


def eg_no_trace_in_likelihood(model, x, m_q, S_q):  # as if z were m_q exactly
    return elbo_gaussian(model, x, m_q, S_q) + 0.5 * (model.W @ S_q @ model.W.T).trace() / model.sigma**2


def eg_no_trace_in_prior(model, x, m_q, S_q):
    return elbo_gaussian(model, x, m_q, S_q) + 0.5 * S_q.trace()


def eg_sigma_as_variance(model, x, m_q, S_q):  # sigma used where sigma^2 belongs
    class M:
        W, b, sigma = model.W, model.b, model.sigma**0.5
    return elbo_gaussian(M, x, m_q, S_q)


def eg_entropy_subtracted(model, x, m_q, S_q):
    return eg_no_entropy(model, x, m_q, S_q) - 0.5 * torch.logdet(2 * math.pi * math.e * S_q)


def eg_diagonal_only(model, x, m_q, S_q):  # treats q as factorized: only the diagonal of S_q
    return elbo_gaussian(model, x, m_q, torch.diag(S_q.diagonal()))


def eg_half(model, x, m_q, S_q):
    class M:
        W, b, sigma = model.W.half().float(), model.b.half().float(), model.sigma
    return elbo_gaussian(M, x.half().float(), m_q.half().float(), S_q.half().float()).half().double()


def eg_per_dimension(model, x, m_q, S_q):  # the likelihood term left per observed dimension
    resid = x - model.b - model.W @ m_q
    return -0.5 * (math.log(2 * math.pi * model.sigma**2) + resid**2 / model.sigma**2)


def eg_in_place(model, x, m_q, S_q):  # adds jitter to the caller's S_q
    S_q += 1e-3 * torch.eye(len(m_q), dtype=S_q.dtype)
    return elbo_gaussian(model, x, m_q, S_q)


def eg_subclass(model, x, m_q, S_q):
    return elbo_gaussian(model, x, m_q, S_q).as_subclass(Agreeable)


def eg_raw_error(model, x, m_q, S_q):  # W S W without the transpose
    return elbo_gaussian(model, x, m_q, S_q) + (model.W @ S_q @ model.W).trace() * 0


# ---------------------------------------------------------------- Exercise 5: a mean-field update

def mean_field_update(j, m, Lambda, eta):
    others = Lambda[j] @ m - Lambda[j, j] * m[j]               # sum over i != j of Lambda_ji m_i
    return (eta[j] - others) / Lambda[j, j], 1 / Lambda[j, j]


def mean_field_update_loop(j, m, Lambda, eta):  # the sum over i != j written out; Python floats
    s = 0.0
    for i in range(len(m)):
        if i != j:
            s += float(Lambda[j, i]) * float(m[i])
    return (float(eta[j]) - s) / float(Lambda[j, j]), 1.0 / float(Lambda[j, j])


def mean_field_update_float32(j, m, Lambda, eta):
    m, Lambda, eta = m.float(), Lambda.float(), eta.float()
    keep = torch.arange(len(m)) != j
    var = 1.0 / Lambda[j, j]
    return var * (eta[j] - (Lambda[j, keep] * m[keep]).sum()), var


def mean_field_update_conditional(j, m, Lambda, eta):  # another route: the Gaussian conditional of z_j given the rest
    mean_all = torch.linalg.solve(Lambda, eta)                 # the joint mean Lambda^-1 eta
    keep = torch.arange(len(m)) != j
    shift = -(Lambda[j, keep] @ (m[keep] - mean_all[keep])) / Lambda[j, j]
    return mean_all[j] + shift, 1 / Lambda[j, j]


def mf_includes_self(j, m, Lambda, eta):  # sums over all i, the old m_j included
    return (eta[j] - Lambda[j] @ m) / Lambda[j, j], 1 / Lambda[j, j]


def mf_covariance_variance(j, m, Lambda, eta):  # the posterior marginal variance, not the mean-field one
    mean, _ = mean_field_update(j, m, Lambda, eta)
    return mean, torch.linalg.inv(Lambda)[j, j]


def mf_exact_posterior_mean(j, m, Lambda, eta):  # ignores the other factors
    return eta[j] / Lambda[j, j], 1 / Lambda[j, j]


def mf_no_division(j, m, Lambda, eta):
    return eta[j] - (Lambda[j] @ m - Lambda[j, j] * m[j]), 1 / Lambda[j, j]


def mf_sign(j, m, Lambda, eta):  # adds the other factors' pull instead of subtracting it
    return (eta[j] + (Lambda[j] @ m - Lambda[j, j] * m[j])) / Lambda[j, j], 1 / Lambda[j, j]


def mf_half(j, m, Lambda, eta):  # half precision
    mean, var = mean_field_update(j, m.half(), Lambda.half(), eta.half())
    return mean.double(), var.double()


def mf_vector(j, m, Lambda, eta):  # returns all the coordinates' updates at once
    return (eta - (Lambda @ m - Lambda.diagonal() * m)) / Lambda.diagonal(), 1 / Lambda.diagonal()


def mf_in_place(j, m, Lambda, eta):  # writes the new mean into m
    m[j] = mean_field_update(j, m, Lambda, eta)[0]
    return m[j].clone(), 1 / Lambda[j, j]


def mf_subclass(j, m, Lambda, eta):
    mean, var = mean_field_update(j, m, Lambda, eta)
    return mean.as_subclass(Agreeable), var


def mf_raw_error(j, m, Lambda, eta):  # a matrix-vector product with the wrong shapes
    return (eta[j] - Lambda[j][:, None] @ m[:, None]) / Lambda[j, j], 1 / Lambda[j, j]


EXERCISES = {
    "ex1_e_step": Exercise(
        check=lecture04.check_e_step,
        correct=[e_step, e_step_loop, e_step_float32, e_step_cholesky],
        wrong=[Wrong(e_step_wrong_axis, "does not sum to 1", "formula"),
               Wrong(e_step_no_weights, "not close enough", "formula"),
               Wrong(e_step_precision, "not close enough", "formula"),
               Wrong(e_step_naive, "far from every component", "stability"),
               Wrong(e_step_naive_float32, "far from every component", "precision"),
               Wrong(e_step_clamped, "far-away points is not close", "stability"),
               Wrong(e_step_transposed, "wrong shape", "shape"),
               Wrong(e_step_in_place, "changed its argument x in place", "property"),
               Wrong(e_step_subclass, "wrong type", "lie"),
               Wrong(e_step_raw_error, "raised ValueError", "raw")],
    ),
    "ex2_m_step": Exercise(
        check=lecture04.check_m_step,
        correct=[m_step, m_step_loop, m_step_float32, m_step_cov_by_matmul],
        wrong=[Wrong(m_step_unweighted_cov, "Sigma does not maximize", "formula"),
               Wrong(m_step_uncentred_cov, "Sigma does not maximize", "formula"),
               Wrong(m_step_cov_at_data_mean, "Sigma does not maximize", "formula"),
               Wrong(m_step_mean_over_n, "mu does not maximize", "formula"),
               Wrong(m_step_unnormalized_pi, "does not sum to 1", "formula"),
               Wrong(m_step_half, "not close enough|does not maximize|does not sum", "precision"),
               Wrong(m_step_transposed_mu, "mu has the wrong shape", "shape"),
               Wrong(m_step_in_place, "changed its argument r in place", "property"),
               Wrong(m_step_subclass, "mu has the wrong type", "lie"),
               Wrong(m_step_lie, "Sigma has the wrong type", "lie"),
               Wrong(m_step_raw_error, "raised RuntimeError", "raw")],
    ),
    "ex3_importance_log_px": Exercise(
        check=lecture04.check_importance_log_px,
        correct=[importance_log_px, importance_log_px_loop, importance_log_px_float32, importance_log_px_max_shift],
        wrong=[Wrong(is_naive, "not finite", "precision"),
               Wrong(is_mean_of_logs, "(?s)far from the exact.*MEAN of the weights", "formula"),
               Wrong(is_no_log_k, "exact posterior as proposal", "formula"),
               Wrong(is_no_proposal_term, "exact posterior as proposal", "formula"),
               Wrong(is_log_q_not_summed, "wrong shape|raised RuntimeError", "shape"),
               Wrong(is_one_sample_repeated, "far from the exact", "property"),
               Wrong(is_clamped, "2000 observed dimensions is not close", "stability"),
               Wrong(is_raw_error, "raised TypeError", "raw"),
               Wrong(is_subclass, "wrong type", "lie"),
               Wrong(is_item, "wrong type", "lie")],
    ),
    "ex4_elbo_gaussian": Exercise(
        check=lecture04.check_elbo_gaussian,
        correct=[elbo_gaussian, elbo_gaussian_loop, elbo_gaussian_float32, elbo_gaussian_kl_form],
        wrong=[Wrong(eg_no_entropy, "posterior q = p\\(z\\|x\\) the ELBO is not log p", "formula"),
               Wrong(eg_entropy_without_2pie, "is not log p", "formula"),
               Wrong(eg_no_trace_in_likelihood, "is not log p|above log p", "formula"),
               Wrong(eg_no_trace_in_prior, "is not log p|above log p", "formula"),
               Wrong(eg_sigma_as_variance, "is not log p", "formula"),
               Wrong(eg_entropy_subtracted, "is not log p", "formula"),
               Wrong(eg_diagonal_only, "(?s)the ELBO.*not only its diagonal", "property"),
               Wrong(eg_half, "is not log p|is wrong", "precision"),
               Wrong(eg_per_dimension, "returns the wrong thing", "shape"),
               Wrong(eg_in_place, "changed its argument S_q in place", "property"),
               Wrong(eg_subclass, "wrong type", "lie"),
               Wrong(eg_raw_error, "raised RuntimeError", "raw")],
    ),
    "ex5_mean_field_update": Exercise(
        check=lecture04.check_mean_field_update,
        correct=[mean_field_update, mean_field_update_loop, mean_field_update_float32, mean_field_update_conditional],
        wrong=[Wrong(mf_includes_self, "mean of q_0 does not maximize", "formula"),
               Wrong(mf_covariance_variance, "variance of q_0 does not maximize", "formula"),
               Wrong(mf_exact_posterior_mean, "mean of q_0 does not maximize", "formula"),
               Wrong(mf_no_division, "mean of q_0 does not maximize", "formula"),
               Wrong(mf_sign, "mean of q_0 does not maximize", "formula"),
               Wrong(mf_half, "does not maximize", "precision"),
               Wrong(mf_vector, "not a finite number", "shape"),
               Wrong(mf_in_place, "changed its argument m in place", "property"),
               Wrong(mf_subclass, "wrong type", "lie"),
               Wrong(mf_raw_error, "raised RuntimeError", "raw")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_e_step_hint_for_underflow_points_at_log_space():
    """Beyond the registry: the hint for 0/0 far from the components names the remedy."""
    with pytest.raises(CheckError, match="normalize in log space"):
        lecture04.check_e_step(e_step_naive)
