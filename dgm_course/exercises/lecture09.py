"""Checks for lecture 09 (divergences and better GANs): a convex conjugate, the f-GAN losses, the WGAN gradient
penalty and the 1-D Wasserstein distance between samples.

Every check builds its own random problem from a fixed seed, in float64, and computes the reference without the
lecture's code: a numerical supremum for the conjugate, closed-form densities and autograd for the losses, critics
whose input gradient is known in closed form for the penalty, and sorted samples for the Wasserstein distance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the conjugate of the squared Hellinger generator
# ----------------------------------------------------------------------------------------------------------

def _numerical_conjugate(f: Callable, t: torch.Tensor) -> torch.Tensor:
    """sup_u (t u - f(u)) over a fine log-spaced grid of u > 0, plus a local refinement around the best u."""
    u = torch.logspace(-10, 6, 200_001, dtype=DOUBLE)
    values = t[:, None] * u[None] - f(u)[None]                           # (T, U)
    best = values.argmax(1)
    lo, hi = u[(best - 1).clamp(min=0)], u[(best + 1).clamp(max=len(u) - 1)]
    fine = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, 2001, dtype=DOUBLE)[None]   # (T, 2001)
    return (t[:, None] * fine - f(fine)).max(1).values


@checks.exercise("ex1_hellinger_conjugate", "Exercise 1: the conjugate of the squared Hellinger generator")
def check_hellinger_conjugate(hellinger_conjugate: Callable) -> None:
    """Exercise 1: `hellinger_conjugate(t)` = sup_{u > 0} (t u - (sqrt(u) - 1)^2), elementwise for t < 1."""
    g = torch.Generator().manual_seed(9)
    t = torch.cat([-6 * torch.rand(12, generator=g, dtype=DOUBLE), 0.95 * torch.rand(12, generator=g, dtype=DOUBLE)])
    t = t[torch.randperm(len(t), generator=g)]
    given = t.clone()
    out = checks.plain("hellinger_conjugate(t)", hellinger_conjugate(given))
    if not torch.equal(given, t):
        checks.fail("hellinger_conjugate changed its input", "t left as it was", "t overwritten in place",
                    "compute a new tensor instead of an in-place operation on t")
    checks.check_tensor("hellinger_conjugate(t)", out, shape=(len(t),))
    expected = _numerical_conjugate(lambda u: (u.sqrt() - 1) ** 2, t)
    checks.check_close("f*(t) against the numerical supremum over u", out, expected, atol=1e-5, rtol=1e-5,
                       hint="f*(t) = t u* - f(u*) at the u* where t = f'(u) = 1 - 1/sqrt(u); "
                            "solve for sqrt(u*) and substitute")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the f-GAN losses
# ----------------------------------------------------------------------------------------------------------

# (activation g, conjugate f*, f'(u)) of three divergences; the optimal critic output is v* = g^-1(f'(p/q))
_FGAN_CASES = {
    "KL": (lambda v: v, lambda t: torch.exp(t - 1), lambda u: 1 + torch.log(u), lambda t: t),
    "reverse KL": (lambda v: -torch.exp(-v), lambda t: -1 - torch.log(-t), lambda u: -1 / u,
                   lambda t: -torch.log(-t)),
    "Pearson": (lambda v: v, lambda t: 0.25 * t**2 + t, lambda u: 2 * (u - 1), lambda t: t),
}


def _fgan_pair(fgan_losses: Callable, v_real, v_fake, g, f_star) -> tuple[torch.Tensor, torch.Tensor]:
    out = fgan_losses(v_real, v_fake, g, f_star)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail("fgan_losses returns the wrong thing", "a pair (critic_loss, generator_loss)", type(out).__name__)
    hint = "average over the batch: each loss is one number"
    return tuple(checks.check_scalar(name, checks.plain(name, value, differentiable=True), hint)
                 for name, value in zip(("the critic loss", "the generator loss"), out, strict=True))


def _check_grad(what: str, loss: torch.Tensor, wrt: torch.Tensor, expected: torch.Tensor, hint: str) -> None:
    if not loss.requires_grad:
        checks.fail(f"the {what} carries no gradient", "a tensor connected to the critic outputs",
                    "a tensor without grad", "do not detach the critic outputs inside the loss")
    got = torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)[0]
    atol, rtol = checks.tolerance(torch.float32)                          # float32 work must pass too
    checks.check_close(f"the gradient of the {what}", torch.zeros_like(expected) if got is None else got, expected,
                       atol=atol, rtol=rtol, hint=hint)


@checks.exercise("ex2_fgan_losses", "Exercise 2: the f-GAN losses")
def check_fgan_losses(fgan_losses: Callable) -> None:
    """Exercise 2: `fgan_losses(v_real, v_fake, g, f_star) -> (critic_loss, generator_loss)`, both to minimize.

    critic_loss = -(mean g(v_real) - mean f*(g(v_fake))); generator_loss = -mean f*(g(v_fake)).
    """
    gen = torch.Generator().manual_seed(21)
    p = torch.distributions.Normal(torch.tensor(0.4, dtype=DOUBLE), torch.tensor(1.0, dtype=DOUBLE))
    q = torch.distributions.Normal(torch.tensor(-0.3, dtype=DOUBLE), torch.tensor(1.3, dtype=DOUBLE))
    n = 2000
    x_p = 0.4 + 1.0 * torch.randn(n, generator=gen, dtype=DOUBLE)
    x_q = -0.3 + 1.3 * torch.randn(n, generator=gen, dtype=DOUBLE)
    grid = torch.linspace(-15, 15, 100_001, dtype=DOUBLE)
    u_grid = (p.log_prob(grid) - q.log_prob(grid)).exp()
    generators = {"KL": lambda u: u * torch.log(u), "reverse KL": lambda u: -torch.log(u),
                  "Pearson": lambda u: (u - 1) ** 2}
    atol, rtol = checks.tolerance(torch.float32, 10)                      # float32 work must pass
    for name, (g, f_star, f_prime, g_inv) in _FGAN_CASES.items():
        exact = float(torch.trapezoid(q.log_prob(grid).exp() * generators[name](u_grid), grid))
        # 1. The value at the optimal critic v* = g^-1(f'(p/q)): on these samples, the Monte Carlo bound, whose
        #    expectation is the divergence itself.
        v_real = g_inv(f_prime((p.log_prob(x_p) - q.log_prob(x_p)).exp()))
        v_fake = g_inv(f_prime((p.log_prob(x_q) - q.log_prob(x_q)).exp()))
        critic_loss, _ = _fgan_pair(fgan_losses, v_real.clone(), v_fake.clone(), g, f_star)
        bound = g(v_real).mean() - f_star(g(v_fake)).mean()
        checks.check_close(f"minus the critic loss at the optimal critic for the {name} divergence ({n} samples "
                           f"per side; the divergence itself is {exact:.4f})", -critic_loss.detach(),
                           bound.reshape(()), atol=atol, rtol=rtol,
                           hint="critic_loss = -(E_P[g(v)] - E_Q[f*(g(v))]): the activation g on both batches, the "
                                "conjugate only on the generated batch, each averaged over its batch")
        # 2. The gradients, on a small batch of random critic outputs.
        v_r = torch.randn(6, generator=gen, dtype=DOUBLE).requires_grad_(True)         # (B,) each, one B
        v_f = (0.5 * torch.randn(6, generator=gen, dtype=DOUBLE)).requires_grad_(True)
        critic_loss, gen_loss = _fgan_pair(fgan_losses, v_r, v_f, g, f_star)
        ref_r, ref_f = v_r.detach().clone().requires_grad_(True), v_f.detach().clone().requires_grad_(True)
        ref_critic = -(g(ref_r).mean() - f_star(g(ref_f)).mean())
        want_r, want_f = torch.autograd.grad(ref_critic, [ref_r, ref_f])
        ref_f2 = v_f.detach().clone().requires_grad_(True)
        want_gen = torch.autograd.grad(-f_star(g(ref_f2)).mean(), ref_f2)[0]
        hint_c = "the critic MINIMIZES minus the bound, so it raises g(v) on data and lowers f*(g(v)) on samples"
        _check_grad(f"{name} critic loss with respect to v_real", critic_loss, v_r, want_r, hint_c)
        _check_grad(f"{name} critic loss with respect to v_fake", critic_loss, v_f, want_f, hint_c)
        _check_grad(f"{name} generator loss with respect to v_fake", gen_loss, v_f, want_gen,
                    "the generator minimizes -E_Q[f*(g(v_fake))] (the bound, without the term it cannot change): "
                    "the conjugate of the activated output, with a minus sign, averaged")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the WGAN-GP gradient penalty
# ----------------------------------------------------------------------------------------------------------

class _LinearCritic(torch.nn.Module):
    """D(x) = <w, x> + b: its input gradient is w everywhere, so the penalty is (||w|| - 1)^2 exactly."""

    def __init__(self, shape: tuple[int, ...], norm: float, seed: int):
        super().__init__()
        w = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DOUBLE)
        self.w = torch.nn.Parameter(norm * w / w.norm())
        self.b = torch.nn.Parameter(torch.tensor(0.3, dtype=DOUBLE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True) + self.b          # (B, 1), as a critic network returns


class _TanhCritic(torch.nn.Module):
    """A small nonlinear critic (B, ...) -> (B, 1), float64."""

    def __init__(self, dim: int, seed: int, hidden: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=DOUBLE))
        self.w2 = torch.nn.Parameter(torch.randn(1, hidden, generator=g, dtype=DOUBLE) / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x.flatten(1) @ self.w1.T) @ self.w2.T


def _reference_penalty(critic: torch.nn.Module, x_real, x_fake, eps) -> torch.Tensor:
    e = eps.reshape(-1, *([1] * (x_real.ndim - 1)))
    x_hat = (e * x_real + (1 - e) * x_fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def _penalty(gradient_penalty: Callable, critic, x_real, x_fake, eps) -> torch.Tensor:
    out = checks.plain("gradient_penalty", gradient_penalty(critic, x_real.clone(), x_fake.clone(), eps.clone()),
                       differentiable=True)
    return checks.check_scalar("gradient_penalty", out, "average (||grad|| - 1)^2 over the batch")


@checks.exercise("ex4_gradient_penalty", "Exercise 4: the gradient penalty")
def check_gradient_penalty(gradient_penalty: Callable) -> None:
    """Exercise 4: `gradient_penalty(critic, x_real, x_fake, eps)` = mean_i (||grad_x critic(x_hat_i)|| - 1)^2.

    x_hat = eps * x_real + (1 - eps) * x_fake, eps of shape (B,) broadcast over each sample's dimensions; the
    result must be differentiable with respect to the critic's parameters.
    """
    g = torch.Generator().manual_seed(31)
    atol, rtol = checks.tolerance(torch.float32, 10)                      # float32 work must pass
    for seed, (shape, norm) in enumerate([((5, 3), 2.5), ((4, 1, 4, 4), 0.4), ((6, 2), 1.0)]):
        x_real, x_fake = (torch.randn(shape, generator=g, dtype=DOUBLE) for _ in range(2))
        eps = torch.rand(shape[0], generator=g, dtype=DOUBLE)
        critic = _LinearCritic(shape[1:], norm, seed)
        got = _penalty(gradient_penalty, critic, x_real, x_fake, eps)
        checks.check_close(f"the penalty of a linear critic with ||w|| = {norm} on inputs of shape {shape}",
                           got.detach(), (norm - 1) ** 2, atol=atol, rtol=rtol,
                           hint="the norm is taken per sample over all its dimensions (flatten from dim 1), "
                                "then (||g|| - 1)^2 is averaged; it is two-sided: a gradient norm below 1 is "
                                "penalized too")
    # a nonlinear critic, in float64 and in float32 (the lecture's dtype), against the reference in float64
    for seed, (shape, dtype) in enumerate([((7, 3), DOUBLE), ((5, 1, 3, 3), DOUBLE), ((6, 4), torch.float32)]):
        x_real, x_fake = (torch.randn(shape, generator=g, dtype=DOUBLE) for _ in range(2))
        eps = torch.rand(shape[0], generator=g, dtype=DOUBLE)
        critic = _TanhCritic(int(torch.tensor(shape[1:]).prod()), seed + 10)
        want = _reference_penalty(critic, x_real, x_fake, eps)
        want_grads = torch.autograd.grad(want, [critic.w1, critic.w2])
        critic = critic.to(dtype)
        got = _penalty(gradient_penalty, critic, x_real.to(dtype), x_fake.to(dtype), eps.to(dtype))
        where = f"on inputs of shape {shape} in {str(dtype).replace('torch.', '')}"
        checks.check_close(f"the penalty of a nonlinear critic {where}", got.detach(), want.detach(),
                           atol=atol, rtol=rtol,
                           hint="evaluate the gradient at x_hat = eps * x_real + (1 - eps) * x_fake (eps reshaped "
                                "to (B, 1, ...) so that it broadcasts), not at the real or fake points")
        if not got.requires_grad:
            checks.fail("the penalty carries no gradient to the critic's parameters", "a differentiable penalty",
                        "a tensor without grad", "torch.autograd.grad(..., create_graph=True) keeps the graph of "
                                                  "the input gradient, so that the penalty can be backpropagated")
        got_grads = torch.autograd.grad(got, [critic.w1, critic.w2], allow_unused=True)
        for name, a, b in zip(("first", "second"), got_grads, want_grads, strict=True):
            checks.check_close(f"the gradient of the penalty with respect to the critic's {name} layer {where}",
                               torch.zeros_like(b) if a is None else a, b, atol=atol, rtol=rtol,
                               hint="use create_graph=True and do not detach the input gradient")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the Wasserstein distance between two 1-D samples
# ----------------------------------------------------------------------------------------------------------

def _w1_by_cdfs(x: torch.Tensor, y: torch.Tensor) -> float:
    """W_1 = integral |F_x(t) - F_y(t)| dt of the two empirical CDFs, computed exactly on the merged breakpoints."""
    points = torch.sort(torch.cat([x, y])).values                         # (2n,)
    f_x = torch.searchsorted(torch.sort(x).values, points[:-1], right=True).double() / len(x)
    f_y = torch.searchsorted(torch.sort(y).values, points[:-1], right=True).double() / len(y)
    return float(((f_x - f_y).abs() * points.diff()).sum())


def _w1(wasserstein_1d: Callable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The answer for (x, y) as a plain scalar, after checking that x and y were left as they were."""
    given = (x.clone(), y.clone())
    out = checks.plain("wasserstein_1d", wasserstein_1d(*given))
    if not (torch.equal(given[0], x) and torch.equal(given[1], y)):
        checks.fail("wasserstein_1d changed its inputs", "x and y left as they were", "an input overwritten in place",
                    "sort into new tensors (torch.sort returns them) rather than writing into x or y")
    return checks.check_scalar("wasserstein_1d", out, "average over the n matched pairs")


