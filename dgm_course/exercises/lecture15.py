"""Checks for lecture 15 (diffusion models): sampling q(x_t | x_0) in closed form, the coefficients of the posterior
q(x_{t-1} | x_t, x_0), the epsilon-prediction loss, one ancestral (DDPM) sampling step, and the classifier-free
guidance combination.

Schedules are tensors `beta` of shape (T+1,) with beta[0] = 0, so that index t is step t of the paper and
alpha_bar[0] = 1. Every check draws its own random schedule and data from a fixed seed, in float64, and computes the
reference by another route than the textbook formula: Bayes' rule in precision form for the posterior, and
consistency of the chain for the marginals.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


def _random_beta(T: int, seed: int) -> torch.Tensor:
    """A random increasing schedule (T+1,), beta[0] = 0 and 0 < beta_t < 0.3 for t >= 1."""
    b = torch.rand(T, generator=torch.Generator().manual_seed(seed), dtype=DOUBLE).sort().values * 0.25 + 0.01
    return torch.cat([b.new_zeros(1), b])


def _alpha_bar(beta: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s) by repeated multiplication (alpha_bar_0 = 1)."""
    out = [torch.ones((), dtype=DOUBLE)]
    for b in beta[1:]:
        out.append(out[-1] * (1 - b))
    return torch.stack(out)


def _bayes_posterior(beta: torch.Tensor, t: int) -> tuple[float, float, float]:
    """q(x_{t-1} | x_t, x_0) by Bayes' rule in precision form: returns (coefficient of x_0, of x_t, variance).

    q(x_{t-1} | x_0) = N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}) times q(x_t | x_{t-1}) = N(sqrt(a_t) x_{t-1}, b_t) as a
    function of x_{t-1}; for t = 1 the prior is a point mass at x_0.
    """
    ab = _alpha_bar(beta)
    if t == 1:
        return 1.0, 0.0, 0.0
    a_t, b_t, ab_prev = 1 - float(beta[t]), float(beta[t]), float(ab[t - 1])
    precision = a_t / b_t + 1 / (1 - ab_prev)
    var = 1 / precision
    return var * ab_prev**0.5 / (1 - ab_prev), var * a_t**0.5 / b_t, var


