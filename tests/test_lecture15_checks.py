"""Lecture 15's exercise checks: correct implementations written in several ways pass, and the common mistakes are
rejected with the right message (tests/exercise_cases.py generates the tests from EXERCISES)."""

import torch
from exercise_cases import AlwaysEqual as Always
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Liar

from dgm_course.exercises import lecture15


def _per_sample(coef, x):
    return coef.reshape(-1, *[1] * (x.ndim - 1))


def _cumprod_alpha_bar(beta):
    return torch.cumprod(1 - beta, dim=0)


# ---------------------------------------------------------------- Exercise 1: q_sample


def q_sample(x0, t, eps, alpha_bar):
    ab = _per_sample(alpha_bar[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def q_sample_view(x0, t, eps, alpha_bar):  # gather and view, float64 as given
    ab = alpha_bar.gather(0, t).view(len(t), *([1] * (x0.dim() - 1)))
    return torch.sqrt(ab) * x0 + torch.sqrt(1.0 - ab) * eps


def q_sample_loop(x0, t, eps, alpha_bar):  # one example at a time
    out = torch.empty_like(x0)
    for b in range(len(x0)):
        ab = float(alpha_bar[int(t[b])])
        out[b] = ab**0.5 * x0[b] + (1 - ab) ** 0.5 * eps[b]
    return out


def q_sample_float32(x0, t, eps, alpha_bar):  # computed in float32
    ab = _per_sample(alpha_bar.float()[t], x0)
    return ab.sqrt() * x0.float() + (1 - ab).sqrt() * eps.float()


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


def q_sample_own_noise(x0, t, eps, alpha_bar):  # draws new noise instead of using eps
    return q_sample(x0, t, torch.randn_like(x0), alpha_bar)


def q_sample_in_place(x0, t, eps, alpha_bar):  # right values, but x0 is overwritten
    ab = _per_sample(alpha_bar[t], x0)
    return x0.mul_(ab.sqrt()).add_((1 - ab).sqrt() * eps)


def q_sample_liar(x0, t, eps, alpha_bar):
    return q_sample(x0, t, eps, alpha_bar).as_subclass(Liar)


def q_sample_always(x0, t, eps, alpha_bar):
    return Always()


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


def posterior_by_precision(beta):  # Bayes' rule in precision form, one t at a time
    alpha_bar = _cumprod_alpha_bar(beta)
    coef1, coef2, var = (torch.zeros_like(beta) for _ in range(3))
    coef1[1] = 1.0
    for t in range(2, len(beta)):
        v = 1 / ((1 - beta[t]) / beta[t] + 1 / (1 - alpha_bar[t - 1]))
        var[t] = v
        coef1[t] = v * alpha_bar[t - 1].sqrt() / (1 - alpha_bar[t - 1])
        coef2[t] = v * (1 - beta[t]).sqrt() / beta[t]
    return coef1, coef2, var


def posterior_float32(beta):  # computed in float32, returned as float32
    return posterior_coefficients(beta.float())


def posterior_lists(beta):  # plain Python floats, then tensors
    b = beta.tolist()
    ab, out = [1.0], ([0.0], [0.0], [0.0])
    for t in range(1, len(b)):
        ab.append(ab[-1] * (1 - b[t]))
        out[0].append(ab[t - 1] ** 0.5 * b[t] / (1 - ab[t]))
        out[1].append((1 - b[t]) ** 0.5 * (1 - ab[t - 1]) / (1 - ab[t]))
        out[2].append((1 - ab[t - 1]) / (1 - ab[t]) * b[t])
    return tuple(torch.tensor(v, dtype=torch.float64) for v in out)


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


def posterior_nan_at_zero(beta):  # every entry by the formula: 0/0 at t = 0
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
    return (alpha_bar_prev.sqrt() * beta / (1 - alpha_bar), alpha.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar),
            (1 - alpha_bar_prev) / (1 - alpha_bar) * beta)


def posterior_in_place(beta):  # turns beta into alpha in place
    alpha = beta.neg_().add_(1)
    return posterior_coefficients(1 - alpha)


def posterior_liar(beta):
    return tuple(v.as_subclass(Liar) for v in posterior_coefficients(beta))


# ---------------------------------------------------------------- Exercise 3: the loss of one DDPM training step


def ddpm_loss(net, x0, y, alpha_bar, weight, generator=None):
    B, T = len(x0), len(alpha_bar) - 1
    t = torch.randint(1, T + 1, (B,), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    squared_error = ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)          # (B,)
    return (weight[t] * squared_error).mean()


def ddpm_loss_loop(net, x0, y, alpha_bar, weight, generator=None):  # noise first, then t; loops over examples
    B, T = len(x0), len(alpha_bar) - 1
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    t = torch.tensor([int(torch.randint(1, T + 1, (1,), generator=generator)) for _ in range(B)])
    x_t = torch.stack([alpha_bar[t[b]].sqrt() * x0[b] + (1 - alpha_bar[t[b]]).sqrt() * eps[b] for b in range(B)])
    eps_hat = net(x_t, t, y)
    total = 0
    for b in range(B):
        total = total + weight[t[b]] * ((eps_hat[b] - eps[b]) ** 2).mean()
    return total / B


def ddpm_loss_float32(net, x0, y, alpha_bar, weight, generator=None):  # schedule and weights in float32
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar.float()[t], x0)
    x_t = (ab.sqrt() * x0.float() + (1 - ab).sqrt() * eps.float()).to(x0.dtype)
    mse = torch.nn.functional.mse_loss(net(x_t, t, y), eps, reduction="none").flatten(1).mean(1)
    return (weight.float()[t] * mse.float()).mean().to(x0.dtype)


