# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 12 — Score-based models
#
# Lecture 11 trained energy-based models without their partition function: the **score**
# $\nabla_x \log p(x)$ does not depend on $Z$, score matching fits it with the trace of a Hessian, and Langevin
# dynamics samples with nothing but the score. This lecture drops the energy altogether and models the score
# directly with a network $s_\theta : \mathbb{R}^D \to \mathbb{R}^D$.
#
# **Learning goals**
# 1. Write the score of a Gaussian mixture, also after adding Gaussian noise, where everything is analytic; it is
#    the yardstick for every learned score in the lecture.
# 2. Derive and train **denoising score matching** (DSM), whose regression target is $-(\tilde x - x)/\sigma^2$,
#    and measure the learned score's error against the analytic one.
# 3. Use **Tweedie's formula** $\mathbb{E}[x \mid \tilde x] = \tilde x + \sigma^2 \nabla \log p_\sigma(\tilde x)$:
#    a score is an optimal denoiser, and the reverse.
# 4. Replace the $D$ backward passes of exact score matching by one **Jacobian-vector product** (sliced score
#    matching, Gaussian and Rademacher projections), and compare the three estimators on accuracy and cost.
# 5. Sample with **Langevin dynamics** and a learned score, and see, each with a picture and a number, its three
#    failures: data on a low-dimensional manifold, inaccurate scores where there is no data, and wrong weights
#    of separated modes.
#
# **Builds on** lecture 11 (Langevin dynamics, Fisher divergence, score matching with the Hessian trace) and
# lecture 04 (Gaussian mixtures and posteriors). Lecture 13 repairs the failures shown here with many noise
# levels.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from dgm_course import budget, fit, plot, record, setup, train_or_load, widgets
from dgm_course.exercises import lecture12
from dgm_course.runtime import progress

device, MODE = setup(seed=0)
LECTURE = "12_score_based_models"
T0 = time.perf_counter()

N_DATA = budget(smoke=4000, standard=20000, full=100000)          # training points drawn from the mixture
EPOCHS = budget(smoke=4, standard=40, full=200)                   # DSM epochs per noise level
SM_EPOCHS = budget(smoke=3, standard=30, full=150)                # epochs of exact and sliced score matching
MANIFOLD_STEPS = budget(smoke=300, standard=1500, full=5000)      # steps on data on a circle
N_CHAINS = budget(smoke=2000, standard=5000, full=20000)          # Langevin chains
LANGEVIN_STEPS = budget(smoke=300, standard=1000, full=2000)      # Langevin steps per chain
N_EVAL = budget(smoke=20000, standard=100000, full=400000)        # Monte Carlo points for score errors

# %% [markdown]
# ## 1. Scores, and the score of a Gaussian mixture
#
# The score of a density is the gradient of its log, a vector field:
#
# $$s(x) = \nabla_x \log p(x), \qquad p(x) = \frac{e^{f(x)}}{Z} \;\Rightarrow\; s(x) = \nabla_x f(x) .$$
#
# It points uphill, towards more probable points, and it knows nothing of $Z$. A **score model** is a network
# $s_\theta(x) \approx \nabla_x \log p(x)$ with $D$ outputs: no energy, no normalization, not even the
# requirement that $s_\theta$ be a gradient. What it gives up is the density itself: to evaluate $p$ we would
# have to integrate $s_\theta$ along a path.
#
# The running example is a two-mode Gaussian mixture in 2-D with unequal weights (lecture 13 uses the same one):
#
# $$p(x) = 0.2\, \mathcal{N}\big(x; (-5, -5), I\big) + 0.8\, \mathcal{N}\big(x; (5, 5), I\big) .$$
#
# For a mixture $p = \sum_k w_k \mathcal{N}(\mu_k, s_k^2 I)$ the score is the responsibility-weighted average
# of the components' scores,
#
# $$\nabla_x \log p(x) = \sum_k r_k(x)\, \frac{-(x - \mu_k)}{s_k^2}, \qquad
# r_k(x) = \frac{w_k \mathcal{N}(x; \mu_k, s_k^2 I)}{\sum_j w_j \mathcal{N}(x; \mu_j, s_j^2 I)} .$$
#
# Adding independent noise, $\tilde x = x + \sigma z$ with $z \sim \mathcal{N}(0, I)$, convolves $p$ with
# $\mathcal{N}(0, \sigma^2 I)$; for a Gaussian mixture that just adds $\sigma^2$ to every variance. So the
# **perturbed density** $p_\sigma$ and its score stay analytic:
#
# $$p_\sigma(\tilde x) = \sum_k w_k\, \mathcal{N}\big(\tilde x; \mu_k, (s_k^2 + \sigma^2) I\big) .$$
#
# ### Exercise 1: the score of a perturbed Gaussian mixture
# Write `mixture_score(x, weights, means, stds, sigma)` returning $\nabla \log p_\sigma(x)$ for `x` of shape
# $(B, D)$, `weights` $(K,)$, `means` $(K, D)$, per-component standard deviations `stds` $(K,)$ and a noise level
# $\sigma \ge 0$. Far from every mode the Gaussian densities underflow to $0$: compute the responsibilities from
# log-terms (a softmax), so that the score stays finite at $|x| = 100$.

# %% tags=["solution:ex1_mixture_score"]
def mixture_score(x, weights, means, stds, sigma):
    """grad_x log sum_k w_k N(x; mu_k, (s_k^2 + sigma^2) I) for x (B, D); returns (B, D)."""
    ### BEGIN SOLUTION
    var = stds**2 + sigma**2                                              # (K,)
    diff = x[:, None, :] - means[None]                                    # (B, K, D)
    log_terms = weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var)
    r = torch.softmax(log_terms, dim=1)                                   # responsibilities (B, K)
    return (r[..., None] * (-diff / var[:, None])).sum(1)
    ### END SOLUTION


# %% tags=["check:ex1_mixture_score"]
lecture12.check_mixture_score(mixture_score)

# %% [markdown]
# The target as a small object: samples, the exact log-density of $p_\sigma$ and its exact score. Everything is
# computed on `device`; the two mixture parameters live there too.

# %%
class TwoModes:
    """p = 0.2 N((-5,-5), I) + 0.8 N((5,5), I), and its noise-perturbed versions p_sigma (analytic)."""

    def __init__(self, device):
        self.weights = torch.tensor([0.2, 0.8], device=device)
        self.means = torch.tensor([[-5.0, -5.0], [5.0, 5.0]], device=device)
        self.stds = torch.tensor([1.0, 1.0], device=device)

    def sample(self, n, sigma=0.0, generator=None):
        k = torch.multinomial(self.weights.cpu(), n, replacement=True, generator=generator)   # (n,)
        z = torch.randn(n, 2, generator=generator)
        std = (self.stds.cpu()[k] ** 2 + sigma**2).sqrt()                                      # (n,)
        return (self.means.cpu()[k] + std[:, None] * z).to(self.means.device)                  # (n, 2)

    def log_prob(self, x, sigma=0.0):
        var = self.stds**2 + sigma**2                                                             # (K,)
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)                                    # (B, K)
        return torch.logsumexp(self.weights.log() - torch.log(2 * math.pi * var) - sq / (2 * var), 1)

    def score(self, x, sigma=0.0):
        return mixture_score(x, self.weights, self.means, self.stds, sigma)


