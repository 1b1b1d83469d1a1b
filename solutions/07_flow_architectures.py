# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 07 — Flow architectures
#
# Lecture 06 set up a flow as a **generative map** $x = f(z)$, from a latent $z$ with a simple base density
# $p_Z$ to the data $x$, with $f$ invertible, and gave its exact density by the change of variables:
#
# $$\log p_X(x) = \log p_Z\big(f^{-1}(x)\big) + \log \left|\det \frac{\partial f^{-1}(x)}{\partial x}\right| .$$
#
# Training needs the direction data $\to$ latent, $z = f^{-1}(x)$, with its log-determinant; sampling needs the
# direction latent $\to$ data, $x = f(z)$. The code of both lectures names them the same way:
#
# | method | computes | returns |
# | --- | --- | --- |
# | `forward(x)` | $z = f^{-1}(x)$: data to latent (density, training) | `(z, log_det)`, `log_det` $= \log\lvert\det \partial f^{-1}(x)/\partial x\rvert$ |
# | `inverse(z)` | $x = f(z)$: latent to data (sampling) | `(x, log_det)`, `log_det` $= \log\lvert\det \partial f(z)/\partial z\rvert$ |
#
# so that `log_prob(x) = base.log_prob(z) + log_det` with `(z, log_det) = forward(x)`, and at a matching pair
# $x = f(z)$ the two log-dets are negatives of each other. (Lecture 06's planar flows for variational inference
# are the one exception, and say so: they only sample, and their `forward` runs the generative direction.)
#
# Lecture 06 also showed the catch: a general $D \times D$ determinant costs $O(D^3)$. This lecture builds the
# architectures that make the determinant cheap *and* keep the map expressive.
#
# **Learning goals**
# 1. Compose flows and add their log-determinants; see why triangular Jacobians make the determinant a product.
# 2. Write the NICE/RealNVP **coupling layer** (forward, inverse, log-det), train it on 2-D data and on
#    dequantized MNIST, and report **bits per dimension** with the logit preprocessing accounted for.
# 3. Build **MAF** and **IAF** from a MADE and measure the price of each: one is fast for densities and
#    sequential for sampling, the other the reverse.
# 4. See an autoregressive model as a flow, and train an IAF **student** to copy a MAF **teacher** by minimizing
#    $\mathrm{KL}(q_\text{student} \,\|\, p_\text{teacher})$.
# 5. Understand **dequantization**: why a continuous density on discrete data needs it, and what it bounds.
#
# **Builds on** lecture 06 (change of variables, log-determinants) and lecture 02 (MADE; recapped below).

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import budget, fit, mnist, plot, record, setup, toy, train_or_load, widgets
from dgm_course.exercises import lecture07
from dgm_course.runtime import progress

device, MODE = setup(seed=0)
LECTURE = "07_flow_architectures"
T0 = time.perf_counter()

# %% [markdown]
# ## 1. Composition and triangular Jacobians
#
# Flows compose. Write the generative map as layers, $x = f(z) = f_1 \circ f_2 \circ \dots \circ f_K(z)$, and run it
# backwards from the data: $h_0 = x$, $h_k = f_k^{-1}(h_{k-1})$, ..., $h_K = z$. The chain rule makes the
# Jacobian of $f^{-1}$ a product and its log-determinant a **sum**:
#
# $$\log p_X(x) = \log p_Z(z) + \sum_{k=1}^{K} \log\left|\det \frac{\partial f_k^{-1}(h_{k-1})}{\partial h_{k-1}}\right| ,
# \qquad \frac{\partial f_k^{-1}(h_{k-1})}{\partial h_{k-1}} = \frac{\partial h_k}{\partial h_{k-1}} .$$
#
# So each layer only has to return its output and its own log-determinant: layer $k$'s `forward` computes
# $h_k = f_k^{-1}(h_{k-1})$ with $\log|\det \partial h_k/\partial h_{k-1}|$, and its `inverse` computes
# $h_{k-1} = f_k(h_k)$ with $\log|\det \partial h_{k-1}/\partial h_k| = -\log|\det \partial h_k/\partial h_{k-1}|$.
#
# The determinant is cheap when the Jacobian is **triangular**: then it is the product of the diagonal,
# $O(D)$ instead of $O(D^3)$. Both families of this lecture get a triangular Jacobian from the same idea:
# output $i$ may depend on inputs that come "before" it, and on input $i$ itself only through an invertible
# scalar map.
#
# The class below is the composition, with the likelihood-model interface (`loss(x)`, `sample(n)`) on top of the
# flow interface; the base density is a standard normal.

# %%
def std_normal_log_prob(z):
    """log N(z; 0, I) per sample, z of shape (B, ...)."""
    z = z.flatten(1)                                                      # (B, D)
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class Flow(nn.Module):
    """x = f(z) with f = f_1 o ... o f_K: forward runs the layers' forward passes (f^-1, data to latent) in order,
    inverse their inverses (f, latent to data) in reverse order; the log-dets add."""

    def __init__(self, layers, event_shape):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.event_shape = tuple(event_shape)

    def forward(self, x):                                                 # z = f^-1(x), log|det df^-1/dx| (B,)
        log_det = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z):                                                 # x = f(z), log|det df/dz| (B,)
        log_det = z.new_zeros(len(z))
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, x):                                                # log p_Z(f^-1(x)) + log|det df^-1/dx|
        z, log_det = self(x)
        return std_normal_log_prob(z) + log_det                           # (B,)

    def loss(self, x):                                                    # the likelihood-model interface
        return -self.log_prob(x).mean()                                   # nats per example

    @torch.no_grad()
    def sample(self, n, temperature=1.0, generator=None):
        device = next(self.parameters()).device
        z = temperature * torch.randn(n, *self.event_shape, generator=generator).to(device)
        return self.inverse(z)[0]                                         # x = f(z)


