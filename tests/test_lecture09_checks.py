"""Lecture 09 checks: each accepts a correct implementation and rejects the common wrong ones."""

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture09

# ---------------------------------------------------------------- Exercise 1: the Hellinger conjugate


def hellinger_conjugate(t):
    return t / (1 - t)


def hellinger_conjugate_numerical(t):  # another correct route: a fine numerical supremum
    u = torch.logspace(-9, 5, 400_001, dtype=t.dtype)
    return (t[:, None] * u[None] - (u.sqrt() - 1) ** 2).max(1).values


def conjugate_sign(t):  # t / (1 + t): a sign slip solving 1 - 1/sqrt(u) = t
    return t / (1 + t)


def conjugate_is_f(t):  # the generator itself evaluated at t, not its conjugate
    return (t.clamp(min=0).sqrt() - 1) ** 2


def conjugate_at_optimum_u(t):  # returns u* = 1 / (1 - t)^2, the maximizer, instead of the maximum
    return 1 / (1 - t) ** 2


def conjugate_missing_term(t):  # t u* only: f(u*) forgotten
    return t / (1 - t) ** 2


@pytest.mark.parametrize("impl", [hellinger_conjugate, hellinger_conjugate_numerical])
def test_conjugate_accepts(impl):
    lecture09.check_hellinger_conjugate(impl)


@pytest.mark.parametrize("impl", [conjugate_sign, conjugate_is_f, conjugate_at_optimum_u, conjugate_missing_term])
def test_conjugate_rejects(impl):
    with pytest.raises(CheckError):
        lecture09.check_hellinger_conjugate(impl)


# ---------------------------------------------------------------- Exercise 2: the f-GAN losses


def fgan_losses(v_real, v_fake, g, f_star):
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real.mean() - f_star(t_fake).mean()), -f_star(t_fake).mean()


def fgan_losses_full_bound(v_real, v_fake, g, f_star):  # also correct: the generator minimizes the whole bound
    bound = g(v_real).mean() - f_star(g(v_fake)).mean()
    return -bound, bound


def fgan_non_saturating(v_real, v_fake, g, f_star):  # the heuristic generator loss -E_Q[g(v)]: another game
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real.mean() - f_star(t_fake).mean()), -t_fake.mean()


def fgan_sign(v_real, v_fake, g, f_star):  # both losses with the wrong sign (maximized instead of minimized)
    t_real, t_fake = g(v_real), g(v_fake)
    return t_real.mean() - f_star(t_fake).mean(), f_star(t_fake).mean()


def fgan_no_activation(v_real, v_fake, g, f_star):  # g forgotten: raw outputs fed to f*
    return -(v_real.mean() - f_star(v_fake).mean()), -f_star(v_fake).mean()


def fgan_swapped(v_real, v_fake, g, f_star):  # the conjugate on the real batch instead of the generated one
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_fake.mean() - f_star(t_real).mean()), -t_fake.mean()


def fgan_detached(v_real, v_fake, g, f_star):  # detached generator loss: no gradient reaches the samples
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real.mean() - f_star(t_fake).mean()), -f_star(t_fake.detach()).mean()


def fgan_sum(v_real, v_fake, g, f_star):  # sums over the batch instead of averaging
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real.sum() - f_star(t_fake).sum()), -f_star(t_fake).sum()


@pytest.mark.parametrize("impl", [fgan_losses, fgan_losses_full_bound])
def test_fgan_losses_accepts(impl):
    lecture09.check_fgan_losses(impl)


@pytest.mark.parametrize("impl", [fgan_non_saturating, fgan_sign, fgan_no_activation, fgan_swapped, fgan_detached,
                                  fgan_sum])
def test_fgan_losses_rejects(impl):
    with pytest.raises(CheckError):
        lecture09.check_fgan_losses(impl)


# ---------------------------------------------------------------- Exercise 3: the gradient penalty