def _as_double(value, name: str, shape) -> torch.Tensor:
    checks.check_tensor(name, value, shape=shape)
    return value.detach().double()


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: q_sample
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_q_sample", "Exercise 1: sampling q(x_t | x_0) in closed form")
def check_q_sample(q_sample: Callable) -> None:
    """Exercise 1: `q_sample(x0, t, eps, alpha_bar)` = a draw of q(x_t | x_0) with noise eps.

    x0 (B, ...), t (B,) int64 in 0..T, eps like x0, alpha_bar (T+1,). The check runs the Markov chain
    x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) z_s step by step and compares moments, then tests exact values.
    """
    T = 12
    beta = _random_beta(T, 0)
    alpha_bar = _alpha_bar(beta)
    g = torch.Generator().manual_seed(1)
    # 1. Distribution: one x0 repeated, many eps; moments against the step-by-step chain at every t.
    n = 40000
    x0 = torch.randn(1, 3, generator=g, dtype=DOUBLE).expand(n, 3).clone()
    chain = x0.clone()
    for t in range(0, T + 1, 3):
        for s in range(t - 2, t + 1) if t else ():  # advance the chain from the previous t (t - 3) to this one
            chain = (1 - beta[s]).sqrt() * chain + beta[s].sqrt() * torch.randn(chain.shape, generator=g, dtype=DOUBLE)
        eps = torch.randn(n, 3, generator=g, dtype=DOUBLE)
        out = _as_double(q_sample(x0.clone(), torch.full((n,), t, dtype=torch.long), eps, alpha_bar.clone()),
                         "q_sample's output", (n, 3))
        for what, f, c, tol in (("mean", out.mean(0), chain.mean(0), 0.04), ("std", out.std(0), chain.std(0), 0.04)):
            if (f - c).abs().max() > tol:
                checks.fail(f"q_sample's {what} at t = {t} does not match the forward chain run step by step",
                            f"{what} per coordinate about {c.numpy().round(3).tolist()}",
                            f"{f.numpy().round(3).tolist()}",
                            "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, with alpha_bar_t (not t - 1), "
                            "square roots on both coefficients")
    # 2. Exact values, a different t per sample, on vectors and on images (B, C, H, W).
    for shape in ((9, 5), (9, 1, 4, 4)):
        x0 = torch.randn(shape, generator=g, dtype=DOUBLE)
        eps = torch.randn(shape, generator=g, dtype=DOUBLE)
        t = torch.randint(0, T + 1, (shape[0],), generator=g)
        t[0], t[1] = 0, T
        try:
            out = q_sample(x0.clone(), t.clone(), eps.clone(), alpha_bar.clone())
        except RuntimeError as err:  # a shape mismatch while broadcasting
            checks.fail(f"q_sample fails on a batch of shape {shape}", "x_t of the shape of x0",
                        f"RuntimeError: {str(err).splitlines()[0]}",
                        "reshape alpha_bar[t] to (B, 1, ...) so that it broadcasts over every dimension but the batch")
        out = _as_double(out, "q_sample's output", shape)
        ab = alpha_bar[t].reshape(-1, *[1] * (len(shape) - 1))
        checks.check_close(f"q_sample on a batch of shape {shape} with a different t per sample", out,
                           ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-10,
                           hint="index alpha_bar with t and reshape it to (B, 1, ...) so that it broadcasts over "
                                "every dimension but the batch; at t = 0, x_t = x0")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the posterior q(x_{t-1} | x_t, x_0)
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex2_posterior", "Exercise 2: the posterior q(x_(t-1) | x_t, x_0)")
def check_posterior(posterior_coefficients: Callable) -> None:
    """Exercise 2: `posterior_coefficients(beta) -> (coef1, coef2, var)`, each (T+1,), entries 1..T used.

    q(x_{t-1} | x_t, x_0) = N(coef1[t] x_0 + coef2[t] x_t, var[t] I). Checked against Bayes' rule in precision
    form, and by the consistency of the chain: drawing x_t ~ q(x_t | x_0), then x_{t-1} from the posterior, must
    give q(x_{t-1} | x_0).
    """
    for seed, T in enumerate((6, 15)):
        beta = _random_beta(T, 10 + seed)
        out = posterior_coefficients(beta.clone())
        if not isinstance(out, tuple | list) or len(out) != 3:
            checks.fail("posterior_coefficients returns the wrong thing", "a triple (coef1, coef2, var)",
                        type(out).__name__)
        coef1, coef2, var = (_as_double(v, f"posterior_coefficients' {name}", (T + 1,))[1:]
                             for v, name in zip(out, ("coef1", "coef2", "var"), strict=True))
        ab = _alpha_bar(beta)
        # consistency: E[x_{t-1} | x_0] = sqrt(ab_{t-1}) x_0 and Var[x_{t-1} | x_0] = 1 - ab_{t-1}
        mean_coef = coef1 + coef2 * ab[1:].sqrt()
        total_var = coef2**2 * (1 - ab[1:]) + var
        checks.check_close(f"the mean of x_(t-1) given x_0 after one posterior step (T = {T}), t = 1..T",
                           mean_coef, ab[:-1].sqrt(), atol=1e-9,
                           hint="averaging the posterior over x_t ~ q(x_t | x_0) must give back q(x_(t-1) | x_0); "
                                "check which alpha_bar (t or t - 1) sits in each coefficient")
        checks.check_close(f"the variance of x_(t-1) given x_0 after one posterior step (T = {T}), t = 1..T",
                           total_var, 1 - ab[:-1], atol=1e-9,
                           hint="the posterior variance is smaller than beta_t: (1 - alpha_bar_(t-1)) / "
                                "(1 - alpha_bar_t) beta_t")
        bayes = torch.tensor([_bayes_posterior(beta, t) for t in range(1, T + 1)], dtype=DOUBLE)  # (T, 3)
        for name, found, col in (("coef1 (of x_0)", coef1, 0), ("coef2 (of x_t)", coef2, 1), ("var", var, 2)):
            checks.check_close(f"posterior_coefficients' {name} against Bayes' rule, t = 1..T", found, bayes[:, col],
                               atol=1e-9, hint="multiply q(x_t | x_(t-1)) by q(x_(t-1) | x_0) and complete the square")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the epsilon loss
