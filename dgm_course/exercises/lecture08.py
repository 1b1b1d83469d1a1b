"""Checks for lecture 08 (GANs): the discriminator loss, the optimal discriminator, the non-saturating generator
loss, and the mode-coverage metric of the 2-D mixtures.

Every check builds its own random problem from a fixed seed and computes the reference in float64 without the
lecture's code: the losses from their definitions through `softplus`, the optimal discriminator from the two
log-densities, the coverage from sample sets whose answer is known by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import checks

DOUBLE = torch.float64
_UNDERFLOW = "log(sigmoid(l)) underflows to log(0) for large |l|: use F.softplus or F.logsigmoid"


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the discriminator loss
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_discriminator_loss", "Exercise 1: the discriminator loss")
def check_discriminator_loss(discriminator_loss: Callable) -> None:
    """Exercise 1: `discriminator_loss(real_logits, fake_logits)` = -(mean log D(x) + mean log(1 - D(G(z)))).

    The logits l are D's outputs before the sigmoid, D = sigmoid(l); the batches of real and fake logits may
    have different sizes, and the result is the sum of the two batch means.
    """
    g = torch.Generator().manual_seed(81)
    hint_mean = "average each term over its own batch, then add the two averages"
    for n_real, n_fake, scale in ((64, 48, 3.0), (20, 100, 0.5)):
        real = (scale * torch.randn(n_real, generator=g, dtype=DOUBLE) + 0.5).requires_grad_(True)
        fake = (scale * torch.randn(n_fake, generator=g, dtype=DOUBLE) - 0.5).requires_grad_(True)
        loss = checks.plain("discriminator_loss", discriminator_loss(real, fake), differentiable=True)
        loss = checks.check_scalar("discriminator_loss", loss, hint_mean, _UNDERFLOW)
        expected = F.softplus(-real.detach()).mean() + F.softplus(fake.detach()).mean()
        swapped = F.softplus(real.detach()).mean() + F.softplus(-fake.detach()).mean()
        pooled = (F.softplus(-real.detach()).sum() + F.softplus(fake.detach()).sum()) / (n_real + n_fake)
        found = float(loss.detach())
        if abs(found - float(expected)) > 1e-5:
            if abs(found + float(expected)) < 1e-5:
                hint = "that is V(G, D) itself; the discriminator maximizes V, so its loss to minimize is -V"
            elif abs(found - float(swapped)) < 1e-5:
                hint = "the labels are swapped: real data should be pushed towards D = 1, fakes towards D = 0"
            elif abs(found - float(pooled)) < 1e-5:
                hint = "that averages over the pooled batch; " + hint_mean
            else:
                hint = "-log D = softplus(-l) and -log(1 - D) = softplus(l), with D = sigmoid(l)"
            checks.fail(f"discriminator_loss is wrong for {n_real} real and {n_fake} fake logits",
                        f"{float(expected):.6f}", f"{found:.6f}", hint)
        grads = torch.autograd.grad(loss, [real, fake], allow_unused=True) if loss.requires_grad else (None,)
        if any(gr is None for gr in grads):
            checks.fail("discriminator_loss carries no gradient to the logits", "gradients for both batches",
                        "None", "do not detach the logits or compute the loss under torch.no_grad")
    # a confident discriminator: logits of size 200, where sigmoid() rounds to exactly 0 or 1
    real = torch.tensor([200.0, -150.0, 3.0], dtype=DOUBLE)
    fake = torch.tensor([-200.0, 120.0], dtype=DOUBLE)
    loss = checks.check_scalar("discriminator_loss on logits of size 200",
                               checks.plain("discriminator_loss", discriminator_loss(real, fake)), hint_mean, _UNDERFLOW)
    checks.check_close("discriminator_loss on logits of size 200", loss.detach(),
                       F.softplus(-real).mean() + F.softplus(fake).mean(), atol=1e-4, rtol=1e-6,
                       hint="compute the log-probabilities from the logits (F.softplus or F.logsigmoid), "
                            "not log(sigmoid(l))")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the optimal discriminator
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex2_optimal_discriminator", "Exercise 2: the optimal discriminator")
def check_optimal_discriminator(optimal_discriminator: Callable) -> None:
    """Exercise 2: `optimal_discriminator(log_p_data, log_p_g)` = p_data / (p_data + p_g), elementwise.

    Inputs are log-densities of the same shape (any shape); the output has that shape, values in [0, 1].
    """
    g = torch.Generator().manual_seed(82)
    log_p_data = 4 * torch.randn(5, 40, generator=g, dtype=DOUBLE) - 3
    log_p_g = 4 * torch.randn(5, 40, generator=g, dtype=DOUBLE) - 3
    expected = torch.sigmoid(log_p_data - log_p_g)
    inputs = (log_p_data.clone(), log_p_g.clone())
    out = checks.plain("D*(x)", optimal_discriminator(*inputs))
    if not (torch.equal(inputs[0], log_p_data) and torch.equal(inputs[1], log_p_g)):
        checks.fail("optimal_discriminator changed its inputs", "log_p_data and log_p_g left as they were",
                    "an input overwritten in place", "compute a new tensor (no in-place operations such as sub_ on "
                    "the arguments): the lecture uses the log-densities again afterwards")
    checks.check_tensor("D*(x)", out, shape=(5, 40))
    found = out.detach().double()
    if not torch.allclose(found, expected, atol=1e-6, rtol=1e-5):
        if torch.allclose(found, 1 - expected, atol=1e-6, rtol=1e-5):
            hint = "that is 1 - D*: the discriminator gives the probability that x is REAL data"
        elif (found > 1 + 1e-6).any():
            hint = "D* is a probability, in [0, 1]: normalize by p_data + p_g"
        else:
            hint = "D*(x) = p_data(x) / (p_data(x) + p_g(x)), computed from the two log-densities"
        checks.check_close("D*(x) on random log-densities", found, expected, atol=1e-6, rtol=1e-5, hint=hint)
    # log-densities of high-dimensional data are large and negative: exp() underflows to 0 / 0
    log_p_data = torch.tensor([-1000.0, -2000.0, -745.0, -900.0], dtype=DOUBLE)
    log_p_g = torch.tensor([-1010.0, -1999.0, -760.0, -900.0], dtype=DOUBLE)
    out = checks.plain("D*(x)", optimal_discriminator(log_p_data.clone(), log_p_g.clone()))
    checks.check_tensor("D*(x) for log-densities near -1000", out, shape=(4,), finite=False)
    if not torch.isfinite(out).all():
        checks.fail("D*(x) for log-densities near -1000 is not finite", "finite values", "NaN or inf",
                    "exp(-1000) is 0 in floating point; rewrite p_d / (p_d + p_g) with the difference of the "
                    "log-densities only")
    checks.check_close("D*(x) for log-densities near -1000", out.detach().double(),
                       torch.sigmoid(log_p_data - log_p_g), atol=1e-6, rtol=1e-5,
                       hint="one density dominates by up to 15 nats here: divide numerator and denominator by "
                            "p_data, so that only log p_data - log p_g is needed, and do not clip it")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the non-saturating generator loss
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex3_generator_loss", "Exercise 3: the non-saturating generator loss")
def check_generator_loss(generator_loss: Callable) -> None:
    """Exercise 3: `generator_loss(fake_logits)` = -mean log D(G(z)), the non-saturating loss, with D = sigmoid(l)."""
    g = torch.Generator().manual_seed(83)
    hint_mean = "average -log D(G(z)) over the batch"
    fake = (2.0 * torch.randn(50, generator=g, dtype=DOUBLE)).requires_grad_(True)
    loss = checks.check_scalar("generator_loss", checks.plain("generator_loss", generator_loss(fake), True),
                               hint_mean, _UNDERFLOW)
    expected = F.softplus(-fake.detach()).mean()
    found = float(loss.detach())
    if abs(found - float(expected)) > 1e-5:
        minimax = -F.softplus(fake.detach()).mean()
        if abs(found - float(minimax)) < 1e-5:
            hint = "that is the minimax loss mean log(1 - D(G(z))); the non-saturating loss is -mean log D(G(z))"
        elif abs(found + float(expected)) < 1e-5:
            hint = "sign: the generator wants D(G(z)) near 1, so it minimizes -log D(G(z))"
        elif abs(found - float(F.softplus(fake.detach()).mean())) < 1e-5:
            hint = "that pushes D(G(z)) towards 0; the generator wants its samples judged real"
        else:
            hint = "-log D = softplus(-l) with D = sigmoid(l)"
        checks.fail("generator_loss is wrong on random logits", f"{float(expected):.6f}", f"{found:.6f}", hint)
    # early in training D rejects the fakes confidently: the gradient must not vanish there
    fake = torch.tensor([-8.0, -12.0, -800.0, -30.0], dtype=DOUBLE, requires_grad=True)
    loss = checks.check_scalar("generator_loss on confidently rejected fakes (logits -8 to -800)",
                               checks.plain("generator_loss", generator_loss(fake), True), hint_mean, _UNDERFLOW)
    (grad,) = torch.autograd.grad(loss, [fake], allow_unused=True) if loss.requires_grad else (None,)
    if grad is None:
        checks.fail("generator_loss carries no gradient to the logits", "a gradient", "None",
                    "do not detach the logits")
    want = -(1 - torch.sigmoid(fake.detach())) / len(fake)
    checks.check_close("d loss / d logit where D(G(z)) is nearly 0", grad, want, atol=1e-6, rtol=1e-4,
                       hint="with -log D(G(z)) the gradient stays near -1/B when D rejects the fakes; a vanishing "
                            "gradient here is the saturation of the minimax loss")
    checks.check_close("generator_loss on logits -8 to -800", loss.detach(), F.softplus(-fake.detach()).mean(),
                       atol=1e-4, rtol=1e-6, hint="use F.softplus(-l) or -F.logsigmoid(l), not log(sigmoid(l))")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the mode-coverage metric
# ----------------------------------------------------------------------------------------------------------

def _coverage_case(seed: int, min_count: int):
    """Samples around K centres with a known answer: per-mode counts inside 3 std, and decoys outside it."""
    g = torch.Generator().manual_seed(seed)
    side = 3
    base = torch.cartesian_prod(torch.arange(side, dtype=DOUBLE), torch.arange(side, dtype=DOUBLE)) * 2.0
    centers = base + 0.2 * torch.rand(len(base), 2, generator=g, dtype=DOUBLE)       # (K, 2), spacing ~ 2
    std = 0.1 + 0.05 * float(torch.rand(1, generator=g))
    k = len(centers)
    counts = torch.randint(0, 3 * min_count, (k,), generator=g)
    counts[0], counts[1], counts[2] = min_count, min_count - 1, 0                     # edges of the rule
    pts, inside = [], 0
    for j in range(k):
        n = int(counts[j])
        r = std * (0.3 + 2.6 * torch.rand(n, generator=g, dtype=DOUBLE))             # in (0.3, 2.9) std
        a = 2 * math.pi * torch.rand(n, generator=g, dtype=DOUBLE)
        pts.append(centers[j] + torch.stack([r * a.cos(), r * a.sin()], 1))
        inside += n
    # decoys: between 3.1 and 6 std from a mode (nearest to it, but not high quality), many of them
    # around the under-filled modes, so that counting every sample towards its nearest mode is wrong
    decoy_modes = torch.tensor([1, 2] + torch.randint(0, k, (6,), generator=g).tolist())
    for j in decoy_modes.tolist():
        n = 2 * min_count
        r = std * (3.1 + 2.9 * torch.rand(n, generator=g, dtype=DOUBLE))
        a = 2 * math.pi * torch.rand(n, generator=g, dtype=DOUBLE)
        pts.append(centers[j] + torch.stack([r * a.cos(), r * a.sin()], 1))
    x = torch.cat(pts)
    x = x[torch.randperm(len(x), generator=g)].float()
    covered = int((counts >= min_count).sum())
    return x, centers.float(), std, covered, inside / len(x)


@checks.exercise("ex4_mode_coverage", "Exercise 4: the mode-coverage metric")
def check_mode_coverage(mode_coverage: Callable) -> None:
    """Exercise 4: `mode_coverage(samples, centers, std, min_count)` -> (modes covered, high-quality fraction).

    A sample is high quality when it lies within 3 std of its nearest centre; a mode is covered when at least
    `min_count` high-quality samples have it as their nearest centre.
    """
    for seed, min_count in ((84, 20), (85, 5)):
        x, centers, std, covered, hq = _coverage_case(seed, min_count)
        out = mode_coverage(x, centers, std, min_count)
        if not isinstance(out, tuple | list) or len(out) != 2:
            checks.fail("mode_coverage returns the wrong thing", "a pair (modes covered, high-quality fraction)",
                        type(out).__name__)
        n_modes, frac = (float(checks.plain(name, v).double().reshape(-1)[0]) if checks.plain(name, v).numel() == 1
                         else checks.fail(f"{name} is not one number", "a number", "several")
                         for name, v in zip(("the number of covered modes", "the high-quality fraction"), out,
                                            strict=True))
        if abs(frac - hq) > 1e-6:
            hint = ("a sample is high quality when its distance to the nearest centre is below 3 * std "
                    "(a distance, not a squared distance); the fraction is over all samples")
            checks.fail(f"the high-quality fraction is wrong (min_count={min_count})", f"{hq:.4f}", f"{frac:.4f}",
                        hint)
        if n_modes != covered:
            checks.fail(f"the number of covered modes is wrong ({len(centers)} modes, min_count={min_count})",
                        f"{covered}", f"{n_modes:g}",
                        "count, per mode, only the high-quality samples nearest to it, and cover the mode when "
                        "that count is at least min_count")


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: one step of the alternating GAN update
# ----------------------------------------------------------------------------------------------------------

class _LinearG(torch.nn.Module):
    """G(z) = z A^T + c: (B, Z) -> (B, X)."""

    def __init__(self, z_dim: int, x_dim: int, g: torch.Generator):
        super().__init__()
        self.A = torch.nn.Parameter(0.7 * torch.randn(x_dim, z_dim, generator=g))
        self.c = torch.nn.Parameter(0.5 * torch.randn(x_dim, generator=g))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T + self.c


class _LinearD(torch.nn.Module):
    """D(x) = <w, x> + b: (B, X) -> logits (B,)."""

    def __init__(self, x_dim: int, g: torch.Generator):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(x_dim, generator=g))
        self.b = torch.nn.Parameter(0.3 * torch.randn((), generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


class _RecordingSGD(torch.optim.SGD):
    """Plain SGD that writes down, at each step(), which player stepped, every parameter and its own gradients."""

    def __init__(self, params, lr: float, player: str, log: list, models: dict):
        super().__init__(params, lr=lr)
        self.player, self.log, self.models = player, log, models

    def step(self, closure=None):
        own = [p for group in self.param_groups for p in group["params"]]
        self.log.append({
            "player": self.player,
            "params": {k: [p.detach().double().clone() for p in m.parameters()] for k, m in self.models.items()},
            "grads": [None if p.grad is None else p.grad.detach().double().clone() for p in own],
        })
        return super().step(closure)


def _non_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def _minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    return -F.softplus(fake_logits).mean()


def _closed_form_step(A, c, w, b, x, z_d, z_g, lr_g, lr_d, minimax):
    """The reference step by hand for the linear pair, float64: losses, gradients and the new parameters."""
    fake_d = z_d @ A.T + c                                                # (B, X)
    l_real, l_fake = x @ w + b, fake_d @ w + b                            # (B,) each
    d_loss = F.softplus(-l_real).mean() + F.softplus(l_fake).mean()
    s_r, s_f = -torch.sigmoid(-l_real) / len(x), torch.sigmoid(l_fake) / len(fake_d)    # dL_D / dlogit
    g_w, g_b = s_r @ x + s_f @ fake_d, s_r.sum() + s_f.sum()
    leak_A, leak_c = torch.outer(w, s_f @ z_d), w * s_f.sum()            # dL_D / d(A, c) without the detach
    w2, b2 = w - lr_d * g_w, b - lr_d * g_b
    fake_g = z_g @ A.T + c
    logit = fake_g @ w2 + b2
    if minimax:
        g_loss, s = -F.softplus(logit).mean(), -torch.sigmoid(logit) / len(logit)
    else:
        g_loss, s = F.softplus(-logit).mean(), -torch.sigmoid(-logit) / len(logit)
    g_A, g_c = torch.outer(w2, s @ z_g), w2 * s.sum()
    logit_old = fake_g @ w + b                                            # the generator's loss with the OLD D
    s_old = (-torch.sigmoid(logit_old) if minimax else -torch.sigmoid(-logit_old)) / len(logit)
    fake_zd = fake_d @ w2 + b2                                            # ... or with z_D instead of z_G
    s_zd = (-torch.sigmoid(fake_zd) if minimax else -torch.sigmoid(-fake_zd)) / len(fake_zd)
    return {"d_loss": float(d_loss), "g_loss": float(g_loss), "g_D": [g_w, g_b], "g_G": [g_A, g_c],
            "leak_G": [leak_A, leak_c], "old_D_G": [torch.outer(w, s_old @ z_g), w * s_old.sum()],
            "zd_G": [torch.outer(w2, s_zd @ z_d), w2 * s_zd.sum()],
            "new_D": [w2, b2], "new_G": [A - lr_g * g_A, c - lr_g * g_c]}


def _close(found, expected, scale=1.0) -> bool:
    atol, rtol = checks.tolerance(torch.float32, 10 * scale)
    return found is not None and all(f is not None and torch.allclose(f, e, atol=atol, rtol=rtol)
                                     for f, e in zip(found, expected, strict=True))


def _run_step(gan_step, G, D, opt_G, opt_D, x, z_d, z_g, g_loss, what):
    out = gan_step(G, D, opt_G, opt_D, x.clone(), z_d.clone(), z_g.clone(), g_loss)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"gan_step returns the wrong thing ({what})", "a pair (discriminator loss, generator loss)",
                    type(out).__name__, "return d_loss.item(), g_loss.item()")
    values = []
    for name, v in zip(("the discriminator loss", "the generator loss"), out, strict=True):
        v = checks.plain(f"{name} returned by gan_step", v)
        if v.numel() != 1:
            checks.fail(f"{name} returned by gan_step is not one number", "a float", f"shape {tuple(v.shape)}",
                        "return the batch-mean loss as a float (.item())")
        values.append(float(v))
    return values


def _grad_diagnosis(found, ref, garbage) -> str:
    """A hint naming the classic mistake whose gradient the generator received."""
    if all(g is None for g in found):
        return "no gradient reached the generator: do not detach G(z_G) in the generator step"
    found = [torch.zeros_like(r) if f is None else f for f, r in zip(found, ref["g_G"], strict=True)]
    if _close(found, [a + b for a, b in zip(ref["g_G"], ref["leak_G"], strict=True)]):
        return ("the discriminator's loss leaked into the generator's gradient: detach the generated batch in the "
                "discriminator step (or clear G's gradients right before the generator's backward)")
    if garbage is not None and _close(found, [a + g for a, g in zip(ref["g_G"], garbage, strict=True)]):
        return ("the gradient still holds what was in .grad before the step: clear the generator's gradients "
                "(opt_G.zero_grad()) before its backward")
    if _close(found, ref["old_D_G"]):
        return ("the generator's loss was computed with the discriminator BEFORE its update: compute it after "
                "opt_D.step()")
    if _close(found, ref["zd_G"]):
        return "the generator step used z_D: it must use the fresh noise z_G"
    return "the generator minimizes g_loss(D(G(z_G))) with the updated D: backpropagate it alone, then step opt_G"


@checks.exercise("ex5_gan_step", "Exercise 5: one alternating GAN update")
def check_gan_step(gan_step: Callable) -> None:
    """Exercise 5: `gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss) -> (d_loss, g_loss_value)`.

    One discriminator step on `discriminator_loss(D(x_real), D(G(z_D)))` with the generated batch detached, then
    one generator step on `g_loss(D(G(z_G)))` through the updated D; only opt_D steps in the first, only opt_G in
    the second; gradients left in .grad before the call must not leak into either step. Checked on a linear G and
    D against the step worked out by hand (losses, gradients, new parameters), twice in a row (the second time with
    the minimax loss and the gradients the first step left behind), then over 40 steps of a toy problem against
    the reference implementation.
    """
    gen = torch.Generator().manual_seed(85)
    z_dim, x_dim, batch, lr_g, lr_d = 3, 2, 6, 0.3, 0.2
    G, D = _LinearG(z_dim, x_dim, gen), _LinearD(x_dim, gen)
    log: list = []
    models = {"G": G, "D": D}
    opt_G = _RecordingSGD(G.parameters(), lr_g, "G", log, models)
    opt_D = _RecordingSGD(D.parameters(), lr_d, "D", log, models)
    garbage = None
    for call, minimax in ((1, False), (2, True)):
        x = torch.randn(batch, x_dim, generator=gen) + torch.tensor([1.5, -0.5])
        z_d, z_g = torch.randn(batch, z_dim, generator=gen), torch.randn(batch, z_dim, generator=gen)
        if call == 1:                                                     # leftovers from "earlier code"
            for p in (*G.parameters(), *D.parameters()):
                p.grad = torch.full_like(p, 0.75)
            garbage = [torch.full_like(p, 0.75, dtype=torch.float64) for p in G.parameters()]
        else:
            garbage = [None if p.grad is None else p.grad.detach().double().clone() for p in G.parameters()]
            garbage = None if any(g is None for g in garbage) else garbage
        A, c, w, b = (p.detach().double().clone() for p in (G.A, G.c, D.w, D.b))
        ref = _closed_form_step(A, c, w, b, x.double(), z_d.double(), z_g.double(), lr_g, lr_d, minimax)
        what = f"call {call}, with the {'minimax' if minimax else 'non-saturating'} g_loss"
        log.clear()
        d_val, g_val = _run_step(gan_step, G, D, opt_G, opt_D, x, z_d, z_g, _minimax if minimax else _non_saturating,
                                 what)
        players = [entry["player"] for entry in log]
        if players != ["D", "G"]:
            checks.fail(f"the optimizers stepped in the wrong pattern ({what})",
                        "opt_D.step() once, then opt_G.step() once", f"steps in this order: {players or 'none'}",
                        "one discriminator step first, then one generator step; use the optimizers passed in "
                        "and step each exactly once")
        at_d, at_g = log
        if not _close(at_d["params"]["G"], [A, c]):
            checks.fail(f"the generator moved during the discriminator step ({what})", "G unchanged until opt_G steps",
                        "G's parameters changed", "the discriminator step must change D only")
        if not _close(at_d["grads"], ref["g_D"]):
            hint = ("the gradient still holds what was in .grad before the step: clear the discriminator's gradients "
                    "(opt_D.zero_grad()) before its backward" if call == 1 and at_d["grads"][0] is not None and
                    _close([g - 0.75 for g in at_d["grads"]], ref["g_D"]) else
                    "the discriminator's loss is discriminator_loss(D(x_real), D(G(z_D))), on the current parameters")
            checks.fail(f"the discriminator's gradient at its step is wrong ({what})",
                        "the gradient of the discriminator loss alone", "something else", hint)
        if not _close(at_g["params"]["D"], ref["new_D"]):
            checks.fail(f"the discriminator is not where one step of opt_D puts it ({what})",
                        "D after exactly one update", "other parameters", "step opt_D once, before the generator step")
        if not _close(at_g["grads"], ref["g_G"]):
            checks.fail(f"the generator's gradient at its step is wrong ({what})",
                        "the gradient of g_loss(D(G(z_G))) with the updated D, alone", "something else",
                        _grad_diagnosis(at_g["grads"], ref, garbage))
        if not _close([p.detach().double() for p in D.parameters()], ref["new_D"]):
            checks.fail(f"the discriminator moved during the generator step ({what})", "D unchanged by the G step",
                        "D's parameters changed after opt_G.step()", "the generator step must change G only")
        if not _close([p.detach().double() for p in G.parameters()], ref["new_G"]):
            checks.fail(f"the generator is not where one step of opt_G puts it ({what})", "G after one update",
                        "other parameters", "step opt_G exactly once")
        for name, found, want in (("discriminator", d_val, ref["d_loss"]), ("generator", g_val, ref["g_loss"])):
            if not _close([torch.tensor(found, dtype=torch.float64)], [torch.tensor(want, dtype=torch.float64)]):
                checks.fail(f"the {name} loss returned is wrong ({what})", f"{want:.6f}", f"{found:.6f}",
                            f"return the {name}'s loss as computed for its step, before the update")
    _check_trajectory(gan_step)


class _SmallD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _reference_gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss):
    d_loss = F.softplus(-D(x_real)).mean() + F.softplus(D(G(z_D).detach())).mean()
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def _toy_run(gan_step, steps: int = 40, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, c) of G(z) = a z + c before and after `steps` calls of gan_step on data N(2, 0.5^2)."""
    torch.manual_seed(86)
    G, D = torch.nn.Linear(1, 1), _SmallD()
    start = torch.cat([G.weight.detach().reshape(-1), G.bias.detach()]).double()
    opt_G, opt_D = torch.optim.SGD(G.parameters(), lr=0.05), torch.optim.SGD(D.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(87)
    for _ in range(steps):
        x = 2.0 + 0.5 * torch.randn(batch, 1, generator=g)
        z_d, z_g = torch.randn(batch, 1, generator=g), torch.randn(batch, 1, generator=g)
        gan_step(G, D, opt_G, opt_D, x, z_d, z_g, _non_saturating)
    return start, torch.cat([G.weight.detach().reshape(-1), G.bias.detach()]).double()


def _check_trajectory(gan_step: Callable) -> None:
    start, want = _toy_run(_reference_gan_step)
    _, found = _toy_run(gan_step)
    moved = float((want - start).norm())
    if not torch.allclose(found, want, atol=1e-3 * max(moved, 1.0), rtol=1e-3):
        checks.fail("after 40 steps on a 1-D toy problem (data N(2, 0.5^2), G(z) = a z + c) the generator is "
                    "not where the reference update puts it",
                    f"(a, c) = ({want[0]:.5f}, {want[1]:.5f})", f"({found[0]:.5f}, {found[1]:.5f})",
                    "each call must be one complete, independent update: clear the gradients, step D then G, and "
                    "leave both networks trainable for the next call")
