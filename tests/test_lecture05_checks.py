"""Lecture 05 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones, each for the reason its message gives (the registry of tests/exercise_cases.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Agreeable

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture05

# ---------------------------------------------------------------- Exercise 1: reparameterized sampling

def reparameterize(mu, logvar):
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def reparameterize_loop(mu, logvar):  # one row at a time
    rows = []
    for i in range(len(mu)):
        rows.append(mu[i] + torch.exp(logvar[i] / 2) * torch.randn(mu.shape[1]))
    return torch.stack(rows)


def reparameterize_float64(mu, logvar):  # noise and arithmetic in float64
    eps = torch.randn(mu.shape, dtype=torch.float64)
    return mu.double() + logvar.double().exp().sqrt() * eps


def reparameterize_rsample(mu, logvar):  # another route: torch.distributions
    return torch.distributions.Normal(mu, (0.5 * logvar).exp()).rsample()


def reparameterize_std_is_var(mu, logvar):  # exp(logvar) used as the standard deviation
    return mu + logvar.exp() * torch.randn_like(mu)


def reparameterize_logvar_is_log_std(mu, logvar):  # exp(logvar) as if logvar were log sigma, squared twice
    return mu + (2 * logvar).exp() * torch.randn_like(mu)


def reparameterize_detached(mu, logvar):  # sampling without a path to the parameters
    return torch.normal(mu.detach(), (0.5 * logvar).exp().detach())


def reparameterize_shared_noise(mu, logvar):  # one eps for the whole batch
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape[-1])


def reparameterize_mean(mu, logvar):  # no noise at all
    return mu + 0 * logvar


def reparameterize_detached_sigma(mu, logvar):  # gradient reaches mu but not logvar
    return mu + (0.5 * logvar).exp().detach() * torch.randn_like(mu)


def reparameterize_uniform(mu, logvar):  # mean 0 and variance 1, but uniform
    return mu + (0.5 * logvar).exp() * (torch.rand_like(mu) - 0.5) * math.sqrt(12)


def reparameterize_seeded(mu, logvar):  # reseeds the global generator: the same eps at every call
    torch.manual_seed(0)
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def reparameterize_half(mu, logvar):  # half precision
    return (mu.half() + (0.5 * logvar).exp().half() * torch.randn_like(mu).half())


def reparameterize_summed(mu, logvar):  # one number per row
    return reparameterize(mu, logvar).sum(-1)


def reparameterize_subclass(mu, logvar):
    return reparameterize(mu, logvar).as_subclass(Agreeable)


def reparameterize_raw_error(mu, logvar):  # noise of the wrong size
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape[0])


# ---------------------------------------------------------------- Exercise 2: the Gaussian KL

def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)


def gaussian_kl_loop(mu_q, logvar_q, mu_p, logvar_p):  # one dimension at a time
    total = torch.zeros(mu_q.shape[:-1], dtype=mu_q.dtype)
    for d in range(mu_q.shape[-1]):
        vq, vp = math.e ** logvar_q[..., d], math.e ** logvar_p[..., d]
        total = total + 0.5 * (torch.log(vp / vq) + (vq + (mu_q[..., d] - mu_p[..., d]) ** 2) / vp - 1)
    return total


def gaussian_kl_float32(mu_q, logvar_q, mu_p, logvar_p):
    return gaussian_kl(mu_q.float(), logvar_q.float(), mu_p.float(), logvar_p.float())


def gaussian_kl_torch(mu_q, logvar_q, mu_p, logvar_p):  # another route: torch.distributions
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


def gaussian_kl_dim1(mu_q, logvar_q, mu_p, logvar_p):  # sums over dim 1: right for (B, D) only
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(1)


def gaussian_kl_half(mu_q, logvar_q, mu_p, logvar_p):  # half precision
    return gaussian_kl(mu_q.half(), logvar_q.half(), mu_p.half(), logvar_p.half()).double()


def gaussian_kl_in_place(mu_q, logvar_q, mu_p, logvar_p):  # exponentiates logvar_q in place, then reuses it
    var_q = logvar_q.exp_()
    return 0.5 * (logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1).sum(-1)


def gaussian_kl_detached(mu_q, logvar_q, mu_p, logvar_p):  # right values, no gradient: the ladder VAE cannot train
    return gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).detach()


def gaussian_kl_numpy(mu_q, logvar_q, mu_p, logvar_p):  # through numpy: right values, no gradient
    return torch.from_numpy(gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).detach().numpy())


def gaussian_kl_subclass(mu_q, logvar_q, mu_p, logvar_p):
    return gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).as_subclass(Agreeable)


def gaussian_kl_raw_error(mu_q, logvar_q, mu_p, logvar_p):  # a matrix product where an elementwise one is meant
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) @ (mu_q - mu_p)) / logvar_p.exp() - 1).sum(-1)


# ---------------------------------------------------------------- Exercise 3: the ELBO

def kl_std(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)


def elbo(x, logits, mu, logvar):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1) - kl_std(mu, logvar)


def elbo_loop(x, logits, mu, logvar):  # one image at a time, the stable form x * l - softplus(l)
    out = []
    for i in range(len(x)):
        log_px_z = (x[i] * logits[i] - F.softplus(logits[i])).sum()
        kl = sum(0.5 * (m**2 + lv.exp() - 1 - lv) for m, lv in zip(mu[i], logvar[i], strict=True))
        out.append(log_px_z - kl)
    return torch.stack(out)


def elbo_float32(x, logits, mu, logvar):
    return elbo(x.float(), logits.float(), mu.float(), logvar.float())


def elbo_by_hand(x, logits, mu, logvar):  # another route: log sigmoid in its stable form, torch.distributions
    log_px_z = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
    return log_px_z - kl


def elbo_naive_log(x, logits, mu, logvar):  # log of probabilities: breaks for confident logits
    p = torch.sigmoid(logits)
    return (x * p.log() + (1 - x) * (1 - p).log()).sum(-1) - kl_std(mu, logvar)


def elbo_clamped_log(x, logits, mu, logvar):  # "fixes" log 0 with an epsilon: finite, and wrong for confident logits
    p = torch.sigmoid(logits)
    return (x * (p + 1e-7).log() + (1 - x) * (1 - p + 1e-7).log()).sum(-1) - kl_std(mu, logvar)


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


def elbo_half(x, logits, mu, logvar):  # half precision
    return elbo(x.half().float(), logits.half().float(), mu.half().float(), logvar.half().float()).half().double()


def elbo_item_list(x, logits, mu, logvar):  # right values, detached from the graph
    return torch.tensor(elbo(x, logits, mu, logvar).tolist(), dtype=x.dtype)


def elbo_subclass(x, logits, mu, logvar):
    return elbo(x, logits, mu, logvar).as_subclass(Agreeable)


def elbo_raw_error(x, logits, mu, logvar):  # the latent KL added to the pixel terms before summing
    return (-F.binary_cross_entropy_with_logits(logits, x, reduction="none") - kl_std(mu, logvar)).sum(-1)


# ---------------------------------------------------------------- Exercise 5: the IWAE bound

def iwae_bound(log_w):
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def iwae_bound_loop(log_w):  # a running log-sum-exp over the K samples
    acc = log_w[0]
    for k in range(1, log_w.shape[0]):
        acc = torch.logaddexp(acc, log_w[k])
    return acc - math.log(log_w.shape[0])


def iwae_bound_float32(log_w):
    return torch.logsumexp(log_w.float(), 0) - math.log(log_w.shape[0])


def iwae_bound_by_hand(log_w):  # another route: subtract the max explicitly
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


def iwae_bound_k_minus_1(log_w):  # divides by K - 1: infinite for K = 1
    return torch.logsumexp(log_w, 0) - math.log(max(log_w.shape[0] - 1, 1e-300))


def iwae_bound_clamped(log_w):  # clamps the log weights to avoid underflow: finite, and wrong
    return log_w.clamp(min=-100).exp().mean(0).log()


def iwae_bound_in_place(log_w):  # shifts the caller's tensor
    m = log_w.max(0).values
    log_w -= m
    return m + log_w.exp().mean(0).log()


def iwae_bound_detached(log_w):  # right values, no gradient: the IWAE cannot train
    return iwae_bound(log_w).detach()


def iwae_bound_max_detached_wrongly(log_w):  # the weights detached: value right, gradient zero
    m = log_w.max(0).values
    return m + (log_w - m).exp().mean(0).log().detach()


def iwae_bound_subclass(log_w):
    return iwae_bound(log_w).as_subclass(Agreeable)


def iwae_bound_raw_error(log_w):  # logsumexp needs a dim
    return torch.logsumexp(log_w) - math.log(log_w.shape[0])


# ---------------------------------------------------------------- Exercise 4: the VAE's negative ELBO

def negative_elbo(x, encoder, decoder, beta=1.0):
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def negative_elbo_loop(x, encoder, decoder, beta=1.0):  # one image at a time
    total = 0.0
    for i in range(len(x)):
        mu, logvar = encoder(x[i : i + 1])
        z = mu + torch.exp(logvar / 2) * torch.randn(mu.shape)
        logits = decoder(z)[0]
        log_px_z = (x[i] * logits - F.softplus(logits)).sum()
        total = total - (log_px_z - beta * kl_std(mu, logvar)[0])
    return total / len(x)


def negative_elbo_float64(x, encoder, decoder, beta=1.0):  # the sums and the KL in float64
    mu, logvar = (t.double() for t in encoder(x))
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    logits = decoder(z.float()).double()
    log_px_z = (x.double() * logits - F.softplus(logits)).sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def negative_elbo_distributions(x, encoder, decoder, beta=1.0):  # another route: torch.distributions
    mu, logvar = encoder(x)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    z = q.rsample()
    log_px_z = torch.distributions.Bernoulli(logits=decoder(z)).log_prob(x).sum(-1)
    kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(torch.zeros_like(mu), 1.0)).sum(-1)
    return (beta * kl - log_px_z).mean()


def ne_kl_added(x, encoder, decoder, beta=1.0):
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z + beta * kl_std(mu, logvar)).mean()


def ne_no_kl(x, encoder, decoder, beta=1.0):
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    return F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1).mean()


def ne_mean_pixels(x, encoder, decoder, beta=1.0):  # the default reduction of BCE: a mean over pixels
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    return F.binary_cross_entropy_with_logits(decoder(z), x) + beta * kl_std(mu, logvar).mean()


def ne_sum_batch(x, encoder, decoder, beta=1.0):  # sums over the batch instead of averaging
    return negative_elbo(x, encoder, decoder, beta) * len(x)


def ne_beta_on_everything(x, encoder, decoder, beta=1.0):
    return beta * negative_elbo(x, encoder, decoder, 1.0)


def ne_std_is_logvar(x, encoder, decoder, beta=1.0):  # exp(logvar) used as the standard deviation
    mu, logvar = encoder(x)
    z = mu + logvar.exp() * torch.randn_like(mu)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_decode_mean(x, encoder, decoder, beta=1.0):  # no sample: decodes mu itself
    mu, logvar = encoder(x)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(mu), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_detached_z(x, encoder, decoder, beta=1.0):  # no path from z back to the encoder
    mu, logvar = encoder(x)
    z = torch.normal(mu, (0.5 * logvar).exp()).detach()
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_detached_sigma(x, encoder, decoder, beta=1.0):  # sigma without gradient
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp().detach() * torch.randn_like(mu)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_item(x, encoder, decoder, beta=1.0):  # a Python float: nothing to train
    return negative_elbo(x, encoder, decoder, beta).item()


def ne_no_grad(x, encoder, decoder, beta=1.0):  # computed without autograd
    with torch.no_grad():
        return negative_elbo(x, encoder, decoder, beta)


def ne_shared_eps(x, encoder, decoder, beta=1.0):  # one eps for the whole batch
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape[-1])
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_seeded(x, encoder, decoder, beta=1.0):  # reseeds the global generator: the same z at every call
    torch.manual_seed(0)
    return negative_elbo(x, encoder, decoder, beta)


def ne_naive_log(x, encoder, decoder, beta=1.0):  # log(sigmoid): log 0 for confident logits
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    p = torch.sigmoid(decoder(z))
    log_px_z = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar)).mean()


def ne_per_image(x, encoder, decoder, beta=1.0):  # one value per image, not the batch mean
    mu, logvar = encoder(x)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    log_px_z = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    return -(log_px_z - beta * kl_std(mu, logvar))


def ne_subclass(x, encoder, decoder, beta=1.0):
    return negative_elbo(x, encoder, decoder, beta).as_subclass(Agreeable)


def ne_raw_error(x, encoder, decoder, beta=1.0):  # the encoder's output used as one tensor
    h = encoder(x)
    mu, logvar = h[:, 0], h[:, 1]
    return negative_elbo(x, lambda _: (mu, logvar), decoder, beta)


EXERCISES = {
    "ex1_reparameterize": Exercise(
        check=lecture05.check_reparameterize,
        correct=[reparameterize, reparameterize_loop, reparameterize_float64, reparameterize_rsample],
        wrong=[Wrong(reparameterize_std_is_var, "not standard normal", "formula"),
               Wrong(reparameterize_logvar_is_log_std, "not standard normal", "formula"),
               Wrong(reparameterize_detached, "no gradient flows", "property"),
               Wrong(reparameterize_shared_noise, "not standard normal", "property"),
               Wrong(reparameterize_mean, "z is not random", "property"),
               Wrong(reparameterize_detached_sigma, "does not depend on logvar", "property"),
               Wrong(reparameterize_uniform, "not normally distributed", "property"),
               Wrong(reparameterize_seeded, "two calls give the same z", "randomness"),
               Wrong(reparameterize_half, "not standard normal|not normally|dz/d|wrong dtype", "precision"),
               Wrong(reparameterize_summed, "wrong shape", "shape"),
               Wrong(reparameterize_subclass, "wrong type", "lie"),
               Wrong(reparameterize_raw_error, "raised RuntimeError", "raw")],
    ),
    "ex2_gaussian_kl": Exercise(
        check=lecture05.check_gaussian_kl,
        correct=[gaussian_kl, gaussian_kl_loop, gaussian_kl_float32, gaussian_kl_torch],
        wrong=[Wrong(gaussian_kl_reversed, "wrong way", "formula"),
               Wrong(gaussian_kl_no_half, r"KL\(q \|\| N\(0, I\)\) is not close", "formula"),
               Wrong(gaussian_kl_mean_over_dims, r"KL\(q \|\| N\(0, I\)\) is not close", "formula"),
               Wrong(gaussian_kl_standard_only, r"KL\(q \|\| q\)", "formula"),
               Wrong(gaussian_kl_log_sign, r"KL\(q \|\| N\(0, I\)\) is not close", "formula"),
               Wrong(gaussian_kl_dim1, r"\(4, B/4, D\) inputs has the wrong shape", "shape"),
               Wrong(gaussian_kl_half, "not close", "precision"),
               Wrong(gaussian_kl_in_place, "not close", "property"),
               Wrong(gaussian_kl_detached, "carries no gradient", "property"),
               Wrong(gaussian_kl_numpy, "carries no gradient", "property"),
               Wrong(gaussian_kl_subclass, "wrong type", "lie"),
               Wrong(gaussian_kl_raw_error, "raised RuntimeError", "raw")],
    ),
    "ex3_elbo": Exercise(
        check=lecture05.check_elbo,
        correct=[elbo, elbo_loop, elbo_float32, elbo_by_hand],
        wrong=[Wrong(elbo_naive_log, "confident logits", "precision"),
               Wrong(elbo_clamped_log, "confident logits is not close", "stability"),
               Wrong(elbo_plus_kl, "wrong sign", "formula"),
               Wrong(elbo_no_kl, "KL term is missing", "formula"),
               Wrong(elbo_bce_sign, "ELBO has the wrong sign", "formula"),
               Wrong(elbo_mean_pixels, "not close enough", "formula"),
               Wrong(elbo_batch_mean, "wrong shape", "shape"),
               Wrong(elbo_half, "not close", "precision"),
               Wrong(elbo_item_list, "carries no gradient", "property"),
               Wrong(elbo_subclass, "wrong type", "lie"),
               Wrong(elbo_raw_error, "raised RuntimeError", "raw")],
    ),
    "ex5_iwae_bound": Exercise(
        check=lecture05.check_iwae_bound,
        correct=[iwae_bound, iwae_bound_loop, iwae_bound_float32, iwae_bound_by_hand],
        wrong=[Wrong(iwae_bound_naive, "not finite", "precision"),
               Wrong(iwae_bound_sum, "off by log K", "formula"),
               Wrong(iwae_bound_elbo, "is the ELBO", "formula"),
               Wrong(iwae_bound_wrong_axis, "wrong shape", "shape"),
               Wrong(iwae_bound_k_minus_1, "not close|not finite", "edge"),
               Wrong(iwae_bound_clamped, "near -790 is not close", "stability"),
               Wrong(iwae_bound_in_place, "changed its argument log_w in place", "property"),
               Wrong(iwae_bound_detached, "carries no gradient", "property"),
               Wrong(iwae_bound_max_detached_wrongly, "gradient of iwae_bound with respect to log_w is wrong", "property"),
               Wrong(iwae_bound_subclass, "wrong type", "lie"),
               Wrong(iwae_bound_raw_error, "raised TypeError", "raw")],
    ),
    "ex4_negative_elbo": Exercise(
        check=lecture05.check_negative_elbo,
        correct=[negative_elbo, negative_elbo_loop, negative_elbo_float64, negative_elbo_distributions],
        wrong=[Wrong(ne_kl_added, "above the exact log-likelihood|not the negative ELBO", "formula"),
               Wrong(ne_no_kl, "not the negative ELBO", "formula"),
               Wrong(ne_mean_pixels, "must equal -log p", "formula"),
               Wrong(ne_sum_batch, "must equal -log p", "formula"),
               Wrong(ne_beta_on_everything, "beta = 0.25 is wrong", "formula"),
               Wrong(ne_std_is_logvar, "not the negative ELBO|gradient", "formula"),
               Wrong(ne_decode_mean, "two calls on the same batch", "formula"),
               Wrong(ne_detached_z, "gradient of the loss with respect to the encoder's mu", "property"),
               Wrong(ne_detached_sigma, "encoder's logvar", "property"),
               Wrong(ne_item, "carries no gradient", "property"),
               Wrong(ne_no_grad, "carries no gradient", "property"),
               Wrong(ne_shared_eps, "not the negative ELBO|beta", "randomness"),
               Wrong(ne_seeded, "two calls on the same batch", "randomness"),
               Wrong(ne_naive_log, "logits of \\+-40", "precision"),
               Wrong(ne_per_image, "returns the wrong thing", "shape"),
               Wrong(ne_subclass, "wrong type", "lie"),
               Wrong(ne_raw_error, "raised", "raw")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_negative_elbo_reference_training_lowers_the_loss():
    before, after = lecture05._reference_training()
    assert after < before - 1.0


def test_negative_elbo_hint_names_the_mistake():
    """Beyond the registry: a KL added instead of subtracted is named as such (the bound exceeds log p(x), or the
    value is that of the wrong sign)."""
    with pytest.raises(CheckError, match="subtract the KL|the KL is added"):
        lecture05.check_negative_elbo(ne_kl_added)
    with pytest.raises(CheckError, match="if the KL term is missing"):
        lecture05.check_negative_elbo(ne_no_kl)
