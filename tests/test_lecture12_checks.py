"""Lecture 12 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture12

# ---------------------------------------------------------------- Exercise 1: the score of a perturbed mixture


def mixture_score(x, weights, means, stds, sigma):
    var = stds**2 + sigma**2                                                 # (K,)
    diff = x[:, None, :] - means[None]                                       # (B, K, D)
    log_terms = weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var)
    r = torch.softmax(log_terms, 1)                                          # (B, K)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_autograd(x, weights, means, stds, sigma):  # another correct route: autograd of logsumexp
    var = stds**2 + sigma**2
    x = x.detach().clone().requires_grad_(True)
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    log_p = torch.logsumexp(weights.log() - 0.5 * x.shape[1] * torch.log(2 * math.pi * var) - sq / (2 * var), 1)
    return torch.autograd.grad(log_p.sum(), x)[0]


def mixture_score_no_sigma(x, weights, means, stds, sigma):
    return mixture_score(x, weights, means, stds, 0.0)


def mixture_score_prior_weights(x, weights, means, stds, sigma):
    var = stds**2 + sigma**2
    return (weights[None, :, None] * (-(x[:, None, :] - means[None]) / var[:, None])).sum(1)


def mixture_score_naive(x, weights, means, stds, sigma):  # densities by exp: NaN far from the modes
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    dens = weights * torch.exp(-(diff**2).sum(-1) / (2 * var)) / var ** (x.shape[1] / 2)
    r = dens / dens.sum(1, keepdim=True)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_forgot_dim(x, weights, means, stds, sigma):  # normalizer var^(-1/2) instead of var^(-D/2)
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    r = torch.softmax(weights.log() - 0.5 * var.log() - (diff**2).sum(-1) / (2 * var), 1)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


@pytest.mark.parametrize("impl", [mixture_score, mixture_score_autograd])
def test_mixture_score_accepts(impl):
    lecture12.check_mixture_score(impl)


@pytest.mark.parametrize("impl", [mixture_score_no_sigma, mixture_score_prior_weights, mixture_score_naive,
                                  mixture_score_forgot_dim])
def test_mixture_score_rejects(impl):
    with pytest.raises(CheckError):
        lecture12.check_mixture_score(impl)


# ---------------------------------------------------------------- Exercise 2: the DSM loss


def dsm_loss(score, x, sigma, z):
    x_tilde = x + sigma * z
    return 0.5 * ((score(x_tilde) + z / sigma) ** 2).sum(1).mean()


def dsm_loss_difference(score, x, sigma, z):  # written with x_tilde - x and sigma^2
    x_tilde = x + sigma * z
    target = -(x_tilde - x) / sigma**2
    return ((score(x_tilde) - target) ** 2).sum(-1).mean() / 2


def dsm_loss_sign(score, x, sigma, z):
    return 0.5 * ((score(x + sigma * z) - z / sigma) ** 2).sum(1).mean()


def dsm_loss_sigma2(score, x, sigma, z):  # -(x_tilde - x) / sigma^2 written as -z / sigma^2
    return 0.5 * ((score(x + sigma * z) + z / sigma**2) ** 2).sum(1).mean()


def dsm_loss_clean_input(score, x, sigma, z):
    return 0.5 * ((score(x) + z / sigma) ** 2).sum(1).mean()


def dsm_loss_sum(score, x, sigma, z):
    return 0.5 * ((score(x + sigma * z) + z / sigma) ** 2).sum()


def dsm_loss_no_grad(score, x, sigma, z):
    with torch.no_grad():
        return dsm_loss(score, x, sigma, z)


def test_dsm_loss_accepts():
    lecture12.check_dsm_loss(dsm_loss)
    lecture12.check_dsm_loss(dsm_loss_difference)


@pytest.mark.parametrize("impl", [dsm_loss_sign, dsm_loss_sigma2, dsm_loss_clean_input, dsm_loss_sum, dsm_loss_no_grad])
def test_dsm_loss_rejects(impl):
    with pytest.raises(CheckError):
        lecture12.check_dsm_loss(impl)


# ---------------------------------------------------------------- Exercise 3: Tweedie's denoiser


def tweedie_denoiser(x_tilde, sigma, score):
    return x_tilde + sigma**2 * score(x_tilde)


def tweedie_minus(x_tilde, sigma, score):
    return x_tilde - sigma**2 * score(x_tilde)


def tweedie_sigma(x_tilde, sigma, score):
    return x_tilde + sigma * score(x_tilde)


def tweedie_identity(x_tilde, sigma, score):
    return x_tilde


def test_tweedie_accepts():
    lecture12.check_tweedie(tweedie_denoiser)


@pytest.mark.parametrize("impl", [tweedie_minus, tweedie_sigma, tweedie_identity])
def test_tweedie_rejects(impl):
    with pytest.raises(CheckError):
        lecture12.check_tweedie(impl)


# ---------------------------------------------------------------- Exercise 4: the sliced loss


def sliced_loss(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)                                                             # (B, D)
    sv = (s * v).sum(1)                                                      # (B,)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]              # (B, D): v^T J
    return ((jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_vr(score, x, v):  # the variance-reduced form with 1/2 |s|^2: also unbiased
    x = x.detach().requires_grad_(True)
    s = score(x)
    jv = torch.autograd.grad((s * v).sum(), x, create_graph=True)[0]
    return ((jv * v).sum(1) + 0.5 * (s**2).sum(1)).mean()


def sliced_loss_no_create_graph(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x)[0]
    return ((jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_unprojected_grad(score, x, v):  # grad of s.sum() instead of (v . s): misses the projection
    x = x.detach().requires_grad_(True)
    s = score(x)
    g = torch.autograd.grad(s.sum(), x, create_graph=True)[0]
    return ((g * v).sum(1) + 0.5 * (s * v).sum(1) ** 2).mean()


def sliced_loss_sign(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
    return (-(jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_no_half(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
    return ((jv * v).sum(1) + sv**2).mean()


@pytest.mark.parametrize("impl", [sliced_loss, sliced_loss_vr])
def test_sliced_loss_accepts(impl):
    lecture12.check_sliced_loss(impl)


@pytest.mark.parametrize("impl", [sliced_loss_no_create_graph, sliced_loss_unprojected_grad, sliced_loss_sign,
                                  sliced_loss_no_half])
def test_sliced_loss_rejects(impl):
    with pytest.raises(CheckError):
        lecture12.check_sliced_loss(impl)
