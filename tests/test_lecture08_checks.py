"""Lecture 08 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones (tests/exercise_cases.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from exercise_cases import Exercise, Wrong, exercise_tests, lie

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture08

# ---------------------------------------------------------------- Exercise 1: the discriminator loss


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def discriminator_loss_bce(real_logits, fake_logits):  # BCE with logits, per batch
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def discriminator_loss_loop(real_logits, fake_logits):  # explicit loops, a stable log(1 + e^l) by hand
    def softplus(v):
        return torch.clamp(v, min=0) + torch.log1p(torch.exp(-v.abs()))
    real = sum(softplus(-real_logits[i]) for i in range(len(real_logits))) / len(real_logits)
    fake = sum(softplus(fake_logits[j]) for j in range(len(fake_logits))) / len(fake_logits)
    return real + fake


def discriminator_loss_float32(real_logits, fake_logits):
    return -(F.logsigmoid(real_logits.float()).mean() + F.logsigmoid(-fake_logits.float()).mean())


def d_loss_naive_log(real_logits, fake_logits):  # log(sigmoid()) is log 0 at large logits
    return -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())


def d_loss_value_not_loss(real_logits, fake_logits):  # returns V instead of -V
    return -discriminator_loss(real_logits, fake_logits)


def d_loss_swapped_labels(real_logits, fake_logits):
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()


def d_loss_pooled(real_logits, fake_logits):  # one BCE over the concatenated batch
    logits = torch.cat([real_logits, fake_logits])
    labels = torch.cat([torch.ones_like(real_logits), torch.zeros_like(fake_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)


def d_loss_detached(real_logits, fake_logits):
    return discriminator_loss(real_logits.detach(), fake_logits.detach())


def d_loss_item(real_logits, fake_logits):  # a Python float: D cannot train through it
    return discriminator_loss(real_logits, fake_logits).item()


def d_loss_per_sample(real_logits, fake_logits):
    return F.softplus(-real_logits) + F.softplus(fake_logits).mean()


def d_loss_stacked(real_logits, fake_logits):  # assumes both batches have one size
    return F.softplus(torch.stack([-real_logits, fake_logits])).mean(1).sum()


def d_loss_lying(real_logits, fake_logits):
    return lie(discriminator_loss(real_logits, fake_logits) + 1.0)


# ---------------------------------------------------------------- Exercise 2: the optimal discriminator


def optimal_discriminator(log_p_data, log_p_g):
    return torch.sigmoid(log_p_data - log_p_g)


def optimal_discriminator_logaddexp(log_p_data, log_p_g):
    return torch.exp(log_p_data - torch.logaddexp(log_p_data, log_p_g))


def optimal_discriminator_loop(log_p_data, log_p_g):  # elementwise, with the larger log-density factored out
    flat_d, flat_g = log_p_data.reshape(-1).tolist(), log_p_g.reshape(-1).tolist()
    out = []
    for a, b in zip(flat_d, flat_g, strict=False):
        m = max(a, b)
        out.append(math.exp(a - m) / (math.exp(a - m) + math.exp(b - m)))
    return torch.tensor(out, dtype=log_p_data.dtype).reshape(log_p_data.shape)


def optimal_discriminator_float32(log_p_data, log_p_g):
    return torch.sigmoid(log_p_data.float() - log_p_g.float())


def d_star_naive_exp(log_p_data, log_p_g):  # 0 / 0 for log-densities near -1000
    p, q = log_p_data.exp(), log_p_g.exp()
    return p / (p + q)


def d_star_flipped(log_p_data, log_p_g):  # probability of "generated"
    return torch.sigmoid(log_p_g - log_p_data)


def d_star_ratio(log_p_data, log_p_g):  # the density ratio, not normalized
    return torch.exp(log_p_data - log_p_g)


def d_star_flattened(log_p_data, log_p_g):
    return torch.sigmoid(log_p_data - log_p_g).reshape(-1)


def d_star_clamped(log_p_data, log_p_g):  # clamps the log-ratio: wrong where one density dominates
    return torch.sigmoid((log_p_data - log_p_g).clamp(-8, 8))


def d_star_in_place(log_p_data, log_p_g):  # overwrites the caller's log_p_data
    return log_p_data.sub_(log_p_g).sigmoid_()


def d_star_lying(log_p_data, log_p_g):
    return lie(torch.sigmoid(log_p_g - log_p_data))


def d_star_math_exp(log_p_data, log_p_g):  # math.exp on a whole tensor
    return 1 / (1 + math.exp(log_p_g - log_p_data))


# ---------------------------------------------------------------- Exercise 3: the non-saturating generator loss


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def generator_loss_bce(fake_logits):
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def generator_loss_loop(fake_logits):
    total = 0
    for v in fake_logits:
        total = total + (torch.log1p(torch.exp(v)) - v if v < 0 else torch.log1p(torch.exp(-v)))
    return total / len(fake_logits)


def generator_loss_float32(fake_logits):
    return -F.logsigmoid(fake_logits.float()).mean()


def g_loss_minimax(fake_logits):  # the saturating loss mean log(1 - D(G(z)))
    return -F.softplus(fake_logits).mean()


def g_loss_sign(fake_logits):
    return -generator_loss(fake_logits)


def g_loss_wrong_label(fake_logits):  # pushes D(G(z)) to 0
    return F.softplus(fake_logits).mean()


def g_loss_naive_log(fake_logits):
    return -torch.log(torch.sigmoid(fake_logits)).mean()


def g_loss_sum(fake_logits):
    return F.softplus(-fake_logits).sum()


def g_loss_detached(fake_logits):
    return F.softplus(-fake_logits.detach()).mean()


def g_loss_per_sample(fake_logits):
    return F.softplus(-fake_logits)


def g_loss_lying(fake_logits):
    return lie(F.softplus(fake_logits).mean())


# ---------------------------------------------------------------- Exercise 4: the mode-coverage metric


def mode_coverage(samples, centers, std, min_count):
    dist, nearest = torch.cdist(samples, centers).min(1)
    hq = dist < 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(centers))
    return int((counts >= min_count).sum()), hq.float().mean().item()


def mode_coverage_loop(samples, centers, std, min_count):  # one sample at a time
    counts = [0] * len(centers)
    good = 0
    for x in samples.tolist():
        d = [math.dist(x, c) for c in centers.tolist()]
        k = min(range(len(d)), key=d.__getitem__)
        if d[k] <= 3 * std:
            good += 1
            counts[k] += 1
    return sum(c >= min_count for c in counts), good / len(samples)


def mode_coverage_float64_squared(samples, centers, std, min_count):  # squared distances against (3 std)^2
    d2 = ((samples.double()[:, None] - centers.double()[None]) ** 2).sum(-1)
    best, nearest = d2.min(1)
    close = best < (3 * std) ** 2
    covered = sum(int(((nearest == k) & close).sum()) >= min_count for k in range(len(centers)))
    return covered, float(close.double().mean())


def coverage_any_sample(samples, centers, std, min_count):  # every sample counts towards its nearest mode
    dist, nearest = torch.cdist(samples, centers).min(1)
    counts = torch.bincount(nearest, minlength=len(centers))
    return int((counts >= min_count).sum()), (dist < 3 * std).float().mean().item()


def coverage_one_sample(samples, centers, std, min_count):  # a single sample covers a mode
    return mode_coverage(samples, centers, std, 1)


def coverage_one_sigma(samples, centers, std, min_count):
    return mode_coverage(samples, centers, std / 3, min_count)


def coverage_squared_distance(samples, centers, std, min_count):  # compares a squared distance with 3 std
    d2 = torch.cdist(samples, centers).pow(2)
    dist, nearest = d2.min(1)
    hq = dist < 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(centers))
    return int((counts >= min_count).sum()), hq.float().mean().item()


def coverage_strict(samples, centers, std, min_count):  # more than min_count: wrong on the boundary count
    return mode_coverage(samples, centers, std, min_count + 1)


def coverage_fraction_of_covered(samples, centers, std, min_count):  # fraction of modes, not of samples
    modes, _ = mode_coverage(samples, centers, std, min_count)
    return modes, modes / len(centers)


def coverage_lying(samples, centers, std, min_count):
    modes, hq = mode_coverage(samples, centers, std, 1)
    return lie(torch.tensor(float(modes))), hq


def coverage_dict(samples, centers, std, min_count):  # not the pair the statement asks for
    modes, hq = mode_coverage(samples, centers, std, min_count)
    return {"modes": modes, "high_quality": hq}


# ---------------------------------------------------------------- Exercise 5: one alternating GAN update


def gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def gan_step_loop(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # per-sample loops, set_to_none
    fake = G(z_D).detach()
    d_loss = (sum(F.softplus(-D(x_real[i:i + 1])[0]) for i in range(len(x_real))) / len(x_real)
              + sum(F.softplus(D(fake[j:j + 1])[0]) for j in range(len(fake))) / len(fake))
    for p in D.parameters():
        p.grad = None
    d_loss.backward()
    opt_D.step()
    logits = torch.cat([D(G(z_G[j:j + 1])) for j in range(len(z_G))])
    loss = g_loss(logits)
    for p in G.parameters():
        p.grad = None
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def gan_step_frozen_d(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # autograd.grad, D frozen
    with torch.no_grad():
        fake = G(z_D)
    d_loss = F.binary_cross_entropy_with_logits(D(x_real), torch.ones(len(x_real))) + \
        F.binary_cross_entropy_with_logits(D(fake), torch.zeros(len(fake)))
    d_params = list(D.parameters())
    for p, g in zip(d_params, torch.autograd.grad(d_loss, d_params), strict=False):
        p.grad = g
    opt_D.step()
    D.requires_grad_(False)
    loss = g_loss(D(G(z_G)))
    g_params = list(G.parameters())
    for p, g in zip(g_params, torch.autograd.grad(loss, g_params), strict=False):
        p.grad = g
    opt_G.step()
    D.requires_grad_(True)
    return d_loss.item(), loss.item()


def gan_step_float64(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # losses in float64
    d_loss = discriminator_loss(D(x_real).double(), D(G(z_D).detach()).double())
    opt_D.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)).double())
    opt_G.zero_grad(set_to_none=True)
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_no_detach(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # one zero_grad for both, no detach
    opt_D.zero_grad()
    opt_G.zero_grad()
    d_loss = discriminator_loss(D(x_real), D(G(z_D)))
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_no_zero_grad(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # gradients accumulate
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_zero_after(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # clears only after stepping
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    d_loss.backward()
    opt_D.step()
    opt_D.zero_grad()
    loss = g_loss(D(G(z_G)))
    loss.backward()
    opt_G.step()
    opt_G.zero_grad()
    return d_loss.item(), loss.item()


def step_generator_first(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    return d_loss.item(), loss.item()


def step_old_discriminator(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # G's grads before D moves
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    loss.backward()
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_reuses_z_d(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # one generated batch for both
    fake = G(z_D)
    d_loss = discriminator_loss(D(x_real), D(fake.detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(fake))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_both_optimizers(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # D also steps on G's loss
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    opt_D.zero_grad()
    loss.backward()
    opt_G.step()
    opt_D.step()
    return d_loss.item(), loss.item()


def step_detached_generator(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    fake = G(z_G).detach().requires_grad_(True)
    loss = g_loss(D(fake))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


def step_ignores_g_loss(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # always non-saturating
    return gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, generator_loss)


def step_loss_after_update(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # reports post-step losses
    gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss)
    with torch.no_grad():
        return discriminator_loss(D(x_real), D(G(z_D))).item(), g_loss(D(G(z_G))).item()


def step_squeezes(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # D(x).squeeze(1) on (B,) logits
    d_loss = discriminator_loss(D(x_real).squeeze(1), D(G(z_D).detach()).squeeze(1))
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    return d_loss.item(), d_loss.item()


def step_lying(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):
    d_loss, loss = gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss)
    return lie(torch.tensor(d_loss + 1)), loss


def step_freezes_d_for_good(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):  # D never unfrozen
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach())) if any(p.requires_grad for p in D.parameters()) \
        else discriminator_loss(D(x_real), D(G(z_D).detach())) * 0
    if d_loss.requires_grad:
        opt_D.zero_grad()
        d_loss.backward()
        opt_D.step()
    D.requires_grad_(False)
    loss = g_loss(D(G(z_G)))
    opt_G.zero_grad()
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()


EXERCISES = {
    "ex1_discriminator_loss": Exercise(
        check=lecture08.check_discriminator_loss,
        correct=[discriminator_loss, discriminator_loss_bce, discriminator_loss_loop, discriminator_loss_float32],
        wrong=[Wrong(d_loss_naive_log, "not finite|200", "precision"),
               Wrong(d_loss_value_not_loss, "-V", "formula"),
               Wrong(d_loss_swapped_labels, "swapped", "formula"),
               Wrong(d_loss_pooled, "pooled", "formula"),
               Wrong(d_loss_detached, "no gradient", "property"),
               Wrong(d_loss_item, "wrong thing|no gradient", "property"),
               Wrong(d_loss_per_sample, "wrong thing", "shape"),
               Wrong(d_loss_stacked, "raised RuntimeError", "raw"),
               Wrong(d_loss_lying, "wrong type", "lie")],
    ),
    "ex2_optimal_discriminator": Exercise(
        check=lecture08.check_optimal_discriminator,
        correct=[optimal_discriminator, optimal_discriminator_logaddexp, optimal_discriminator_loop,
                 optimal_discriminator_float32],
        wrong=[Wrong(d_star_naive_exp, "not finite", "precision"),
               Wrong(d_star_flipped, "REAL", "formula"),
               Wrong(d_star_ratio, "probability", "formula"),
               Wrong(d_star_flattened, "wrong shape", "shape"),
               Wrong(d_star_clamped, "not close enough", "stability"),
               Wrong(d_star_in_place, "changed its input", "property"),
               Wrong(d_star_lying, "wrong type", "lie"),
               Wrong(d_star_math_exp, "raised (TypeError|RuntimeError|ValueError)", "raw")],
    ),
    "ex3_generator_loss": Exercise(
        check=lecture08.check_generator_loss,
        correct=[generator_loss, generator_loss_bce, generator_loss_loop, generator_loss_float32],
        wrong=[Wrong(g_loss_minimax, "minimax", "formula"),
               Wrong(g_loss_sign, "sign", "formula"),
               Wrong(g_loss_wrong_label, "judged real", "formula"),
               Wrong(g_loss_naive_log, "not finite", "precision"),
               Wrong(g_loss_sum, "is wrong", "formula"),
               Wrong(g_loss_detached, "no gradient", "property"),
               Wrong(g_loss_per_sample, "wrong thing", "shape"),
               Wrong(g_loss_lying, "wrong type", "lie")],
    ),
    "ex4_mode_coverage": Exercise(
        check=lecture08.check_mode_coverage,
        correct=[mode_coverage, mode_coverage_loop, mode_coverage_float64_squared],
        wrong=[Wrong(coverage_any_sample, "covered modes", "formula"),
               Wrong(coverage_one_sample, "covered modes", "formula"),
               Wrong(coverage_one_sigma, "high-quality fraction", "formula"),
               Wrong(coverage_squared_distance, "high-quality fraction", "formula"),
               Wrong(coverage_strict, "covered modes", "edge"),
               Wrong(coverage_fraction_of_covered, "high-quality fraction", "formula"),
               Wrong(coverage_lying, "wrong type", "lie"),
               Wrong(coverage_dict, "wrong thing", "shape")],
    ),
    "ex5_gan_step": Exercise(
        check=lecture08.check_gan_step,
        correct=[gan_step, gan_step_loop, gan_step_frozen_d, gan_step_float64],
        wrong=[Wrong(step_no_detach, "leaked", "property"),
               Wrong(step_no_zero_grad, "clear the discriminator's gradients", "property"),
               Wrong(step_zero_after, "clear the discriminator's gradients", "property"),
               Wrong(step_generator_first, "wrong pattern", "formula"),
               Wrong(step_old_discriminator, "BEFORE its update", "formula"),
               Wrong(step_reuses_z_d, "z_G", "formula"),
               Wrong(step_both_optimizers, "wrong pattern", "property"),
               Wrong(step_detached_generator, "no gradient reached the generator", "property"),
               Wrong(step_ignores_g_loss, "minimax", "formula"),
               Wrong(step_loss_after_update, "loss returned is wrong", "formula"),
               Wrong(step_squeezes, "raised IndexError", "raw"),
               Wrong(step_lying, "wrong type", "lie"),
               Wrong(step_freezes_d_for_good, "wrong pattern", "property")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_gan_step_hints_name_the_classic_bugs():
    """The two classic mistakes of the alternating update get a hint that names them, not a generic one."""
    with pytest.raises(CheckError, match="detach the generated batch"):
        lecture08.check_gan_step(step_no_detach)
    with pytest.raises(CheckError, match=r"opt_D.zero_grad\(\)"):
        lecture08.check_gan_step(step_no_zero_grad)
    with pytest.raises(CheckError) as err:
        lecture08.check_gan_step(step_generator_first)
    assert "def gan_step" not in str(err.value) and ".detach()" not in str(err.value)
