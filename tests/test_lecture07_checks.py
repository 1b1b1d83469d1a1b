"""Lecture 07 checks: each accepts correct implementations written in several ways and rejects the common wrong
ones (tests/exercise_cases.py)."""

import math

import pytest
import torch
import torch.nn as nn
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as _Liar

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture07

# ---------------------------------------------------------------- Exercise 1: the affine coupling layer (a module)


class Coupling(nn.Module):
    """The reference: forward z = f^-1(x) with log|det dz/dx|, inverse x = f(z) with log|det dx/dz|."""

    def __init__(self, mask, conditioner):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.conditioner = conditioner

    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * x + (1 - self.mask) * (x * s.exp() + t), s.flatten(1).sum(1)

    def inverse(self, z):
        s, t = self.conditioner(self.mask * z)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * z + (1 - self.mask) * (z - t) * torch.exp(-s), -s.flatten(1).sum(1)


class CouplingWhere(Coupling):
    """Correct: torch.where, s zeroed only where it is summed."""

    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        keep = self.mask.bool().expand_as(x)
        return torch.where(keep, x, x * s.exp() + t), torch.where(keep, 0.0, s).reshape(len(x), -1).sum(-1)

    def inverse(self, z):
        s, t = self.conditioner(self.mask * z)
        keep = self.mask.bool().expand_as(z)
        return torch.where(keep, z, (z - t) / s.exp()), -torch.where(keep, 0.0, s).reshape(len(z), -1).sum(-1)


class CouplingLoop(Coupling):
    """Correct: an explicit loop over the flattened entries, appending one column at a time."""

    def _run(self, v, sign):
        s, t = self.conditioner(self.mask * v)
        flat_v, flat_s, flat_t = v.reshape(len(v), -1), s.reshape(len(v), -1), t.reshape(len(v), -1)
        flat_b = self.mask.expand_as(v[0]).reshape(-1)
        cols, log_det = [], v.new_zeros(len(v))
        for j in range(flat_v.shape[1]):
            if flat_b[j] == 1:
                cols.append(flat_v[:, j])
            elif sign > 0:
                cols.append(flat_v[:, j] * torch.exp(flat_s[:, j]) + flat_t[:, j])
                log_det = log_det + flat_s[:, j]
            else:
                cols.append((flat_v[:, j] - flat_t[:, j]) * torch.exp(-flat_s[:, j]))
                log_det = log_det - flat_s[:, j]
        return torch.stack(cols, 1).reshape(v.shape), log_det

    def forward(self, x):
        return self._run(x, +1)

    def inverse(self, z):
        return self._run(z, -1)


class CouplingFloat64(Coupling):
    """Correct: computes in float64 whatever comes in, returns the input's dtype."""

    def forward(self, x):
        s, t = (v.double() for v in self.conditioner(self.mask * x))
        b, xd = self.mask.double(), x.double()
        z = b * xd + (1 - b) * (xd * torch.exp(s) + t)
        return z.to(x.dtype), ((1 - b) * s).flatten(1).sum(1).to(x.dtype)

    def inverse(self, z):
        s, t = (v.double() for v in self.conditioner(self.mask * z))
        b, zd = self.mask.double(), z.double()
        x = b * zd + (1 - b) * (zd - t) * torch.exp(-s)
        return x.to(z.dtype), (-(1 - b) * s).flatten(1).sum(1).to(z.dtype)


class CouplingFloat32(Coupling):
    """Correct: the scale and shift applied in float32 whatever comes in (as on a GPU), float32 out."""

    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        b = self.mask.float()
        s, t, xf = (1 - b) * s.float(), (1 - b) * t.float(), x.float()
        return b * xf + (1 - b) * (xf * s.exp() + t), s.flatten(1).sum(1)

    def inverse(self, z):
        s, t = self.conditioner(self.mask * z)
        b = self.mask.float()
        s, t, zf = (1 - b) * s.float(), (1 - b) * t.float(), z.float()
        return b * zf + (1 - b) * (zf - t) * (-s).exp(), -s.flatten(1).sum(1)


class LogDetUnmasked(Coupling):  # formula: s of the conditioning entries counted in the log-det
    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        return self.mask * x + (1 - self.mask) * (x * s.exp() + t), s.flatten(1).sum(1)


class SeesEverything(Coupling):  # property: the conditioner reads the entries it transforms (not invertible)
    def forward(self, x):
        s, t = self.conditioner(x)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * x + (1 - self.mask) * (x * s.exp() + t), s.flatten(1).sum(1)