@checks.exercise("ex3_wasserstein_1d", "Exercise 3: the Wasserstein distance between two samples")
def check_wasserstein_1d(wasserstein_1d: Callable) -> None:
    """Exercise 3: `wasserstein_1d(x, y)` = W_1 between the empirical distributions of two samples of shape (n,)."""
    g = torch.Generator().manual_seed(41)
    cases = [(torch.randn(50, generator=g, dtype=DOUBLE), 0.5 + 2 * torch.randn(50, generator=g, dtype=DOUBLE)),
             (torch.rand(200, generator=g, dtype=DOUBLE), torch.randn(200, generator=g, dtype=DOUBLE) ** 2),
             (torch.randn(7, generator=g, dtype=DOUBLE), torch.randn(7, generator=g, dtype=DOUBLE))]
    for i, (x, y) in enumerate(cases):
        out = _w1(wasserstein_1d, x, y)
        checks.check_close(f"W between two random samples (case {i + 1}, n = {len(x)})", out,
                           torch.tensor(_w1_by_cdfs(x, y), dtype=DOUBLE),
                           hint="match the samples in sorted order and average the absolute differences "
                                "(not the squared ones, and not the difference of the means)")
        checks.check_close(f"W(x, y) = W(y, x) (case {i + 1})", _w1(wasserstein_1d, y, x), out)
    x = cases[0][0]
    for theta in (-1.3, 0.25):
        out = _w1(wasserstein_1d, x, x + theta)
        checks.check_close(f"W between a sample and itself shifted by {theta}", out,
                           torch.tensor(abs(theta), dtype=DOUBLE),
                           hint="shifting every point by theta moves all the mass by |theta|")
