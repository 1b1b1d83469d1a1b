"""Lecture 07 checks: each accepts a correct implementation and rejects the common wrong ones."""

import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture07

# ---------------------------------------------------------------- Exercise 1: the affine coupling layer


def _sum_per_sample(s):
    return s.reshape(len(s), -1).sum(1)


def coupling_forward(x, mask, conditioner):
    s, t = conditioner(mask * x)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * x + (1 - mask) * (x * s.exp() + t), _sum_per_sample(s)


def coupling_inverse(y, mask, conditioner):
    s, t = conditioner(mask * y)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * y + (1 - mask) * (y - t) * torch.exp(-s), -_sum_per_sample(s)


def coupling_forward_where(x, mask, conditioner):  # another correct route: torch.where, s masked only in the sum
    s, t = conditioner(mask * x)
    keep = mask.bool().expand_as(x)
    return torch.where(keep, x, x * s.exp() + t), _sum_per_sample(torch.where(keep, torch.zeros_like(s), s))


def coupling_inverse_where(y, mask, conditioner):
    s, t = conditioner(mask * y)
    keep = mask.bool().expand_as(y)
    return torch.where(keep, y, (y - t) * torch.exp(-s)), -_sum_per_sample(torch.where(keep, torch.zeros_like(s), s))


def forward_unmasked_log_det(x, mask, conditioner):  # s of the conditioning entries counted in the log-det
    s, t = conditioner(mask * x)
    return mask * x + (1 - mask) * (x * s.exp() + t), _sum_per_sample(s)


def forward_sees_everything(x, mask, conditioner):  # the conditioner sees the entries it transforms
    s, t = conditioner(x)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * x + (1 - mask) * (x * s.exp() + t), _sum_per_sample(s)


def forward_sign(x, mask, conditioner):
    y, log_det = coupling_forward(x, mask, conditioner)
    return y, -log_det


def forward_sum_dim1(x, mask, conditioner):  # fine for vectors, wrong for images (B, C, H, W)
    s, t = conditioner(mask * x)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * x + (1 - mask) * (x * s.exp() + t), s.sum(1)


def forward_all_transformed(x, mask, conditioner):  # the mask used only for the conditioner's input
    s, t = conditioner(mask * x)
    return x * s.exp() + t, _sum_per_sample(s)


def inverse_exp_plus(y, mask, conditioner):  # (y - t) * exp(+s)
    s, t = conditioner(mask * y)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * y + (1 - mask) * (y - t) * s.exp(), -_sum_per_sample(s)


def inverse_order(y, mask, conditioner):  # y * exp(-s) - t: shift and scale undone in the wrong order
    s, t = conditioner(mask * y)
    s, t = (1 - mask) * s, (1 - mask) * t
    return mask * y + (1 - mask) * (y * torch.exp(-s) - t), -_sum_per_sample(s)


def inverse_same_sign(y, mask, conditioner):  # log-det of the inverse not negated
    x, log_det = coupling_inverse(y, mask, conditioner)
    return x, -log_det


def test_coupling_accepts_correct():
    lecture07.check_coupling(coupling_forward, coupling_inverse)
    lecture07.check_coupling(coupling_forward_where, coupling_inverse_where)


@pytest.mark.parametrize("forward, inverse, message", [
    (forward_unmasked_log_det, coupling_inverse, "log_det is wrong"),
    (forward_sees_everything, coupling_inverse, "does not undo"),
    (forward_sign, coupling_inverse, "log_det is wrong"),
    (forward_sum_dim1, coupling_inverse, "wrong shape"),
    (forward_all_transformed, coupling_inverse, "changes the entries it conditions on"),
    (coupling_forward, inverse_exp_plus, "does not undo"),
    (coupling_forward, inverse_order, "does not undo"),
    (coupling_forward, inverse_same_sign, "log_det is wrong"),
])
def test_coupling_rejects_wrong(forward, inverse, message):
    with pytest.raises(CheckError, match=message):
        lecture07.check_coupling(forward, inverse)


def test_coupling_stub_raises_not_implemented():
    def stub(x, mask, conditioner):
        raise NotImplementedError("ex1_coupling")
    with pytest.raises(NotImplementedError):
        lecture07.check_coupling(stub, stub)


# ---------------------------------------------------------------- Exercise 2: MAF's sequential inverse


def maf_inverse(z, made):
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, alpha.sum(1)


def maf_inverse_by_column(z, made):  # another correct route: one column at a time, in place
    x = torch.zeros_like(z)
    for i in range(z.shape[1]):
        mu, alpha = made(x)
        x[:, i] = z[:, i] * alpha[:, i].exp() + mu[:, i]
    return x, made(x)[1].sum(1)


def maf_inverse_one_pass(z, made):  # conditioning on z instead of x: that is an IAF, not the MAF's inverse
    mu, alpha = made(z)
    return z * alpha.exp() + mu, alpha.sum(1)


def maf_inverse_short(z, made):  # one pass too few
    x = torch.zeros_like(z)
    for _ in range(z.shape[1] - 1):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, made(x)[1].sum(1)


def maf_inverse_sign(z, made):
    x, log_det = maf_inverse(z, made)
    return x, -log_det


def maf_inverse_stale_log_det(z, made):  # alpha of the first pass (at x = 0) in the log-det
    x = torch.zeros_like(z)
    alpha0 = made(x)[1]
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, alpha0.sum(1)


def maf_inverse_wrong_formula(z, made):  # x = z * exp(-alpha) + mu: the forward's scale not undone
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * torch.exp(-alpha) + mu
    return x, -alpha.sum(1)


def test_maf_inverse_accepts_correct():
    lecture07.check_maf_inverse(maf_inverse)
    lecture07.check_maf_inverse(maf_inverse_by_column)


