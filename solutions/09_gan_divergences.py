# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 09 — Divergences and better GANs
#
# Lecture 08 trained a generator $G$ against a discriminator $D$ and showed that, with the optimal
# discriminator, the GAN objective is $2\,\mathrm{JSD}(p_\text{data} \,\|\, p_G) - \log 4$. Nothing forces that
# choice of divergence. This lecture asks which divergence a GAN should minimize, and builds the three answers
# that shaped later work:
#
# **Learning goals**
# 1. Define **f-divergences** (KL, reverse KL, Jensen–Shannon, Pearson $\chi^2$, total variation) by their
#    generators $f$, compute their **convex conjugates** $f^*$, and check each one numerically as a supremum.
# 2. Derive the **variational lower bound** $D_f(P\,\|\,Q) \ge \sup_T \mathbb E_P[T] - \mathbb E_Q[f^*(T)]$ and see
#    it become an equality at the optimal critic.
# 3. Train an **f-GAN** with several divergences on the same 2-D data and watch **mode covering** (forward KL,
#    $\chi^2$) against **mode seeking** (reverse KL, JS).
# 4. See why every f-divergence fails on **disjoint supports** ($\mathrm{KL} = \infty$,
#    $\mathrm{JSD} = \log 2$), while the **Wasserstein distance** $W = |\theta|$ still has a useful gradient.
# 5. Train a **WGAN** with weight clipping and with a **gradient penalty** on the 5×5 grid and on MNIST, and
#    estimate the critic's Lipschitz constant.
# 6. Add an encoder: a **BiGAN** infers latents $z = E(x)$, and its features are measured by a linear probe
#    against a random encoder's.
#
# **Builds on** lecture 08 (the GAN game, the optimal discriminator, the mode-coverage protocol), lecture 04
# (forward vs reverse KL) and lecture 03 (KL and maximum likelihood).

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import budget, mnist, plot, progress, record, setup, toy, train_or_load, widgets
from dgm_course.exercises import lecture09

device, MODE = setup(seed=0)
LECTURE = "09_gan_divergences"
T0 = time.perf_counter()

# %% [markdown]
# ## 1. f-divergences
#
# Let $P, Q$ have densities $p, q$. For a **convex** function $f : (0, \infty) \to \mathbb R$ with $f(1) = 0$,
#
# $$D_f(P \,\|\, Q) = \int q(x)\, f\!\left(\frac{p(x)}{q(x)}\right) dx = \mathbb E_{Q}\!\left[f\!\left(\frac{p}{q}\right)\right] .$$
#
# By Jensen's inequality $D_f \ge f\big(\mathbb E_Q[p/q]\big) = f(1) = 0$, with equality when $P = Q$ (for
# strictly convex $f$). The generator $f$ decides how a mismatch is charged: $u = p/q$ large means $Q$ misses mass
# that $P$ has; $u$ near $0$ means $Q$ puts mass where $P$ has none. Five classic choices:
#
# | divergence | $f(u)$ | $D_f(P\,\|\,Q)$ |
# | --- | --- | --- |
# | KL | $u \log u$ | $\int p \log \frac{p}{q}$ |
# | reverse KL | $-\log u$ | $\int q \log \frac{q}{p}$ |
# | Jensen–Shannon | $\tfrac12\big[u \log u - (u + 1) \log \frac{u + 1}{2}\big]$ | $\tfrac12 \mathrm{KL}(P\|M) + \tfrac12 \mathrm{KL}(Q\|M)$, $M = \frac{P + Q}{2}$ |
# | Pearson $\chi^2$ | $(u - 1)^2$ | $\int \frac{(p - q)^2}{q}$ |
# | total variation | $\tfrac12 \lvert u - 1\rvert$ | $\tfrac12 \int \lvert p - q\rvert$ |
#
# (The f-GAN paper writes JS without the factor $\tfrac12$, i.e. $2\,\mathrm{JSD}$; with it, $0 \le \mathrm{JSD}
# \le \log 2$, as in lecture 08.)
#
# ### Convex conjugates
#
# Every convex, lower semicontinuous $f$ is the upper envelope of its tangent lines. The **convex conjugate**
# (Fenchel dual)
#
# $$f^*(t) = \sup_{u > 0}\; \big(t u - f(u)\big)$$
#
# is the intercept of the tangent line of slope $t$ (with a minus sign), and duality gives back
# $f(u) = \sup_t \big(t u - f^*(t)\big)$. Where the supremum is attained, $t = f'(u)$. For our five:
#
# | divergence | $f^*(t)$ | domain of $f^*$ | $f'(u)$ |
# | --- | --- | --- | --- |
# | KL | $e^{t - 1}$ | $\mathbb R$ | $1 + \log u$ |
# | reverse KL | $-1 - \log(-t)$ | $t < 0$ | $-1/u$ |
# | Jensen–Shannon | $-\tfrac12 \log\big(2 - e^{2t}\big)$ | $t < \tfrac12 \log 2$ | $\tfrac12 \log \frac{2u}{u + 1}$ |
# | Pearson $\chi^2$ | $\tfrac14 t^2 + t$ | $\mathbb R$ (for $t < -2$ the sup sits at $u \to 0$; see below) | $2(u - 1)$ |
# | total variation | $t$ | $\lvert t\rvert \le \tfrac12$ | $\tfrac12 \operatorname{sign}(u - 1)$ |
#
# Written out once, as a table of functions (on tensors):

# %%
def _js_f(u):
    return 0.5 * (u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2))


DIVERGENCES = {
    # name: (generator f(u), conjugate f*(t), domain of t as (low, high))
    "KL":         (lambda u: u * torch.log(u),       lambda t: torch.exp(t - 1),                    (-math.inf, math.inf)),
    "reverse KL": (lambda u: -torch.log(u),          lambda t: -1 - torch.log(-t),                  (-math.inf, 0.0)),
    "JS":         (_js_f,                            lambda t: -0.5 * torch.log(2 - torch.exp(2 * t)), (-math.inf, 0.5 * math.log(2))),
    "Pearson":    (lambda u: (u - 1) ** 2,           lambda t: 0.25 * t**2 + t,                     (-2.0, math.inf)),
    "TV":         (lambda u: 0.5 * (u - 1).abs(),    lambda t: t,                                   (-0.5, 0.5)),
}

# %% [markdown]
# The Pearson row needs care: on $u > 0$ the supremum of $tu - (u-1)^2$ sits at $u = 1 + t/2$, which is positive
# only for $t > -2$; below that it is $-1$ (at $u \to 0$). The quadratic $\tfrac14 t^2 + t$ is what the
# f-GAN paper uses (it is the conjugate of $(u-1)^2$ extended to all real $u$); both agree on $t \ge -2$, the
# only values a Pearson critic needs, since the optimal critic is $f'(p/q) = 2(p/q - 1) \ge -2$.
#
# **Numerical check.** Take each $f^*$ as a supremum over a fine grid of $u$ and compare it with the closed form
# at points $t$ inside the domain (float64 on the CPU: MPS has no float64).

# %%
u_grid = torch.logspace(-8, 4, 400_001, dtype=torch.float64)             # (U,) the sup runs over u > 0
print(f"{'divergence':>12} {'max |sup_u(tu - f(u)) - f*(t)|':>32}   over t in")
for name, (f, f_star, (low, high)) in DIVERGENCES.items():
    t = torch.linspace(max(low, -3.0) + 0.05, min(high, 1.5) - 0.05, 41, dtype=torch.float64)   # (T,)
    sup = (t[:, None] * u_grid[None] - f(u_grid)[None]).max(1).values    # (T,)
    err = (sup - f_star(t)).abs().max().item()
    print(f"{name:>12} {err:32.2e}   [{t[0]:.2f}, {t[-1]:.2f}]")

# %% [markdown]
# The errors are at the grid's resolution: each $f^*$ is the supremum it claims to be. The picture for KL: the
# lines $u \mapsto tu - f^*(t)$ lie below $f$ and touch it at $u = e^{t-1}$, where $t = f'(u)$; their upper
# envelope is $f$ itself.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
u = torch.linspace(1e-3, 3.5, 400, dtype=torch.float64)
f_kl, fstar_kl, _ = DIVERGENCES["KL"]
axes[0].plot(u, f_kl(u), "k", lw=2.5, label="f(u) = u log u")
for t in (-1.0, -0.3, 0.5, 1.0, 1.5):
    t = torch.tensor(t, dtype=torch.float64)
    axes[0].plot(u, t * u - fstar_kl(t), lw=1, label=f"t = {t:.1f}: tu - f*(t)")
axes[0].set(ylim=(-1.5, 3), xlabel="u = p/q", title="KL: f as the envelope of its tangents")
axes[0].legend(fontsize=7)
for name, (f, f_star, (low, high)) in DIVERGENCES.items():
    axes[1].plot(u, f(u), label=name)
    t = torch.linspace(max(low, -3.0), min(high, 2.0) - 1e-3, 300, dtype=torch.float64)
    axes[2].plot(t, f_star(t), label=name)
