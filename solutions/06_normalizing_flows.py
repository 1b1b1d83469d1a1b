# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 06: Normalizing flows
#
# A latent variable model (lectures 04 and 05) makes $p(x)$ an integral over $z$, and we had to bound it.
# A **normalizing flow** removes the integral: $x = f(z)$ with $f$ *invertible* and differentiable, so each
# $x$ comes from exactly one $z = f^{-1}(x)$, and the density of $x$ follows from that of $z$ by the change of
# variables formula
#
# $$p_X(x) = p_Z\big(f^{-1}(x)\big)\,\left|\det \frac{\partial f^{-1}(x)}{\partial x}\right|.$$
#
# Sampling is $z \sim p_Z$, $x = f(z)$; the likelihood is exact. Everything in this lecture and the next is
# about building $f$ so that both the inverse and the determinant are cheap while $f$ stays flexible.
#
# **The convention of this course.** $f$ is always the *generative* map, latent to data, $x = f(z)$. A flow
# trained on data is evaluated in the other direction, and its code says so by its method names:
#
# | method | computes | returns |
# | --- | --- | --- |
# | `forward(x)` | $z = f^{-1}(x)$: data to latent (density) | `(z, log_det)`, `log_det` $= \log\lvert\det \partial f^{-1}(x)/\partial x\rvert$ |
# | `inverse(z)` | $x = f(z)$: latent to data (sampling) | `(x, log_det)`, `log_det` $= \log\lvert\det \partial f(z)/\partial z\rvert$ |
#
# so that `log_prob(x) = base.log_prob(z) + log_det` with `(z, log_det) = forward(x)`, exactly the formula above;
# at a pair $x = f(z)$ the two log-dets are negatives of each other. One exception, and it says so where it
# comes: the planar flows of section 4 serve variational inference, where only sampling is needed, and their
# `forward` runs the generative direction $z_0 \to z_K$ (as in Rezende and Mohamed's paper).
#
# **Learning goals.** After this lecture you can
# - derive the change of variables formula in 1-D and use a learned CDF as a flow that maps data to a uniform;
# - explain why an invertible linear map scales volume by $|\det A|$, and check the general formula with
#   autograd Jacobians;
# - use a flow as a variational distribution: fit planar flows to unnormalized 2-D densities by minimizing
#   $\mathrm{KL}(q\,\|\,p)$, with the log-determinant from the matrix determinant lemma and the constraint that
#   keeps each layer invertible;
# - measure the trade-off between a flexible transformation and the cost of its Jacobian determinant.
#
# **Builds on.** Lecture 03 (maximum likelihood, KL divergence), lecture 04 ($\mathrm{KL}(q\,\|\,p)$, variational
# inference, mode seeking) and lecture 05 (the reparameterization trick). Lecture 07 builds the flows used for
# images (coupling and autoregressive layers) on the formula derived here.
#
# **Plan.** 1 Change of variables in 1-D; a CDF flow (exercise 1). 2 Linear flows and volume.
# 3 The general formula, checked with autograd (exercise 2). 4 Planar flows for variational inference
# (exercises 3 and 4). 5 Flexibility versus the cost of the Jacobian. Then results, summary and references.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, Normal

from dgm_course import budget, fit, plot, record, setup, toy, train_or_load, widgets
from dgm_course.exercises import lecture06
from dgm_course.runtime import progress

device, MODE = setup(seed=0, threads=1)   # small tensors only: one thread is faster than two that wait on each other
LECTURE = "06_normalizing_flows"
T0 = time.perf_counter()
N_1D = budget(smoke=2000, standard=5000, full=20000)         # training points of the 1-D CDF flow
EPOCHS_1D = budget(smoke=10, standard=40, full=100)           # its epochs
DEPTHS = budget(smoke=[0, 2, 8], standard=[0, 2, 8, 32], full=[0, 2, 8, 16, 32, 64])  # planar layers K
VI_STEPS = budget(smoke=150, standard=6000, full=20000)       # optimizer steps per planar fit
VI_BATCH = budget(smoke=256, standard=512, full=1024)         # samples from q per step
QUAD_N = budget(smoke=701, standard=1401, full=2001)           # grid points per axis for log Z
N_KL = budget(smoke=20000, standard=200000, full=1000000)     # samples for each KL estimate
COST_DIMS = budget(smoke=[2, 8, 32, 128], standard=[2, 8, 32, 128, 512, 1024],
                   full=[2, 8, 32, 128, 512, 1024, 2048])     # dimensions for the Jacobian-cost timing
CPU64 = dict(device="cpu", dtype=torch.float64)               # exact work in float64 on the CPU (MPS lacks it)

# %% [markdown]
# ## 1. Change of variables in one dimension
#
# Let $Z$ have density $p_Z$ and $X = f(Z)$ with $f$ strictly increasing. Then $P(X \le x) = P(Z \le f^{-1}(x))$,
# and differentiating both sides in $x$ gives $p_X(x) = p_Z(f^{-1}(x))\,\frac{d f^{-1}(x)}{dx}$. For a decreasing
# $f$ the inequality flips and the derivative is negative, hence in general
#
# $$p_X(x) = p_Z\big(f^{-1}(x)\big)\,\left|\frac{d f^{-1}(x)}{dx}\right| = \frac{p_Z(z)}{|f'(z)|}\Big|_{z = f^{-1}(x)}.$$
#
# Probability mass is conserved: where $f$ stretches an interval ($|f'| > 1$) the density drops, where it
# squeezes, the density rises. A quick check with $z \sim \mathcal N(0, 1)$ and $x = f(z) = e^{z/2} + z$:

# %%
def f_demo(z):
    return torch.exp(z / 2) + z                          # strictly increasing: f'(z) = e^{z/2}/2 + 1 > 0


