"""Checks for lecture 07 (flow architectures): the affine coupling layer, MAF's sequential inverse, the bits/dim
accounting through a logit transform, and the reverse-KL objective of teacher-student distillation.

Every check builds its own random problem from a fixed seed, in float64, and computes the reference without the
lecture's code: autograd Jacobians and `slogdet` for flows, densities known in closed form for the rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


def _pair(out, what: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack a flow's (y, log_det) and check that log_det has one entry per sample."""
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"{what} returns the wrong thing", "a pair (y, log_det)", type(out).__name__)
    y, log_det = out
    checks.check_tensor(f"{what}'s log_det", log_det, shape=(batch,))
    return y, log_det


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the affine coupling layer
# ----------------------------------------------------------------------------------------------------------

class _Conditioner:
    """A random two-layer network (s, t) = net(x_masked), float64, with scales big enough to matter."""

    def __init__(self, dim: int, seed: int, hidden: int = 16):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(hidden, dim, generator=g, dtype=DOUBLE)
        self.b1 = torch.randn(hidden, generator=g, dtype=DOUBLE)
        self.w_s = 0.4 * torch.randn(dim, hidden, generator=g, dtype=DOUBLE)
        self.w_t = torch.randn(dim, hidden, generator=g, dtype=DOUBLE)
        self.b_s = 0.3 * torch.randn(dim, generator=g, dtype=DOUBLE)  # s != 0 even where the input is masked to 0
        self.calls = 0

    def __call__(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        shape = x_masked.shape
        h = torch.tanh(x_masked.reshape(len(x_masked), -1) @ self.w1.T + self.b1)
        return (h @ self.w_s.T + self.b_s).reshape(shape), (h @ self.w_t.T).reshape(shape)


def _coupling_case(dim: int, seed: int, image: bool):
    g = torch.Generator().manual_seed(seed + 100)
    mask = (torch.arange(dim) % 2 == seed % 2).to(DOUBLE)                # alternating 0/1 pattern
    if seed % 3 == 2:
        mask = (torch.rand(dim, generator=g) < 0.5).to(DOUBLE)             # an arbitrary binary mask
        mask[0], mask[1] = 1.0, 0.0
    x = 1.5 * torch.randn(4, dim, generator=g, dtype=DOUBLE)
    if image:  # (B, 1, 4, 4): the log-det must be summed over every dimension but the batch
        side = int(math.isqrt(dim))
        return x.reshape(4, 1, side, side), mask.reshape(1, side, side)
    return x, mask


def _on_vectors(layer: Callable, mask: torch.Tensor, net: _Conditioner, event_shape) -> Callable:
    """The coupling layer seen on flat vectors (B, D), for the Jacobian checks."""
    def flat(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, log_det = _pair(layer(v.reshape(-1, *event_shape), mask, net), "the coupling layer", len(v))
        return y.reshape(len(v), -1), log_det
    return flat


@checks.exercise("ex1_coupling", "Exercise 1: the affine coupling layer")
def check_coupling(coupling_forward: Callable, coupling_inverse: Callable) -> None:
    """Exercise 1: `coupling_forward(x, mask, conditioner) -> (y, log_det)` and its `coupling_inverse`.

    y = b * x + (1 - b) * (x * exp(s) + t) with (s, t) = conditioner(b * x); log_det = log|det dy/dx| per sample.
    """
    for seed, (dim, image) in enumerate([(6, False), (7, False), (8, False), (16, True)]):
        x, mask = _coupling_case(dim, seed, image)
        net = _Conditioner(dim, seed)
        shape = x.shape
        flat = _on_vectors(coupling_forward, mask, net, shape[1:])
        flat_inv = _on_vectors(coupling_inverse, mask, net, shape[1:])
        y, log_det = _pair(coupling_forward(x.clone(), mask, net), "coupling_forward", len(x))
        checks.check_tensor("coupling_forward's y", y, shape=tuple(shape))
        keep = mask.expand_as(x).bool()
        if not torch.allclose(y[keep], x[keep], atol=1e-12):
            checks.fail("coupling_forward changes the entries it conditions on",
                        "y = x where the mask is 1", "different values there",
                        "only the entries where the mask is 0 are scaled and shifted")
        if torch.allclose(y[~keep], x[~keep], atol=1e-6):
            checks.fail("coupling_forward leaves every entry unchanged", "the entries where the mask is 0 transformed",
                        "y = x everywhere", "x * exp(s) + t where the mask is 0")
        x_flat = x.reshape(len(x), -1)
        checks.check_invertible(flat, flat_inv, x_flat, atol=1e-9, name="the coupling layer")
        checks.check_invertible(flat_inv, flat, x_flat, atol=1e-9, name="the coupling layer's inverse")
        checks.check_log_det(flat, x_flat, atol=1e-8, name="coupling_forward")
        _, log_det_inv = _pair(coupling_inverse(y.detach().clone(), mask, net), "coupling_inverse", len(x))
        checks.check_log_det(flat_inv, y.detach().reshape(len(x), -1), atol=1e-8, name="coupling_inverse")
        checks.check_close("log_det of the inverse at y = f(x)", log_det_inv, -log_det.detach(), atol=1e-8,
                           hint="the inverse divides by exp(s), so its log-det is minus the forward one")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: MAF's sequential inverse
# ----------------------------------------------------------------------------------------------------------

class _AutoregressiveNet:
    """(mu, alpha) = net(x) with mu_i, alpha_i nonlinear functions of x_<i only (a strictly lower-triangular mixer)."""

    def __init__(self, dim: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        lower = torch.ones(dim, dim, dtype=DOUBLE).tril(-1)                 # [i, j] = 1 for j < i
        self.p = torch.randn(2, dim, dim, generator=g, dtype=DOUBLE)
        self.q = torch.randn(2, dim, dim, generator=g, dtype=DOUBLE)
        self.a = torch.randn(2, dim, dim, generator=g, dtype=DOUBLE) * lower
        self.bias = torch.randn(2, dim, generator=g, dtype=DOUBLE)
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        h = torch.tanh(x[:, None, None, :] * self.p + self.q)              # (B, 2, D, D): [., k, i, j] uses x_j
        out = (h * self.a).sum(-1) + self.bias                              # (B, 2, D)
        return out[:, 0], 0.5 * out[:, 1]

    def forward_flow(self, x: torch.Tensor) -> torch.Tensor:
        """The MAF density direction z = (x - mu(x)) * exp(-alpha(x))."""
        mu, alpha = self(x)
        return (x - mu) * torch.exp(-alpha)

    def forward_one(self, x: torch.Tensor) -> torch.Tensor:
        """forward_flow of a single point (D,)."""
        return self.forward_flow(x[None])[0]


@checks.exercise("ex3_maf_inverse", "Exercise 3: MAF's sequential inverse")
def check_maf_inverse(maf_inverse: Callable) -> None:
    """Exercise 3: `maf_inverse(z, made) -> (x, log_det)` solves z = (x - mu(x)) exp(-alpha(x)) for x.

    `made(x)` returns (mu, alpha), each (B, D), with entry i depending on x_<i only; log_det = log|det dx/dz|.
    """
    for seed, dim in enumerate((1, 3, 6)):
        net = _AutoregressiveNet(dim, seed)
        x_true = torch.randn(5, dim, generator=torch.Generator().manual_seed(seed + 50), dtype=DOUBLE)
        z = net.forward_flow(x_true)
        x, log_det = _pair(maf_inverse(z.clone(), net), "maf_inverse", len(z))
        checks.check_tensor("maf_inverse's x", x, shape=(5, dim))
        err = (x.detach() - x_true).abs().max(0).values                     # (D,)
        if err.max() > 1e-8:
            first = int((err > 1e-8).nonzero()[0])
            checks.fail(f"maf_inverse does not invert the MAF (D = {dim})", "f^-1(f(x)) = x in every coordinate",
                        f"coordinates 0..{first - 1} right, coordinate {first} off by {float(err[first]):.3g}"
                        if first > 0 else f"coordinate 0 off by {float(err[0]):.3g}",
                        "mu and alpha must be computed from x (not z), and x_i is only known once x_<i is: "
                        "D sequential passes, each one fixing one more coordinate")
        jac = torch.autograd.functional.jacobian(net.forward_one, x_true[0])  # dz/dx
        true = -torch.linalg.slogdet(jac)[1]
        checks.check_close("log_det = log|det dx/dz| of the first sample", log_det[0], true, atol=1e-8,
                           hint="x_i = z_i exp(alpha_i) + mu_i, so log|det dx/dz| = sum_i alpha_i, with alpha "
                                "computed at the final x")
        checks.check_close("log_det of every sample", log_det, net(x_true)[1].sum(1), atol=1e-8)


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: bits per dimension through the logit transform
# ----------------------------------------------------------------------------------------------------------

def _logit_log_det(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """log|dy/dx| of y = logit(alpha + (1 - 2 alpha) x), summed per sample."""
    s = alpha + (1 - 2 * alpha) * x
    return (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).reshape(len(x), -1).sum(1)


def _logit(x: torch.Tensor, alpha: float) -> torch.Tensor:
    s = alpha + (1 - 2 * alpha) * x
    return torch.log(s) - torch.log1p(-s)


def _bpd_case(bits_per_dim: Callable, log_p_y: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    out = bits_per_dim(log_p_y.clone(), x.clone(), alpha)
    checks.check_tensor("bits_per_dim's output", out, shape=(len(x),))
    return out.detach().double()


@checks.exercise("ex2_bits_per_dim", "Exercise 2: bits per dimension through the logit transform")
def check_bits_per_dim(bits_per_dim: Callable) -> None:
    """Exercise 2: `bits_per_dim(log_p_y, x, alpha)` -> (B,) bits/dim on the 8-bit scale.

    x (B, ...) in (0, 1) is dequantized data, (pixel + u) / 256; the flow models y = logit(alpha + (1 - 2 alpha) x)
    and log_p_y (B,) is its log-density in nats.
    """
    g = torch.Generator().manual_seed(7)
    for alpha, shape in ((0.05, (6, 1, 5, 5)), (1e-6, (4, 30)), (0.2, (3, 2, 3, 3))):
        x = (torch.randint(0, 256, shape, generator=g).double() + torch.rand(shape, generator=g, dtype=DOUBLE)) / 256
        d = x[0].numel()
        # 1. The uniform density on (0, 1)^D, pushed through the logit: every 8-bit image costs exactly 8 bits.
        log_p_uniform = -_logit_log_det(x, alpha)
        got = _bpd_case(bits_per_dim, log_p_uniform, x, alpha)
        checks.check_close(f"bits/dim of the uniform model (alpha = {alpha:g}, D = {d})", got,
                           torch.full((len(x),), 8.0, dtype=DOUBLE), atol=1e-6,
                           hint="a uniform density over 256 levels costs log2(256) = 8 bits per pixel; "
                                "log p(x) = log p(y) + log|dy/dx|, then add D log 256 for the 8-bit scale, then "
                                "divide by D log 2")
        # 2. A Beta(2, 2) product density on x, pushed forward: known in closed form.
        log_p_x = (math.log(6.0) + torch.log(x) + torch.log1p(-x)).reshape(len(x), -1).sum(1)
        got = _bpd_case(bits_per_dim, log_p_x - _logit_log_det(x, alpha), x, alpha)
        expected = -(log_p_x - d * math.log(256)) / (d * math.log(2))
        checks.check_close(f"bits/dim of a Beta(2, 2) model (alpha = {alpha:g}, D = {d})", got, expected,
                           atol=1e-6, hint="one value per image: sum the log-Jacobian over every dimension "
                                           "but the batch; dy/dx = (1 - 2 alpha) / (s (1 - s))")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: the distillation objective KL(q_student || p_teacher)
# ----------------------------------------------------------------------------------------------------------

class _AffineStudent(torch.nn.Module):
    """x = m + exp(log_sigma) * z: a flow whose density N(m, diag sigma^2) is known in closed form."""

    def __init__(self, m: torch.Tensor, log_sigma: torch.Tensor):
        super().__init__()
        self.m = torch.nn.Parameter(m.clone())
        self.log_sigma = torch.nn.Parameter(log_sigma.clone())

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.m + self.log_sigma.exp() * z
        return x, self.log_sigma.sum().expand(len(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (x - self.m) * torch.exp(-self.log_sigma)
        return z, -self.log_sigma.sum().expand(len(x))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.m, self.log_sigma.exp()).log_prob(x).sum(1)


class _GaussianTeacher:
    def __init__(self, m: torch.Tensor, sigma: torch.Tensor):
        self.m, self.sigma = m, sigma

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.m, self.sigma).log_prob(x).sum(1)

    def sample(self, n: int) -> torch.Tensor:
        return self.m + self.sigma * torch.randn(n, len(self.m), dtype=DOUBLE)


def _kl_gauss(m_q, s_q, m_p, s_p) -> torch.Tensor:
    """KL(N(m_q, s_q^2) || N(m_p, s_p^2)) summed over dimensions."""
    return (torch.log(s_p / s_q) + (s_q**2 + (m_q - m_p) ** 2) / (2 * s_p**2) - 0.5).sum()


def _kl_value(distillation_kl: Callable, student, teacher, z: torch.Tensor) -> torch.Tensor:
    out = distillation_kl(student, teacher, z)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        got = f"tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        checks.fail("distillation_kl returns the wrong thing", "one number (a scalar tensor): the mean over samples",
                    got, "average the per-sample terms log q(x) - log p(x) over the batch")
    return out.reshape(())


@checks.exercise("ex4_distillation_kl", "Exercise 4: the distillation objective")
def check_distillation_kl(distillation_kl: Callable) -> None:
    """Exercise 4: `distillation_kl(student, teacher, z)` estimates KL(q_student || p_teacher) from z ~ N(0, I).

    student.inverse(z) -> (x, log|det dx/dz|) samples the student; teacher.log_prob(x) -> (B,). The estimate
    must carry the gradient with respect to the student's parameters through the samples.
    """
    g = torch.Generator().manual_seed(11)
    dim = 3
    m_p, s_p = torch.randn(dim, generator=g, dtype=DOUBLE), torch.tensor([0.5, 1.0, 1.7], dtype=DOUBLE)
    teacher = _GaussianTeacher(m_p, s_p)
    z = torch.randn(100_000, dim, generator=g, dtype=DOUBLE)

    # 1. A student equal to the teacher: every per-sample term is 0, so the estimate is exactly 0 for any z.
    twin = _AffineStudent(m_p, s_p.log())
    same = _kl_value(distillation_kl, twin, teacher, z[:64])
    checks.check_close("KL between a student and an identical teacher", same.detach(), 0.0, atol=1e-9,
                       hint="log q(x) = log N(z; 0, I) - log|det dx/dz| for x = student(z); check the sign of "
                            "the log-det term")

    # 2. A different student: the estimate against the closed form, then its gradient.
    m_q = m_p + torch.tensor([1.0, -0.5, 0.3], dtype=DOUBLE)
    student = _AffineStudent(m_q, torch.tensor([0.3, -0.4, 0.2], dtype=DOUBLE))
    kl = _kl_value(distillation_kl, student, teacher, z)
    exact = _kl_gauss(m_q, student.log_sigma.exp().detach(), m_p, s_p)
    reverse = _kl_gauss(m_p, s_p, m_q, student.log_sigma.exp().detach())
    if abs(float(kl.detach()) - float(exact)) > 0.02:
        hint = ("that is KL(p_teacher || q_student), the other direction: sample the STUDENT and average "
                "log q - log p" if abs(float(kl.detach()) - float(reverse)) < 0.05 else
                "KL(q || p) = E_{x ~ q}[log q(x) - log p(x)], with x from the student's samples")
        checks.fail("the KL estimate is far from the closed form (100000 samples)", f"{float(exact):.4f}",
                    f"{float(kl.detach()):.4f}", hint)
    if not kl.requires_grad:
        checks.fail("the KL estimate carries no gradient", "a tensor connected to the student's parameters",
                    "a tensor without grad", "do not detach the student's samples or compute it under no_grad")
    grads = torch.autograd.grad(kl, [student.m, student.log_sigma], allow_unused=True)
    params = [p.detach().clone().requires_grad_(True) for p in (student.m, student.log_sigma)]
    exact_grads = torch.autograd.grad(_kl_gauss(params[0], params[1].exp(), m_p, s_p), params)
    for name, got, want in zip(("mean", "log-scale"), grads, exact_grads, strict=True):
        if got is None:
            checks.fail(f"the gradient with respect to the student's {name} is missing",
                        "a gradient through the samples x = student(z)", "None",
                        "the samples must stay connected to the student: no detach, no torch.no_grad")
        checks.check_close(f"gradient of the KL estimate with respect to the student's {name}", got, want,
                           atol=0.03, rtol=0.03,
                           hint="the gradient flows through the samples x(z) (reparameterization): do not detach "
                                "x before the teacher's log-density")
