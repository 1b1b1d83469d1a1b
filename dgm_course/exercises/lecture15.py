"""Checks for lecture 15 (diffusion models): sampling q(x_t | x_0) in closed form, the coefficients of the posterior
q(x_{t-1} | x_t, x_0), the loss of one DDPM training step, one ancestral (DDPM) sampling step, and the
classifier-free guidance combination.

Schedules are tensors `beta` of shape (T+1,) with beta[0] = 0, so that index t is step t of the paper and
alpha_bar[0] = 1. Every check draws its own random schedule and data from a fixed seed, in float64, and computes the
reference by another route than the textbook formula: Bayes' rule in precision form for the posterior, consistency of
the chain for the marginals, and, for the training loss, what the network was actually given (the noise is recovered
from x_t and tested as a sample of N(0, I)). Answers are compared at float32 precision, so that work done in float32
passes; every wrong formula the checks target is off by far more.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from scipy import stats

from .. import checks

DOUBLE = torch.float64
ATOL, RTOL = checks.tolerance(torch.float32, 10)   # float32 work on O(1) numbers, a few operations deep


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


def _answer(value, name: str, shape, differentiable: bool = False) -> torch.Tensor:
    """The answer as a plain float64 tensor of the given shape (subclasses and impostors are rejected)."""
    value = checks.plain(name, value, differentiable=differentiable)
    checks.check_tensor(name, value, shape=shape)
    return value if differentiable else value.double()


def _unchanged(name: str, inputs: dict[str, torch.Tensor], copies: dict[str, torch.Tensor]) -> None:
    for key, value in inputs.items():
        if not torch.equal(value, copies[key]):
            checks.fail(f"{name} changed its input `{key}`", f"`{key}` left as it was (the caller uses it again)",
                        "values changed in place", "compute a new tensor instead of using in-place operations "
                                                   "(`mul_`, `add_`, `x[...] = ...`) on the arguments")


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *[1] * (like.ndim - 1))


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
    # 1. Exact values, a different t per sample (t = 0 and t = T included), on vectors and on images (B, C, H, W).
    for shape in ((9, 5), (9, 1, 4, 4)):
        x0 = torch.randn(shape, generator=g, dtype=DOUBLE)
        eps = torch.randn(shape, generator=g, dtype=DOUBLE)
        t = torch.randint(0, T + 1, (shape[0],), generator=g)
        t[0], t[1] = 0, T
        inputs = {"x0": x0.clone(), "t": t.clone(), "eps": eps.clone(), "alpha_bar": alpha_bar.clone()}
        out = _answer(q_sample(*inputs.values()), "q_sample's output", shape)
        _unchanged("q_sample", inputs, {"x0": x0, "t": t, "eps": eps, "alpha_bar": alpha_bar})
        ab = _per_sample(alpha_bar[t], x0)
        checks.check_close(f"q_sample on a batch of shape {shape} with a different t per sample", out,
                           ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=ATOL, rtol=RTOL,
                           hint="x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps with the eps you are given "
                                "(no new noise), alpha_bar indexed by t (not t - 1) and reshaped to (B, 1, ...); "
                                "at t = 0, x_t = x0")
    # 2. Distribution: one x0 repeated, many eps; moments against the step-by-step chain.
    n = 20000
    x0 = torch.randn(1, 3, generator=g, dtype=DOUBLE).expand(n, 3).clone()
    chain = x0.clone()
    for t in range(1, T + 1):
        chain = (1 - beta[t]).sqrt() * chain + beta[t].sqrt() * torch.randn(chain.shape, generator=g, dtype=DOUBLE)
        if t % 4:
            continue
        eps = torch.randn(n, 3, generator=g, dtype=DOUBLE)
        out = _answer(q_sample(x0.clone(), torch.full((n,), t, dtype=torch.long), eps, alpha_bar.clone()),
                      "q_sample's output", (n, 3))
        for what, f, c in (("mean", out.mean(0), chain.mean(0)), ("std", out.std(0), chain.std(0))):
            if (f - c).abs().max() > 0.05:
                checks.fail(f"q_sample's {what} at t = {t} does not match the forward chain run step by step",
                            f"{what} per coordinate about {c.numpy().round(3).tolist()}",
                            f"{f.numpy().round(3).tolist()}",
                            "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps: square roots on both "
                            "coefficients, alpha_bar_t the product over all steps up to t")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the posterior q(x_{t-1} | x_t, x_0)
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex2_posterior", "Exercise 2: the posterior q(x_(t-1) | x_t, x_0)")
def check_posterior(posterior_coefficients: Callable) -> None:
    """Exercise 2: `posterior_coefficients(beta) -> (coef1, coef2, var)`, each (T+1,), entries 1..T used, entry 0 = 0.

    q(x_{t-1} | x_t, x_0) = N(coef1[t] x_0 + coef2[t] x_t, var[t] I). Checked against Bayes' rule in precision
    form, and by the consistency of the chain: drawing x_t ~ q(x_t | x_0), then x_{t-1} from the posterior, must
    give q(x_{t-1} | x_0).
    """
    for seed, T in enumerate((6, 15)):
        beta = _random_beta(T, 10 + seed)
        given = beta.clone()
        out = posterior_coefficients(given)
        _unchanged("posterior_coefficients", {"beta": given}, {"beta": beta})
        if not isinstance(out, tuple | list) or len(out) != 3:
            checks.fail("posterior_coefficients returns the wrong thing", "a triple (coef1, coef2, var)",
                        type(out).__name__)
        full = [_answer(v, f"posterior_coefficients' {name}", (T + 1,))
                for v, name in zip(out, ("coef1", "coef2", "var"), strict=True)]
        for v, name in zip(full, ("coef1", "coef2", "var"), strict=True):
            if v[0] != 0:
                checks.fail(f"posterior_coefficients' {name} has the wrong entry 0", "0 (entry 0 is never used)",
                            f"{float(v[0])}", "compute entries 1..T and leave entry 0 at 0 (t = 0 has no posterior)")
        coef1, coef2, var = (v[1:] for v in full)
        ab = _alpha_bar(beta)
        # consistency: E[x_{t-1} | x_0] = sqrt(ab_{t-1}) x_0 and Var[x_{t-1} | x_0] = 1 - ab_{t-1}
        checks.check_close(f"the mean of x_(t-1) given x_0 after one posterior step (T = {T}), t = 1..T",
                           coef1 + coef2 * ab[1:].sqrt(), ab[:-1].sqrt(), atol=ATOL, rtol=RTOL,
                           hint="averaging the posterior over x_t ~ q(x_t | x_0) must give back q(x_(t-1) | x_0); "
                                "check which alpha_bar (t or t - 1) sits in each coefficient")
        checks.check_close(f"the variance of x_(t-1) given x_0 after one posterior step (T = {T}), t = 1..T",
                           coef2**2 * (1 - ab[1:]) + var, 1 - ab[:-1], atol=ATOL, rtol=RTOL,
                           hint="the posterior variance is smaller than beta_t; it is 0 at t = 1")
        bayes = torch.tensor([_bayes_posterior(beta, t) for t in range(1, T + 1)], dtype=DOUBLE)  # (T, 3)
        for name, found, col in (("coef1 (of x_0)", coef1, 0), ("coef2 (of x_t)", coef2, 1), ("var", var, 2)):
            checks.check_close(f"posterior_coefficients' {name} against Bayes' rule, t = 1..T", found, bayes[:, col],
                               atol=ATOL, rtol=RTOL,
                               hint="multiply q(x_t | x_(t-1)) by q(x_(t-1) | x_0) and complete the square")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the loss of one DDPM training step
# ----------------------------------------------------------------------------------------------------------

class _PerStepLinear(torch.nn.Module):
    """eps_theta(x_t, t, y) = a[t] x_t + b[t]: a network whose best parameters are known for Gaussian data.
    It records what it is called with."""

    def __init__(self, T: int, a: torch.Tensor | None = None, b: torch.Tensor | None = None, dtype=DOUBLE):
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(T + 1, dtype=dtype) if a is None else a.clone().to(dtype))
        self.b = torch.nn.Parameter(torch.zeros(T + 1, dtype=dtype) if b is None else b.clone().to(dtype))
        self.calls = []

    def forward(self, x_t, t, y):
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32) or t.shape != x_t.shape[:1]:
            got = f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            checks.fail("ddpm_loss calls the network with the wrong steps t", "an int64 tensor (B,), one step per "
                        "example", got, "draw t with torch.randint(..., (B,), generator=generator)")
        if t.min() < 0 or t.max() >= len(self.a):
            checks.fail("ddpm_loss draws steps outside 1..T", "t in 1..T", f"t from {int(t.min())} to {int(t.max())}",
                        "torch.randint's upper bound is exclusive")
        out = _per_sample(self.a[t], x_t) * x_t + _per_sample(self.b[t], x_t)
        self.calls.append((x_t.detach().clone(), t.detach().clone(), y, out))
        return out


def _call_loss(ddpm_loss: Callable, net, x0, y, alpha_bar, weight, seed: int) -> torch.Tensor:
    net.calls.clear()
    out = ddpm_loss(net, x0, y, alpha_bar, weight, torch.Generator().manual_seed(seed))
    out = checks.check_scalar("ddpm_loss", checks.plain("ddpm_loss's value", out, differentiable=True),
                              hint="return the mean over the batch, one number (a scalar tensor)")
    if len(net.calls) != 1:
        checks.fail("ddpm_loss calls the network the wrong number of times", "one call on the whole batch",
                    f"{len(net.calls)} calls", "form x_t for the whole batch and call net(x_t, t, y) once")
    return out


def _recovered(net, x0, alpha_bar):
    """(x_t, t, y, output, eps) of the network's call, eps recovered from x_t and x0."""
    x_t, t, y, out = net.calls[-1]
    if x_t.shape != x0.shape:
        checks.fail("ddpm_loss gives the network x_t of the wrong shape", f"{tuple(x0.shape)} (like x0)",
                    f"{tuple(x_t.shape)}", "x_t has the shape of x0")
    ab = _per_sample(alpha_bar.to(x_t.dtype)[t], x0)
    return x_t, t, y, out, (x_t.double() - ab.sqrt().double() * x0.double()) / (1 - ab).sqrt().double()


