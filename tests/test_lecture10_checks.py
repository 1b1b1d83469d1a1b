"""Lecture 10 checks: each accepts correct implementations written in different ways and rejects the common wrong
ones with the right message (tests/exercise_cases.py generates the tests from EXERCISES)."""

import math

import torch
from exercise_cases import AlwaysEqual as Always
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import LyingTensor as Liar

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


def log_partition_loop(f, lim, n):  # one grid row at a time, a running log-sum-exp
    h = 2 * lim / (n - 1)
    total = torch.tensor(-math.inf, dtype=torch.float64)
    for i in range(n):
        x1 = -lim + i * h
        row = torch.stack([torch.full((n,), x1, dtype=torch.float64), torch.linspace(-lim, lim, n, dtype=torch.float64)], 1)
        total = torch.logaddexp(total, torch.logsumexp(f(row).double(), 0))
    return total + 2 * math.log(h)


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


def log_partition_item(f, lim, n):  # a Python float: section 4 cannot train through it
    return log_partition(f, lim, n).item()


def log_partition_detached(f, lim, n):
    with torch.no_grad():
        return log_partition(f, lim, n)


def log_partition_meshgrid(f, lim, n):  # points as an (n, n, 2) grid: f gets the wrong shape
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1)
    return torch.logsumexp(f(pts), 0) + 2 * math.log(2 * lim / (n - 1))


def log_partition_transposed(f, lim, n):  # points as (2, n*n): f indexes the wrong axis
    axis = torch.linspace(-lim, lim, n, dtype=torch.float64)
    return torch.logsumexp(f(torch.cartesian_prod(axis, axis).T), 0) + 2 * math.log(2 * lim / (n - 1))


def log_partition_liar(f, lim, n):
    return log_partition(f, lim, n).as_subclass(Liar)


def log_partition_always(f, lim, n):
    return Always()


# ---------------------------------------------------------------- Exercise 2: the MH transition matrix


def mh_matrix(p_tilde, Q):
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])
    T = T - torch.diag(torch.diagonal(T))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_loop(p_tilde, Q):  # the textbook loop with an explicit acceptance
    K = len(p_tilde)
    T = torch.zeros(K, K, dtype=Q.dtype)
    for i in range(K):
        for j in range(K):
            if i != j and Q[i, j] > 0:
                T[i, j] = Q[i, j] * min(1.0, float(p_tilde[j] * Q[j, i] / (p_tilde[i] * Q[i, j])))
        T[i, i] = 1 - T[i].sum()
    return T


def mh_matrix_float32(p_tilde, Q):  # the same in float32: rounding-level errors must pass
    p, q = p_tilde.float(), Q.float()
    T = torch.where(q > 0, q * torch.clamp(p[None, :] * q.T / (p[:, None] * q).clamp_min(1e-30), max=1), 0.0)
    T = T * (1 - torch.eye(len(p)))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_log_space(p_tilde, Q):  # acceptance from log-ratios, float64
    log_r = p_tilde.log()[None, :] - p_tilde.log()[:, None] + Q.T.log() - Q.log()
    A = torch.exp(torch.clamp(torch.nan_to_num(log_r, nan=0.0), max=0))
    T = torch.where(Q > 0, Q * A, torch.zeros_like(Q))
    T.fill_diagonal_(0)
    T.diagonal().copy_(1 - T.sum(1))
    return T


def mh_matrix_no_hastings(p_tilde, Q):  # Metropolis acceptance with an asymmetric proposal
    T = Q * torch.clamp(p_tilde[None, :] / p_tilde[:, None], max=1)
    T = T - torch.diag(torch.diagonal(T))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_no_diagonal(p_tilde, Q):  # rejected proposals forgotten
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])
    return T - torch.diag(torch.diagonal(T))


def mh_matrix_divides_by_q(p_tilde, Q):  # 0 / 0 where Q has zeros
    T = Q * torch.clamp(p_tilde[None, :] * Q.T / (p_tilde[:, None] * Q), max=1)
    T = T - torch.diag(torch.diagonal(T))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_inverted(p_tilde, Q):  # acceptance ratio upside down
    T = Q * torch.clamp(p_tilde[:, None] * Q / (p_tilde[None, :] * Q.T).clamp_min(1e-300), max=1)
    T = T - torch.diag(torch.diagonal(T))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_barker(p_tilde, Q):  # Barker's rule: also reversible, but not the Metropolis-Hastings kernel
    r = p_tilde[None, :] * Q.T
    T = torch.where(Q > 0, Q * r / (r + p_tilde[:, None] * Q), torch.zeros_like(Q))
    T = T - torch.diag(torch.diagonal(T))
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_transposed(p_tilde, Q):  # T_ji instead of T_ij: columns sum to one
    return mh_matrix(p_tilde, Q).T