def _interpolate(x_real, x_fake, eps):
    e = eps.reshape(-1, *([1] * (x_real.ndim - 1)))
    return (e * x_real + (1 - e) * x_fake).requires_grad_(True)


def gradient_penalty(critic, x_real, x_fake, eps):
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def gradient_penalty_view(critic, x_real, x_fake, eps):  # also correct: reshape by hand, sqrt of a sum of squares
    x_hat = _interpolate(x_real, x_fake, eps)
    (grad,) = torch.autograd.grad(critic(x_hat), x_hat, grad_outputs=torch.ones(len(x_hat), 1, dtype=x_hat.dtype),
                                  create_graph=True)
    norm = torch.sqrt((grad.reshape(len(grad), -1) ** 2).sum(1))
    return torch.mean((norm - 1) ** 2)


def penalty_no_create_graph(critic, x_real, x_fake, eps):  # the penalty cannot train the critic
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def penalty_norm_dim1(critic, x_real, x_fake, eps):  # norm over dim 1 only: wrong for images (B, C, H, W)
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def penalty_one_sided(critic, x_real, x_fake, eps):  # max(0, ||g|| - 1)^2: a different (one-sided) penalty
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return (torch.relu(grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def penalty_squared_norm(critic, x_real, x_fake, eps):  # (||g||^2 - 1)^2
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).pow(2).sum(1) - 1) ** 2).mean()


def penalty_at_real(critic, x_real, x_fake, eps):  # the gradient at the data, not at the interpolates
    x_hat = x_real.clone().requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def penalty_batch_norm(critic, x_real, x_fake, eps):  # one norm over the whole batch's gradient
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return (grad.norm() - 1) ** 2


@pytest.mark.parametrize("impl", [gradient_penalty, gradient_penalty_view])
def test_gradient_penalty_accepts(impl):
    lecture09.check_gradient_penalty(impl)


@pytest.mark.parametrize("impl", [penalty_no_create_graph, penalty_norm_dim1, penalty_one_sided, penalty_squared_norm,
                                  penalty_at_real, penalty_batch_norm])
def test_gradient_penalty_rejects(impl):
    with pytest.raises(CheckError):
        lecture09.check_gradient_penalty(impl)


def test_checks_do_not_print_the_solution():
    with pytest.raises(CheckError) as err:
        lecture09.check_hellinger_conjugate(conjugate_sign)
    assert "t / (1 - t)" not in str(err.value) and "t/(1-t)" not in str(err.value)


# ---------------------------------------------------------------- Exercise 4: W between two 1-D samples


def wasserstein_1d(x, y):
    return (torch.sort(x).values - torch.sort(y).values).abs().mean()


def wasserstein_1d_argsort(x, y):  # also correct: the optimal plan as a permutation, then the mean cost
    plan = torch.empty_like(x.argsort())
    plan[x.argsort()] = y.argsort()                                    # the i-th smallest x goes to the i-th smallest y
    return (x - y[plan]).abs().sum() / len(x)


def w_unsorted(x, y):  # pairs the samples in the order given
    return (x - y).abs().mean()


def w_means(x, y):  # the difference of the means: right for shifts only
    return (x.mean() - y.mean()).abs()


def w_squared(x, y):  # W_2 squared instead of W_1
    return ((torch.sort(x).values - torch.sort(y).values) ** 2).mean()


def w_sorted_opposite(x, y):  # sorts y in descending order: the worst plan, not the best
    return (torch.sort(x).values - torch.sort(y, descending=True).values).abs().mean()


@pytest.mark.parametrize("impl", [wasserstein_1d, wasserstein_1d_argsort])
def test_wasserstein_accepts(impl):
    lecture09.check_wasserstein_1d(impl)


@pytest.mark.parametrize("impl", [w_unsorted, w_means, w_squared, w_sorted_opposite])
def test_wasserstein_rejects(impl):
    with pytest.raises(CheckError):
        lecture09.check_wasserstein_1d(impl)