# %% [markdown]
# ## 2. NICE and RealNVP: coupling layers
#
# A **coupling layer** splits its input with a binary mask $b$: the entries with $b = 1$ pass through unchanged
# and condition an invertible elementwise map of the others. NICE (Dinh et al., 2014) used an additive shift;
# RealNVP (Dinh et al., 2017) an affine one. For one layer, call its input on the data side $x$ and its output
# on the latent side $z$. Its `forward`, $z = f^{-1}(x)$, is
#
# $$z = b \odot x + (1 - b) \odot \big(x \odot e^{s(b \odot x)} + t(b \odot x)\big),$$
#
# with $s, t$ arbitrary networks of $b \odot x$ (the *conditioner*). Ordering the entries with $b = 1$ first, its
# Jacobian is block triangular,
#
# $$\frac{\partial f^{-1}(x)}{\partial x} = \frac{\partial z}{\partial x} = \begin{pmatrix} I & 0 \\ \ast & \operatorname{diag}(e^{s}) \end{pmatrix},
# \qquad \log\left|\det \frac{\partial f^{-1}(x)}{\partial x}\right| = \sum_{i:\, b_i = 0} s_i(b \odot x),$$
#
# and its `inverse`, the generative direction $x = f(z)$, is just as cheap, because $b \odot z = b \odot x$ gives
# back the conditioner's input:
#
# $$x = b \odot z + (1 - b) \odot \big(z - t(b \odot z)\big) \odot e^{-s(b \odot z)}, \qquad
# \log\left|\det \frac{\partial f(z)}{\partial z}\right| = -\sum_{i:\, b_i = 0} s_i(b \odot z).$$
#
# (The RealNVP paper writes the layer in the same data-to-latent direction.) The networks $s, t$ are never
# inverted, so they can be anything. One layer leaves half the entries alone, so the masks **alternate**
# ($b$, then $1 - b$) from layer to layer.
#
# ### Exercise 1: the affine coupling layer
# Write the `forward` and `inverse` methods of `AffineCoupling`, a whole RealNVP coupling layer under the
# convention of the table above. Given, in `__init__`: the mask $b$ (`self.mask`, 0/1, of the shape of one input
# without its batch dimension: $(D,)$ for vectors $x$ of shape $(B, D)$, $(C, H, W)$ for images $(B, C, H, W)$)
# and the conditioner `self.conditioner`, a network that maps $b \odot x$ to $(s, t)$, each of the shape of $x$.
# The conditioner does not know the mask: its $s$ and $t$ are in general nonzero where $b = 1$ too, and only the
# entries with $b = 0$ may use them.
# - `forward(x)` returns `(z, log_det)`: $z = f^{-1}(x)$ as above, of the shape of $x$, and
#   `log_det` $= \log|\det \partial f^{-1}(x)/\partial x|$ of shape $(B,)$, one number per sample.
# - `inverse(z)` returns `(x, log_det)`: $x = f(z)$, and `log_det` $= \log|\det \partial f(z)/\partial z|$, $(B,)$.
#
# Any float dtype may come in. Keep the log-determinant a sum of logs: on a $28 \times 28$ image in float32 the
# product of the scales $e^{s_i}$ can exceed $10^{38}$. Do not modify the input in place, and keep everything
# differentiable: the lecture trains the conditioner through both outputs of `forward`. The check tests the
# properties, not the code: `inverse(forward(x))` $= x$ and `forward(inverse(z))` $= z$; both log-dets against
# `slogdet` of the autograd Jacobian in float64; the entries with $b = 1$ passed through; and 30 Adam steps on
# the NLL of a fixed 2-D batch, with a three-layer flow built from your class, lowering it as much as a correct
# layer does. Every RealNVP of this lecture, in 2-D and on MNIST, is then built from your class.

# %% tags=["solution:ex1_coupling"]
class AffineCoupling(nn.Module):
    """RealNVP affine coupling (Dinh et al., 2017): forward z = f^-1(x), inverse x = f(z); x (B, D) or (B, C, H, W)."""

    def __init__(self, mask, conditioner):
        super().__init__()
        self.register_buffer("mask", mask.float().contiguous())           # b, of x.shape[1:]; its own memory
        self.conditioner = conditioner                                    # b * x -> (s, t), each of x's shape

    def forward(self, x):
        """z = b x + (1 - b)(x exp(s) + t) with (s, t) = conditioner(b x); returns (z, log|det dz/dx|), (B,)."""
        ### BEGIN SOLUTION
        s, t = self.conditioner(self.mask * x)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t                   # only the transformed entries
        z = self.mask * x + (1 - self.mask) * (x * s.exp() + t)
        return z, s.flatten(1).sum(1)
        ### END SOLUTION

    def inverse(self, z):
        """x = b z + (1 - b)(z - t) exp(-s) with (s, t) = conditioner(b z); returns (x, log|det dx/dz|), (B,)."""
        ### BEGIN SOLUTION
        s, t = self.conditioner(self.mask * z)                            # b z = b x: the same (s, t)
        s, t = (1 - self.mask) * s, (1 - self.mask) * t
        x = self.mask * z + (1 - self.mask) * (z - t) * torch.exp(-s)
        return x, -s.flatten(1).sum(1)
        ### END SOLUTION


# %% tags=["check:ex1_coupling"]
lecture07.check_coupling(AffineCoupling)

# %% [markdown]
# The conditioner for vectors is a small MLP; its last layer starts at zero so that every coupling starts as the
# identity, and $s$ is squashed by $\tanh$ with a learned scale so that $e^{s}$ cannot explode early in training.