class LogDetSign(Coupling):  # formula: the forward returns log|det dx/dz| (the other direction's sign)
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, -log_det


class InverseLogDetSign(Coupling):  # formula: the inverse's log-det not negated
    def inverse(self, z):
        x, log_det = super().inverse(z)
        return x, -log_det


class InverseExpPlus(Coupling):  # formula: (z - t) * exp(+s)
    def inverse(self, z):
        s, t = self.conditioner(self.mask * z)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * z + (1 - self.mask) * (z - t) * s.exp(), -s.flatten(1).sum(1)


class InverseOrder(Coupling):  # formula: z * exp(-s) - t, shift and scale undone in the wrong order
    def inverse(self, z):
        s, t = self.conditioner(self.mask * z)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * z + (1 - self.mask) * (z * torch.exp(-s) - t), -s.flatten(1).sum(1)


class AllTransformed(Coupling):  # formula: the mask used only for the conditioner's input
    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        return x * s.exp() + t, s.flatten(1).sum(1)


class SumDim1(Coupling):  # shape: right for vectors, a (B, H, W) log-det for images
    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        return self.mask * x + (1 - self.mask) * (x * s.exp() + t), s.sum(1)


class LogOfProduct(Coupling):  # precision: log of the product of the scales, which overflows in float32
    def forward(self, x):
        z, _ = super().forward(x)
        s, _ = self.conditioner(self.mask * x)
        return z, torch.log(((1 - self.mask) * s).exp().flatten(1).prod(1))


class DetachedLogDet(Coupling):  # property: right values, but no gradient through the log-det
    def forward(self, x):
        z, log_det = super().forward(x)
        return z, log_det.detach()


class InPlace(Coupling):  # property: overwrites its input
    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        x.mul_(s.exp()).add_(t)
        return x, s.flatten(1).sum(1)


class SubclassOutput(Coupling):  # lie: a tensor subclass
    def forward(self, x):
        z, log_det = super().forward(x)
        return z.as_subclass(_Liar), log_det


class CouplingIndexing(Coupling):
    """Correct: boolean indexing of the transformed entries (a copy written in place, then returned)."""

    def forward(self, x):
        s, t = self.conditioner(self.mask * x)
        move = ~self.mask.bool()
        z = x.clone()
        z[:, move] = x[:, move] * s[:, move].exp() + t[:, move]
        return z, s[:, move].sum(1)


class ChunkedConditioner(Coupling):  # raw: treats the conditioner's output as one tensor to split
    def forward(self, x):
        s, t = self.conditioner(self.mask * x).chunk(2, dim=1)
        return self.mask * x + (1 - self.mask) * (x * s.exp() + t), s.flatten(1).sum(1)


class ForwardOnlyZ(Coupling):  # raw: returns z alone
    def forward(self, x):
        return super().forward(x)[0]


# ---------------------------------------------------------------- Exercise 2: bits/dim through the logit


def logit_log_det(x, alpha):
    s = alpha + (1 - 2 * alpha) * x
    return (math.log(1 - 2 * alpha) - s.log() - (-s).log1p()).reshape(len(x), -1).sum(1)


def bits_per_dim(log_p_y, x, alpha):
    d = x[0].numel()
    log_p_x = log_p_y + logit_log_det(x, alpha)
    return -(log_p_x - d * math.log(256)) / (d * math.log(2))


def bits_per_dim_autograd(log_p_y, x, alpha):  # correct: the diagonal Jacobian from autograd
    x = x.clone().requires_grad_(True)
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s / (1 - s))
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    log_p_x = log_p_y + dy_dx.abs().log().reshape(len(x), -1).sum(1)
    return (-log_p_x / x[0].numel() + math.log(256)) / math.log(2)


def bits_per_dim_loop(log_p_y, x, alpha):  # correct: a loop over the images and their pixels, in float64
    out = []
    for b in range(len(x)):
        total = float(log_p_y[b])
        pixels = x[b].reshape(-1).tolist()
        for v in pixels:
            s = alpha + (1 - 2 * alpha) * v
            total += math.log(1 - 2 * alpha) - math.log(s) - math.log1p(-s)
        out.append(-(total - len(pixels) * math.log(256)) / (len(pixels) * math.log(2)))
    return torch.tensor(out, dtype=torch.float64)