def f_demo_inverse(x, iters=60):                         # no closed form: bisection on the increasing f
    lo, hi = torch.full_like(x, -40.0), torch.full_like(x, 40.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        too_small = f_demo(mid) < x
        lo, hi = torch.where(too_small, mid, lo), torch.where(too_small, hi, mid)
    return (lo + hi) / 2


x_grid = torch.linspace(-3, 5, 400, **CPU64)
z_grid = f_demo_inverse(x_grid)
p_x = Normal(0.0, 1.0).log_prob(z_grid).exp() / (torch.exp(z_grid / 2) / 2 + 1)   # p_Z(z) / |f'(z)|
x_samples = f_demo(torch.randn(100000, dtype=torch.float64))
exact_mass = Normal(0.0, 1.0).cdf(z_grid[-1]) - Normal(0.0, 1.0).cdf(z_grid[0])   # P(-3 <= X <= 5)
print(f"mass of the formula's density on [-3, 5]: {torch.trapezoid(p_x, x_grid):.5f};  "
      f"exact P(-3 <= X <= 5) = {exact_mass:.5f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.hist(x_samples.numpy(), bins=120, range=(-3, 5), density=True, alpha=0.4, label="histogram of f(z), z ~ N(0, 1)")
ax.plot(x_grid, p_x, "k", label="p_Z(f⁻¹(x)) |df⁻¹/dx|")
ax.set(xlabel="x", ylabel="density", title="change of variables in 1-D")
ax.legend()
plt.show()

# %% [markdown]
# ### A CDF flow: data to a uniform
#
# Run the formula the other way. If $F$ is the CDF of $X$, then $U = F(X)$ is uniform on $(0, 1)$: the
# *probability integral transform*. So a flow from data to a uniform **is** a CDF, and learning one is density
# estimation: with $z = F_\theta(x)$ and $p_U = 1$ on $(0, 1)$,
#
# $$\log p_\theta(x) = \log p_U\big(F_\theta(x)\big) + \log \left|\frac{dF_\theta(x)}{dx}\right| = \log F_\theta'(x).$$
#
# Any increasing function from $\mathbb R$ onto $(0, 1)$ will do. We take the CDF of a mixture of $K$ Gaussians,
#
# $$z = F_\theta(x) = \sum_{k=1}^K \pi_k\, \Phi\!\left(\frac{x - \mu_k}{\sigma_k}\right), \qquad
# \log F_\theta'(x) = \log \sum_{k=1}^K \pi_k\, \frac{1}{\sigma_k}\, \varphi\!\left(\frac{x - \mu_k}{\sigma_k}\right),$$
#
# with $\pi = \mathrm{softmax}(\text{logits})$, $\Phi$ and $\varphi$ the standard normal CDF and density. (Here the
# flow's density happens to be a Gaussian mixture; with other increasing families, or as one layer of a deeper
# flow, as in Flow++, it is not.) Training maximizes $\sum_n \log F_\theta'(x_n)$. Sampling inverts $F_\theta$:
# $u \sim \mathcal U(0, 1)$, $x = F_\theta^{-1}(u)$, found by bisection since $F_\theta$ is increasing.
#
# **Exercise 1 (the 1-D density of a CDF flow).** Write `mixture_cdf_forward(x, logits, mu, log_sigma)`, the
# flow's `forward` (data to latent), returning `(z, log_det)`: $z = F_\theta(x)$ and $\log_\text{det} = \log |dz/dx|$,
# both of shape `(N,)` for `x` of shape `(N,)` and parameters of shape `(K,)`, all of one float dtype (float32 or
# float64). Compute the log-derivative in log space (`torch.logsumexp`): far in the tails every $\varphi$
# underflows to zero in float32, and the log of a sum of zeros is $-\infty$. Training maximizes `log_det`, so
# keep it differentiable in `logits`, `mu` and `log_sigma` (torch operations only).

# %% tags=["solution:ex1_cdf_flow"]
def mixture_cdf_forward(x, logits, mu, log_sigma):
    """z = F(x), the CDF of a Gaussian mixture, and log dF/dx; x (N,), parameters (K,) -> (N,), (N,)."""
    ### BEGIN SOLUTION
    log_pi = torch.log_softmax(logits, 0)                         # (K,)
    sigma = log_sigma.exp()                                       # (K,)
    t = (x[:, None] - mu) / sigma                                 # (N, K) standardized
    z = (log_pi.exp() * torch.special.ndtr(t)).sum(1)             # (N,) in (0, 1)
    log_det = torch.logsumexp(log_pi + Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)   # (N,)
    return z, log_det
    ### END SOLUTION


# %% tags=["check:ex1_cdf_flow"]
lecture06.check_cdf_flow(mixture_cdf_forward)

# %% [markdown]
# The flow as a module with the course's interface for flows. Its generative map is $x = f(u) = F_\theta^{-1}(u)$,
# from the uniform latent to the data, so `forward(x)` computes $u = f^{-1}(x) = F_\theta(x)$ with
# `log_det` $= \log|dF_\theta/dx|$ (exercise 1), and `inverse(u)` computes $x = F_\theta^{-1}(u)$ (here by bisection)
# with `log_det` $= \log|dx/du| = -\log F_\theta'(x)$. For the training loop: `loss(x)`, the mean negative
# log-likelihood, and `sample(n)`.

# %%
class MixtureCDFFlow(nn.Module):
    """A 1-D flow with x = f(u) = F^-1(u): forward x -> u = F(x) in (0, 1), F the CDF of a Gaussian mixture."""

    def __init__(self, K, init_mu):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(K))
        self.mu = nn.Parameter(init_mu.clone().float())          # (K,)
        self.log_sigma = nn.Parameter(torch.zeros(K))

    def forward(self, x):                                       # x (N,) -> u = F(x) (N,), log|du/dx| (N,)
        return mixture_cdf_forward(x, self.logits, self.mu, self.log_sigma)

    def log_prob(self, x):                                      # log p_U(F(x)) + log F'(x), p_U = 1 on (0, 1)
        return self(x)[1]

    def loss(self, x):
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def inverse(self, u, iters=50):                             # u (N,) in (0, 1) -> x (N,), log|dx/du| (N,)
        reach = 20 * self.log_sigma.exp().max()
        lo = torch.full_like(u, float(self.mu.min() - reach))
        hi = torch.full_like(u, float(self.mu.max() + reach))
        for _ in range(iters):                                  # F is increasing: halve the bracket
            mid = (lo + hi) / 2
            too_small = self(mid)[0] < u
            lo, hi = torch.where(too_small, mid, lo), torch.where(too_small, hi, mid)
        x = (lo + hi) / 2
        return x, -self(x)[1]                                   # dx/du = 1 / F'(x)

    def sample(self, n):
        return self.inverse(torch.rand(n, device=self.mu.device))[0]


# %% [markdown]
# Data from a known three-component mixture (so we know the best possible test NLL, the entropy of the
# truth), and a five-component flow started with its means at data quantiles.

# %%
truth_1d = toy.Mixture1D(weights=(0.25, 0.45, 0.3), means=(-3.0, 0.0, 2.5), stds=(0.5, 1.0, 0.35))
x_train_1d = truth_1d.sample(N_1D, seed=1)                         # (N,)
x_test_1d = truth_1d.sample(5000, seed=2)
cdf_flow = MixtureCDFFlow(K=5, init_mu=torch.quantile(x_train_1d, torch.linspace(0.1, 0.9, 5))).to(device)
hist_1d = train_or_load(cdf_flow, LECTURE, "cdf_flow", lambda: fit(
    cdf_flow, x_train_1d, x_test_1d, epochs=EPOCHS_1D, batch_size=128, lr=3e-2))
with torch.no_grad():
    cdf_test_nll = -cdf_flow.log_prob(x_test_1d.to(device)).mean().item()
true_test_nll = -truth_1d.log_prob(x_test_1d).mean().item()
print(f"test NLL: CDF flow {cdf_test_nll:.4f} nats, true density {true_test_nll:.4f} nats "
      f"(gap {cdf_test_nll - true_test_nll:.4f})")

# %%
with torch.no_grad():
    xs = torch.linspace(-6, 5, 500, device=device)
    z_line, log_det_line = cdf_flow(xs)
    z_test, _ = cdf_flow(x_test_1d.to(device))
    x_new = cdf_flow.sample(10000)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
axes[0].hist(x_train_1d.numpy(), bins=100, density=True, alpha=0.4, label="training data")
axes[0].plot(xs.cpu(), log_det_line.exp().cpu(), "k", label="flow: F'(x)")
axes[0].plot(xs.cpu(), truth_1d.log_prob(xs.cpu()).exp(), "r--", lw=1, label="truth")
axes[0].set(title="density", xlabel="x")
axes[0].legend(fontsize=8)
axes[1].plot(xs.cpu(), z_line.cpu(), "k")
axes[1].set(title="the flow z = F(x)", xlabel="x", ylabel="z")
axes[2].hist(z_test.cpu().numpy(), bins=40, range=(0, 1), density=True, alpha=0.6)
axes[2].axhline(1, color="k", lw=1)
axes[2].set(title="test data mapped to z: uniform", xlabel="z")
axes[3].hist(x_new.cpu().numpy(), bins=100, density=True, alpha=0.4, color="C2", label="samples F⁻¹(u)")
axes[3].plot(xs.cpu(), truth_1d.log_prob(xs.cpu()).exp(), "r--", lw=1, label="truth")
axes[3].set(title="samples by inverting F", xlabel="x")
axes[3].legend(fontsize=8)
plt.show()

# %% [markdown]
# The second panel is the whole model: an increasing curve, steep where the data are dense. The third panel
# is the flow's promise kept on *test* data: pushed through $F_\theta$, they are (nearly) uniform. In more
# than one dimension a CDF is no longer a map to a uniform *vector*, which is why we need the general formula.
#
# ## 2. Linear flows and volume
#
# Take $x = f(z) = A z + b$ with $A$ an invertible $D \times D$ matrix. The unit cube $[0, 1]^D$ of $z$-space
# goes to the parallelotope spanned by the columns of $A$, whose volume is $|\det A|$. Mass is conserved, so
# the density is divided by that volume factor:
#
# $$p_X(x) = p_Z\big(A^{-1}(x - b)\big)\, \frac{1}{|\det A|} = p_Z\big(A^{-1}(x - b)\big)\,|\det A^{-1}|.$$
#
# With $z \sim \mathcal N(0, I)$ this must be $\mathcal N(b, A A^\top)$. First the picture, with the area
# computed by the shoelace formula from the four corners:

# %%
A = torch.tensor([[1.6, 0.9], [0.4, 1.3]], **CPU64)
b = torch.tensor([0.5, -0.3], **CPU64)
square = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], **CPU64)              # corners of [0, 1]^2
corners = square @ A.T + b                                                   # their images (4, 2)
x_c, y_c = corners.T
shoelace = 0.5 * abs(float((x_c * y_c.roll(-1) - x_c.roll(-1) * y_c).sum()))
print(f"area of the image of the unit square: {shoelace:.4f};  |det A| = {abs(torch.linalg.det(A)):.4f}")

