"""Lecture 13 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture13

# ---------------------------------------------------------------- Exercise 1: the geometric noise schedule


def sigma_schedule(x, sigma_min, L):
    sigma_max = torch.cdist(x, x).max()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))


def sigma_schedule_logspace(x, sigma_min, L):  # another correct route: evenly spaced logs
    sigma_max = torch.pdist(x).max().item()
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), L, dtype=x.dtype)


def schedule_linear(x, sigma_min, L):
    return torch.linspace(torch.cdist(x, x).max().item(), sigma_min, L, dtype=x.dtype)


def schedule_increasing(x, sigma_min, L):
    return sigma_schedule(x, sigma_min, L).flip(0)


def schedule_std(x, sigma_min, L):  # sigma_1 from the spread of the data, not its diameter
    sigma_max = x.std()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))


def schedule_exponent_over_L(x, sigma_min, L):  # (i-1)/L: never reaches sigma_min
    sigma_max = torch.cdist(x, x).max()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / L)


def schedule_max_norm(x, sigma_min, L):  # largest distance from the origin
    sigma_max = x.norm(dim=1).max()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))


@pytest.mark.parametrize("impl", [sigma_schedule, sigma_schedule_logspace])
def test_schedule_accepts(impl, capsys):
    lecture13.check_sigma_schedule(impl)
    assert "[passed]" in capsys.readouterr().out


@pytest.mark.parametrize("impl", [schedule_linear, schedule_increasing, schedule_std, schedule_exponent_over_L,
                                  schedule_max_norm])
def test_schedule_rejects(impl):
    with pytest.raises(CheckError):
        lecture13.check_sigma_schedule(impl)


# ---------------------------------------------------------------- Exercise 2: the weighted DSM loss


def _b(sigma, x):
    return sigma.reshape(-1, *[1] * (x.ndim - 1))


def ncsn_loss(score, x, sigma, z):
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) + z / s) ** 2).flatten(1).sum(1).mean()


def ncsn_loss_eps_form(score, x, sigma, z):  # another correct route: 1/2 ||sigma s + z||^2
    s = _b(sigma, x)
    return 0.5 * ((s * score(x + s * z, sigma) + z) ** 2).reshape(len(x), -1).sum(1).mean()


def loss_unweighted(score, x, sigma, z):
    s = _b(sigma, x)
    return 0.5 * ((score(x + s * z, sigma) + z / s) ** 2).flatten(1).sum(1).mean()


def loss_sign(score, x, sigma, z):  # target +z / sigma
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) - z / s) ** 2).flatten(1).sum(1).mean()


def loss_target_sigma_squared(score, x, sigma, z):  # target -z / sigma^2
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) + z / s**2) ** 2).flatten(1).sum(1).mean()


def loss_mean_over_dims(score, x, sigma, z):
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) + z / s) ** 2).mean()


def loss_sum_dim1(score, x, sigma, z):  # fine for vectors, wrong for images (B, C, H, W)
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) + z / s) ** 2).sum(1).mean()


def loss_detached(score, x, sigma, z):
    return ncsn_loss(score, x, sigma, z).detach()


def loss_variance_noise(score, x, sigma, z):  # perturbs with sigma^2 z
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s**2 * z, sigma) + z / s) ** 2).flatten(1).sum(1).mean()


@pytest.mark.parametrize("impl", [ncsn_loss, ncsn_loss_eps_form])
def test_loss_accepts(impl, capsys):
    lecture13.check_ncsn_loss(impl)
    assert "[passed]" in capsys.readouterr().out


@pytest.mark.parametrize("impl", [loss_unweighted, loss_sign, loss_target_sigma_squared, loss_mean_over_dims,
                                  loss_sum_dim1, loss_detached, loss_variance_noise])
def test_loss_rejects(impl):
    with pytest.raises(CheckError):
        lecture13.check_ncsn_loss(impl)


# ---------------------------------------------------------------- Exercise 3: annealed Langevin dynamics


def annealed_langevin(score, x, sigmas, eps, n_steps):
    states = []
    for sigma in sigmas:
        alpha = eps * (sigma / sigmas[-1]) ** 2
        for _ in range(n_steps):
            x = x + 0.5 * alpha * score(x, sigma) + alpha.sqrt() * torch.randn_like(x)
        states.append(x)
    return torch.stack(states)


def annealed_langevin_floats(score, x, sigmas, eps, n_steps):  # another correct route: Python floats, randn
    out = x.new_empty(len(sigmas), *x.shape)
    sigma_last = float(sigmas[-1])
    for i, sigma in enumerate(sigmas.tolist()):
        alpha = eps * sigma**2 / sigma_last**2
        for _ in range(n_steps):
            x = x + alpha / 2 * score(x, sigma) + math.sqrt(alpha) * torch.randn(x.shape, dtype=x.dtype)
        out[i] = x
    return out


def _langevin_variant(step_size, noise, drift=0.5, order=lambda s: s, level_sigma=None):
    def impl(score, x, sigmas, eps, n_steps):
        states = []
        for sigma in order(sigmas):
            alpha = step_size(eps, sigma, sigmas)
            for _ in range(n_steps):
                s = score(x, sigma if level_sigma is None else level_sigma(sigmas))
                x = x + drift * alpha * s + noise(alpha) * torch.randn_like(x)
            states.append(x)
        return torch.stack(states)
    return impl


def _right_step(eps, sigma, sigmas):
    return eps * (sigma / sigmas[-1]) ** 2


langevin_wrong = {
    "constant step": _langevin_variant(lambda eps, s, ss: eps + 0 * s, torch.sqrt),
    "step proportional to sigma": _langevin_variant(lambda eps, s, ss: eps * s / ss[-1], torch.sqrt),
    "noise alpha, not sqrt(alpha)": _langevin_variant(_right_step, lambda a: a),
    "no factor 1/2 on the drift": _langevin_variant(_right_step, torch.sqrt, drift=1.0),
    "sigmas in increasing order": _langevin_variant(_right_step, torch.sqrt, order=lambda s: s.flip(0)),
    "score always at sigma_L": _langevin_variant(_right_step, torch.sqrt, level_sigma=lambda ss: ss[-1]),
    "noise sqrt(2 alpha)": _langevin_variant(_right_step, lambda a: (2 * a).sqrt()),
}


def langevin_final_only(score, x, sigmas, eps, n_steps):
    return annealed_langevin(score, x, sigmas, eps, n_steps)[-1]


@pytest.mark.parametrize("impl", [annealed_langevin, annealed_langevin_floats])
def test_langevin_accepts(impl, capsys):
    lecture13.check_annealed_langevin(impl)
    assert "[passed]" in capsys.readouterr().out


@pytest.mark.parametrize("impl", [*langevin_wrong.values(), langevin_final_only], ids=[*langevin_wrong, "final only"])
def test_langevin_rejects(impl):
    with pytest.raises(CheckError):
        lecture13.check_annealed_langevin(impl)


# ---------------------------------------------------------------- Exercise 4: a reverse-SDE step


def reverse_sde_step(sde, score, x, t, dt):
    g = sde.g(t)
    return x + g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * torch.randn_like(x)


def reverse_sde_step_from_sigma(sde, score, x, t, dt):  # another correct route: g^2 = 2 sigma^2 log(max/min)
    sigma = sde.sigma(t)
    g2 = 2 * sigma**2 * math.log(sde.sigma_max / sde.sigma_min)
    return x + g2 * dt * score(x, sigma) + math.sqrt(g2 * dt) * torch.randn(x.shape, dtype=x.dtype)


def _sde_variant(drift_coef, noise_scale):
    def impl(sde, score, x, t, dt):
        g = sde.g(t)
        return x + drift_coef(g) * score(x, sde.sigma(t)) * dt + noise_scale(g, dt) * torch.randn_like(x)
    return impl


sde_wrong = {
    "drift sign": _sde_variant(lambda g: -g**2, lambda g, dt: g * math.sqrt(dt)),
    "factor 1/2 (the ODE's drift)": _sde_variant(lambda g: 0.5 * g**2, lambda g, dt: g * math.sqrt(dt)),
    "g instead of g^2": _sde_variant(lambda g: g, lambda g, dt: g * math.sqrt(dt)),
    "noise g dt": _sde_variant(lambda g: g**2, lambda g, dt: g * dt),
    "no noise": _sde_variant(lambda g: g**2, lambda g, dt: 0.0),
}


def sde_sigma_for_g(sde, score, x, t, dt):  # confuses sigma(t) with g(t)
    s = sde.sigma(t)
    return x + s**2 * score(x, s) * dt + s * math.sqrt(dt) * torch.randn_like(x)


@pytest.mark.parametrize("impl", [reverse_sde_step, reverse_sde_step_from_sigma])
def test_sde_step_accepts(impl, capsys):
    lecture13.check_reverse_sde_step(impl)
    assert "[passed]" in capsys.readouterr().out


@pytest.mark.parametrize("impl", [*sde_wrong.values(), sde_sigma_for_g], ids=[*sde_wrong, "sigma for g"])
def test_sde_step_rejects(impl):
    with pytest.raises(CheckError):
        lecture13.check_reverse_sde_step(impl)
