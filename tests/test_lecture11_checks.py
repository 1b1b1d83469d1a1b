"""Lecture 11 checks: each accepts correct implementations written in different ways and rejects the common wrong
ones with the right message (tests/exercise_cases.py generates the tests from EXERCISES)."""

import math

import torch
import torch.nn.functional as F
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import LyingTensor as Liar

from dgm_course.exercises import lecture11

# ---------------------------------------------------------------- Exercise 1: the Langevin step


def langevin(x, score, step):
    return x + step * score(x) + math.sqrt(2 * step) * torch.randn_like(x)


def langevin_detached(x, score, step):  # explicit noise tensor, detached result
    xi = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return (x + step * score(x) + (2 * step) ** 0.5 * xi).detach()


def langevin_loop(x, score, step):  # one sample at a time
    s = score(x)
    rows = [x[i] + step * s[i] + math.sqrt(2 * step) * torch.randn(x.shape[1:], dtype=x.dtype) for i in range(len(x))]
    return torch.stack(rows)


def langevin_float32(x, score, step):  # the update computed in float32
    x32 = x.float()
    return x32 + step * score(x).float() + math.sqrt(2 * step) * torch.randn_like(x32)


def langevin_sqrt_step(x, score, step):  # noise sqrt(step) instead of sqrt(2 step)
    return x + step * score(x) + math.sqrt(step) * torch.randn_like(x)


def langevin_half_drift(x, score, step):  # step/2 drift with sqrt(2 step) noise: a mix of two conventions
    return x + step / 2 * score(x) + math.sqrt(2 * step) * torch.randn_like(x)


def langevin_descent(x, score, step):  # moves downhill in log p
    return x - step * score(x) + math.sqrt(2 * step) * torch.randn_like(x)


def langevin_no_noise(x, score, step):  # gradient ascent on log p: finds modes, does not sample
    return x + step * score(x)


def langevin_shared_noise(x, score, step):  # one noise vector for the whole batch
    return x + step * score(x) + math.sqrt(2 * step) * torch.randn_like(x[:1])


def langevin_uniform_noise(x, score, step):  # uniform noise of variance 1: right moments, wrong distribution
    u = (torch.rand_like(x) - 0.5) * math.sqrt(12)
    return x + step * score(x) + math.sqrt(2 * step) * u


def langevin_reseeded(x, score, step):  # the same noise at every call
    torch.manual_seed(0)
    return langevin(x, score, step)


def langevin_in_place(x, score, step):
    x += step * score(x) + math.sqrt(2 * step) * torch.randn_like(x)
    return x


def langevin_flat(x, score, step):  # flattens the batch
    return langevin(x, score, step).reshape(len(x), -1)


def langevin_liar(x, score, step):
    return langevin(x, score, step).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 2: the score-matching loss


def sm_loss(f, x):
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]                       # (N, D)
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_functional(f, x):  # a full Hessian per point, in a loop
    out = []
    for row in x:
        grad = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], row, create_graph=True)
        hess = torch.autograd.functional.hessian(lambda v: f(v[None])[0], row, create_graph=True)
        out.append(torch.trace(hess) + 0.5 * grad @ grad)
    return torch.stack(out).mean()


def sm_loss_float32(f, x):  # the final sums in float32
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = torch.stack([torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i]
                         for i in range(x.shape[1])], 1).sum(1)
    return (trace.float() + 0.5 * grad.float().pow(2).sum(1)).mean()


def sm_loss_vmap(f, x):  # torch.func: per-sample Hessians with vmap
    def f1(v):
        return f(v[None])[0]
    hess = torch.vmap(torch.func.hessian(f1))(x)                                          # (N, D, D)
    grad = torch.vmap(torch.func.grad(f1))(x)
    return (hess.diagonal(dim1=1, dim2=2).sum(1) + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_hessian_row_sums(f, x):  # d/dx of grad.sum(): row sums of the Hessian, not its diagonal
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = torch.autograd.grad(grad.sum(), x, create_graph=True)[0].sum(1)
    return (trace + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_sign(f, x):  # - 0.5 |grad f|^2
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace - 0.5 * (grad**2).sum(1)).mean()


def sm_loss_no_half(f, x):
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + (grad**2).sum(1)).mean()


def sm_loss_no_trace(f, x):  # only the squared score: pushes the score to zero everywhere
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    return (0.5 * (grad**2).sum(1)).mean()


def sm_loss_summed(f, x):  # a sum over the batch instead of a mean
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (grad**2).sum(1)).sum()


def sm_loss_per_point(f, x):  # no mean at all: one value per point
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return trace + 0.5 * (grad**2).sum(1)


def sm_loss_trace_not_trainable(f, x):  # second derivative without create_graph: the trace term gets no gradient
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_no_create_graph(f, x):  # first derivative without create_graph: cannot differentiate it again
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_item(f, x):
    return torch.tensor(sm_loss(f, x).item())


def sm_loss_liar(f, x):
    return sm_loss(f, x).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 3: the NCE loss


def nce(log_p_x, log_q_x, log_p_y, log_q_y):
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(F.logsigmoid(g_x).sum() + F.logsigmoid(-g_y).sum()) / len(log_p_x)


def nce_bce(log_p_x, log_q_x, log_p_y, log_q_y):  # binary cross-entropy with logits
    nu = len(log_p_y) / len(log_p_x)
    logits = torch.cat([log_p_x - log_q_x, log_p_y - log_q_y]) - math.log(nu)
    labels = torch.cat([torch.ones_like(log_p_x), torch.zeros_like(log_p_y)])
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(log_p_x)