# %%
class MLPConditioner(nn.Module):
    """(s, t) = net(b x) for vectors (B, D): an MLP with a zero last layer and s = scale * tanh(.)."""

    def __init__(self, d, hidden=64, n_hidden=2):
        super().__init__()
        sizes = [d] + [hidden] * n_hidden
        body = [m for a, b in zip(sizes[:-1], sizes[1:], strict=True) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*body, nn.Linear(hidden, 2 * d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.s_scale = nn.Parameter(torch.ones(d))

    def forward(self, x_masked):                                          # (B, D) -> s, t: (B, D) each
        s, t = self.net(x_masked).chunk(2, dim=1)
        return self.s_scale * torch.tanh(s), t


# %% [markdown]
# A coupling layer's Jacobian, seen by autograd: on a 6-D input with the mask $b = (1, 0, 1, 0, 1, 0)$, the
# entries with $b = 1$ have identity rows, the others depend on the conditioning entries and on themselves only.
# Stacking two layers with alternating masks fills in the matrix; the log-determinants add.

# %%
torch.manual_seed(1)
b = torch.tensor([1.0, 0, 1, 0, 1, 0])
layers = [AffineCoupling(b, MLPConditioner(6, hidden=16)), AffineCoupling(1 - b, MLPConditioner(6, hidden=16))]
for layer in layers:                                                     # random, non-identity couplings
    nn.init.normal_(layer.conditioner.net[-1].weight, std=0.5)
two = Flow(layers, event_shape=(6,))
x0 = torch.randn(6)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
for ax, (name, f) in zip(axes, [("layer 1", layers[0]), ("layer 2", layers[1]), ("composition", two)], strict=True):
    jac = torch.autograd.functional.jacobian(lambda v, f=f: f(v[None])[0][0], x0)     # (6, 6)
    ax.imshow(jac.abs().detach() > 1e-7, cmap="Greys")
    ax.set_title(f"{name}: nonzero dz_i/dx_j")
    ax.set_xlabel("input j")
    ax.set_ylabel("output i")
jac = torch.autograd.functional.jacobian(lambda v: two(v[None])[0][0], x0)
print(f"log|det J| of the composition: slogdet {torch.linalg.slogdet(jac)[1].item():.5f}, "
      f"sum of the layers' log-dets {two(x0[None])[1].item():.5f}")

# %% [markdown]
# ### RealNVP on 2-D data
#
# In 2-D the mask is $(1, 0)$ or $(0, 1)$: each layer moves one coordinate by an affine map whose scale and
# shift are a function of the other. Two sets: the two moons and the checkerboard (`dgm_course.toy`), each with
# a training set, a validation set and a test set drawn with different seeds. The checkerboard is uniform on
# 8 unit squares, so its true NLL is $\log 8 = 2.08$ nats; no smooth flow reaches it, since the density jumps.

# %%
N_TOY = budget(smoke=2000, standard=20000, full=50000)
TOY_EPOCHS = budget(smoke=1, standard=30, full=200)
toy_data = {name: {split: toy.toy_2d(name, n, seed=seed) for split, n, seed in
                   (("train", N_TOY, 0), ("val", 2000, 1), ("test", 5000, 2))}
            for name in ("moons", "checkerboard")}


def real_nvp_2d(depth=8, hidden=64):
    masks = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    return Flow([AffineCoupling(masks[k % 2], MLPConditioner(2, hidden)) for k in range(depth)],
                event_shape=(2,)).to(device)


# %%
nvp2d, hist2d = {}, {}
for name, data in toy_data.items():
    torch.manual_seed(0)
    nvp2d[name] = real_nvp_2d()
    hist2d[name] = train_or_load(nvp2d[name], LECTURE, f"realnvp_{name}_2d", lambda m=nvp2d[name], d=data: fit(
        m, d["train"], d["val"], epochs=TOY_EPOCHS, batch_size=512, lr=2e-3))
    print(f"{name}: val NLL {hist2d[name]['val_loss'][-1]:.3f} nats after {len(hist2d[name]['val_loss'])} epochs")

# %% [markdown]
# Test NLL (nats per point), the learned densities and samples. Samples come from the inverse pass, which for a
# coupling flow costs the same as the density.

# %%
@torch.no_grad()
def test_nll(model, x, batch=1000):
    return torch.cat([-model.log_prob(x[i:i + batch].to(device)) for i in range(0, len(x), batch)]).mean().item()


nll2d = {name: test_nll(nvp2d[name], toy_data[name]["test"]) for name in nvp2d}
fig, axes = plt.subplots(2, 3, figsize=(10, 6.6))
for row, name in zip(axes, nvp2d, strict=True):
    plot.scatter_2d(toy_data[name]["test"][:2000], ax=row[0], lim=3.5, title=f"{name}: test data")
    plot.density_2d(nvp2d[name].log_prob, ax=row[1], lim=3.5, device=device,
                    title=f"RealNVP density, NLL {nll2d[name]:.3f}")
    plot.scatter_2d(nvp2d[name].sample(2000, generator=torch.Generator().manual_seed(0)).cpu(), ax=row[2],
                    lim=3.5, title="RealNVP samples", color="C1")
plt.tight_layout()

# %% [markdown]
# ### Layer by layer: how the flow warps space
#
# Watch the generative direction: start from the Gaussian $z = h_K$ and apply the layers' inverses one at a
# time, $h_{k-1} = f_k(h_k)$. After $d$ of them, $h_{K-d}$ has the density
# $\log p(h_{K-d}) = \log \mathcal N(z) + \sum_{k > K-d} \log|\det \partial h_k/\partial h_{k-1}|$, computed by
# running only the last $d$ forward layers. Below, each depth shows that density and where a square grid of
# $z$ has been carried. Precomputed here, so the slider only selects.

# %%
@torch.no_grad()
def depth_frames(flow, lim=3.5, n=120, n_lines=17):
    pts, _ = plot.grid_2d(lim, n)                                         # (n*n, 2)
    ticks = torch.linspace(-2.5, 2.5, n_lines)
    fine = torch.linspace(-2.5, 2.5, 100)
    lines = torch.cat([torch.stack(torch.broadcast_tensors(a, fine), -1) for a in ticks] +
                      [torch.stack(torch.broadcast_tensors(fine, a), -1) for a in ticks])   # (2*n_lines*100, 2)
    layers = list(flow.layers)
    frames = []
    for d in range(len(layers) + 1):
        h, log_det = pts.to(device), torch.zeros(len(pts), device=device)
        for layer in layers[len(layers) - d:]:                            # the last d forward layers
            h, ld = layer(h)
            log_det = log_det + ld
        density = (std_normal_log_prob(h) + log_det).exp().reshape(n, n).cpu()
        g = lines.to(device)
        for layer in reversed(layers[len(layers) - d:]):                  # z-grid through d inverse layers
            g = layer.inverse(g)[0]
        frames.append((density, g.reshape(2 * n_lines, 100, 2).cpu()))
    return frames


frames = {name: depth_frames(flow) for name, flow in nvp2d.items()}

# %%
def show_depth(data="checkerboard", depth=8):
    density, grid = frames[data][depth]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(density, origin="lower", extent=(-3.5, 3.5, -3.5, 3.5), cmap="viridis")
    axes[0].set_title(f"density after {depth} of {len(frames[data]) - 1} inverse layers")
    for line in grid:
        axes[1].plot(line[:, 0], line[:, 1], lw=0.6, color="C0")
    axes[1].set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", title="a square z-grid, carried along")
    plt.show()


widgets.interactive_plot(show_depth, data=["checkerboard", "moons"], depth=widgets.slider(8, 0, 8, description="depth"))

# %% [markdown]
# At depth 0 both panels show the Gaussian. Each inverse layer bends the grid along one axis only (the other
# coordinate is the conditioning half), which is why depth matters: the checkerboard's eight squares need many
# alternating shears, and the sharp edges stay blurred.

# %% [markdown]
# ## 3. Dequantization
#
# MNIST pixels are integers $k \in \{0, \dots, 255\}$. A continuous density fitted to integers can cheat: a
# spike of width $\sigma$ on every integer has a log-density that grows like $-\log\sigma$ without bound, so
# maximum likelihood degenerates. **Uniform dequantization** fits the density to $v = k + u$,
# $u \sim \mathcal U[0, 1)^D$ instead. The continuous model $p$ then defines a discrete one,
# $P(k) = \int_{[0,1)^D} p(k + u)\, du$, and by Jensen's inequality
#
# $$\log P(k) = \log \mathbb E_{u}\big[p(k + u)\big] \;\ge\; \mathbb E_{u}\big[\log p(k + u)\big] .$$
#
# So the dequantized NLL is an **upper bound** on the NLL of a genuine discrete model, which a coder could use
# to compress the integers (lecture 03): bits/dim on dequantized data are honest bits. The bound is tight when
# $p$ is constant on each unit cube. **Variational dequantization** (Flow++, Ho et al., 2019) replaces the
# uniform $u$ by a learned $q(u \mid k)$ and tightens the bound to
# $\log P(k) \ge \mathbb E_{q}[\log p(k + u) - \log q(u \mid k)]$.
#
# A 1-D picture: integers from a distribution $P$ on $\{0, \dots, 7\}$, and a mixture of Gaussians of width
# $\sigma$ with weights $P$, centred on the integers (for raw data) or on the cell centres $k + 1/2$ (for
# dequantized data).

# %%
P = torch.tensor([0.05, 0.1, 0.3, 0.2, 0.15, 0.1, 0.07, 0.03])
cells = torch.arange(8.0)
gen = torch.Generator().manual_seed(0)
k_int = torch.multinomial(P, 20000, replacement=True, generator=gen).float()    # (N,)
v = k_int + torch.rand(20000, generator=gen)                                     # dequantized


def mixture_nll(x, sigma, centres):
    comp = torch.distributions.Normal(centres, sigma).log_prob(x[:, None]) + P.log()   # (N, 8)
    return -torch.logsumexp(comp, 1).mean().item()


sigmas = torch.logspace(-3, 0.5, 60)
entropy = -(P * P.log()).sum().item()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogx(sigmas, [mixture_nll(k_int, s, cells) for s in sigmas], label="fitted to the raw integers")
ax.semilogx(sigmas, [mixture_nll(v, s, cells + 0.5) for s in sigmas], label="fitted to k + u (dequantized)")
ax.axhline(entropy, color="k", ls="--", lw=1, label=f"entropy of P = {entropy:.3f} nats")
ax.set(xlabel="width sigma of each Gaussian", ylabel="NLL (nats)", ylim=(-3, 6))
ax.legend()
plt.show()

# %% [markdown]
# On raw integers the NLL falls without limit as the spikes narrow. On dequantized data it never goes below
# the entropy of $P$ (the best any discrete model can do); the histogram, a density constant on each cell,
# would reach it exactly.
#
# ### The logit transform and bits per dimension
#
# The course's continuous MNIST is $x = (k + u)/256 \in (0, 1)^{784}$. A Gaussian-based flow lives on
# $\mathbb R^D$, and most MNIST pixels sit on the boundary $x \approx 0$, so RealNVP first maps each pixel
# through a logit, squeezed by $\alpha$ away from 0 and 1:
#
# $$y = \operatorname{logit}(s), \quad s = \alpha + (1 - 2\alpha)\, x, \qquad
# \frac{dy}{dx} = \frac{1 - 2\alpha}{s(1 - s)} .$$
#
# The flow models $y$; the likelihood of $x$ needs the Jacobian of the preprocessing, and the 8-bit scale
# $k + u = 256\,x$ another $-D \log 256$:
#
# $$\log p(k + u) = \log p_Y(y) + \sum_{i=1}^{D} \log\frac{dy_i}{dx_i} - D \log 256, \qquad
# \text{bits/dim} = \frac{-\log p(k + u)}{D \log 2} .$$
#
# Reporting $-\log p_Y(y)$ alone (the flow's own loss) is not comparable across preprocessings: it can be
# made as small as you like by squeezing the data.
#
# ### Exercise 2: bits per dimension through the logit
# Write `bits_per_dim(log_p_y, x, alpha)`: from the flow's log-density $\log p_Y(y)$ (shape $(B,)$, nats) of
# $y = \operatorname{logit}(\alpha + (1 - 2\alpha)x)$ and the dequantized images $x$ (shape $(B, \dots)$,
# values in $(0, 1)$; float32 or float64, $D$ up to $784$), return the bits per dimension of each image on the
# 8-bit scale, shape $(B,)$. Keep the Jacobian in log space (a sum of $D$ logs: the product of 784 factors
# $dy/dx \ge 4$ overflows even float64), and leave `x` as it is. The check uses a model that is uniform on
# $(0,1)^D$ (exactly 8 bits/dim) and a Beta(2, 2) model.

# %% tags=["solution:ex2_bits_per_dim"]
def bits_per_dim(log_p_y, x, alpha):
    """Bits/dim on the 8-bit scale (B,) of dequantized x (B, ...) from log p_Y(logit(alpha + (1 - 2 alpha) x))."""
    ### BEGIN SOLUTION
    s = alpha + (1 - 2 * alpha) * x
    log_dy_dx = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)   # (B,)
    d = x[0].numel()
    log_p_x = log_p_y + log_dy_dx                                         # density of x in (0, 1)^D
    return -(log_p_x - d * math.log(256)) / (d * math.log(2))
    ### END SOLUTION


# %% tags=["check:ex2_bits_per_dim"]
lecture07.check_bits_per_dim(bits_per_dim)

# %% [markdown]
# ## 4. RealNVP on dequantized MNIST
#
# The data: the training images, dequantized afresh each time a batch is drawn; the course's test set
# (`mnist.test_split`, the same images in every lecture of a mode), dequantized once with a fixed seed.
# Dequantization is written here (device-agnostic: the noise is drawn where the batch lives).

# %%
N_TRAIN = budget(smoke=256, standard=60000, full=60000)
train_images, _ = mnist.load_mnist("train", n=N_TRAIN)                   # uint8 (N, 28, 28)
test_images, _ = mnist.test_split(smoke=100)                             # uint8, the mode's test set
x_test = mnist.dequantize(test_images, generator=torch.Generator().manual_seed(0))   # (N_test, 1, 28, 28)


def dequantize(k):
    """uint8 (B, 28, 28) -> x = (k + u) / 256, float (B, 1, 28, 28), u ~ U[0, 1)."""
    k = k.float().unsqueeze(1)
    return (k + torch.rand_like(k)) / 256


ALPHA = 1e-6                                                              # the logit's squeeze (as in MAF)


def logit(x):
    s = ALPHA + (1 - 2 * ALPHA) * x
    return torch.log(s) - torch.log1p(-s)


def unlogit(y):
    return ((torch.sigmoid(y) - ALPHA) / (1 - 2 * ALPHA)).clamp(0, 1)


# %% [markdown]
# **Architecture.** Flattening the image and using MLP conditioners works (that is the 2-D model with $D=784$),
# but it ignores that neighbouring pixels are alike; the RealNVP paper instead uses convolutional conditioners
# and two kinds of masks: a **checkerboard** over pixels, and a **channel** split after a *squeeze* that
# turns each $2\times2$ block of pixels into 4 channels ($1{\times}28{\times}28 \to 4{\times}14{\times}14$,
# a permutation, log-det 0). Each coupling is preceded by an **ActNorm** layer (after Glow, Kingma & Dhariwal
# 2018): a learned elementwise affine map $h \mapsto (h + \beta)\, e^{\ell}$ with log-det $\sum \ell$, initialized
# from the first batch so that its output has zero mean and unit variance. Glow's ActNorm has one $\beta$ and one
# $\ell$ per *channel*; ours has one per entry (784 of each at $1 \times 28 \times 28$), a choice that suits a
# one-channel image whose border pixels are almost constant. The coupling layer is your `AffineCoupling` of
# exercise 1; only the conditioner is convolutional.

# %%
class ActNorm(nn.Module):
    """h -> (h + b) exp(logs) per feature, initialized from the first batch it sees (Kingma & Dhariwal, 2018)."""

    def __init__(self, shape):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(shape))
        self.logs = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, h):
        if not self.initialized:                                          # data-dependent initialization
            with torch.no_grad():
                self.b.copy_(-h.mean(0))
                self.logs.copy_(-(h.std(0) + 1e-3).log())
                self.initialized.fill_(True)
        return (h + self.b) * self.logs.exp(), self.logs.sum().expand(len(h))

    def inverse(self, y):
        return y * torch.exp(-self.logs) - self.b, -self.logs.sum().expand(len(y))