axes[1].set(ylim=(-0.5, 3), xlabel="u = p/q", title="generators f(u)")
axes[2].set(ylim=(-3, 4), xlabel="t", title="conjugates f*(t) on their domains")
for ax in axes[1:]:
    ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# ### Exercise 1: a conjugate
# The **squared Hellinger** distance has the generator $f(u) = (\sqrt u - 1)^2$, so that
# $D_f(P\|Q) = \int (\sqrt p - \sqrt q)^2$. Derive its conjugate $f^*(t) = \sup_{u > 0} \big(tu - f(u)\big)$
# (it is finite for $t < 1$) and write `hellinger_conjugate(t)` for a tensor of such $t$. Hint: set the
# derivative in $u$ to zero and solve for $\sqrt u$. The check compares your $f^*$ with a numerical supremum at
# random $t$ (a tensor of shape $(T,)$, float64; leave it unchanged and return a tensor of the same shape).

# %% tags=["solution:ex1_hellinger_conjugate"]
def hellinger_conjugate(t):
    """f*(t) = sup_u (t u - (sqrt(u) - 1)^2) for t < 1, elementwise on a tensor."""
    ### BEGIN SOLUTION
    return t / (1 - t)
    ### END SOLUTION


# %% tags=["check:ex1_hellinger_conjugate"]
lecture09.check_hellinger_conjugate(hellinger_conjugate)

# %% [markdown]
# ## 2. The variational lower bound
#
# Replace $f$ inside $D_f$ by its dual form, then swap the supremum and the integral (one $t$ per point $x$ is a
# function $T(x)$; any restricted family of functions can only do worse):
#
# $$D_f(P\,\|\,Q) = \int q(x) \sup_{t} \Big(t\, \frac{p(x)}{q(x)} - f^*(t)\Big) dx
#   \;\ge\; \sup_{T} \Big( \mathbb E_{x \sim P}\big[T(x)\big] - \mathbb E_{x \sim Q}\big[f^*(T(x))\big] \Big).$$
#
# The right side needs **samples** of $P$ and $Q$ only, never their densities: exactly the situation of a GAN,
# where $P$ is the data and $Q$ the generator. The bound is tight at the pointwise maximizer
#
# $$T^*(x) = f'\!\left(\frac{p(x)}{q(x)}\right).$$
#
# For JS this is $T^* = \tfrac12 \log \frac{2p}{p+q} = \tfrac12 \log\big(2 D^*(x)\big)$ with lecture 08's optimal
# discriminator $D^* = p/(p+q)$: the GAN discriminator is an f-divergence critic in disguise.
#
# Check on two 1-D densities known in closed form: $P$ a two-component mixture (`toy.Mixture1D`), $Q$ a wide
# Gaussian. We compute each $D_f$ by quadrature, then the bound with $T^*$ by Monte Carlo, then the bound with a
# worse critic ($T^*$ shrunk towards $f'(1)$).

# %%
P1 = toy.Mixture1D()                                                      # 0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.8^2)
Q1 = toy.Mixture1D(weights=(1.0,), means=(0.0,), stds=(2.0,))
x_quad = torch.linspace(-14, 14, 200_001, dtype=torch.float64)           # quadrature grid
p_quad, q_quad = P1.log_prob(x_quad).exp(), Q1.log_prob(x_quad).exp()
N_MC = budget(smoke=20_000, standard=200_000, full=1_000_000)
x_p = P1.sample(N_MC, seed=1).double()
x_q = Q1.sample(N_MC, seed=2).double()
F_PRIME = {                                                               # f'(u): the optimal critic is f'(p/q)
    "KL": lambda u: 1 + torch.log(u), "reverse KL": lambda u: -1 / u,
    "JS": lambda u: 0.5 * torch.log(2 * u / (u + 1)), "Pearson": lambda u: 2 * (u - 1),
    "TV": lambda u: 0.5 * torch.sign(u - 1),
}


def ratio(x):
    return (P1.log_prob(x) - Q1.log_prob(x)).exp()                        # p(x) / q(x)


def bound(T, f_star):
    return (T(x_p).mean() - f_star(T(x_q)).mean()).item()


print(f"{'divergence':>12} {'quadrature':>11} {'bound at T*':>12} {'bound at a worse T':>19}")
exact_1d = {}
for name, (f, f_star, _) in DIVERGENCES.items():
    exact_1d[name] = torch.trapezoid(q_quad * f(p_quad / q_quad), x_quad).item()
    t_star = lambda x, fp=F_PRIME[name]: fp(ratio(x))                     # noqa: E731
    t_worse = lambda x, fp=F_PRIME[name]: 0.6 * fp(ratio(x)) + 0.4 * fp(torch.ones_like(x))   # noqa: E731
    print(f"{name:>12} {exact_1d[name]:11.4f} {bound(t_star, f_star):12.4f} {bound(t_worse, f_star):19.4f}")

# %% [markdown]
# At $T^*$ the Monte Carlo bound matches the quadrature value up to sampling noise; any other critic gives less.
# (Reverse KL and $\chi^2$ are expectations of heavy-tailed quantities under one of the two distributions, so
# their Monte Carlo estimates are the noisiest.) A GAN never knows $T^*$: it **learns** the critic by
# maximizing the bound, which is the inner loop of the next section.

# %% [markdown]
# ## 3. f-GAN: one game per divergence
#
# Nowozin et al. (2016) turned the bound into a GAN. The critic is a network $V_\omega(x) \in \mathbb R$ followed by
# an **output activation** $g_f$ that maps it into the domain of $f^*$, $T_\omega = g_f(V_\omega)$; the generator
# $Q_\theta$ is the distribution of $G_\theta(z)$. The game is
#
# $$\min_\theta \max_\omega\; F(\theta, \omega) = \mathbb E_{x \sim P}\big[g_f(V_\omega(x))\big]
#   - \mathbb E_{z}\big[f^*\big(g_f(V_\omega(G_\theta(z)))\big)\big] .$$
#
# The critic ascends $F$ (a tighter bound on $D_f(P\|Q_\theta)$); the generator descends it (a smaller
# divergence). Only the second term depends on $\theta$. The activations of the f-GAN paper, adapted to our
# JS with the factor $\tfrac12$:
#
# | divergence | $g_f(v)$ | range |
# | --- | --- | --- |
# | KL | $v$ | $\mathbb R$ |
# | reverse KL | $-e^{-v}$ | $t < 0$ |
# | JS | $\tfrac12\big(\log 2 - \log(1 + e^{-v})\big)$ | $t < \tfrac12 \log 2$ |
# | Pearson $\chi^2$ | $v$ | $\mathbb R$ |
# | TV | $\tfrac12 \tanh v$ | $\lvert t\rvert < \tfrac12$ |

# %%
ACTIVATIONS = {
    "KL": lambda v: v,
    "reverse KL": lambda v: -torch.exp(-v),
    "JS": lambda v: 0.5 * (math.log(2) - F.softplus(-v)),
    "Pearson": lambda v: v,
    "TV": lambda v: 0.5 * torch.tanh(v),
}

# %% [markdown]
# ### Exercise 2: the f-GAN losses
# Write `fgan_losses(v_real, v_fake, g, f_star)`. From the critic's raw outputs on a batch of data, `v_real`
# $(B,)$, and on a batch of generated samples, `v_fake` $(B,)$, the activation `g` and the conjugate `f_star`,
# return the pair of scalars to **minimize**:
#
# $$\mathcal L_\text{critic} = -\Big(\tfrac1B \textstyle\sum_i g(v^\text{real}_i) - \tfrac1B \sum_i f^*\big(g(v^\text{fake}_i)\big)\Big),
# \qquad \mathcal L_\text{gen} = -\tfrac1B \textstyle\sum_i f^*\big(g(v^\text{fake}_i)\big) .$$
#
# (The generator's loss drops the first term, which does not depend on the generator.) The check evaluates
# $-\mathcal L_\text{critic}$ at the optimal critic on samples of two Gaussians (a Monte Carlo estimate of the exact
# divergence) and compares the gradients of both losses with the ones the game prescribes; the losses may be
# computed in float32 or float64.

# %% tags=["solution:ex2_fgan_losses"]
def fgan_losses(v_real, v_fake, g, f_star):
    """(critic loss, generator loss) of the f-GAN game from raw critic outputs v_real, v_fake: (B,) each."""
    ### BEGIN SOLUTION
    t_real, t_fake = g(v_real), g(v_fake)                                 # T = g_f(V), inside dom f*
    bound = t_real.mean() - f_star(t_fake).mean()                         # lower bound on D_f(P || Q)
    return -bound, -f_star(t_fake).mean()
    ### END SOLUTION


# %% tags=["check:ex2_fgan_losses"]
lecture09.check_fgan_losses(fgan_losses)