# %%
z_pts = torch.randn(3000, 2, **CPU64)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
for ax, pts, poly, title in [(axes[0], z_pts, square, "z-space: unit square, N(0, I)"),
                             (axes[1], z_pts @ A.T + b, corners, f"x = Az + b: area |det A| = {shoelace:.2f}")]:
    ax.scatter(*pts.T, s=2, alpha=0.25)
    ax.fill(*poly.T, alpha=0.5, color="C1", edgecolor="k")
    ax.set(xlim=(-5, 5), ylim=(-5, 5), aspect="equal", title=title)
for col, name in [(0, "A e₁"), (1, "A e₂")]:
    axes[1].annotate("", xy=(b + A[:, col]).numpy(), xytext=b.numpy(), arrowprops=dict(arrowstyle="->", lw=2))
    axes[1].text(*(b + 1.05 * A[:, col]).numpy(), name)
plt.show()

# %% [markdown]
# The density check, and the volume claim in three dimensions by Monte Carlo: throw uniform points into a
# box around the image of $[0, 1]^3$ and count those whose preimage $A^{-1}x$ lands in the unit cube.

# %%
x_check = torch.randn(5, 2, **CPU64) * 2
z_back = torch.linalg.solve(A, (x_check - b).T).T                                   # A^{-1}(x - b)
log_p_formula = Normal(0.0, 1.0).log_prob(z_back).sum(1) - torch.linalg.slogdet(A)[1]
log_p_gauss = MultivariateNormal(b, A @ A.T).log_prob(x_check)
print("max |formula - N(b, AA^T)|:", float((log_p_formula - log_p_gauss).abs().max()))

gen = torch.Generator().manual_seed(0)
A3 = torch.randn(3, 3, generator=gen, dtype=torch.float64)
box_lo, box_hi = torch.minimum(A3, torch.zeros(3, 3)).sum(1), torch.maximum(A3, torch.zeros(3, 3)).sum(1)
u_box = box_lo + (box_hi - box_lo) * torch.rand(400000, 3, generator=gen, dtype=torch.float64)
inside = ((torch.linalg.solve(A3, u_box.T).T >= 0) & (torch.linalg.solve(A3, u_box.T).T <= 1)).all(1)
volume_mc = inside.double().mean() * (box_hi - box_lo).prod()
print(f"3-D: Monte Carlo volume {volume_mc:.3f},  |det A| = {abs(torch.linalg.det(A3)):.3f}")

# %% [markdown]
# ## 3. The general formula, checked with autograd
#
# A differentiable invertible $f$ is locally linear: near $x$, $f^{-1}(x + \delta) \approx f^{-1}(x) +
# J(x)\,\delta$ with the Jacobian $J(x) = \partial f^{-1}/\partial x$. A tiny box around $x$ therefore maps to a
# tiny parallelotope of volume $|\det J(x)|$ times the box's, and the linear argument applies locally:
#
# $$p_X(x) = p_Z\big(f^{-1}(x)\big)\,\left|\det \frac{\partial f^{-1}(x)}{\partial x}\right|, \qquad
# \log p_X(x) = \log p_Z(z) + \log\left|\det \frac{\partial f^{-1}}{\partial x}\right|,\ z = f^{-1}(x).$$
#
# Equivalently $|\det \partial f^{-1}/\partial x| = 1/|\det \partial f/\partial z|$ (inverse function theorem).
# To see it work we need a small invertible network. Linear, elementwise $\operatorname{asinh}$, linear:
#
# $$x = f(z) = A_2 \operatorname{asinh}(A_1 z + c_1) + c_2, \qquad
# z = f^{-1}(x) = A_1^{-1}\big(\sinh(A_2^{-1}(x - c_2)) - c_1\big).$$
#
# Each piece is invertible, so the composition is.

# %%
class TinyInvertibleNet(nn.Module):
    """x = A2 asinh(A1 z + c1) + c2: invertible, with both directions in closed form."""

    def __init__(self):
        super().__init__()
        self.A1 = nn.Parameter(torch.tensor([[3.0, 0.5], [-0.5, 2.5]]))   # wide: asinh then makes two bumps
        self.c1 = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.A2 = nn.Parameter(torch.tensor([[1.0, 0.6], [-0.4, 0.9]]))
        self.c2 = nn.Parameter(torch.zeros(2))

    def f(self, z):                                              # z (N, 2) -> x (N, 2)
        return torch.asinh(z @ self.A1.T + self.c1) @ self.A2.T + self.c2

    def f_inverse(self, x):                                      # x (N, 2) -> z (N, 2)
        v = torch.linalg.solve(self.A2, (x - self.c2).T).T
        return torch.linalg.solve(self.A1, (torch.sinh(v) - self.c1).T).T


net = TinyInvertibleNet().double()
z_net = torch.randn(4, 2, dtype=torch.float64)
print("max |f^-1(f(z)) - z| =", float((net.f_inverse(net.f(z_net)) - z_net).abs().max()))

# %% [markdown]
# **Exercise 2 (the general formula with an autograd Jacobian).** Write `log_prob_change_of_variables(x, f_inverse,
# log_p_z)` returning $\log p_X(x)$ of shape `(N,)` for `x` of shape `(N, D)` (float32 or float64), where
# `f_inverse` maps `(N, D)` to `(N, D)` row by row in the dtype of `x`, and `log_p_z` maps `(N, D)` to `(N,)`.
# Get the Jacobian $\partial f^{-1}/\partial x$ with autograd, e.g. `torch.autograd.functional.jacobian` (hint:
# since row $n$ of the output depends only on row $n$ of the input, the Jacobian of `f_inverse(x).sum(0)` holds
# every per-row Jacobian at once), and its log-absolute-determinant with `torch.linalg.slogdet`. Mind the sign of
# the determinant.

