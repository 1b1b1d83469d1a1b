"""Checks for lecture 07 (flow architectures): the affine coupling layer, MAF's sequential inverse, the bits/dim
accounting through a logit transform, and the reverse-KL objective of teacher-student distillation.

Every check builds its own random problem from a fixed seed, in float64, and computes the reference without the
lecture's code: autograd Jacobians and `slogdet` for flows, densities known in closed form for the rest.
"""

from __future__ import annotations

import copy
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
# Exercise 1: the affine coupling layer (a whole module: forward, inverse and both log-determinants)
# ----------------------------------------------------------------------------------------------------------

class _Conditioner(torch.nn.Module):
    """A random two-layer network (s, t) = net(x_masked) on inputs of any event shape; s is nonzero even where the
    input is masked to 0 (its bias), so that a log-det that forgets the mask is caught."""

    def __init__(self, event_shape, seed: int, hidden: int = 16, s_bias: float = 0.3, dtype=DOUBLE):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dim = math.prod(event_shape)
        self.event_shape = tuple(event_shape)
        self.w1 = torch.nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=dtype) / math.sqrt(dim / 2))
        self.b1 = torch.nn.Parameter(torch.randn(hidden, generator=g, dtype=dtype))
        self.w_s = torch.nn.Parameter(0.4 * torch.randn(dim, hidden, generator=g, dtype=dtype))
        self.w_t = torch.nn.Parameter(torch.randn(dim, hidden, generator=g, dtype=dtype))
        self.b_s = torch.nn.Parameter(s_bias + 0.3 * torch.randn(dim, generator=g, dtype=dtype))

    def forward(self, x_masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(x_masked.reshape(len(x_masked), -1) @ self.w1.T + self.b1)
        shape = x_masked.shape
        return (h @ self.w_s.T + self.b_s).reshape(shape), (h @ self.w_t.T).reshape(shape)


def _reference_coupling(x: torch.Tensor, mask: torch.Tensor, net, inverse: bool = False):
    """The course's coupling layer, written independently of the lecture: forward z = f^-1(x), inverse x = f(z)."""
    s, t = net(mask * x)
    keep = mask.bool().expand_as(x)
    s, t = torch.where(keep, torch.zeros_like(s), s), torch.where(keep, torch.zeros_like(t), t)
    if inverse:
        return torch.where(keep, x, (x - t) * torch.exp(-s)), -s.flatten(1).sum(1)
    return torch.where(keep, x, x * torch.exp(s) + t), s.flatten(1).sum(1)


def _layer_call(layer, method: str, v: torch.Tensor, case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Call layer.forward / layer.inverse on v, check the pair (same shape as v, (B,) log-det), plain tensors."""
    v_before = v.detach().clone()
    out = layer(v) if method == "forward" else layer.inverse(v)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"{method} returns the wrong thing {case}", "a pair (output, log_det)", type(out).__name__,
                    "return both the transformed tensor and the per-sample log-determinant")
    y = checks.plain(f"{method}'s output {case}", out[0], differentiable=True)
    log_det = checks.plain(f"{method}'s log_det {case}", out[1], differentiable=True)
    checks.check_tensor(f"{method}'s output {case}", y, shape=tuple(v.shape), finite=False)
    checks.check_tensor(f"{method}'s log_det {case}", log_det, shape=(len(v),), finite=False)
    if not torch.equal(v.detach(), v_before):
        checks.fail(f"{method} changed its input in place {case}", "the input left as it is", "modified entries",
                    "build the output as a new tensor (e.g. with torch.where or mask arithmetic); the input is "
                    "needed again, by the caller and by autograd")
    for name, value in ((f"{method}'s output {case}", y), (f"{method}'s log_det {case}", log_det)):
        if not torch.isfinite(value).all():
            checks.fail(f"{name} contains NaN or inf", "finite values", "non-finite entries",
                        "the log-determinant is a sum of the s entries; never form the product of the scales "
                        "exp(s) (it overflows) and take its log")
    return y, log_det


def _jacobian_log_det(layer, method: str, v: torch.Tensor) -> torch.Tensor:
    """log|det| of the autograd Jacobian of one sample's map, for each sample of v (B, ...)."""
    out = []
    for b in range(len(v)):
        def one(flat, b=b):
            y = (layer(flat.reshape(1, *v.shape[1:])) if method == "forward"
                 else layer.inverse(flat.reshape(1, *v.shape[1:])))[0]
            return checks.plain("output", y, differentiable=True).reshape(-1)
        jac = torch.autograd.functional.jacobian(one, v[b].detach().reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def _coupling_case(event_shape, seed: int, arbitrary: bool, dtype=DOUBLE, s_bias: float = 0.3, batch: int = 4):
    """A mask of the event shape (alternating, or an arbitrary pattern) and a batch x (B, *event_shape)."""
    g = torch.Generator().manual_seed(seed + 100)
    dim = math.prod(event_shape)
    mask = (torch.arange(dim) % 2 == seed % 2).to(dtype)
    if arbitrary:
        mask = (torch.rand(dim, generator=g) < 0.5).to(dtype)
        mask[0], mask[1] = 1.0, 0.0
    x = 1.5 * torch.randn(batch, dim, generator=g, dtype=dtype)
    return x.reshape(batch, *event_shape), mask.reshape(event_shape)


def _build(coupling_class, mask: torch.Tensor, net) -> torch.nn.Module:
    layer = coupling_class(mask.clone(), net)
    if not callable(layer) or not hasattr(layer, "inverse"):
        checks.fail("the coupling class builds the wrong thing", "a module with forward (call) and inverse",
                    type(layer).__name__, "keep the class's __init__(mask, conditioner) as given")
    return layer


def _check_one_case(coupling_class, event_shape, seed: int, arbitrary: bool) -> None:
    x, mask = _coupling_case(event_shape, seed, arbitrary)
    net = _Conditioner(event_shape, seed)
    layer = _build(coupling_class, mask, net)
    case = f"(x of shape {tuple(x.shape)}, float64)"
    z, log_det = _layer_call(layer, "forward", x.clone(), case)
    keep = mask.bool().expand_as(x)
    atol, rtol = checks.tolerance(z.dtype)
    if not torch.allclose(z[keep].detach().double(), x[keep], atol=atol, rtol=rtol):
        checks.fail(f"forward changes the entries it conditions on {case}", "z = x where the mask b is 1",
                    "different values there", "only the entries where b = 0 are scaled and shifted")
    z_ref, log_det_ref = _reference_coupling(x, mask, net)
    if torch.allclose(z[~keep].detach().double(), x[~keep], atol=1e-6):
        checks.fail(f"forward leaves every entry unchanged {case}", "the entries where b = 0 transformed",
                    "z = x everywhere", "z = x * exp(s) + t where b = 0, with (s, t) = conditioner(b * x)")
    # Invertibility, both ways: inverse(forward(x)) = x and forward(inverse(z)) = z.
    x_back, log_det_inv = _layer_call(layer, "inverse", z.detach().to(x.dtype), case)
    scale = 10.0 if z.dtype == DOUBLE else 100.0
    atol, _ = checks.tolerance(x_back.dtype, scale)
    err = float((x_back.detach().double() - x).abs().max())
    if not err <= atol:
        checks.fail(f"inverse does not undo forward {case}", f"max |inverse(forward(x)) - x| <= {atol:g}",
                    f"{err:.3g}", "the inverse reads (s, t) from b * z (equal to b * x), then undoes the shift "
                                  "first and the scale second, on the entries where b = 0 only")
    z_rand = 1.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 7), dtype=DOUBLE)
    x_rand, _ = _layer_call(layer, "inverse", z_rand.clone(), case)
    z_again, _ = _layer_call(layer, "forward", x_rand.detach().to(x.dtype), case)
    err = float((z_again.detach().double() - z_rand).abs().max())
    if not err <= atol:
        checks.fail(f"forward does not undo inverse {case}", f"max |forward(inverse(z)) - z| <= {atol:g}",
                    f"{err:.3g}", "the inverse reads (s, t) from b * z, then undoes the shift first and the "
                                  "scale second, on the entries where b = 0 only")
    # The log-determinants against slogdet of the autograd Jacobian (float64), and against each other.
    true_fwd = _jacobian_log_det(layer, "forward", x)
    checks.check_close(f"forward's log_det {case} against slogdet of the autograd Jacobian dz/dx", log_det,
                       true_fwd, atol=checks.tolerance(log_det.dtype, 10)[0],
                       hint="log|det dz/dx| is the sum of s over the entries where b = 0 (the conditioning "
                            "entries are copied: their rows of the Jacobian are the identity)")
    true_inv = _jacobian_log_det(layer, "inverse", z.detach().to(x.dtype))
    checks.check_close(f"inverse's log_det {case} against slogdet of the autograd Jacobian dx/dz",
                       log_det_inv, true_inv, atol=checks.tolerance(log_det_inv.dtype, 10)[0],
                       hint="the inverse divides by exp(s): its log-det is minus the sum of s over the entries "
                            "where b = 0, with s computed from b * z")
    checks.check_close(f"forward's z {case}", z, z_ref, atol=checks.tolerance(z.dtype, 10)[0],
                       hint="z = b * x + (1 - b) * (x * exp(s) + t), with (s, t) = conditioner(b * x)")


def _check_float32_image(coupling_class) -> None:
    """A 28 x 28 image in float32 whose scales exp(s) multiply to far beyond float32's range."""
    x, mask = _coupling_case((1, 28, 28), 0, False, dtype=torch.float32, s_bias=0.6, batch=2)
    net = _Conditioner((1, 28, 28), 0, s_bias=0.6, dtype=torch.float32)
    layer = _build(coupling_class, mask, net)
    case = "(a float32 image (2, 1, 28, 28) whose scales multiply to more than 1e38)"
    z, log_det = _layer_call(layer, "forward", x.clone(), case)
    with torch.no_grad():
        z_ref, log_det_ref = _reference_coupling(x.double(), mask.double(), copy.deepcopy(net).double())
    checks.check_close(f"forward's z {case}", z, z_ref, atol=1e-4, rtol=1e-4,
                       hint="z = b * x + (1 - b) * (x * exp(s) + t)")
    checks.check_close(f"forward's log_det {case}", log_det, log_det_ref, atol=1e-3, rtol=1e-5,
                       hint="sum the s entries (b = 0) over every dimension but the batch")
    x_back, log_det_inv = _layer_call(layer, "inverse", z.detach().clone(), case)
    checks.check_close(f"inverse(forward(x)) {case}", x_back, x, atol=1e-4, rtol=1e-4,
                       hint="undo the shift first and the scale second, on the entries where b = 0 only")
    checks.check_close(f"inverse's log_det {case}", log_det_inv, -log_det_ref, atol=1e-3, rtol=1e-5,
                       hint="the inverse's log-det is minus the sum of s over the entries where b = 0")


_TRAIN_STEPS, _TRAIN_LR = 30, 2e-2


def _train_2d(coupling_class, batch: torch.Tensor) -> tuple[float, float]:
    """First and last NLL of _TRAIN_STEPS Adam steps of a three-layer coupling flow on a fixed 2-D batch."""
    masks = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])]
    nets = [_Conditioner((2,), 60 + k, hidden=8, s_bias=0.0, dtype=torch.float32) for k in range(3)]
    layers = [None if coupling_class is None else _build(coupling_class, m, n) for m, n in zip(masks, nets, strict=True)]
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=_TRAIN_LR)
    losses = []
    for _ in range(_TRAIN_STEPS + 1):
        h, log_det = batch, batch.new_zeros(len(batch))
        for layer, m, n in zip(layers, masks, nets, strict=True):
            if layer is None:
                h, ld = _reference_coupling(h, m, n)
            else:
                h, ld = _layer_call(layer, "forward", h, "(in a three-layer flow trained on 2-D data)")
            log_det = log_det + ld
        loss = (0.5 * (h**2).sum(1) + math.log(2 * math.pi) - log_det).mean()
        losses.append(float(loss.detach()))
        if len(losses) == _TRAIN_STEPS + 1:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses[0], losses[-1]