def bits_per_dim_float32(log_p_y, x, alpha):  # correct: computed in float32 whatever comes in
    x, log_p_y = x.float(), log_p_y.float()
    s = alpha + (1 - 2 * alpha) * x
    log_dy_dx = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    return (math.log(256) - (log_p_y + log_dy_dx) / x[0].numel()) / math.log(2)


def bpd_no_jacobian(log_p_y, x, alpha):  # formula
    d = x[0].numel()
    return -(log_p_y - d * math.log(256)) / (d * math.log(2))


def bpd_jacobian_sign(log_p_y, x, alpha):  # formula
    d = x[0].numel()
    return -(log_p_y - logit_log_det(x, alpha) - d * math.log(256)) / (d * math.log(2))


def bpd_unit_scale(log_p_y, x, alpha):  # formula: bits/dim of x in (0, 1), not on the 8-bit scale
    d = x[0].numel()
    return -(log_p_y + logit_log_det(x, alpha)) / (d * math.log(2))


def bpd_in_nats(log_p_y, x, alpha):  # formula
    d = x[0].numel()
    return -(log_p_y + logit_log_det(x, alpha) - d * math.log(256)) / d


def bpd_no_squash(log_p_y, x, alpha):  # formula: the (1 - 2 alpha) factor of the Jacobian dropped
    s = alpha + (1 - 2 * alpha) * x
    d = x[0].numel()
    log_det = (-s.log() - (-s).log1p()).reshape(len(x), -1).sum(1)
    return -(log_p_y + log_det - d * math.log(256)) / (d * math.log(2))


def bpd_batch_mean(log_p_y, x, alpha):  # shape: one number for the whole batch
    return bits_per_dim(log_p_y, x, alpha).mean()


def bpd_log_of_product(log_p_y, x, alpha):  # precision: the product of 784 derivatives overflows
    s = alpha + (1 - 2 * alpha) * x
    d = x[0].numel()
    log_det = torch.log(((1 - 2 * alpha) / (s * (1 - s))).flatten(1).prod(1))
    return -(log_p_y + log_det - d * math.log(256)) / (d * math.log(2))


def bpd_in_place(log_p_y, x, alpha):  # property: overwrites the caller's images
    x.mul_(1 - 2 * alpha).add_(alpha)
    d = x[0].numel()
    log_det = (math.log(1 - 2 * alpha) - x.log() - (-x).log1p()).flatten(1).sum(1)
    return -(log_p_y + log_det - d * math.log(256)) / (d * math.log(2))


def bpd_subclass(log_p_y, x, alpha):  # lie
    return bits_per_dim(log_p_y, x, alpha).as_subclass(_Liar)


def bpd_flat_pixels(log_p_y, x, alpha):  # raw: assumes images (B, 1, 28, 28)
    s = alpha + (1 - 2 * alpha) * x.reshape(len(x), 784)
    log_det = (math.log(1 - 2 * alpha) - s.log() - (-s).log1p()).sum(1)
    return -(log_p_y + log_det - 784 * math.log(256)) / (784 * math.log(2))


# ---------------------------------------------------------------- Exercise 3: MAF's sequential inverse


def maf_inverse(z, made):
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, alpha.sum(1)


def maf_inverse_by_column(z, made):  # correct: a loop over the coordinates, one column written at a time
    x = torch.zeros_like(z)
    for i in range(z.shape[1]):
        mu, alpha = made(x)
        x[:, i] = z[:, i] * alpha[:, i].exp() + mu[:, i]
    return x, made(x)[1].sum(1)


def maf_inverse_cat(z, made):  # correct: the columns gathered in a list, in float64 whatever comes in
    cols = []
    for i in range(z.shape[1]):
        x = torch.cat(cols + [z.new_zeros(len(z), z.shape[1] - i)], 1)
        mu, alpha = made(x)
        cols.append((z[:, i] * alpha[:, i].double().exp() + mu[:, i]).to(z.dtype)[:, None])
    x = torch.cat(cols, 1)
    return x, made(x)[1].double().sum(1).to(z.dtype)


def maf_inverse_random_start(z, made):  # correct: any starting point works after D passes (float32 log-det)
    x = torch.randn_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, alpha.float().sum(1)


def maf_inverse_one_pass(z, made):  # formula: conditioning on z instead of x (that is an IAF)
    mu, alpha = made(z)
    return z * alpha.exp() + mu, alpha.sum(1)