# %% tags=["solution:ex2_change_of_variables"]
def log_prob_change_of_variables(x, f_inverse, log_p_z):
    """log p_X(x) = log p_Z(f^-1(x)) + log|det d f^-1 / dx|; x (N, D) -> (N,)."""
    ### BEGIN SOLUTION
    z = f_inverse(x)                                                          # (N, D)
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x)   # (D, N, D)
    jac = jac.permute(1, 0, 2)                                                # (N, D, D): d z_n / d x_n
    _, log_abs_det = torch.linalg.slogdet(jac)                                # (N,)
    return log_p_z(z) + log_abs_det
    ### END SOLUTION


# %% tags=["check:ex2_change_of_variables"]
lecture06.check_change_of_variables(log_prob_change_of_variables)

# %% [markdown]
# Now the network's density on a grid: by the formula with the autograd Jacobian, and from the other side by
# the analytic log-determinant, $\log|\det A_2^{-1}| + \sum_i \log \cosh v_i + \log|\det A_1^{-1}|$ with
# $v = A_2^{-1}(x - c_2)$ (since $\sinh' = \cosh$). A density must also integrate to one, and the samples
# $f(z)$ must follow it.

# %%
def log_p_standard_normal(z):                                    # (N, D) -> (N,)
    return Normal(0.0, 1.0).log_prob(z).sum(1)


with torch.no_grad():
    grid_pts, cell_area = plot.grid_2d(lim=4.0, n=200)
    grid_pts = grid_pts.double()
    log_p_autograd = log_prob_change_of_variables(grid_pts, net.f_inverse, log_p_standard_normal)
    v = torch.linalg.solve(net.A2, (grid_pts - net.c2).T).T
    log_det_analytic = (-torch.linalg.slogdet(net.A2)[1] + torch.log(torch.cosh(v)).sum(1)
                        - torch.linalg.slogdet(net.A1)[1])
    log_p_analytic = log_p_standard_normal(net.f_inverse(grid_pts)) + log_det_analytic
    x_net = net.f(torch.randn(50000, 2, dtype=torch.float64))
