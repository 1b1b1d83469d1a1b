"""Lecture 13 checks: each accepts correct implementations written in several ways and rejects the common wrong ones."""

import math

import numpy as np
import torch
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import LyingTensor as _Liar

from dgm_course.exercises import lecture13


def _lie(impl):
    def liar(*args):
        return impl(*args).as_subclass(_Liar)
    return liar

# ---------------------------------------------------------------- Exercise 1: the geometric noise schedule


def sigma_schedule(x, sigma_min, L):
    sigma_max = torch.cdist(x, x).max()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))


def sigma_schedule_logspace(x, sigma_min, L):  # evenly spaced logs, float64
    sigma_max = torch.pdist(x.double()).max().item()
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), L, dtype=torch.float64)


def sigma_schedule_loops(x, sigma_min, L):  # Python loops and floats
    n = len(x)
    sigma_max = max(float(((x[j] - x[k]) ** 2).sum().sqrt()) for j in range(n) for k in range(j + 1, n))
    return torch.tensor([math.exp(math.log(sigma_max) + i / (L - 1) * math.log(sigma_min / sigma_max))
                         for i in range(L)], dtype=x.dtype)


def sigma_schedule_numpy(x, sigma_min, L):  # numpy, by repeated multiplication with the ratio
    pts = x.numpy()
    sigma_max = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)).max()
    gamma = (sigma_max / sigma_min) ** (1 / (L - 1))
    return torch.from_numpy(sigma_max / gamma ** np.arange(L))


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


def schedule_squared_distance(x, sigma_min, L):
    sigma_max = (torch.cdist(x, x) ** 2).max()
    i = torch.arange(L, dtype=x.dtype)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))


def schedule_list(x, sigma_min, L):
    return sigma_schedule(x, sigma_min, L).tolist()


def schedule_in_place_centring(x, sigma_min, L):  # centres the caller's data in place
    x -= x.mean(0)
    return sigma_schedule(x, sigma_min, L)


def schedule_column(x, sigma_min, L):  # (L, 1)
    return sigma_schedule(x, sigma_min, L)[:, None]


def schedule_divides_by_L_minus_2(x, sigma_min, L):  # breaks for L = 2
    sigma_max = torch.cdist(x, x).max()
    i = torch.arange(L, dtype=x.dtype)
    return torch.cat([sigma_max[None], sigma_max * (sigma_min / sigma_max) ** (i[1:] / (L - 1 - (L == 2)))])


# ---------------------------------------------------------------- Exercise 2: the NCSN objective


def _b(sigma, x):
    return sigma.reshape(-1, *[1] * (x.ndim - 1))


def ncsn_loss(score, x, sigma_min, sigma_max, generator=None):
    u = torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device)
    sigma = sigma_min * (sigma_max / sigma_min) ** u
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    s = _b(sigma, x)
    return 0.5 * (s**2 * (score(x + s * z, sigma) + z / s) ** 2).flatten(1).sum(1).mean()


def ncsn_loss_loop(score, x, sigma_min, sigma_max, generator=None):  # one example at a time, noise first
    total = 0.0
    for b in range(len(x)):
        z = torch.randn(x[b:b + 1].shape, generator=generator, dtype=x.dtype)
        log_sigma = math.log(sigma_min) + torch.rand(1, generator=generator).item() * math.log(sigma_max / sigma_min)
        sigma = torch.full((1,), math.exp(log_sigma), dtype=x.dtype)
        residual = score(x[b:b + 1] + sigma * z, sigma) + z / sigma
        total = total + 0.5 * sigma**2 * (residual**2).sum()
    return (total / len(x)).reshape(())


def ncsn_loss_eps_form_float64(score, x, sigma_min, sigma_max, generator=None):  # 1/2 ||sigma s + z||^2 in float64
    x64 = x.double()
    log_sigma = torch.empty(len(x), dtype=torch.float64).uniform_(math.log(sigma_min), math.log(sigma_max),
                                                                   generator=generator)
    sigma = log_sigma.exp()
    z = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    x_tilde = (x64 + _b(sigma, x) * z).to(x.dtype)
    eps_pred = -_b(sigma, x) * score(x_tilde, sigma.to(x.dtype)).double()
    return (0.5 * ((eps_pred - z) ** 2).reshape(len(x), -1).sum(1).mean()).to(x.dtype)


