"""Lecture 15's exercise checks: correct implementations pass, the common mistakes are rejected."""

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture15


def _per_sample(coef, x):
    return coef.reshape(-1, *[1] * (x.ndim - 1))


def _cumprod_alpha_bar(beta):
    return torch.cumprod(1 - beta, dim=0)


# ---------------------------------------------------------------- Exercise 1: q_sample


def q_sample(x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_sample_view(x0, t, eps, alpha_bar):  # another correct route: broadcasting through a view and torch.lerp-free
    ab = alpha_bar.gather(0, t).view(len(t), *([1] * (x0.dim() - 1)))
    return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * eps


def q_sample_no_sqrt(x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    return ab * x0 + (1 - ab) * eps


def q_sample_swapped(x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    return (1 - ab).sqrt() * x0 + ab.sqrt() * eps


def q_sample_off_by_one(x0, t, eps, alpha_bar):  # alpha_bar_{t-1}: the paper's 1-based t read as 0-based
    ab = _per_sample(alpha_bar[t - 1], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_sample_vector_broadcast(x0, t, eps, alpha_bar):  # fine for (B, D), wrong for images
    ab = alpha_bar[t][:, None]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_sample_one_step(x0, t, eps, alpha_bar):  # sqrt(alpha_t): one step of the chain, not the marginal
    alpha = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    a = _per_sample(alpha[t], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def test_q_sample_accepts_correct():
    lecture15.check_q_sample(q_sample)
    lecture15.check_q_sample(q_sample_view)


@pytest.mark.parametrize("wrong, message", [
    (q_sample_no_sqrt, "does not match the forward chain"),
    (q_sample_swapped, "does not match the forward chain"),
    (q_sample_off_by_one, "forward chain|not close"),
    (q_sample_vector_broadcast, "fails on a batch|wrong shape"),
    (q_sample_one_step, "does not match the forward chain"),
])
def test_q_sample_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture15.check_q_sample(wrong)


# ---------------------------------------------------------------- Exercise 2: the posterior coefficients


def posterior_coefficients(beta):
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    alpha_bar_prev = alpha_bar[:-1]
    coef1, coef2, var = (torch.zeros_like(beta) for _ in range(3))
    coef1[1:] = alpha_bar_prev.sqrt() * beta[1:] / (1 - alpha_bar[1:])
    coef2[1:] = alpha[1:].sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar[1:])
    var[1:] = (1 - alpha_bar_prev) / (1 - alpha_bar[1:]) * beta[1:]
    return coef1, coef2, var


def posterior_by_precision(beta):  # another correct route: Bayes' rule in precision form, entry 0 left at 0
    alpha_bar = _cumprod_alpha_bar(beta)
    coef1, coef2, var = (torch.zeros_like(beta) for _ in range(3))
    coef1[1] = 1.0
    for t in range(2, len(beta)):
        v = 1 / ((1 - beta[t]) / beta[t] + 1 / (1 - alpha_bar[t - 1]))
        var[t] = v
        coef1[t] = v * alpha_bar[t - 1].sqrt() / (1 - alpha_bar[t - 1])
        coef2[t] = v * (1 - beta[t]).sqrt() / beta[t]
    return coef1, coef2, var


def posterior_swapped(beta):
    c1, c2, var = posterior_coefficients(beta)
    return c2, c1, var


def posterior_variance_beta(beta):  # sigma^2 = beta_t: a valid sampler choice, not the posterior variance
    c1, c2, _ = posterior_coefficients(beta)
    return c1, c2, beta.clone()


def posterior_off_by_one(beta):  # alpha_bar_t where alpha_bar_{t-1} belongs
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    coef1, coef2, var = (torch.zeros_like(beta) for _ in range(3))
    coef1[1:] = alpha_bar[1:].sqrt() * beta[1:] / (1 - alpha_bar[1:])
    coef2[1:] = alpha[1:].sqrt() * (1 - alpha_bar[1:]) / (1 - alpha_bar[1:])
    var[1:] = beta[1:]
    return coef1, coef2, var


def posterior_no_sqrt_alpha(beta):
    c1, c2, var = posterior_coefficients(beta)
    return c1, c2 * (1 - beta).sqrt(), var


def posterior_wrong_length(beta):  # only t = 1..T, shape (T,)
    return tuple(v[1:] for v in posterior_coefficients(beta))


def test_posterior_accepts_correct():
    lecture15.check_posterior(posterior_coefficients)
    lecture15.check_posterior(posterior_by_precision)


@pytest.mark.parametrize("wrong, message", [
    (posterior_swapped, "mean of x_"),
    (posterior_variance_beta, "variance of x_"),
    (posterior_off_by_one, "mean of x_"),
    (posterior_no_sqrt_alpha, "mean of x_"),
    (posterior_wrong_length, "wrong shape"),
])
def test_posterior_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture15.check_posterior(wrong)


# ---------------------------------------------------------------- Exercise 3: the epsilon loss


def eps_loss(eps_model, x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps_model(x_t, t) - eps) ** 2).mean()


def eps_loss_mse(eps_model, x0, t, eps, alpha_bar):  # another correct route: F.mse_loss
    ab = _per_sample(alpha_bar[t], x0)
    return torch.nn.functional.mse_loss(eps_model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)


def eps_loss_sum(eps_model, x0, t, eps, alpha_bar):  # summed over dimensions
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps_model(x_t, t) - eps) ** 2).flatten(1).sum(1).mean()


def eps_loss_model_sees_x0(eps_model, x0, t, eps, alpha_bar):
    return ((eps_model(x0, t) - eps) ** 2).mean()


def eps_loss_no_sqrt(eps_model, x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab * x0 + (1 - ab) * eps
    return ((eps_model(x_t, t) - eps) ** 2).mean()


def eps_loss_x0_target(eps_model, x0, t, eps, alpha_bar):  # regresses on the data, not the noise
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps_model(x_t, t) - x0) ** 2).mean()