# ----------------------------------------------------------------------------------------------------------

class _Affine(torch.nn.Module):
    """eps_model(x_t, t) = a * x_t + b_t: a trainable stand-in for a network."""

    def __init__(self, T: int):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=DOUBLE))
        self.b = torch.nn.Parameter(torch.linspace(-0.5, 0.5, T + 1, dtype=DOUBLE))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.a * x_t + self.b[t].reshape(-1, *[1] * (x_t.ndim - 1))


def _loss_value(eps_loss: Callable, model, x0, t, eps, alpha_bar) -> torch.Tensor:
    out = eps_loss(model, x0.clone(), t.clone(), eps.clone(), alpha_bar.clone())
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        got = f"tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        checks.fail("eps_loss returns the wrong thing", "a scalar tensor (the mean over batch and dimensions)", got,
                    "return a tensor, not .item(), so that it can be differentiated")
    return out.reshape(())


@checks.exercise("ex3_eps_loss", "Exercise 3: the epsilon loss")
def check_eps_loss(eps_loss: Callable) -> None:
    """Exercise 3: `eps_loss(eps_model, x0, t, eps, alpha_bar)` = mean ||eps - eps_model(x_t, t)||^2.

    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps; the mean runs over the batch and every dimension.
    """
    T = 10
    alpha_bar = _alpha_bar(_random_beta(T, 20))
    g = torch.Generator().manual_seed(21)
    for shape in ((8, 3), (6, 1, 4, 4)):
        x0 = torch.randn(shape, generator=g, dtype=DOUBLE)
        eps = torch.randn(shape, generator=g, dtype=DOUBLE)
        t = torch.randint(1, T + 1, (shape[0],), generator=g)
        seen = {}

        def oracle(x_t, t_in, x0=x0, seen=seen):
            """Knows x0, so recovers the exact noise from x_t, if x_t and t are what they should be."""
            seen["t"] = t_in
            ab = alpha_bar[t_in].reshape(-1, *[1] * (x0.ndim - 1))
            return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

        loss = _loss_value(eps_loss, oracle, x0, t, eps, alpha_bar)
        if loss.abs() > 1e-9:
            checks.fail("eps_loss is not zero for a perfect noise predictor",
                        "0 for a model that returns exactly the noise that made x_t", f"{float(loss):.4g}",
                        "feed the model x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (not x0) and the "
                        "same t; the target is eps")
        if not torch.equal(torch.as_tensor(seen["t"]).reshape(-1).cpu(), t):
            checks.fail("eps_loss passes the wrong timesteps to the model", "the t it was given",
                        "different timesteps", "call eps_model(x_t, t)")
        zero = _loss_value(eps_loss, lambda x_t, t_in: torch.zeros_like(x_t), x0, t, eps, alpha_bar)
        checks.check_close(f"eps_loss of the model that predicts 0 (batch shape {shape})", zero, (eps**2).mean(),
                           atol=1e-10, hint="the mean squared error over the batch and all dimensions")
        model = _Affine(T)
        loss = _loss_value(eps_loss, model, x0, t, eps, alpha_bar)
        x_t = alpha_bar[t].reshape(-1, *[1] * (x0.ndim - 1)).sqrt() * x0 \
            + (1 - alpha_bar[t].reshape(-1, *[1] * (x0.ndim - 1))).sqrt() * eps
        checks.check_close("eps_loss of an affine model", loss, ((model(x_t, t) - eps) ** 2).mean().detach(),
                           atol=1e-10, hint="the target is the noise eps, the prediction eps_model(x_t, t)")
        if not loss.requires_grad:
            checks.fail("eps_loss carries no gradient", "a loss differentiable in the model's parameters",
                        "a tensor without grad_fn", "do not detach the model's output or call .item()")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: one ancestral sampling step
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex4_ddpm_step", "Exercise 4: one ancestral sampling step")
def check_ddpm_step(ddpm_step: Callable) -> None:
    """Exercise 4: `ddpm_step(x_t, t, eps_hat, beta, z)` -> x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    mu_theta is the posterior mean with x_0 replaced by its estimate from eps_hat, sigma_t^2 the posterior
    variance; t is an int in 1..T. With the true noise as eps_hat the step must draw exactly from q(x_{t-1}|x_t,x_0).
    """
    T = 9
    beta = _random_beta(T, 30)
    ab = _alpha_bar(beta)
    g = torch.Generator().manual_seed(31)
    for shape in ((7, 2), (5, 1, 3, 3)):
        for t in (1, 2, 5, T):
            x0 = torch.randn(shape, generator=g, dtype=DOUBLE)
            eps = torch.randn(shape, generator=g, dtype=DOUBLE)
            z = torch.randn(shape, generator=g, dtype=DOUBLE)
            x_t = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * eps
            c1, c2, var = _bayes_posterior(beta, t)
            out = _as_double(ddpm_step(x_t.clone(), t, eps.clone(), beta.clone(), z.clone()), "ddpm_step's output",
                             shape)
            checks.check_close(f"ddpm_step with the true noise as eps_hat (t = {t}, batch shape {shape})", out,
                               c1 * x0 + c2 * x_t + var**0.5 * z, atol=1e-9,
                               hint="mean (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t), plus "
                                    "sqrt of the posterior variance (1 - alpha_bar_(t-1)) / (1 - alpha_bar_t) beta_t "
                                    "times z (it is 0 at t = 1)")
            eps_hat = torch.randn(shape, generator=g, dtype=DOUBLE)           # an imperfect prediction
            x0_hat = (x_t - (1 - ab[t]).sqrt() * eps_hat) / ab[t].sqrt()
            out = _as_double(ddpm_step(x_t.clone(), t, eps_hat.clone(), beta.clone(), z.clone()),
                             "ddpm_step's output", shape)
            checks.check_close(f"ddpm_step with an imperfect eps_hat (t = {t})", out,
                               c1 * x0_hat + c2 * x_t + var**0.5 * z, atol=1e-9,
                               hint="the step is the posterior q(x_(t-1) | x_t, x0) with x0 estimated from eps_hat")


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: classifier-free guidance
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex5_guidance", "Exercise 5: classifier-free guidance")
def check_guidance(guided_eps: Callable) -> None:
    """Exercise 5: `guided_eps(eps_c, eps_u, w)` = w (eps_c - eps_u) + eps_u, for a float w."""
    g = torch.Generator().manual_seed(40)
    for shape in ((6, 2), (4, 1, 3, 3)):
        eps_c = torch.randn(shape, generator=g, dtype=DOUBLE)
        eps_u = torch.randn(shape, generator=g, dtype=DOUBLE)
        for w, meaning in ((0.0, "the unconditional prediction"), (1.0, "the conditional prediction"),
                           (3.0, "an extrapolation past the conditional prediction"), (0.4, "an interpolation")):
            out = _as_double(guided_eps(eps_c.clone(), eps_u.clone(), w), "guided_eps' output", shape)
            checks.check_close(f"guided_eps at w = {w:g} ({meaning})", out, eps_u + w * (eps_c - eps_u), atol=1e-12,
                               hint="this course's convention: w = 0 is unconditional, w = 1 conditional, w > 1 "
                                    "pushes away from the unconditional prediction")