def ncsn_loss_float32(score, x, sigma_min, sigma_max, generator=None):  # draws in float32, einsum
    u = torch.rand(len(x), generator=generator)
    sigma = (sigma_min * (sigma_max / sigma_min) ** u).to(x.dtype)
    z = torch.randn(x.shape, generator=generator).to(x.dtype)
    s = _b(sigma, x)
    r = (s * score(x + s * z, sigma) + z).flatten(1)
    return 0.5 * torch.einsum("bd,bd->", r, r) / len(x)


def _loss_variant(weight=lambda s: s**2, target=lambda z, s: -z / s, reduce="sum", sigma_draw="log",
                  noise=lambda z, s: s * z, per_batch=False, uniform_z=False):
    def impl(score, x, sigma_min, sigma_max, generator=None):
        u = torch.rand(1 if per_batch else len(x), generator=generator, dtype=x.dtype).expand(len(x))
        if sigma_draw == "log":
            sigma = sigma_min * (sigma_max / sigma_min) ** u
        elif sigma_draw == "linear":
            sigma = sigma_min + (sigma_max - sigma_min) * u
        else:  # log sigma from a normal law
            sigma = sigma_min * (sigma_max / sigma_min) ** torch.randn(len(x), generator=generator, dtype=x.dtype)
        if uniform_z:
            z = (torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5) * math.sqrt(12)
        else:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        s = _b(sigma, x)
        sq = weight(s) * (score(x + noise(z, s), sigma) - target(z, s)) ** 2
        per = sq.flatten(1).sum(1) if reduce == "sum" else sq.flatten(1).mean(1)
        return 0.5 * per.mean()
    return impl


def loss_global_rng(score, x, sigma_min, sigma_max, generator=None):  # ignores the generator
    sigma = sigma_min * (sigma_max / sigma_min) ** torch.rand(len(x), dtype=x.dtype)
    z = torch.randn_like(x)
    s = _b(sigma, x)
    return 0.5 * ((s * score(x + s * z, sigma) + z) ** 2).flatten(1).sum(1).mean()


def loss_own_generator(score, x, sigma_min, sigma_max, generator=None):  # re-seeds a generator of its own
    return ncsn_loss(score, x, sigma_min, sigma_max, torch.Generator().manual_seed(0))


def loss_item(score, x, sigma_min, sigma_max, generator=None):
    return torch.tensor(ncsn_loss(score, x, sigma_min, sigma_max, generator).item(), dtype=x.dtype)


def loss_per_example(score, x, sigma_min, sigma_max, generator=None):  # (B,), not averaged
    u = torch.rand(len(x), generator=generator, dtype=x.dtype)
    sigma = sigma_min * (sigma_max / sigma_min) ** u
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    s = _b(sigma, x)
    return 0.5 * ((s * score(x + s * z, sigma) + z) ** 2).flatten(1).sum(1)


def loss_vector_broadcast(score, x, sigma_min, sigma_max, generator=None):  # sigma[:, None]: vectors only
    u = torch.rand(len(x), generator=generator, dtype=x.dtype)
    sigma = sigma_min * (sigma_max / sigma_min) ** u
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    s = sigma[:, None]
    return 0.5 * ((s * score(x + s * z, sigma) + z) ** 2).flatten(1).sum(1).mean()


def loss_score_at_clean_x_too(score, x, sigma_min, sigma_max, generator=None):  # calls the network twice
    score(x, torch.full((len(x),), sigma_min, dtype=x.dtype))
    return ncsn_loss(score, x, sigma_min, sigma_max, generator)


def loss_unbatched_calls(score, x, sigma_min, sigma_max, generator=None):  # score(x_b, sigma_b) without batch dim
    total = 0.0
    for b in range(len(x)):
        sigma = sigma_min * (sigma_max / sigma_min) ** torch.rand((), generator=generator, dtype=x.dtype)
        z = torch.randn(x[b].shape, generator=generator, dtype=x.dtype)
        total = total + 0.5 * ((sigma * score(x[b] + sigma * z, sigma) + z) ** 2).sum()
    return total / len(x)


def loss_in_place(score, x, sigma_min, sigma_max, generator=None):  # perturbs the caller's batch in place
    u = torch.rand(len(x), generator=generator, dtype=x.dtype)
    sigma = sigma_min * (sigma_max / sigma_min) ** u
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    s = _b(sigma, x)
    x += s * z
    return 0.5 * ((s * score(x, sigma) + z) ** 2).flatten(1).sum(1).mean()


# ---------------------------------------------------------------- Exercise 3: annealed Langevin dynamics


