"""Lecture 08 checks: each accepts a correct implementation and rejects the common wrong ones."""

import time

import pytest
import torch
import torch.nn.functional as F

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture08

# ---------------------------------------------------------------- Exercise 1: the discriminator loss


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def discriminator_loss_bce(real_logits, fake_logits):  # another correct route: BCE with logits, per batch
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def discriminator_loss_logsigmoid(real_logits, fake_logits):
    return -(F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean())


def d_loss_naive_log(real_logits, fake_logits):  # log(sigmoid()) overflows to -inf at large logits
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


def d_loss_per_sample(real_logits, fake_logits):
    return F.softplus(-real_logits) + F.softplus(fake_logits).mean()


def test_discriminator_loss_accepts_correct():
    lecture08.check_discriminator_loss(discriminator_loss)
    lecture08.check_discriminator_loss(discriminator_loss_bce)
    lecture08.check_discriminator_loss(discriminator_loss_logsigmoid)


@pytest.mark.parametrize("wrong, message", [
    (d_loss_naive_log, "not finite|200"),
    (d_loss_value_not_loss, "is wrong"),
    (d_loss_swapped_labels, "is wrong"),
    (d_loss_pooled, "is wrong"),
    (d_loss_detached, "no gradient"),
    (d_loss_per_sample, "wrong thing"),
])
def test_discriminator_loss_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture08.check_discriminator_loss(wrong)


def test_discriminator_loss_hints():
    with pytest.raises(CheckError, match="-V"):
        lecture08.check_discriminator_loss(d_loss_value_not_loss)
    with pytest.raises(CheckError, match="swapped"):
        lecture08.check_discriminator_loss(d_loss_swapped_labels)
    with pytest.raises(CheckError, match="pooled"):
        lecture08.check_discriminator_loss(d_loss_pooled)


# ---------------------------------------------------------------- Exercise 2: the optimal discriminator


def optimal_discriminator(log_p_data, log_p_g):
    return torch.sigmoid(log_p_data - log_p_g)


def optimal_discriminator_logsumexp(log_p_data, log_p_g):  # another correct route
    return torch.exp(log_p_data - torch.logaddexp(log_p_data, log_p_g))


def d_star_naive_exp(log_p_data, log_p_g):  # 0 / 0 for log-densities near -1000
    p, q = log_p_data.exp(), log_p_g.exp()
    return p / (p + q)


def d_star_flipped(log_p_data, log_p_g):  # probability of "generated"
    return torch.sigmoid(log_p_g - log_p_data)


def d_star_ratio(log_p_data, log_p_g):  # the density ratio, not normalized
    return torch.exp(log_p_data - log_p_g)


def d_star_flattened(log_p_data, log_p_g):
    return torch.sigmoid(log_p_data - log_p_g).reshape(-1)


def test_optimal_discriminator_accepts_correct():
    lecture08.check_optimal_discriminator(optimal_discriminator)
    lecture08.check_optimal_discriminator(optimal_discriminator_logsumexp)


@pytest.mark.parametrize("wrong, message", [
    (d_star_naive_exp, "not finite"),
    (d_star_flipped, "REAL"),
    (d_star_ratio, "probability"),
    (d_star_flattened, "wrong shape"),
])
def test_optimal_discriminator_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture08.check_optimal_discriminator(wrong)


# ---------------------------------------------------------------- Exercise 3: the non-saturating generator loss


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def generator_loss_bce(fake_logits):  # another correct route: BCE against the label "real"
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


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


def test_generator_loss_accepts_correct():
    lecture08.check_generator_loss(generator_loss)
    lecture08.check_generator_loss(generator_loss_bce)


@pytest.mark.parametrize("wrong, message", [
    (g_loss_minimax, "minimax"),
    (g_loss_sign, "sign"),
    (g_loss_wrong_label, "judged real"),
    (g_loss_naive_log, "not finite"),
    (g_loss_sum, "is wrong"),
    (g_loss_detached, "no gradient"),
])
def test_generator_loss_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture08.check_generator_loss(wrong)


# ---------------------------------------------------------------- Exercise 4: the mode-coverage metric


def mode_coverage(samples, centers, std, min_count):
    dist, nearest = torch.cdist(samples, centers).min(1)
    hq = dist < 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(centers))
    return int((counts >= min_count).sum()), hq.float().mean().item()


def mode_coverage_loop(samples, centers, std, min_count):  # another correct route: one mode at a time
    d = ((samples[:, None, :] - centers[None]) ** 2).sum(-1).sqrt()
    nearest = d.argmin(1)
    close = d.min(1).values <= 3 * std
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


def coverage_strict(samples, centers, std, min_count):  # more than min_count
    return mode_coverage(samples, centers, std, min_count + 1)


def coverage_fraction_of_covered(samples, centers, std, min_count):  # fraction of modes, not of samples
    modes, _ = mode_coverage(samples, centers, std, min_count)
    return modes, modes / len(centers)


def test_mode_coverage_accepts_correct():
    lecture08.check_mode_coverage(mode_coverage)
    lecture08.check_mode_coverage(mode_coverage_loop)


@pytest.mark.parametrize("wrong, message", [
    (coverage_any_sample, "covered modes"),
    (coverage_one_sample, "covered modes"),
    (coverage_one_sigma, "high-quality fraction"),
    (coverage_squared_distance, "high-quality fraction"),
    (coverage_strict, "covered modes"),
    (coverage_fraction_of_covered, "high-quality fraction"),
])
def test_mode_coverage_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture08.check_mode_coverage(wrong)


def test_stubs_raise_not_implemented():
    def stub(*args):
        raise NotImplementedError("stub")
    for check in (lecture08.check_discriminator_loss, lecture08.check_optimal_discriminator,
                  lecture08.check_generator_loss, lecture08.check_mode_coverage):
        with pytest.raises(NotImplementedError):
            check(stub)


def test_checks_are_fast():
    start = time.perf_counter()
    lecture08.check_discriminator_loss(discriminator_loss)
    lecture08.check_optimal_discriminator(optimal_discriminator)
    lecture08.check_generator_loss(generator_loss)
    lecture08.check_mode_coverage(mode_coverage)
    assert time.perf_counter() - start < 8