# %% [markdown]
# ### Mode covering and mode seeking
#
# The clearest test of what a divergence prefers is a generator that **cannot** fit the data. Ours is a single
# Gaussian, $G_\theta(z) = \mu + A z$ with $z \sim \mathcal N(0, I_2)$, so $Q_\theta = \mathcal N(\mu, AA^\top)$;
# the data are lecture 08's ring of 8 Gaussians, blurred with extra noise of standard deviation 0.2 (so that each
# mode has $\sigma_\text{ring} = \sqrt{0.02 + 0.04} \approx 0.245$ and the divergences stay finite enough for a
# critic to estimate: with the sharp ring, $p$ at the centre is $e^{-100}$ and reverse KL is astronomically
# large). The divergences disagree about the best compromise:
#
# - **KL** $= \mathbb E_P[\log p/q]$ is infinite-ish wherever $P$ has mass and $Q$ has none: $Q$ must **cover**
#   every mode. For a Gaussian $Q$ the minimizer is moment matching: the data's mean and covariance
#   ($\mu = 0$, $\Sigma = (2 + \sigma_\text{ring}^2)\,I$ for the ring), which we can check.
# - **Reverse KL** $= \mathbb E_Q[\log q/p]$ is charged where $Q$ puts mass and $P$ has none: $Q$ **seeks** one
#   mode and stays inside it.
# - **Pearson $\chi^2$** $= \mathbb E_Q[(p/q - 1)^2]$ charges missing mass even more than KL: extreme covering.
# - **JS** is bounded ($\le \log 2$) and sits in between: which compromise it prefers depends on the data.
#
# (Total variation is left out of the game: its critic $T = \tfrac12 \tanh V$ saturates, $f^*(T) = T$ is linear,
# and the generator's gradient carries almost no information about where the modes are; in trials it drifted.)
#
# The critic is a small MLP; critic and generator take one Adam step each per iteration. The loop is the
# lesson, so it is written out.

# %%
class GaussianGenerator(nn.Module):
    """G(z) = mu + A z: a generator whose distribution is the Gaussian N(mu, A A^T)."""

    def __init__(self, mu):
        super().__init__()
        self.mu = nn.Parameter(torch.as_tensor(mu, dtype=torch.float32))   # (2,)
        self.A = nn.Parameter(torch.eye(2))                                # (2, 2)

    def forward(self, z):                                                  # (B, 2) -> (B, 2)
        return self.mu + z @ self.A.T

    def sample(self, n, generator=None):
        return self(torch.randn(n, 2, generator=generator).to(self.mu.device))


def mlp(d_in, d_out, hidden=128, depth=2, act=nn.LeakyReLU):
    sizes = [d_in] + [hidden] * depth
    body = [m for a, b in zip(sizes[:-1], sizes[1:], strict=True) for m in (nn.Linear(a, b), act())]
    return nn.Sequential(*body, nn.Linear(hidden, d_out))


# %%
N_RING = budget(smoke=5_000, standard=50_000, full=100_000)
FGAN_STEPS = budget(smoke=60, standard=2000, full=10000)
SIGMA_RING = math.sqrt(toy.MODE_STD["8gaussians"] ** 2 + 0.2**2)
ring = toy.toy_2d("8gaussians", N_RING, seed=0)                          # (N, 2)
ring = ring + 0.2 * torch.randn(ring.shape, generator=torch.Generator().manual_seed(0))


def train_fgan(G, V, name, steps=FGAN_STEPS, batch=256):
    """The f-GAN game for one divergence: generator G against the critic V, both trained in place."""
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_V = torch.optim.Adam(V.parameters(), lr=1e-3, betas=(0.5, 0.999))
    g, (_, f_star, _) = ACTIVATIONS[name], DIVERGENCES[name]
    data = ring.to(device)
    history = {"bound": [], "mu": [], "std": []}
    for _ in progress(range(steps), f"f-GAN {name}"):
        x = data[torch.randint(len(data), (batch,), device=device)]       # (B, 2) real
        critic_loss, _ = fgan_losses(V(x)[:, 0], V(G.sample(batch).detach())[:, 0], g, f_star)
        opt_V.zero_grad(set_to_none=True)
        critic_loss.backward()
        opt_V.step()
        _, gen_loss = fgan_losses(V(x)[:, 0], V(G.sample(batch))[:, 0], g, f_star)
        opt_G.zero_grad(set_to_none=True)
        gen_loss.backward()                                               # only G steps; V's grads are zeroed next
        opt_G.step()
        history["bound"].append(-critic_loss.item())
        history["mu"].append(G.mu.detach().cpu().tolist())
        history["std"].append(torch.linalg.svdvals(G.A.detach()).cpu().tolist())
    return history


FGAN_DIVERGENCES = ("KL", "reverse KL", "JS", "Pearson")
fgan, fgan_history = {}, {}
for name in FGAN_DIVERGENCES:
    torch.manual_seed(0)
    fgan[name] = nn.ModuleDict({"G": GaussianGenerator(mu=[0.3, -0.2]), "V": mlp(2, 1, hidden=64)}).to(device)
    fgan_history[name] = train_or_load(fgan[name], LECTURE, f"fgan_{name.replace(' ', '_').lower()}",
                                       lambda m=fgan[name], n=name: train_fgan(m["G"], m["V"], n))

# %%
def ring_coverage(x, sigma=SIGMA_RING, threshold=20):
    """Lecture 08's protocol on the ring: (modes with >= threshold samples within 3 sigma, high-quality fraction)."""
    centers = toy.mode_centers("8gaussians").to(x.device)                # (8, 2)
    dist, nearest = torch.cdist(x, centers).min(1)                        # (N,) each
    close = dist < 3 * sigma
    counts = torch.bincount(nearest[close], minlength=len(centers))
    return int((counts >= threshold).sum()), close.float().mean().item()


with torch.no_grad():
    for name, pair in fgan.items():
        G = pair["G"]
        cov = (G.A @ G.A.T).cpu()
        modes, hq = ring_coverage(G.sample(2500, generator=torch.Generator().manual_seed(0)))
        print(f"{name:>11}: mu = ({G.mu[0]:+.2f}, {G.mu[1]:+.2f})  cov = [[{cov[0, 0]:.3f}, {cov[0, 1]:+.3f}], "
              f"[{cov[1, 0]:+.3f}, {cov[1, 1]:.3f}]]  modes {modes}/8  high-quality {hq:.0%}")
    cov = torch.cov(ring.T)
    print(f"{'data':>11}: mu = ({ring[:, 0].mean():+.2f}, {ring[:, 1].mean():+.2f})  cov = [[{cov[0, 0]:.3f}, "
          f"{cov[0, 1]:+.3f}], [{cov[1, 0]:+.3f}, {cov[1, 1]:.3f}]]  (the KL optimum: moment matching)")

# %% [markdown]
# In standard mode (2000 steps each) the forward-KL generator lands on moment matching: mean near 0 and a
# covariance close to the data's (both printed above), the optimum derived above, found by a game that never
# evaluated a density. Pearson $\chi^2$ covers too, slightly wider (its penalty on missed mass is quadratic in
# $p/q$). Reverse KL abandons the ring: a narrow Gaussian on two neighbouring modes, with most of its samples
# inside a mode (high quality) but covering only 2<!-- r:fgan_reverse_kl_ring_modes --> of 8 modes. JS, bounded,
# chose the covering solution on this data. The same data, the same generator family, the same loop: only $f$
# changed.

# %% [markdown]
# The Gaussian generators after training, drawn over the data (contours at 1 and 2 standard deviations), and
# the critic's bound $-\mathcal L_\text{critic}$ during training:

# %%
fig, axes = plt.subplots(1, len(fgan) + 1, figsize=(3.1 * (len(fgan) + 1), 3.3))
circle = torch.stack([torch.cos(torch.linspace(0, 2 * math.pi, 100)), torch.sin(torch.linspace(0, 2 * math.pi, 100))], 1)
for ax, (name, pair) in zip(axes, fgan.items(), strict=False):
    plot.scatter_2d(ring[:2000], ax=ax, lim=3.2, s=1, color="0.6")
    with torch.no_grad():
        G = pair["G"].cpu()
        for radius in (1, 2):
            ellipse = G.mu + radius * circle @ G.A.T                       # (100, 2)
            ax.plot(ellipse[:, 0], ellipse[:, 1], "C3", lw=1.5)
        pair.to(device)
    ax.set_title(name)
for name, hist in fgan_history.items():
    axes[-1].plot(np.convolve(hist["bound"], np.ones(50) / 50, mode="valid"), label=name, lw=1)
axes[-1].set(xlabel="step", title="critic's bound (smoothed)", yscale="symlog")
axes[-1].legend(fontsize=7)
plt.tight_layout()