def _check_training(coupling_class) -> None:
    g = torch.Generator().manual_seed(5)
    x1 = torch.randn(256, generator=g)
    batch = torch.stack([x1, 0.5 * x1**2 - 1 + 0.3 * torch.randn(256, generator=g)], 1)   # a banana
    first_ref, last_ref = _train_2d(None, batch)
    first, last = _train_2d(coupling_class, batch)
    tol = 0.01 * (first_ref - last_ref)
    if abs(last - last_ref) > tol:
        checks.fail(f"{_TRAIN_STEPS} Adam steps on the NLL of a fixed 2-D batch do not train the flow like a correct "
                    "coupling layer", f"NLL from {first_ref:.4f} down to {last_ref:.4f} nats",
                    f"from {first:.4f} to {last:.4f} nats",
                    "the NLL's gradient must reach the conditioner through z and through log_det: no .detach(), "
                    ".item() or torch.no_grad() inside forward")


@checks.exercise("ex1_coupling", "Exercise 1: the affine coupling layer")
def check_coupling(coupling_class: Callable) -> None:
    """Exercise 1: `AffineCoupling(mask, conditioner)` with `forward(x) -> (z, log|det dz/dx|)` computing
    z = f^-1(x) = b x + (1 - b)(x exp(s) + t), (s, t) = conditioner(b x), and `inverse(z) -> (x, log|det dx/dz|)`.

    x is (B, D) or (B, C, H, W), any float dtype; the mask has x's shape without the batch dimension.
    """
    for seed, (event_shape, arbitrary) in enumerate([((6,), False), ((7,), False), ((8,), True), ((1, 4, 4), False),
                                                     ((2, 2, 3), True)]):
        _check_one_case(coupling_class, event_shape, seed, arbitrary)
    _check_float32_image(coupling_class)
    _check_training(coupling_class)


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: MAF's sequential inverse
# ----------------------------------------------------------------------------------------------------------