target = TwoModes(device)
data = target.sample(N_DATA, generator=torch.Generator().manual_seed(0))                          # (N, 2)
print(f"{len(data)} training points; fraction in the heavy mode: {(data.sum(1) > 0).float().mean():.3f}")


# %% [markdown]
# The score field over the density. Near each mode it points straight at that mode's centre, with length
# proportional to the distance: $-(x - \mu_k)$ for a unit-variance component. Only on the narrow boundary between
# the modes do the responsibilities switch, and only there do the weights $0.2$ and $0.8$ enter. Keep that in
# mind for section 6.

# %%
LIM = 9.0


def quiver(ax, score_fn, lim=LIM, n=17, color="white", scale=None):
    """Arrows of a score field on an n x n grid of [-lim, lim]^2 (lengths compressed for legibility)."""
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).to(device)                            # (n*n, 2)
    with torch.no_grad():
        s = score_fn(pts).cpu()
    s = s / (1 + s.norm(dim=1, keepdim=True)).sqrt()                    # sqrt-compress long arrows
    ax.quiver(xx, yy, s[:, 0].reshape(n, n), s[:, 1].reshape(n, n), color=color, scale=scale, width=0.004)


fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
plot.density_2d(lambda v: target.log_prob(v), ax=axes[0], lim=LIM, device=device, title="p(x) and its score")
quiver(axes[0], target.score)
plot.scatter_2d(data[:2000].cpu(), ax=axes[1], lim=LIM, title="2000 training points")
plt.show()

# %% [markdown]
# ## 2. Denoising score matching
#
# We would like to minimize the Fisher divergence to the data, $\tfrac12 \mathbb{E}_{p}\|s_\theta(x) -
# \nabla \log p(x)\|^2$, but $\nabla \log p$ is exactly what we do not know. Lecture 11 removed it by
# integration by parts (the Hessian trace). Vincent (2011) found a second way: **perturb the data** with noise of a
# known kind, $q_\sigma(\tilde x \mid x) = \mathcal{N}(\tilde x; x, \sigma^2 I)$, and match the score of the
# perturbed density $p_\sigma(\tilde x) = \int q_\sigma(\tilde x \mid x)\, p(x)\, dx$ instead. Then
#
# $$\tfrac12\,\mathbb{E}_{p_\sigma(\tilde x)} \big\| s_\theta(\tilde x) - \nabla \log p_\sigma(\tilde x) \big\|^2
# = \tfrac12\,\mathbb{E}_{p(x)\, q_\sigma(\tilde x \mid x)} \big\| s_\theta(\tilde x) - \nabla_{\tilde x}
# \log q_\sigma(\tilde x \mid x) \big\|^2 + C ,$$
#
# with $C$ free of $\theta$. Why: expand both squares. The $\|s_\theta\|^2$ terms are equal; the cross terms are
# equal because $p_\sigma(\tilde x) \nabla \log p_\sigma(\tilde x) = \nabla p_\sigma(\tilde x) = \int p(x)\,
# \nabla_{\tilde x} q_\sigma(\tilde x \mid x)\, dx = \int p(x)\, q_\sigma(\tilde x \mid x) \nabla_{\tilde x} \log
# q_\sigma(\tilde x \mid x)\, dx$. The conditional score is known:
#
# $$\nabla_{\tilde x} \log q_\sigma(\tilde x \mid x) = -\frac{\tilde x - x}{\sigma^2} = -\frac{z}{\sigma},
# \qquad \tilde x = x + \sigma z .$$
#
# So DSM is a regression: from the noisy point, predict $(x - \tilde x)/\sigma^2$, the way back to the clean
# point divided by $\sigma^2$. No Hessian, one forward pass, any dimension. The price: the minimizer is the score of $p_\sigma$, not
# of $p$; it is close to $\nabla \log p$ only when $\sigma$ is small, and then the target $-z/\sigma$ is large
# and noisy.
#
# ### Exercise 2: the DSM loss
# Write `dsm_loss(score, x, sigma, z)` for a batch `x` $(B, D)$ and its noise `z` $(B, D)$ (drawn by the caller: use
# it, do not draw your own), returning a scalar that stays differentiable with respect to the network's parameters:
#
# $$\mathcal{L}_\text{DSM} = \frac{1}{B} \sum_{b=1}^{B} \tfrac12 \Big\| s_\theta(x_b + \sigma z_b) +
# \frac{z_b}{\sigma} \Big\|^2 .$$

# %% tags=["solution:ex2_dsm_loss"]
def dsm_loss(score, x, sigma, z):
    """Denoising score matching (Vincent 2011): mean_b 1/2 || score(x + sigma z) + z / sigma ||^2."""
    ### BEGIN SOLUTION
    x_tilde = x + sigma * z                                               # (B, D)
    target = -(x_tilde - x) / sigma**2                                    # = -z / sigma
    return 0.5 * ((score(x_tilde) - target) ** 2).sum(1).mean()
    ### END SOLUTION


# %% tags=["check:ex2_dsm_loss"]
lecture12.check_dsm_loss(dsm_loss)

# %% [markdown]
# ### A score network, trained at one noise level
#
# A small MLP with $D$ outputs. The input is divided by the data scale (5) so that the first layer sees numbers
# of order one; SiLU keeps the field smooth, which matters for the Jacobians of section 4. `DSM` adds the
# likelihood-style interface `loss(x)` (noise drawn inside), so the package's generic `fit` trains it.

# %%
class ScoreNet(nn.Module):
    """s_theta: R^D -> R^D, an MLP with SiLU activations."""

    def __init__(self, dim=2, hidden=128, scale=5.0):
        super().__init__()
        self.scale = scale
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))

    def forward(self, x):                                                 # (B, D) -> (B, D)
        return self.net(x / self.scale)


class DSM(ScoreNet):
    """A score network trained by denoising score matching at one noise level sigma."""

    def __init__(self, sigma, **kwargs):
        super().__init__(**kwargs)
        self.sigma = sigma

    def loss(self, x):
        return dsm_loss(self, x, self.sigma, torch.randn_like(x))


# %% [markdown]
# One model per noise level, from $\sigma = 0.2$ (close to the clean data, noisy targets) to $\sigma = 5$ (the
# modes blurred into each other). $\sigma = 0.5$ is the main model of the lecture. Each training is cached by
# `train_or_load`.

# %%
SIGMAS = [0.2, 0.5, 1.0, 2.0, 5.0]
SIGMA = 0.5                                                               # the main model
dsm, dsm_hist = {}, {}
for sigma in SIGMAS:
    torch.manual_seed(0)
    dsm[sigma] = DSM(sigma).to(device)
    dsm_hist[sigma] = train_or_load(
        dsm[sigma], LECTURE, f"dsm_sigma{sigma}",
        lambda m=dsm[sigma]: fit(m, data, epochs=EPOCHS, batch_size=256, lr=2e-3))
plot.curves({f"sigma={s}": dsm_hist[s]["train_loss"] for s in SIGMAS}, title="DSM loss per epoch", logy=True)
plt.show()