# %% [markdown]
# ## 4. Disjoint supports: where every f-divergence goes blind
#
# Take the simplest pair of distributions that do not overlap: point masses $P = \delta_0$ and
# $Q_\theta = \delta_\theta$. For every $\theta \ne 0$ the ratio $p/q$ is $\infty$ on $\{0\}$ and $0$ on
# $\{\theta\}$, so
#
# $$\mathrm{KL}(P\|Q_\theta) = \infty, \qquad \mathrm{JSD}(P\|Q_\theta) = \tfrac12 \log\tfrac{1}{1/2} + \tfrac12 \log\tfrac{1}{1/2} = \log 2,
# \qquad \mathrm{TV}(P, Q_\theta) = 1,$$
#
# and all three drop to $0$ only at $\theta = 0$. They do not care **how far** apart the supports are: as
# functions of $\theta$ they are flat, with gradient $0$ (JS, TV) or undefined (KL). A generator whose samples
# lie on a low-dimensional manifold (an image generator with a 100-dimensional $z$ in a 784-dimensional space)
# is in this situation almost surely at initialization (Arjovsky & Bottou, 2017).
#
# The **Wasserstein-1** (earth mover's) distance measures how far mass must move:
#
# $$W(P, Q) = \inf_{\gamma \in \Pi(P, Q)} \mathbb E_{(x, y) \sim \gamma}\big[\lVert x - y\rVert\big]
#   \quad\Longrightarrow\quad W(\delta_0, \delta_\theta) = |\theta| ,$$
#
# continuous in $\theta$ with gradient $\operatorname{sign}(\theta)$ everywhere else. Between two Gaussians of the
# same width $\sigma$ the same picture appears smoothly: $\mathrm{KL} = \theta^2 / 2\sigma^2$ explodes as
# $\sigma \to 0$, JSD saturates at $\log 2$ as soon as $|\theta| \gg \sigma$, and $W = |\theta|$ does not care
# about $\sigma$ at all.
#
# All of these are computed below for 1-D densities by quadrature on a grid; $W$ from the quantile functions,
# $W(P, Q) = \int_0^1 \lvert F_P^{-1}(s) - F_Q^{-1}(s)\rvert\, ds$ (in 1-D the optimal plan matches quantiles).

# %%
X_1D = torch.linspace(-8, 8, 8001, dtype=torch.float64)                  # quadrature grid (CPU, float64)
S_1D = torch.linspace(0.5, 8000.5, 8000, dtype=torch.float64) / 8001     # quantile levels in (0, 1)
Z_S = torch.distributions.Normal(0.0, 1.0).icdf(S_1D)                     # standard normal quantiles


def divergences_1d(theta, sigma_p, sigma_q):
    """KL, reverse KL, JSD, TV and W between P = N(0, sigma_p^2) and Q = N(theta, sigma_q^2), in nats."""
    log_p = torch.distributions.Normal(0.0, sigma_p).log_prob(X_1D)
    log_q = torch.distributions.Normal(theta, sigma_q).log_prob(X_1D)
    p, q = log_p.exp(), log_q.exp()
    log_m = torch.logaddexp(log_p, log_q) - math.log(2)                   # M = (P + Q) / 2
    integral = lambda y: torch.trapezoid(y, X_1D).item()                  # noqa: E731
    return {"KL(P||Q)": integral(p * (log_p - log_q)), "KL(Q||P)": integral(q * (log_q - log_p)),
            "JSD": 0.5 * integral(p * (log_p - log_m)) + 0.5 * integral(q * (log_q - log_m)),
            "TV": 0.5 * integral((p - q).abs()),
            "W": (sigma_p * Z_S - theta - sigma_q * Z_S).abs().mean().item()}


THETAS = np.round(np.linspace(-3, 3, 61), 2)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
theta = torch.tensor(THETAS)
axes[0].plot(THETAS, np.where(THETAS == 0, 0, np.nan), "C0o", ms=4)
axes[0].axhline(3.0, color="C0", label="KL = inf (theta != 0)")
axes[0].plot(THETAS, np.where(THETAS == 0, 0, math.log(2)), "C1.-", label="JSD = log 2")
axes[0].plot(THETAS, np.where(THETAS == 0, 0, 1.0), "C2.-", label="TV = 1")
axes[0].plot(THETAS, np.abs(THETAS), "C3", label="W = |theta|")
axes[0].set(xlabel="theta", ylim=(-0.1, 3.2), title="point masses at 0 and theta")
for ax, sigma in zip(axes[1:], (0.1, 0.5), strict=True):
    curves_1d = [divergences_1d(float(t), sigma, sigma) for t in THETAS]
    for key, color in (("KL(P||Q)", "C0"), ("JSD", "C1"), ("TV", "C2"), ("W", "C3")):
        ax.plot(THETAS, [c[key] for c in curves_1d], color, label=key)
    ax.set(xlabel="theta", ylim=(-0.1, 3.2), title=f"N(0, {sigma}^2) vs N(theta, {sigma}^2)")
for ax in axes:
    ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# The gradient a generator would receive is the slope of these curves. For $\sigma = 0.1$ the JSD and TV curves
# are flat beyond $|\theta| \approx 0.4$: a generator trained on them stops moving, however wrong it is. KL has a
# gradient, but of size $\theta/\sigma^2$ (and infinite in the limit), and it needs the densities, which an
# implicit generator does not have. Only $W$ gives a gradient of size 1 everywhere.

# %% [markdown]
# ### Exercise 3: the Wasserstein distance between two samples
# In 1-D the optimal transport plan between two samples of the same size $n$ pairs them **in sorted order** (any
# crossing pair $x_i < x_j$, $y_i > y_j$ can be uncrossed without increasing the cost), so
#
# $$W\big(\hat P_n, \hat Q_n\big) = \frac1n \sum_{i=1}^n \big\lvert x_{(i)} - y_{(i)}\big\rvert,$$
#
# with $x_{(1)} \le \dots \le x_{(n)}$ the sorted sample. Write `wasserstein_1d(x, y)` for two tensors of shape
# $(n,)$, returning a scalar tensor (leave `x` and `y` unchanged). The check compares it with an independent
# computation through the empirical CDFs, $W = \int \lvert \hat F_P(t) - \hat F_Q(t)\rvert\, dt$, and tests
# $W(x, x + \theta) = |\theta|$.

# %% tags=["solution:ex3_wasserstein_1d"]
def wasserstein_1d(x, y):
    """W_1 between the empirical distributions of two equal-size 1-D samples x, y: (n,) each."""
    ### BEGIN SOLUTION
    return (torch.sort(x).values - torch.sort(y).values).abs().mean()
    ### END SOLUTION


# %% tags=["check:ex3_wasserstein_1d"]
lecture09.check_wasserstein_1d(wasserstein_1d)

# %% [markdown]
# From samples, the distance between $\mathcal N(0, \sigma^2)$ and $\mathcal N(\theta, \sigma^2)$ is $|\theta|$ for
# every width: the sample estimate tracks it, down to widths where no f-divergence would be informative.

# %%
gen_w = torch.Generator().manual_seed(6)
z_a, z_b = torch.randn(5000, generator=gen_w), torch.randn(5000, generator=gen_w)
for sigma in (1.0, 0.1, 0.001):
    estimates = [wasserstein_1d(sigma * z_a, t + sigma * z_b).item() for t in (0.5, 1.0, 2.0)]
    print(f"sigma = {sigma:<6}: W estimates at theta = 0.5, 1, 2: " + ", ".join(f"{w:.3f}" for w in estimates))

# %% [markdown]
# ### Widget: divergence explorer
# Slide the mean $\theta$ and width $\sigma_Q$ of the model $Q$ and the width $\sigma_P$ of the data $P$. The
# right panel shows each divergence as a function of $\theta$ at the chosen widths (a dot at the current
# $\theta$). Narrow $P$ and $Q$ approach the point masses; $\sigma_Q \ne \sigma_P$ makes the divergences
# asymmetric ($\mathrm{KL}(P\|Q) \ne \mathrm{KL}(Q\|P)$). The table is precomputed here; the widget only looks up.