def ddpm_loss_einsum(net, x0, y, alpha_bar, weight, generator=None):  # weights as a dot product, x_t by lerp-free einsum
    B = len(x0)
    t = torch.randint(1, len(alpha_bar), (B,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    x_t = torch.einsum("b,b...->b...", alpha_bar[t].sqrt(), x0) + torch.einsum("b,b...->b...", (1 - alpha_bar[t]).sqrt(), eps)
    err = (net(x_t, t, y) - eps).pow(2).reshape(B, -1).mean(1)
    return weight[t] @ err / B


def ddpm_loss_no_sqrt(net, x0, y, alpha_bar, weight, generator=None):
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab * x0 + (1 - ab) * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_t_from_zero(net, x0, y, alpha_bar, weight, generator=None):  # t in 0..T-1
    t = torch.randint(0, len(alpha_bar) - 1, (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_weight_off_by_one(net, x0, y, alpha_bar, weight, generator=None):
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t - 1] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_weight_outside(net, x0, y, alpha_bar, weight, generator=None):  # mean weight times mean error
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return weight[t].mean() * ((net(x_t, t, y) - eps) ** 2).mean()


def ddpm_loss_sum_dims(net, x0, y, alpha_bar, weight, generator=None):  # sums over dimensions
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).sum(1)).mean()


def ddpm_loss_x0_target(net, x0, y, alpha_bar, weight, generator=None):  # regresses on the data, not the noise
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - x0) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_one_t(net, x0, y, alpha_bar, weight, generator=None):  # one step for the whole batch
    t = torch.randint(1, len(alpha_bar), (1,), generator=generator).expand(len(x0))
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_uniform_noise(net, x0, y, alpha_bar, weight, generator=None):  # mean 0, variance 1, not Gaussian
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = (torch.rand(x0.shape, generator=generator, dtype=x0.dtype) - 0.5) * 12**0.5
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_global_rng(net, x0, y, alpha_bar, weight, generator=None):  # ignores the generator
    return ddpm_loss(net, x0, y, alpha_bar, weight, None)


def ddpm_loss_vector_broadcast(net, x0, y, alpha_bar, weight, generator=None):  # (B, 1): right for vectors only
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = alpha_bar[t][:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_no_labels(net, x0, y, alpha_bar, weight, generator=None):  # forgets y
    return ddpm_loss(net, x0, None, alpha_bar, weight, generator)


def ddpm_loss_item(net, x0, y, alpha_bar, weight, generator=None):
    return ddpm_loss(net, x0, y, alpha_bar, weight, generator).item()


def ddpm_loss_detached(net, x0, y, alpha_bar, weight, generator=None):
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t, y).detach() - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_per_example(net, x0, y, alpha_bar, weight, generator=None):  # (B,): not reduced over the batch
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    return weight[t] * ((net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, y) - eps) ** 2).flatten(1).mean(1)


