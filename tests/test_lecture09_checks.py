"""Lecture 09 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones (tests/exercise_cases.py)."""

import math

import pytest
import torch
from exercise_cases import Exercise, Wrong, exercise_tests, lie

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture09

# ---------------------------------------------------------------- Exercise 1: the Hellinger conjugate


def hellinger_conjugate(t):
    return t / (1 - t)


def hellinger_conjugate_numerical(t):  # a fine numerical supremum
    u = torch.logspace(-9, 5, 400_001, dtype=t.dtype)
    return (t[:, None] * u[None] - (u.sqrt() - 1) ** 2).max(1).values


def hellinger_conjugate_loop(t):  # by substitution at u* = 1 / (1 - t)^2, one element at a time
    out = []
    for v in t.tolist():
        u = 1 / (1 - v) ** 2
        out.append(v * u - (math.sqrt(u) - 1) ** 2)
    return torch.tensor(out, dtype=t.dtype)


def hellinger_conjugate_float32(t):  # 1/(1-t) - 1, in float32
    return 1 / (1 - t.float()) - 1


def conjugate_sign(t):  # t / (1 + t): a sign slip solving 1 - 1/sqrt(u) = t
    return t / (1 + t)


def conjugate_is_f(t):  # the generator itself evaluated at t, not its conjugate
    return (t.clamp(min=0).sqrt() - 1) ** 2


def conjugate_at_optimum_u(t):  # returns u* = 1 / (1 - t)^2, the maximizer, instead of the maximum
    return 1 / (1 - t) ** 2


def conjugate_missing_term(t):  # t u* only: f(u*) forgotten
    return t / (1 - t) ** 2


def conjugate_in_place(t):  # overwrites the caller's t
    return t.div_(1 - t)


def conjugate_scalar(t):  # one number for the whole batch
    return (t / (1 - t)).sum()


def conjugate_lying(t):
    return lie(t / (1 + t))


def conjugate_math(t):  # math on a tensor of many elements
    return torch.tensor(t / (1 - math.sqrt(t)))


# ---------------------------------------------------------------- Exercise 2: the f-GAN losses


def fgan_losses(v_real, v_fake, g, f_star):
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real.mean() - f_star(t_fake).mean()), -f_star(t_fake).mean()


def fgan_losses_full_bound(v_real, v_fake, g, f_star):  # the generator minimizes the whole bound (same gradient)
    bound = g(v_real).mean() - f_star(g(v_fake)).mean()
    return -bound, bound


def fgan_losses_loop(v_real, v_fake, g, f_star):  # explicit sums over the batch
    real = sum(g(v_real[i]) for i in range(len(v_real))) / len(v_real)
    fake = sum(f_star(g(v_fake[i])) for i in range(len(v_fake))) / len(v_fake)
    return fake - real, -fake


def fgan_losses_float32(v_real, v_fake, g, f_star):
    t_real, t_fake = g(v_real.float()), g(v_fake.float())
    return -(t_real.mean() - f_star(t_fake).mean()), -f_star(t_fake).mean()


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


def fgan_per_sample(v_real, v_fake, g, f_star):  # no reduction
    t_real, t_fake = g(v_real), g(v_fake)
    return -(t_real - f_star(t_fake)), -f_star(t_fake)


def fgan_lying(v_real, v_fake, g, f_star):
    critic, gen = fgan_sign(v_real, v_fake, g, f_star)
    return lie(critic), gen


def fgan_one_value(v_real, v_fake, g, f_star):  # returns the bound only, not the pair
    return g(v_real).mean() - f_star(g(v_fake)).mean()


# ---------------------------------------------------------------- Exercise 3: W between two 1-D samples


def wasserstein_1d(x, y):
    return (torch.sort(x).values - torch.sort(y).values).abs().mean()


def wasserstein_1d_argsort(x, y):  # the optimal plan as a permutation, then the mean cost
    plan = torch.empty_like(x.argsort())
    plan[x.argsort()] = y.argsort()
    return (x - y[plan]).abs().sum() / len(x)


def wasserstein_1d_loop(x, y):
    xs, ys = sorted(x.tolist()), sorted(y.tolist())
    return torch.tensor(sum(abs(a - b) for a, b in zip(xs, ys, strict=False)) / len(xs), dtype=x.dtype)


def wasserstein_1d_float32(x, y):
    return (x.float().sort().values - y.float().sort().values).abs().mean()


def w_unsorted(x, y):  # pairs the samples in the order given
    return (x - y).abs().mean()


def w_means(x, y):  # the difference of the means: right for shifts only
    return (x.mean() - y.mean()).abs()


def w_squared(x, y):  # W_2 squared instead of W_1
    return ((torch.sort(x).values - torch.sort(y).values) ** 2).mean()


def w_sorted_opposite(x, y):  # sorts y in descending order: the worst plan, not the best
    return (torch.sort(x).values - torch.sort(y, descending=True).values).abs().mean()


def w_n_minus_one(x, y):  # divides by n - 1
    return (torch.sort(x).values - torch.sort(y).values).abs().sum() / (len(x) - 1)


def w_in_place(x, y):  # sorts the caller's tensors in place
    x[:] = x.sort().values
    y[:] = y.sort().values
    return (x - y).abs().mean()


def w_per_pair(x, y):  # no reduction
    return (torch.sort(x).values - torch.sort(y).values).abs()


def w_lying(x, y):
    return lie((x - y).abs().mean())


def w_list(x, y):  # a Python list, not a number
    return [abs(a - b) for a, b in zip(sorted(x.tolist()), sorted(y.tolist()), strict=False)]


# ---------------------------------------------------------------- Exercise 4: the gradient penalty