# %%
SIGMAS_P, SIGMAS_Q = (0.1, 0.3, 1.0), (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
THETAS_W = np.round(np.linspace(-3, 3, budget(smoke=13, standard=61, full=61)), 2)
EXPLORER = {(sp, sq): [divergences_1d(float(t), sp, sq) for t in THETAS_W] for sp in SIGMAS_P for sq in SIGMAS_Q}


def explore(theta=1.0, sigma_q=0.3, sigma_p=0.3):
    rows = EXPLORER[(sigma_p, sigma_q)]
    i = int(np.abs(THETAS_W - theta).argmin())
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    x = X_1D[::8]
    axes[0].fill_between(x, torch.distributions.Normal(0.0, sigma_p).log_prob(x).exp(), alpha=0.4, label="P (data)")
    axes[0].fill_between(x, torch.distributions.Normal(THETAS_W[i], sigma_q).log_prob(x).exp(), alpha=0.4,
                         label="Q (model)")
    axes[0].set(xlim=(-5, 5), title=f"theta = {THETAS_W[i]:.2f}")
    axes[0].legend()
    for key, color in zip(rows[0], ("C0", "C4", "C1", "C2", "C3"), strict=True):
        values = [r[key] for r in rows]
        axes[1].plot(THETAS_W, values, color, label=f"{key} = {values[i]:.3f}")
        axes[1].plot(THETAS_W[i], min(values[i], 4.0), "o", color=color)
    axes[1].set(xlabel="theta", ylim=(-0.1, 4.0), title="divergences (nats) against theta")
    axes[1].legend(fontsize=8, loc="upper center")
    plt.show()


widgets.interactive_plot(explore, theta=widgets.slider(1.0, -3.0, 3.0, 0.1, description="theta"),
                         sigma_q=list(SIGMAS_Q), sigma_p=list(SIGMAS_P))

# %% [markdown]
# ## 5. Wasserstein GANs
#
# Computing $W$ through its definition (an optimal transport plan) is hopeless in high dimension. The
# **Kantorovich–Rubinstein duality** gives a form that needs only samples, like the f-divergence bound:
#
# $$W(P, Q) = \sup_{\lVert D\rVert_L \le 1}\; \mathbb E_{x \sim P}\big[D(x)\big] - \mathbb E_{x \sim Q}\big[D(x)\big],$$
#
# the supremum over all **1-Lipschitz** functions $D$ (the *critic*: $|D(x) - D(y)| \le \lVert x - y\rVert$). For the
# point masses it is attained by $D(x) = -\operatorname{sign}(\theta)\, x$, giving $W = |\theta|$. The WGAN
# (Arjovsky et al., 2017) trains a critic network to approximate the supremum and the generator to descend it:
#
# $$\min_G \max_{D \in \mathcal D}\; \mathbb E_{P}\big[D(x)\big] - \mathbb E_z\big[D(G(z))\big] .$$
#
# If $\mathcal D$ holds only $K$-Lipschitz functions, the inner maximum is $K \cdot W$: the scale does not matter,
# but the constraint does. Two ways to impose it:
#
# - **Weight clipping** (Arjovsky et al.): after each critic step, clamp every weight into $[-c, c]$. Then $D$ is
#   $K$-Lipschitz for some $K(c)$, but the family is a crude box: the critic tends to saturate at the clipping
#   bounds and to learn very simple functions, and $c$ trades vanishing against exploding gradients.
# - **Gradient penalty** (Gulrajani et al., 2017): a differentiable $D$ is 1-Lipschitz iff
#   $\lVert \nabla_x D\rVert \le 1$ everywhere, and the optimal critic has $\lVert \nabla_x D\rVert = 1$ on the lines
#   between coupled points of $P$ and $Q$. So the critic's loss gets a soft penalty there:
#
# $$\mathcal L_D = \mathbb E_{Q}\big[D(\tilde x)\big] - \mathbb E_{P}\big[D(x)\big]
#   + \lambda\, \mathbb E_{\hat x}\Big[\big(\lVert \nabla_{\hat x} D(\hat x)\rVert_2 - 1\big)^2\Big],
#   \qquad \hat x = \epsilon x + (1 - \epsilon) \tilde x,\; \epsilon \sim \mathcal U[0, 1].$$
#
# ### Exercise 4: the gradient penalty
# Write `gradient_penalty(critic, x_real, x_fake, eps)`: with `x_real`, `x_fake` of shape $(B, \dots)$ (points or
# images), `eps` of shape $(B,)$ and `critic` mapping $(B, \dots)$ to $(B, 1)$, return the scalar
# $\frac1B \sum_i (\lVert \nabla_{\hat x} D(\hat x_i)\rVert_2 - 1)^2$ with $\hat x_i = \epsilon_i x^\text{real}_i +
# (1 - \epsilon_i)\, x^\text{fake}_i$. The norm is per sample, over all of its dimensions. The penalty is part of
# the critic's loss, so it must be differentiable with respect to the critic's parameters: this is a gradient of
# a gradient (`torch.autograd.grad(..., create_graph=True)`).

# %% tags=["solution:ex4_gradient_penalty"]
def gradient_penalty(critic, x_real, x_fake, eps):
    """mean_i (||grad D(x_hat_i)|| - 1)^2 at x_hat = eps x_real + (1 - eps) x_fake; eps (B,)."""
    ### BEGIN SOLUTION
    eps = eps.reshape(-1, *([1] * (x_real.ndim - 1)))                     # (B, 1, ...) broadcasts per sample
    x_hat = (eps * x_real + (1 - eps) * x_fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]   # (B, ...)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    ### END SOLUTION


# %% tags=["check:ex4_gradient_penalty"]
lecture09.check_gradient_penalty(gradient_penalty)

# %% [markdown]
# ### The WGAN loop
# One loop serves both variants; they differ in two lines (the clamp, the penalty) and in the optimizer: the WGAN
# paper uses RMSProp for clipping (momentum made clipped critics unstable); the WGAN-GP paper's Algorithm 1 uses
# Adam with $\beta_1 = 0$, $\beta_2 = 0.9$, and its released toy script `gan_toy.py` $\beta_1 = 0.5$,
# $\beta_2 = 0.9$, which this loop follows. The critic takes `n_critic` steps per generator step, so that it stays close to
# the supremum it is meant to compute. The loop also tracks the critic's estimate
# $\mathbb E_P[D] - \mathbb E_Q[D]$ of $K \cdot W$.

# %%
def train_wgan(G, D, sample_real, nz, steps, clip=None, lam=None, n_critic=5, batch=256, lr=1e-4, decay=False):
    """WGAN with weight clipping (clip = c) or with a gradient penalty (lam = lambda); G and D trained in place.
    decay=True lowers both learning rates linearly to 0 over the `steps` generator steps."""
    if clip is not None:
        opt_G, opt_D = (torch.optim.RMSprop(m.parameters(), lr=lr) for m in (G, D))
    else:
        opt_G, opt_D = (torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.9)) for m in (G, D))
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps) for opt in (opt_G, opt_D)]
    history = {"w_estimate": [], "gp": []}
    for _ in progress(range(steps), "WGAN"):
        for _ in range(n_critic):
            x = sample_real(batch)                                        # (B, ...) real
            with torch.no_grad():
                x_fake = G(torch.randn(batch, nz, device=device))         # (B, ...) generated
            w_estimate = D(x).mean() - D(x_fake).mean()
            loss_D = -w_estimate
            if lam is not None:
                gp = gradient_penalty(D, x, x_fake, torch.rand(batch, device=device))
                loss_D = loss_D + lam * gp
                history["gp"].append(gp.item())
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            opt_D.step()
            if clip is not None:
                with torch.no_grad():
                    for p in D.parameters():
                        p.clamp_(-clip, clip)
        loss_G = -D(G(torch.randn(batch, nz, device=device))).mean()
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()
        if decay:
            for schedule in schedules:                                    # once per generator step
                schedule.step()
        history["w_estimate"].append(w_estimate.item())
    return history

# %% [markdown]
# ### WGAN on the 5×5 grid
#
# Lecture 08's hardest toy set: 25 Gaussians of standard deviation $\sigma = 0.05$ on a grid of spacing 1 (twice
# as blurry, relative to the spacing, as the WGAN-GP paper's grid of $\sigma = 0.05$ at spacing 2; lecture 08,
# section 5).
# The same protocol as lecture 08 measures the result on 2500 samples: a mode counts as **covered** when at least
# 20 samples lie within $3\sigma$ of its centre, and the **high-quality** fraction is the share of samples within
# $3\sigma$ of some centre. Written here as a small function:

# %%
def grid_coverage(x, threshold=20):
    """(modes of the 5x5 grid with >= threshold samples within 3 sigma, fraction of samples within 3 sigma)."""
    centers = toy.mode_centers("25gaussians").to(x.device)               # (25, 2)
    dist, nearest = torch.cdist(x, centers).min(1)                        # (N,) each
    close = dist < 3 * toy.MODE_STD["25gaussians"]
    counts = torch.bincount(nearest[close], minlength=len(centers))       # (25,)
    return int((counts >= threshold).sum()), close.float().mean().item()


# %% [markdown]
# Generator and critic are MLPs (the critic without any normalization layer: batch norm would make
# $D(\hat x_i)$ depend on the other samples of the batch, and the per-sample gradient penalty meaningless): three
# hidden layers of 128 units each, ReLU in the generator, leaky ReLU in the critic, noise $z \in \mathbb R^8$.
# Both variants take `n_critic = 5` critic steps of batch 256 per generator step; clipping uses $c = 0.01$ as in
# the WGAN paper, the penalty $\lambda = 0.1$ as in the WGAN-GP toy script. Against that script (`gan_toy.py`,
# released with the paper: three ReLU layers of 512 units, 2-D noise, Adam at $10^{-4}$ with
# $\beta = (0.5, 0.9)$, 100000 generator steps of batch 256), this recipe fits a CPU budget:
#
# | | `gan_toy.py` (WGAN-GP) | here, WGAN-GP | here, clipping |
# | --- | --- | --- | --- |
# | hidden layers × width | 3 × 512 | 3 × 128 | 3 × 128 |
# | optimizer, learning rate | Adam $10^{-4}$, constant | Adam $10^{-3}$, decaying linearly to 0 | RMSProp $5 \cdot 10^{-4}$, constant (WGAN paper: $5 \cdot 10^{-5}$) |
# | generator steps (standard / full mode) | 100000 | 8000 / 20000 | 2000 / 20000 |
#
# In standard mode the penalized run has hidden layers with 16 times fewer weights ($128^2$ against $512^2$) and
# 12 times fewer generator steps than the script, and makes up with a learning rate 10 times larger. That rate
# decays to 0: the critic's gradient has norm about 1 everywhere, even at a mode, so with a constant rate the
# generator's samples keep jittering around the modes at the scale of one step (lecture 08 made the same point
# for the plain GAN). Clipping gets fewer steps (its learning rate is the script's clipping rate times 10):
# enough to show how it fails.