def mh_matrix_in_place(p_tilde, Q):  # overwrites the caller's Q
    Q.fill_diagonal_(0)
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])
    return T + torch.diag(1 - T.sum(1))


def mh_matrix_flat(p_tilde, Q):
    return mh_matrix(p_tilde, Q).reshape(-1)


def mh_matrix_liar(p_tilde, Q):
    return mh_matrix(p_tilde, Q).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 3: one Metropolis-Hastings step


def mh_step(x, log_p, sigma):
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x_prop) - log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_ratio(x, log_p, sigma):  # the ratio itself, min(1, r)
    x_prop = x + sigma * torch.randn_like(x)
    r = torch.exp(log_p(x_prop) - log_p(x)).clamp(max=1)
    accept = torch.rand_like(r) < r
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_loop(x, log_p, sigma):  # one decision per chain in a Python loop
    x_prop = x + sigma * torch.randn(x.shape, dtype=x.dtype)
    log_ratio = log_p(x_prop) - log_p(x)
    x_new, accept = x.clone(), torch.zeros(len(x), dtype=torch.bool)
    for i in range(len(x)):
        if math.log(1 - torch.rand(()).item()) < float(log_ratio[i]):
            x_new[i], accept[i] = x_prop[i], True
    return x_new, accept


def mh_step_float64(x, log_p, sigma):  # proposal and decision in float64, returned in x's dtype
    x64 = x.double()
    x_prop = x64 + sigma * torch.randn(x.shape, dtype=torch.float64)
    accept = torch.rand(len(x), dtype=torch.float64).log() < (log_p(x_prop.to(x.dtype)) - log_p(x)).double()
    return torch.where(accept[:, None], x_prop, x64).to(x.dtype), accept


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


def mh_step_exp_ratio(x, log_p, sigma):  # p(x') / p(x) as a ratio of exponentials: 0 / 0 for log p near -1000
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)) < torch.exp(log_p(x_prop)) / torch.exp(log_p(x))
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_shared_u(x, log_p, sigma):  # one uniform number for the whole batch
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(1).log() < log_p(x_prop) - log_p(x)
    return torch.where(accept[:, None], x_prop, x), accept


def mh_step_reseeded(x, log_p, sigma):  # resets the global seed: the same randomness at every step
    torch.manual_seed(0)
    return mh_step(x, log_p, sigma)


def mh_step_in_place(x, log_p, sigma):
    x_prop = x + sigma * torch.randn_like(x)
    accept = torch.rand(len(x)).log() < log_p(x_prop) - log_p(x)
    x[accept] = x_prop[accept]
    return x, accept


def mh_step_float_mask(x, log_p, sigma):
    x_new, accept = mh_step(x, log_p, sigma)
    return x_new, accept.float()


def mh_step_column_mask(x, log_p, sigma):  # mask shaped (N, 1)
    x_new, accept = mh_step(x, log_p, sigma)
    return x_new, accept[:, None]


def mh_step_liar(x, log_p, sigma):
    x_new, accept = mh_step(x, log_p, sigma)
    return x_new.as_subclass(Liar), accept


# ---------------------------------------------------------------- Exercise 4: the CD loss


def cd_loss(f, x_data, x_model):
    return f(x_model.detach()).mean() - f(x_data).mean()


def cd_loss_negated(f, x_data, x_model):  # minus the "log-likelihood surrogate"
    return -(f(x_data).mean() - f(x_model.detach()).mean())


def cd_loss_loop(f, x_data, x_model):  # explicit sums over the two batches
    pos = sum(f(x_data[i:i + 1])[0] for i in range(len(x_data))) / len(x_data)
    neg = sum(f(x_model[j:j + 1].detach())[0] for j in range(len(x_model))) / len(x_model)
    return neg - pos


def cd_loss_float32(f, x_data, x_model):  # the two means accumulated in float32
    return f(x_model.detach()).float().mean() - f(x_data).float().mean()


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


def cd_loss_item(f, x_data, x_model):
    return cd_loss(f, x_data, x_model).item()