class _AutoregressiveNet:
    """(mu, alpha) = net(x) with mu_i, alpha_i nonlinear functions of x_<i only (a strictly lower-triangular mixer)."""

    def __init__(self, dim: int, seed: int, dtype=DOUBLE):
        g = torch.Generator().manual_seed(seed)
        lower = torch.ones(dim, dim, dtype=DOUBLE).tril(-1)                 # [i, j] = 1 for j < i
        self.p = torch.randn(2, dim, dim, generator=g, dtype=DOUBLE).to(dtype)
        self.q = torch.randn(2, dim, dim, generator=g, dtype=DOUBLE).to(dtype)
        self.a = (torch.randn(2, dim, dim, generator=g, dtype=DOUBLE) * lower).to(dtype)
        self.bias = torch.randn(2, dim, generator=g, dtype=DOUBLE).to(dtype)
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


def _maf_call(maf_inverse: Callable, z: torch.Tensor, net, case: str) -> tuple[torch.Tensor, torch.Tensor]:
    z_in = z.clone()
    out = maf_inverse(z_in, net)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail(f"maf_inverse returns the wrong thing {case}", "a pair (x, log_det)", type(out).__name__)
    x, log_det = (checks.plain(f"maf_inverse's {n} {case}", v) for n, v in zip(("x", "log_det"), out, strict=True))
    checks.check_tensor(f"maf_inverse's x {case}", x, shape=tuple(z.shape))
    checks.check_tensor(f"maf_inverse's log_det {case}", log_det, shape=(len(z),))
    if not torch.equal(z_in, z):
        checks.fail(f"maf_inverse changed z in place {case}", "z left as it is", "modified entries",
                    "build x in a new tensor; z is the caller's noise")
    return x, log_det