# %%
N_GRID = budget(smoke=5_000, standard=100_000, full=200_000)
GRID_STEPS = {"clip": budget(smoke=20, standard=2000, full=20000),
              "gp": budget(smoke=20, standard=8000, full=20000)}
NZ_2D = 8
grid_data = toy.toy_2d("25gaussians", N_GRID, seed=0).to(device)        # (N, 2)


def sample_grid(batch):
    return grid_data[torch.randint(len(grid_data), (batch,), device=device)]


wgan2d, wgan2d_history = {}, {}
print(f"generator steps: {GRID_STEPS}")
for variant, kwargs in (("clip", {"clip": 0.01, "lr": 5e-4}), ("gp", {"lam": 0.1, "lr": 1e-3, "decay": True})):
    torch.manual_seed(0)
    wgan2d[variant] = nn.ModuleDict({"G": mlp(NZ_2D, 2, depth=3, act=nn.ReLU), "D": mlp(2, 1, depth=3)}).to(device)
    wgan2d_history[variant] = train_or_load(
        wgan2d[variant], LECTURE, f"wgan_{variant}_grid_decay",
        lambda m=wgan2d[variant], v=variant, kw=kwargs: train_wgan(m["G"], m["D"], sample_grid, NZ_2D,
                                                                   GRID_STEPS[v], **kw))

# %%
grid_samples = {}
with torch.no_grad():
    for variant, pair in wgan2d.items():
        z = torch.randn(2500, NZ_2D, generator=torch.Generator().manual_seed(1)).to(device)
        grid_samples[variant] = pair["G"](z).cpu()
grid_score = {v: grid_coverage(x) for v, x in grid_samples.items()}
for variant, (modes, hq) in grid_score.items():
    print(f"WGAN-{variant}: {modes}/25 modes covered, {hq:.1%} high-quality samples")

# %% [markdown]
# ### How Lipschitz are the critics?
#
# The Lipschitz constant of a differentiable critic is $K = \sup_x \lVert \nabla_x D(x)\rVert$. Two estimates:
# a **lower bound**, the largest gradient norm found at many points (a dense grid, data, samples and the
# interpolates the penalty sees); and an **upper bound**, the product of the layers' spectral norms
# $\prod_l \lVert W_l\rVert_2$ (LeakyReLU has slope at most 1, so each layer stretches distances by at most
# $\lVert W_l\rVert_2$).

# %%
def input_grad_norms(D, x, batch=2000):
    """||grad_x D(x)|| per point, x (N, ...) -> (N,), on the CPU."""
    norms = []
    for i in range(0, len(x), batch):
        xi = x[i:i + batch].to(device).requires_grad_(True)
        grad = torch.autograd.grad(D(xi).sum(), xi)[0]
        norms.append(grad.flatten(1).norm(dim=1).detach().cpu())
    return torch.cat(norms)


def spectral_bound(D):
    """prod_l ||W_l||_2 over the linear layers: an upper bound on the Lipschitz constant of a ReLU-type MLP."""
    return math.prod(torch.linalg.matrix_norm(m.weight.detach(), ord=2).item() for m in D.modules()
                     if isinstance(m, nn.Linear))


pts, _ = plot.grid_2d(3.0, 120)                                           # (14400, 2)
eps_2d = torch.rand(2500, 1, generator=torch.Generator().manual_seed(2))
lipschitz_2d = {}
for variant, pair in wgan2d.items():
    real, fake = grid_data[:2500].cpu(), grid_samples[variant]
    probe = torch.cat([pts, real, fake, eps_2d * real + (1 - eps_2d) * fake])
    norms = input_grad_norms(pair["D"], probe)
    lipschitz_2d[variant] = {"norms": norms, "lower": norms.max().item(), "upper": spectral_bound(pair["D"])}
    print(f"WGAN-{variant} critic: max ||grad D|| = {norms.max():.3f} (lower bound on K), "
          f"median {norms.median():.3f}; product of spectral norms = {lipschitz_2d[variant]['upper']:.3g} (upper bound)")

# %% [markdown]
# Does the critic estimate $W$? In 2-D the exact $W$ between two samples of 1000 points each is an assignment
# problem (the optimal plan between two equal-size empirical distributions is a permutation), solved exactly by
# `scipy.optimize.linear_sum_assignment`. If the critic is $K$-Lipschitz, $D/K$ is 1-Lipschitz, so its value on the
# same points, $\mathbb E_P[D] - \mathbb E_Q[D]$, is at most $K \cdot W$. Dividing it by an **upper** bound on $K$
# (the product of spectral norms) gives a lower bound on $W$, a loose one, since that product usually lies far
# above the true $K$. Dividing by the largest gradient norm found is tempting but gives no bound: that number is
# only a *lower* bound on $K$, so the quotient can exceed $W$.

# %%
from scipy.optimize import linear_sum_assignment  # noqa: E402

for variant, pair in wgan2d.items():
    real, fake = toy.toy_2d("25gaussians", 1000, seed=7), grid_samples[variant][:1000]     # fresh data
    cost = torch.cdist(real.double(), fake.double()).numpy()              # (1000, 1000) distances
    rows, cols = linear_sum_assignment(cost)
    w_exact = cost[rows, cols].mean()
    with torch.no_grad():
        w_critic = (pair["D"](real.to(device)).mean() - pair["D"](fake.to(device)).mean()).item()
    print(f"WGAN-{variant}: exact W = {w_exact:.4f}; critic E_P[D] - E_Q[D] = {w_critic:.4g}; divided by the upper "
          f"bound on K: {w_critic / lipschitz_2d[variant]['upper']:.4g} (a lower bound on W), by the largest gradient "
          f"norm found: {w_critic / lipschitz_2d[variant]['lower']:.4f} (no bound)")

# %% [markdown]
# The picture: samples over the data, the critic's values (its level sets are what the generator climbs) and
# the distribution of gradient norms.

# %%
fig, axes = plt.subplots(2, 3, figsize=(11, 7.2))
for row, (variant, pair) in zip(axes, wgan2d.items(), strict=True):
    modes, hq = grid_score[variant]
    plot.scatter_2d(grid_data[:2500].cpu(), ax=row[0], lim=3, s=1, color="0.6")
    plot.scatter_2d(grid_samples[variant], ax=row[0], lim=3, s=1, color="C3",
                    title=f"WGAN-{variant}: {modes}/25 modes, {hq:.0%} HQ")
    with torch.no_grad():
        values = pair["D"](pts.to(device)).cpu().reshape(120, 120)
    row[1].imshow(values, origin="lower", extent=(-3, 3, -3, 3), cmap="coolwarm")
    row[1].set_title("critic D(x)")
    row[2].hist(lipschitz_2d[variant]["norms"].numpy(), bins=60, color="C0")
    row[2].set(title="||grad_x D|| at grid, data, samples, interpolates", xlabel="gradient norm")
plt.tight_layout()

# %% [markdown]
# ### WGAN on MNIST
#
# The same loop on images in $[0, 1]^{784}$, with MLPs: the generator maps $z \in \mathbb R^{64}$ through two hidden
# layers to 784 sigmoid outputs; the critic is a LeakyReLU MLP with no normalization and no output
# nonlinearity (it is not a classifier). Hyperparameters from the papers: clipping at $c = 0.01$ with RMSProp at
# $5 \cdot 10^{-5}$; the penalty with $\lambda = 10$ and Adam at $10^{-4}$ (with the toy script's
# $\beta_1 = 0.5$, not Algorithm 1's 0); `n_critic = 5` for both. Both train on the training split less 5000
# held-out images drawn once at random (`evaluation.generative_train_split`), which stay unseen for the FID floor
# below.

# %%
from dgm_course import evaluation  # noqa: E402  (the FID protocol and the course classifier; lecture 14 explains it)

N_MNIST = budget(smoke=2000, standard=None, full=None)                   # None: the whole generative split
MNIST_STEPS = budget(smoke=10, standard=1500, full=20000)
N_FID = budget(smoke=500, standard=2000, full=5000)                      # generated images per FID, every model
NZ = 64
train_images, train_labels = evaluation.generative_train_split(N_MNIST)  # uint8 (N, 28, 28), int64 (N,)
test_images, test_labels = mnist.test_split(smoke=500)                    # the course's test set
x_train = mnist.to_unit(train_images).flatten(1).to(device)              # (N, 784) in [0, 1]
x_test = mnist.to_unit(test_images).flatten(1)                           # (N_test, 784), CPU: the FID reference


def sample_mnist(batch):
    return x_train[torch.randint(len(x_train), (batch,), device=device)]