# %% [markdown]
# The DSM loss does not go to zero, and its floor differs by $\sigma$: it is the constant $C$ above plus the
# Fisher divergence left over. Its value says little about accuracy. Because $p_\sigma$ is analytic here, we can
# measure the accuracy directly: the mean squared error of the score, **weighted by the perturbed data density**
# (the points where the loss was trained),
#
# $$\mathrm{err}(\sigma) = \mathbb{E}_{\tilde x \sim p_\sigma} \big\| s_\theta(\tilde x) - \nabla \log
# p_\sigma(\tilde x) \big\|^2 \quad \text{(units: } 1/\text{length}^2\text{)},$$
#
# and relative to $\mathbb{E}_{p_\sigma}\|\nabla \log p_\sigma\|^2$ (which is $2/(1 + \sigma^2)$ for
# unit-variance modes in 2-D).

# %%
@torch.no_grad()
def score_errors(score_fn, sigma, n=N_EVAL, seed=1):
    """(p_sigma-weighted MSE, relative MSE) of score_fn against the analytic score of p_sigma."""
    x = target.sample(n, sigma=sigma, generator=torch.Generator().manual_seed(seed))      # (n, 2)
    true = target.score(x, sigma)
    mse = ((score_fn(x) - true) ** 2).sum(1).mean().item()
    return mse, mse / (true**2).sum(1).mean().item()


err_dsm = {s: score_errors(dsm[s], s) for s in SIGMAS}
for s in SIGMAS:
    print(f"sigma = {s:4}: E_p_sigma |s_theta - grad log p_sigma|^2 = {err_dsm[s][0]:.4f}   "
          f"(relative {err_dsm[s][1]:.4f})")
dsm_score_error, dsm_score_rel_error = err_dsm[SIGMA]

# %% [markdown]
# These errors are measured against the score of $p_\sigma$, what DSM targets. What we wanted is the score of the
# clean $p$. Against it the learned score has two errors: the **estimation error** above, which is large at small
# $\sigma$ (noisy targets $-z/\sigma$), and the **bias** $\mathbb E_p\|\nabla \log p_\sigma - \nabla \log p\|^2$ of the
# target itself, zero at $\sigma = 0$ and growing with $\sigma$. Both are computable here, the bias exactly from the
# analytic scores. Their sum is what a sampler that wants $p$ would suffer.

# %%
@torch.no_grad()
def clean_errors(sigma, n=N_EVAL, seed=2):
    """(bias, total): E_p |grad log p_sigma - grad log p|^2 and E_p |s_theta - grad log p|^2, x ~ p (clean data)."""
    x = target.sample(n, generator=torch.Generator().manual_seed(seed))
    true = target.score(x)
    bias = ((target.score(x, sigma) - true) ** 2).sum(1).mean().item()
    return bias, ((dsm[sigma](x) - true) ** 2).sum(1).mean().item()


bias_total = {s: clean_errors(s) for s in SIGMAS}
for s in SIGMAS:
    print(f"sigma = {s:4}: bias {bias_total[s][0]:8.4f}   learned vs clean score {bias_total[s][1]:8.4f}")
fig, ax = plt.subplots(figsize=(5.5, 3.8))
ax.loglog(SIGMAS, [err_dsm[s][0] for s in SIGMAS], "o-", label="estimation: E_p_sigma |s_theta - grad log p_sigma|^2")
ax.loglog(SIGMAS, [bias_total[s][0] for s in SIGMAS], "s-", label="bias: E_p |grad log p_sigma - grad log p|^2")
ax.loglog(SIGMAS, [bias_total[s][1] for s in SIGMAS], "k^-", label="learned vs clean: E_p |s_theta - grad log p|^2")
ax.set(xlabel="noise level sigma", ylabel="squared score error", title="DSM: the noise level trades variance for bias")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# Small $\sigma$: the network learns almost the right target, but from noisy regression targets. Large $\sigma$:
# an easy target, learned accurately, but the wrong one, the score of a blurred density. Against the clean score
# the total error is dominated by the bias once $\sigma$ is comparable with the width of the modes. No single
# $\sigma$ is good for everything; lecture 13 trains one network for many noise levels and anneals through them.

# %% [markdown]
# ## 3. Tweedie's formula: the score is the optimal denoiser
#
# Denoising and score estimation are the same problem. For $\tilde x = x + \sigma z$ with Gaussian noise, the
# posterior mean of the clean point (the denoiser with the smallest squared error) is
#
# $$\mathbb{E}[x \mid \tilde x] = \tilde x + \sigma^2\, \nabla_{\tilde x} \log p_\sigma(\tilde x) .$$
#
# Proof in one line: $\nabla p_\sigma(\tilde x) = \int p(x)\, \frac{x - \tilde x}{\sigma^2}\, q_\sigma(\tilde x
# \mid x)\, dx = p_\sigma(\tilde x)\, \frac{\mathbb{E}[x \mid \tilde x] - \tilde x}{\sigma^2}$; divide by
# $p_\sigma$. (Robbins 1956 credits Tweedie; Efron 2011 revived it.) The formula needs the score of the
# *noisy* density only — exactly what DSM learns. And it runs the other way: a network $D_\theta$ trained to
# denoise by least squares gives the score $(D_\theta(\tilde x) - \tilde x)/\sigma^2$. Indeed, writing
# $s_\theta = (D_\theta - \tilde x)/\sigma^2$ in the DSM loss gives $\frac{1}{2\sigma^4}\mathbb{E}\|D_\theta(\tilde
# x) - x\|^2$: denoising score matching *is* a denoising autoencoder.
#
# ### Exercise 3: Tweedie's denoiser
# Write `tweedie_denoiser(x_tilde, sigma, score)` returning $\mathbb{E}[x \mid \tilde x]$ $(B, D)$, where `score`
# maps points $(B, D)$ to $\nabla \log p_\sigma$ at those points; leave `x_tilde` unchanged (the lecture plots the
# noisy points afterwards). The check compares it with the posterior mean
# of a Gaussian mixture in closed form (each component's Gaussian posterior, weighted by its responsibility).

# %% tags=["solution:ex3_tweedie"]
def tweedie_denoiser(x_tilde, sigma, score):
    """E[x | x_tilde] = x_tilde + sigma^2 grad log p_sigma(x_tilde) (Tweedie's formula)."""
    ### BEGIN SOLUTION
    return x_tilde + sigma**2 * score(x_tilde)
    ### END SOLUTION


# %% tags=["check:ex3_tweedie"]
lecture12.check_tweedie(tweedie_denoiser)

# %% [markdown]
# On the mixture, with $\sigma = 2$ (so that the noise is visible): the posterior mean in closed form, per
# component $\mathbb{E}[x \mid \tilde x, k] = (s_k^2 \tilde x + \sigma^2 \mu_k)/(s_k^2 + \sigma^2)$, agrees with
# Tweedie's formula and the analytic score; then the denoisers' squared errors against the clean points. The
# exact posterior mean is the best any denoiser can do; the learned score should come close, and doing nothing
# ($\tilde x$ itself) costs $D\sigma^2$.

# %%
def posterior_mean(x_tilde, sigma):
    """E[x | x_tilde] for the two-mode mixture, in closed form."""
    var = target.stds**2 + sigma**2                                                         # (K,)
    sq = ((x_tilde[:, None, :] - target.means[None]) ** 2).sum(-1)                          # (B, K)
    r = torch.softmax(target.weights.log() - var.log() - sq / (2 * var), 1)                 # (B, K)
    comp = (target.stds[:, None] ** 2 * x_tilde[:, None] + sigma**2 * target.means[None]) / var[:, None]
    return (r[..., None] * comp).sum(1)                                                      # (B, D)