class Squeeze(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block of pixels becomes 4 channels (log-det 0)."""

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, z):
        b, c, h, w = z.shape
        z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(b, c // 4, 2 * h, 2 * w), z.new_zeros(b)


# %%
class ConvConditioner(nn.Module):
    """(s, t) = net(b x) for images (B, C, H, W): a small convolutional network, zero last layer, s = scale * tanh."""

    def __init__(self, c, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * c, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.s_scale = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x_masked):                                          # (B, C, H, W) -> s, t
        s, t = self.net(x_masked).chunk(2, dim=1)
        return self.s_scale * torch.tanh(s), t


def checkerboard(c, h, w, parity):
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2).expand(c, h, w)


def channel_mask(c, h, w, parity):
    return (torch.arange(c) < c // 2).roll(parity * (c // 2)).float()[:, None, None].expand(c, h, w)


# %% [markdown]
# The model: couplings with alternating checkerboards at $28\times28$, a squeeze, then couplings at
# $14\times14$ alternating channel and checkerboard masks. Its `loss` is the flow's NLL of $y$ in nats per image
# ("logit space", what the MAF paper reports), which differs from the NLL of $x$ by the logit's Jacobian, a
# constant with respect to the parameters: the same gradients.

# %%
class ImageFlow(Flow):
    """A flow over y = logit(alpha + (1 - 2 alpha) x) of images x (B, 1, 28, 28) in (0, 1)."""

    def loss(self, x):
        return -self.log_prob(logit(x)).mean()

    def sample_images(self, n, temperature=1.0, generator=None):
        return unlogit(self.sample(n, temperature, generator))


def real_nvp_mnist(n_28=4, n_14=4, hidden=32):
    layers = []
    for k in range(n_28):
        layers += [ActNorm((1, 28, 28)), AffineCoupling(checkerboard(1, 28, 28, k % 2), ConvConditioner(1, hidden))]
    layers.append(Squeeze())
    for k in range(n_14):
        mask = channel_mask(4, 14, 14, k % 2) if k % 4 < 2 else checkerboard(4, 14, 14, k % 2)
        layers += [ActNorm((4, 14, 14)), AffineCoupling(mask, ConvConditioner(4, hidden))]
    return ImageFlow(layers, event_shape=(4, 14, 14)).to(device)


torch.manual_seed(0)
nvp_mnist = real_nvp_mnist()
print(f"{sum(p.numel() for p in nvp_mnist.parameters()):,} parameters")
with torch.no_grad():                                                     # ActNorm's data-dependent init
    nvp_mnist.loss(dequantize(train_images[:500]).to(device))

# %% [markdown]
# Training with the course's `fit` loop: `transform=dequantize` draws fresh noise for every batch.

# %%
MNIST_EPOCHS = budget(smoke=1, standard=2, full=30)
mnist_history = train_or_load(nvp_mnist, LECTURE, "realnvp_mnist_conv", lambda: fit(
    nvp_mnist, train_images, epochs=MNIST_EPOCHS, batch_size=64, lr=1e-3, transform=dequantize,
    clip_grad=100.0))


@torch.no_grad()
def mnist_bits_per_dim(model, x, batch=500):
    return torch.cat([bits_per_dim(model.log_prob(logit(x[i:i + batch].to(device))), x[i:i + batch].to(device),
                                   ALPHA) for i in range(0, len(x), batch)]).mean().item()


bpd_mnist = mnist_bits_per_dim(nvp_mnist, x_test)
print(f"test bits/dim: {bpd_mnist:.3f} (on {len(x_test)} test images, logit Jacobian included)")

# %% [markdown]
# The training curve is in the flow's own units (nats per image of $y$): negative, and not comparable with
# anything until the logit's Jacobian is added, which is what `bits_per_dim` does for the test number.

# %%
steps = torch.tensor(mnist_history["step_loss"])
smooth = steps.unfold(0, min(50, len(steps)), 1).mean(1)
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(steps, lw=0.3, alpha=0.5, label="batch")
ax.plot(range(len(steps) - len(smooth), len(steps)), smooth, label="moving average")
ax.set(xlabel="step", ylabel="-log p_Y(y) (nats per image)", title=f"RealNVP on MNIST: test {bpd_mnist:.3f} bits/dim")
ax.legend()
plt.show()

# %% [markdown]
# Samples, 64 at temperature $T = 1$ ($z \sim \mathcal N(0, I)$) and 64 at $T = 0.7$ ($z \sim \mathcal N(0, T^2 I)$,
# which trades diversity for cleaner strokes), beside 64 test digits, then interpolations: encode two test digits, move along
# $z(\theta) = \cos\theta\, z_a + \sin\theta\, z_b$ (which keeps the norm typical, unlike a straight line),
# and decode. Every image is a single inverse pass.

# %%
gen = torch.Generator().manual_seed(0)
plot.samples_beside_real({f"RealNVP samples, T = {temperature}": nvp_mnist.sample_images(plot.SHOWN, temperature, gen)
                          for temperature in (1.0, 0.7)}, x_test)
plt.show()

# %%
with torch.no_grad():
    z, _ = nvp_mnist(logit(x_test[:8].to(device)))                       # (8, 4, 14, 14)
    theta = torch.linspace(0, math.pi / 2, 10, device=device)[:, None, None, None]
    path = torch.cat([torch.cos(theta) * z[a] + torch.sin(theta) * z[a + 1] for a in (0, 2, 4, 6)])
    frames_mnist = unlogit(nvp_mnist.inverse(path)[0])                   # (40, 1, 28, 28)
plot.image_grid(frames_mnist.cpu(), nrow=10, title="interpolations between test digits (first and last are the digits)")
plt.show()

# %% [markdown]
# ## 5. Autoregressive flows: MAF and IAF
#
# ### Recap: MADE (lecture 02)
# A MADE is an MLP whose weight matrices are multiplied by binary masks so that output $i$ depends only on
# inputs $x_{<i}$. Give input $j$ the degree $j$ ($1..D$), each hidden unit a degree $m(k) \in \{1, \dots, D-1\}$,
# and allow a connection when the degree does not decrease (hidden layers: $m^{l}(k) \ge m^{l-1}(k')$) and,
# into the outputs, when it strictly increases ($d > m^{L}(k)$). Then every path from $x_j$ to output $i$ has
# $j < i$. Here a MADE outputs two numbers per dimension, $\mu_i$ and $\alpha_i$ (a log-scale; not the
# $\alpha = w^\top z$ of lecture 06's planar layer).

# %%
class MaskedLinear(nn.Linear):
    def __init__(self, d_in, d_out, mask):                                # mask (d_out, d_in) of 0/1
        super().__init__(d_in, d_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """x (B, D) -> mu, alpha (B, D) each, entry i a function of x_<i only (Germain et al., 2015)."""

    def __init__(self, d, hidden=64, n_hidden=2):
        super().__init__()
        degrees = [torch.arange(1, d + 1)] + [torch.arange(hidden) % max(d - 1, 1) + 1] * n_hidden
        layers = []
        for m_in, m_out in zip(degrees[:-1], degrees[1:], strict=True):
            layers += [MaskedLinear(len(m_in), len(m_out), m_out[:, None] >= m_in[None, :]), nn.ReLU()]
        out_mask = (torch.arange(1, d + 1)[:, None] > degrees[-1][None, :]).repeat(2, 1)    # (2D, hidden)
        self.out = MaskedLinear(hidden, 2 * d, out_mask)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        mu, alpha = self.out(self.body(x)).chunk(2, dim=1)
        return mu, 4 * torch.tanh(alpha / 4)                              # |alpha| < 4: no runaway scales


# %% [markdown]
# ### MAF: the density in one pass, sampling in $D$
#
# A **Gaussian autoregressive model** $p(x) = \prod_i \mathcal N\big(x_i;\, \mu_i(x_{<i}),\, e^{2\alpha_i(x_{<i})}\big)$
# is already a flow. Its sampler draws $z_i \sim \mathcal N(0, 1)$ and sets $x_i = \mu_i + e^{\alpha_i} z_i$,
# one coordinate after another: a deterministic, invertible generative map $x = f(z)$. Its inverse, the layer's
# `forward`,
#
# $$z_i = f^{-1}(x)_i = (x_i - \mu_i(x_{<i}))\, e^{-\alpha_i(x_{<i})}, \qquad
# \log\left|\det\frac{\partial f^{-1}(x)}{\partial x}\right| = -\sum_i \alpha_i(x_{<i}),$$
#
# has a lower-triangular Jacobian and needs **one** MADE pass, because all of $x$ is known. The masked
# autoregressive flow (**MAF**, Papamakarios et al., 2017) stacks such layers, reversing the order of the
# variables between them. Training (density evaluation) is parallel; **sampling is sequential**: $x_i$ needs
# $x_{<i}$, so $D$ passes.
#
# ### Exercise 3: MAF's sequential inverse
# Write `maf_inverse(z, made)`, the layer's `inverse`: it returns $(x, \log|\det \partial f(z)/\partial z|)$ for
# $x = f(z)$, $x_i = z_i\, e^{\alpha_i(x_{<i})} + \mu_i(x_{<i})$, where `made(x)` returns `(mu, alpha)`, each
# $(B, D)$, with entry $i$ depending on $x_{<i}$ only; `z` is $(B, D)$ in any float dtype, `x` has its shape and
# the log-det is $(B,)$. Hint: starting from any $x$, one MADE pass makes $x_1$ right; the next pass, fed with
# that, makes $x_2$ right too; ... $D$ passes in all. Do not modify `z` in place, and avoid in-place writes into
# a tensor that the MADE has already seen (autograd needs it unchanged).

# %% tags=["solution:ex3_maf_inverse"]
def maf_inverse(z, made):
    """Solve z = (x - mu(x)) exp(-alpha(x)) for x, (B, D), in D MADE passes; returns (x, log|det dx/dz|)."""
    ### BEGIN SOLUTION
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = made(x)                                               # exact for entries <= i after pass i
        x = z * alpha.exp() + mu
    return x, alpha.sum(1)
    ### END SOLUTION


# %% tags=["check:ex3_maf_inverse"]
lecture07.check_maf_inverse(maf_inverse)

# %% [markdown]
# ### IAF: a MAF used backwards
#
# The inverse autoregressive flow (**IAF**, Kingma et al., 2016) swaps the roles: the MADE reads the **noise**,
# and the generative map is $x = f(z)$ with $x_i = (z_i - \mu_i(z_{<i}))\, e^{-\alpha_i(z_{<i})}$. Sampling is one
# pass (all of $z$ is known); the density of a given $x$ needs $z = f^{-1}(x)$, which must be recovered one
# coordinate at a time. In code it is exactly a MAF layer with `forward` and `inverse` exchanged, so
# `maf_inverse` computes the IAF's density direction, and its log-det, $\sum_i \alpha_i(z_{<i})$, is then
# $\log|\det \partial f^{-1}(x)/\partial x|$, as an IAF layer's `forward` must return.

# %%
class MAFLayer(nn.Module):
    """One MAF layer: forward (density direction) in one MADE pass, inverse (sampling) in D passes."""

    def __init__(self, d, hidden=64, n_hidden=2):
        super().__init__()
        self.made = MADE(d, hidden, n_hidden)

    def forward(self, x):                                                 # z = f^-1(x), log|det df^-1/dx|
        mu, alpha = self.made(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(1)

    def inverse(self, z):                                                 # x = f(z), log|det df/dz|
        return maf_inverse(z, self.made)


class IAFLayer(MAFLayer):
    """One IAF layer: sampling in one MADE pass, density in D passes."""
    forward, inverse = MAFLayer.inverse, MAFLayer.forward


class Reverse(nn.Module):
    """Reverse the order of the variables between autoregressive layers (log-det 0)."""

    def forward(self, x):
        return x.flip(1), x.new_zeros(len(x))

    inverse = forward


def autoregressive_flow(layer, d, depth, hidden=64):
    return Flow([m for _ in range(depth) for m in (layer(d, hidden), Reverse())], event_shape=(d,)).to(device)

# %% [markdown]
# ### Autoregressive models are flows
#
# A one-layer MAF *is* the Gaussian autoregressive model above. Train one on the moons, next to an 8-layer MAF,
# and compare the flow's log-density $\log\mathcal N(z) + \log|\det|$ with the autoregressive chain rule
# $\sum_i \log \mathcal N(x_i; \mu_i, e^{2\alpha_i})$: the same number, computed two ways.

# %%
MAF_EPOCHS = budget(smoke=1, standard=30, full=200)
moons = toy_data["moons"]
maf = {}
for depth in (1, 8):
    torch.manual_seed(0)
    maf[depth] = autoregressive_flow(MAFLayer, 2, depth)
    train_or_load(maf[depth], LECTURE, f"maf{depth}_moons", lambda m=maf[depth]: fit(
        m, moons["train"], moons["val"], epochs=MAF_EPOCHS, batch_size=512, lr=2e-3))

x = moons["test"][:4].to(device)
with torch.no_grad():
    mu, alpha = maf[1].layers[0].made(x)
    chain_rule = torch.distributions.Normal(mu, alpha.exp()).log_prob(x).sum(1)
    print("chain rule       ", chain_rule.cpu().numpy().round(5))
    print("flow log-density ", maf[1].log_prob(x).cpu().numpy().round(5))

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
plot.scatter_2d(moons["test"][:2000], ax=axes[0], lim=3.5, title="moons: test data")
for ax, depth in zip(axes[1:], (1, 8), strict=True):
    samples = maf[depth].sample(2000, generator=torch.Generator().manual_seed(0)).cpu()
    plot.scatter_2d(samples, ax=ax, lim=3.5, color="C1",
                    title=f"MAF, {depth} layer{'s' * (depth > 1)}: NLL {test_nll(maf[depth], moons['test']):.3f}")
plt.tight_layout()

# %% [markdown]
# With one layer, $x_1$ is a single Gaussian and $x_2 \mid x_1$ a Gaussian whose mean and width follow $x_1$:
# it cannot split into two moons. Stacking layers (with the order reversed in between) composes such maps into
# a far more flexible density, at the same price per layer.
#
# ### Measured: density vs sampling time
# Timing does not depend on the weights, so untrained flows of two layers each (MADE with 256 hidden units) are
# timed at several dimensions $D$ on a batch of 100, taking the best of two runs.

# %%
def synchronize():
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.no_grad()
def seconds(fn, repeat=2):
    best = math.inf
    for _ in range(repeat):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best


DIMS = budget(smoke=[4, 16, 32], standard=[4, 16, 64, 256, 784], full=[4, 16, 64, 256, 784])
timing = {key: [] for key in ("MAF density", "MAF sampling", "IAF density", "IAF sampling")}
for d in progress(DIMS, "timing MAF and IAF, dimensions"):
    torch.manual_seed(0)
    flows = {"MAF": autoregressive_flow(MAFLayer, d, 2, hidden=256), "IAF": autoregressive_flow(IAFLayer, d, 2, hidden=256)}
    x = torch.randn(100, d, device=device)
    for name, flow in flows.items():
        timing[f"{name} density"].append(seconds(lambda f=flow, x=x: f.log_prob(x)))
        timing[f"{name} sampling"].append(seconds(lambda f=flow: f.sample(100)))

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for (key, values), style in zip(timing.items(), ("C0-o", "C0--s", "C1-o", "C1--s"), strict=True):
    ax.loglog(DIMS, values, style, label=key)
for slope, style in ((1, "k:"), (2, "k-.")):                            # reference lines through the last point
    ax.loglog(DIMS, [timing["MAF sampling"][-1] * (d / DIMS[-1]) ** slope for d in DIMS], style, lw=0.8,
              label=f"slope {slope}")
ax.set(xlabel="dimension D", ylabel="seconds per batch of 100", title="MAF vs IAF cost")
ax.legend()
plt.show()
density_ratio = timing["MAF density"][-1] / timing["IAF density"][-1]
sampling_ratio = timing["MAF sampling"][-1] / timing["IAF sampling"][-1]
print(f"D = {DIMS[-1]}: MAF/IAF density time {density_ratio:.4f}, MAF/IAF sampling time {sampling_ratio:.1f}")

# %% [markdown]
# The sequential direction needs $D$ MADE passes, and each pass itself costs more as $D$ grows (its masked
# matrix products are $O(DH)$), so its time grows faster than linearly once the products dominate, about like
# $D^2$; the parallel direction is one pass, flat until those products grow. MAF is the right choice for training on data (density of
# data points, cheap); IAF for drawing many samples or as a variational posterior (sampling, and the density
# of its *own* samples, which is cheap too because $z$ is known).

# %% [markdown]
# ## 6. Teacher–student distillation
#
# Parallel WaveNet (van den Oord et al., 2018) got the best of both: a MAF-like **teacher** trained by maximum
# likelihood (fast density), and an IAF **student** (fast sampling) trained to match it by minimizing
#
# $$\mathrm{KL}(q_\text{student} \,\|\, p_\text{teacher})
#   = \mathbb E_{z \sim \mathcal N(0, I)}\big[\log q(x(z)) - \log p_\text{teacher}(x(z))\big],
# \qquad \log q(x(z)) = \log \mathcal N(z) - \log\left|\det \frac{\partial x}{\partial z}\right| .$$
#
# Everything here is cheap: the student samples in one pass and knows the density of its own samples (it
# knows $z$); the teacher evaluates densities in one pass. The other direction, $\mathrm{KL}(p \,\|\, q)$, would
# need samples of the teacher (sequential) and densities of the student at them (sequential again). Reverse KL
# is *mode seeking*: a student too weak to cover the teacher drops mass rather than spreading it.
#
# ### Exercise 4: the distillation objective
# Write `distillation_kl(student, teacher, z)`: the Monte Carlo estimate (a scalar, the mean over the batch)
# of $\mathrm{KL}(q_\text{student} \,\|\, p_\text{teacher})$ from the noise `z` $(B, D)$, with
# `student.inverse(z) -> (x, log|det dx/dz|)` (the generative direction, $x = f(z)$) and
# `teacher.log_prob(x) -> (B,)`. Use exactly the given `z` (draw no noise of your own), and let the gradient reach
# the student's parameters through the samples (the reparameterization of lecture 05).

# %% tags=["solution:ex4_distillation_kl"]
def distillation_kl(student, teacher, z):
    """Estimate of KL(q_student || p_teacher) from z ~ N(0, I), (B, D); differentiable in the student."""
    ### BEGIN SOLUTION
    x, log_det = student.inverse(z)                                       # one pass for an IAF
    log_q = std_normal_log_prob(z) - log_det                              # (B,)
    return (log_q - teacher.log_prob(x)).mean()
    ### END SOLUTION


# %% tags=["check:ex4_distillation_kl"]
lecture07.check_distillation_kl(distillation_kl)

# %% [markdown]
# The teacher is the 8-layer MAF on the moons; the student an 8-layer IAF of the same size. The loop is the
# lesson, so it is written out: fresh noise each step, the teacher frozen.

# %%
DISTILL_STEPS = budget(smoke=20, standard=2000, full=10000)
teacher = maf[8].requires_grad_(False)
torch.manual_seed(0)
student = autoregressive_flow(IAFLayer, 2, 8)


def distill():
    opt = torch.optim.Adam(student.parameters(), lr=5e-4)
    gen = torch.Generator(device).manual_seed(0)                         # the noise is drawn on the device
    history = []
    for _ in progress(range(DISTILL_STEPS), "distillation steps"):
        z = torch.randn(512, 2, generator=gen, device=device)
        kl = distillation_kl(student, teacher, z)
        opt.zero_grad(set_to_none=True)
        kl.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 10.0)             # rare far-out samples: big gradients
        opt.step()
        history.append(kl.item())
    return {"kl": history}


distill_history = train_or_load(student, LECTURE, "iaf_student_moons", distill)

# %%
N_KL = 20000
with torch.no_grad():
    z = torch.randn(N_KL, 2, generator=torch.Generator().manual_seed(1)).to(device)
    kl_final = distillation_kl(student, teacher, z).item()
    nll_t, nll_s = (-flow.log_prob(moons["test"].to(device)).cpu() for flow in (teacher, student))
print(f"KL(student || teacher) = {kl_final:.4f} nats ({N_KL} samples)")
print(f"median test NLL: teacher {nll_t.median():.3f}, student {nll_s.median():.3f} nats; test points the student "
      f"all but excludes (NLL > 10 nats): {(nll_s > 10).float().mean():.1%} (teacher {(nll_t > 10).float().mean():.1%})")
fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
axes[0].plot(distill_history["kl"], lw=0.5)
axes[0].set(xlabel="step", ylabel="KL estimate (nats)", ylim=(-0.05, 1.0), title="distillation")
for ax, (name, flow) in zip(axes[1:3], (("teacher (MAF)", teacher), ("student (IAF)", student)), strict=True):
    plot.density_2d(flow.log_prob, ax=ax, lim=3.5, device=device, title=f"{name} density")
plot.scatter_2d(student.sample(2000, generator=torch.Generator().manual_seed(0)).cpu(), ax=axes[3], lim=3.5,
                color="C1", title="student samples (one pass)")
plt.tight_layout()

# %% [markdown]
# The student never saw a data point: it learned the moons from the teacher's densities alone, and where it
# puts mass it agrees with the teacher (compare the median NLLs, computed the slow, sequential way for the
# IAF). But reverse KL is **mode seeking**: it charges nothing for regions the student leaves empty, so the
# student can drop part of the teacher's mass (look for a missing or thinned stretch of a moon) and give
# some test points almost zero density; its *mean* test NLL is then useless, which is why the median and the
# fraction of excluded points are printed. Parallel WaveNet adds extra losses for exactly this reason.

# %% [markdown]
# ## Results

# %%
elapsed = time.perf_counter() - T0
record(LECTURE, "realnvp_mnist_bpd", bpd_mnist, "bits/dim", n_data=len(x_test), wall_time_s=elapsed,
       note=f"8-bit scale, dequantized test images, logit Jacobian included; {MNIST_EPOCHS} epochs on {len(train_images)}")
for name in ("moons", "checkerboard"):
    record(LECTURE, f"realnvp_{name}_test_nll", nll2d[name], "nats per point", n_data=len(toy_data[name]["test"]),
           wall_time_s=elapsed)
record(LECTURE, "maf_iaf_density_time_ratio", density_ratio, "ratio", n_data=DIMS[-1], wall_time_s=elapsed,
       note="time(MAF log-density) / time(IAF log-density), 2 layers, batch 100, D = n_data")
record(LECTURE, "maf_iaf_sampling_time_ratio", sampling_ratio, "ratio", n_data=DIMS[-1], wall_time_s=elapsed,
       note="time(MAF sampling) / time(IAF sampling), 2 layers, batch 100, D = n_data")
record(LECTURE, "distillation_kl", kl_final, "nats", n_data=N_KL, wall_time_s=elapsed,
       note="KL(IAF student || MAF teacher) on the moons, Monte Carlo")

# %% [markdown]
# ## Summary
#
# - A flow is a composition; its log-determinant is a sum over layers. Cheap determinants come from
#   **triangular** Jacobians: coupling layers (block-triangular) and autoregressive layers (triangular).
# - **Coupling layers** (NICE, RealNVP) are as fast in both directions, and their conditioners can be any
#   network, convolutional for images; but each layer transforms only half of the variables, so masks must
#   alternate and depth matters (the widget).
# - **Dequantization** turns discrete data into a continuous density problem whose NLL bounds the discrete
#   one; bits/dim must include every preprocessing Jacobian (the logit) and the 8-bit scale.
# - **MAF** evaluates densities in one pass and samples in $D$; **IAF** is the same layer backwards. The
#   measured ratios above grow with $D$.
# - A fast-sampling IAF can be **distilled** from a fast-density MAF by minimizing
#   $\mathrm{KL}(q_\text{student} \,\|\, p_\text{teacher})$ with the student's own samples.
#
# ## References
# - L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components Estimation.* 2014.
#   [arXiv:1410.8516](https://arxiv.org/abs/1410.8516)
# - L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP.* ICLR 2017.
#   [arXiv:1605.08803](https://arxiv.org/abs/1605.08803) (the paper reports no MNIST number; see FFJORD below)
# - D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1 Convolutions.* 2018.
#   [arXiv:1807.03039](https://arxiv.org/abs/1807.03039) (ActNorm, per channel)
# - M. Germain, K. Gregor, I. Murray, H. Larochelle. *MADE: Masked Autoencoder for Distribution Estimation.*
#   ICML 2015. [arXiv:1502.03509](https://arxiv.org/abs/1502.03509)
# - G. Papamakarios, T. Pavlakou, I. Murray. *Masked Autoregressive Flow for Density Estimation.* NeurIPS 2017.
#   [arXiv:1705.07057](https://arxiv.org/abs/1705.07057) (MLP flows on flattened MNIST, reported as
#   log-likelihoods in logit space)
# - W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form Continuous
#   Dynamics for Scalable Reversible Generative Models.* ICLR 2019. [arXiv:1810.01367](https://arxiv.org/abs/1810.01367)
#   (Table 2 gathers MNIST test bits/dim on uniformly dequantized 8-bit MNIST with the whole 10,000-image test
#   set: multiscale RealNVP 1.06, Glow 1.05, MAF 1.89; our standard-mode number uses a much smaller model,
#   2 epochs and the first 2000 test images)
# - D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling. *Improved Variational
#   Inference with Inverse Autoregressive Flow.* NeurIPS 2016. [arXiv:1606.04934](https://arxiv.org/abs/1606.04934)
# - A. van den Oord et al. *Parallel WaveNet: Fast High-Fidelity Speech Synthesis.* ICML 2018.
#   [arXiv:1711.10433](https://arxiv.org/abs/1711.10433) (probability density distillation)
# - L. Theis, A. van den Oord, M. Bethge. *A note on the evaluation of generative models.* ICLR 2016.
#   [arXiv:1511.01844](https://arxiv.org/abs/1511.01844) (dequantization as a bound)
# - J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++.* ICML 2019.
#   [arXiv:1902.00275](https://arxiv.org/abs/1902.00275) (variational dequantization)