def eps_loss_item(eps_model, x0, t, eps, alpha_bar):
    return eps_loss(eps_model, x0, t, eps, alpha_bar).item()


def eps_loss_detached(eps_model, x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps_model(x_t, t).detach() - eps) ** 2).mean()


def eps_loss_per_sample(eps_model, x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((eps_model(x_t, t) - eps) ** 2).flatten(1).mean(1)


def test_eps_loss_accepts_correct():
    lecture15.check_eps_loss(eps_loss)
    lecture15.check_eps_loss(eps_loss_mse)


@pytest.mark.parametrize("wrong, message", [
    (eps_loss_sum, "model that predicts 0"),
    (eps_loss_model_sees_x0, "perfect noise predictor"),
    (eps_loss_no_sqrt, "perfect noise predictor"),
    (eps_loss_x0_target, "perfect noise predictor"),
    (eps_loss_item, "wrong thing"),
    (eps_loss_detached, "no gradient"),
    (eps_loss_per_sample, "wrong thing"),
])
def test_eps_loss_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture15.check_eps_loss(wrong)


# ---------------------------------------------------------------- Exercise 4: one ancestral sampling step


def ddpm_step(x_t, t, eps_hat, beta, z):
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    mean = (x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha[t].sqrt()
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return mean + var.sqrt() * z


def ddpm_step_via_x0(x_t, t, eps_hat, beta, z):  # another correct route: the posterior at the predicted x0
    alpha_bar = _cumprod_alpha_bar(beta)
    x0_hat = (x_t - (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha_bar[t].sqrt()
    coef1 = alpha_bar[t - 1].sqrt() * beta[t] / (1 - alpha_bar[t])
    coef2 = (1 - beta[t]).sqrt() * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return coef1 * x0_hat + coef2 * x_t + var.sqrt() * z


def ddpm_step_sigma_beta(x_t, t, eps_hat, beta, z):  # sigma_t^2 = beta_t (and noise even at t = 1)
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    mean = (x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha[t].sqrt()
    return mean + beta[t].sqrt() * z


def ddpm_step_no_rescale(x_t, t, eps_hat, beta, z):  # forgets the 1 / sqrt(alpha_t)
    alpha_bar = _cumprod_alpha_bar(beta)
    mean = x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return mean + var.sqrt() * z


def ddpm_step_alpha_bar(x_t, t, eps_hat, beta, z):  # 1 / sqrt(alpha_bar_t) where 1 / sqrt(alpha_t) belongs
    alpha_bar = _cumprod_alpha_bar(beta)
    mean = (x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha_bar[t].sqrt()
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return mean + var.sqrt() * z


def ddpm_step_sign(x_t, t, eps_hat, beta, z):  # adds the noise prediction instead of removing it
    return ddpm_step(x_t, t, -eps_hat, beta, z)


def test_ddpm_step_accepts_correct():
    lecture15.check_ddpm_step(ddpm_step)
    lecture15.check_ddpm_step(ddpm_step_via_x0)


@pytest.mark.parametrize("wrong", [ddpm_step_sigma_beta, ddpm_step_no_rescale, ddpm_step_alpha_bar, ddpm_step_sign])
def test_ddpm_step_rejects_wrong(wrong):
    with pytest.raises(CheckError, match="true noise"):
        lecture15.check_ddpm_step(wrong)


# ---------------------------------------------------------------- Exercise 5: classifier-free guidance


def guided_eps(eps_c, eps_u, w):
    return w * (eps_c - eps_u) + eps_u


def guided_eps_interpolation(eps_c, eps_u, w):  # the same line written as a weighted sum
    return w * eps_c + (1 - w) * eps_u


def guided_eps_paper_convention(eps_c, eps_u, w):  # (1 + w) eps_c - w eps_u: the paper's w, shifted by one
    return (1 + w) * eps_c - w * eps_u


def guided_eps_swapped(eps_c, eps_u, w):
    return w * (eps_u - eps_c) + eps_c


def guided_eps_no_difference(eps_c, eps_u, w):
    return w * eps_c + eps_u


def test_guidance_accepts_correct():
    lecture15.check_guidance(guided_eps)
    lecture15.check_guidance(guided_eps_interpolation)


@pytest.mark.parametrize("wrong", [guided_eps_paper_convention, guided_eps_swapped, guided_eps_no_difference])
def test_guidance_rejects_wrong(wrong):
    with pytest.raises(CheckError, match="guided_eps at w"):
        lecture15.check_guidance(wrong)


def test_stubs_raise_not_implemented():
    def stub(*args):
        raise NotImplementedError("stub")
    for check in (lecture15.check_q_sample, lecture15.check_posterior, lecture15.check_eps_loss,
                  lecture15.check_ddpm_step, lecture15.check_guidance):
        with pytest.raises(NotImplementedError):
            check(stub)


def test_checks_are_fast():
    import time
    start = time.perf_counter()
    lecture15.check_q_sample(q_sample)
    lecture15.check_posterior(posterior_coefficients)
    lecture15.check_eps_loss(eps_loss)
    lecture15.check_ddpm_step(ddpm_step)
    lecture15.check_guidance(guided_eps)
    assert time.perf_counter() - start < 10