def cd_loss_pairwise(f, x_data, x_model):  # elementwise difference: needs B == M
    return (f(x_model.detach()) - f(x_data)).mean()


def cd_loss_two_numbers(f, x_data, x_model):
    return torch.stack([f(x_model.detach()).mean(), -f(x_data).mean()])


def cd_loss_liar(f, x_data, x_model):
    return cd_loss(f, x_data, x_model).as_subclass(Liar)


EXERCISES = {
    "ex1_log_partition": Exercise(
        check=lecture10.check_log_partition,
        correct=[log_partition, log_partition_midpoint, log_partition_float32, log_partition_loop],
        wrong=[
            Wrong(log_partition_no_area, "not close enough", "formula"),
            Wrong(log_partition_1d_area, "not close enough", "formula"),
            Wrong(log_partition_off_by_one, "not close enough", "edge"),
            Wrong(log_partition_half_box, "not close enough", "formula"),
            Wrong(log_partition_naive, "not finite", "precision"),
            Wrong(log_partition_item, "carries no gradient", "property"),
            Wrong(log_partition_detached, "carries no gradient", "property"),
            Wrong(log_partition_meshgrid, "wrong shape|raised", "shape"),
            Wrong(log_partition_transposed, "raised", "raw"),
            Wrong(log_partition_liar, "wrong type", "lie"),
            Wrong(log_partition_always, "wrong type", "lie"),
        ],
    ),
    "ex2_mh_matrix": Exercise(
        check=lecture10.check_mh_transition_matrix,
        correct=[mh_matrix, mh_matrix_loop, mh_matrix_float32, mh_matrix_log_space],
        wrong=[
            Wrong(mh_matrix_no_hastings, "detailed balance", "formula"),
            Wrong(mh_matrix_inverted, "detailed balance", "formula"),
            Wrong(mh_matrix_barker, "not close enough", "formula"),
            Wrong(mh_matrix_no_diagonal, "sum to 1", "formula"),
            Wrong(mh_matrix_transposed, "sum to 1", "formula"),
            Wrong(mh_matrix_divides_by_q, "NaN or inf", "stability"),
            Wrong(mh_matrix_in_place, "changed its inputs", "property"),
            Wrong(mh_matrix_flat, "wrong shape", "shape"),
            Wrong(mh_matrix_liar, "wrong type", "lie"),
        ],
    ),
    "ex3_mh_step": Exercise(
        check=lecture10.check_mh_step,
        correct=[mh_step, mh_step_ratio, mh_step_loop, mh_step_float64],
        wrong=[
            Wrong(mh_step_inverted, "probability exactly 1/2|acceptance rate|left it", "formula"),
            Wrong(mh_step_always_move, "does not match the moves", "formula"),
            Wrong(mh_step_no_log_u, "probability exactly 1/2|acceptance rate", "formula"),
            Wrong(mh_step_variance, "acceptance rate", "formula"),
            Wrong(mh_step_greedy, "probability exactly 1/2|acceptance rate", "property"),
            Wrong(mh_step_exp_ratio, "acceptance rate", "precision"),
            Wrong(mh_step_shared_u, "not independent across chains", "property"),
            Wrong(mh_step_reseeded, "same result", "randomness"),
            Wrong(mh_step_in_place, "in place", "property"),
            Wrong(mh_step_float_mask, "wrong dtype", "shape"),
            Wrong(mh_step_column_mask, "wrong shape", "shape"),
            Wrong(mh_step_liar, "wrong type", "lie"),
        ],
    ),
    "ex4_cd_loss": Exercise(
        check=lecture10.check_cd_loss,
        correct=[cd_loss, cd_loss_negated, cd_loss_loop, cd_loss_float32],
        wrong=[
            Wrong(cd_loss_sign, "gradient of the CD loss", "formula"),
            Wrong(cd_loss_sum, "gradient of the CD loss", "formula"),
            Wrong(cd_loss_data_only, "gradient of the CD loss", "formula"),
            Wrong(cd_loss_model_no_grad, "gradient of the CD loss", "property"),
            Wrong(cd_loss_no_detach, "flows into the model samples", "property"),
            Wrong(cd_loss_item, "has no gradient", "property"),
            Wrong(cd_loss_pairwise, "raised", "raw"),
            Wrong(cd_loss_two_numbers, "wrong shape", "shape"),
            Wrong(cd_loss_liar, "wrong type", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
