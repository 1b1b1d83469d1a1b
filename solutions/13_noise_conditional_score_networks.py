# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 13 — Noise-conditional score networks and SDEs
#
# Lecture 12 learned the score $s_\theta(x) \approx \nabla_x \log p(x)$ by denoising score matching and sampled
# with Langevin dynamics, and found three failures: data on a low-dimensional manifold (the score is undefined
# off it), poor scores in low-density regions (where there is no training data), and **wrong mode weights**
# (Langevin started between two well-separated modes never crosses the gap, so each mode gets the chains that
# happened to start near it). This lecture fixes all three with one idea: **perturb the data with many levels of
# noise**, learn one network for all of them, and anneal the sampler from large noise to small. Then it lets the
# number of noise levels go to infinity, which turns the noising into a stochastic differential equation.
#
# **Learning goals**
# 1. Choose a **geometric noise schedule** $\sigma_1 > \dots > \sigma_L$ with $\sigma_1$ near the largest pairwise
#    distance of the data and a ratio $\sigma_i/\sigma_{i+1}$ small enough for consecutive levels to overlap.
# 2. Write the whole **NCSN objective** (a noise level per example, perturb, weight by $\lambda(\sigma) = \sigma^2$,
#    average), train a **noise-conditional score network** $s_\theta(x, \sigma)$ with it, and see that it is the
#    same loss as **$\varepsilon$-prediction**.
# 3. Write **annealed Langevin dynamics** with a step that is stable at every level, and measure the mode-weight
#    error of plain against annealed Langevin.
# 4. Write the **variance-exploding SDE** and its **variance-preserving** sibling, solve the **reverse SDE** with
#    Euler–Maruyama, add a Langevin **corrector** (predictor–corrector), sample with the deterministic
#    **probability-flow ODE**, and use that ODE as a flow to compute an **exact log-likelihood**; check on 2-D data
#    against the true density.
# 5. Do it all on MNIST with a small convolutional score network, and report FID with the course classifier.
#
# **Builds on** lecture 11 (Langevin MCMC) and lecture 12 (score models, denoising score matching, Tweedie's
# formula, the failures of Langevin sampling).

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import (
    budget,
    evaluation,
    fit,
    fit_steps,
    mnist,
    plot,
    progress,
    record,
    setup,
    train_or_load,
    widgets,
)
from dgm_course.exercises import lecture13

device, MODE = setup(seed=0)
LECTURE = "13_noise_conditional_score_networks"
T0 = time.perf_counter()

# %% [markdown]
# ## 1. The two-mode target, and what noise does to it
#
# The same target as lecture 12: two unit Gaussians far apart, with unequal weights,
#
# $$p(x) = 0.2\, \mathcal N\big(x; (-5, -5), I\big) + 0.8\, \mathcal N\big(x; (5, 5), I\big), \qquad x \in \mathbb R^2 .$$
#
# The **mode-weight error** of a set of samples is $|\hat w - 0.8|$, where $\hat w$ is the fraction of samples
# closer to $(5, 5)$ than to $(-5, -5)$. Chains start uniformly in $[-8, 8]^2$, so about half of them start on
# each side.
#
# Perturbing the data with Gaussian noise of scale $\sigma$ gives $p_\sigma(\tilde x) = \int p(x)\,
# \mathcal N(\tilde x; x, \sigma^2 I)\, dx$. For a Gaussian mixture this is again a mixture, with every
# covariance grown by $\sigma^2$, so its score is known exactly:
#
# $$\nabla \log p_\sigma(x) = \sum_k r_k(x)\, \frac{\mu_k - x}{1 + \sigma^2}, \qquad
# r_k(x) = \frac{w_k \mathcal N(x; \mu_k, (1+\sigma^2) I)}{\sum_j w_j \mathcal N(x; \mu_j, (1+\sigma^2) I)} .$$
#
# We use it as ground truth for the learned network.

# %%
W_MIX = torch.tensor([0.2, 0.8])                                          # mode weights
MU_MIX = torch.tensor([[-5.0, -5.0], [5.0, 5.0]])                         # (K, 2) mode centres


def sample_target(n, seed=0):
    """n points of the two-mode mixture, (n, 2), on the course device."""
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(W_MIX, n, replacement=True, generator=g)
    return (MU_MIX[k] + torch.randn(n, 2, generator=g)).to(device)


def exact_score(x, sigma):
    """Exact score of p_sigma at x (N, 2); sigma a float, 0-d tensor or (N,) tensor."""
    var = 1 + torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1) ** 2      # (N or 1, 1)
    mu, w = MU_MIX.to(x), W_MIX.to(x)
    log_r = w.log() - ((x[:, None] - mu) ** 2).sum(-1) / (2 * var)        # (N, K)
    r = log_r.softmax(-1)
    return (r[..., None] * (mu - x[:, None])).sum(1) / var               # (N, 2)


def heavy_share(x):
    """The fraction of samples x (N, 2) closer to (5, 5) than to (-5, -5)."""
    near_heavy = (x - MU_MIX[1].to(x)).norm(dim=1) < (x - MU_MIX[0].to(x)).norm(dim=1)
    return near_heavy.float().mean().item()


def mode_weight_error(x):
    """|fraction of samples closer to (5, 5) than to (-5, -5) - 0.8|."""
    return abs(heavy_share(x) - 0.8)


def uniform_start(n, seed=0):
    """Chains started uniformly in [-8, 8]^2: (n, 2)."""
    return (16 * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) - 8).to(device)


# %% [markdown]
# The perturbed densities $p_\sigma$ for a few noise levels (log scale, so that the weak mode shows). At small
# $\sigma$ the modes are islands with an empty sea between them: a score field there carries no information
# about how much mass sits on each side. At large $\sigma$ they merge into one blob whose centre of mass sits near
# the heavy mode, and a sampler there sees the weights.

# %%
def mixture_log_prob(x, sigma):
    var = 1 + sigma**2
    log_k = -((x[:, None] - MU_MIX.to(x)) ** 2).sum(-1) / (2 * var) - math.log(2 * math.pi * var)
    return torch.logsumexp(W_MIX.to(x).log() + log_k, -1)                # (N,)


fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, sigma in zip(axes, [0.0, 2.0, 5.0, 10.0], strict=True):
    plot.density_2d(lambda x, s=sigma: mixture_log_prob(x, s), ax=ax, lim=12, n=150, log_scale=True,
                    title=f"log p_sigma, sigma = {sigma:g}")
plt.tight_layout()

# %% [markdown]
# ## 2. Many noise levels: a geometric schedule
#
# Song and Ermon (2019) perturb the data with a sequence $\sigma_1 > \sigma_2 > \dots > \sigma_L$, chosen so that
# - $\sigma_1$ is large enough that $p_{\sigma_1}$ covers the data in one blob and chains can travel between modes:
#   Song and Ermon (2020, technique 1) take it **about as large as the largest pairwise distance** between
#   training points;
# - $\sigma_L$ is small enough that $p_{\sigma_L} \approx p$;
# - consecutive levels overlap, which a **geometric** sequence gives uniformly: the ratio
#   $\gamma = \sigma_{i}/\sigma_{i+1}$ is the same at every step,
#
# $$\sigma_i = \sigma_1 \left(\frac{\sigma_L}{\sigma_1}\right)^{\frac{i-1}{L-1}}, \qquad i = 1, \dots, L .$$
#
# (Equivalently, $\log \sigma_i$ is evenly spaced.) How small must $\gamma$ be? In $D$ dimensions a point perturbed
# with noise $\sigma$ lies at distance $\lVert \sigma z\rVert \approx \sigma\sqrt D$ from its data point, on a thin
# shell: that distance is approximately $\mathcal N(\sigma\sqrt D, \sigma^2/2)$. The sampler at level $i+1$ starts
# from samples of level $i$, so the two shells must overlap. Song and Ermon (2020, technique 2) ask that a point of
# level $i+1$ falls within three standard deviations of the radius of level $i$ with probability about one half:
#
# $$\Phi\big(\sqrt{2D}(\gamma - 1) + 3\gamma\big) - \Phi\big(\sqrt{2D}(\gamma - 1) - 3\gamma\big) \approx \tfrac12 ,$$
#
# with $\Phi$ the standard normal CDF. In high dimension the shells are thin and $\gamma$ must be close to 1; in
# two dimensions the left side exceeds one half for every $\gamma$, so the rule sets no limit there.
#
# ### Exercise 1: the noise schedule
# Write `sigma_schedule(x, sigma_min, L)`: for data `x` of shape $(N, D)$ it returns the $L$ noise levels as a
# tensor of shape $(L,)$, **decreasing**, with $\sigma_1 = \max_{j,k} \lVert x_j - x_k \rVert$ and
# $\sigma_L$ = `sigma_min`, evenly spaced in $\log \sigma$. (`torch.cdist` gives all pairwise distances.)

# %% tags=["solution:ex1_sigma_schedule"]
def sigma_schedule(x, sigma_min, L):
    """L geometric noise levels from the largest pairwise distance of x (N, D) down to sigma_min: (L,)."""
    ### BEGIN SOLUTION
    sigma_max = torch.cdist(x, x).max()                                  # largest pairwise distance
    i = torch.arange(L, dtype=x.dtype, device=x.device)
    return sigma_max * (sigma_min / sigma_max) ** (i / (L - 1))
    ### END SOLUTION


# %% tags=["check:ex1_sigma_schedule"]
lecture13.check_sigma_schedule(sigma_schedule)

# %% [markdown]
# The schedule for the 2-D target: $\sigma_1$ is the diameter of the training set (printed below: the distance
# between the modes plus their tails), $\sigma_L = 0.1$ is a tenth of the modes' width, and $L = 20$ levels. In 2-D
# the overlap rule allows any ratio; twenty levels let the sampler of section 4 anneal slowly through the range
# of $\sigma$ where the modes separate.

# %%
N_TOY = budget(smoke=4000, standard=20000, full=50000)
x_toy = sample_target(N_TOY, seed=0)                                     # (N_TOY, 2) training set
L_TOY = 20
sigmas_toy = sigma_schedule(x_toy[:2000], 0.1, L_TOY)                    # (L,), pairwise distances on a subset
print("sigma_i:", " ".join(f"{s:.3g}" for s in sigmas_toy.tolist()))
print(f"sigma_1 = {sigmas_toy[0].item():.1f}; ratio sigma_i / sigma_(i+1) = {(sigmas_toy[0] / sigmas_toy[1]).item():.3f}")

