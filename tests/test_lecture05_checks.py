"""Lecture 05 checks: each accepts correct implementations and rejects the common wrong ones."""

import math

import pytest
import torch
import torch.nn.functional as F

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture05

# ---------------------------------------------------------------- Exercise 1: reparameterized sampling


def reparameterize(mu, logvar):
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def reparameterize_via_std(mu, logvar):  # another correct route: sqrt of the variance, noise from torch.randn
    return mu + logvar.exp().sqrt() * torch.randn(mu.shape, dtype=mu.dtype)


def reparameterize_std_is_var(mu, logvar):  # exp(logvar) used as the standard deviation
    return mu + logvar.exp() * torch.randn_like(mu)


def reparameterize_no_half(mu, logvar):  # the same mistake written differently
    return mu + torch.exp(logvar) * torch.randn_like(mu)


def reparameterize_detached(mu, logvar):  # sampling without a path to the parameters
    return torch.normal(mu.detach(), (0.5 * logvar).exp().detach())


def reparameterize_shared_noise(mu, logvar):  # one eps for the whole batch
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape[-1])


def reparameterize_mean(mu, logvar):  # no noise at all
    return mu + 0 * logvar


def reparameterize_detached_sigma(mu, logvar):  # gradient reaches mu but not logvar
    return mu + (0.5 * logvar).exp().detach() * torch.randn_like(mu)


def test_reparameterize_accepts_correct():
    lecture05.check_reparameterize(reparameterize)
    lecture05.check_reparameterize(reparameterize_via_std)


def test_reparameterize_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lecture05.check_reparameterize(reparameterize)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("wrong, message", [
    (reparameterize_std_is_var, "not standard normal"),
    (reparameterize_no_half, "not standard normal"),
    (reparameterize_detached, "no gradient flows"),
    (reparameterize_shared_noise, "not standard normal"),
    (reparameterize_mean, "z is not random"),
    (reparameterize_detached_sigma, "does not depend on logvar"),
])
def test_reparameterize_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture05.check_reparameterize(wrong)


# ---------------------------------------------------------------- Exercise 2: the Gaussian KL


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)


def gaussian_kl_torch(mu_q, logvar_q, mu_p, logvar_p):  # another correct route: torch.distributions
    q = torch.distributions.Normal(mu_q, (0.5 * logvar_q).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * logvar_p).exp())
    return torch.distributions.kl_divergence(q, p).sum(-1)


def gaussian_kl_reversed(mu_q, logvar_q, mu_p, logvar_p):  # KL(p || q)
    return gaussian_kl(mu_p, logvar_p, mu_q, logvar_q)


def gaussian_kl_no_half(mu_q, logvar_q, mu_p, logvar_p):
    return 2 * gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)


def gaussian_kl_mean_over_dims(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).mean(-1)


def gaussian_kl_standard_only(mu_q, logvar_q, mu_p, logvar_p):  # ignores p: right for N(0, I) only
    return -0.5 * (1 + logvar_q - mu_q**2 - logvar_q.exp()).sum(-1)


def gaussian_kl_log_sign(mu_q, logvar_q, mu_p, logvar_p):  # log ratio upside down
    return 0.5 * (logvar_q - logvar_p + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)


def test_gaussian_kl_accepts_correct():
    lecture05.check_gaussian_kl(gaussian_kl)
    lecture05.check_gaussian_kl(gaussian_kl_torch)


@pytest.mark.parametrize("wrong, message", [
    (gaussian_kl_reversed, "wrong way"),
    (gaussian_kl_no_half, r"KL\(q \|\| N\(0, I\)\) is not close"),
    (gaussian_kl_mean_over_dims, r"KL\(q \|\| N\(0, I\)\) is not close"),
    (gaussian_kl_standard_only, r"KL\(q \|\| q\)"),
    (gaussian_kl_log_sign, r"KL\(q \|\| N\(0, I\)\) is not close"),
])
def test_gaussian_kl_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture05.check_gaussian_kl(wrong)


# ---------------------------------------------------------------- Exercise 3: the ELBO


def kl_std(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)


def elbo(x, logits, mu, logvar):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) - kl_std(mu, logvar)


def elbo_by_hand(x, logits, mu, logvar):  # another correct route: log sigmoid in its stable form
    log_px_z = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)
    return log_px_z - kl_std(mu, logvar)


def elbo_naive_log(x, logits, mu, logvar):  # log of probabilities: breaks for confident logits
    p = torch.sigmoid(logits)
    return (x * p.log() + (1 - x) * (1 - p).log()).sum(-1) - kl_std(mu, logvar)


def elbo_plus_kl(x, logits, mu, logvar):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) + kl_std(mu, logvar)


def elbo_no_kl(x, logits, mu, logvar):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def elbo_bce_sign(x, logits, mu, logvar):  # the loss, not the bound
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) + kl_std(mu, logvar)


def elbo_mean_pixels(x, logits, mu, logvar):  # BCE averaged over pixels, as the default reduction does
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(-1) - kl_std(mu, logvar)


def elbo_batch_mean(x, logits, mu, logvar):  # returns a scalar instead of one value per image
    return elbo(x, logits, mu, logvar).mean()


def test_elbo_accepts_correct():
    lecture05.check_elbo(elbo)
    lecture05.check_elbo(elbo_by_hand)


@pytest.mark.parametrize("wrong, message", [
    (elbo_naive_log, "confident logits"),
    (elbo_plus_kl, "wrong sign"),
    (elbo_no_kl, "KL term is missing"),
    (elbo_bce_sign, "ELBO has the wrong sign"),
    (elbo_mean_pixels, "not close enough"),
    (elbo_batch_mean, "wrong shape"),
])
def test_elbo_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture05.check_elbo(wrong)


# ---------------------------------------------------------------- Exercise 4: the IWAE bound


def iwae_bound(log_w):
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def iwae_bound_by_hand(log_w):  # another correct route: subtract the max explicitly
    m = log_w.max(0).values
    return m + (log_w - m).exp().mean(0).log()


def iwae_bound_naive(log_w):  # exp then log: underflows
    return log_w.exp().mean(0).log()


def iwae_bound_sum(log_w):  # forgets the 1/K
    return torch.logsumexp(log_w, 0)


def iwae_bound_elbo(log_w):  # the mean of the logs
    return log_w.mean(0)


def iwae_bound_wrong_axis(log_w):
    return torch.logsumexp(log_w, -1) - math.log(log_w.shape[-1])


def test_iwae_bound_accepts_correct():
    lecture05.check_iwae_bound(iwae_bound)
    lecture05.check_iwae_bound(iwae_bound_by_hand)


@pytest.mark.parametrize("wrong, message", [
    (iwae_bound_naive, "not finite"),
    (iwae_bound_sum, "off by log K"),
    (iwae_bound_elbo, "is the ELBO"),
    (iwae_bound_wrong_axis, "wrong shape"),
])
def test_iwae_bound_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture05.check_iwae_bound(wrong)


# ---------------------------------------------------------------- the stubs of the student notebook


@pytest.mark.parametrize("check", [lecture05.check_reparameterize, lecture05.check_gaussian_kl,
                                   lecture05.check_elbo, lecture05.check_iwae_bound])
def test_stub_raises_not_implemented(check):
    def stub(*args):
        raise NotImplementedError("exN: replace this line with your solution")

    with pytest.raises(NotImplementedError):
        check(stub)