def _interpolate(x_real, x_fake, eps):
    e = eps.reshape(-1, *([1] * (x_real.ndim - 1)))
    return (e * x_real + (1 - e) * x_fake).requires_grad_(True)


def gradient_penalty(critic, x_real, x_fake, eps):
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def gradient_penalty_view(critic, x_real, x_fake, eps):  # reshape by hand, sqrt of a sum of squares
    x_hat = _interpolate(x_real, x_fake, eps)
    (grad,) = torch.autograd.grad(critic(x_hat), x_hat, grad_outputs=torch.ones(len(x_hat), 1, dtype=x_hat.dtype),
                                  create_graph=True)
    norm = torch.sqrt((grad.reshape(len(grad), -1) ** 2).sum(1))
    return torch.mean((norm - 1) ** 2)


def gradient_penalty_loop(critic, x_real, x_fake, eps):  # one sample at a time
    total = 0
    for i in range(len(x_real)):
        x_hat = (eps[i] * x_real[i:i + 1] + (1 - eps[i]) * x_fake[i:i + 1]).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        total = total + (grad.pow(2).sum().sqrt() - 1) ** 2
    return total / len(x_real)


def gradient_penalty_norm_float64(critic, x_real, x_fake, eps):  # the norm accumulated in float64
    x_hat = _interpolate(x_real, x_fake, eps)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((torch.linalg.vector_norm(grad.flatten(1).double(), dim=1) - 1) ** 2).mean()


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


def penalty_eps_unshaped(critic, x_real, x_fake, eps):  # eps (B,) against (B, D): broadcasts over the wrong axis
    x_hat = (eps * x_real + (1 - eps) * x_fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def penalty_item(critic, x_real, x_fake, eps):  # a float: cannot be part of the critic's loss
    return gradient_penalty(critic, x_real, x_fake, eps).item()


def penalty_lying(critic, x_real, x_fake, eps):
    return lie(penalty_one_sided(critic, x_real, x_fake, eps))


EXERCISES = {
    "ex1_hellinger_conjugate": Exercise(
        check=lecture09.check_hellinger_conjugate,
        correct=[hellinger_conjugate, hellinger_conjugate_numerical, hellinger_conjugate_loop,
                 hellinger_conjugate_float32],
        wrong=[Wrong(conjugate_sign, "numerical supremum", "formula"),
               Wrong(conjugate_is_f, "numerical supremum", "formula"),
               Wrong(conjugate_at_optimum_u, "numerical supremum", "formula"),
               Wrong(conjugate_missing_term, "numerical supremum", "formula"),
               Wrong(conjugate_in_place, "changed its input", "property"),
               Wrong(conjugate_scalar, "wrong shape", "shape"),
               Wrong(conjugate_lying, "wrong type", "lie"),
               Wrong(conjugate_math, "raised", "raw")],
    ),
    "ex2_fgan_losses": Exercise(
        check=lecture09.check_fgan_losses,
        correct=[fgan_losses, fgan_losses_full_bound, fgan_losses_loop, fgan_losses_float32],
        wrong=[Wrong(fgan_non_saturating, "gradient of the KL generator loss", "formula"),
               Wrong(fgan_sign, "KL divergence", "formula"),
               Wrong(fgan_no_activation, "not finite", "formula"),
               Wrong(fgan_swapped, "KL divergence", "formula"),
               Wrong(fgan_detached, "carries no gradient", "property"),
               Wrong(fgan_sum, "KL divergence", "formula"),
               Wrong(fgan_per_sample, "wrong thing", "shape"),
               Wrong(fgan_lying, "wrong type", "lie"),
               Wrong(fgan_one_value, "wrong thing", "shape")],
    ),
    "ex3_wasserstein_1d": Exercise(
        check=lecture09.check_wasserstein_1d,
        correct=[wasserstein_1d, wasserstein_1d_argsort, wasserstein_1d_loop, wasserstein_1d_float32],
        wrong=[Wrong(w_unsorted, "not close enough", "formula"),
               Wrong(w_means, "not close enough", "formula"),
               Wrong(w_squared, "not close enough", "formula"),
               Wrong(w_sorted_opposite, "not close enough", "formula"),
               Wrong(w_n_minus_one, "not close enough", "edge"),
               Wrong(w_in_place, "changed its inputs", "property"),
               Wrong(w_per_pair, "wrong thing", "shape"),
               Wrong(w_lying, "wrong type", "lie"),
               Wrong(w_list, "wrong type", "raw")],
    ),
    "ex4_gradient_penalty": Exercise(
        check=lecture09.check_gradient_penalty,
        correct=[gradient_penalty, gradient_penalty_view, gradient_penalty_loop, gradient_penalty_norm_float64],
        wrong=[Wrong(penalty_no_create_graph, "no gradient to the critic", "property"),
               Wrong(penalty_norm_dim1, "not close enough", "shape"),
               Wrong(penalty_one_sided, "not close enough", "formula"),
               Wrong(penalty_squared_norm, "not close enough", "formula"),
               Wrong(penalty_at_real, "not close enough", "formula"),
               Wrong(penalty_batch_norm, "not close enough", "formula"),
               Wrong(penalty_eps_unshaped, "raised RuntimeError|not close enough", "raw"),
               Wrong(penalty_item, "no gradient to the critic", "property"),
               Wrong(penalty_lying, "wrong type", "lie")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_checks_do_not_print_the_solution():
    with pytest.raises(CheckError) as err:
        lecture09.check_hellinger_conjugate(conjugate_sign)
    assert "t / (1 - t)" not in str(err.value) and "t/(1-t)" not in str(err.value)