# %% [markdown]
# ## 3. A noise-conditional score network
#
# One network $s_\theta(x, \sigma)$ for all levels, trained by denoising score matching at each level
# (lecture 12): with $\tilde x = x + \sigma z$, $z \sim \mathcal N(0, I)$, the target score is
# $-(\tilde x - x)/\sigma^2 = -z/\sigma$, and
#
# $$\ell(\theta; \sigma) = \tfrac12\, \mathbb E_{x, z} \Big\lVert s_\theta(x + \sigma z, \sigma) + \frac{z}{\sigma}\Big\rVert^2,
# \qquad \mathcal L(\theta) = \frac1L \sum_{i=1}^L \lambda(\sigma_i)\, \ell(\theta; \sigma_i).$$
#
# **The weighting.** The optimal score has size $\lVert s^\ast \rVert \approx 1/\sigma$, so $\ell(\theta;\sigma)$ is of
# order $1/\sigma^2$ and the smallest levels would dominate an unweighted sum. With $\lambda(\sigma) = \sigma^2$
# every term is of order one:
#
# $$\lambda(\sigma)\, \ell(\theta; \sigma) = \tfrac12\, \mathbb E \big\lVert \sigma\, s_\theta(x + \sigma z, \sigma) + z \big\rVert^2 .$$
#
# **The $\varepsilon$-prediction form.** Write the network as a noise predictor, $s_\theta(x, \sigma) =
# -\varepsilon_\theta(x, \sigma)/\sigma$. Then the weighted loss is exactly
# $\tfrac12 \mathbb E \lVert \varepsilon_\theta(x + \sigma z, \sigma) - z \rVert^2$: **predict the noise that was
# added**, the loss of diffusion models (lecture 15). Dividing by $\sigma$ also builds the $1/\sigma$ size of the
# score into the architecture (Song and Ermon 2020, technique 3), so the network's output stays of order one.
#
# ### Exercise 2: the NCSN objective over noise levels
# Write `ncsn_loss(score, x, sigma_min, sigma_max, generator=None)`, the whole training objective of a
# noise-conditional score network on one batch. For every example $x_b$ of the batch:
# 1. draw its own noise level, with $\log\sigma_b$ uniform on $[\log\sigma_\text{min}, \log\sigma_\text{max}]$:
#    $\sigma_b = \sigma_\text{min} (\sigma_\text{max}/\sigma_\text{min})^{u_b}$ with $u_b \sim \mathcal U(0, 1)$;
# 2. draw $z_b \sim \mathcal N(0, I)$ shaped like $x_b$, and perturb: $\tilde x_b = x_b + \sigma_b z_b$;
# 3. weight the denoising score matching loss by $\lambda(\sigma_b) = \sigma_b^2$ and average over the batch:
#
# $$\mathcal L = \frac1B \sum_{b=1}^B \tfrac12\, \sigma_b^2\, \Big\lVert s(\tilde x_b, \sigma_b) + \frac{z_b}{\sigma_b} \Big\rVert^2$$
#
# (the squared norm runs over all non-batch dimensions). Return $\mathcal L$ as a 0-d tensor through which the
# gradient reaches the network's parameters: the lecture trains with it.
#
# *Shapes and types.* `x` is $(B, \dots)$: vectors $(B, D)$ or images $(B, C, H, W)$, float32 or float64; leave it
# unchanged. `sigma_min < sigma_max` are floats. `score(x_tilde, sigma)` takes a batch `x_tilde` of shape
# $(n, \dots)$ like `x` and `sigma` of shape $(n,)$, and returns a tensor shaped like `x_tilde`; evaluate it once at
# each perturbed example, in batch order (all at once or one at a time). Make every random draw with `generator`
# (a `torch.Generator`, or `None` for PyTorch's global one; `torch.rand(..., generator=generator)` accepts both)
# on `x`'s device.
#
# *Why log-uniform.* The $L$ levels of a geometric schedule are evenly spaced in $\log\sigma$, so picking one of
# them at random is drawing $\log\sigma$ from an evenly spaced grid; drawing it **uniformly on the whole interval**
# is the $L \to \infty$ limit. The network then knows every level in between, which the SDE samplers of section 5
# need; the annealed sampler just evaluates it at the $L$ grid points.

# %% tags=["solution:ex2_ncsn_loss"]
def ncsn_loss(score, x, sigma_min, sigma_max, generator=None):
    """The NCSN objective on a batch x (B, ...): log sigma_b ~ U[log sigma_min, log sigma_max], z_b ~ N(0, I),
    mean_b 1/2 sigma_b^2 ||s(x_b + sigma_b z_b, sigma_b) + z_b / sigma_b||^2."""
    ### BEGIN SOLUTION
    u = torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device)
    sigma = sigma_min * (sigma_max / sigma_min) ** u                     # (B,) log-uniform
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    s = sigma.reshape(-1, *[1] * (x.ndim - 1))                           # (B, 1, ...) to broadcast
    target = -z / s                                                      # -(x_tilde - x) / sigma^2
    return 0.5 * (s**2 * (score(x + s * z, sigma) - target) ** 2).flatten(1).sum(1).mean()
    ### END SOLUTION


# %% tags=["check:ex2_ncsn_loss"]
lecture13.check_ncsn_loss(ncsn_loss)

# %% [markdown]
# The model family: a network predicts the noise $\varepsilon_\theta(x, \sigma)$, the score is
# $-\varepsilon_\theta/\sigma$, and `loss(x)` is the objective of Exercise 2 on the batch, over the model's range
# of levels.

# %%
class NoiseConditionalScore(nn.Module):
    """s_theta(x, sigma) = -eps_theta(x, sigma) / sigma; subclasses define the noise predictor eps(x, sigma)."""

    def __init__(self, sigma_min, sigma_max):
        super().__init__()
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def score(self, x, sigma):                                           # sigma: float, 0-d or (B,)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(len(x))      # (B,)
        return -self.eps(x, sigma) / sigma.reshape(-1, *[1] * (x.ndim - 1))

    def loss(self, x):                                                   # Exercise 2, on [sigma_L, sigma_1]
        return ncsn_loss(self.score, x, self.sigma_min, self.sigma_max)


# %% [markdown]
# For 2-D data the $\varepsilon$-network is an MLP on $(c_\text{in}(\sigma)\, x, \log\sigma)$. The input scale
# $c_\text{in} = 1/\sqrt{\sigma^2 + \sigma_\text{data}^2}$ keeps the input of order one at every level (at
# $\sigma_1$, about 20, a raw $\tilde x$ is of order 20); it is a reparameterization, not a change of the loss.

# %%
class ScoreMLP(NoiseConditionalScore):
    """eps_theta for 2-D data: an MLP on (x / sqrt(sigma^2 + sigma_data^2), log sigma)."""

    def __init__(self, sigma_min, sigma_max, sigma_data, dim=2, hidden=128):
        super().__init__(sigma_min, sigma_max)
        self.sigma_data = float(sigma_data)
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def eps(self, x, sigma):                                             # x (B, D), sigma (B,)
        c_in = (sigma**2 + self.sigma_data**2).rsqrt()[:, None]
        return self.net(torch.cat([c_in * x, sigma.log()[:, None]], 1))


torch.manual_seed(0)
ncsn_toy = ScoreMLP(sigmas_toy[-1], sigmas_toy[0], sigma_data=x_toy.std().item()).to(device)
x_check, z_check = x_toy[:256], torch.randn(256, 2, device=device)
sigma_check = sigmas_toy[torch.randint(L_TOY, (256,))].to(device)               # (256,) one level per example
s_check, x_tilde = sigma_check[:, None], x_toy[:256] + sigma_check[:, None] * z_check
with torch.no_grad():
    weighted = 0.5 * (s_check**2 * (ncsn_toy.score(x_tilde, sigma_check) + z_check / s_check) ** 2).sum(1).mean()
    eps_form = 0.5 * ((ncsn_toy.eps(x_tilde, sigma_check) - z_check) ** 2).sum(1).mean()
print(f"sigma^2-weighted DSM loss {weighted.item():.6f}   eps-prediction loss {eps_form.item():.6f}")

# %% [markdown]
# Training: the generic loop of the course, since the model only needs `loss(x)`.

# %%
TOY_EPOCHS = budget(smoke=10, standard=60, full=200)
hist_toy = train_or_load(ncsn_toy, LECTURE, "ncsn_toy", lambda: fit(
    ncsn_toy, x_toy, epochs=TOY_EPOCHS, batch_size=512, lr=2e-3))
plot.curves({"train loss (eps form)": hist_toy["train_loss"]}, title="NCSN on the two-mode target")
plt.show()

# %% [markdown]
# How good is the learned score? The relative error $\lVert s_\theta - \nabla \log p_\sigma\rVert /
# \lVert\nabla\log p_\sigma\rVert$ at each level, at points drawn from $p_\sigma$ itself (where the training data
# were) and at points spread uniformly over $[-8, 8]^2$ (including the empty sea between the modes, where there
# was no training data at small $\sigma$: the second failure of lecture 12).

# %%
@torch.no_grad()
def relative_score_error(score, x, sigma):
    exact = exact_score(x, sigma)
    return ((score(x, sigma) - exact).norm(dim=1) / exact.norm(dim=1)).median().item()


x_grid_pts = uniform_start(4000, seed=5)
err_on_data, err_uniform = [], []
for sigma in sigmas_toy.tolist():
    on_data = sample_target(4000, seed=6) + sigma * torch.randn(4000, 2, device=device)
    err_on_data.append(relative_score_error(ncsn_toy.score, on_data, sigma))
    err_uniform.append(relative_score_error(ncsn_toy.score, x_grid_pts, sigma))
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.loglog(sigmas_toy.tolist(), err_on_data, "o-", label="x ~ p_sigma (where the data are)")
ax.loglog(sigmas_toy.tolist(), err_uniform, "s-", label="x uniform in [-8, 8]^2")
ax.set(xlabel="sigma", ylabel="median relative score error", title="learned vs exact score")
ax.legend()

