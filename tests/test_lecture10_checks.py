"""Lecture 10 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture10

# ---------------------------------------------------------------- Exercise 1: log Z by quadrature


def log_partition(f, lim, n):
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    pts = torch.cartesian_prod(axis, axis)
    return torch.logsumexp(f(pts), 0) + 2 * torch.log(axis[1] - axis[0])


def log_partition_midpoint(f, lim, n):  # another correct rule: n cells, points at their centres
    h = 2 * lim / n
    axis = -lim + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    return torch.logsumexp(f(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)), 0) + 2 * math.log(h)


def log_partition_float32(f, lim, n):  # correct in float32 too
    axis = torch.linspace(-lim, lim, n)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis)), 0) + 2 * math.log(2 * lim / (n - 1))


def log_partition_no_area(f, lim, n):
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis)), 0)


def log_partition_1d_area(f, lim, n):  # the spacing, not the area of a cell
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis)), 0) + torch.log(axis[1] - axis[0])


def log_partition_off_by_one(f, lim, n):  # n points on [-lim, lim] but spacing 2 lim / n
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis)), 0) + 2 * math.log(2 * lim / n)


def log_partition_naive(f, lim, n):  # log of a sum of exponentials: overflows / underflows
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.log(torch.exp(f(torch.cartesian_prod(axis, axis))).sum() * (axis[1] - axis[0]) ** 2)


def log_partition_half_box(f, lim, n):  # integrates over [0, lim]^2 only
    axis = torch.linspace(0, lim, n, dtype=torch.float64)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis)), 0) + 2 * torch.log(axis[1] - axis[0])


def test_log_partition_accepts_correct():
    for fn in (log_partition, log_partition_midpoint, log_partition_float32):
        lecture10.check_log_partition(fn)


@pytest.mark.parametrize("wrong, message", [
    (log_partition_no_area, "not close enough"),
    (log_partition_1d_area, "not close enough"),
    (log_partition_off_by_one, "not close enough"),
    (log_partition_naive, "not finite"),
    (log_partition_half_box, "not close enough"),
])
def test_log_partition_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture10.check_log_partition(wrong)


# ---------------------------------------------------------------- Exercise 2: the MH transition matrix


def mh_matrix(p_tilde, Q):
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])
    T.fill_diagonal_(0)
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_loop(p_tilde, Q):  # another correct route: the textbook loop with an explicit acceptance
    K = len(p_tilde)
    T = torch.zeros(K, K, dtype=Q.dtype)
    for i in range(K):
        for j in range(K):
            if i != j and Q[i, j] > 0:
                T[i, j] = Q[i, j] * min(1.0, float(p_tilde[j] * Q[j, i] / (p_tilde[i] * Q[i, j])))
        T[i, i] = 1 - T[i].sum()
    return T


def mh_matrix_no_hastings(p_tilde, Q):  # Metropolis acceptance with an asymmetric proposal
    T = Q * torch.clamp(p_tilde[None, :] / p_tilde[:, None], max=1)
    T.fill_diagonal_(0)
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_no_diagonal(p_tilde, Q):  # rejected proposals forgotten
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])
    return T.fill_diagonal_(0)


def mh_matrix_divides_by_q(p_tilde, Q):  # 0 / 0 where Q has zeros
    T = Q * torch.clamp(p_tilde[None, :] * Q.T / (p_tilde[:, None] * Q), max=1)
    T.fill_diagonal_(0)
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_inverted(p_tilde, Q):  # acceptance ratio upside down
    T = Q * torch.clamp(p_tilde[:, None] * Q / (p_tilde[None, :] * Q.T).clamp_min(1e-300), max=1)
    T.fill_diagonal_(0)
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_barker(p_tilde, Q):  # Barker's rule: also reversible, but not the Metropolis-Hastings kernel
    r = p_tilde[None, :] * Q.T
    T = torch.where(Q > 0, Q * r / (r + p_tilde[:, None] * Q), torch.zeros_like(Q))
    T.fill_diagonal_(0)
    return T + torch.diag(1 - T.sum(1))


def test_mh_matrix_accepts_correct():
    lecture10.check_mh_transition_matrix(mh_matrix)
    lecture10.check_mh_transition_matrix(mh_matrix_loop)


@pytest.mark.parametrize("wrong, message", [
    (mh_matrix_no_hastings, "detailed balance"),
    (mh_matrix_no_diagonal, "sum to 1"),
    (mh_matrix_divides_by_q, "NaN or inf"),
    (mh_matrix_inverted, "detailed balance"),
    (mh_matrix_barker, "not close enough"),
])
def test_mh_matrix_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture10.check_mh_transition_matrix(wrong)


# ---------------------------------------------------------------- Exercise 3: one Metropolis-Hastings step


def mh_step(x, log_p, sigma):
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x_prop) - log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_ratio(x, log_p, sigma):  # another correct route: the ratio itself, min(1, r)
    x_prop = x + sigma * torch.randn_like(x)
    r = torch.exp(log_p(x_prop) - log_p(x)).clamp(max=1)
    accept = torch.rand_like(r) < r
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_inverted(x, log_p, sigma):  # sign error in the acceptance ratio
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x) - log_p(x_prop)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_always_move(x, log_p, sigma):  # rejected chains still move: a plain random walk
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x_prop) - log_p(x)
    return x_prop, accept


def mh_step_no_log_u(x, log_p, sigma):  # compares u, not log u, with the log-ratio
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)) < log_p(x_prop) - log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_variance(x, log_p, sigma):  # sigma used as a variance: still a valid sampler, wrong proposal scale
    x_prop = x + sigma**2 * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x_prop) - log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_greedy(x, log_p, sigma):  # accepts only uphill moves: an optimizer, not a sampler
    x_prop = x + sigma * torch.randn_like(x)
    accept = log_p(x_prop) > log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_float_mask(x, log_p, sigma):
    x_new, accept = mh_step(x, log_p, sigma)
    return x_new, accept.float()


def test_mh_step_accepts_correct():
    lecture10.check_mh_step(mh_step)
    lecture10.check_mh_step(mh_step_ratio)


@pytest.mark.parametrize("wrong, message", [
    (mh_step_inverted, "acceptance rate|do not follow"),
    (mh_step_always_move, "does not match the moves"),
    (mh_step_no_log_u, "acceptance rate"),
    (mh_step_variance, "acceptance rate"),
    (mh_step_greedy, "acceptance rate"),
    (mh_step_float_mask, "wrong dtype"),
])
def test_mh_step_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture10.check_mh_step(wrong)


def test_mh_step_check_keeps_the_random_stream():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    lecture10.check_mh_step(mh_step)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- Exercise 4: the CD loss


def cd_loss(f, x_data, x_model):
    return f(x_model.detach()).mean() - f(x_data).mean()


def cd_loss_negated(f, x_data, x_model):  # another correct route: minus the "log-likelihood surrogate"
    return -(f(x_data).mean() - f(x_model.detach()).mean())


def cd_loss_sign(f, x_data, x_model):
    return f(x_data).mean() - f(x_model.detach()).mean()


def cd_loss_sum(f, x_data, x_model):  # sums: wrong when the two batches differ in size
    return f(x_model.detach()).sum() - f(x_data).sum()


def cd_loss_no_detach(f, x_data, x_model):
    return f(x_model).mean() - f(x_data).mean()


def cd_loss_model_no_grad(f, x_data, x_model):  # the model term outside the graph: only the data term is trained
    with torch.no_grad():
        neg = f(x_model).mean()
    return neg - f(x_data).mean()


def cd_loss_data_only(f, x_data, x_model):
    return -f(x_data).mean()


def test_cd_loss_accepts_correct():
    lecture10.check_cd_loss(cd_loss)
    lecture10.check_cd_loss(cd_loss_negated)


@pytest.mark.parametrize("wrong, message", [
    (cd_loss_sign, "gradient of the CD loss"),
    (cd_loss_sum, "gradient of the CD loss"),
    (cd_loss_no_detach, "flows into the model samples"),
    (cd_loss_model_no_grad, "gradient of the CD loss"),
    (cd_loss_data_only, "gradient of the CD loss"),
])
def test_cd_loss_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture10.check_cd_loss(wrong)


@pytest.mark.parametrize("check", [lecture10.check_log_partition, lecture10.check_mh_transition_matrix,
                                   lecture10.check_mh_step, lecture10.check_cd_loss])
def test_stubs_raise_not_implemented(check):
    def stub(*args):
        raise NotImplementedError("stub")
    with pytest.raises(NotImplementedError):
        check(stub)