def maf_inverse_short(z, made):  # formula: one pass too few
    x = torch.zeros_like(z)
    for _ in range(z.shape[1] - 1):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, made(x)[1].sum(1)


def maf_inverse_sign(z, made):  # formula
    x, log_det = maf_inverse(z, made)
    return x, -log_det


def maf_inverse_stale_log_det(z, made):  # formula: alpha of the first pass (at x = 0) in the log-det
    x = torch.zeros_like(z)
    alpha0 = made(x)[1]
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * alpha.exp() + mu
    return x, alpha0.sum(1)


def maf_inverse_wrong_formula(z, made):  # formula: x = z * exp(-alpha) + mu
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)
        x = z * torch.exp(-alpha) + mu
    return x, -alpha.sum(1)


def maf_inverse_log_det_keepdim(z, made):  # shape: (B, 1)
    x, _ = maf_inverse(z, made)
    return x, made(x)[1].sum(1, keepdim=True)


def maf_inverse_overwrites_z(z, made):  # property: builds x in z's memory
    x = z
    for i in range(z.shape[1]):
        mu, alpha = made(x.clone())
        x[:, i] = z[:, i] * alpha[:, i].exp() + mu[:, i]
    return x, made(x)[1].sum(1)


def maf_inverse_subclass(z, made):  # lie
    x, log_det = maf_inverse(z, made)
    return x.as_subclass(_Liar), log_det


def maf_inverse_per_point(z, made):  # raw: calls the MADE on single points (D,)
    rows = []
    for row in z:
        x = torch.zeros_like(row)
        for _ in range(len(row)):
            mu, alpha = made(x)
            x = row * alpha.exp() + mu
        rows.append(x)
    return torch.stack(rows), made(torch.stack(rows))[1].sum(1)


# ---------------------------------------------------------------- Exercise 4: the distillation objective


def std_normal_log_prob(z):
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def distillation_kl(student, teacher, z):
    x, log_det = student.inverse(z)
    log_q = std_normal_log_prob(z) - log_det
    return (log_q - teacher.log_prob(x)).mean()


def distillation_kl_sticking_the_landing(student, teacher, z):  # correct: another estimator (lower variance)
    x, _ = student.inverse(z)
    z_back, log_det = student.forward(x)
    return (std_normal_log_prob(z_back) + log_det - teacher.log_prob(x)).mean()


def distillation_kl_loop(student, teacher, z):  # correct: one sample at a time, with torch.distributions
    normal = torch.distributions.Normal(0.0, 1.0)
    total = 0.0
    for row in z:
        x, log_det = student.inverse(row[None])
        total = total + normal.log_prob(row).sum() - log_det[0] - teacher.log_prob(x)[0]
    return total / len(z)


def distillation_kl_float32(student, teacher, z):  # correct: the per-sample terms summed in float32
    x, log_det = student.inverse(z)
    terms = (std_normal_log_prob(z) - log_det - teacher.log_prob(x)).float()
    return terms.mean()


def kl_wrong_direction(student, teacher, z):  # formula: samples from the teacher, KL(p || q)
    x = teacher.sample(len(z))
    z_q, log_det = student.forward(x)
    return (teacher.log_prob(x) - std_normal_log_prob(z_q) - log_det).mean()


def kl_log_det_sign(student, teacher, z):  # formula
    x, log_det = student.inverse(z)
    return (std_normal_log_prob(z) + log_det - teacher.log_prob(x)).mean()


def kl_no_entropy(student, teacher, z):  # formula: only the cross-entropy
    x, _ = student.inverse(z)
    return (-teacher.log_prob(x)).mean()


def kl_detached_samples(student, teacher, z):  # property: no reparameterization gradient
    x, log_det = student.inverse(z)
    return (std_normal_log_prob(z) - log_det - teacher.log_prob(x.detach())).mean()


def kl_per_sample(student, teacher, z):  # shape
    x, log_det = student.inverse(z)
    return std_normal_log_prob(z) - log_det - teacher.log_prob(x)


def kl_own_noise(student, teacher, z):  # randomness: draws fresh noise from the global RNG
    return distillation_kl(student, teacher, torch.randn_like(z))


def kl_subclass(student, teacher, z):  # lie
    return distillation_kl(student, teacher, z).as_subclass(_Liar)


def kl_calls_sample(student, teacher, z):  # raw: the student has no sample() in the check
    x = student.sample(len(z))
    return (-teacher.log_prob(x)).mean()