@pytest.mark.parametrize("wrong, message", [
    (maf_inverse_one_pass, "does not invert"),
    (maf_inverse_short, "does not invert"),
    (maf_inverse_sign, "log_det"),
    (maf_inverse_stale_log_det, "log_det"),
    (maf_inverse_wrong_formula, "does not invert"),
])
def test_maf_inverse_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture07.check_maf_inverse(wrong)


# ---------------------------------------------------------------- Exercise 3: bits/dim through the logit


def logit_log_det(x, alpha):
    s = alpha + (1 - 2 * alpha) * x
    return (math.log(1 - 2 * alpha) - s.log() - (-s).log1p()).reshape(len(x), -1).sum(1)


def bits_per_dim(log_p_y, x, alpha):
    d = x[0].numel()
    log_p_x = log_p_y + logit_log_det(x, alpha)
    return -(log_p_x - d * math.log(256)) / (d * math.log(2))


def bits_per_dim_autograd(log_p_y, x, alpha):  # another correct route: the diagonal Jacobian from autograd
    x = x.clone().requires_grad_(True)
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s / (1 - s))
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    log_p_x = log_p_y + dy_dx.abs().log().reshape(len(x), -1).sum(1)
    return (-log_p_x / x[0].numel() + math.log(256)) / math.log(2)


def bpd_no_jacobian(log_p_y, x, alpha):
    d = x[0].numel()
    return -(log_p_y - d * math.log(256)) / (d * math.log(2))


def bpd_jacobian_sign(log_p_y, x, alpha):
    d = x[0].numel()
    return -(log_p_y - logit_log_det(x, alpha) - d * math.log(256)) / (d * math.log(2))


def bpd_unit_scale(log_p_y, x, alpha):  # bits/dim of x in (0, 1), not on the 8-bit scale
    d = x[0].numel()
    return -(log_p_y + logit_log_det(x, alpha)) / (d * math.log(2))


def bpd_in_nats(log_p_y, x, alpha):
    d = x[0].numel()
    return -(log_p_y + logit_log_det(x, alpha) - d * math.log(256)) / d


def bpd_no_squash(log_p_y, x, alpha):  # the (1 - 2 alpha) factor of the Jacobian dropped
    s = alpha + (1 - 2 * alpha) * x
    d = x[0].numel()
    log_det = (-s.log() - (-s).log1p()).reshape(len(x), -1).sum(1)
    return -(log_p_y + log_det - d * math.log(256)) / (d * math.log(2))


def bpd_batch_mean(log_p_y, x, alpha):  # one number for the whole batch
    return bits_per_dim(log_p_y, x, alpha).mean()


def test_bits_per_dim_accepts_correct():
    lecture07.check_bits_per_dim(bits_per_dim)
    lecture07.check_bits_per_dim(bits_per_dim_autograd)


@pytest.mark.parametrize("wrong, message", [
    (bpd_no_jacobian, "uniform model"),
    (bpd_jacobian_sign, "uniform model"),
    (bpd_unit_scale, "uniform model"),
    (bpd_in_nats, "uniform model"),
    (bpd_no_squash, "uniform model"),
    (bpd_batch_mean, "wrong shape"),
])
def test_bits_per_dim_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture07.check_bits_per_dim(wrong)


# ---------------------------------------------------------------- Exercise 4: the distillation objective


def std_normal_log_prob(z):
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def distillation_kl(student, teacher, z):
    x, log_det = student.inverse(z)
    log_q = std_normal_log_prob(z) - log_det
    return (log_q - teacher.log_prob(x)).mean()


def distillation_kl_sticking_the_landing(student, teacher, z):  # another correct estimator (lower variance)
    x, _ = student.inverse(z)
    z_back, log_det = student.forward(x)
    return (std_normal_log_prob(z_back) + log_det - teacher.log_prob(x)).mean()


def kl_wrong_direction(student, teacher, z):  # samples from the teacher: KL(p || q)
    x = teacher.sample(len(z))
    z_q, log_det = student.forward(x)
    return (teacher.log_prob(x) - std_normal_log_prob(z_q) - log_det).mean()


def kl_log_det_sign(student, teacher, z):
    x, log_det = student.inverse(z)
    return (std_normal_log_prob(z) + log_det - teacher.log_prob(x)).mean()


def kl_detached_samples(student, teacher, z):
    x, log_det = student.inverse(z)
    return (std_normal_log_prob(z) - log_det - teacher.log_prob(x.detach())).mean()


def kl_no_entropy(student, teacher, z):  # only the cross-entropy: the student collapses onto the teacher's mode
    x, _ = student.inverse(z)
    return (-teacher.log_prob(x)).mean()


def kl_per_sample(student, teacher, z):
    x, log_det = student.inverse(z)
    return std_normal_log_prob(z) - log_det - teacher.log_prob(x)


def test_distillation_kl_accepts_correct():
    lecture07.check_distillation_kl(distillation_kl)
    lecture07.check_distillation_kl(distillation_kl_sticking_the_landing)


@pytest.mark.parametrize("wrong, message", [
    (kl_wrong_direction, "far from the closed form"),
    (kl_log_det_sign, "identical teacher"),
    (kl_detached_samples, "gradient"),
    (kl_no_entropy, "identical teacher"),
    (kl_per_sample, "wrong thing"),
])
def test_distillation_kl_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture07.check_distillation_kl(wrong)


def test_checks_are_fast():
    import time
    start = time.perf_counter()
    lecture07.check_coupling(coupling_forward, coupling_inverse)
    lecture07.check_maf_inverse(maf_inverse)
    lecture07.check_bits_per_dim(bits_per_dim)
    lecture07.check_distillation_kl(distillation_kl)
    assert time.perf_counter() - start < 8