def annealed_langevin(score, x, sigmas, step, n_steps):
    states = []
    for sigma in sigmas:
        eta = step * (sigma / sigmas[-1]) ** 2
        for _ in range(n_steps):
            x = x + eta * score(x, sigma) + (2 * eta).sqrt() * torch.randn_like(x)
        states.append(x)
    return torch.stack(states)


def annealed_langevin_floats(score, x, sigmas, step, n_steps):  # Python floats, torch.randn, preallocated output
    out = x.new_empty(len(sigmas), *x.shape)
    sigma_last = float(sigmas[-1])
    for i, sigma in enumerate(sigmas.tolist()):
        eta = step * sigma**2 / sigma_last**2
        for _ in range(n_steps):
            x = x + eta * score(x, sigma) + math.sqrt(2 * eta) * torch.randn(x.shape, dtype=x.dtype)
        out[i] = x
    return out


def annealed_langevin_float64(score, x, sigmas, step, n_steps):  # chains in float64, all noise of a level at once
    states, y = [], x.double()
    etas = step * (sigmas.double() / sigmas[-1].double()) ** 2
    for sigma, eta in zip(sigmas, etas, strict=True):
        noise = torch.randn(n_steps, *x.shape, dtype=x.dtype).double()
        for k in range(n_steps):
            y = y + eta * score(y.to(x.dtype), sigma).double() + torch.sqrt(2 * eta) * noise[k]
        states.append(y.to(x.dtype))
    return torch.stack(states)


def _right_step(step, sigma, sigmas):
    return step * (sigma / sigmas[-1]) ** 2


def _langevin_variant(step_size=_right_step, noise=lambda eta: (2 * eta).sqrt(), drift=1.0, order=lambda s: s,
                      level_sigma=None, draw=torch.randn_like):
    def impl(score, x, sigmas, step, n_steps):
        states = []
        for sigma in order(sigmas):
            eta = step_size(step, sigma, sigmas)
            for _ in range(n_steps):
                s = score(x, sigma if level_sigma is None else level_sigma(sigmas))
                x = x + drift * eta * s + noise(eta) * draw(x)
            states.append(x)
        return torch.stack(states)
    return impl


def langevin_constant_step(score, x, sigmas, step, n_steps):
    return _langevin_variant(step_size=lambda st, s, ss: st + 0 * s)(score, x, sigmas, step, n_steps)


def langevin_step_proportional_to_sigma(score, x, sigmas, step, n_steps):
    return _langevin_variant(step_size=lambda st, s, ss: st * s / ss[-1])(score, x, sigmas, step, n_steps)


def langevin_alpha_convention(score, x, sigmas, step, n_steps):  # Song & Ermon's x + alpha/2 s + sqrt(alpha) z
    return _langevin_variant(drift=0.5, noise=lambda a: a.sqrt())(score, x, sigmas, step, n_steps)


def langevin_noise_eta(score, x, sigmas, step, n_steps):  # noise eta z, not sqrt(2 eta) z
    return _langevin_variant(noise=lambda eta: eta)(score, x, sigmas, step, n_steps)


def langevin_increasing(score, x, sigmas, step, n_steps):
    return _langevin_variant(order=lambda s: s.flip(0))(score, x, sigmas, step, n_steps)


def langevin_score_at_sigma_L(score, x, sigmas, step, n_steps):
    return _langevin_variant(level_sigma=lambda ss: ss[-1])(score, x, sigmas, step, n_steps)


def langevin_uniform_noise(score, x, sigmas, step, n_steps):  # variance-one uniform noise
    uniform = lambda x: (torch.rand_like(x) - 0.5) * math.sqrt(12)  # noqa: E731
    return _langevin_variant(draw=uniform)(score, x, sigmas, step, n_steps)


def langevin_own_generator(score, x, sigmas, step, n_steps):  # the same noise on every call
    g = torch.Generator().manual_seed(0)
    fixed = lambda x: torch.randn(x.shape, generator=g, dtype=x.dtype)  # noqa: E731
    return _langevin_variant(draw=fixed)(score, x, sigmas, step, n_steps)


def langevin_final_only(score, x, sigmas, step, n_steps):
    return annealed_langevin(score, x, sigmas, step, n_steps)[-1]


def langevin_in_place(score, x, sigmas, step, n_steps):  # x.add_: the caller's x changes and every state aliases it
    states = []
    for sigma in sigmas:
        eta = step * (sigma / sigmas[-1]) ** 2
        for _ in range(n_steps):
            x.add_(eta * score(x, sigma) + (2 * eta).sqrt() * torch.randn_like(x))
        states.append(x)
    return torch.stack(states)


