"""Lecture 11 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch
import torch.nn.functional as F

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture11

# ---------------------------------------------------------------- Exercise 1: the Langevin step


def langevin(x, score, step_size):
    return x + step_size * score(x) + math.sqrt(2 * step_size) * torch.randn_like(x)


def langevin_detached(x, score, step_size):  # another correct route: explicit noise tensor, detached result
    z = torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return (x + step_size * score(x) + (2 * step_size) ** 0.5 * z).detach()


def langevin_sqrt_eps(x, score, step_size):  # noise sqrt(eps) instead of sqrt(2 eps)
    return x + step_size * score(x) + math.sqrt(step_size) * torch.randn_like(x)


def langevin_half_drift(x, score, step_size):  # eps/2 drift with sqrt(2 eps) noise: a mix of two conventions
    return x + step_size / 2 * score(x) + math.sqrt(2 * step_size) * torch.randn_like(x)


def langevin_descent(x, score, step_size):  # moves downhill in log p
    return x - step_size * score(x) + math.sqrt(2 * step_size) * torch.randn_like(x)


def langevin_no_noise(x, score, step_size):  # gradient ascent on log p: finds modes, does not sample
    return x + step_size * score(x)


def langevin_shared_noise(x, score, step_size):  # one noise vector for the whole batch
    return x + step_size * score(x) + math.sqrt(2 * step_size) * torch.randn_like(x[:1])


def langevin_in_place(x, score, step_size):
    x += step_size * score(x) + math.sqrt(2 * step_size) * torch.randn_like(x)
    return x


def test_langevin_accepts_correct():
    lecture11.check_langevin_step(langevin)
    lecture11.check_langevin_step(langevin_detached)


@pytest.mark.parametrize("wrong, message", [
    (langevin_sqrt_eps, "wrong covariance"),
    (langevin_half_drift, "mean of one Langevin step"),
    (langevin_descent, "mean of one Langevin step"),
    (langevin_no_noise, "adds no noise"),
    (langevin_shared_noise, "adds no noise"),
    (langevin_in_place, "in place"),
])
def test_langevin_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture11.check_langevin_step(wrong)


def test_langevin_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lecture11.check_langevin_step(langevin)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- Exercise 2: the score-matching loss


def sm_loss(f, x):
    x = x.requires_grad_(True)
    grad = torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]                       # (N, D)
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (grad**2).sum(1)).mean()


def sm_loss_functional(f, x):  # another correct route: a full Hessian per point
    out = []
    for row in x:
        grad = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], row, create_graph=True)
        hess = torch.autograd.functional.hessian(lambda v: f(v[None])[0], row, create_graph=True)
        out.append(torch.trace(hess) + 0.5 * grad @ grad)
    return torch.stack(out).mean()


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


def test_score_matching_accepts_correct():
    lecture11.check_score_matching_loss(sm_loss)
    lecture11.check_score_matching_loss(sm_loss_functional)


@pytest.mark.parametrize("wrong, message", [
    (sm_loss_hessian_row_sums, "Gaussian energy"),
    (sm_loss_sign, "Gaussian energy"),
    (sm_loss_no_half, "Gaussian energy"),
    (sm_loss_no_trace, "Gaussian energy"),
    (sm_loss_summed, "Gaussian energy"),
    (sm_loss_trace_not_trainable, "gradient of the loss"),
    (sm_loss_no_create_graph, "raised an error"),
])
def test_score_matching_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture11.check_score_matching_loss(wrong)


# ---------------------------------------------------------------- Exercise 3: the NCE loss


def nce(log_p_x, log_q_x, log_p_y, log_q_y):
    log_nu = math.log(len(log_p_y) / len(log_p_x))
    g_x, g_y = log_p_x - log_q_x - log_nu, log_p_y - log_q_y - log_nu
    return -(F.logsigmoid(g_x).sum() + F.logsigmoid(-g_y).sum()) / len(log_p_x)


def nce_bce(log_p_x, log_q_x, log_p_y, log_q_y):  # another correct route: binary cross-entropy with logits
    nu = len(log_p_y) / len(log_p_x)
    logits = torch.cat([log_p_x - log_q_x, log_p_y - log_q_y]) - math.log(nu)
    labels = torch.cat([torch.ones_like(log_p_x), torch.zeros_like(log_p_y)])
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(log_p_x)


def nce_no_log_nu(log_p_x, log_q_x, log_p_y, log_q_y):  # the prior odds forgotten: log Z off by log nu
    g_x, g_y = log_p_x - log_q_x, log_p_y - log_q_y
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


def nce_item(log_p_x, log_q_x, log_p_y, log_q_y):  # a float: nothing to train
    return nce(log_p_x, log_q_x, log_p_y, log_q_y).detach()


def test_nce_accepts_correct():
    lecture11.check_nce_loss(nce)
    lecture11.check_nce_loss(nce_bce)


@pytest.mark.parametrize("wrong, message", [
    (nce_no_log_nu, "does not recover the normalization"),
    (nce_naive_log, "not finite"),
    (nce_means, "does not recover the normalization"),
    (nce_swapped_noise_sign, "does not recover the normalization"),
    (nce_item, "cannot be trained"),
])
def test_nce_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture11.check_nce_loss(wrong)


@pytest.mark.parametrize("check", [lecture11.check_langevin_step, lecture11.check_score_matching_loss,
                                   lecture11.check_nce_loss])
def test_stubs_raise_not_implemented(check):
    def stub(*args):
        raise NotImplementedError("stub")
    with pytest.raises(NotImplementedError):
        check(stub)