print("max |autograd - analytic| log-density:", float((log_p_autograd - log_p_analytic).abs().max()))
print(f"integral of p_X over [-4, 4]^2: {float(log_p_autograd.exp().sum() * cell_area):.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
img = log_p_autograd.exp().reshape(200, 200)
axes[0].imshow(img.numpy(), origin="lower", extent=(-4, 4, -4, 4), cmap="viridis")
axes[0].set(title="p_X by the formula (autograd Jacobian)")
axes[1].hist2d(*x_net.numpy().T, bins=120, range=[[-4, 4], [-4, 4]], cmap="viridis")
axes[1].set(title="histogram of x = f(z), z ~ N(0, I)", aspect="equal")
plt.show()

# %% [markdown]
# A Gaussian went into a two-layer network and came out with four modes: $\operatorname{asinh}$ of a wide
# Gaussian is bimodal in each coordinate, and $A_2$ shears the product. The formula tracks that exactly.
#
# Notice the price of the autograd route: the Jacobian needs $D$ backward passes (one per output), and the
# determinant $O(D^3)$ operations. Fine for $D = 2$; for an image with $D = 784$ it is hopeless inside a
# training loop. The flows that work in practice are built so that the determinant comes for free: that is
# the theme of section 5 and of lecture 07.
#
# ## 4. Planar flows for variational inference
#
# Lecture 04 fitted a simple $q$ to a posterior known only up to its normalizer, $p(z) = \tilde p(z)/Z$, by
# minimizing
#
# $$\mathrm{KL}(q\,\|\,p) = \mathbb E_{q}\big[\log q(z) - \log \tilde p(z)\big] + \log Z.$$
#
# The first term (the *free energy*, the negative ELBO) can be estimated with samples from $q$, as long as we
# can also evaluate $\log q$ at those samples. A flow gives exactly that: draw $z_0 \sim q_0$ (a Gaussian) and
# push it through $z_K = f_K \circ \dots \circ f_1(z_0)$; by the change of variables, applied layer by layer,
#
# $$\log q_K(z_K) = \log q_0(z_0) - \sum_{k=1}^K \log\left|\det \frac{\partial f_k}{\partial z_{k-1}}\right|.$$
#
# Only the *forward* direction $z_0 \to z_K$ is ever used, so the layers need not have a cheap inverse (they must
# have *an* inverse for the formula to hold), but they need a cheap determinant. Rezende and Mohamed (2015)
# proposed the **planar flow**:
#
# $$f(z) = z + u\, h(w^\top z + b), \qquad u, w \in \mathbb R^D,\ b \in \mathbb R,\ h = \tanh.$$
#
# Its Jacobian is the identity plus a rank-one matrix, $I + u\,\psi(z)^\top$ with $\psi(z) = h'(w^\top z + b)\,w$,
# and the **matrix determinant lemma** $\det(I + u\psi^\top) = 1 + \psi^\top u$ gives the determinant in $O(D)$:
#
# $$\log\left|\det \frac{\partial f}{\partial z}\right| = \log\left|1 + u^\top \psi(z)\right|.$$
#
# Geometrically, the layer moves each point along the fixed direction $u$ by an amount that depends only on its
# (signed) distance to the hyperplane $w^\top z + b = 0$: it contracts or expands space around that hyperplane.
#
# **Exercise 3 (a planar layer and its log-determinant).** Write `planar_forward(z, u, w, b)`, one layer in the
# generative direction, returning `(f(z), log_det)` with `log_det` $= \log|\det \partial f/\partial z|$ and shapes
# `(N, D)` and `(N,)`, for `z` of shape `(N, D)`, `u` and `w` of shape `(D,)` and a scalar tensor `b`, all of one
# float dtype. Use $h = \tanh$ (so $h' = 1 - \tanh^2$) and the determinant lemma, not a $D \times D$ matrix.
# Keep the absolute value: the check also tries a $u$ for which the layer is not invertible and $1 + u^\top\psi$
# can be negative. The flow below trains $u$, $w$ and $b$ through both outputs: keep them differentiable, and
# leave `z` as it is (no in-place update).

# %% tags=["solution:ex3_planar_layer"]
def planar_forward(z, u, w, b):
    """f(z) = z + u tanh(w^T z + b) and log|1 + u^T psi(z)|; z (N, D), u, w (D,), b () -> (N, D), (N,)."""
    ### BEGIN SOLUTION
    a = z @ w + b                                           # (N,) pre-activation
    h = torch.tanh(a)                                       # (N,)
    x = z + h[:, None] * u                                  # (N, D)
    psi_u = (1 - h**2) * (w @ u)                            # (N,)  psi(z)^T u = h'(a) w^T u
    log_det = torch.log(torch.abs(1 + psi_u))               # (N,)
    return x, log_det
    ### END SOLUTION


# %% tags=["check:ex3_planar_layer"]
lecture06.check_planar_layer(planar_forward)

# %% [markdown]
# ### Keeping a planar layer invertible
#
# Split $z = z_\perp + \alpha\, w/\|w\|^2$ with $w^\top z_\perp = 0$, so that $\alpha = w^\top z$. Then
# $w^\top f(z) = \alpha + w^\top u\; h(\alpha + b)$, while the part of $f(z)$ across $w$ is a shift of $z_\perp$ that
# depends on $\alpha$ only. So $f$ is invertible exactly when the scalar map $\alpha \mapsto \alpha +
# w^\top u\, h(\alpha + b)$ is, and since $0 < h' \le 1$, that holds when its derivative $1 + w^\top u\, h'(\alpha + b)$
# stays positive, which is guaranteed by
#
# $$w^\top u \ge -1.$$
#
# (Then also $1 + u^\top\psi \ge 0$, and the absolute value in the log-determinant is never needed.) Rezende and
# Mohamed enforce it by replacing the free parameter $u$ by its modification $\hat u$ along $w$:
#
# $$\hat u = u + \big(m(w^\top u) - w^\top u\big)\,\frac{w}{\|w\|^2}, \qquad m(a) = -1 + \log(1 + e^{a}),$$
#
# so that $w^\top \hat u = m(w^\top u) > -1$, while the part of $u$ across $w$ is kept and $\hat u \approx u$ when
# $w^\top u$ is already large. Inversion needs one 1-D root-find for $\alpha$ per layer; we will use it to draw
# the exact density of $q$.
#
# **Exercise 4 (the invertibility constraint).** Write `constrain_u(u, w)` returning $\hat u$ (shape `(D,)`, the
# dtype of `u`), differentiable in both `u` and `w` (the optimizer trains the free $u$ through it), without
# changing `u`. Use `F.softplus` for $\log(1 + e^a)$, which does not overflow (the naive formula gives $\infty$ in
# float32 as soon as $a > 88$).

# %% tags=["solution:ex4_constraint"]
def constrain_u(u, w):
    """u_hat = u + (m(w^T u) - w^T u) w / |w|^2 with m(a) = -1 + softplus(a); u, w (D,) -> (D,)."""
    ### BEGIN SOLUTION
    wu = w @ u                                                  # () the dangerous direction
    m = -1 + F.softplus(wu)                                     # () > -1
    return u + (m - wu) * w / (w @ w)
    ### END SOLUTION


# %% tags=["check:ex4_constraint"]
lecture06.check_constraint(constrain_u)

# %% [markdown]
# What the constraint prevents, on one layer with $w = (1, 1)$, $b = 0$ and $w^\top u = -3$. Left: the scalar map
# $\alpha \mapsto \alpha + w^\top u\, h(\alpha + b)$ that decides invertibility. With the free $u$ it goes down
# and up again, so one output has three preimages: the layer folds the plane, and points from both sides of the
# hyperplane land on top of each other (middle; colour = $w^\top z$ before the layer). With $\hat u$ it is
# increasing: the layer squeezes the plane towards the hyperplane without folding it (right).

# %%
u_bad, w_one, b_one = torch.tensor([-1.5, -1.5]), torch.tensor([1.0, 1.0]), torch.tensor(0.0)
u_good = constrain_u(u_bad, w_one)
alpha = torch.linspace(-4, 4, 200)
z_fold = torch.randn(4000, 2) * 1.5
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
for u_used, label in [(u_bad, f"free u: wᵀu = {float(w_one @ u_bad):.1f}"),
                      (u_good, f"û: wᵀû = {float(w_one @ u_good):.2f}")]:
    axes[0].plot(alpha, alpha + (w_one @ u_used) * torch.tanh(alpha + b_one), label=label)
axes[0].set(xlabel="α = wᵀz", ylabel="wᵀf(z)", title="the map along w")
axes[0].legend()
for ax, u_used, title in [(axes[1], u_bad, "free u: folds"), (axes[2], u_good, "û: invertible")]:
    x_fold, _ = planar_forward(z_fold, u_used, w_one, b_one)
    ax.scatter(*x_fold.detach().T, c=z_fold @ w_one, cmap="coolwarm", s=3, vmin=-4, vmax=4)
    ax.set(xlim=(-5, 5), ylim=(-5, 5), aspect="equal", title=title)
plt.show()

# %% [markdown]
# ### The variational family and its objective
#
# The variational distribution $q_K$: a diagonal Gaussian $q_0 = \mathcal N(\mu_0, \operatorname{diag}\sigma_0^2)$
# (learned too; with $K = 0$ it is plain Gaussian variational inference) followed by $K$ planar layers with
# constrained $\hat u_k$. Here, and only here, `forward(z0) -> (zK, log_det)` is the **generative** direction
# $z_0 \to z_K$ with `log_det` $= \sum_k \log|\det \partial f_k/\partial z_{k-1}|$, as in the paper: variational
# inference only ever samples, and the sign in $\log q_K(z_K) = \log q_0(z_0) - $ `log_det` follows from it.
# `sample(n)` returns samples with their $\log q_K$; `inverse(x) -> (z0, log_det)` undoes the layers one at a
# time by bisection on $\alpha$, which the constraint makes possible, with `log_det` $= \log|\det \partial z_0/\partial x|$,
# so that $\log q_K(x) = \log q_0(z_0) + $ `log_det`, as in every other flow of the course.
#
# Initialization matters. A layer is the identity when $\hat u = 0$, which is *not* $u = 0$: then
# $\hat u = (\log 2 - 1)\, w/\|w\|^2$ and $w^\top \hat u \approx -0.31$: each layer squeezes space along its $w$ by up
# to 31%, and 32 layers compound that into volume factors as small as $0.69^{32} \approx 10^{-5}$. We start every layer with $w^\top u = \log(e - 1)$, where $m(w^\top u) = 0$, so that $\hat u$ is only
# the tiny part of $u$ across $w$.

# %%
class PlanarFlowVI(nn.Module):
    """q_K: a diagonal Gaussian pushed through K planar layers (Rezende & Mohamed 2015)."""

    def __init__(self, K, D=2):
        super().__init__()
        self.mu0 = nn.Parameter(torch.zeros(D))
        self.log_sigma0 = nn.Parameter(torch.zeros(D))
        w = torch.randn(K, D)                                   # (K, D)
        u = 0.01 * torch.randn(K, D)                            # start near the identity: w^T u = log(e - 1)
        u = u + (math.log(math.e - 1) - (w * u).sum(1, keepdim=True)) * w / (w * w).sum(1, keepdim=True)
        self.u, self.w = nn.Parameter(u), nn.Parameter(w)       # free parameters; the layers use u_hat
        self.b = nn.Parameter(torch.zeros(K))

    def forward(self, z0):                                      # generative: z0 (N, D) -> zK, sum_k log|det df_k/dz| (N,)
        z, log_det = z0, z0.new_zeros(len(z0))
        for u, w, b in zip(self.u, self.w, self.b, strict=True):
            z, ld = planar_forward(z, constrain_u(u, w), w, b)
            log_det = log_det + ld
        return z, log_det

    def sample(self, n):                                        # -> zK (n, D), log q_K(zK) (n,)
        eps = torch.randn(n, len(self.mu0), device=self.mu0.device)
        z0 = self.mu0 + self.log_sigma0.exp() * eps
        log_q0 = Normal(0.0, 1.0).log_prob(eps).sum(1) - self.log_sigma0.sum()
        zK, log_det = self(z0)
        return zK, log_q0 - log_det

    @torch.no_grad()
    def inverse(self, x, iters=40):                             # x (N, D) -> z0 (N, D), log|det dz0/dx| (N,)
        z, log_det = x, x.new_zeros(len(x))
        for u, w, b in reversed(list(zip(self.u, self.w, self.b, strict=True))):
            u_hat = constrain_u(u, w)
            target, wu = z @ w, w @ u_hat                          # solve alpha + wu tanh(alpha + b) = w^T x
            lo, hi = target - wu.abs(), target + wu.abs()          # |tanh| < 1 brackets the root
            for _ in range(iters):
                mid = (lo + hi) / 2
                too_small = mid + wu * torch.tanh(mid + b) < target
                lo, hi = torch.where(too_small, mid, lo), torch.where(too_small, hi, mid)
            z = z - torch.tanh((lo + hi) / 2 + b)[:, None] * u_hat   # undo the move along u_hat
            log_det = log_det - planar_forward(z, u_hat, w, b)[1]
        return z, log_det

    def log_prob(self, x):                                      # log q_K(x) through the inverse, (N,)
        z0, log_det = self.inverse(x)
        eps = (z0 - self.mu0) / self.log_sigma0.exp()
        return Normal(0.0, 1.0).log_prob(eps).sum(1) - self.log_sigma0.sum() + log_det


# %%
_q = PlanarFlowVI(K=4).double()
_z = torch.randn(6, 2, dtype=torch.float64)
print("max |f^-1(f(z)) - z| through 4 random planar layers:",
      float((_q.inverse(_q(_z)[0])[0] - _z).abs().max()))

# %% [markdown]
# ### The four targets
#
# The energies $U(z)$ of Rezende and Mohamed's Table 1, with $\tilde p(z) = e^{-U(z)}$ and
# $w_1(z) = \sin(2\pi z_1/4)$, $w_2(z) = 3 e^{-\frac12((z_1 - 1)/0.6)^2}$, $w_3(z) = 3\,\sigma((z_1 - 1)/0.3)$:
#
# | | $U(z)$ |
# | --- | --- |
# | U1 | $\frac12\big(\frac{\|z\| - 2}{0.4}\big)^2 - \log\big(e^{-\frac12(\frac{z_1 - 2}{0.6})^2} + e^{-\frac12(\frac{z_1 + 2}{0.6})^2}\big)$ |
# | U2 | $\frac12\big(\frac{z_2 - w_1(z)}{0.4}\big)^2$ |
# | U3 | $-\log\big(e^{-\frac12(\frac{z_2 - w_1(z)}{0.35})^2} + e^{-\frac12(\frac{z_2 - w_1(z) + w_2(z)}{0.35})^2}\big)$ |
# | U4 | $-\log\big(e^{-\frac12(\frac{z_2 - w_1(z)}{0.4})^2} + e^{-\frac12(\frac{z_2 - w_1(z) + w_3(z)}{0.35})^2}\big)$ |
#
# U2 to U4 do not decay along $z_1$: $\int e^{-U}$ is infinite, there is no $p$, and "the" KL does not exist
# (the paper shows them inside the box $[-4, 4]^2$). To make every target a proper density we add the same soft
# wall to all four, $U(z) + (z_1/4)^8$: it adds at most 0.1 inside $|z_1| < 3$, 1 at the box's edge $|z_1| = 4$,
# 6 at $|z_1| = 5$ and 26 at $|z_1| = 6$. Inside the box the shapes are as in the paper, fading towards its
# left and right edges (U1, which decays by itself, hardly changes). Then $\log Z$ is computed by quadrature on a fine grid, in
# float64, and the KL we report is a true $\mathrm{KL}(q\,\|\,p) \ge 0$.

# %%
def _w1(z):
    return torch.sin(2 * math.pi * z[:, 0] / 4)


def _w2(z):
    return 3 * torch.exp(-0.5 * ((z[:, 0] - 1) / 0.6) ** 2)


def _w3(z):
    return 3 * torch.sigmoid((z[:, 0] - 1) / 0.3)


def _gauss_bump(t, s):                                           # the exponent -1/2 (t/s)^2
    return -0.5 * (t / s) ** 2


ENERGIES = {                                                     # each maps z (N, 2) -> U(z) (N,)
    "U1": lambda z: 0.5 * ((z.norm(dim=1) - 2) / 0.4) ** 2
    - torch.logaddexp(_gauss_bump(z[:, 0] - 2, 0.6), _gauss_bump(z[:, 0] + 2, 0.6)),
    "U2": lambda z: 0.5 * ((z[:, 1] - _w1(z)) / 0.4) ** 2,
    "U3": lambda z: -torch.logaddexp(_gauss_bump(z[:, 1] - _w1(z), 0.35),
                                     _gauss_bump(z[:, 1] - _w1(z) + _w2(z), 0.35)),
    "U4": lambda z: -torch.logaddexp(_gauss_bump(z[:, 1] - _w1(z), 0.4),
                                     _gauss_bump(z[:, 1] - _w1(z) + _w3(z), 0.35)),
}


def energy(name, z):                                             # U(z) + the wall: -log p~(z), (N,)
    return ENERGIES[name](z) + (z[:, 0] / 4) ** 8


# %%
def log_Z_quadrature(name, lim=7.0, n=QUAD_N):                 # log of the integral of e^{-U} on a grid
    axis = torch.linspace(-lim, lim, n, **CPU64)
    pts = torch.cartesian_prod(axis, axis)                      # (n*n, 2)
    return float(torch.logsumexp(-energy(name, pts), 0) + 2 * math.log(axis[1] - axis[0]))


log_Z = {name: log_Z_quadrature(name) for name in ENERGIES}
log_Z_fine = {name: log_Z_quadrature(name, lim=8.0, n=QUAD_N * 3 // 2) for name in ENERGIES}
for name in ENERGIES:
    print(f"{name}: log Z = {log_Z[name]:.6f}   (finer, wider grid: {log_Z_fine[name]:.6f})")

# %%
LIM = 5.0
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
for ax, name in zip(axes, ENERGIES, strict=True):
    plot.density_2d(lambda z, name=name: -energy(name, z.double()) - log_Z[name], ax=ax, lim=LIM, n=200,
                    title=f"{name}: p(z) = e^(-U(z)) / Z")
plt.show()

# %% [markdown]
# ### Training: minimize the free energy
#
# The loop is the lesson, so it is written out: sample from $q_K$ with the reparameterization trick (the
# gradient flows through $z_0 = \mu_0 + \sigma_0 \epsilon$ and every layer), and minimize the Monte Carlo free
# energy $\frac1N\sum_n [\log q_K(z_K^{(n)}) + \beta_t\, U(z_K^{(n)})]$. As in the paper, the inverse temperature
# $\beta_t$ rises from 0.01 to 1 over the first 30% of the steps (annealing), which lets $q$ spread over the
# target before the energy's narrow valleys pin it down; the rest trains on the true objective, with Adam's
# step size decaying along a cosine. Without annealing, $q$ tends to settle in one of U1's two modes and stay
# there (try `anneal=1e-9`).
#
# Reverse KL stays mode seeking (lecture 04): a run that commits to one of U1's two arcs ends about $\log 2$
# nats above the others. The near-identity initialization above and the annealing are there to avoid it (the
# figures below show whether each fit covers both arcs); with $u$ and $w$ initialized near zero, deep fits can
# end in one arc. Each fit is cached
# (`train_or_load`), keyed by target and depth.

# %%
def train_planar(model, name, steps, batch, lr=1e-2, anneal=0.3, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history = {"free_energy": []}
    for t in progress(range(steps), "planar flow VI steps"):
        beta = min(1.0, 0.01 + t / (anneal * steps))            # annealed inverse temperature
        zK, log_q = model.sample(batch)                         # (B, 2), (B,)
        loss = (log_q + beta * energy(name, zK)).mean()         # E_q[log q - beta log p~]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history["free_energy"].append(loss.item())
    return history


# %%
@torch.no_grad()
def kl_estimate(model, name, n, seed=1):                        # KL(q || p) = E_q[log q + U] + log Z, and its s.e.
    torch.manual_seed(seed)
    terms = []
    for _ in range(max(1, n // 50000)):                         # in chunks, to bound memory
        zK, log_q = model.sample(min(n, 50000))
        terms.append((log_q + energy(name, zK)).double().cpu())
    terms = torch.cat(terms)
    return float(terms.mean()) + log_Z[name], float(terms.std() / math.sqrt(len(terms)))


# %%
flows, kl, kl_se, histories = {}, {}, {}, {}
t_fit = time.perf_counter()
for name in ENERGIES:
    for K in DEPTHS:
        torch.manual_seed(K)                                    # the same initialization for every target
        q = PlanarFlowVI(K).to(device)
        histories[name, K] = train_or_load(q, LECTURE, f"planar_{name.lower()}_k{K}",
                                           lambda q=q, name=name: train_planar(q, name, VI_STEPS, VI_BATCH))
        flows[name, K] = q.eval()
        kl[name, K], kl_se[name, K] = kl_estimate(q, name, N_KL)
    print(f"{name}: " + "  ".join(f"K={K}: KL {kl[name, K]:.3f}" for K in DEPTHS))
print(f"{len(flows)} fits in {time.perf_counter() - t_fit:.0f} s")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for name in ENERGIES:
    axes[0].errorbar([max(K, 0.5) for K in DEPTHS], [kl[name, K] for K in DEPTHS],
                     yerr=[2 * kl_se[name, K] for K in DEPTHS], marker="o", label=name, capsize=3)
    fe = np.convolve(histories[name, DEPTHS[-1]]["free_energy"], np.ones(25) / 25, mode="valid")
    axes[1].plot(fe + log_Z[name], label=name)
axes[0].set(xscale="log", yscale="log", xlabel="number of planar layers K (K = 0 drawn at 0.5)",
            ylabel="KL(q || p) [nats]", title="KL falls with depth")
axes[0].legend()
axes[1].set(ylim=(-0.5, 3), xlabel="step", ylabel="free energy + log Z [nats]",
            title=f"training, K = {DEPTHS[-1]} (annealed, then KL)")
axes[1].legend()
plt.show()

# %% [markdown]
# The learned densities, exactly: $\log q_K(x)$ through the inverse (section "Keeping a planar layer
# invertible"), on a grid. They are precomputed here so that the widget below only selects.

# %%
GRID_N = budget(smoke=60, standard=160, full=200)
grid_q, _ = plot.grid_2d(lim=LIM, n=GRID_N)
q_images = {}
for (name, K), q in flows.items():
    with torch.no_grad():
        q_images[name, K] = q.log_prob(grid_q.to(device)).exp().cpu().reshape(GRID_N, GRID_N)
p_images = {name: (-energy(name, grid_q.double()) - log_Z[name]).exp().reshape(GRID_N, GRID_N)
            for name in ENERGIES}

# %%
fig, axes = plt.subplots(len(ENERGIES), len(DEPTHS) + 1, figsize=(2.6 * (len(DEPTHS) + 1), 2.6 * len(ENERGIES)))
for row, name in enumerate(ENERGIES):
    panels = [(p_images[name], f"{name}: target")] + [(q_images[name, K], f"K = {K}: KL {kl[name, K]:.2f}")
                                                      for K in DEPTHS]
    for ax, (img, title) in zip(axes[row], panels, strict=True):
        ax.imshow(img.numpy(), origin="lower", extent=(-LIM, LIM, -LIM, LIM), cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# Reading the figure: with $K = 0$ the best Gaussian is a compromise, one broad blob over both of U1's arcs, or
# a flat ellipse along the sine curves (narrow across them: reverse KL would rather sit inside the target than
# spill over it, lecture 04). Two layers bend it into a zigzag or carve U1's blob into two. A layer acts across
# one hyperplane only, so tracing U3's split curve and U4's second branch takes tens of them; on the way, a
# fit can get stuck in a crumpled local optimum (compare the shallow fits of U3 and U4). The widget puts one fit
# beside its target.

# %%
def show_fit(target="U1", K=DEPTHS[-1]):
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, img, title in [(axes[0], p_images[target], f"target {target}"),
                           (axes[1], q_images[target, K], f"q with K = {K} planar layers, KL = {kl[target, K]:.3f}")]:
        ax.imshow(img.numpy(), origin="lower", extent=(-LIM, LIM, -LIM, LIM), cmap="viridis")
        ax.set_title(title)
    plt.show()


widgets.interactive_plot(show_fit, target=list(ENERGIES), K=list(DEPTHS))

# %% [markdown]
# What the layers do, one at a time: samples $z_0 \sim q_0$ carried through the deepest fit of U1 in the
# generative direction, $z_k = f_k(z_{k-1})$, shown after a few of its layers. Each layer pushes the cloud along
# its own $\hat u_k$, by an amount set by the side of its hyperplane the point is on; colour follows each sample
# from start to end, so you can see which part of $q_0$ ends on which arc.

# %%
@torch.no_grad()
def planar_trajectory(q, n=2000, seed=0):                         # [z_0, z_1, ..., z_K], each (n, 2)
    gen = torch.Generator().manual_seed(seed)
    z = q.mu0 + q.log_sigma0.exp() * torch.randn(n, 2, generator=gen).to(q.mu0.device)
    path = [z]
    for u, w, b in zip(q.u, q.w, q.b, strict=True):
        z, _ = planar_forward(z, constrain_u(u, w), w, b)
        path.append(z)
    return [p.cpu() for p in path]


K_last = DEPTHS[-1]
path = planar_trajectory(flows["U1", K_last])
shown = sorted({0, 1, K_last // 4, K_last // 2, K_last})
fig, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3))
for ax, k in zip(axes, shown, strict=True):
    ax.scatter(*path[k].T, c=path[0][:, 0], cmap="coolwarm", s=2)
    ax.set(xlim=(-LIM, LIM), ylim=(-LIM, LIM), aspect="equal", title=f"U1: after {k} of {K_last} layers")
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 5. Flexibility versus the cost of the Jacobian
#
# A flow layer is a compromise between two costs. A general invertible $D \to D$ map is as flexible as it gets,
# but its log-determinant needs the full Jacobian ($D$ backward passes) and an $O(D^3)$ factorization. The planar
# layer's Jacobian is the identity plus rank one, and its determinant costs $O(D)$; the price is that one layer
# can only squeeze or stretch across a single hyperplane, so many layers are needed (the KL curves above).
#
# Measured: for a batch of points, the log-determinant of the same matrix $I + u\psi^\top$ by `slogdet` of the
# dense $D \times D$ matrix, and by the determinant lemma; and, for reference, the autograd Jacobian of a dense
# layer $x + \tanh(Wx)$ followed by `slogdet` (the "compute it honestly" route of section 3).

# %%
def best_time(fn, *args, repeats=5):                            # the fastest of a few runs, in seconds
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def log_det_dense(u, psi):                                      # (B, D) each -> (B,): build I + u psi^T, O(D^3)
    return torch.linalg.slogdet(torch.eye(u.shape[1]) + u[:, :, None] * psi[:, None, :])[1]


def log_det_lemma(u, psi):                                      # the same numbers in O(D)
    return torch.log(torch.abs(1 + (u * psi).sum(1)))


def log_det_autograd(x, W):                                     # a dense layer x + tanh(W x): D backward passes
    jac = torch.autograd.functional.jacobian(lambda v: (v + torch.tanh(v @ W.T)).sum(0), x)   # (D, B, D)
    return torch.linalg.slogdet(jac.permute(1, 0, 2))[1]


COST_BATCH = 8
cost = {"slogdet of I + u ψᵀ (dense)": [], "determinant lemma 1 + uᵀψ": [], "autograd Jacobian + slogdet": []}
for D in COST_DIMS:
    gen = torch.Generator().manual_seed(D)
    u_c, psi_c = torch.randn(2, COST_BATCH, D, generator=gen) / math.sqrt(D)            # (B, D) each
    assert torch.allclose(log_det_dense(u_c, psi_c), log_det_lemma(u_c, psi_c), atol=1e-3)
    W_c, x_c = torch.randn(D, D, generator=gen) / math.sqrt(D), torch.randn(COST_BATCH, D, generator=gen)
    cost["slogdet of I + u ψᵀ (dense)"].append(best_time(log_det_dense, u_c, psi_c))
    cost["determinant lemma 1 + uᵀψ"].append(best_time(log_det_lemma, u_c, psi_c))
    cost["autograd Jacobian + slogdet"].append(best_time(log_det_autograd, x_c, W_c, repeats=1 if D > 256 else 3))

# %%
fig, ax = plt.subplots(figsize=(6, 3.8))
for label, seconds in cost.items():
    ax.plot(COST_DIMS, np.array(seconds) / COST_BATCH * 1e6, marker="o", label=label)
ax.set(xscale="log", yscale="log", xlabel="dimension D", ylabel="time per point [µs]",
       title="the price of a log-determinant")
ax.legend(fontsize=8)
plt.show()
for D, dense_s, lemma_s in zip(COST_DIMS, cost["slogdet of I + u ψᵀ (dense)"], cost["determinant lemma 1 + uᵀψ"],
                               strict=True):
    print(f"D = {D:5d}: dense slogdet / lemma = {dense_s / lemma_s:9.1f}x")

# %% [markdown]
# At small $D$ both are dominated by fixed overheads; as $D$ grows the dense determinant grows like $D^3$
# (a line of slope 3 on this plot, once the overheads are paid) and the lemma like $D$. For a 784-pixel image
# the dense route is already orders of magnitude slower per layer and per point, and the autograd Jacobian on
# top of it is slower still. Lecture 07 gets both flexibility and a cheap determinant differently: coupling
# and autoregressive layers have *triangular* Jacobians, whose determinant is the product of the diagonal.
#
# ## Results
#
# The headline numbers: the planar-flow $\mathrm{KL}(q\,\|\,p)$ for each target and depth (in nats; the Monte
# Carlo standard error is printed beside each), and the 1-D CDF flow's test NLL with its gap to the true
# density's.

# %%
for name in ENERGIES:
    for K in DEPTHS:
        record(LECTURE, f"planar_kl_{name.lower()}_k{K}", kl[name, K], "nats", n_data=N_KL,
               wall_time_s=time.perf_counter() - T0,
               note=f"KL(q||p) = E_q[log q + U] + log Z (grid quadrature); s.e. {kl_se[name, K]:.4f}; "
                    f"{VI_STEPS} steps of batch {VI_BATCH}")
record(LECTURE, "cdf_flow_test_nll", cdf_test_nll, "nats", n_data=len(x_test_1d),
       wall_time_s=time.perf_counter() - T0, note=f"true density: {true_test_nll:.4f} nats")
record(LECTURE, "cdf_flow_nll_gap", cdf_test_nll - true_test_nll, "nats", n_data=len(x_test_1d),
       wall_time_s=time.perf_counter() - T0, note="test NLL of the CDF flow minus that of the true density")
falling = [name for name in ENERGIES if all(kl[name, k1] > kl[name, k2] for k1, k2 in zip(DEPTHS[:-1], DEPTHS[1:], strict=True))]
print(f"KL falls at every added depth on {len(falling)} of {len(ENERGIES)} targets ({', '.join(falling)})")
print(f"whole notebook: {time.perf_counter() - T0:.0f} s in {MODE} mode")

# %% [markdown]
# **Discussion.** Measured in standard mode (6000 steps per fit): from $K = 0$ to $K = 32$ the KL drops from
# 1.5<!-- r:planar_kl_u4_k0 --> to 3.2<!-- r:planar_kl_u1_k0 --> nats (the best Gaussian) to between
# 0.002<!-- r:planar_kl_u2_k32 --> and 0.02<!-- r:planar_kl_u4_k32 --> nats on all four targets, and it falls at
# every added depth on all four (e.g. U4: 1.48<!-- r:planar_kl_u4_k0 -->, 0.81<!-- r:planar_kl_u4_k2 -->,
# 0.30<!-- r:planar_kl_u4_k8 -->, 0.019<!-- r:planar_kl_u4_k32 --> nats for $K$ = 0, 2, 8, 32). That is not
# guaranteed by a single run: $q_K$ can copy any $q_{K'}$ with $K' < K$ by making the extra layers the identity
# ($\hat u = 0$), so the *best* KL can only fall with depth, but a fit can get stuck in a crumpled local optimum:
# with fewer steps, a deeper fit can end above a shallower one, and the 2-layer fits change noticeably with the
# run length (try `VI_STEPS = 3000`): shallow planar flows have many poor optima. Look at the figure. The line printed above counts the targets where every added depth helped. Our numbers are not
# directly comparable with the paper's: the soft wall makes U2 to U4 proper densities, our $q_0$ is a learned
# diagonal Gaussian, and we train for a few thousand Adam steps rather than the paper's 500 000 RMSprop
# updates (the `full` mode trains longer and deeper).
#
# ## Summary
#
# - An invertible, differentiable $f$ gives an exact density: $\log p_X(x) = \log p_Z(f^{-1}(x)) +
#   \log|\det \partial f^{-1}/\partial x|$. The determinant is the local volume factor; for a linear map, the
#   volume of the parallelotope, $|\det A|$.
# - In 1-D, a learned CDF is a flow to the uniform; its derivative is the density and inverting it samples.
# - For variational inference a flow makes $q$ flexible while keeping $\log q$ at its own samples exact, which is
#   all the reverse KL needs. Planar layers get their determinant from the matrix determinant lemma in $O(D)$ and
#   stay invertible by the constraint $w^\top \hat u \ge -1$.
# - The general Jacobian determinant costs $D$ backward passes and $O(D^3)$; cheap layers are less expressive,
#   and we pay with depth.
#
# ## References
#
# - D. J. Rezende and S. Mohamed, *Variational Inference with Normalizing Flows*, ICML 2015.
#   [arXiv:1505.05770](https://arxiv.org/abs/1505.05770) (planar and radial flows, the four energy functions,
#   the constraint on $u$).
# - G. Papamakarios, E. Nalisnick, D. J. Rezende, S. Mohamed, B. Lakshminarayanan, *Normalizing Flows for
#   Probabilistic Modeling and Inference*, JMLR 2021. [arXiv:1912.02762](https://arxiv.org/abs/1912.02762)
# - I. Kobyzev, S. Prince, M. Brubaker, *Normalizing Flows: An Introduction and Review of Current Methods*,
#   IEEE TPAMI 2020. [arXiv:1908.09257](https://arxiv.org/abs/1908.09257)
# - E. G. Tabak and C. V. Turner, *A Family of Nonparametric Density Estimation Algorithms*, Communications on
#   Pure and Applied Mathematics 2013. [doi:10.1002/cpa.21423](https://doi.org/10.1002/cpa.21423)
# - J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel, *Flow++: Improving Flow-Based Generative Models with
#   Variational Dequantization and Architecture Design*, ICML 2019 (mixture-of-logistics CDF layers).
#   [arXiv:1902.00275](https://arxiv.org/abs/1902.00275)
# - R. van den Berg, L. Hasenclever, J. M. Tomczak, M. Welling, *Sylvester Normalizing Flows for Variational
#   Inference*, UAI 2018 (planar flows generalized to rank $M$ updates). [arXiv:1803.05649](https://arxiv.org/abs/1803.05649)
# - L. Dinh, D. Krueger, Y. Bengio, *NICE: Non-linear Independent Components Estimation*, 2014 (next lecture).
#   [arXiv:1410.8516](https://arxiv.org/abs/1410.8516)