def image_generator(nz=NZ):
    return nn.Sequential(nn.Linear(nz, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                         nn.Linear(512, 784), nn.Sigmoid())              # (B, nz) -> (B, 784) in (0, 1)


wgan_mnist, wgan_mnist_history = {}, {}
for variant, kwargs in (("clip", {"clip": 0.01, "lr": 5e-5, "batch": 64}), ("gp", {"lam": 10.0, "lr": 1e-4, "batch": 64})):
    torch.manual_seed(0)
    wgan_mnist[variant] = nn.ModuleDict({"G": image_generator(), "D": mlp(784, 1, hidden=256)}).to(device)
    wgan_mnist_history[variant] = train_or_load(
        wgan_mnist[variant], LECTURE, f"wgan_{variant}_mnist_gensplit",
        lambda m=wgan_mnist[variant], kw=kwargs: train_wgan(m["G"], m["D"], sample_mnist, NZ, MNIST_STEPS, **kw))

# %% [markdown]
# Samples of both, and the critics' estimates of $K \cdot W$ during training. For the penalized critic ($K \approx 1$)
# the estimate is an estimate of $W$ itself and falls as the generator improves: unlike a GAN discriminator's
# loss, it is a usable learning curve (Arjovsky et al. make this point). The clipped critic's estimate is
# scaled by an unknown $K(c)$ and tiny.

# %%
with torch.no_grad():
    z_show = torch.randn(N_FID, NZ, generator=torch.Generator().manual_seed(3)).to(device)
    mnist_samples = {v: pair["G"](z_show).cpu() for v, pair in wgan_mnist.items()}   # (N_FID, 784) each
plot.samples_beside_real({f"WGAN-{v}": x for v, x in mnist_samples.items()}, x_test)

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for variant, hist in wgan_mnist_history.items():
    w = np.asarray(hist["w_estimate"])
    ax.plot(np.convolve(w, np.ones(20) / 20, mode="valid"), label=f"{variant}")
ax.set(xlabel="generator step", ylabel="E_P[D] - E_Q[D]", yscale="symlog", title="critic's estimate of K W")
ax.legend()

# %% [markdown]
# **Lipschitz constants** of the two MNIST critics, measured on real test images, samples and interpolates:

# %%
eps_img = torch.rand(N_FID, 1, generator=torch.Generator().manual_seed(4))
lipschitz_mnist = {}
for variant, pair in wgan_mnist.items():
    fake = mnist_samples[variant]
    real = x_test[:N_FID]
    norms = input_grad_norms(pair["D"], torch.cat([real, fake[:len(real)], eps_img[:len(real)] * real
                                                   + (1 - eps_img[:len(real)]) * fake[:len(real)]]))
    lipschitz_mnist[variant] = {"lower": norms.max().item(), "median": norms.median().item(),
                                "upper": spectral_bound(pair["D"])}
    print(f"WGAN-{variant} MNIST critic: ||grad D|| median {norms.median():.3g}, max {norms.max():.3g} (lower bound "
          f"on K); product of spectral norms {lipschitz_mnist[variant]['upper']:.3g} (upper bound)")

# %% [markdown]
# ### FID with the course classifier
#
# Sample quality is measured as in lecture 14: the Fréchet distance between Gaussians fitted to the 128
# penultimate features of the course's small MNIST classifier. **This is not the Inception FID** of the GAN
# literature, and its values are not comparable with published FIDs; it compares models within this course. The
# course's protocol: `N_FID` generated images per model against the reference set, the mode's test set; the
# **floor** is the FID of `N_FID` real held-out training images (never trained on) against the same reference,
# what a perfect model would score with that many samples; and beside each FID the fraction of samples the
# classifier assigns to a digit with probability at least 0.9.

# %%
classifier = evaluation.mnist_classifier()
reference = x_test.reshape(-1, 1, 28, 28)                                 # = evaluation.fid_reference(smoke=500)
fid_floor = evaluation.fid_floor(N_FID, reference, classifier)
fid = {variant: evaluation.fid(x, reference, classifier) for variant, x in mnist_samples.items()}
confident = {variant: evaluation.confident_fraction(x, classifier) for variant, x in mnist_samples.items()}
print(f"FID (course classifier, {N_FID} samples vs {len(reference)} test images): floor {fid_floor:.2f}, "
      + ", ".join(f"WGAN-{v} {value:.2f}" for v, value in fid.items()))
print("confidently classified: " + ", ".join(f"WGAN-{v} {c:.1%}" for v, c in confident.items()))

# %% [markdown]
# ## 6. BiGAN: a GAN that can infer latents
#
# A GAN generator maps $z \mapsto x$ but offers no way back: given a digit, which $z$ made it? A VAE has an
# encoder; a GAN can learn one adversarially. **BiGAN** (Donahue et al., 2017) and the simultaneous **ALI**
# (Dumoulin et al., 2017) add an encoder $E : x \mapsto z$ and let the discriminator judge **pairs**:
#
# $$\min_{G, E} \max_D\; \mathbb E_{x \sim p_\text{data}}\big[\log D(x, E(x))\big]
#   + \mathbb E_{z \sim p(z)}\big[\log\big(1 - D(G(z), z)\big)\big] .$$
#
# The "real" pairs come from the joint $p_\text{data}(x)\, \delta(z - E(x))$, the "fake" ones from
# $p(z)\, \delta(x - G(z))$. As in lecture 08, the optimal $D$ turns the game into the JSD between these two
# joint distributions, and at the global optimum they are equal: then $E = G^{-1}$ on the data, so $E$ **inverts**
# the generator, although it never saw a pair $(G(z), z)$ with a reconstruction loss. The hope is that an
# encoder that inverts a good generator captures the factors of variation, i.e. makes useful **features**.
#
# The discriminator reads $x$ and $z$ through separate first layers, then jointly. Both updates use the
# non-saturating form (each player maximizes the log-probability of the label it wants), written out:

# %%
class JointDiscriminator(nn.Module):
    """D(x, z): a logit for 'this pair is (x, E(x)) with x real', from x (B, 784) and z (B, nz)."""

    def __init__(self, nz, hidden=256):
        super().__init__()
        self.fx = nn.Sequential(nn.Linear(784, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.2))
        self.fz = nn.Sequential(nn.Linear(nz, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.2))
        self.joint = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.2),
                                   nn.Linear(hidden, 1))

    def forward(self, x, z):
        return self.joint(torch.cat([self.fx(x), self.fz(z)], 1))         # (B, 1)


def image_encoder(nz):
    return nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                         nn.Linear(256, nz))                               # (B, 784) -> (B, nz)


# %%
BIGAN_STEPS = budget(smoke=10, standard=2000, full=30000)
NZ_BIGAN = 32


def train_bigan(G, E, D, steps=BIGAN_STEPS, batch=128, lr=2e-4):
    """BiGAN: D tells (x, E(x)) from (G(z), z); G and E are trained together to fool it."""
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_GE = torch.optim.Adam([*G.parameters(), *E.parameters()], lr=lr, betas=(0.5, 0.999))
    history = {"loss_D": [], "loss_GE": []}
    for _ in progress(range(steps), "BiGAN"):
        x, z = sample_mnist(batch), torch.randn(batch, NZ_BIGAN, device=device)   # (B, 784), (B, nz)
        real_logit = D(x, E(x).detach())                                  # encoder pair: label 1
        fake_logit = D(G(z).detach(), z)                                  # generator pair: label 0
        loss_D = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        loss_GE = F.softplus(D(x, E(x))).mean() + F.softplus(-D(G(z), z)).mean()   # labels swapped
        opt_GE.zero_grad(set_to_none=True)
        loss_GE.backward()
        opt_GE.step()
        history["loss_D"].append(loss_D.item())
        history["loss_GE"].append(loss_GE.item())
    return history


torch.manual_seed(0)
bigan = nn.ModuleDict({"G": image_generator(NZ_BIGAN), "E": image_encoder(NZ_BIGAN),
                       "D": JointDiscriminator(NZ_BIGAN)}).to(device)
bigan_history = train_or_load(bigan, LECTURE, "bigan_mnist_gensplit",
                              lambda: train_bigan(bigan["G"], bigan["E"], bigan["D"]))
bigan.eval()                                                              # dropout off from here on

# %% [markdown]
# **Latent inference.** Encode test digits, $\hat z = E(x)$, and decode them again, $G(E(x))$. Nothing in the
# objective asks for pixel-exact reconstructions; what BiGAN's reconstructions keep, when training has gone
# well, is the digit's identity and rough style.

# %%
with torch.no_grad():
    x_show = x_test[:16].to(device)
    reconstruction = bigan["G"](bigan["E"](x_show)).cpu()
    bigan_samples = bigan["G"](torch.randn(64, NZ_BIGAN, generator=torch.Generator().manual_seed(5)).to(device)).cpu()
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.5))
plot.image_grid(x_show.cpu().reshape(-1, 28, 28), nrow=4, ax=axes[0], title="test digits x")
plot.image_grid(reconstruction.reshape(-1, 28, 28), nrow=4, ax=axes[1], title="G(E(x))")
plt.tight_layout()
plot.samples_beside_real({"BiGAN samples G(z)": bigan_samples}, x_test)

# %% [markdown]
# **A linear probe.** How useful are the features $E(x)$? Fit a logistic regression from $E(x)$ to the digit label
# on training images and measure its accuracy on the test images. The baseline is the same encoder
# architecture with its **random initial weights**: a random network is a random feature map, and on MNIST a
# linear classifier on random features is already far better than chance, so the BiGAN encoder has to beat a
# real baseline, not 10%.