def langevin_index_past_the_end(score, x, sigmas, step, n_steps):  # sigma_(i+1) for the level i: IndexError
    states = []
    for i in range(len(sigmas)):
        eta = step * (sigmas[i + 1] / sigmas[-1]) ** 2
        for _ in range(n_steps):
            x = x + eta * score(x, sigmas[i]) + (2 * eta).sqrt() * torch.randn_like(x)
        states.append(x)
    return torch.stack(states)


# ---------------------------------------------------------------- Exercise 4: a reverse-SDE step


def reverse_sde_step(sde, score, x, t, dt):
    g = sde.g(t)
    return x + g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * torch.randn_like(x)


def reverse_sde_step_from_sigma(sde, score, x, t, dt):  # g^2 = 2 sigma^2 log(max/min), torch.randn
    sigma = sde.sigma(t)
    g2 = 2 * sigma**2 * math.log(sde.sigma_max / sde.sigma_min)
    return x + g2 * dt * score(x, sigma) + math.sqrt(g2 * dt) * torch.randn(x.shape, dtype=x.dtype)


def reverse_sde_step_loop_float64(sde, score, x, t, dt):  # coordinate by coordinate, in float64
    g = torch.tensor(sde.g(t), dtype=torch.float64)
    s = score(x, sde.sigma(t)).double()
    z = torch.randn_like(x).double()
    cols = [x[:, d].double() + g**2 * s[:, d] * dt + g * math.sqrt(dt) * z[:, d] for d in range(x.shape[1])]
    return torch.stack(cols, 1).to(x.dtype)


def _sde_variant(drift_coef, noise_scale, draw=torch.randn_like):
    def impl(sde, score, x, t, dt):
        g = sde.g(t)
        return x + drift_coef(g) * score(x, sde.sigma(t)) * dt + noise_scale(g, dt) * draw(x)
    return impl


def sde_drift_sign(sde, score, x, t, dt):
    return _sde_variant(lambda g: -g**2, lambda g, dt: g * math.sqrt(dt))(sde, score, x, t, dt)


def sde_half_drift(sde, score, x, t, dt):  # the ODE's drift
    return _sde_variant(lambda g: 0.5 * g**2, lambda g, dt: g * math.sqrt(dt))(sde, score, x, t, dt)


def sde_g_not_squared(sde, score, x, t, dt):
    return _sde_variant(lambda g: g, lambda g, dt: g * math.sqrt(dt))(sde, score, x, t, dt)


def sde_noise_g_dt(sde, score, x, t, dt):
    return _sde_variant(lambda g: g**2, lambda g, dt: g * dt)(sde, score, x, t, dt)


def sde_no_noise(sde, score, x, t, dt):
    return _sde_variant(lambda g: g**2, lambda g, dt: 0.0)(sde, score, x, t, dt)


def sde_uniform_noise(sde, score, x, t, dt):
    uniform = lambda x: (torch.rand_like(x) - 0.5) * math.sqrt(12)  # noqa: E731
    return _sde_variant(lambda g: g**2, lambda g, dt: g * math.sqrt(dt), draw=uniform)(sde, score, x, t, dt)


def sde_sigma_for_g(sde, score, x, t, dt):  # confuses sigma(t) with g(t)
    s = sde.sigma(t)
    return x + s**2 * score(x, s) * dt + s * math.sqrt(dt) * torch.randn_like(x)


def sde_in_place(sde, score, x, t, dt):
    g = sde.g(t)
    x += g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * torch.randn_like(x)
    return x


def sde_own_generator(sde, score, x, t, dt):
    g = sde.g(t)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    return x + g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * z


def sde_noise_per_row(sde, score, x, t, dt):  # one noise value per row: (N,) does not broadcast against (N, 3)
    g = sde.g(t)
    return x + g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * torch.randn(len(x), dtype=x.dtype)