# %% [markdown]
# ## 4. Annealed Langevin dynamics
#
# Langevin dynamics with step size $\eta$ samples from $p$ as $\eta \to 0$ and the number of steps grows
# (lecture 11, whose convention we keep):
#
# $$x \leftarrow x + \eta\, \nabla_x \log p(x) + \sqrt{2\eta}\, \xi, \qquad \xi \sim \mathcal N(0, I).$$
#
# **Annealed** Langevin (Song and Ermon 2019, Algorithm 1) runs $T$ steps at each level, from $\sigma_1$ down to
# $\sigma_L$, each level starting where the last one ended, with a step size that shrinks with the level:
#
# $$\eta_i = \eta_L\, \frac{\sigma_i^2}{\sigma_L^2}, \qquad
# x \leftarrow x + \eta_i\, s_\theta(x, \sigma_i) + \sqrt{2\eta_i}\, \xi .$$
#
# Song and Ermon (2019) write the same update with a step $\alpha_i = 2\eta_i$:
# $x \leftarrow x + \tfrac{\alpha_i}{2} s_\theta + \sqrt{\alpha_i}\, z$, with $\alpha_i \propto \sigma_i^2$.
#
# **Why $\eta_i \propto \sigma_i^2$.** The score at level $i$ has size about $1/\sigma_i$, so the drift
# $\eta_i s_\theta$ and the noise $\sqrt{2\eta_i}\,\xi$ stand in a ratio that does not depend on $i$. At $\sigma_1$ the
# chain moves freely over the merged blob and distributes itself by the weights; as $\sigma$ shrinks the modes
# separate, and each chain stays in the mode it has reached.
#
# **Stability.** Lecture 11 showed that Langevin on a Gaussian of variance $v$ contracts by $1 - \eta/v$ per step
# and is stable only for $\eta < 2v$. In the directions where the data have little spread (the background pixels
# of a digit, say), $p_{\sigma_i}$ is a Gaussian of variance about $\sigma_i^2$, so the ratio $\eta_i/\sigma_i^2$
# must stay **below 2**; at exactly 2 the contraction factor is $-1$: the chain is reflected across the data at
# every step and never settles. How far below the limit is the subject of section 7, on MNIST.
#
# ### Exercise 3: the annealed Langevin loop
# Write `annealed_langevin(score, x, sigmas, step, n_steps)`: start from `x` (shape $(N, \dots)$; leave it
# unchanged), run `n_steps` Langevin steps at each level of `sigmas` (a decreasing tensor $(L,)$) with step size
# $\eta_i = $ `step` $\cdot\, \sigma_i^2/\sigma_L^2$ (so `step` is $\eta_L$), calling `score(x, sigma_i)`. Return
# the chain **after each level**, stacked into a tensor of shape $(L, N, \dots)$; its last entry is the sample.
# Draw the noise from PyTorch's global generator (`torch.randn_like`).

