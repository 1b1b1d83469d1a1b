"""Lecture 02 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch
import torch.nn.functional as F

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture02

# ---------------------------------------------------------------- Exercise 1: the FVSBN mask


def fvsbn_mask(D):
    return torch.tril(torch.ones(D, D), diagonal=-1)


def fvsbn_mask_by_comparison(D):  # another correct route: M[i, j] = [j < i]
    i = torch.arange(D)
    return (i[None, :] < i[:, None]).float()


def fvsbn_mask_with_diagonal(D):  # x_i sees itself: the classic off-by-one
    return torch.tril(torch.ones(D, D))


def fvsbn_mask_shifted(D):  # one step too far: x_i misses x_{i-1}
    return torch.tril(torch.ones(D, D), diagonal=-2)


def fvsbn_mask_transposed(D):  # upper triangular: x_i sees the future
    return torch.triu(torch.ones(D, D), diagonal=1)


def test_fvsbn_mask_accepts_correct():
    lecture02.check_fvsbn_mask(fvsbn_mask)
    lecture02.check_fvsbn_mask(fvsbn_mask_by_comparison)


@pytest.mark.parametrize("wrong, message", [
    (fvsbn_mask_with_diagonal, "not autoregressive"),
    (fvsbn_mask_shifted, "drops connections"),
    (fvsbn_mask_transposed, "not autoregressive"),
    (lambda D: torch.ones(D, D - 1), "wrong shape"),
    (lambda D: 0.5 * fvsbn_mask(D), "not a 0/1 mask"),
])
def test_fvsbn_mask_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture02.check_fvsbn_mask(wrong)


# ---------------------------------------------------------------- Exercise 2: the sampling loop


def sample_autoregressive(logits_fn, x, start=0, temperature=1.0, generator=None):
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] / temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_by_uniforms(logits_fn, x, start=0, temperature=1.0, generator=None):  # correct: u < p
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] / temperature)
        u = torch.rand(p.shape, generator=generator)
        x[:, i] = (u < p).to(x.dtype)
    return x


def sample_one_shot(logits_fn, x, start=0, temperature=1.0, generator=None):  # all pixels from one pass
    x = x.clone()
    p = torch.sigmoid(logits_fn(x) / temperature)
    x[:, start:] = torch.bernoulli(p, generator=generator)[:, start:]
    return x


def sample_off_by_one(logits_fn, x, start=0, temperature=1.0, generator=None):  # reads the next pixel's logit
    x = x.clone()
    D = x.shape[1]
    for i in range(start, D):
        p = torch.sigmoid(logits_fn(x)[:, min(i + 1, D - 1)] / temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_times_temperature(logits_fn, x, start=0, temperature=1.0, generator=None):
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] * temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_ignores_start(logits_fn, x, start=0, temperature=1.0, generator=None):
    return sample_autoregressive(logits_fn, x, 0, temperature, generator)


def sample_probabilities(logits_fn, x, start=0, temperature=1.0, generator=None):  # returns p, not a draw
    x = x.clone()
    for i in range(start, x.shape[1]):
        x[:, i] = torch.sigmoid(logits_fn(x)[:, i] / temperature)
    return x


def test_sampler_accepts_correct():
    lecture02.check_sampler(sample_autoregressive)
    lecture02.check_sampler(sample_by_uniforms)


@pytest.mark.parametrize("wrong, message", [
    (sample_one_shot, "target distribution|too few times"),
    (sample_off_by_one, "target distribution"),
    (sample_times_temperature, "temperature 0.5"),
    (sample_ignores_start, "changed the given pixels"),
    (sample_probabilities, "not binary"),
])
def test_sampler_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture02.check_sampler(wrong)


# ---------------------------------------------------------------- Exercise 3: NADE's running sum


def nade_logits(x, W, c, V, b, g=torch.sigmoid):
    a = c.expand(x.shape[0], -1)
    logits = []
    for i in range(x.shape[1]):
        logits.append(b[i] + g(a) @ V[i])
        a = a + x[:, i:i + 1] * W[:, i]
    return torch.stack(logits, 1)


def nade_logits_cumsum(x, W, c, V, b, g=torch.sigmoid):  # correct: exclusive cumulative sum of the contributions
    contrib = x[:, :, None] * W.T                      # (B, D, H)
    a = c + contrib.cumsum(1) - contrib
    return (g(a) * V).sum(-1) + b


def nade_logits_inclusive(x, W, c, V, b, g=torch.sigmoid):  # x_i in its own hidden vector
    contrib = x[:, :, None] * W.T
    a = c + contrib.cumsum(1)
    return (g(a) * V).sum(-1) + b


def nade_logits_update_first(x, W, c, V, b, g=torch.sigmoid):  # updates the running sum before using it
    a = c.expand(x.shape[0], -1)
    logits = []
    for i in range(x.shape[1]):
        a = a + x[:, i:i + 1] * W[:, i]
        logits.append(b[i] + g(a) @ V[i])
    return torch.stack(logits, 1)


def nade_logits_no_c(x, W, c, V, b, g=torch.sigmoid):
    return nade_logits(x, W, torch.zeros_like(c), V, b, g)


def nade_logits_shifted(x, W, c, V, b, g=torch.sigmoid):  # the running sum one step late: x_i misses x_{i-1}
    contrib = x[:, :, None] * W.T
    a = contrib.cumsum(1) - contrib                                       # (B, D, H), sum over j < i
    a = c + torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], 1)         # sum over j < i - 1
    return (g(a) * V).sum(-1) + b


def test_nade_accepts_correct():
    lecture02.check_nade_logits(nade_logits)
    lecture02.check_nade_logits(nade_logits_cumsum)
    lecture02.check_nade_logits(lecture02.nade_logits_naive)


def nade_logits_always_sigmoid(x, W, c, V, b, g=torch.sigmoid):  # ignores the nonlinearity passed
    return nade_logits(x, W, c, V, b)


@pytest.mark.parametrize("wrong", [nade_logits_inclusive, nade_logits_update_first, nade_logits_no_c,
                                   nade_logits_shifted, nade_logits_always_sigmoid])
def test_nade_rejects_wrong(wrong):
    with pytest.raises(CheckError):
        lecture02.check_nade_logits(wrong)


# ---------------------------------------------------------------- Exercise 4: MADE masks


def made_masks(m):
    hidden = [(m_l[:, None] >= m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]


def made_masks_loop(m):  # correct, written with explicit loops
    masks = []
    for layer in range(1, len(m)):
        M = torch.zeros(len(m[layer]), len(m[layer - 1]))
        for k in range(len(m[layer])):
            for j in range(len(m[layer - 1])):
                M[k, j] = float(m[layer][k] >= m[layer - 1][j])
        masks.append(M)
    out = torch.zeros(len(m[0]), len(m[-1]))
    for d in range(len(m[0])):
        for k in range(len(m[-1])):
            out[d, k] = float(m[0][d] > m[-1][k])
    return masks + [out]


def made_masks_geq_output(m):  # output d sees hidden units with m = m^0(d): d depends on itself
    masks = made_masks(m)
    masks[-1] = (m[0][:, None] >= m[-1][None, :]).float()
    return masks


def made_masks_strict_hidden(m):  # strict inequality in the hidden layers: connections lost
    hidden = [(m_l[:, None] > m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]


def made_masks_transposed(m):
    return [M.T for M in made_masks(m)]


def made_masks_natural_order(m):  # ignores the ordering m^0 and assumes 1..D
    m = [torch.arange(1, len(m[0]) + 1)] + list(m[1:])
    return made_masks(m)


def test_made_masks_accept_correct():
    lecture02.check_made_masks(made_masks)
    lecture02.check_made_masks(made_masks_loop)


@pytest.mark.parametrize("wrong, message", [
    (made_masks_geq_output, "not autoregressive"),
    (made_masks_strict_hidden, "drops connections"),
    (made_masks_transposed, "wrong shape"),
    (made_masks_natural_order, "not autoregressive"),
    (lambda m: made_masks(m)[:-1], "wrong number of masks"),
])
def test_made_masks_reject_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture02.check_made_masks(wrong)


# ---------------------------------------------------------------- Exercise 5: the ensemble log-likelihood


def ensemble_log_prob(log_p):
    return torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])


def test_ensemble_accepts_correct():
    lecture02.check_ensemble_log_prob(ensemble_log_prob)
    lecture02.check_ensemble_log_prob(  # by hand, with the maximum subtracted
        lambda lp: lp.max(0).values + (lp - lp.max(0).values).exp().mean(0).log())


@pytest.mark.parametrize("wrong, message", [
    (lambda lp: lp.mean(0), "not close enough"),                                      # averages log p
    (lambda lp: torch.logsumexp(lp, 0), "not close enough"),                          # forgets 1/K
    (lambda lp: lp.exp().mean(0).log(), "not finite|not close enough"),               # underflows
    (lambda lp: torch.logsumexp(lp, 1) - math.log(lp.shape[1]), "wrong shape"),       # wrong axis
])
def test_ensemble_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture02.check_ensemble_log_prob(wrong)


def test_stubs_raise_not_implemented():
    def stub(*args, **kwargs):
        raise NotImplementedError("exN")

    for check in (lecture02.check_fvsbn_mask, lecture02.check_sampler, lecture02.check_nade_logits,
                  lecture02.check_made_masks, lecture02.check_ensemble_log_prob):
        with pytest.raises(NotImplementedError):
            check(stub)


def test_crash_is_a_failed_check():
    with pytest.raises(CheckError, match="raised"):
        lecture02.check_fvsbn_mask(lambda D: F.linear(torch.ones(D), torch.ones(2, 3)))