def ddpm_loss_float_t(net, x0, y, alpha_bar, weight, generator=None):  # steps as floats
    t = torch.randint(1, len(alpha_bar), (len(x0),), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return (weight[t] * ((net(x_t, t.float(), y) - eps) ** 2).flatten(1).mean(1)).mean()


def ddpm_loss_liar(net, x0, y, alpha_bar, weight, generator=None):
    return ddpm_loss(net, x0, y, alpha_bar, weight, generator).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 4: one ancestral sampling step


def ddpm_step(x_t, t, eps_hat, beta, z):
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    mean = (x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha[t].sqrt()
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return mean + var.sqrt() * z


def ddpm_step_via_x0(x_t, t, eps_hat, beta, z):  # the posterior at the predicted x0
    alpha_bar = _cumprod_alpha_bar(beta)
    x0_hat = (x_t - (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha_bar[t].sqrt()
    coef1 = alpha_bar[t - 1].sqrt() * beta[t] / (1 - alpha_bar[t])
    coef2 = (1 - beta[t]).sqrt() * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return coef1 * x0_hat + coef2 * x_t + var.sqrt() * z


def ddpm_step_loop(x_t, t, eps_hat, beta, z):  # alpha_bar by a Python loop, floats
    ab = [1.0]
    for b in beta[1:].tolist():
        ab.append(ab[-1] * (1 - b))
    b_t = float(beta[t])
    mean = (x_t - b_t / (1 - ab[t]) ** 0.5 * eps_hat) / (1 - b_t) ** 0.5
    return mean + ((1 - ab[t - 1]) / (1 - ab[t]) * b_t) ** 0.5 * z


def ddpm_step_float32(x_t, t, eps_hat, beta, z):
    return ddpm_step(x_t.float(), t, eps_hat.float(), beta.float(), z.float())


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


def ddpm_step_own_noise(x_t, t, eps_hat, beta, z):  # draws its own z
    return ddpm_step(x_t, t, eps_hat, beta, torch.randn_like(x_t))


def ddpm_step_in_place(x_t, t, eps_hat, beta, z):  # right values, x_t overwritten
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]
    return x_t.sub_(beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat).div_(alpha[t].sqrt()).add_(var.sqrt() * z)


def ddpm_step_liar(x_t, t, eps_hat, beta, z):
    return ddpm_step(x_t, t, eps_hat, beta, z).as_subclass(Liar)


def ddpm_step_flat(x_t, t, eps_hat, beta, z):  # flattens the images
    return ddpm_step(x_t, t, eps_hat, beta, z).flatten(1)


# ---------------------------------------------------------------- Exercise 5: classifier-free guidance


def guided_eps(eps_c, eps_u, w):
    return w * (eps_c - eps_u) + eps_u


def guided_eps_interpolation(eps_c, eps_u, w):  # the same line written as a weighted sum
    return w * eps_c + (1 - w) * eps_u


def guided_eps_lerp(eps_c, eps_u, w):  # torch.lerp in float32
    return torch.lerp(eps_u.float(), eps_c.float(), w)


def guided_eps_loop(eps_c, eps_u, w):  # entry by entry
    out = torch.empty_like(eps_c).flatten()
    for i, (c, u) in enumerate(zip(eps_c.flatten().tolist(), eps_u.flatten().tolist(), strict=True)):
        out[i] = u + w * (c - u)
    return out.reshape(eps_c.shape)


def guided_eps_paper_convention(eps_c, eps_u, w):  # (1 + w) eps_c - w eps_u: the paper's w, shifted by one
    return (1 + w) * eps_c - w * eps_u


def guided_eps_swapped(eps_c, eps_u, w):
    return w * (eps_u - eps_c) + eps_c


def guided_eps_no_difference(eps_c, eps_u, w):
    return w * eps_c + eps_u


def guided_eps_normalized(eps_c, eps_u, w):  # divided by 1 + w
    return (eps_u + w * (eps_c - eps_u)) / (1 + w)


def guided_eps_in_place(eps_c, eps_u, w):  # right values, eps_u overwritten
    return eps_u.add_(w * (eps_c - eps_u))


def guided_eps_liar(eps_c, eps_u, w):
    return guided_eps(eps_c, eps_u, w).as_subclass(Liar)


def guided_eps_always(eps_c, eps_u, w):
    return Always()


def guided_eps_stacked(eps_c, eps_u, w):  # returns both parts stacked
    return torch.stack([w * eps_c, (1 - w) * eps_u])


EXERCISES = {
    "ex1_q_sample": Exercise(
        check=lecture15.check_q_sample,
        correct=[q_sample, q_sample_view, q_sample_loop, q_sample_float32],
        wrong=[
            Wrong(q_sample_no_sqrt, "not close enough", "formula"),
            Wrong(q_sample_swapped, "not close enough", "formula"),
            Wrong(q_sample_off_by_one, "not close enough", "edge"),
            Wrong(q_sample_one_step, "not close enough", "formula"),
            Wrong(q_sample_vector_broadcast, "raised RuntimeError|wrong shape", "shape"),
            Wrong(q_sample_own_noise, "not close enough", "randomness"),
            Wrong(q_sample_in_place, "changed its input `x0`", "property"),
            Wrong(q_sample_liar, "wrong type", "lie"),
            Wrong(q_sample_always, "wrong type", "lie"),
        ],
    ),
    "ex2_posterior": Exercise(
        check=lecture15.check_posterior,
        correct=[posterior_coefficients, posterior_by_precision, posterior_float32, posterior_lists],
        wrong=[
            Wrong(posterior_swapped, "mean of x_", "formula"),
            Wrong(posterior_variance_beta, "variance of x_", "formula"),
            Wrong(posterior_off_by_one, "mean of x_", "formula"),
            Wrong(posterior_no_sqrt_alpha, "mean of x_", "formula"),
            Wrong(posterior_wrong_length, "wrong shape", "shape"),
            Wrong(posterior_nan_at_zero, "NaN or inf", "edge"),
            Wrong(posterior_in_place, "changed its input `beta`", "property"),
            Wrong(posterior_liar, "wrong type", "lie"),
        ],
    ),
    "ex3_ddpm_loss": Exercise(
        check=lecture15.check_ddpm_loss,
        correct=[ddpm_loss, ddpm_loss_loop, ddpm_loss_float32, ddpm_loss_einsum],
        wrong=[
            Wrong(ddpm_loss_no_sqrt, "not standard normal", "formula"),
            Wrong(ddpm_loss_x0_target, "value, recomputed", "formula"),
            Wrong(ddpm_loss_weight_off_by_one, "value, recomputed", "formula"),
            Wrong(ddpm_loss_weight_outside, "value, recomputed", "formula"),
            Wrong(ddpm_loss_sum_dims, "value, recomputed", "formula"),
            Wrong(ddpm_loss_t_from_zero, "outside 1..T", "edge"),
            Wrong(ddpm_loss_one_t, "not uniform", "property"),
            Wrong(ddpm_loss_uniform_noise, "not standard normal", "property"),
            Wrong(ddpm_loss_detached, "no gradient|does not reach", "property"),
            Wrong(ddpm_loss_item, "no gradient", "property"),
            Wrong(ddpm_loss_global_rng, "global random state", "randomness"),
            Wrong(ddpm_loss_vector_broadcast, "raised RuntimeError|on images", "shape"),
            Wrong(ddpm_loss_per_example, "one number", "shape"),
            Wrong(ddpm_loss_no_labels, "labels", "formula"),
            Wrong(ddpm_loss_float_t, "wrong steps", "raw"),
            Wrong(ddpm_loss_liar, "wrong type", "lie"),
        ],
    ),
    "ex4_ddpm_step": Exercise(
        check=lecture15.check_ddpm_step,
        correct=[ddpm_step, ddpm_step_via_x0, ddpm_step_loop, ddpm_step_float32],
        wrong=[
            Wrong(ddpm_step_sigma_beta, "true noise", "edge"),
            Wrong(ddpm_step_no_rescale, "true noise", "formula"),
            Wrong(ddpm_step_alpha_bar, "true noise", "formula"),
            Wrong(ddpm_step_sign, "ddpm_step with", "formula"),
            Wrong(ddpm_step_own_noise, "true noise", "randomness"),
            Wrong(ddpm_step_in_place, "changed its input `x_t`", "property"),
            Wrong(ddpm_step_flat, "wrong shape", "shape"),
            Wrong(ddpm_step_liar, "wrong type", "lie"),
        ],
    ),
    "ex5_guidance": Exercise(
        check=lecture15.check_guidance,
        correct=[guided_eps, guided_eps_interpolation, guided_eps_lerp, guided_eps_loop],
        wrong=[
            Wrong(guided_eps_paper_convention, "guided_eps at w", "formula"),
            Wrong(guided_eps_swapped, "guided_eps at w", "formula"),
            Wrong(guided_eps_no_difference, "guided_eps at w", "formula"),
            Wrong(guided_eps_normalized, "guided_eps at w", "formula"),
            Wrong(guided_eps_in_place, "changed its input `eps_u`", "property"),
            Wrong(guided_eps_stacked, "wrong shape", "shape"),
            Wrong(guided_eps_liar, "wrong type", "lie"),
            Wrong(guided_eps_always, "wrong type", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
