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
        loss = checks.check_scalar("discriminator_loss", discriminator_loss(real, fake), hint_mean, _UNDERFLOW)
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
    loss = checks.check_scalar("discriminator_loss on logits of size 200", discriminator_loss(real, fake), hint_mean,
                                _UNDERFLOW)
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
    out = optimal_discriminator(log_p_data, log_p_g)
    checks.check_tensor("D*(x)", out, shape=(5, 40))
    expected = torch.sigmoid(log_p_data - log_p_g)
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
    out = optimal_discriminator(log_p_data, log_p_g)
    checks.check_tensor("D*(x) for log-densities near -1000", out, shape=(4,), finite=False)
    if not torch.isfinite(out).all():
        checks.fail("D*(x) for log-densities near -1000 is not finite", "finite values", "NaN or inf",
                    "exp(-1000) is 0 in floating point; rewrite p_d / (p_d + p_g) with the difference of the "
                    "log-densities only")
    checks.check_close("D*(x) for log-densities near -1000", out.detach().double(),
                       torch.sigmoid(log_p_data - log_p_g), atol=1e-6, rtol=1e-5,
                       hint="divide numerator and denominator by p_data: only log p_data - log p_g is needed")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the non-saturating generator loss
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex3_generator_loss", "Exercise 3: the non-saturating generator loss")
def check_generator_loss(generator_loss: Callable) -> None:
    """Exercise 3: `generator_loss(fake_logits)` = -mean log D(G(z)), the non-saturating loss, with D = sigmoid(l)."""
    g = torch.Generator().manual_seed(83)
    hint_mean = "average -log D(G(z)) over the batch"
    fake = (2.0 * torch.randn(50, generator=g, dtype=DOUBLE)).requires_grad_(True)
    loss = checks.check_scalar("generator_loss", generator_loss(fake), hint_mean, _UNDERFLOW)
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
                               generator_loss(fake), hint_mean, _UNDERFLOW)
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
        n_modes, frac = (float(v) for v in out)
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