@checks.exercise("ex3_maf_inverse", "Exercise 3: MAF's sequential inverse")
def check_maf_inverse(maf_inverse: Callable) -> None:
    """Exercise 3: `maf_inverse(z, made) -> (x, log_det)` solves z = (x - mu(x)) exp(-alpha(x)) for x.

    `made(x)` returns (mu, alpha), each (B, D), with entry i depending on x_<i only; log_det = log|det dx/dz|.
    """
    for seed, (dim, dtype) in enumerate(((1, DOUBLE), (3, DOUBLE), (6, DOUBLE), (5, torch.float32))):
        net = _AutoregressiveNet(dim, seed)
        case = f"(D = {dim}, {str(dtype).replace('torch.', '')})"
        x_true = torch.randn(5, dim, generator=torch.Generator().manual_seed(seed + 50), dtype=DOUBLE)
        z = net.forward_flow(x_true)
        if dtype != DOUBLE:
            net = _AutoregressiveNet(dim, seed, dtype)
            x_true = x_true.to(dtype)
            z = net.forward_flow(x_true)
        x, log_det = _maf_call(maf_inverse, z, net, case)
        atol = checks.tolerance(x.dtype, 10 if x.dtype == DOUBLE else 100)[0]
        err = (x.double() - x_true.double()).abs().max(0).values                 # (D,)
        if err.max() > atol:
            first = int((err > atol).nonzero()[0])
            checks.fail(f"maf_inverse does not invert the MAF {case}", "f^-1(f(x)) = x in every coordinate",
                        f"coordinates 0..{first - 1} right, coordinate {first} off by {float(err[first]):.3g}"
                        if first > 0 else f"coordinate 0 off by {float(err[0]):.3g}",
                        "mu and alpha must be computed from x (not z), and x_i is only known once x_<i is: "
                        "D sequential passes, each one fixing one more coordinate")
        jac = torch.autograd.functional.jacobian(net.forward_one, x_true[0].double() if dtype == DOUBLE
                                                 else x_true[0])      # dz/dx
        true = -torch.linalg.slogdet(jac.double())[1]
        atol = checks.tolerance(log_det.dtype, 10 if log_det.dtype == DOUBLE else 100)[0]
        checks.check_close(f"log_det = log|det dx/dz| of the first sample {case}", log_det[0], true, atol=atol,
                           hint="x_i = z_i exp(alpha_i) + mu_i, so log|det dx/dz| = sum_i alpha_i, with alpha "
                                "computed at the final x")
        checks.check_close(f"log_det of every sample {case}", log_det, net(x_true)[1].sum(1).double(), atol=atol)


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
    x_in = x.clone()
    out = checks.plain("bits_per_dim's output", bits_per_dim(log_p_y.clone(), x_in, alpha))
    checks.check_tensor("bits_per_dim's output", out, shape=(len(x),), finite=False)
    if not torch.equal(x_in, x):
        checks.fail("bits_per_dim changed x in place", "x left as it is", "modified entries",
                    "compute s = alpha + (1 - 2 alpha) x as a new tensor")
    if not torch.isfinite(out).all():
        checks.fail(f"bits/dim is not finite (D = {x[0].numel()}, {str(x.dtype).replace('torch.', '')})",
                    "finite values", f"{out.tolist()[:4]}",
                    "keep the Jacobian in log space: sum log(dy/dx) over the pixels; the product of 784 factors "
                    "dy/dx >= 4 overflows")
    return out