EXERCISES = {
    "ex1_sigma_schedule": Exercise(
        check=lecture13.check_sigma_schedule,
        correct=[sigma_schedule, sigma_schedule_logspace, sigma_schedule_loops, sigma_schedule_numpy],
        wrong=[
            Wrong(schedule_linear, "ratios", "formula"),
            Wrong(schedule_increasing, "do not decrease", "formula"),
            Wrong(schedule_std, "sigma_1", "formula"),
            Wrong(schedule_max_norm, "sigma_1", "formula"),
            Wrong(schedule_squared_distance, "sigma_1", "formula"),
            Wrong(schedule_exponent_over_L, "sigma_L", "edge"),
            Wrong(schedule_divides_by_L_minus_2, "raised ZeroDivisionError|not close|NaN|sigma_L", "edge"),
            Wrong(schedule_column, "wrong shape", "shape"),
            Wrong(schedule_list, "wrong type", "shape"),
            Wrong(schedule_in_place_centring, "in place", "property"),
            Wrong(_lie(sigma_schedule), "subclass", "lie"),
        ],
    ),
    "ex2_ncsn_loss": Exercise(
        check=lecture13.check_ncsn_loss,
        correct=[ncsn_loss, ncsn_loss_loop, ncsn_loss_eps_form_float64, ncsn_loss_float32],
        wrong=[
            Wrong(_loss_variant(weight=lambda s: 1.0), "loss, recomputed", "formula"),
            Wrong(_loss_variant(weight=lambda s: s), "loss, recomputed", "formula"),
            Wrong(_loss_variant(target=lambda z, s: z / s), "loss, recomputed", "formula"),
            Wrong(_loss_variant(reduce="mean"), "loss, recomputed", "formula"),
            Wrong(_loss_variant(noise=lambda z, s: s**2 * z), "not standard normal", "formula"),
            Wrong(_loss_variant(sigma_draw="linear"), "log sigma uniform", "property"),
            Wrong(_loss_variant(per_batch=True), "log sigma uniform", "property"),
            Wrong(_loss_variant(uniform_z=True), "not standard normal", "property"),
            Wrong(_loss_variant(sigma_draw="normal"), "outside", "edge"),
            Wrong(loss_item, "no gradient|carries no gradient", "property"),
            Wrong(loss_in_place, "in place", "property"),
            Wrong(loss_score_at_clean_x_too, "wrong number of points", "property"),
            Wrong(loss_global_rng, "global random generator", "randomness"),
            Wrong(loss_own_generator, "does not follow the generator", "randomness"),
            Wrong(loss_per_example, "not one number", "shape"),
            Wrong(loss_unbatched_calls, "wrong shapes", "shape"),
            Wrong(loss_vector_broadcast, "raised RuntimeError", "raw"),
            Wrong(_lie(ncsn_loss), "subclass", "lie"),
        ],
    ),
    "ex3_annealed_langevin": Exercise(
        check=lecture13.check_annealed_langevin,
        correct=[annealed_langevin, annealed_langevin_floats, annealed_langevin_float64],
        wrong=[
            Wrong(langevin_constant_step, "mean after level|variance after level", "formula"),
            Wrong(langevin_step_proportional_to_sigma, "mean after level|variance after level", "formula"),
            Wrong(langevin_alpha_convention, "mean after level|variance after level", "formula"),
            Wrong(langevin_noise_eta, "variance after level", "formula"),
            Wrong(langevin_increasing, "mean after level|variance after level", "formula"),
            Wrong(langevin_score_at_sigma_L, "mean after level|variance after level", "formula"),
            Wrong(langevin_uniform_noise, "not Gaussian", "property"),
            Wrong(langevin_in_place, "in place", "property"),
            Wrong(langevin_own_generator, "random generator", "randomness"),
            Wrong(langevin_final_only, "wrong shape", "shape"),
            Wrong(langevin_index_past_the_end, "raised IndexError", "raw"),
            Wrong(_lie(annealed_langevin), "subclass", "lie"),
        ],
    ),
    "ex4_reverse_sde_step": Exercise(
        check=lecture13.check_reverse_sde_step,
        correct=[reverse_sde_step, reverse_sde_step_from_sigma, reverse_sde_step_loop_float64],
        wrong=[
            Wrong(sde_drift_sign, "mean of x_", "formula"),
            Wrong(sde_half_drift, "mean of x_", "formula"),
            Wrong(sde_g_not_squared, "mean of x_", "formula"),
            Wrong(sde_sigma_for_g, "mean of x_|variance of x_", "formula"),
            Wrong(sde_noise_g_dt, "variance of x_", "formula"),
            Wrong(sde_no_noise, "variance of x_", "formula"),
            Wrong(sde_uniform_noise, "not Gaussian", "property"),
            Wrong(sde_in_place, "in place", "property"),
            Wrong(sde_own_generator, "random generator", "randomness"),
            Wrong(sde_noise_per_row, "raised RuntimeError", "raw"),
            Wrong(_lie(reverse_sde_step), "subclass", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