def nce_loop(log_p_x, log_q_x, log_p_y, log_q_y):  # softplus term by term
    n, m = len(log_p_x), len(log_p_y)
    total = 0
    for i in range(n):
        total = total + F.softplus(-(log_p_x[i] - log_q_x[i] - math.log(m / n)))
    for j in range(m):
        total = total + F.softplus(log_p_y[j] - log_q_y[j] - math.log(m / n))
    return total / n


def nce_float32(log_p_x, log_q_x, log_p_y, log_q_y):
    return nce(log_p_x.float(), log_q_x.float(), log_p_y.float(), log_q_y.float())


def nce_no_log_nu(log_p_x, log_q_x, log_p_y, log_q_y):  # the prior odds forgotten: log Z off by log nu
    g_x, g_y = log_p_x - log_q_x, log_p_y - log_q_y
    return -(F.logsigmoid(g_x).sum() + F.logsigmoid(-g_y).sum()) / len(log_p_x)


def nce_inverted_nu(log_p_x, log_q_x, log_p_y, log_q_y):  # nu = N / M
    log_nu = math.log(len(log_p_x) / len(log_p_y))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(F.logsigmoid(g_x).sum() + F.logsigmoid(-g_y).sum()) / len(log_p_x)


def nce_naive_log(log_p_x, log_q_x, log_p_y, log_q_y):  # log(sigmoid): -inf for a large logit
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(torch.log(torch.sigmoid(g_x)).sum() + torch.log(1 - torch.sigmoid(g_y)).sum()) / len(log_p_x)


def nce_means(log_p_x, log_q_x, log_p_y, log_q_y):  # mean over data plus mean over noise: the noise weight drops nu
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(F.logsigmoid(g_x).mean() + F.logsigmoid(-g_y).mean())


def nce_swapped_noise_sign(log_p_x, log_q_x, log_p_y, log_q_y):  # noise pushed towards "data"
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(F.logsigmoid(g_x).sum() + F.logsigmoid(g_y).sum()) / len(log_p_x)


def nce_divide_by_all(log_p_x, log_q_x, log_p_y, log_q_y):  # divides by N + M: right minimizer, wrong value
    return nce(log_p_x, log_q_x, log_p_y, log_q_y) * len(log_p_x) / (len(log_p_x) + len(log_p_y))


def nce_item(log_p_x, log_q_x, log_p_y, log_q_y):  # no graph: nothing to train
    return nce(log_p_x, log_q_x, log_p_y, log_q_y).detach()


def nce_per_point(log_p_x, log_q_x, log_p_y, log_q_y):  # the terms, not their sum
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    return -torch.cat([F.logsigmoid(log_p_x - log_q_x - log_nu), F.logsigmoid(-(log_p_y - log_q_y - log_nu))])


def nce_liar(log_p_x, log_q_x, log_p_y, log_q_y):
    return nce(log_p_x, log_q_x, log_p_y, log_q_y).as_subclass(Liar)


EXERCISES = {
    "ex1_langevin_step": Exercise(
        check=lecture11.check_langevin_step,
        correct=[langevin, langevin_detached, langevin_loop, langevin_float32],
        wrong=[
            Wrong(langevin_sqrt_step, "wrong covariance", "formula"),
            Wrong(langevin_half_drift, "mean of one Langevin step", "formula"),
            Wrong(langevin_descent, "mean of one Langevin step", "formula"),
            Wrong(langevin_no_noise, "adds no noise", "formula"),
            Wrong(langevin_shared_noise, "adds no noise", "property"),
            Wrong(langevin_uniform_noise, "not Gaussian", "property"),
            Wrong(langevin_reseeded, "same result", "randomness"),
            Wrong(langevin_in_place, "in place", "property"),
            Wrong(langevin_flat, "wrong shape", "shape"),
            Wrong(langevin_liar, "wrong type", "lie"),
        ],
    ),
    "ex2_score_matching_loss": Exercise(
        check=lecture11.check_score_matching_loss,
        correct=[sm_loss, sm_loss_functional, sm_loss_float32, sm_loss_vmap],
        wrong=[
            Wrong(sm_loss_hessian_row_sums, "Gaussian energy", "formula"),
            Wrong(sm_loss_sign, "Gaussian energy", "formula"),
            Wrong(sm_loss_no_half, "Gaussian energy", "formula"),
            Wrong(sm_loss_no_trace, "Gaussian energy", "formula"),
            Wrong(sm_loss_summed, "Gaussian energy", "formula"),
            Wrong(sm_loss_per_point, "wrong shape", "shape"),
            Wrong(sm_loss_trace_not_trainable, "gradient of the loss", "property"),
            Wrong(sm_loss_item, "cannot be trained", "property"),
            Wrong(sm_loss_no_create_graph, "raised an error", "raw"),
            Wrong(sm_loss_liar, "wrong type", "lie"),
        ],
    ),
    "ex3_nce_loss": Exercise(
        check=lecture11.check_nce_loss,
        correct=[nce, nce_bce, nce_loop, nce_float32],
        wrong=[
            Wrong(nce_no_log_nu, "does not recover the normalization", "formula"),
            Wrong(nce_inverted_nu, "does not recover the normalization", "formula"),
            Wrong(nce_means, "does not recover the normalization", "formula"),
            Wrong(nce_swapped_noise_sign, "does not recover the normalization", "formula"),
            Wrong(nce_divide_by_all, "not close enough", "formula"),
            Wrong(nce_naive_log, "not finite", "precision"),
            Wrong(nce_item, "cannot be trained", "property"),
            Wrong(nce_per_point, "wrong shape", "shape"),
            Wrong(nce_liar, "wrong type", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