EXERCISES = {
    "ex1_coupling": Exercise(
        check=lecture07.check_coupling,
        correct=[Coupling, CouplingWhere, CouplingLoop, CouplingFloat64, CouplingFloat32, CouplingIndexing],
        wrong=[
            Wrong(LogDetUnmasked, "forward's log_det .*autograd Jacobian", "formula"),
            Wrong(LogDetSign, "forward's log_det .*autograd Jacobian", "formula"),
            Wrong(InverseLogDetSign, "inverse's log_det .*autograd Jacobian", "formula"),
            Wrong(InverseExpPlus, "inverse does not undo forward", "formula"),
            Wrong(InverseOrder, "inverse does not undo forward", "formula"),
            Wrong(AllTransformed, "changes the entries it conditions on", "formula"),
            Wrong(SeesEverything, "inverse does not undo forward", "property"),
            Wrong(SumDim1, "log_det .*wrong shape", "shape"),
            Wrong(LogOfProduct, "float32 image .*NaN or inf", "precision"),
            Wrong(DetachedLogDet, "do not train the flow like a correct coupling layer", "property"),
            Wrong(InPlace, "changed its input in place", "property"),
            Wrong(SubclassOutput, "wrong type", "lie"),
            Wrong(ChunkedConditioner, "raised AttributeError", "raw"),
            Wrong(ForwardOnlyZ, "returns the wrong thing", "raw"),
        ],
    ),
    "ex2_bits_per_dim": Exercise(
        check=lecture07.check_bits_per_dim,
        correct=[bits_per_dim, bits_per_dim_autograd, bits_per_dim_loop, bits_per_dim_float32],
        wrong=[
            Wrong(bpd_no_jacobian, "uniform model", "formula"),
            Wrong(bpd_jacobian_sign, "uniform model", "formula"),
            Wrong(bpd_unit_scale, "uniform model", "formula"),
            Wrong(bpd_in_nats, "uniform model", "formula"),
            Wrong(bpd_no_squash, "uniform model", "formula"),
            Wrong(bpd_batch_mean, "wrong shape", "shape"),
            Wrong(bpd_log_of_product, "not finite .*D = 784", "precision"),
            Wrong(bpd_in_place, "changed x in place", "property"),
            Wrong(bpd_subclass, "wrong type", "lie"),
            Wrong(bpd_flat_pixels, "raised RuntimeError", "raw"),
        ],
    ),
    "ex3_maf_inverse": Exercise(
        check=lecture07.check_maf_inverse,
        correct=[maf_inverse, maf_inverse_by_column, maf_inverse_cat, maf_inverse_random_start],
        wrong=[
            Wrong(maf_inverse_one_pass, "does not invert", "formula"),
            Wrong(maf_inverse_short, "does not invert", "formula"),
            Wrong(maf_inverse_sign, "log_det", "formula"),
            Wrong(maf_inverse_stale_log_det, "log_det", "formula"),
            Wrong(maf_inverse_wrong_formula, "does not invert", "formula"),
            Wrong(maf_inverse_log_det_keepdim, "log_det .*wrong shape", "shape"),
            Wrong(maf_inverse_overwrites_z, "changed z in place", "property"),
            Wrong(maf_inverse_subclass, "wrong type", "lie"),
            Wrong(maf_inverse_per_point, "raised", "raw"),
        ],
    ),
    "ex4_distillation_kl": Exercise(
        check=lecture07.check_distillation_kl,
        correct=[distillation_kl, distillation_kl_sticking_the_landing, distillation_kl_loop,
                 distillation_kl_float32],
        wrong=[
            Wrong(kl_wrong_direction, "other direction", "formula"),
            Wrong(kl_log_det_sign, "identical teacher", "formula"),
            Wrong(kl_no_entropy, "identical teacher", "formula"),
            Wrong(kl_detached_samples, "gradient", "property"),
            Wrong(kl_per_sample, "wrong thing", "shape"),
            Wrong(kl_own_noise, "do not draw new noise", "randomness"),
            Wrong(kl_subclass, "wrong type", "lie"),
            Wrong(kl_calls_sample, "raised AttributeError", "raw"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_the_lecture_trains_a_flow_built_from_the_class():
    """The training part of check_coupling is what catches a log-det cut off from the graph: the value checks
    alone accept it."""
    with pytest.raises(CheckError, match="Adam steps"):
        lecture07.check_coupling(DetachedLogDet)
    lecture07._check_training(Coupling)