# %% tags=["solution:ex3_annealed_langevin"]
@torch.no_grad()
def annealed_langevin(score, x, sigmas, step, n_steps):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) with eta_i = step sigma_i^2 / sigma_L^2;
    returns the state after each level, (L, N, ...)."""
    ### BEGIN SOLUTION
    states = []
    for sigma in sigmas:
        eta = step * (sigma / sigmas[-1]) ** 2                           # eta_i = eta_L sigma_i^2 / sigma_L^2
        for _ in range(n_steps):
            x = x + eta * score(x, sigma) + (2 * eta).sqrt() * torch.randn_like(x)
        states.append(x)
    return torch.stack(states)
    ### END SOLUTION


# %% tags=["check:ex3_annealed_langevin"]
lecture13.check_annealed_langevin(annealed_langevin)

# %% [markdown]
# ### Plain against annealed Langevin, measured
#
# Both start from the same uniform chains in $[-8, 8]^2$ and take the same number of steps, $L \cdot T$.
# **Plain** Langevin uses the network at the smallest level only, $s_\theta(x, \sigma_L) \approx \nabla\log p$,
# with step $\eta_L$; **annealed** Langevin walks down all levels with $\eta_i = \eta_L \sigma_i^2/\sigma_L^2$, here a
# quarter of $\sigma_i^2$, far below the limit $2(1 + \sigma_i^2)$ set by these unit-variance modes. Each runs with
# the learned network and with the exact score, so that the sampler's error and the network's error can be told
# apart.

# %%
N_CHAINS = budget(smoke=2000, standard=10000, full=20000)
T_STEPS = budget(smoke=15, standard=50, full=100)
STEP_TOY = 0.0025                                                        # eta_L; eta_i / sigma_i^2 = 0.25
x_start = uniform_start(N_CHAINS, seed=1)
plain_level = sigmas_toy[-1:].repeat(L_TOY)                             # L copies of sigma_L: plain Langevin
torch.manual_seed(2)
runs = {}
for name, score in [("learned", ncsn_toy.score), ("exact", exact_score)]:
    runs[f"plain, {name}"] = annealed_langevin(score, x_start, plain_level, STEP_TOY, T_STEPS)
    runs[f"annealed, {name}"] = annealed_langevin(score, x_start, sigmas_toy.to(device), STEP_TOY, T_STEPS)
errors = {name: mode_weight_error(states[-1]) for name, states in runs.items()}
for name, err in errors.items():
    print(f"{name:>18}: mode-weight error {err:.4f}")

# %% [markdown]
# The same comparison in pictures (learned network). Plain Langevin leaves every chain in the basin it started
# in, so the split is about 50/50 rather than 20/80; annealing gets it right.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
plot.scatter_2d(sample_target(N_CHAINS, seed=3).cpu(), ax=axes[0], lim=9, title="data: 20% / 80%")
for ax, name in zip(axes[1:], ["plain, learned", "annealed, learned"], strict=True):
    x_end = runs[name][-1].cpu()
    share = heavy_share(x_end)
    plot.scatter_2d(x_end, ax=ax, lim=9, color="C1",
                    title=f"{name.split(',')[0]} Langevin: {100 * (1 - share):.0f}% / {100 * share:.0f}%")
plt.tight_layout()

# %% [markdown]
# ## 5. Infinitely many noise levels: stochastic differential equations
#
# Let the noise level become a continuous function $\sigma(t)$ of a time $t \in [0, 1]$, geometric as before:
# $\sigma(t) = \sigma_\text{min} (\sigma_\text{max}/\sigma_\text{min})^t$. Adding independent Gaussian noise in tiny
# increments, so that the variance added up to time $t$ is $\sigma^2(t)$, is the **variance-exploding (VE) SDE**
# (Song et al. 2021)
#
# $$dx = g(t)\, dw, \qquad g(t) = \sqrt{\frac{d\sigma^2(t)}{dt}} = \sigma(t) \sqrt{2 \log\frac{\sigma_\text{max}}{\sigma_\text{min}}},$$
#
# with $w$ a Brownian motion. Its marginal $p_t$ is the data convolved with $\mathcal N(0, (\sigma^2(t) -
# \sigma^2(0)) I)$; as $\sigma_\text{min}$ is small we treat it as $p_{\sigma(t)}$, whose score the network knows.
#
# **Reversing time.** Anderson (1982): the process run backwards is again an SDE, and its drift needs only the
# score of the marginals,
#
# $$dx = \big[f(x, t) - g(t)^2\, \nabla_x \log p_t(x)\big]\, dt + g(t)\, d\bar w, \qquad f = 0 \text{ here},$$
#
# where $dt < 0$ and $\bar w$ is a Brownian motion in reversed time. Start at $x(1) \sim \mathcal N(0,
# \sigma_\text{max}^2 I)$ (the data are negligible at that scale) and integrate down to $t = 0$.
#
# **Euler–Maruyama**, with a positive step $\Delta t$ from $t$ to $t - \Delta t$:
#
# $$x_{t - \Delta t} = x_t + g(t)^2\, s_\theta\big(x_t, \sigma(t)\big)\, \Delta t + g(t) \sqrt{\Delta t}\; z, \qquad z \sim \mathcal N(0, I).$$

# %%
class VESDE:
    """The variance-exploding SDE dx = g(t) dw with sigma(t) = sigma_min (sigma_max / sigma_min)^t, t in [0, 1]."""

    def __init__(self, sigma_min, sigma_max):
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def g(self, t):                                                      # sqrt(d sigma^2 / dt)
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def prior(self, n, *shape, generator=None):                          # x(1) ~ N(0, sigma_max^2 I)
        return self.sigma_max * torch.randn(n, *shape, generator=generator)


sde_toy = VESDE(sigmas_toy[-1], sigmas_toy[0])

# %% [markdown]
# ### Exercise 4: one reverse-SDE step
# Write `reverse_sde_step(sde, score, x, t, dt)`: one Euler–Maruyama step of the reverse VE SDE from time `t` to
# `t - dt` (`dt > 0`), using `sde.g(t)`, `sde.sigma(t)` and `score(x, sigma)`, with fresh noise from
# `torch.randn_like`.

# %% tags=["solution:ex4_reverse_sde_step"]
def reverse_sde_step(sde, score, x, t, dt):
    """x_{t-dt} = x_t + g(t)^2 s(x_t, sigma(t)) dt + g(t) sqrt(dt) z: Euler-Maruyama on the reverse VE SDE."""
    ### BEGIN SOLUTION
    g = sde.g(t)
    return x + g**2 * score(x, sde.sigma(t)) * dt + g * math.sqrt(dt) * torch.randn_like(x)
    ### END SOLUTION


# %% tags=["check:ex4_reverse_sde_step"]
lecture13.check_reverse_sde_step(reverse_sde_step)

# %% [markdown]
# ### Predictor–corrector sampling
#
# Each Euler–Maruyama step makes a discretization error, and the start $x(1)$ is only approximately distributed
# as $p_1$. Song et al. (2021) correct both with a few Langevin steps at the new noise level, which pull the
# sample back towards $p_{t - \Delta t}$: the SDE step **predicts**, the Langevin steps **correct**. The
# corrector's step size is set from a target signal-to-noise ratio $r$ between the drift and the noise, with
# norms averaged over the batch: $\eta = 2\,(r\,\overline{\lVert \xi\rVert} / \overline{\lVert s_\theta\rVert})^2$,
# then the Langevin step of section 4, $x \leftarrow x + \eta\, s_\theta + \sqrt{2\eta}\, \xi$. With no corrector
# steps this is the plain reverse-SDE sampler. `keep` stores a thinned trajectory for the pictures.

# %%
@torch.no_grad()
def langevin_corrector(score, x, sigma, r):
    s, xi = score(x, sigma), torch.randn_like(x)
    step = 2 * (r * xi.flatten(1).norm(dim=1).mean() / s.flatten(1).norm(dim=1).mean()) ** 2    # eta
    return x + step * s + (2 * step).sqrt() * xi


@torch.no_grad()
def pc_sample(sde, score, x, n_steps, n_corrector=0, r=0.16, keep=1):
    """Reverse-SDE predictor (Euler-Maruyama) with n_corrector Langevin steps after each; x ~ prior, t: 1 -> 0."""
    dt, path = 1.0 / n_steps, [x]
    for k in progress(range(n_steps), "reverse SDE" if n_corrector == 0 else "predictor-corrector"):
        t = 1.0 - k * dt
        x = reverse_sde_step(sde, score, x, t, dt)
        for _ in range(n_corrector):
            x = langevin_corrector(score, x, sde.sigma(t - dt), r)
        if (k + 1) % keep == 0 or k == n_steps - 1:                      # always keep the end
            path.append(x)
    return torch.stack(path)                                             # (n_steps / keep + 1, N, ...)


# %% [markdown]
# ### The probability-flow ODE
#
# Song et al. (2021) also show that the **deterministic** ODE
#
# $$\frac{dx}{dt} = f(x, t) - \tfrac12 g(t)^2\, \nabla_x \log p_t(x)$$
#
# has the same marginals $p_t$ as the SDE: the Fokker–Planck equation of the SDE, $\partial_t p_t = \tfrac12 g^2
# \Delta p_t$, can be rewritten as the continuity equation $\partial_t p_t = -\nabla \cdot (p_t\, v)$ of a flow
# with velocity $v = -\tfrac12 g^2 \nabla \log p_t$, since $\nabla\cdot(p \nabla\log p) = \Delta p$. So
# integrating it from $x(1) \sim \mathcal N(0, \sigma_\text{max}^2 I)$ to $t = 0$ gives samples from (nearly) $p$ with
# no noise injected along the way: a continuous normalizing flow (lecture 07) whose velocity is the learned score.
# For the VE SDE, $\tfrac12 g^2 dt = \sigma\, d\sigma$, so in terms of $\sigma$ it reads
# $dx/d\sigma = -\sigma\, s_\theta(x, \sigma) = \varepsilon_\theta(x, \sigma)$.
#
# With no noise to wash out errors, the ODE rewards a better integrator than Euler: **Heun's method** (as used
# for these ODEs by Karras et al. 2022) takes an Euler step, evaluates the velocity again at its end, and steps
# with the average of the two velocities. It costs two score evaluations per step and is accurate to second order.

# %%
@torch.no_grad()
def pf_ode_sample(sde, score, x, n_steps, keep=1):
    """Heun steps of dx/dt = -1/2 g(t)^2 s(x, sigma(t)) from t = 1 to 0; returns the thinned path."""
    velocity = lambda x, t: -0.5 * sde.g(t) ** 2 * score(x, sde.sigma(t))   # noqa: E731  dx/dt
    dt, path = 1.0 / n_steps, [x]
    for k in progress(range(n_steps), "probability-flow ODE"):
        t = 1.0 - k * dt
        v = velocity(x, t)
        x_euler = x - v * dt                                             # t decreases: x(t - dt) = x - v dt
        x = x - 0.5 * (v + velocity(x_euler, t - dt)) * dt
        if (k + 1) % keep == 0 or k == n_steps - 1:                      # always keep the end
            path.append(x)
    return torch.stack(path)


# %% [markdown]
# ### Same marginals: the samplers on the 2-D target
#
# If the SDE and the ODE have the same marginals, then started from the same $x(1) \sim p_1$ they must end with
# the same distribution, and (with an accurate score and small steps) that of the data: mean $(3, 3)$, covariance
# $\begin{pmatrix} 17 & 16 \\ 16 & 17\end{pmatrix}$ (the within-mode $I$ plus the between-mode
# $0.2 \cdot 0.8 \cdot (10, 10)^\top (10, 10)$), weight $0.8$. Here $p_1$ is known exactly: data plus noise of scale
# $\sigma_1$. Each sampler runs with the learned network and with the exact score; predictor–corrector and Heun
# take half as many steps, so that all three evaluate the score equally often.

# %%
N_SDE = budget(smoke=2000, standard=5000, full=20000)
N_SDE_STEPS = budget(smoke=100, standard=200, full=1000)
x_p1 = sample_target(N_SDE, seed=4) + sde_toy.sigma_max * torch.randn(N_SDE, 2, device=device)   # x(1) ~ p_1
samplers = {
    "reverse SDE": lambda s, x: pc_sample(sde_toy, s, x, N_SDE_STEPS, keep=N_SDE_STEPS // 50),
    "predictor-corrector": lambda s, x: pc_sample(sde_toy, s, x, N_SDE_STEPS // 2, n_corrector=1,
                                                  keep=N_SDE_STEPS // 100),
    "probability-flow ODE": lambda s, x: pf_ode_sample(sde_toy, s, x, N_SDE_STEPS // 2, keep=N_SDE_STEPS // 100),
}
torch.manual_seed(5)
paths = {(name, which): run(score, x_p1) for name, run in samplers.items()
         for which, score in [("learned", ncsn_toy.score), ("exact", exact_score)]}

# %%
TRUE_MEAN, TRUE_COV = torch.tensor([3.0, 3.0]), torch.tensor([[17.0, 16.0], [16.0, 17.0]])


def sample_stats(x):
    """(|mean - true mean|, ||cov - true cov||_F, mode-weight error) of samples x (N, 2)."""
    x = x.cpu()
    return (x.mean(0) - TRUE_MEAN).norm().item(), (x.T.cov() - TRUE_COV).norm().item(), mode_weight_error(x)


def stats_table(rows):
    print(f"{'':>34} {'mean error':>11} {'cov error':>10} {'mode-weight error':>18}")
    for label, x in rows:
        print(f"{label:>34} " + "{:11.3f} {:10.3f} {:18.4f}".format(*sample_stats(x)))


stats = {key: sample_stats(path[-1]) for key, path in paths.items()}
stats_table([("data (a fresh draw)", sample_target(N_SDE, seed=7))] +
            [(f"{name}, {which}", path[-1]) for (name, which), path in paths.items()])

# %% [markdown]
# A fresh draw of the same size from the true distribution shows the Monte Carlo error to expect. With the exact
# score the three samplers land within about that error of the truth: the ODE, with no noise at all after $x(1)$,
# gives the same distribution as the SDE. With the learned network all three inherit its errors (and share
# them): the network, not the sampler, decides the distribution.
#
# **The practical prior.** In practice $p_1$ is unknown and replaced by $\mathcal N(0, \sigma_1^2 I)$, which is
# close only if $\sigma_1$ dwarfs the data (here the data's mean $(3, 3)$ is not negligible against $\sigma_1$,
# about 20). Started there, the SDE and especially the ODE (which cannot forget its start) carry the mismatch into the
# mode weights; the Langevin corrector removes most of it.

# %%
x_prior = sde_toy.prior(N_SDE, 2, generator=torch.Generator().manual_seed(4)).to(device)
torch.manual_seed(6)
prior_paths = {name: run(ncsn_toy.score, x_prior) for name, run in samplers.items()}
stats_table([(f"{name}, N(0, sigma_1^2) start", path[-1]) for name, path in prior_paths.items()])

# %% [markdown]
# Trajectories: the SDE paths jitter, the ODE paths are smooth curves, one per starting point, that fan out from
# the broad prior into the two modes.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, name in zip(axes, ["reverse SDE", "probability-flow ODE"], strict=True):
    path = paths[name, "learned"][:, :40].cpu()                          # (K, 40, 2)
    ax.plot(path[:, :, 0], path[:, :, 1], lw=0.6, alpha=0.7)
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=8, color="k", zorder=3)
    ax.set(xlim=(-40, 40), ylim=(-40, 40), aspect="equal", title=f"{name}: 40 trajectories, t = 1 -> 0")
plt.tight_layout()

# %% [markdown]
# ### The variance-preserving SDE
#
# The VE SDE only adds noise, so its variance explodes to $\sigma_\text{max}^2$. Song et al. (2021) also write the
# noising of diffusion models (lecture 15) as an SDE that shrinks the data while it adds noise, the
# **variance-preserving (VP) SDE**:
#
# $$dx = -\tfrac12 \beta(t)\, x\, dt + \sqrt{\beta(t)}\, dw, \qquad \beta(t) = \beta_\text{min} + t\,(\beta_\text{max} - \beta_\text{min}).$$
#
# It is linear, so its marginal given $x(0)$ is Gaussian:
#
# $$x(t) = \sqrt{\bar\alpha(t)}\, x(0) + \sqrt{1 - \bar\alpha(t)}\; z, \qquad
# \bar\alpha(t) = \exp\Big(-\int_0^t \beta(s)\, ds\Big) = e^{-\beta_\text{min} t - \frac12 (\beta_\text{max} - \beta_\text{min}) t^2}.$$
#
# Data of unit variance keep unit variance ("variance preserving"), and $p_1 \approx \mathcal N(0, I)$. Dividing by
# $\sqrt{\bar\alpha}$ shows that it is the VE marginal in disguise: $x(t)/\sqrt{\bar\alpha(t)} = x(0) + \sigma z$ with
# $\sigma^2 = (1 - \bar\alpha)/\bar\alpha$. So the VP score is the network we already have, rescaled,
#
# $$\nabla_x \log p^\text{VP}_t(x) = \frac{1}{\sqrt{\bar\alpha(t)}}\; s_\theta\Big(\frac{x}{\sqrt{\bar\alpha(t)}},\ \sqrt{\tfrac{1 - \bar\alpha(t)}{\bar\alpha(t)}}\Big).$$
#
# We choose $\beta_\text{max}$ so that $t = 1$ matches the largest level, $1/\bar\alpha(1) = 1 + \sigma_1^2$, and stop
# at the $t_0$ where $\sigma = \sigma_L$, the range the network was trained on. The reverse SDE has the drift
# $f - g^2 \nabla\log p_t$ of before, now with $f = -\tfrac12\beta x$ and $g^2 = \beta$; an Euler–Maruyama step from
# $t$ to $t - \Delta t$ is
#
# $$x \leftarrow x + \big[\tfrac12 \beta(t)\, x + \beta(t)\, \nabla_x \log p^\text{VP}_t(x)\big]\,\Delta t + \sqrt{\beta(t)\,\Delta t}\; \xi .$$

# %%
class VPSDE:
    """dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw, beta linear in t; beta_max set by 1 / alpha_bar(1) = 1 + sigma_max^2."""

    def __init__(self, sigma_min, sigma_max, beta_min=0.1):
        self.beta_min = beta_min
        self.beta_max = 2 * math.log(1 + float(sigma_max) ** 2) - beta_min
        b = self.beta_max - beta_min                                     # t_0: alpha_bar(t_0) = 1 / (1 + sigma_min^2)
        self.t0 = (-beta_min + math.sqrt(beta_min**2 + 2 * b * math.log(1 + float(sigma_min) ** 2))) / b

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha_bar(self, t):
        return math.exp(-self.beta_min * t - 0.5 * (self.beta_max - self.beta_min) * t**2)

    def score(self, score_ve, x, t):                                     # the VE network, rescaled
        a = self.alpha_bar(t)
        return score_ve(x / math.sqrt(a), math.sqrt((1 - a) / a)) / math.sqrt(a)


@torch.no_grad()
def vp_reverse_sample(vp, score_ve, x, n_steps):
    """Euler-Maruyama on the reverse VP SDE from t = 1 to t_0; returns the path (n_steps + 1, N, ...)."""
    dt, path = (1 - vp.t0) / n_steps, [x]
    for k in range(n_steps):
        t = 1 - k * dt
        b = vp.beta(t)
        x = x + (0.5 * b * x + b * vp.score(score_ve, x, t)) * dt + math.sqrt(b * dt) * torch.randn_like(x)
        path.append(x)
    return torch.stack(path)


vp_toy = VPSDE(sde_toy.sigma_min, sde_toy.sigma_max)
x_vp1 = torch.randn(N_SDE, 2, generator=torch.Generator().manual_seed(4)).to(device)       # x(1) ~ N(0, I)
torch.manual_seed(7)
vp_paths = {which: vp_reverse_sample(vp_toy, score, x_vp1, N_SDE_STEPS)
            for which, score in [("learned", ncsn_toy.score), ("exact", exact_score)]}
scale_t0 = math.sqrt(vp_toy.alpha_bar(vp_toy.t0))                        # x(t_0) / sqrt(alpha_bar) ~ p_(sigma_L)
print(f"beta_max = {vp_toy.beta_max:.2f}, t_0 = {vp_toy.t0:.4f}")
stats_table([(f"VP reverse SDE, {which}, N(0, I) start", path[-1] / scale_t0) for which, path in vp_paths.items()])

# %% [markdown]
# The two SDEs side by side: one coordinate of 30 reverse paths against $t$. The VE paths start spread over
# $\pm\sigma_1$ and contract onto the data; the VP paths stay of order one throughout and grow to the data's scale
# only as $\bar\alpha(t) \to 1$.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
t_ve = torch.linspace(1, 0, len(paths["reverse SDE", "learned"]))
t_vp = torch.linspace(1, vp_toy.t0, N_SDE_STEPS + 1)
axes[0].plot(t_ve, paths["reverse SDE", "learned"][:, :30, 0].cpu(), lw=0.7)
axes[1].plot(t_vp, vp_paths["learned"][:, :30, 0].cpu(), lw=0.7)
for ax, name in zip(axes, ["VE", "VP"], strict=True):
    ax.set(xlabel="t (runs from 1 to 0)", ylabel="x_1(t)", title=f"{name} reverse SDE, 30 paths", xlim=(1, 0))
plt.tight_layout()

# %% [markdown]
# ### The probability-flow ODE as a flow: an exact log-likelihood
#
# The ODE $dx/dt = v(x, t)$ with $v = -\tfrac12 g^2 s_\theta$ is an invertible map from $x(0)$ to $x(1)$: a
# continuous normalizing flow (lecture 07 did the discrete version), with the prior $\mathcal N(0, \sigma_1^2 I)$ at
# $t = 1$. Its density follows from the **instantaneous change of variables** (Chen et al. 2018): along a solution,
#
# $$\frac{d}{dt} \log p_t\big(x(t)\big) = -\nabla_x \cdot v\big(x(t), t\big), \qquad\text{so}\qquad
# \log p_0\big(x(0)\big) = \log p_1\big(x(1)\big) + \int_0^1 \nabla_x \cdot v\big(x(t), t\big)\, dt .$$
#
# To score a point $x$, integrate the ODE **forward** from $x(0) = x$ to $t = 1$ (the encoding direction), adding up
# the divergence on the way. In two dimensions the divergence $\partial v_1/\partial x_1 + \partial v_2/\partial x_2$
# is exact with two backward passes; in high dimension one estimates it with Hutchinson's trace estimator
# (lecture 12), as Song et al. (2021) do for images. With the exact score of $p_\sigma$ and the exact $p_1$ this
# returns $\log p_{\sigma_L}(x)$, the density the model is trained to have (and $p_{\sigma_L} \approx p$): a test
# of the integrator. With the learned network and the Gaussian prior it is the model's own log-likelihood.

# %%
def velocity_and_divergence(sde, score, x, t):
    """v = -1/2 g(t)^2 s(x, sigma(t)) and its exact divergence, for x (N, D) with small D."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = -0.5 * sde.g(t) ** 2 * score(x, sde.sigma(t))
        div = sum(torch.autograd.grad(v[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    return v.detach(), div.detach()


def pf_ode_log_prob(sde, score, x, n_steps, prior_log_prob):
    """log p_0(x) = log p_1(x(1)) + int_0^1 div v dt, Heun steps of the PF-ODE from t = 0 to 1."""
    dt, delta = 1.0 / n_steps, torch.zeros(len(x), device=x.device)
    for k in range(n_steps):
        t = k * dt
        v1, div1 = velocity_and_divergence(sde, score, x, t)
        v2, div2 = velocity_and_divergence(sde, score, x + v1 * dt, t + dt)
        x, delta = x + 0.5 * (v1 + v2) * dt, delta + 0.5 * (div1 + div2) * dt
    return prior_log_prob(x) + delta


def gaussian_prior_log_prob(x):                                          # N(0, sigma_1^2 I) in 2-D
    return -(x**2).sum(1) / (2 * sde_toy.sigma_max**2) - math.log(2 * math.pi * sde_toy.sigma_max**2)


N_LIK, N_LIK_STEPS = budget(smoke=500, standard=1000, full=5000), budget(smoke=50, standard=50, full=200)
x_lik = sample_target(N_LIK, seed=9)                                      # test points
true_lp = mixture_log_prob(x_lik, sde_toy.sigma_min)                     # log p_(sigma_L)(x)
lik = {"exact score, exact p_1": pf_ode_log_prob(sde_toy, exact_score, x_lik, N_LIK_STEPS,
                                                  lambda x: mixture_log_prob(x, sde_toy.sigma_max)),
       "learned network, N(0, sigma_1^2) prior": pf_ode_log_prob(sde_toy, ncsn_toy.score, x_lik, N_LIK_STEPS,
                                                                gaussian_prior_log_prob)}
print(f"{'':>40} {'test NLL (nats)':>16} {'max |log p - true|':>19}")
print(f"{'true log p_(sigma_L)':>40} {-true_lp.mean().item():16.4f}")
for name, lp in lik.items():
    print(f"{name:>40} {-lp.mean().item():16.4f} {(lp - true_lp).abs().max().item():19.4f}")

# %%
fig, ax = plt.subplots(figsize=(4.6, 4.2))
for name, lp in lik.items():
    ax.scatter(true_lp.cpu(), lp.cpu(), s=3, alpha=0.5, label=name)
lo = true_lp.min().item()
ax.plot([lo, true_lp.max().item()], [lo, true_lp.max().item()], "k--", lw=0.8)
ax.set(xlabel="true log p_sigma_L(x)", ylabel="PF-ODE log p(x)", title="exact likelihood through the ODE")
ax.legend(fontsize=7, markerscale=3)

# %% [markdown]
# The exact-score points lie on the diagonal: the ODE with Heun steps computes the density to within the
# integration error. The learned network's points scatter around it; their mean, the model's test NLL, is what a
# likelihood table would report for this score model. The gap between the two test NLLs estimates (up to the small
# difference between $p$ and $p_{\sigma_L}$) the forward, mass-covering $\mathrm{KL}(p_\text{data}\,\|\,p_\theta)$ of
# lecture 03, which is never negative: the price of the network's errors and of the Gaussian prior.

# %% [markdown]
# ## 6. Widget: a sampling trajectory across the noise levels
#
# Pick a sampler and a noise level: the chains' positions at that level, over the density $p_\sigma$ they should
# follow there. Watch the weights being decided at large $\sigma$ and frozen at small $\sigma$; and watch plain
# Langevin never decide them. Everything is precomputed above; the widget only selects.

# %%
TRAJ = {"annealed Langevin": runs["annealed, learned"].cpu(), "plain Langevin": runs["plain, learned"].cpu()}
for name in samplers:
    TRAJ[name] = paths[name, "learned"].cpu()
sigma_levels = sigmas_toy.tolist()


def at_level(name, i):
    """The state of sampler `name` where its noise level is closest to sigma_i (annealed levels index 0..L-1)."""
    states = TRAJ[name]
    if "Langevin" in name:
        return states[i], sigma_levels[i] if name.startswith("annealed") else sigma_levels[-1]
    t = torch.linspace(1, 0, len(states))                               # the thinned path's times
    k = (sde_toy.sigma(t).log() - math.log(sigma_levels[i])).abs().argmin().item()
    return states[k], sde_toy.sigma(t[k].item())


def show_level(sampler="annealed Langevin", level=0):
    x, sigma = at_level(sampler, level)
    x = x[:1500]
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    plot.density_2d(lambda p: mixture_log_prob(p, sigma), ax=ax, lim=12, n=120, log_scale=True)
    ax.scatter(x[:, 0], x[:, 1], s=3, color="w", alpha=0.6)
    ax.set_title(f"{sampler}, sigma = {sigma:.3g}\n{100 * heavy_share(x):.0f}% of the chains nearer (5, 5)")
    plt.show()


widgets.interactive_plot(show_level, sampler=list(TRAJ), level=widgets.slider(0, 0, L_TOY - 1, description="level i"))

# %% [markdown]
# ## 7. MNIST
#
# The same machinery on $28 \times 28$ images with values in $[0, 1]$, trained on the course's generative training
# split (the training set less the held-out digits of the FID floor). The schedule follows the rules of section 2:
# $\sigma_1$ is the largest distance between two training digits (Exercise 1), about as far as two digits with no
# ink in common can be; $\sigma_L = 0.01$ is about two and a half grey levels ($1/255 \approx 0.004$), and the final
# denoising step below removes what noise remains; and the ratio $\gamma$ solves the overlap condition of
# technique 2 for $D = 784$, which fixes the number of levels $L$.

# %%
N_TRAIN = budget(smoke=1000, standard=None, full=None)                  # None: all 55000 digits of the split
train_images, _ = evaluation.generative_train_split(N_TRAIN)             # uint8 (N, 28, 28)
x_mnist = mnist.to_unit(train_images).to(device)                         # (N, 1, 28, 28) in [0, 1], on the device once


def Phi(v):                                                              # the standard normal CDF
    return 0.5 * (1 + math.erf(v / math.sqrt(2)))


def overlap_ratio(D):
    """Song & Ermon (2020), technique 2: gamma with Phi(sqrt(2D)(gamma-1) + 3 gamma) - Phi(sqrt(2D)(gamma-1) - 3 gamma) = 1/2."""
    lo, hi = 1.0, 2.0                                                    # the left side falls as gamma grows
    for _ in range(50):                                                  # bisection
        gamma = (lo + hi) / 2
        c = math.sqrt(2 * D) * (gamma - 1)
        lo, hi = (gamma, hi) if Phi(c + 3 * gamma) - Phi(c - 3 * gamma) > 0.5 else (lo, gamma)
    return gamma


SIGMA_L = 0.01
sigma_1 = sigma_schedule(x_mnist[:2000].flatten(1), SIGMA_L, 2)[0].item()  # the largest pairwise distance
gamma_mnist = overlap_ratio(28 * 28)
L_MNIST = math.ceil(1 + math.log(sigma_1 / SIGMA_L) / math.log(gamma_mnist))
sigmas_mnist = sigma_schedule(x_mnist[:2000].flatten(1), SIGMA_L, L_MNIST)  # (L,)
print(f"sigma_1 = {sigma_1:.2f}, gamma = {gamma_mnist:.4f} -> L = {L_MNIST} levels "
      f"(actual ratio {(sigmas_mnist[0] / sigmas_mnist[1]).item():.4f})")

# %% [markdown]
# The network is a small U-Net written out here: two resolutions down (28 → 14 → 7) and back up with skip
# connections, built from residual blocks (GroupNorm, SiLU, two $3 \times 3$ convolutions and a shortcut), one at
# 28 and one at 14 pixels on the way down, two at 7 pixels, one at 14 on the way up. The noise level enters every
# block as a learned per-channel shift computed from a Fourier embedding of $\log\sigma$. It predicts
# $\varepsilon$, as before. It is deliberately tiny (the parameter count is printed below) so that training and
# sampling fit a laptop CPU; the networks of the papers are a hundred times larger. Lecture 15 uses the same
# U-Net for its diffusion model, with a time step and a class label in place of $\sigma$.

# %%
class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the per-channel shift from the noise embedding in between, and a shortcut."""

    def __init__(self, c_in, c_out, c_emb):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shift = nn.Linear(c_emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h, emb):                                           # h (B, C_in, H, W), emb (B, C_emb)
        out = self.conv1(F.silu(self.norm1(h))) + self.shift(emb)[:, :, None, None]
        return self.conv2(F.silu(self.norm2(out))) + self.skip(h)        # (B, C_out, H, W)


# %% [markdown]
# On a CPU, `eps` hands the network at most `CHUNK` images at a time: with hundreds of $28 \times 28$ images in
# one call the activations no longer fit in the processor's cache, and one big call then costs more per image than
# a few small ones. The result is the same (the network treats every image separately); only the speed changes.

# %%
CHUNK = 128 if device.type == "cpu" else None                           # most images per network call (None: all)


class ScoreUNet(NoiseConditionalScore):
    """eps_theta(x, sigma) for (B, 1, 28, 28) images: channels c[0] at 28 px, c[1] at 14, c[2] at 7; log sigma in."""

    def __init__(self, sigma_min, sigma_max, sigma_data=0.3, c=(16, 32, 64), c_emb=64):
        super().__init__(sigma_min, sigma_max)
        self.sigma_data = sigma_data
        self.register_buffer("freqs", torch.randn(c_emb // 2, generator=torch.Generator().manual_seed(0)))
        self.embed = nn.Sequential(nn.Linear(c_emb, c_emb), nn.SiLU(), nn.Linear(c_emb, c_emb))
        self.inp, self.block0 = nn.Conv2d(1, c[0], 3, padding=1), ResBlock(c[0], c[0], c_emb)
        self.down1, self.block1 = nn.Conv2d(c[0], c[1], 3, stride=2, padding=1), ResBlock(c[1], c[1], c_emb)
        self.down2 = nn.Conv2d(c[1], c[2], 3, stride=2, padding=1)
        self.mid1, self.mid2 = ResBlock(c[2], c[2], c_emb), ResBlock(c[2], c[2], c_emb)
        self.up2, self.block2 = nn.ConvTranspose2d(c[2], c[1], 4, 2, 1), ResBlock(2 * c[1], c[1], c_emb)
        self.up1 = nn.ConvTranspose2d(c[1], c[0], 4, 2, 1)
        self.head = nn.Sequential(nn.Conv2d(2 * c[0], c[0], 3, padding=1), nn.SiLU(), nn.Conv2d(c[0], 1, 3, padding=1))

    def eps(self, x, sigma):                                             # x (B, 1, 28, 28), sigma (B,)
        if CHUNK is not None and len(x) > CHUNK:                         # the same numbers, faster on a CPU
            return torch.cat([self.eps(xc, sc) for xc, sc in zip(x.split(CHUNK), sigma.split(CHUNK), strict=True)])
        angles = sigma.log()[:, None] * self.freqs                       # (B, C_emb / 2) Fourier features
        emb = self.embed(torch.cat([angles.sin(), angles.cos()], 1))     # (B, C_emb)
        c_in = (sigma**2 + self.sigma_data**2).rsqrt()[:, None, None, None]
        h0 = self.block0(self.inp(c_in * (x - 0.5)), emb)                # (B, c0, 28, 28)
        h1 = self.block1(self.down1(F.silu(h0)), emb)                    # (B, c1, 14, 14)
        h = self.mid2(self.mid1(self.down2(h1), emb), emb)               # (B, c2, 7, 7)
        h = self.block2(torch.cat([self.up2(h), h1], 1), emb)            # (B, c1, 14, 14)
        return self.head(torch.cat([F.silu(self.up1(h)), h0], 1))        # (B, 1, 28, 28)

    def loss(self, x):                                                   # x (B, 1, 28, 28) in [0, 1]
        """Exercise 2's objective in the epsilon form, with sigma = tan(theta) / 2, theta ~ U[0, pi/2), clamped to
        [sigma_L, sigma_1], and each example's term weighted by min(1, 20 sigma^2) (see the text)."""
        theta = torch.rand(len(x), device=x.device) * (math.pi / 2)
        sigma = (theta.tan() / 2).clamp(self.sigma_min, self.sigma_max)  # (B,)
        z = torch.randn_like(x)
        err = (self.eps(x + sigma[:, None, None, None] * z, sigma) - z).pow(2).flatten(1).sum(1)    # (B,)
        return 0.5 * ((20 * sigma**2).clamp(max=1) * err).mean()


torch.manual_seed(0)
ncsn_mnist = ScoreUNet(sigmas_mnist[-1], sigmas_mnist[0]).to(device)
print(f"{sum(p.numel() for p in ncsn_mnist.parameters()):,} parameters")

# %% [markdown]
# **Which levels to train.** `ScoreUNet.loss` is Exercise 2's objective in the $\varepsilon$-form, with two
# changes in how often each level is drawn and how much it counts. Log-uniform levels suit the toy data, but on
# MNIST they spend the training where it teaches little. Below $\sigma \approx 0.05$ the noise is a few grey
# levels and denoising is nearly the identity; above $\sigma \approx 3$ the best guess is the average digit.
# Between $\sigma_L$ and $\sigma_1$ these two ends take over 40% of log-uniform draws, and the range
# $0.1 \le \sigma \le 1$, where strokes and shapes are decided, under a third. So the MNIST network draws
# $\sigma = \tfrac12 \tan\theta$ with $\theta$ uniform on $[0, \pi/2)$, clamped to $[\sigma_L, \sigma_1]$: more
# than half of the draws land in $[0.1, 1]$ and about a sixth at the two ends. It is the cosine noise schedule of
# diffusion models (Nichol and Dhariwal 2021; lecture 15) written as a noise level for data in $[0, 1]$. Second,
# the nearly clean levels count less. In the $\varepsilon$-form an example's loss is its denoising error
# $\lVert \hat x_0 - x_0 \rVert^2$ magnified by $1/\sigma^2$, so the smallest levels get outsized gradients; each
# term is multiplied by $\min(1, 20\sigma^2)$, which is 1 above $\sigma \approx 0.22$: the min-SNR weighting
# $\min(\mathrm{SNR}, \gamma)/\mathrm{SNR}$ of Hang et al. (2023) with their $\gamma = 5$, as in lecture 15, where
# $\mathrm{SNR} = 1/(2\sigma)^2$ is the signal-to-noise ratio on that lecture's $[-1, 1]$ scale. Neither change moves the minimizer at any one level:
# they only spread the small network's capacity and its short training differently over the levels. On this
# budget they improved the FIDs of annealed Langevin and of the reverse SDE a lot (try it: delete the `loss`
# method, and the model trains with Exercise 2's loss).
#
# **Training.** The package's `fit_steps` trains the network with two things that `fit` lacks, both from the
# recipes of the papers. The learning rate warms up over the first hundred steps and then decays to 0 on a
# cosine. And the network that samples is an **exponential moving average** (EMA) of the weights over training,
# $\bar\theta \leftarrow \rho\,\bar\theta + (1 - \rho)\,\theta$ after every step (Song and Ermon 2020, technique 5):
# the loss is noisy (a random $\sigma$ and noise per example), so the weights of any single step carry that noise,
# and a sampler that calls the network hundreds of times in a row compounds it. The average smooths it out at no
# cost. (They use $\rho = 0.999$; so do we, with a shorter memory in the first steps.)

# %%
MNIST_STEPS, MNIST_BATCH = budget(smoke=(20, 32), standard=(12000, 32), full=(40000, 128))
MNIST_LR = budget(smoke=4e-3, standard=4e-3, full=2e-3)
EMA_DECAY = budget(smoke=0.9, standard=0.999, full=0.999)


hist_mnist = train_or_load(ncsn_mnist, LECTURE, "ncsn_mnist_tan12k", lambda: fit_steps(
    ncsn_mnist, x_mnist, steps=MNIST_STEPS, batch_size=MNIST_BATCH, lr=MNIST_LR, ema_decay=EMA_DECAY,
    desc="training the score network"))
plot.curves({"loss per step": hist_mnist["step_loss"]}, xlabel="step", logy=True,
            title=f"MNIST NCSN, {MNIST_STEPS} steps of {MNIST_BATCH} from {len(x_mnist)} digits")
plt.show()

# %% [markdown]
# ### Samples
#
# Annealed Langevin from uniform noise, then one last **denoising** step with Tweedie's formula (lecture 12),
# $\hat x = x + \sigma_L^2\, s_\theta(x, \sigma_L)$, which removes the remaining noise of level $\sigma_L$
# (Jolicoeur-Martineau et al. 2021 found that this alone improves FID a lot). The images are generated in batches
# and clipped to $[0, 1]$.
#
# **The step.** Song and Ermon (2019) ran $T = 100$ steps at each of 10 levels: 1000 network evaluations per
# image. Our $L$ levels cost $L$ evaluations per step at each level, so a CPU affords only a few steps: $T = 3$,
# $3L$ evaluations per image (more in `full` mode). One step per level costs a third as much, but the chains then
# get too little time at each level, and the FID was much worse (try `T_MNIST = 1`). The step follows section 4:
# $\eta_i = c\,\sigma_i^2$ with $c$ below the limit 2. Which $c$?
# Follow a direction in which the data have no spread: there $p_{\sigma_i}$ is $\mathcal N(\cdot, \sigma_i^2)$, a step
# maps the variance $v \mapsto (1 - c)^2 v + 2c\sigma_i^2$ (lecture 11), and a chain that arrives with the previous
# level's variance $\gamma^2\sigma_i^2$ leaves after $T$ steps with
#
# $$\frac{v_T}{\sigma_i^2} = (1 - c)^{2T} \Big(\gamma^2 - \frac{2}{2 - c}\Big) + \frac{2}{2 - c} .$$
#
# Song and Ermon (2020, technique 4) choose $c$ to bring this ratio as close to 1 as possible (it cannot reach 1:
# the stationary variance $2\sigma_i^2/(2 - c)$ of unadjusted Langevin is always a little too large, lecture 11's
# bias). That rule assumes many steps per level; with $T = 3$ it picks a small $c$ (printed below), at which the
# chains hardly move along the directions where the digits do vary: with data variance $v \gg \sigma_i^2$ a step
# contracts only by $1 - c\,\sigma_i^2/(v + \sigma_i^2)$. We take $c = \tfrac12$, a quarter of the limit: a step
# halves the distance to the data in the empty directions, the ratio above stays within a third of 1, and the
# chains still travel along the data. (With this network and one step per level, $c = \tfrac14$ and $c = 1$ both
# gave clearly worse FIDs than $c = \tfrac12$; with two steps per level $c = 1$ was still clearly worse and
# $c = \tfrac14$ about as good. Try them.)

# %%
N_GEN = budget(smoke=64, standard=500, full=2000)                        # images per sampler (<= the held-out 5000)
T_MNIST = budget(smoke=1, standard=3, full=5)
C_MNIST = 0.5                                                            # eta_i / sigma_i^2, stable below 2
STEP_MNIST = C_MNIST * SIGMA_L**2                                        # eta_L


def variance_ratio(c, gamma, T):
    """v_T / sigma_i^2 after T steps of eta = c sigma_i^2 on N(0, sigma_i^2), from variance gamma^2 sigma_i^2."""
    return (1 - c) ** (2 * T) * (gamma**2 - 2 / (2 - c)) + 2 / (2 - c)


c_grid = torch.linspace(1e-3, 2 - 1e-3, 4000, dtype=torch.float64)
c_technique_4 = c_grid[(variance_ratio(c_grid, gamma_mnist, T_MNIST) - 1).abs().argmin()].item()
for name, c in [("technique 4", c_technique_4), ("used here", C_MNIST)]:
    print(f"{name:>12}: eta_i = {c:.3f} sigma_i^2, v_T / sigma_i^2 = {variance_ratio(c, gamma_mnist, T_MNIST):.3f}")
print(f"T = {T_MNIST}: {L_MNIST * T_MNIST} network evaluations per image")


@torch.no_grad()
def denoise(score, x, sigma):
    return x + sigma**2 * score(x, sigma)                                 # Tweedie: E[x_0 | x]


@torch.no_grad()
def sample_ncsn_mnist(n, seed=0, batch=100):
    out = []
    for start in progress(range(0, n, batch), f"annealed Langevin, {batch} images at a time"):
        g = torch.Generator().manual_seed(seed + start)
        x = torch.rand(min(batch, n - start), 1, 28, 28, generator=g).to(device)
        states = annealed_langevin(ncsn_mnist.score, x, sigmas_mnist.to(device), STEP_MNIST, T_MNIST)
        out.append(denoise(ncsn_mnist.score, states[-1], SIGMA_L).clamp(0, 1).cpu())
    return torch.cat(out)


torch.manual_seed(0)
t_sample = time.perf_counter()
x_gen = sample_ncsn_mnist(N_GEN)
t_sample = time.perf_counter() - t_sample
print(f"annealed Langevin: {N_GEN} images in {t_sample:.0f} s")

# %% [markdown]
# One digit across the levels (the first chains of a fresh run, at ten of the $L$ levels): noise at $\sigma_1$, a
# blurry blob in the middle, strokes at the end.

# %%
torch.manual_seed(1)
x0_demo = torch.rand(8, 1, 28, 28).to(device)
demo = annealed_langevin(ncsn_mnist.score, x0_demo, sigmas_mnist.to(device), STEP_MNIST, T_MNIST)  # (L, 8, 1, 28, 28)
shown = torch.linspace(0, L_MNIST - 1, 10).round().long()                # ten levels from sigma_1 to sigma_L
rows = torch.cat([x0_demo[None], demo[shown]]).transpose(0, 1).reshape(-1, 1, 28, 28)      # chain by chain
plot.image_grid(rows.clamp(0, 1).cpu(), nrow=11, title="start, then after ten of the levels, sigma_1 to sigma_L")
plt.show()

# %% [markdown]
# The SDE samplers of section 5 on the same network, with about a hundred network evaluations per image, a third
# of annealed Langevin's: the reverse SDE with 100 Euler–Maruyama steps, predictor–corrector with 50 steps of
# each, and the probability-flow ODE with 50 Heun steps. All start from the prior $\mathcal N(0, \sigma_1^2 I)$ and
# end with the same Tweedie step.

# %%
N_SDE_MNIST = budget(smoke=10, standard=100, full=1000)                  # network evaluations per image
sde_mnist = VESDE(sigmas_mnist[-1], sigmas_mnist[0])
x1 = sde_mnist.prior(N_GEN, 1, 28, 28, generator=torch.Generator().manual_seed(8)).to(device)
mnist_samplers = {
    "reverse SDE": lambda: pc_sample(sde_mnist, ncsn_mnist.score, x1, N_SDE_MNIST, keep=N_SDE_MNIST),
    "predictor-corrector": lambda: pc_sample(sde_mnist, ncsn_mnist.score, x1, N_SDE_MNIST // 2, n_corrector=1,
                                             keep=N_SDE_MNIST),
    "probability-flow ODE": lambda: pf_ode_sample(sde_mnist, ncsn_mnist.score, x1, N_SDE_MNIST // 2,
                                                  keep=N_SDE_MNIST),
}
torch.manual_seed(9)
x_mnist_samples = {"annealed Langevin": x_gen}
for name, run in mnist_samplers.items():
    x_mnist_samples[name] = denoise(ncsn_mnist.score, run()[-1], sde_mnist.sigma_min).clamp(0, 1).cpu()

# %% [markdown]
# ### FID with the course classifier
#
# The Fréchet distance between Gaussians fitted to the features of the course's small MNIST classifier
# (lecture 14), between the generated images and the course's reference set (the test set of the mode). It is
# **not** the Inception FID of the papers and cannot be compared with their numbers; and this network and sampler
# are far smaller and shorter than theirs, so the samples are far from theirs too. The **floor** is the FID of as
# many real held-out training digits against the same reference: what a perfect model scores with this many
# samples. The confident fraction is the share of samples that the classifier assigns to one digit with
# probability at least 0.9 (real digits: nearly all).

# %%
clf = evaluation.mnist_classifier()                                     # trained once per mode, then cached
reference = evaluation.fid_reference()                                   # (N_ref, 1, 28, 28): the mode's test set
fid_floor = evaluation.fid_floor(N_GEN, reference, clf)
fid_mnist = {name: evaluation.fid(x, reference, clf) for name, x in x_mnist_samples.items()}
confident_mnist = {name: evaluation.confident_fraction(x, clf) for name, x in x_mnist_samples.items()}
print(f"FID (course classifier), {N_GEN} images per sampler against {len(reference)} reference digits; "
      f"floor (held-out real digits) {fid_floor:.2f}")
for name in x_mnist_samples:
    print(f"{name:>22}: FID {fid_mnist[name]:7.2f}  ({fid_mnist[name] / fid_floor:4.1f} x floor), "
          f"confident fraction {confident_mnist[name]:.3f}")
fig = plot.samples_beside_real(x_mnist_samples, reference, title=f"{L_MNIST * T_MNIST} (annealed Langevin) or "
                               f"about {N_SDE_MNIST} network evaluations per image")

# %% [markdown]
# ## Results

# %%
elapsed = time.perf_counter() - T0
record(LECTURE, "plain_langevin_mode_weight_error", errors["plain, learned"], "fraction", n_data=N_CHAINS,
       wall_time_s=elapsed, note=f"learned score at sigma_L, {L_TOY * T_STEPS} steps, eta = {STEP_TOY}")
record(LECTURE, "annealed_langevin_mode_weight_error", errors["annealed, learned"], "fraction", n_data=N_CHAINS,
       wall_time_s=elapsed, note=f"learned NCSN, L = {L_TOY}, T = {T_STEPS}, eta_L = {STEP_TOY}")
record(LECTURE, "pf_ode_mean_error", stats["probability-flow ODE", "learned"][0], "distance", n_data=N_SDE,
       wall_time_s=elapsed, note=f"|mean - (3, 3)| of PF-ODE samples from x(1) ~ p_1, learned score, {N_SDE_STEPS // 2} Heun steps")
record(LECTURE, "pf_ode_mode_weight_error", stats["probability-flow ODE", "learned"][2], "fraction", n_data=N_SDE,
       wall_time_s=elapsed, note="the same PF-ODE samples")
record(LECTURE, "reverse_sde_mode_weight_error", stats["reverse SDE", "learned"][2], "fraction", n_data=N_SDE,
       wall_time_s=elapsed, note=f"Euler-Maruyama from x(1) ~ p_1, {N_SDE_STEPS} steps, learned score")
record(LECTURE, "vp_reverse_sde_mode_weight_error", mode_weight_error(vp_paths["learned"][-1]), "fraction",
       n_data=N_SDE, wall_time_s=elapsed,
       note=f"reverse VP SDE from N(0, I), {N_SDE_STEPS} Euler-Maruyama steps, learned score rescaled")
record(LECTURE, "pf_ode_test_nll", -lik["learned network, N(0, sigma_1^2) prior"].mean().item(), "nats per point",
       n_data=N_LIK, wall_time_s=elapsed,
       note=f"exact divergence, {N_LIK_STEPS} Heun steps, learned score, N(0, sigma_1^2) prior")
record(LECTURE, "true_test_nll", -true_lp.mean().item(), "nats per point", n_data=N_LIK, wall_time_s=elapsed,
       note="-log p_sigma_L of the same test points, exact")
record(LECTURE, "pf_ode_exact_score_max_error", (lik["exact score, exact p_1"] - true_lp).abs().max().item(),
       "nats", n_data=N_LIK, wall_time_s=elapsed, note="PF-ODE log-likelihood with the exact score and p_1")
trained = f"{MNIST_STEPS} steps of {MNIST_BATCH} on {len(x_mnist)} digits, EMA {EMA_DECAY}"
mnist_notes = {
    "annealed Langevin": ("ncsn_mnist", f"annealed Langevin L = {L_MNIST}, T = {T_MNIST}, eta_i = {C_MNIST} sigma_i^2"),
    "reverse SDE": ("reverse_sde_mnist", f"reverse VE SDE, {N_SDE_MNIST} Euler-Maruyama steps"),
    "predictor-corrector": ("pc_mnist", f"{N_SDE_MNIST // 2} predictor + {N_SDE_MNIST // 2} corrector steps"),
    "probability-flow ODE": ("pf_ode_mnist", f"probability-flow ODE, {N_SDE_MNIST // 2} Heun steps"),
}
for name, (key, how) in mnist_notes.items():
    record(LECTURE, f"{key}_fid", fid_mnist[name], "FID (course classifier)", n_data=N_GEN, wall_time_s=elapsed,
           note=f"{how}, then a Tweedie step; {trained}; vs {len(reference)} reference digits; not Inception FID")
    record(LECTURE, f"{key}_confident_fraction", confident_mnist[name], "fraction", n_data=N_GEN,
           wall_time_s=elapsed, note=f"{how}: share of samples classified with probability >= 0.9")
record(LECTURE, "fid_floor", fid_floor, "FID (course classifier)", n_data=N_GEN, wall_time_s=elapsed,
       note=f"{N_GEN} held-out training digits vs {len(reference)} reference digits (evaluation.fid_floor)")

# %% [markdown]
# **Discussion.** On the two-mode target plain Langevin splits the chains roughly by where they started, about
# half and half instead of 20/80, and annealing brings the error down to the Monte Carlo noise of the estimate
# (about $\sqrt{0.16/N}$) plus the network's own error; the exact-score runs above separate the two. Even with
# the exact score a small error remains: while $\sigma$ shrinks through the range where the modes separate (about
# 6 down to 2), $p_\sigma$ keeps moving mass to the heavy side, and chains must cross an ever higher barrier to
# follow; annealing more slowly there (more levels for the same number of steps) shrinks it. The probability-flow
# ODE and the reverse SDEs, VE and VP alike, agree with each other and, with the exact score, with the data; the
# same ODE, run forward, gives the model's exact log-likelihood, and with the exact score it reproduces the true
# density. On MNIST compare each FID with the floor printed beside it, and look at the confident fractions: the
# network is small (its parameter count is printed in section 7) and trains for about seven epochs in standard
# mode (with an average of its weights), the samplers spend one to three hundred network evaluations per image
# where Song and Ermon used 1000, and the features are those of a small classifier rather than Inception. The three
# SDE samplers share the network and spend the same number of network evaluations, so the differences between
# their FIDs are the samplers' own: the stochastic ones (the reverse SDE, predictor–corrector) inject fresh noise
# that can wash out part of the network's errors, while the ODE, deterministic after its start, carries them to
# the end. Annealed Langevin spends three times as many evaluations; with one step per level (`T_MNIST = 1`) it
# falls behind the reverse SDE. A larger network, longer training and more steps (`full` mode, or a GPU) are
# what close the gap to the floor.
#
# ## Summary
#
# - One noise level cannot serve both ends: small $\sigma$ is needed for accuracy and large $\sigma$ for mixing
#   and for scores in empty regions. A **geometric schedule** from about the data's diameter down to a small
#   $\sigma_L$ covers both with evenly overlapping levels.
# - A **noise-conditional score network** learns all levels at once; the weighting $\lambda(\sigma) = \sigma^2$
#   makes every level count equally and is the same as predicting the noise, $s_\theta = -\varepsilon_\theta/\sigma$.
#   On MNIST, drawing more often the levels where digits take shape, and capping the weight of the nearly clean
#   ones, buys much better samples from the same training budget.
# - **Annealed Langevin dynamics** with $\eta_i \propto \sigma_i^2$, below the stability limit $2\sigma_i^2$,
#   distributes the chains among the modes while they are still connected and then sharpens them: it fixes the
#   mode weights that plain Langevin gets wrong.
# - With a continuum of levels the noising is the **VE SDE**; its **reverse SDE** needs only the score and is
#   solved by Euler–Maruyama, improved by a Langevin **corrector**; the **VP SDE** of diffusion models is the same
#   family rescaled; the **probability-flow ODE** has the same marginals with no noise, turning the score model
#   into a continuous flow with an exact log-likelihood.
#
# ## References
# - Y. Song, S. Ermon. *Generative Modeling by Estimating Gradients of the Data Distribution.* NeurIPS 2019.
#   [arXiv:1907.05600](https://arxiv.org/abs/1907.05600) (NCSN, annealed Langevin dynamics, $\lambda(\sigma) = \sigma^2$)
# - Y. Song, S. Ermon. *Improved Techniques for Training Score-Based Generative Models.* NeurIPS 2020.
#   [arXiv:2006.09011](https://arxiv.org/abs/2006.09011) (techniques 1–4: $\sigma_1$ from the largest pairwise
#   distance, the ratio of a geometric schedule, the $1/\sigma$ output scaling, the Langevin step)
# - Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling
#   through Stochastic Differential Equations.* ICLR 2021. [arXiv:2011.13456](https://arxiv.org/abs/2011.13456)
#   (VE/VP SDEs, predictor–corrector, the probability-flow ODE)
# - R. T. Q. Chen, Y. Rubanova, J. Bettencourt, D. Duvenaud. *Neural Ordinary Differential Equations.* NeurIPS 2018.
#   [arXiv:1806.07366](https://arxiv.org/abs/1806.07366) (the instantaneous change of variables)
# - B. D. O. Anderson. *Reverse-time diffusion equation models.* Stochastic Processes and their Applications, 1982.
#   [doi:10.1016/0304-4149(82)90051-5](https://doi.org/10.1016/0304-4149(82)90051-5)
# - P. Vincent. *A Connection Between Score Matching and Denoising Autoencoders.* Neural Computation, 2011.
#   [PDF](https://www.iro.umontreal.ca/~vincentp/Publications/smdae_techreport.pdf)
# - A. Jolicoeur-Martineau, R. Piché-Taillefer, R. Tachet des Combes, I. Mitliagkas. *Adversarial score matching
#   and improved sampling for image generation.* ICLR 2021. [arXiv:2009.05475](https://arxiv.org/abs/2009.05475)
#   (the final denoising step)
# - T. Karras, M. Aittala, T. Aila, S. Laine. *Elucidating the Design Space of Diffusion-Based Generative Models.*
#   NeurIPS 2022. [arXiv:2206.00364](https://arxiv.org/abs/2206.00364) (Heun's method for the ODE; input scaling
#   $c_\text{in}$)
# - A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models.* ICML 2021.
#   [arXiv:2102.09672](https://arxiv.org/abs/2102.09672) (the cosine noise schedule)
# - T. Hang, S. Gu, C. Li, J. Bao, D. Chen, H. Hu, X. Geng, B. Guo. *Efficient Diffusion Training via Min-SNR
#   Weighting Strategy.* ICCV 2023. [arXiv:2303.09556](https://arxiv.org/abs/2303.09556) (the min-SNR weighting)
# - J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models.* NeurIPS 2020.
#   [arXiv:2006.11239](https://arxiv.org/abs/2006.11239) ($\varepsilon$-prediction)