# %%
from sklearn.linear_model import LogisticRegression  # noqa: E402

N_PROBE = budget(smoke=1000, standard=10000, full=60000)


@torch.no_grad()
def probe_accuracy(encoder):
    """Test accuracy of a logistic regression on standardized encoder features (N_PROBE train images)."""
    f_train = encoder(x_train[:N_PROBE]).cpu()                            # (N_PROBE, nz)
    f_test = encoder(x_test.to(device)).cpu()
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000).fit(((f_train - mean) / std).numpy(), train_labels[:N_PROBE].numpy())
    return clf.score(((f_test - mean) / std).numpy(), test_labels.numpy())


torch.manual_seed(1)
random_encoder = image_encoder(NZ_BIGAN).to(device).eval()
probe = {"BiGAN encoder": probe_accuracy(bigan["E"]), "random encoder": probe_accuracy(random_encoder)}
for name, acc in probe.items():
    print(f"linear probe on {name} features ({NZ_BIGAN} dims): test accuracy {acc:.1%}")

# %% [markdown]
# ## Results
#
# The headline numbers, recorded for the course's results table.

# %%
elapsed = time.perf_counter() - T0
for variant in ("clip", "gp"):
    modes, hq = grid_score[variant]
    record(LECTURE, f"wgan_{variant}_grid_modes", modes, "modes of 25", n_data=2500, wall_time_s=elapsed,
           note=f"5x5 grid, >= 20 of 2500 samples within 3 sigma; {GRID_STEPS[variant]} generator steps")
    record(LECTURE, f"wgan_{variant}_grid_high_quality", hq, "fraction", n_data=2500, wall_time_s=elapsed,
           note="fraction of samples within 3 sigma of a mode")
    record(LECTURE, f"wgan_{variant}_fid", fid[variant], "FID (course classifier)", n_data=N_FID,
           wall_time_s=elapsed, note=f"not Inception FID; {N_FID} samples vs the {len(reference)} test images; "
                                     f"{MNIST_STEPS} generator steps")
    record(LECTURE, f"wgan_{variant}_confident_fraction", confident[variant], "fraction", n_data=N_FID,
           wall_time_s=elapsed, note="samples the course classifier assigns to a digit with probability >= 0.9")
    record(LECTURE, f"wgan_{variant}_mnist_critic_lipschitz", lipschitz_mnist[variant]["lower"], "max ||grad D||",
           n_data=3 * min(N_FID, len(x_test)), wall_time_s=elapsed, note="lower bound: largest input-gradient norm at test images, "
                                                       "samples and interpolates")
record(LECTURE, "fid_floor", fid_floor, "FID (course classifier)", n_data=N_FID, wall_time_s=elapsed,
       note=f"{N_FID} held-out training images against the {len(reference)} test images")
record(LECTURE, "bigan_probe_accuracy", probe["BiGAN encoder"], "accuracy", n_data=len(x_test), wall_time_s=elapsed,
       note=f"logistic regression on E(x) ({NZ_BIGAN} dims), trained on {N_PROBE} images")
record(LECTURE, "random_encoder_probe_accuracy", probe["random encoder"], "accuracy", n_data=len(x_test),
       wall_time_s=elapsed, note="the same encoder architecture with random weights")
for name in ("KL", "reverse KL", "Pearson"):
    modes, _ = ring_coverage(fgan[name]["G"].sample(2500, generator=torch.Generator().manual_seed(0)).detach())
    record(LECTURE, f"fgan_{name.replace(' ', '_').lower()}_ring_modes", modes, "modes of 8", n_data=2500,
           wall_time_s=elapsed, note="Gaussian generator on the ring: covering vs seeking")

# %% [markdown]
# **Discussion of the numbers.** This lecture records the WGANs' coverage of the grid, their MNIST FIDs (beside
# the floor) and the BiGAN probe against the random encoder's. The course's standard bar for the WGAN-GP on the
# grid is at least 20 of 25 modes with at least 70% high-quality samples; lecture 08's plain GAN is held to 24 and
# 90%.
#
# - **The grid** (coverage printed in section 5). The penalized critic's recipe (the table in section 5) trades the
#   WGAN-GP script's width and steps for a larger learning rate that decays to 0, so that the last, small steps
#   let the samples settle into the modes. Weight clipping fails in a different way: its critic is nearly linear (look at its level sets) with
#   gradient norms far below 1, so it can only push the samples around as a block. The WGAN-GP toy script trains
#   for 100000 generator steps at a tenth of our learning rate; `full` mode trains 20000 here.
# - **MNIST**: both WGANs get 1500 generator steps with MLPs, enough for digit-like shapes from the penalized
#   critic and much less from the clipped one; compare the two FIDs with the floor, at the same number of samples.
#   The penalized critic's gradient norms sit near 1 (its Lipschitz estimate), the clipped critic's far below, as
#   on the grid.
# - **BiGAN**: the encoder's features support a better linear probe than the random encoder's, so adversarial
#   inference learned something about digit identity without labels; but 2000 steps are far from the BiGAN
#   paper's training and its discriminator wins the game quickly (its loss falls towards 0): the reconstructions
#   $G(E(x))$ above show how much of each digit the pair $(E, G)$ keeps.
#
# The FID here is the course classifier's, not Inception's: compare it only with other numbers of this course.

# %% [markdown]
# ## Summary
#
# - An **f-divergence** $D_f(P\|Q) = \mathbb E_Q[f(p/q)]$ is fixed by a convex generator $f$; its **convex
#   conjugate** $f^*(t) = \sup_u (tu - f(u))$ turns it into a supremum over critics,
#   $D_f \ge \sup_T \mathbb E_P[T] - \mathbb E_Q[f^*(T)]$, tight at $T^* = f'(p/q)$, and computable from samples.
# - **f-GAN** makes that bound a game, one per divergence. With a generator that cannot fit the data, the
#   divergence decides the compromise: forward KL and $\chi^2$ **cover** all modes with one wide Gaussian, reverse
#   KL **seeks** a single mode.
# - On **disjoint supports** KL is infinite and JSD and TV are constant: no gradient tells the generator where to
#   go. The **Wasserstein distance** $W(\delta_0, \delta_\theta) = |\theta|$ does.
# - The **WGAN** estimates $W$ with a Lipschitz critic (Kantorovich–Rubinstein duality). **Weight clipping** keeps
#   the critic Lipschitz only crudely (a tiny, unknown constant); the **gradient penalty** pins
#   $\lVert\nabla D\rVert$ near 1 where it matters, and its estimate of $W$ is a usable training curve.
# - **BiGAN** adds an encoder and a discriminator on $(x, z)$ pairs; at the optimum $E = G^{-1}$, and its features
#   can be measured with a **linear probe** against a random encoder.
#
# ## References
# - X. Nguyen, M. J. Wainwright, M. I. Jordan. *Estimating divergence functionals and the likelihood ratio by
#   convex risk minimization.* IEEE Trans. Information Theory, 2010. [arXiv:0809.0853](https://arxiv.org/abs/0809.0853)
#   (the variational bound)
# - S. Nowozin, B. Cseke, R. Tomioka. *f-GAN: Training Generative Neural Samplers using Variational Divergence
#   Minimization.* NeurIPS 2016. [arXiv:1606.00709](https://arxiv.org/abs/1606.00709)
# - M. Arjovsky, L. Bottou. *Towards Principled Methods for Training Generative Adversarial Networks.* ICLR 2017.
#   [arXiv:1701.04862](https://arxiv.org/abs/1701.04862) (disjoint supports)
# - M. Arjovsky, S. Chintala, L. Bottou. *Wasserstein GAN.* ICML 2017. [arXiv:1701.07875](https://arxiv.org/abs/1701.07875)
# - I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville. *Improved Training of Wasserstein GANs.*
#   NeurIPS 2017. [arXiv:1704.00028](https://arxiv.org/abs/1704.00028) (gradient penalty; the 25-Gaussian toy set)
# - J. Donahue, P. Krähenbühl, T. Darrell. *Adversarial Feature Learning.* ICLR 2017.
#   [arXiv:1605.09782](https://arxiv.org/abs/1605.09782) (BiGAN)
# - V. Dumoulin, I. Belghazi, B. Poole, O. Mastropietro, A. Lamb, M. Arjovsky, A. Courville. *Adversarially
#   Learned Inference.* ICLR 2017. [arXiv:1606.00704](https://arxiv.org/abs/1606.00704) (ALI)
# - A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann, C. Sutton. *VEEGAN.* NeurIPS 2017.
#   [arXiv:1705.07761](https://arxiv.org/abs/1705.07761) (the modes / high-quality protocol on the 2-D grid)
# - Z. Lin, A. Khetan, G. Fanti, S. Oh. *PacGAN: The power of two samples in generative adversarial networks.*
#   NeurIPS 2018. [arXiv:1712.04086](https://arxiv.org/abs/1712.04086) (the same protocol with 2500 samples)
# - M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter. *GANs Trained by a Two Time-Scale Update
#   Rule Converge to a Local Nash Equilibrium.* NeurIPS 2017. [arXiv:1706.08500](https://arxiv.org/abs/1706.08500) (FID)
