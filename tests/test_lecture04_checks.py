"""Lecture 04 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture04

# ---------------------------------------------------------------- Exercise 1: the E-step

def log_joint(x, pi, mu, sigma):
    return pi.log() + MultivariateNormal(mu, sigma).log_prob(x[:, None, :])   # (N, K)


def e_step(x, pi, mu, sigma):
    return torch.softmax(log_joint(x, pi, mu, sigma), dim=1)


def e_step_by_hand(x, pi, mu, sigma):  # another correct route: explicit log-sum-exp
    lj = log_joint(x, pi, mu, sigma)
    return (lj - torch.logsumexp(lj, 1, keepdim=True)).exp()


def e_step_wrong_axis(x, pi, mu, sigma):
    return torch.softmax(log_joint(x, pi, mu, sigma), dim=0)


def e_step_no_weights(x, pi, mu, sigma):
    return torch.softmax(MultivariateNormal(mu, sigma).log_prob(x[:, None, :]), dim=1)


def e_step_naive(x, pi, mu, sigma):  # correct in exact arithmetic, 0/0 far from the components
    p = log_joint(x, pi, mu, sigma).exp()
    return p / p.sum(1, keepdim=True)


def e_step_precision(x, pi, mu, sigma):  # Sigma used as if it were the precision matrix
    return torch.softmax(pi.log() + MultivariateNormal(mu, precision_matrix=sigma).log_prob(x[:, None, :]), 1)


def test_e_step_accepts_correct():
    lecture04.check_e_step(e_step)
    lecture04.check_e_step(e_step_by_hand)


@pytest.mark.parametrize("wrong, message", [
    (e_step_wrong_axis, "does not sum to 1"),
    (e_step_no_weights, "not close enough"),
    (e_step_precision, "not close enough"),
    (e_step_naive, "far from every component"),
])
def test_e_step_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture04.check_e_step(wrong)


def test_e_step_stub_raises_not_implemented():
    def stub(x, pi, mu, sigma):
        raise NotImplementedError("ex1_e_step")
    with pytest.raises(NotImplementedError):
        lecture04.check_e_step(stub)


# ---------------------------------------------------------------- Exercise 2: the M-step

def m_step(x, r):
    nk = r.sum(0)                                              # (K,)
    pi = nk / len(x)
    mu = r.T @ x / nk[:, None]                                 # (K, D)
    diff = x[:, None, :] - mu                                  # (N, K, D)
    sigma = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None]
    return pi, mu, sigma


def m_step_loop(x, r):  # another correct route, one component at a time
    pis, mus, sigmas = [], [], []
    for k in range(r.shape[1]):
        w = r[:, k]
        mu = (w[:, None] * x).sum(0) / w.sum()
        c = x - mu
        pis.append(w.mean())
        mus.append(mu)
        sigmas.append((w[:, None] * c).T @ c / w.sum())
    return torch.stack(pis), torch.stack(mus), torch.stack(sigmas)


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


def m_step_cov_over_n(x, r):  # covariance divided by N instead of N_k
    pi, mu, _ = m_step(x, r)
    diff = x[:, None, :] - mu
    return pi, mu, torch.einsum("nk,nki,nkj->kij", r, diff, diff) / len(x)


def test_m_step_accepts_correct():
    lecture04.check_m_step(m_step)
    lecture04.check_m_step(m_step_loop)


@pytest.mark.parametrize("wrong, message", [
    (m_step_unweighted_cov, "Sigma does not maximize"),
    (m_step_uncentred_cov, "Sigma does not maximize"),
    (m_step_cov_at_data_mean, "Sigma does not maximize"),
    (m_step_mean_over_n, "mu does not maximize"),
    (m_step_unnormalized_pi, "does not sum to 1"),
    (m_step_cov_over_n, "Sigma does not maximize"),
])
def test_m_step_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture04.check_m_step(wrong)


# ---------------------------------------------------------------- Exercise 3: importance sampling

def importance_log_px(log_joint, q, x, K):
    z = q.sample((K,))                                          # (K, N, d)
    log_w = log_joint(x, z) - q.log_prob(z).sum(-1)             # (K, N)
    return torch.logsumexp(log_w, 0) - math.log(K)


def importance_log_px_rsample(log_joint, q, x, K):  # another correct route: explicit reparameterized draws
    z = q.loc + q.scale * torch.randn((K, *q.loc.shape), dtype=q.loc.dtype)
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


def test_importance_reference_log_px_matches_scipy():
    from scipy import stats
    model = lecture04._LinearGaussian(d=2, dim_x=6, s=0.7, seed=1)
    x = model.sample_x(5, seed=2)
    cov = (model.w @ model.w.T + 0.49 * torch.eye(6, dtype=torch.float64)).numpy()
    expected = stats.multivariate_normal(model.b.numpy(), cov).logpdf(x.numpy())
    assert torch.allclose(model.log_px(x), torch.from_numpy(expected), atol=1e-10)


def test_importance_accepts_correct():
    lecture04.check_importance_log_px(importance_log_px)
    lecture04.check_importance_log_px(importance_log_px_rsample)


@pytest.mark.parametrize("wrong, message", [
    (is_naive, "not finite"),
    (is_mean_of_logs, "(?s)far from the exact.*MEAN of the weights"),
    (is_no_log_k, "exact posterior as proposal"),
    (is_no_proposal_term, "exact posterior as proposal"),
])
def test_importance_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture04.check_importance_log_px(wrong)


def test_importance_check_leaves_the_global_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lecture04.check_importance_log_px(importance_log_px)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- Exercise 4: a mean-field update

def mean_field_update(j, m, Lambda, eta):
    others = Lambda[j] @ m - Lambda[j, j] * m[j]               # sum over i != j of Lambda_ji m_i
    return (eta[j] - others) / Lambda[j, j], 1 / Lambda[j, j]


def mean_field_update_mask(j, m, Lambda, eta):  # another correct route
    keep = torch.ones_like(m, dtype=torch.bool)
    keep[j] = False
    var = 1.0 / Lambda[j, j]
    return var * (eta[j] - (Lambda[j, keep] * m[keep]).sum()), var


def mf_includes_self(j, m, Lambda, eta):  # sums over all i, the old m_j included
    return (eta[j] - Lambda[j] @ m) / Lambda[j, j], 1 / Lambda[j, j]


def mf_covariance_variance(j, m, Lambda, eta):  # the posterior marginal variance, not the mean-field one
    mean, _ = mean_field_update(j, m, Lambda, eta)
    return mean, torch.linalg.inv(Lambda)[j, j]


def mf_exact_posterior_mean(j, m, Lambda, eta):  # ignores the current factors: the wrong expectation
    return torch.linalg.solve(Lambda, eta)[j] * 0 + eta[j] / Lambda[j, j], 1 / Lambda[j, j]


def mf_no_division(j, m, Lambda, eta):
    return eta[j] - (Lambda[j] @ m - Lambda[j, j] * m[j]), 1 / Lambda[j, j]


def test_mean_field_accepts_correct():
    lecture04.check_mean_field_update(mean_field_update)
    lecture04.check_mean_field_update(mean_field_update_mask)


@pytest.mark.parametrize("wrong, message", [
    (mf_includes_self, "mean of q_0 does not maximize"),
    (mf_covariance_variance, "variance of q_0 does not maximize"),
    (mf_exact_posterior_mean, "mean of q_0 does not maximize"),
    (mf_no_division, "mean of q_0 does not maximize"),
])
def test_mean_field_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture04.check_mean_field_update(wrong)