@checks.exercise("ex2_bits_per_dim", "Exercise 2: bits per dimension through the logit transform")
def check_bits_per_dim(bits_per_dim: Callable) -> None:
    """Exercise 2: `bits_per_dim(log_p_y, x, alpha)` -> (B,) bits/dim on the 8-bit scale.

    x (B, ...) in (0, 1) is dequantized data, (pixel + u) / 256; the flow models y = logit(alpha + (1 - 2 alpha) x)
    and log_p_y (B,) is its log-density in nats.
    """
    g = torch.Generator().manual_seed(7)
    cases = ((0.05, (6, 1, 5, 5), DOUBLE), (1e-6, (4, 30), DOUBLE), (0.2, (3, 2, 3, 3), DOUBLE),
             (1e-6, (2, 1, 28, 28), torch.float32))
    for alpha, shape, dtype in cases:
        x = (torch.randint(0, 256, shape, generator=g).double() + torch.rand(shape, generator=g, dtype=DOUBLE)) / 256
        d = x[0].numel()
        where = f"(alpha = {alpha:g}, D = {d}, {str(dtype).replace('torch.', '')})"
        # 1. The uniform density on (0, 1)^D, pushed through the logit: every 8-bit image costs exactly 8 bits.
        log_p_uniform = -_logit_log_det(x, alpha)
        got = _bpd_case(bits_per_dim, log_p_uniform.to(dtype), x.to(dtype), alpha)
        atol, rtol = checks.tolerance(torch.float32 if torch.float32 in (dtype, got.dtype) else DOUBLE, 10)
        checks.check_close(f"bits/dim of the uniform model {where}", got,
                           torch.full((len(x),), 8.0, dtype=DOUBLE), atol=atol, rtol=rtol,
                           hint="a uniform density over 256 levels costs log2(256) = 8 bits per pixel; "
                                "log p(x) = log p(y) + log|dy/dx|, then add D log 256 for the 8-bit scale, then "
                                "divide by D log 2")
        # 2. A Beta(2, 2) product density on x, pushed forward: known in closed form.
        log_p_x = (math.log(6.0) + torch.log(x) + torch.log1p(-x)).reshape(len(x), -1).sum(1)
        got = _bpd_case(bits_per_dim, (log_p_x - _logit_log_det(x, alpha)).to(dtype), x.to(dtype), alpha)
        expected = -(log_p_x - d * math.log(256)) / (d * math.log(2))
        checks.check_close(f"bits/dim of a Beta(2, 2) model {where}", got, expected, atol=atol, rtol=rtol,
                           hint="one value per image: sum the log-Jacobian over every dimension "
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
    z_in = z.clone()
    out = distillation_kl(student, teacher, z_in)
    if not torch.equal(z_in, z):
        checks.fail("distillation_kl changed z in place", "z left as it is", "modified entries",
                    "the noise is the caller's; compute x = student(z) as a new tensor")
    if isinstance(out, torch.Tensor):
        out = checks.plain("distillation_kl's output", out, differentiable=True)
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
    n = 4000
    z = torch.randn(n, dim, generator=g, dtype=DOUBLE)

    # 1. A student equal to the teacher: every per-sample term is 0, so the estimate is exactly 0 for any z.
    twin = _AffineStudent(m_p, s_p.log())
    same = _kl_value(distillation_kl, twin, teacher, z[:64])
    checks.check_close("KL between a student and an identical teacher", same.detach(), 0.0,
                       atol=checks.tolerance(same.dtype, 10)[0],
                       hint="log q(x) = log N(z; 0, I) - log|det dx/dz| for x = student(z); check the sign of "
                            "the log-det term")

    # 2. A different student: the estimate at exactly the given noise, then its gradient.
    m_q = m_p + torch.tensor([1.0, -0.5, 0.3], dtype=DOUBLE)
    student = _AffineStudent(m_q, torch.tensor([0.3, -0.4, 0.2], dtype=DOUBLE))
    kl = _kl_value(distillation_kl, student, teacher, z)
    with torch.no_grad():                          # the mean of log q(x(z)) - log p(x(z)) over exactly these z
        x_z = student.m + student.log_sigma.exp() * z
        terms = (torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) - student.log_sigma.sum()
                 - teacher.log_prob(x_z))
    at_z, se = terms.mean(), float(terms.std()) / math.sqrt(n)
    if abs(float(kl.detach()) - float(at_z)) > checks.tolerance(kl.dtype, 100)[0] * (1 + abs(float(at_z))):
        reverse = _kl_gauss(m_p, s_p, m_q, student.log_sigma.exp().detach())
        if abs(float(kl.detach()) - float(reverse)) < 0.2:
            hint = ("that is close to KL(p_teacher || q_student), the other direction: sample the STUDENT with "
                    "the given z and average log q - log p")
        elif abs(float(kl.detach()) - float(at_z)) < 5 * se:
            hint = ("close, but not the estimate at the given z: use the z you are given (do not draw new noise), "
                    "x = student.inverse(z)")
        else:
            hint = "KL(q || p) = E_{x ~ q}[log q(x) - log p(x)], with x = student.inverse(z) for the given z"
        checks.fail(f"the KL estimate at the given noise z ({n} samples)", f"{float(at_z):.6f}",
                    f"{float(kl.detach()):.6f}", hint)
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
                           atol=0.1, rtol=0.05,
                           hint="the gradient flows through the samples x(z) (reparameterization): do not detach "
                                "x before the teacher's log-density")