def _expected_loss(out, eps, t, weight):
    """(1/B) sum_b weight[t_b] mean_d (out_b - eps_b)^2, from what the network received and returned."""
    err = (out - eps.to(out.dtype)).pow(2).flatten(1).mean(1)                      # (B,)
    return (weight.to(out.dtype)[t] * err).mean()


def _population_loss(a: torch.Tensor, alpha_bar: torch.Tensor, weight: torch.Tensor, s2: float) -> float:
    """E over t ~ U{1..T}, x0 ~ N(0, s2 I), eps of the weighted loss of eps_theta = a[t] x_t (b = 0), in closed form."""
    ab, a = alpha_bar[1:], a.detach().double()[1:]
    per_t = 1 - 2 * a * (1 - ab).sqrt() + a**2 * (ab * s2 + 1 - ab)
    return float((weight[1:] * per_t).mean())


def _reference_loss(net, x0, y, alpha_bar, weight, generator):
    B, T = len(x0), len(alpha_bar) - 1
    t = torch.randint(1, T + 1, (B,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    ab = _per_sample(alpha_bar[t], x0)
    err = (net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, y) - eps).pow(2).flatten(1).mean(1)
    return (weight[t] * err).mean()


def _train(loss_fn, alpha_bar, weight, x0, steps: int = 30, lr: float = 0.1) -> float:
    T = len(alpha_bar) - 1
    net = _PerStepLinear(T)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        net.calls.clear()
        loss = loss_fn(net, x0, None, alpha_bar, weight, torch.Generator().manual_seed(100 + step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _population_loss(net.a, alpha_bar, weight, 1.0)


@checks.exercise("ex3_ddpm_loss", "Exercise 3: the loss of one DDPM training step")
def check_ddpm_loss(ddpm_loss: Callable) -> None:
    """Exercise 3: `ddpm_loss(net, x0, y, alpha_bar, weight, generator)`: t_b ~ U{1..T} and eps ~ N(0, I) drawn
    from `generator`, x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, one call net(x_t, t, y); returns
    (1/B) sum_b weight[t_b] mean_d (eps_b - net(...)_b)^2, a differentiable scalar.

    Checked by what the network received: the steps t (uniform on 1..T, one per example), the noise recovered from
    x_t (a sample of N(0, I), independent of x0), the loss recomputed from them, its gradient, reproducibility with
    the generator, the expected loss at the known optimum of a per-step linear network on Gaussian data, and 30
    Adam steps that must lower the loss as the reference's do.
    """
    T = 8
    alpha_bar = _alpha_bar(_random_beta(T, 20))
    g = torch.Generator().manual_seed(21)
    weight = torch.cat([torch.full((1,), 1e3, dtype=DOUBLE), 0.5 + torch.rand(T, generator=g, dtype=DOUBLE)])
    a0, b0 = torch.randn(T + 1, generator=g, dtype=DOUBLE), torch.randn(T + 1, generator=g, dtype=DOUBLE)
    # 1. A batch of vectors: what the network received, and the loss recomputed from it.
    B, D = 2000, 3
    x0 = 1.5 * torch.randn(B, D, generator=g, dtype=DOUBLE) + 0.5
    y = torch.randint(0, 10, (B,), generator=g)
    net = _PerStepLinear(T, a0, b0)
    inputs = {"x0": x0.clone(), "y": y.clone(), "alpha_bar": alpha_bar.clone(), "weight": weight.clone()}
    before = torch.get_rng_state()
    loss = _call_loss(ddpm_loss, net, *inputs.values(), seed=5)
    if not torch.equal(before, torch.get_rng_state()):
        checks.fail("ddpm_loss uses the global random state", "t and eps drawn from `generator` only",
                    "torch's global random state changed", "pass generator=generator to torch.randint and torch.randn")
    _unchanged("ddpm_loss", inputs, {"x0": x0, "y": y, "alpha_bar": alpha_bar, "weight": weight})
    x_t, t, y_seen, out, eps = _recovered(net, x0, alpha_bar)
    if not (isinstance(y_seen, torch.Tensor) and torch.equal(y_seen, y)):
        checks.fail("ddpm_loss does not pass the labels to the network", "net(x_t, t, y) with the y it was given",
                    "other labels" if isinstance(y_seen, torch.Tensor) else repr(y_seen), "pass y through unchanged")
    if t.min() < 1 or t.max() > T:
        checks.fail("ddpm_loss draws steps outside 1..T", f"t in 1..{T}", f"t from {int(t.min())} to {int(t.max())}",
                    "t = 0 is the data itself, not a training step; torch.randint's upper bound is exclusive")
    counts = torch.bincount(t.cpu(), minlength=T + 1)[1:].double()
    p_value = stats.chisquare(counts.numpy()).pvalue
    if p_value < 1e-4:
        checks.fail(f"ddpm_loss's steps t are not uniform on 1..{T} (chi-square p = {p_value:.2g})",
                    f"each step about {B // T} times in a batch of {B}", f"counts {counts.long().tolist()}",
                    "draw one t per example, uniformly on 1..T")
    eps_flat = eps.flatten()
    mean, std = eps.mean(0), eps.std(0)
    ks = stats.kstest(eps_flat.numpy(), "norm").pvalue
    corr = float(((eps - eps.mean(0)) * (x0 - x0.mean(0))).mean() / (eps.std() * x0.std()))
    if (mean.abs().max() > 5 / B**0.5 or (std - 1).abs().max() > 5 / B**0.5 or ks < 1e-4
            or abs(corr) > 5 / (B * D) ** 0.5):
        checks.fail("the noise behind ddpm_loss's x_t is not standard normal noise independent of x0",
                    "eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t) distributed as N(0, I), one draw per entry",
                    f"mean per coordinate {mean.numpy().round(3).tolist()}, std {std.numpy().round(3).tolist()}, "
                    f"Kolmogorov-Smirnov p = {ks:.2g}, correlation with x0 {corr:.3f}",
                    "x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps with square roots, alpha_bar indexed by "
                    "each example's t, and eps = torch.randn (a fresh draw for every entry)")
    expected = _expected_loss(out, eps, t, weight)
    checks.check_close("ddpm_loss's value, recomputed from what the network received and returned", loss,
                       expected.detach(), atol=ATOL, rtol=RTOL,
                       hint="the mean over the batch of weight[t_b] times the mean over the example's dimensions of "
                            "(eps - net(x_t, t, y))^2; the target is the noise eps, and each example has its own t")
    # 2. The gradient reaches the network's parameters, and equals that of the recomputed loss.
    if not loss.requires_grad:
        checks.fail("ddpm_loss carries no gradient", "a loss differentiable in the network's parameters",
                    "a tensor without grad_fn", "do not detach the network's output or call .item()")
    found = torch.autograd.grad(loss, [net.a, net.b], allow_unused=True, retain_graph=True)
    if any(g_ is None for g_ in found):
        checks.fail("ddpm_loss's gradient does not reach the network", "gradients for every parameter",
                    "no gradient", "use the network's output itself in the loss (no detach, no .item())")
    for g_found, g_ref, name in zip(found, torch.autograd.grad(expected, [net.a, net.b]), ("a", "b"), strict=True):
        checks.check_close(f"the gradient of ddpm_loss for the network's parameter {name}", g_found, g_ref,
                           atol=ATOL, rtol=RTOL, hint="the loss must be the weighted mean squared error itself")
    # 3. Reproducible with the generator.
    again = _call_loss(ddpm_loss, _PerStepLinear(T, a0, b0), x0.clone(), y.clone(), alpha_bar.clone(),
                       weight.clone(), seed=5)
    if not torch.equal(again.detach(), loss.detach()):
        checks.fail("ddpm_loss is not reproducible with the same generator", "the same loss for the same seed",
                    f"{float(loss.detach()):.6g} then {float(again.detach()):.6g}", "draw t and eps from `generator` only")
    # 4. Images (B, 1, H, W) in float32: per-example coefficients broadcast over every dimension but the batch.
    x0_img = torch.randn(500, 1, 4, 4, generator=g).float()
    net = _PerStepLinear(T, a0, b0, dtype=torch.float32)
    loss = _call_loss(ddpm_loss, net, x0_img.clone(), None, alpha_bar.float(), weight.float(), seed=6)
    if loss.dtype != torch.float32:
        checks.fail("ddpm_loss changes the dtype", "a float32 loss for float32 images", str(loss.dtype),
                    "draw the noise in x0's dtype (torch.randn(x0.shape, dtype=x0.dtype, ...))")
    x_t, t, y_seen, out, eps = _recovered(net, x0_img, alpha_bar.float())
    if y_seen is not None:
        checks.fail("ddpm_loss does not pass the labels to the network", "net(x_t, t, None) when y is None",
                    repr(type(y_seen).__name__), "pass y through unchanged")
    if eps.std() < 0.8 or eps.std() > 1.2 or eps.flatten(1).std(0).min() < 0.7:
        checks.fail("the noise behind ddpm_loss's x_t on images is not standard normal",
                    "eps recovered from x_t with std 1 in every pixel", f"std {float(eps.std()):.3f}",
                    "reshape alpha_bar[t] to (B, 1, 1, 1) so that it broadcasts over every dimension but the batch")
    checks.check_close("ddpm_loss's value on images (B, 1, 4, 4), recomputed from what the network received", loss,
                       _expected_loss(out, eps, t, weight).detach(), atol=ATOL, rtol=RTOL,
                       hint="reshape alpha_bar[t] to (B, 1, 1, 1); average the squared error over each image's "
                            "pixels, weight it by weight[t], then average over the batch")
    # 5. Equal in expectation at the known optimum: x0 ~ N(0, I), eps_theta = a*_t x_t with
    #    a*_t = sqrt(1 - ab_t) / (ab_t + 1 - ab_t) = sqrt(1 - ab_t): the expected loss is the weighted mean of ab_t.
    B = 4000
    a_star = torch.cat([torch.zeros(1, dtype=DOUBLE), (1 - alpha_bar[1:]).sqrt()])
    net = _PerStepLinear(T, a_star)
    x0 = torch.randn(B, 2, generator=g, dtype=DOUBLE)
    loss = _call_loss(ddpm_loss, net, x0, None, alpha_bar.clone(), weight.clone(), seed=7)
    _, t, _, out, eps = _recovered(net, x0, alpha_bar)
    terms = weight[t] * (out.detach() - eps).pow(2).mean(1)
    target = _population_loss(a_star, alpha_bar, weight, 1.0)
    if abs(float(loss.detach()) - target) > 5 * float(terms.std()) / B**0.5:
        checks.fail("ddpm_loss at the optimum of a network on Gaussian data, against its expected value",
                    f"about {target:.4f} (the weighted mean over t of alpha_bar_t)", f"{float(loss):.4f}",
                    "t uniform on 1..T, the weight of each example's own step, the mean over dimensions")
    # 6. A few optimizer steps lower the loss as the reference implementation's do.
    x0 = torch.randn(128, 2, generator=g, dtype=DOUBLE)
    start = _population_loss(torch.zeros(T + 1, dtype=DOUBLE), alpha_bar, weight, 1.0)
    reference = _train(_reference_loss, alpha_bar, weight, x0)
    found = _train(ddpm_loss, alpha_bar, weight, x0)
    if not found <= reference + 0.2 * (start - reference):
        checks.fail("30 Adam steps on ddpm_loss do not lower the loss as they should",
                    f"the expected loss to fall from {start:.4f} to about {reference:.4f} (as with the reference)",
                    f"{found:.4f}", "the network must be trained through the weighted squared error of its noise "
                                    "prediction")


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
            for what, eps_hat in (("the true noise", eps), ("an imperfect eps_hat", torch.randn(shape, generator=g,
                                                                                                  dtype=DOUBLE))):
                x0_hat = (x_t - (1 - ab[t]).sqrt() * eps_hat) / ab[t].sqrt()
                inputs = {"x_t": x_t.clone(), "eps_hat": eps_hat.clone(), "beta": beta.clone(), "z": z.clone()}
                out = ddpm_step(inputs["x_t"], t, inputs["eps_hat"], inputs["beta"], inputs["z"])
                _unchanged("ddpm_step", inputs, {"x_t": x_t, "eps_hat": eps_hat, "beta": beta, "z": z})
                out = _answer(out, "ddpm_step's output", shape)
                checks.check_close(f"ddpm_step with {what} as eps_hat (t = {t}, batch shape {shape})", out,
                                   c1 * x0_hat + c2 * x_t + var**0.5 * z, atol=ATOL, rtol=RTOL,
                                   hint="mean (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t), plus "
                                        "the square root of the posterior variance (1 - alpha_bar_(t-1)) / "
                                        "(1 - alpha_bar_t) beta_t times the z you are given (it is 0 at t = 1)")


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
            inputs = {"eps_c": eps_c.clone(), "eps_u": eps_u.clone()}
            out = guided_eps(inputs["eps_c"], inputs["eps_u"], w)
            _unchanged("guided_eps", inputs, {"eps_c": eps_c, "eps_u": eps_u})
            out = _answer(out, "guided_eps' output", shape)
            checks.check_close(f"guided_eps at w = {w:g} ({meaning})", out, eps_u + w * (eps_c - eps_u),
                               atol=ATOL, rtol=RTOL,
                               hint="this course's convention: w = 0 is unconditional, w = 1 conditional, w > 1 "
                                    "pushes away from the unconditional prediction")