sigma_t = 2.0
g = torch.Generator().manual_seed(3)
x_clean = target.sample(N_EVAL, generator=g)
x_noisy = x_clean + sigma_t * torch.randn(x_clean.shape, generator=g).to(device)
with torch.no_grad():
    denoised = {"no denoising": x_noisy,
                "Tweedie, exact score": tweedie_denoiser(x_noisy, sigma_t, lambda v: target.score(v, sigma_t)),
                "Tweedie, learned score": tweedie_denoiser(x_noisy, sigma_t, dsm[sigma_t]),
                "posterior mean (closed form)": posterior_mean(x_noisy, sigma_t)}
gap = (denoised["Tweedie, exact score"] - denoised["posterior mean (closed form)"]).abs().max().item()
print(f"max |Tweedie(exact score) - closed-form posterior mean| = {gap:.2e}")
denoise_mse = {k: ((v - x_clean) ** 2).sum(1).mean().item() for k, v in denoised.items()}
for k, v in denoise_mse.items():
    print(f"{k:30s} E|x_hat - x|^2 = {v:.4f}")

# %%
fig, ax = plt.subplots(figsize=(5, 5))
idx = slice(0, 300)
xn, xd = x_noisy[idx].cpu(), denoised["Tweedie, learned score"][idx].cpu()
ax.scatter(*xn.T, s=6, label=r"noisy $\tilde x$ ($\sigma = 2$)")
ax.scatter(*xd.T, s=6, label=r"$\tilde x + \sigma^2 s_\theta(\tilde x)$")
ax.quiver(xn[:, 0], xn[:, 1], (xd - xn)[:, 0], (xd - xn)[:, 1], angles="xy", scale_units="xy", scale=1,
          width=0.002, alpha=0.4)
ax.set_aspect("equal")
ax.legend(loc="upper left")
ax.set_title("Tweedie's denoiser with the learned score")
plt.show()

# %% [markdown]
# The denoised points are pulled towards the modes but not onto their centres: the posterior mean of a
# component is a shrinkage, $(\tilde x + \sigma^2 \mu_k)/(1 + \sigma^2)$, and its spread is smaller than the data's.
# A posterior **mean** is not a sample; diffusion models (lecture 15) take many small denoising steps instead of one.
#
# ## 4. Sliced score matching
#
# Exact score matching (lecture 11, Hyvärinen 2005) minimizes, after integration by parts,
#
# $$J(\theta) = \mathbb{E}_{p}\Big[\operatorname{tr}\big(\nabla_x s_\theta(x)\big) + \tfrac12
# \|s_\theta(x)\|^2\Big],$$
#
# which needs the diagonal of the Jacobian: $D$ backward passes, one per coordinate. **Sliced score matching**
# (Song et al., 2019) projects onto random directions $v$ with $\mathbb{E}[v v^\top] = I$. Then
# $\mathbb{E}_v[v^\top A v] = \operatorname{tr}(A)$ for any matrix (Hutchinson's estimator), and
#
# $$J_\text{SSM}(\theta) = \mathbb{E}_{p}\,\mathbb{E}_{v}\Big[v^\top \nabla_x s_\theta(x)\, v + \tfrac12
# \big(v^\top s_\theta(x)\big)^2\Big] = J(\theta).$$
#
# The term $v^\top \nabla_x s_\theta(x)\, v = v \cdot \nabla_x\big(v \cdot s_\theta(x)\big)$ is one
# **Jacobian-vector product**: differentiate the scalar $v \cdot s_\theta(x)$ with respect to $x$ (one backward
# pass, whatever $D$), then dot with $v$. Two common choices of $v$: standard Gaussian, or **Rademacher**
# (entries $\pm 1$). For a symmetric $A$, the variance of $v^\top A v$ is $2\|A\|_F^2$ for Gaussian $v$ and
# $2\sum_{i \ne j} A_{ij}^2$ for Rademacher $v$ — the diagonal contributes nothing. Replacing
# $\tfrac12(v^\top s)^2$ by its expectation $\tfrac12\|s\|^2$ lowers the variance further (the "SSM-VR" form).
#
# ### Exercise 4: the sliced loss
# Write `sliced_loss(score, x, v)` for points `x` $(B, D)$ and projections `v` $(B, D)$ (one per point, drawn by the
# caller: use them), returning the scalar
#
# $$\mathcal{L}_\text{SSM} = \frac1B \sum_b \Big[v_b^\top \nabla_x s_\theta(x_b)\, v_b + \tfrac12
# \big(v_b^\top s_\theta(x_b)\big)^2\Big].$$
#
# The loss must be differentiable with respect to the network's parameters: keep the graph of the inner
# gradient (`create_graph=True`). The check averages your loss over sets of projections with $\frac1V\sum_v v
# v^\top = I$ exactly (all sign vectors, and the vectors $\pm\sqrt D\, e_i$), where it must equal the exact $J$, and
# compares its gradient with the exact gradient.

# %% tags=["solution:ex4_sliced_loss"]
def sliced_loss(score, x, v):
    """Sliced score matching (Song et al. 2019): mean_b [v^T (ds/dx) v + 1/2 (v^T s)^2]."""
    ### BEGIN SOLUTION
    x = x.detach().requires_grad_(True)
    s = score(x)                                                          # (B, D)
    sv = (s * v).sum(1)                                                   # (B,) v^T s
    vJ = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]           # (B, D) v^T ds/dx
    return ((vJ * v).sum(1) + 0.5 * sv**2).mean()
    ### END SOLUTION


# %% tags=["check:ex4_sliced_loss"]
lecture12.check_sliced_loss(sliced_loss)

# %% [markdown]
# Exact score matching, for comparison: the Jacobian's diagonal by $D$ backward passes.

# %%
def exact_sm_loss(score, x):
    """Hyvarinen score matching: mean_b [tr(ds/dx) + 1/2 |s|^2], the trace by D backward passes."""
    x = x.detach().requires_grad_(True)
    s = score(x)                                                          # (B, D)
    trace = sum(torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return (trace + 0.5 * (s**2).sum(1)).mean()


def rademacher_like(x):
    return torch.randint_like(x, 0, 2) * 2 - 1


def sliced_vr_loss(score, x, v):
    """SSM-VR (Song et al. 2019): exercise 4's loss with 1/2 (v^T s)^2 replaced by its mean over v, 1/2 |s|^2."""
    x = x.detach().requires_grad_(True)
    s = score(x)                                                          # (B, D)
    vJ = torch.autograd.grad((s * v).sum(), x, create_graph=True)[0]      # (B, D) v^T ds/dx
    return ((vJ * v).sum(1) + 0.5 * (s**2).sum(1)).mean()


class ScoreMatching(ScoreNet):
    """A score network trained on clean data by exact or sliced score matching."""

    def __init__(self, method, **kwargs):
        super().__init__(**kwargs)
        self.method = method                            # "exact", "gaussian", "rademacher" or "gaussian_vr"

    def loss(self, x):
        if self.method == "exact":
            return exact_sm_loss(self, x)
        if self.method == "gaussian_vr":
            return sliced_vr_loss(self, x, torch.randn_like(x))
        v = torch.randn_like(x) if self.method == "gaussian" else rademacher_like(x)
        return sliced_loss(self, x, v)


# %% [markdown]
# The three objectives on the clean mixture data (no noise, so the target is $\nabla \log p$ itself), same
# network, same steps, same seed; errors against the analytic score, weighted by $p$. A fourth run uses the SSM-VR
# form with Gaussian projections: the same trace estimate, the second term $\tfrac12 \|s_\theta\|^2$ exact.

# %%
sm, sm_hist, sm_err = {}, {}, {}
for method in ("exact", "gaussian", "rademacher", "gaussian_vr"):
    torch.manual_seed(0)
    sm[method] = ScoreMatching(method).to(device)
    sm_hist[method] = train_or_load(
        sm[method], LECTURE, f"sm_{method}",
        lambda m=sm[method]: fit(m, data, epochs=SM_EPOCHS, batch_size=256, lr=2e-3))
    sm_err[method] = score_errors(sm[method], 0.0)
    sec = sum(sm_hist[method]["epoch_time"]) / len(sm_hist[method]["step_loss"])
    print(f"{method:11s}: E_p |s_theta - grad log p|^2 = {sm_err[method][0]:.4f} (relative {sm_err[method][1]:.4f}); "
          f"{1e3 * sec:.1f} ms per step when trained")
plot.curves({m: h["train_loss"] for m, h in sm_hist.items()}, title="score-matching objective J per epoch")
plt.show()

# %% [markdown]
# All the curves approach the same floor: at the true score, $J = \mathbb{E}[\operatorname{tr} \nabla^2 \log p
# + \tfrac12 \|\nabla \log p\|^2] = -\tfrac12 \mathbb{E}\|\nabla \log p\|^2$ (integration by parts once more),
# which is $-1$ for unit-variance modes in 2-D. The sliced curves are noisier: each step sees one random
# projection per point.
#
# In 2-D the exact trace costs two backward passes against one, so the three run at similar speed. Given the
# same steps, exact score matching ends with the smallest error (its gradient carries no projection noise),
# Rademacher projections next, Gaussian ones last; compare SSM-VR with the plain Gaussian run in the printed
# errors: the two differ only in the variance of the second term. The real difference between exact and sliced
# score matching is in how the cost grows with $D$. Below, one loss evaluation plus its
# backward pass for an MLP on $D$-dimensional inputs (batch 128): exact score matching grows linearly with $D$,
# the sliced loss does not.

# %%
def time_loss(loss_fn, dim, repeats=3):
    torch.manual_seed(0)
    net = ScoreNet(dim=dim, hidden=256, scale=1.0).to(device)
    x = torch.randn(128, dim, device=device)
    loss_fn(net, x).backward()                                            # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        loss_fn(net, x).backward()
    return (time.perf_counter() - start) / repeats


DIMS = budget(smoke=[2, 8, 32], standard=[2, 8, 32, 128, 256], full=[2, 8, 32, 128, 256, 512])
cost = {"exact": [time_loss(exact_sm_loss, d) for d in DIMS],
        "sliced": [time_loss(lambda s, x: sliced_loss(s, x, rademacher_like(x)), d) for d in DIMS]}
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, t in cost.items():
    ax.loglog(DIMS, [1e3 * v for v in t], marker="o", label=name)
ax.set_xlabel("dimension D")
ax.set_ylabel("ms per loss + backward")
ax.legend()
ax.set_title("cost of the score-matching loss")
plt.show()
cost_ratio = cost["exact"][-1] / cost["sliced"][-1]
print(f"D = {DIMS[-1]}: exact / sliced time = {cost_ratio:.1f}")

# %% [markdown]
# And the variance of the two projections, measured on the trained exact model at data points: for each $x$,
# the per-projection estimates $v^\top \nabla s\, v$ of the trace, Gaussian against Rademacher.

# %%
def trace_estimates(score, x, v):
    x = x.detach().requires_grad_(True)
    vJ = torch.autograd.grad((score(x) * v).sum(), x)[0]
    return (vJ * v).sum(1).detach()                                        # (B,)


x_var = data[:2000]
est = {"gaussian": trace_estimates(sm["exact"], x_var, torch.randn_like(x_var)),
       "rademacher": trace_estimates(sm["exact"], x_var, rademacher_like(x_var))}
x_req = x_var.detach().requires_grad_(True)
s_req = sm["exact"](x_req)
true_trace = sum(torch.autograd.grad(s_req[:, i].sum(), x_req, retain_graph=True)[0][:, i] for i in range(2)).detach()
trace_var = {k: ((v - true_trace) ** 2).mean().item() for k, v in est.items()}
print(f"mean trace of the Jacobian at the data: {true_trace.mean():.3f}; variance of one-projection estimates: "
      + ", ".join(f"{k} {v:.4f}" for k, v in trace_var.items()))

# %% [markdown]
# Near a mode the Jacobian of the score is close to $-I$: all diagonal, no off-diagonal mass. The Rademacher
# estimate is then almost exact (variance near 0), while the Gaussian one keeps a variance near $2\|A\|_F^2
# \approx 4$.
#
# ## 5. Langevin dynamics with a learned score
#
# Langevin dynamics needs only a score. In lecture 11's convention, with step size $\eta$ (`step` in code),
#
# $$x_{t+1} = x_t + \eta\, s_\theta(x_t) + \sqrt{2\eta}\, \xi_t, \qquad \xi_t \sim \mathcal{N}(0, I),$$
#
# and for small $\eta$ and many steps its samples follow the density whose score is $s_\theta$. With the DSM model
# at $\sigma = 0.5$ that is $p_\sigma$. Lecture 11's stability limit applies: on a Gaussian of variance $v$ the step
# must stay below $2v$, so here, with modes of variance $1 + \sigma^2 = 1.25$, any $\eta$ up to about 2.5 would be
# stable; we take $\eta = 0.05$, small enough for a small bias. The chains start uniformly in the square
# $[-8, 8]^2$, as in lecture 13.

# %%
@torch.no_grad()
def langevin(score, x0, step, n_steps, seed=0, keep_every=None):
    """Unadjusted Langevin dynamics x + step * score(x) + sqrt(2 step) * xi from x0 (N, D); returns the final states
    (and every keep_every-th state)."""
    g = torch.Generator(x0.device).manual_seed(seed)           # the noise is drawn where the chains live
    x, path = x0.clone(), []
    for t in progress(range(n_steps), "Langevin steps"):
        xi = torch.randn(x.shape, generator=g, device=x.device)
        x = x + step * score(x) + math.sqrt(2 * step) * xi
        if keep_every and (t + 1) % keep_every == 0:
            path.append(x.cpu())
    return (x, path) if keep_every else x


STEP = 0.05
x0 = (16 * torch.rand(N_CHAINS, 2, generator=torch.Generator().manual_seed(4)) - 8).to(device)   # U([-8, 8]^2)
x_learned = langevin(dsm[SIGMA], x0, STEP, LANGEVIN_STEPS)
x_true = target.sample(N_CHAINS, sigma=SIGMA, generator=torch.Generator().manual_seed(5))
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
plot.scatter_2d(x0.cpu(), ax=axes[0], lim=LIM, title="start: uniform on [-8, 8]^2")
plot.scatter_2d(x_learned.cpu(), ax=axes[1], lim=LIM, title=f"Langevin, learned score, {LANGEVIN_STEPS} steps")
plot.scatter_2d(x_true.cpu(), ax=axes[2], lim=LIM, title=f"i.i.d. samples of p_sigma, sigma = {SIGMA}")
plt.show()

# %% [markdown]
# Within each mode the samples look right. Count them, though: the right panel has 80% of its points in the
# upper mode; the middle one does not. That is the third failure below. First the other two.
#
# ## 6. Three failures
#
# ### Failure 1: data on a low-dimensional manifold
#
# The score is a derivative of a density with respect to the *ambient* space. Data on a curve in 2-D have no
# density in 2-D, so there is no score to match, and score matching has no minimizer: its objective is
# **unbounded below**. An example in closed form: for points on the circle $|x| = r$, the field
# $s_a(x) = -a\,(|x| - r)\, x/|x|$ points to the circle, vanishes on it ($\tfrac12\|s_a\|^2 = 0$ there) and has
# divergence $-a\,(2|x| - r)/|x| = -a$ on the circle. So $J(s_a) = -a \to -\infty$ as $a \to \infty$: the
# objective rewards ever stronger pull onto the curve. Below, sliced score matching on points exactly on a
# circle of radius 2, and on the same points with a little noise ($\sigma = 0.1$, a proper 2-D density).

# %%
def circle(n, noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=g)
    x = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return (x + noise * torch.randn(n, 2, generator=g)).to(device)        # (n, 2)


def train_sliced(model, x, steps, batch=256, lr=2e-3, seed=0):
    """Plain SSM loop with Rademacher projections; returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in progress(range(steps), "training steps"):
        xb = x[torch.randint(len(x), (batch,), generator=g).to(x.device)]   # x lives on the device; so does the index
        loss = sliced_loss(model, xb, rademacher_like(xb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"loss": losses}


manifold, manifold_hist = {}, {}
for name, noise in (("on the circle", 0.0), ("circle + noise 0.1", 0.1)):
    torch.manual_seed(0)
    manifold[name] = ScoreMatching("rademacher", scale=2.0).to(device)
    key = "manifold_exact" if noise == 0 else "manifold_noisy"
    manifold_hist[name] = train_or_load(manifold[name], LECTURE, key,
                                        lambda m=manifold[name], n=noise: train_sliced(m, circle(N_DATA, n), MANIFOLD_STEPS))
    print(f"{name:20s}: sliced SM loss over the last 100 steps {sum(manifold_hist[name]['loss'][-100:]) / 100:10.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for name, h in manifold_hist.items():
    axes[0].plot(h["loss"], label=name, lw=0.8)
axes[0].set_yscale("symlog")
axes[0].set_xlabel("step")
axes[0].set_ylabel("sliced score-matching loss")
axes[0].legend()
for ax, (name, model) in zip(axes[1:], manifold.items(), strict=True):
    plot.scatter_2d(circle(500, 0.0 if "on" in name else 0.1).cpu(), ax=ax, lim=3.5, s=2)
    quiver(ax, model, lim=3.5, n=15, color="k")
    with torch.no_grad():
        norm = model(circle(2000, 0.0, seed=9)).norm(dim=1).mean().item()
    ax.set_title(f"{name}\nmean |s| on the circle: {norm:.1f}")
plt.show()
manifold_loss = {k: sum(h["loss"][-100:]) / 100 for k, h in manifold_hist.items()}

# %% [markdown]
# On the circle the loss keeps falling as long as we train (the curve is on a symmetric-log axis), and the field
# grows into a steep trough around the curve; with a little noise the loss levels off at a finite value. DSM
# avoids the divergence by matching the score of $p_\sigma$, which is a proper density for any $\sigma > 0$, but
# near a manifold that score has size $\sim 1/\sigma$ across it: small $\sigma$ means a huge, stiff field, and
# Langevin needs a step $\eta \lesssim \sigma^2$ to follow it (the stability limit $\eta < 2\sigma^2$ of lecture 11,
# across the manifold), far too small to travel along it.
#
# ### Failure 2: inaccurate scores in low-density regions
#
# Every objective of this lecture is an expectation under the data: $\mathbb{E}_{p_\sigma}\|s_\theta - \nabla
# \log p_\sigma\|^2$. Where $p_\sigma$ is tiny, errors cost nothing, so nothing makes them small. Between the
# two modes and in the corners of the square, where Langevin chains *start*, the learned field is whatever the
# network extrapolates. Below, the error map of the $\sigma = 0.5$ model, and the error averaged in bins of
# the log-density.

# %%
GRID_N = budget(smoke=80, standard=160, full=200)
pts, _ = plot.grid_2d(8.0, GRID_N)
pts = pts.to(device)                                                              # (GRID_N^2, 2) in [-8, 8]^2


@torch.no_grad()
def error_map(sigma):
    """|s_theta - grad log p_sigma|^2 and log p_sigma on the grid of [-8, 8]^2."""
    return ((dsm[sigma](pts) - target.score(pts, sigma)) ** 2).sum(1), target.log_prob(pts, sigma)


err_grid, logp_grid = error_map(SIGMA)
uniform_error = {s: error_map(s)[0].mean().item() for s in SIGMAS}            # uniform over the square
bins = torch.tensor([-300.0, -50, -20, -10, -6, -4, -3])
which = torch.bucketize(logp_grid.cpu(), bins)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
im = axes[0].imshow(err_grid.clamp_min(1e-4).log10().cpu().reshape(GRID_N, GRID_N), origin="lower",
                    extent=(-8, 8, -8, 8), cmap="magma")
axes[0].contour(*[c.cpu().reshape(GRID_N, GRID_N) for c in (pts[:, 0], pts[:, 1], logp_grid)], levels=[-20, -6, -3],
                colors="w", linewidths=0.7)
fig.colorbar(im, ax=axes[0], label="log10 squared error")
axes[0].set_title(f"squared score error, sigma = {SIGMA}\n(contours: log p_sigma = -20, -6, -3)")
centers = [f"({bins[i - 1]:.0f}, {bins[i]:.0f}]" for i in range(1, len(bins))] + [f"> {bins[-1]:.0f}"]
per_bin = [err_grid.cpu()[which == i].mean().item() if (which == i).any() else float("nan") for i in range(1, len(bins) + 1)]
axes[1].bar(range(len(per_bin)), per_bin)
axes[1].set_yscale("log")
axes[1].set_xticks(range(len(per_bin)), centers, rotation=30)
axes[1].set_xlabel("log p_sigma(x) bin")
axes[1].set_ylabel("mean squared score error")
plt.show()
print(f"sigma = {SIGMA}: error weighted by p_sigma {dsm_score_error:.4f}; uniform over [-8, 8]^2 "
      f"{uniform_error[SIGMA]:.3f}")

# %% [markdown]
# The error is small where the data are and grows by orders of magnitude away from them. Larger $\sigma$ spreads
# the perturbed data over more of the square, so the region the loss sees grows — at the price of learning the
# score of a blurrier density:

# %%
for s in SIGMAS:
    print(f"sigma = {s:4}: error weighted by p_sigma {err_dsm[s][0]:8.4f}   uniform over the square {uniform_error[s]:8.3f}")

# %% [markdown]
# ### The widget: noise level, perturbed density, learned field
#
# Pick $\sigma$: the heat map is the analytic $p_\sigma$, the white arrows the learned score $s_\theta$ (trained at
# that $\sigma$), the red ones the exact score $\nabla \log p_\sigma$; the right panel is the squared error. Watch
# the arrows disagree wherever the heat map is dark, and the dark region shrink as $\sigma$ grows. Everything is
# precomputed; the slider only selects.

# %%
maps = {s: error_map(s) for s in SIGMAS}


def show_sigma(sigma=SIGMA):
    err, logp = maps[sigma]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].imshow(logp.exp().cpu().reshape(GRID_N, GRID_N), origin="lower", extent=(-8, 8, -8, 8), cmap="viridis")
    quiver(axes[0], lambda v: target.score(v, sigma), lim=8, n=15, color="tab:red")
    quiver(axes[0], dsm[sigma], lim=8, n=15, color="white")
    axes[0].set_title(f"p_sigma, learned (white) and exact (red) score, sigma = {sigma}")
    axes[1].imshow(err.clamp_min(1e-4).log10().cpu().reshape(GRID_N, GRID_N), origin="lower", extent=(-8, 8, -8, 8),
                   cmap="magma", vmin=-4, vmax=3)
    axes[1].set_title(f"log10 squared error; p_sigma-weighted mean {err_dsm[sigma][0]:.3f}")
    plt.show()


widgets.interactive_plot(show_sigma, sigma=SIGMAS)

# %% [markdown]
# ### Failure 3: wrong mode weights
#
# Inside the basin of mode $k$ the responsibility $r_k(x)$ is 1, and the score is $-(x - \mu_k)/s_k^2$: the
# weight $w_k$ has vanished. So a Langevin chain *inside* a basin cannot know how heavy the mode is; only
# crossings between basins could set the proportions, and crossing a valley about 25 nats deep (the
# log-density at the midpoint $(0, 0)$ is about $-27$ against $-2$ at the modes) takes practically forever.
# Chains started uniformly in the square therefore stay in the mode whose basin they start in: about half
# in each, whatever the weights. The number, for plain Langevin with the exact score and with the learned score:
#
# $$\text{mode-weight error} = \Big|\tfrac{1}{N}\#\{\text{samples closer to } (5, 5) \text{ than to } (-5,
# -5)\} - 0.8\Big| .$$

# %%
def heavy_fraction(x):
    """Fraction of points closer to (5, 5) than to (-5, -5)."""
    d = ((x[:, None, :] - target.means[None]) ** 2).sum(-1)                           # (N, 2)
    return (d[:, 1] < d[:, 0]).float().mean().item()


x_exact, path_exact = langevin(target.score, x0, STEP, LANGEVIN_STEPS, keep_every=max(1, LANGEVIN_STEPS // 50))
_, path_learned = langevin(dsm[SIGMA], x0, STEP, LANGEVIN_STEPS, keep_every=max(1, LANGEVIN_STEPS // 50))
frac = {"exact score": heavy_fraction(x_exact), f"learned score (sigma = {SIGMA})": heavy_fraction(x_learned),
        "i.i.d. samples of p": heavy_fraction(target.sample(N_CHAINS, generator=torch.Generator().manual_seed(6)))}
mode_weight_error = {k: abs(v - 0.8) for k, v in frac.items()}
for k, v in frac.items():
    print(f"{k:28s} fraction near (5, 5) = {v:.3f}   mode-weight error = {mode_weight_error[k]:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
steps = [(i + 1) * max(1, LANGEVIN_STEPS // 50) for i in range(len(path_exact))]
for name, path in (("exact score", path_exact), ("learned score", path_learned)):
    axes[0].plot(steps, [heavy_fraction(p.to(device)) for p in path], label=name)
axes[0].axhline(0.8, color="k", ls="--", label="true weight 0.8")
axes[0].set_ylim(0, 1)
axes[0].set_xlabel("Langevin step")
axes[0].set_ylabel("fraction closer to (5, 5)")
axes[0].legend()
axes[0].set_title("the proportions never move")
plot.scatter_2d(x_exact.cpu(), ax=axes[1], lim=LIM, s=1)
axes[1].set_title(f"exact-score Langevin: {100 * frac['exact score']:.0f}% in the heavy mode (should be 80%)")
plt.show()

# %% [markdown]
# The fraction is set in the first few dozen steps, when each chain slides into the basin it started in, and then
# stays. With the exact score the split is a little above one half, because the basin boundary sits slightly on
# the light mode's side of the diagonal. With the learned score the split is different again: where the boundary
# lies is decided by the field *between* the modes, exactly where failure 2 says the learned score is wrong. A
# longer chain would not help, nor would a perfect score: the exact one fails as badly as the learned one.
#
# What helps is noise large enough to connect the basins. With the exact score of $p_\sigma$ at $\sigma = 3$
# (the step scaled with the variance, $\eta = 0.05\,(1 + \sigma^2)$), chains cross the valley, and the
# fraction matches that of $p_\sigma$ itself (slightly below 0.8, since a few points of each blurred mode
# lie across the diagonal):

# %%
SIGMA_BIG = 3.0
x_big = langevin(lambda v: target.score(v, SIGMA_BIG), x0, STEP * (1 + SIGMA_BIG**2), LANGEVIN_STEPS, seed=7)
frac_big = heavy_fraction(x_big)
frac_big_iid = heavy_fraction(target.sample(N_CHAINS, sigma=SIGMA_BIG, generator=torch.Generator().manual_seed(8)))
print(f"sigma = {SIGMA_BIG}: Langevin fraction near (5, 5) = {frac_big:.3f}; i.i.d. samples of p_sigma: "
      f"{frac_big_iid:.3f}")

# %% [markdown]
# The weights come out right, but the samples are those of $p_\sigma$, each mode blurred to variance
# $1 + \sigma^2 = 10$. Large noise gets the proportions, small noise the detail: lecture 13 anneals from one to
# the other, with one network conditioned on $\sigma$.
#
# ## Results

# %%
wall = time.perf_counter() - T0
record(LECTURE, "dsm_score_error", dsm_score_error, "(1/length)^2 per point", n_data=N_EVAL, wall_time_s=wall,
       note=f"E_p_sigma |s_theta - grad log p_sigma|^2, DSM at sigma = {SIGMA} on 0.2 N((-5,-5), I) + 0.8 N((5,5), I); "
            f"{N_DATA} training points, {EPOCHS} epochs")
record(LECTURE, "dsm_score_rel_error", dsm_score_rel_error, "fraction", n_data=N_EVAL, wall_time_s=wall,
       note="dsm_score_error / E_p_sigma |grad log p_sigma|^2")
record(LECTURE, "dsm_score_error_uniform", uniform_error[SIGMA], "(1/length)^2 per point", n_data=GRID_N**2,
       wall_time_s=wall, note="the same model's squared error averaged uniformly over [-8, 8]^2 (low-density regions)")
for method in ("exact", "gaussian", "rademacher", "gaussian_vr"):
    name = "exact_sm_score_error" if method == "exact" else f"sliced_{method}_score_error"
    record(LECTURE, name, sm_err[method][0], "(1/length)^2 per point", n_data=N_EVAL, wall_time_s=wall,
           note=f"E_p |s_theta - grad log p|^2 on clean data, {SM_EPOCHS} epochs")
record(LECTURE, "sm_exact_vs_sliced_time_ratio", cost_ratio, "ratio", wall_time_s=wall,
       note=f"time of exact / sliced score-matching loss + backward at D = {DIMS[-1]}")
record(LECTURE, "manifold_ssm_final_loss", manifold_loss["on the circle"], "score-matching loss", n_data=N_DATA,
       wall_time_s=wall, note=f"data exactly on a circle (unbounded below); with noise 0.1: "
                              f"{manifold_loss['circle + noise 0.1']:.2f}")
record(LECTURE, "tweedie_excess_mse", denoise_mse["Tweedie, learned score"] - denoise_mse["posterior mean (closed form)"],
       "squared length per point", n_data=N_EVAL, wall_time_s=wall,
       note=f"E|D(x_tilde) - x|^2 of Tweedie with the learned score minus that of the exact posterior mean, "
            f"sigma = {sigma_t}; optimum {denoise_mse['posterior mean (closed form)']:.4f}")
record(LECTURE, "langevin_mode_weight_error", mode_weight_error["exact score"], "fraction", n_data=N_CHAINS,
       wall_time_s=wall, note=f"|fraction closer to (5,5) - 0.8|, plain Langevin with the exact score, step = {STEP}, "
                              f"{LANGEVIN_STEPS} steps, chains from U([-8, 8]^2)")
record(LECTURE, "langevin_mode_weight_error_learned", mode_weight_error[f"learned score (sigma = {SIGMA})"], "fraction",
       n_data=N_CHAINS, wall_time_s=wall, note=f"the same with the DSM score at sigma = {SIGMA}")
print(f"whole notebook: {time.perf_counter() - T0:.0f} s wall, {time.process_time():.0f} s CPU of this kernel, "
      f"in {MODE} mode")

# %% [markdown]
# **Discussion.** Measured in standard mode (numbers of one run on a shared CPU; the times vary with the load):
#
# - *DSM.* At $\sigma = 0.5$ the learned score's error, weighted by $p_\sigma$, is about
#   0.033<!-- r:dsm_score_error --> per point (2<!-- r:dsm_score_rel_error*100 -->% of
#   $\mathbb{E}\|\nabla \log p_\sigma\|^2$); the table printed in section 2 shows it falling as $\sigma$ grows,
#   because larger noise gives smaller, smoother targets. Averaged uniformly over the square $[-8, 8]^2$ instead,
#   the error of the same model is about 5.7<!-- r:dsm_score_error_uniform -->, two orders of magnitude larger:
#   failure 2 in one ratio.
# - *Tweedie.* With the exact score the formula reproduces the closed-form posterior mean to float32 precision. At
#   $\sigma = 2$ the learned denoiser's squared error exceeds the optimum (printed above) by only
#   0.038<!-- r:tweedie_excess_mse -->; doing nothing costs $D\sigma^2 = 8$.
# - *Sliced score matching.* After the same 30 epochs: exact 0.008<!-- r:exact_sm_score_error -->, Rademacher
#   0.019<!-- r:sliced_rademacher_score_error -->, Gaussian 0.029<!-- r:sliced_gaussian_score_error --> (errors
#   against $\nabla \log p$, weighted by $p$). One-projection trace estimates at the data have a variance near the
#   predicted $2\|A\|_F^2 \approx 4$ for Gaussian projections against nearly zero for Rademacher ones (printed
#   above), since the Jacobian there is nearly diagonal. At $D = 256$ the exact loss costs about two orders of
#   magnitude more than the sliced one (the measured ratio is printed above and recorded; it varies with the load).
# - *Manifold.* Sliced score matching on points exactly on a circle reaches a loss of about -8295<!--
#   r:manifold_ssm_final_loss --> after 1500 steps and is still falling; with noise 0.1 it levels off
#   (printed above) near the value theory predicts: at the optimum $J = -\tfrac12 \mathbb{E}\|\nabla \log p\|^2$, and
#   noise of standard deviation 0.1 across the circle gives $\mathbb{E}\|\nabla \log p\|^2 \approx 1/0.1^2 = 100$,
#   so $J \approx -50$.
# - *Mode weights.* Plain Langevin from the uniform square puts about half of the chains in the heavy mode with the
#   exact score (mode-weight error 0.28<!-- r:langevin_mode_weight_error -->) and somewhat more with the learned
#   one (error 0.20<!-- r:langevin_mode_weight_error_learned -->), against 80% for i.i.d. samples (whose error, the
#   Monte Carlo noise, is printed above). The learned score's smaller error is no merit: its basin boundary is
#   placed by the inaccurate field between the modes. With the exact score at $\sigma = 3$ the chains mix and the
#   weights come out right, for the blurred $p_\sigma$. Lecture 13 measures the same error for annealed Langevin.
#
# There is no published number to compare with: the mixture is the course's own. The qualitative results are
# those of Song and Ermon (2019), whose figures show the inaccurate scores in low-density regions and the
# wrong relative weights of Langevin samples on a similar two-mode mixture.
#
# ## Summary
#
# - A score model learns $\nabla_x \log p$ directly: no partition function, no energy. Langevin dynamics turns
#   a score into samples.
# - **Denoising score matching** regresses $s_\theta(x + \sigma z)$ on $-z/\sigma$; its minimizer is the score of
#   the perturbed density $p_\sigma$, analytic for a Gaussian mixture and measured here against the truth.
# - **Tweedie's formula** $\mathbb{E}[x \mid \tilde x] = \tilde x + \sigma^2 \nabla \log p_\sigma(\tilde x)$:
#   the score of the noisy data is the optimal denoiser, and DSM is a denoising autoencoder.
# - **Sliced score matching** replaces the Hessian trace by one Jacobian-vector product per projection; its cost
#   does not grow with $D$, and Rademacher projections have lower variance than Gaussian ones.
# - Plain Langevin with a score fails three ways: on a **manifold** there is no score (the objective is unbounded
#   below); in **low-density regions** the score is not learned; and separated modes keep the **proportions of
#   the starting points**, since the score inside a basin does not see the mode's weight. Large noise cures the
#   last two and makes the first well-posed; lecture 13 uses many noise levels to keep the samples sharp.
#
# ## References
#
# - A. Hyvärinen, *Estimation of Non-Normalized Statistical Models by Score Matching*, JMLR 2005.
#   [jmlr.org/papers/v6/hyvarinen05a](https://jmlr.org/papers/v6/hyvarinen05a.html)
# - P. Vincent, *A Connection Between Score Matching and Denoising Autoencoders*, Neural Computation 2011.
#   [doi:10.1162/NECO_a_00142](https://doi.org/10.1162/NECO_a_00142)
# - Y. Song, S. Garg, J. Shi, S. Ermon, *Sliced Score Matching: A Scalable Approach to Density and Score
#   Estimation*, UAI 2019. [arXiv:1905.07088](https://arxiv.org/abs/1905.07088)
# - Y. Song and S. Ermon, *Generative Modeling by Estimating Gradients of the Data Distribution*, NeurIPS 2019
#   (the three failures, and their fix with many noise levels). [arXiv:1907.05600](https://arxiv.org/abs/1907.05600)
# - B. Efron, *Tweedie's Formula and Selection Bias*, JASA 2011. [doi:10.1198/jasa.2011.tm11181](https://doi.org/10.1198/jasa.2011.tm11181)
# - H. Robbins, *An Empirical Bayes Approach to Statistics*, Berkeley Symposium 1956 (the formula, credited to
#   Tweedie).
# - M. F. Hutchinson, *A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian Smoothing
#   Splines*, 1990. [doi:10.1080/03610919008812866](https://doi.org/10.1080/03610919008812866)
# - G. O. Roberts and R. L. Tweedie, *Exponential Convergence of Langevin Distributions and Their Discrete
#   Approximations*, Bernoulli 1996. [doi:10.2307/3318418](https://doi.org/10.2307/3318418)
