# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 15 — Diffusion models
#
# Lectures 12 and 13 learned the **score** $\nabla_x \log p_\sigma(x)$ of data blurred by Gaussian noise at many
# scales, and sampled with annealed Langevin dynamics. Diffusion models (Sohl-Dickstein et al., 2015; Ho et al.,
# 2020) reach the same kind of model from the other side: a **latent variable model** whose latents are ever
# noisier copies of the data, trained with the ELBO of lecture 05. The two views meet in one line of algebra, and
# the result is the model family behind most of today's image generators.
#
# **Learning goals**
# 1. Write the **forward process** $q(x_t \mid x_{t-1})$ and its closed form $q(x_t \mid x_0)$ with
#    $\bar\alpha_t$; check it by simulation; compare the linear and cosine **noise schedules**.
# 2. See diffusion as a **hierarchical VAE** with a fixed encoder; derive its ELBO from the posterior
#    $q(x_{t-1} \mid x_t, x_0)$, and compute it on 2-D data with a known density.
# 3. Show that **$\varepsilon$-prediction is denoising score matching**, and check the learned score against
#    the exact one.
# 4. Write the **training step** (a random step and noise per example, a weighted noise-prediction error) and
#    train a class-conditional **U-Net** (time embedding, label dropout) on MNIST with it; sample it by
#    **ancestral sampling** (DDPM) and by deterministic **DDIM** with few steps, and see DDIM as Euler's method on
#    the probability-flow ODE; measure quality (FID with the course classifier, under lecture 14's protocol)
#    against the number of steps, and the time each takes.
# 5. Use **classifier-free guidance** $\hat\varepsilon = w\,(\hat\varepsilon_c - \hat\varepsilon_u) + \hat\varepsilon_u$
#    and measure how class accuracy and FID move with $w$.
#
# **Builds on** lecture 05 (ELBO, hierarchical VAEs), lecture 12 (denoising score matching, Tweedie's formula),
# lecture 13 (noise-conditional score networks, the SDE view) and lecture 14 (FID with the course classifier).

# %%
import math
import time

import ipywidgets
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
    toy,
    train_or_load,
    widgets,
)
from dgm_course.exercises import lecture15

device, MODE = setup(seed=0)
LECTURE = "15_diffusion_models"
T0 = time.perf_counter()

# %% [markdown]
# ## 1. The forward process
#
# Fix a number of steps $T$ and a **noise schedule** $0 < \beta_1 < \dots < \beta_T < 1$. The forward process
# adds a little Gaussian noise at every step and shrinks the signal so that the variance stays bounded:
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\big(x_t;\ \sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\big),
# \qquad q(x_{1:T} \mid x_0) = \prod_{t=1}^T q(x_t \mid x_{t-1}).$$
#
# With $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \prod_{s=1}^t \alpha_s$, a sum of independent Gaussians is
# Gaussian, and unrolling the recursion gives the **closed form**
#
# $$q(x_t \mid x_0) = \mathcal N\big(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t) I\big),
# \qquad\text{i.e.}\quad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\quad
# \varepsilon \sim \mathcal N(0, I).$$
#
# (Induction: if $x_{t-1} = \sqrt{\bar\alpha_{t-1}} x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\varepsilon'$, then
# $x_t = \sqrt{\alpha_t}x_{t-1} + \sqrt{\beta_t}\,\varepsilon''$ has mean $\sqrt{\bar\alpha_t}x_0$ and variance
# $\alpha_t(1-\bar\alpha_{t-1}) + \beta_t = 1 - \bar\alpha_t$.) Any $x_t$ can be drawn in one shot, which is what
# makes training cheap. When $\bar\alpha_T \approx 0$, $x_T$ is almost exactly $\mathcal N(0, I)$ whatever $x_0$ was.
#
# **Indexing.** Every schedule below is a tensor `beta` of shape $(T+1,)$ with `beta[0] = 0`, so that index $t$
# *is* step $t$ of the equations and `alpha_bar[0]` $= \bar\alpha_0 = 1$ ($x_0$ is the data).
#
# Two schedules:
# - **linear** (Ho et al., 2020): $\beta_t$ from $10^{-4}$ to $0.02$ over $T = 1000$ steps; for another $T$
#   both ends are multiplied by $1000/T$ so that $\bar\alpha_T$ stays near 0.
# - **cosine** (Nichol & Dhariwal, 2021): $\bar\alpha_t = f(t)/f(0)$ with
#   $f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\frac{\pi}{2}\big)$, $s = 0.008$, and $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$
#   clipped at 0.999. It destroys information more evenly over the steps.
#
# Schedules are computed in float64 on the CPU (MPS has no float64) and moved to the device as float32 later.

# %%
def linear_beta(T):
    """Ho et al. (2020): beta_t linear from 1e-4 to 0.02 at T = 1000, both ends scaled by 1000 / T; (T+1,) float64."""
    beta = torch.linspace(1e-4, 0.02, T, dtype=torch.float64) * (1000 / T)
    return torch.cat([beta.new_zeros(1), beta])                          # beta[0] = 0


def cosine_beta(T, s=0.008):
    """Nichol & Dhariwal (2021): alpha_bar_t = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) pi/2); (T+1,) float64."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    beta = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cat([beta.new_zeros(1), beta])


def alpha_bar_of(beta):
    return torch.cumprod(1 - beta, dim=0)                                # (T+1,), alpha_bar[0] = 1


# %%
T_PLOT = 1000
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for name, beta in (("linear", linear_beta(T_PLOT)), ("cosine", cosine_beta(T_PLOT))):
    ab = alpha_bar_of(beta)
    axes[0].plot(ab, label=name)
    axes[1].plot((ab / (1 - ab))[1:].log10(), label=name)
axes[0].set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"signal kept: $\bar\alpha_t$ (T = 1000)")
axes[1].set(xlabel="t", ylabel=r"$\log_{10}$ SNR", title=r"signal-to-noise $\bar\alpha_t / (1 - \bar\alpha_t)$")
for ax in axes:
    ax.legend()
plt.tight_layout()

# %% [markdown]
# The linear schedule drives $\bar\alpha_t$ to almost 0 by $t \approx 600$: the last third of its steps add
# noise to what is already noise. The cosine schedule's signal-to-noise ratio falls at a steady rate on the log
# scale, so every step does some work; that matters most when $T$ is small, as it will be here.
#
# ### Exercise 1: sampling $q(x_t \mid x_0)$
# Write `q_sample(x0, t, eps, alpha_bar)` returning $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$.
# `x0` and `eps` have shape $(B, \dots)$ (vectors or images), `t` is an int64 tensor $(B,)$ with a different
# step for each example, `alpha_bar` is $(T+1,)$. Return a new tensor (leave `x0` and `eps` as they are: the
# lecture uses them again). The check tests exact values on vectors and images, then runs the chain
# $q(x_t \mid x_{t-1})$ step by step and compares moments.

# %% tags=["solution:ex1_q_sample"]
def q_sample(x0, t, eps, alpha_bar):
    """x_t ~ q(x_t | x_0) with the given noise: x0, eps (B, ...); t (B,) int64; alpha_bar (T+1,)."""
    ### BEGIN SOLUTION
    ab = alpha_bar[t].reshape(-1, *[1] * (x0.ndim - 1))                  # (B, 1, ...)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    ### END SOLUTION


# %% tags=["check:ex1_q_sample"]
lecture15.check_q_sample(q_sample)

# %% [markdown]
# The closed form, checked by simulation on 2-D data: run the chain one step at a time on 8 Gaussians arranged on
# a ring (`toy.toy_2d("8gaussians")`, each of standard deviation 0.14) and compare it with one-shot draws of
# $q(x_t \mid x_0)$ from the same starting points. The moments must agree, and they must be
# $\sqrt{\bar\alpha_t}\,\mathbb E[x_0]$ and $\bar\alpha_t \operatorname{Var}[x_0] + 1 - \bar\alpha_t$ per coordinate.

# %%
T_TOY = 100
beta_toy = linear_beta(T_TOY)
alpha_bar_toy = alpha_bar_of(beta_toy)
x0_ring = toy.toy_2d("8gaussians", 5000, seed=3).double()               # (N, 2)
gen = torch.Generator().manual_seed(0)
chain, shown = x0_ring.clone(), {}
for t in range(1, T_TOY + 1):
    chain = (1 - beta_toy[t]).sqrt() * chain + beta_toy[t].sqrt() * torch.randn(chain.shape, generator=gen, dtype=torch.float64)
    if t in (5, 20, 50, 100):
        tt = torch.full((len(x0_ring),), t)
        shown[t] = (chain.clone(), q_sample(x0_ring, tt, torch.randn(x0_ring.shape, generator=gen, dtype=torch.float64),
                                            alpha_bar_toy))
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for col, (t, (by_chain, closed)) in enumerate(shown.items()):
    ab = alpha_bar_toy[t]
    var_pred = ab * x0_ring.var(0) + 1 - ab
    print(f"t = {t:3d}: var by chain {by_chain.var(0).numpy().round(3)}, closed form {closed.var(0).numpy().round(3)}, "
          f"predicted {var_pred.numpy().round(3)}")
    plot.scatter_2d(by_chain[:2000], ax=axes[0, col], lim=3.5, title=f"chain, t = {t}")
    plot.scatter_2d(closed[:2000], ax=axes[1, col], lim=3.5, title=f"closed form, t = {t}", color="C1")
plt.tight_layout()

# %% [markdown]
# The same forward process on a digit (scaled to $[-1, 1]$), with $T = 200$ steps of each schedule and the same
# noise draw: the linear schedule has all but erased the digit by mid-way; under the cosine one it stays visible
# much longer.

# %%
digit = mnist.to_unit(mnist.load_mnist("test", n=1)[0]).double() * 2 - 1   # (1, 1, 28, 28) in [-1, 1]
shown_t = torch.linspace(0, 200, 9).long()
noise = torch.randn(len(shown_t), 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
for ax, (name, beta) in zip(axes, (("linear", linear_beta(200)), ("cosine", cosine_beta(200))), strict=True):
    x_t = q_sample(digit.expand(len(shown_t), -1, -1, -1), shown_t, noise, alpha_bar_of(beta))
    plot.image_grid(((x_t + 1) / 2).clamp(0, 1), nrow=len(shown_t), ax=ax,
                    title=f"{name}: t = " + ", ".join(str(t) for t in shown_t.tolist()))
plt.tight_layout()

# %% [markdown]
# ## 2. The reverse process, and diffusion as a hierarchical VAE
#
# To generate, run the chain backwards: start from $x_T \sim \mathcal N(0, I)$ and draw
# $x_{t-1} \sim p_\theta(x_{t-1} \mid x_t)$. For small $\beta_t$ the true reverse step $q(x_{t-1} \mid x_t)$ is
# close to Gaussian (Sohl-Dickstein et al., 2015), so the model is
#
# $$p_\theta(x_{0:T}) = p(x_T) \prod_{t=1}^T p_\theta(x_{t-1} \mid x_t), \qquad
# p(x_T) = \mathcal N(0, I), \qquad p_\theta(x_{t-1} \mid x_t) = \mathcal N\big(\mu_\theta(x_t, t),\ \sigma_t^2 I\big).$$
#
# This is a **hierarchical VAE** (lecture 05) with $T$ layers of latents $x_1, \dots, x_T$, each as big as the
# data, whose *encoder* $q(x_{1:T} \mid x_0)$ is fixed, with no parameters. Its ELBO,
# $\log p_\theta(x_0) \ge \mathbb E_q[\log p_\theta(x_{0:T}) - \log q(x_{1:T} \mid x_0)]$, regroups (writing
# $q(x_t \mid x_{t-1}) = q(x_t \mid x_{t-1}, x_0)$ with Bayes' rule) into one term per layer:
#
# $$-\text{ELBO} = \underbrace{\mathrm{KL}\big(q(x_T \mid x_0) \,\|\, p(x_T)\big)}_{L_T,\ \text{no parameters}}
# + \sum_{t=2}^{T} \underbrace{\mathbb E_q\, \mathrm{KL}\big(q(x_{t-1} \mid x_t, x_0) \,\|\, p_\theta(x_{t-1} \mid x_t)\big)}_{L_{t-1}}
# \underbrace{-\ \mathbb E_q \log p_\theta(x_0 \mid x_1)}_{L_0} .$$
#
# Every KL is between Gaussians, because the **posterior** of the forward process given $x_0$ is Gaussian:
#
# $$q(x_{t-1} \mid x_t, x_0) = \mathcal N\big(\tilde\mu_t(x_t, x_0),\ \tilde\beta_t I\big),\qquad
# \tilde\mu_t = \underbrace{\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}}_{\texttt{coef1}}\, x_0
#             + \underbrace{\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}}_{\texttt{coef2}}\, x_t,\qquad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# It comes from Bayes' rule, $q(x_{t-1} \mid x_t, x_0) \propto q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)$: a product
# of two Gaussians in $x_{t-1}$, with precisions $\alpha_t/\beta_t$ and $1/(1-\bar\alpha_{t-1})$.
#
# ### Exercise 2: the posterior coefficients
# Write `posterior_coefficients(beta)` returning `(coef1, coef2, var)`, each of shape $(T+1,)$, where entry $t$
# (for $t = 1, \dots, T$) holds the coefficient of $x_0$, the coefficient of $x_t$, and the variance
# $\tilde\beta_t$ above. Entry 0 is never used (put 0 there). Work on `beta` as given (float64). The check compares
# with Bayes' rule, and tests that one posterior step after $x_t \sim q(x_t \mid x_0)$ lands on
# $q(x_{t-1} \mid x_0)$.

# %% tags=["solution:ex2_posterior"]
def posterior_coefficients(beta):
    """(coef1, coef2, var), each (T+1,): q(x_{t-1} | x_t, x_0) = N(coef1[t] x_0 + coef2[t] x_t, var[t] I), t >= 1."""
    ### BEGIN SOLUTION
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    alpha_bar_prev = alpha_bar[:-1]                                      # alpha_bar_{t-1} for t = 1..T
    coef1, coef2, var = (torch.zeros_like(beta) for _ in range(3))
    coef1[1:] = alpha_bar_prev.sqrt() * beta[1:] / (1 - alpha_bar[1:])
    coef2[1:] = alpha[1:].sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar[1:])
    var[1:] = (1 - alpha_bar_prev) / (1 - alpha_bar[1:]) * beta[1:]
    return coef1, coef2, var
    ### END SOLUTION


# %% tags=["check:ex2_posterior"]
lecture15.check_posterior(posterior_coefficients)

# %% [markdown]
# ### From the ELBO to the $\varepsilon$-loss
#
# Choose $\sigma_t^2 = \tilde\beta_t$ (Ho et al. found $\beta_t$ works as well) and let the mean have the form of
# the posterior mean with $x_0$ replaced by a prediction. Since $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}$,
# it is natural to predict the **noise**: a network $\varepsilon_\theta(x_t, t)$ gives
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}},\qquad
# \mu_\theta(x_t, t) = \tilde\mu_t(x_t, \hat x_0) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big).$$
#
# The KL of two Gaussians with the same covariance is the squared distance of the means over twice the variance,
# and here the means differ only through the noise:
#
# $$L_{t-1} = \mathbb E_{x_0, \varepsilon}\Big[\frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}
# \big\|\varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\|^2\Big].$$
#
# Ho et al. drop the weight and sample $t$ uniformly: the **simple loss**
# $L_\text{simple} = \mathbb E_{t, x_0, \varepsilon}\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$. It is still a weighted
# ELBO: it spends less effort on the small-$t$ terms that the true ELBO weighs heavily, which gives better
# samples (and slightly worse likelihoods). Every choice is one member of a family of **weighted** losses, with a
# weight $w_t$ per step and the squared error averaged over the $D$ dimensions of an example:
#
# $$L_w(\theta) = \mathbb E_{t \sim \mathcal U\{1..T\},\ x_0,\ \varepsilon \sim \mathcal N(0, I)}\Big[\,w_t\,
#   \frac1D\big\|\varepsilon - \varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\|^2\Big].$$
#
# $w_t = 1$ is $L_\text{simple}$ (divided by $D$); $w_t = T D\, \beta_t^2/(2\sigma_t^2\alpha_t(1-\bar\alpha_t))$ gives back
# the sum of the $L_{t-1}$; section 4 uses a third weighting. A training step estimates $L_w$ on a batch, with one
# random $t$ and one noise draw per example, and takes a gradient step on that estimate.
#
# ### Exercise 3: the loss of one training step
# Write `ddpm_loss(net, x0, y, alpha_bar, weight, generator=None)`, the estimate of $L_w$ on a batch `x0` of shape
# $(B, \dots)$ (vectors or images; float32 or float64) with class labels `y` $(B,)$ or `None`:
# 1. draw a step $t_b \sim \mathcal U\{1, \dots, T\}$ for each example (an int64 tensor $(B,)$; $T$ is
#    `len(alpha_bar) - 1`) and noise $\varepsilon \sim \mathcal N(0, I)$ of the shape and dtype of `x0`, both from
#    `generator` (a `torch.Generator` on the CPU; `None` means torch's global random state), then moved to `x0`'s device;
# 2. form $x_t = \sqrt{\bar\alpha_{t_b}}\,x_0 + \sqrt{1-\bar\alpha_{t_b}}\,\varepsilon$ for each example (write it out:
#    the check must not depend on Exercise 1);
# 3. predict the noise with **one** call `net(x_t, t, y)` on the whole batch (`y` passed through as given);
# 4. return $\frac1B \sum_b w_{t_b}\, \frac1D \sum_d (\varepsilon_{b,d} - \hat\varepsilon_{b,d})^2$ with `weight` $(T+1,)$,
#    a differentiable scalar tensor, leaving the arguments unchanged.
#
# The check looks only at what your function gives the network and what it returns: the steps must be uniform on
# $1..T$, the noise recovered from $x_t$ must be standard normal and independent of $x_0$, the loss and its gradient
# must match what the network saw, the same generator seed must give the same loss, the loss must have the right
# expectation at the known optimum of a small network on Gaussian data, and 30 Adam steps with it must train that
# network as well as a reference implementation does. The lecture then trains every model of this notebook with it.

# %% tags=["solution:ex3_ddpm_loss"]
def ddpm_loss(net, x0, y, alpha_bar, weight, generator=None):
    """One training step's estimate of L_w: t ~ U{1..T} and eps ~ N(0, I) per example, w_t-weighted MSE; a scalar."""
    ### BEGIN SOLUTION
    B, T = len(x0), len(alpha_bar) - 1
    t = torch.randint(1, T + 1, (B,), generator=generator).to(x0.device)          # (B,) one step per example
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    ab = alpha_bar[t].reshape(-1, *[1] * (x0.ndim - 1))                            # (B, 1, ...)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    squared_error = ((net(x_t, t, y) - eps) ** 2).flatten(1).mean(1)              # (B,) mean over dimensions
    return (weight[t] * squared_error).mean()
    ### END SOLUTION


# %% tags=["check:ex3_ddpm_loss"]
lecture15.check_ddpm_loss(ddpm_loss)

# %% [markdown]
# ## 3. $\varepsilon$-prediction is denoising score matching
#
# The conditional score of the forward process is
#
# $$\nabla_{x_t} \log q(x_t \mid x_0) = -\frac{x_t - \sqrt{\bar\alpha_t}\,x_0}{1-\bar\alpha_t} = -\frac{\varepsilon}{\sqrt{1-\bar\alpha_t}} .$$
#
# So with a score model written as $s_\theta(x_t, t) = -\varepsilon_\theta(x_t, t)/\sqrt{1-\bar\alpha_t}$, the
# **denoising score matching** loss of lecture 12 at noise level $t$ is
#
# $$\mathbb E\big\|s_\theta(x_t, t) - \nabla_{x_t}\log q(x_t \mid x_0)\big\|^2
#   = \frac{1}{1-\bar\alpha_t}\,\mathbb E\big\|\varepsilon_\theta(x_t, t) - \varepsilon\big\|^2 :$$
#
# **the $\varepsilon$-loss is denoising score matching**, with the weight $\lambda_t = 1-\bar\alpha_t$ (the
# variance of the noise: NCSN's $\lambda(\sigma) = \sigma^2$ of lecture 13). Its minimizer is
# $\varepsilon^*(x_t, t) = \mathbb E[\varepsilon \mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla \log q_t(x_t)$, the
# score of the noised *marginal* $q_t$; and the prediction $\hat x_0$ above is exactly **Tweedie's formula**,
# $\mathbb E[x_0 \mid x_t] = \big(x_t + (1-\bar\alpha_t)\nabla\log q_t(x_t)\big)/\sqrt{\bar\alpha_t}$.
#
# We check this on the 2-D ring, where $q_t$ is known exactly: each Gaussian of the mixture, with mean $m_k$ and
# standard deviation $s$, becomes a Gaussian with mean $\sqrt{\bar\alpha_t}\,m_k$ and variance
# $\bar\alpha_t s^2 + 1 - \bar\alpha_t$. First the model: an MLP that reads $x_t$ and a sinusoidal embedding of
# $t$, wrapped in a `Diffusion` module whose `loss` is the $\varepsilon$-loss with $t \sim \mathcal U\{1..T\}$.

# %%
def timestep_embedding(t, dim):
    """Sinusoidal features of integer steps t (B,) -> (B, dim), as for positions in a Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)   # (dim/2,)
    angles = t.float()[:, None] * freqs[None]                            # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class MLPEps(nn.Module):
    """eps_theta(x_t, t) for 2-D data: an MLP on [x_t, embedding(t)]; the label y is ignored."""

    def __init__(self, dim=2, hidden=128, emb=32):
        super().__init__()
        self.emb = emb
        self.net = nn.Sequential(nn.Linear(dim + emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x_t, t, y=None):                                   # (B, 2), (B,) -> (B, 2)
        return self.net(torch.cat([x_t, timestep_embedding(t, self.emb)], dim=1))


# %%
class Diffusion(nn.Module):
    """DDPM (Ho et al., 2020) around a noise network net(x_t, t, y): schedule buffers and the epsilon-loss.

    With `n_classes`, labels are replaced by the null label `n_classes` with probability `p_uncond` during training
    (classifier-free guidance, section 7); net must then accept labels 0..n_classes. `weight` (T+1,) holds the w_t
    of the weighted loss L_w (default 1: L_simple); the loss of a batch is `ddpm_loss` (Exercise 3).
    """

    def __init__(self, net, beta, n_classes=None, p_uncond=0.1, weight=None):
        super().__init__()
        self.net, self.T, self.n_classes, self.p_uncond = net, len(beta) - 1, n_classes, p_uncond
        coef1, coef2, var = posterior_coefficients(beta)
        weight = torch.ones_like(beta) if weight is None else weight
        for name, value in (("beta", beta), ("alpha_bar", alpha_bar_of(beta)), ("posterior_mean_coef1", coef1),
                            ("posterior_mean_coef2", coef2), ("posterior_variance", var), ("weight", weight)):
            self.register_buffer(name, value.float())                    # float64 on the CPU -> float32

    def loss(self, x0, y=None):
        if y is not None and self.n_classes is not None:
            drop = torch.rand(len(y), device=y.device) < self.p_uncond   # label dropout
            y = torch.where(drop, torch.full_like(y, self.n_classes), y)
        return ddpm_loss(self.net, x0, y, self.alpha_bar, self.weight)  # t, eps from the global random state


# %% [markdown]
# Train on the ring with the package's `fit` (it only calls `model.loss(x)`, here `ddpm_loss` with $w_t = 1$):
# $T = 100$ steps of the linear schedule.

# %%
N_TOY = budget(smoke=2000, standard=20000, full=50000)
TOY_EPOCHS = budget(smoke=2, standard=40, full=200)
ring_train = toy.toy_2d("8gaussians", N_TOY, seed=0)
ring_test = toy.toy_2d("8gaussians", 5000, seed=2)
torch.manual_seed(0)
toy_model = Diffusion(MLPEps(), beta_toy).to(device)
toy_history = train_or_load(toy_model, LECTURE, "ddpm_ring_simple", lambda: fit(
    toy_model, ring_train, epochs=TOY_EPOCHS, batch_size=256, lr=2e-3))
print(f"final training loss {toy_history['train_loss'][-1]:.4f} (a model predicting 0 scores 1)")

# %% [markdown]
# The exact score of $q_t$ on the ring, and the learned one, $-\varepsilon_\theta(x_t, t)/\sqrt{1-\bar\alpha_t}$:

# %%
CENTERS, MODE_STD = toy.mode_centers("8gaussians").double(), toy.MODE_STD["8gaussians"]


def ring_log_q(x, t):
    """Exact log q_t(x) of the noised ring: a mixture of Gaussians (mean sqrt(ab) m_k, var ab s^2 + 1 - ab); (M,)."""
    ab = alpha_bar_toy[t]
    var = ab * MODE_STD**2 + 1 - ab
    sq = ((x[:, None, :] - ab.sqrt() * CENTERS[None]) ** 2).sum(-1)     # (M, K)
    return torch.logsumexp(-sq / (2 * var), dim=1) - math.log(len(CENTERS)) - torch.log(2 * math.pi * var)


def exact_score(x, t):
    x = x.double().requires_grad_(True)
    return torch.autograd.grad(ring_log_q(x, t).sum(), x)[0]             # (M, 2)


@torch.no_grad()
def learned_score(x, t):
    tt = torch.full((len(x),), t, device=device)
    eps = toy_model.net(x.float().to(device), tt).double().cpu()
    return -eps / (1 - alpha_bar_toy[t]).sqrt()


# %%
grid = torch.stack(torch.meshgrid(torch.linspace(-3, 3, 17), torch.linspace(-3, 3, 17), indexing="xy"), -1).reshape(-1, 2)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
score_err = {}
for ax, t in zip(axes, (3, 15, 50), strict=True):
    s_true, s_model = exact_score(grid, t), learned_score(grid, t)
    ax.quiver(grid[:, 0], grid[:, 1], s_true[:, 0], s_true[:, 1], color="C0", alpha=0.6, label="exact")
    ax.quiver(grid[:, 0], grid[:, 1], s_model[:, 0], s_model[:, 1], color="C1", alpha=0.6, label="learned")
    pts = q_sample(ring_test.double(), torch.full((len(ring_test),), t), torch.randn(ring_test.shape, dtype=torch.float64),
                   alpha_bar_toy)                                        # where q_t has its mass
    s_true, s_model = exact_score(pts, t), learned_score(pts, t)
    score_err[t] = ((s_model - s_true).norm(dim=1).mean() / s_true.norm(dim=1).mean()).item()
    ax.set(aspect="equal", title=f"t = {t}: relative score error {score_err[t]:.3f}")
axes[0].legend(loc="lower left")
plt.tight_layout()

# %% [markdown]
# The relative error is measured where $q_t$ puts its mass (at points $x_t \sim q_t$). At small $t$ the exact score
# is huge and changes fast between the modes, where there is no data to learn from: the familiar difficulty of
# lecture 12, which is why the loss does not weight those steps up.
#
# ### Ancestral sampling
# Sampling runs the reverse chain: $x_T \sim \mathcal N(0, I)$, then for $t = T, \dots, 1$
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big)
# + \sigma_t z,\qquad z \sim \mathcal N(0, I),\quad \sigma_t^2 = \tilde\beta_t ,$$
#
# with no noise at the last step ($\tilde\beta_1 = 0$ since $\bar\alpha_0 = 1$).
#
# ### Exercise 4: one ancestral sampling step
# Write `ddpm_step(x_t, t, eps_hat, beta, z)` returning $x_{t-1}$ from the equation above, for an int
# $t \in \{1, \dots, T\}$ (the same for the whole batch), the predicted noise `eps_hat`, the schedule `beta`
# $(T+1,)$ and the standard normal draw `z` (all like `x_t`, or `beta` on any device). Write the coefficients
# out (not with Exercise 2), and return a new tensor (the arguments stay unchanged). The check verifies that with
# the *true* noise the step draws exactly from $q(x_{t-1} \mid x_t, x_0)$.

# %% tags=["solution:ex4_ddpm_step"]
def ddpm_step(x_t, t, eps_hat, beta, z):
    """x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps_hat) / sqrt(alpha_t) + sqrt(posterior variance_t) z; t int >= 1."""
    ### BEGIN SOLUTION
    alpha = 1 - beta
    alpha_bar = torch.cumprod(alpha, dim=0)
    mean = (x_t - beta[t] / (1 - alpha_bar[t]).sqrt() * eps_hat) / alpha[t].sqrt()
    var = (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]) * beta[t]          # 0 at t = 1
    return mean + var.sqrt() * z
    ### END SOLUTION


# %% tags=["check:ex4_ddpm_step"]
lecture15.check_ddpm_step(ddpm_step)

# %% [markdown]
# The sampler, a method of `Diffusion`: $T$ calls of the network. They go through `Diffusion.eps`, the noise
# prediction at one step for a whole batch. With labels `y` it also does the **classifier-free guidance** of
# section 7 when the weight `w` is neither 0 (the null label only) nor 1 (the labels as given): one network call on
# a doubled batch (labels and null labels together), combined by `guided_eps` (Exercise 5, written in section 7;
# until then every call has `w = 1`). `clip` optionally clips $\hat x_0$ to the data range (for images in
# $[-1, 1]$) and recomputes the noise from it, so the step uses the posterior mean at the clipped $\hat x_0$.
#
# As in lecture 13, on a CPU the network gets at most `CHUNK` inputs per call: a few small calls are faster than
# one big one whose activations no longer fit in the processor's cache, and the result is the same.

# %%
CHUNK = 128 if device.type == "cpu" else None                           # most inputs per network call (None: all)


def net_in_chunks(net, x, t, y):
    """net(x, t, y) on slices of at most CHUNK rows, concatenated (y may be None)."""
    if CHUNK is None or len(x) <= CHUNK:
        return net(x, t, y)
    return torch.cat([net(x[i:i + CHUNK], t[i:i + CHUNK], None if y is None else y[i:i + CHUNK])
                      for i in range(0, len(x), CHUNK)])


def eps(self, x_t, t, y=None, w=1.0):
    """The (guided) noise prediction at integer step t for the whole batch; y (B,) labels, w the guidance weight."""
    tt = torch.full((len(x_t),), t, device=x_t.device)
    if y is None or w == 1.0:
        return net_in_chunks(self.net, x_t, tt, y)
    null = torch.full_like(y, self.n_classes)
    if w == 0.0:
        return net_in_chunks(self.net, x_t, tt, null)
    eps_c, eps_u = net_in_chunks(self.net, torch.cat([x_t, x_t]), torch.cat([tt, tt]), torch.cat([y, null])).chunk(2)
    return guided_eps(eps_c, eps_u, w)                                   # Exercise 5 (section 7)


@torch.no_grad()
def sample(self, n, shape, y=None, w=1.0, clip=None, generator=None):
    """Ancestral sampling (DDPM): T network calls; returns x_0 (n, *shape)."""
    dev = self.beta.device
    x = torch.randn(n, *shape, generator=generator).to(dev)              # x_T
    for t in progress(range(self.T, 0, -1), f"ancestral sampling, {self.T} steps"):
        eps_hat = self.eps(x, t, y, w)
        if clip is not None:
            ab = self.alpha_bar[t]
            x0_hat = ((x - (1 - ab).sqrt() * eps_hat) / ab.sqrt()).clamp(-clip, clip)
            eps_hat = (x - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
        z = torch.randn(x.shape, generator=generator).to(dev)
        x = ddpm_step(x, t, eps_hat, self.beta, z)
    return x


Diffusion.eps, Diffusion.sample = eps, sample

# %% [markdown]
# Samples, their path, and how many land in each of the 8 modes (the data has equal weights, $1/8$ each; plain
# Langevin dynamics of lecture 12 got these weights wrong, annealing in lecture 13 fixed them).

# %%
N_TOY_SAMPLES = budget(smoke=2000, standard=8000, full=20000)
toy_samples = toy_model.sample(N_TOY_SAMPLES, (2,), generator=torch.Generator().manual_seed(0)).cpu()
nearest = torch.cdist(toy_samples.double(), CENTERS).argmin(1)
weights = torch.bincount(nearest, minlength=8).double() / len(toy_samples)
mode_weight_error = (weights - 1 / 8).abs().max().item()
within = (torch.cdist(toy_samples.double(), CENTERS).min(1).values < 3 * MODE_STD).double().mean().item()
mc_sd = (1 / 8 * 7 / 8 / len(toy_samples)) ** 0.5                      # sd of one weight from this many exact draws
print("mode weights", weights.numpy().round(3), f"max |w - 1/8| = {mode_weight_error:.3f} "
      f"(Monte-Carlo sd of one weight {mc_sd:.4f}); {within:.1%} of samples within 3 sd of a mode")

fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
gen = torch.Generator().manual_seed(1)
x = torch.randn(2000, 2, generator=gen).to(device)
with torch.no_grad():
    for t in range(T_TOY, 0, -1):
        if t in (100, 50, 20, 5):
            plot.scatter_2d(x.cpu(), ax=axes[[100, 50, 20, 5].index(t)], lim=3.5, title=f"x_t, t = {t}", color="C1")
        x = ddpm_step(x, t, toy_model.eps(x, t), toy_model.beta, torch.randn(x.shape, generator=gen).to(device))
plot.scatter_2d(x.cpu(), ax=axes[4], lim=3.5, title="x_0: samples", color="C1")
plt.tight_layout()

# %% [markdown]
# ### The ELBO, term by term
#
# The diffusion model is a latent variable model, so it has an ELBO, computed from the decomposition above with one
# draw of $x_t$ per test point and per $t$: $L_T$ in closed form, $L_{t-1}$ as the KL of two Gaussians with
# variance $\tilde\beta_t$, and the decoder $p_\theta(x_0 \mid x_1) = \mathcal N(\mu_\theta(x_1, 1), \beta_1 I)$
# (the posterior variance $\tilde\beta_1 = 0$ cannot serve as a density). On the ring we can compare with the
# truth: no model can beat the data's own average log-density $\mathbb E_{p}[\log p(x)]$ (that would make
# $\mathrm{KL}(p_\text{data}\,\|\,p_\theta)$ negative), and the ELBO is below the model's log-likelihood.

# %%
@torch.no_grad()
def elbo_terms(model, x0, generator):
    """Per-point terms of -ELBO (nats): returns (L_T (N,), L_{t-1} for t = 2..T (T-1, N), L_0 (N,))."""
    x0 = x0.to(device)
    T = model.T
    ab, beta, c1, c2, var = (getattr(model, k) for k in ("alpha_bar", "beta", "posterior_mean_coef1",
                                                          "posterior_mean_coef2", "posterior_variance"))
    L_T = 0.5 * ((1 - ab[T]) + ab[T] * x0**2 - 1 - torch.log(1 - ab[T])).sum(1)   # KL(q(x_T|x_0) || N(0, I))
    L_mid = []
    for t in range(1, T + 1):
        eps = torch.randn(x0.shape, generator=generator).to(device)
        x_t = q_sample(x0, torch.full((len(x0),), t, device=device), eps, ab)
        eps_hat = model.eps(x_t, t)
        x0_hat = (x_t - (1 - ab[t]).sqrt() * eps_hat) / ab[t].sqrt()
        mu_theta = c1[t] * x0_hat + c2[t] * x_t
        if t == 1:                                                       # decoder N(mu_theta, beta_1 I)
            L_0 = 0.5 * (((x0 - mu_theta) ** 2) / beta[1] + torch.log(2 * math.pi * beta[1])).sum(1)
        else:
            L_mid.append((((c1[t] * x0 + c2[t] * x_t) - mu_theta) ** 2).sum(1) / (2 * var[t]))
    return L_T.cpu(), torch.stack(L_mid).cpu(), L_0.cpu()


L_T, L_mid, L_0 = elbo_terms(toy_model, ring_test, torch.Generator().manual_seed(5))
toy_elbo = -(L_T + L_mid.sum(0) + L_0).mean().item()
data_log_density = ring_log_q(ring_test.double(), 0).mean().item()       # q_0 is the data density
print(f"ELBO {toy_elbo:.3f} nats per point  <=  E[log p_data] = {data_log_density:.3f} "
      f"(gap {data_log_density - toy_elbo:.3f} = KL(p_data || p_theta) + the bound's own gap)")
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(range(2, T_TOY + 1), L_mid.mean(1).clamp(min=1e-6), label=r"$L_{t-1}$, t = 2..T")
ax.axhline(L_T.mean(), color="C2", ls="--", label=f"$L_T$ = {L_T.mean():.1e}")
ax.set(xlabel="t", ylabel="nats per point", title=f"-ELBO by layer; $L_0$ = {L_0.mean():.2f}")
ax.legend()

# %% [markdown]
# The small-$t$ terms carry most of the bound: that is where the fine detail of the ring (its standard deviation
# of 0.14) is decided, and where the decoder $L_0$ pays for its fixed variance. $L_T$ is nearly 0: the forward
# process really ends at $\mathcal N(0, I)$.
#
# ## 4. A U-Net for MNIST
#
# For images the noise network is a small **U-Net** (Ronneberger et al., 2015): convolutions at 28, 14 and
# $7 \times 7$ pixels, going down then up, with skip connections carrying the fine detail across. The step $t$
# enters through the sinusoidal embedding and a small MLP, added (as a per-channel bias) inside every residual
# block; the class label has its own embedding table with one extra row for the **null label** 10 ("no class"),
# added to the time embedding. One model then serves as both the unconditional model ($y = 10$) and the
# conditional one.
#
# The budget shapes the net: every sample costs $T$ network calls, so on a laptop CPU it must be tiny: one
# residual block at 28 and at 14 pixels on the way down, two at 7 pixels (where a block is cheapest and sees the
# whole digit), one at 14 on the way up, and a small head at 28: the layout of lecture 13's score network, with
# the step and the label in place of the noise level.

# %%
class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the (time + label) embedding added in between, and a skip connection."""

    def __init__(self, c_in, c_out, emb):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.proj = nn.Linear(emb, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):                                             # (B, c_in, H, W), (B, emb)
        h = self.conv1(F.silu(self.norm1(x))) + self.proj(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)                                          # (B, c_out, H, W)


# %%
class UNet(nn.Module):
    """eps_theta(x_t, t, y) for (B, 1, 28, 28) images: channels c1 at 28 px, c2 at 14 px, c3 at 7 px."""

    def __init__(self, c1=16, c2=32, c3=64, emb=64, n_classes=10):
        super().__init__()
        self.emb = emb
        self.time_mlp = nn.Sequential(nn.Linear(emb, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(n_classes + 1, emb)                # the last row is the null label
        self.inc, self.block0 = nn.Conv2d(1, c1, 3, padding=1), ResBlock(c1, c1, emb)
        self.down1, self.block1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1), ResBlock(c2, c2, emb)
        self.down2 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.mid1, self.mid2 = ResBlock(c3, c3, emb), ResBlock(c3, c3, emb)
        self.up2, self.block2 = nn.ConvTranspose2d(c3, c2, 4, stride=2, padding=1), ResBlock(2 * c2, c2, emb)
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)
        self.head = nn.Sequential(nn.Conv2d(2 * c1, c1, 3, padding=1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))

    def forward(self, x, t, y):
        e = self.time_mlp(timestep_embedding(t, self.emb)) + self.label_emb(y)    # (B, emb)
        h0 = self.block0(self.inc(x), e)                                 # (B, c1, 28, 28)
        h1 = self.block1(self.down1(F.silu(h0)), e)                      # (B, c2, 14, 14)
        h = self.mid2(self.mid1(self.down2(h1), e), e)                   # (B, c3, 7, 7)
        h = self.block2(torch.cat([self.up2(h), h1], dim=1), e)          # (B, c2, 14, 14)
        h = torch.cat([F.silu(self.up1(h)), h0], dim=1)                  # (B, 2 c1, 28, 28)
        return self.head(h)                                              # (B, 1, 28, 28)


# %% [markdown]
# Data in $[-1, 1]$ (the scale the noise is measured against), the cosine schedule with $T = 200$ steps (the
# papers use 1000; fewer steps keep sampling affordable here, and the cosine schedule degrades least), and labels
# dropped with probability `P_UNCOND` $= 0.5$.
#
# **One network, conditional and unconditional.** Replacing the label by the null label trains the
# *unconditional* model $\varepsilon_\theta(x_t, t, \varnothing)$ inside the same network as the conditional one
# $\varepsilon_\theta(x_t, t, y)$. Guidance (section 7) needs both, and both are models of the digits: the
# unconditional one directly, the conditional one once the label is drawn first, $y \sim p(y)$ then
# $x \sim p_\theta(x \mid y)$ (section 6 compares the two). Ho and Salimans (2021) drop labels 10 or 20% of
# the time, over hundreds of thousands of steps. In a run of a few thousand CPU steps that would leave the
# null-label branch a tenth of an already short training. We drop half: the conditional branch still sees half of
# the examples, and it shares every weight except one row of the label table with the null branch.
#
# **Min-SNR weighting.** Written as an error in $x_0$, the $\varepsilon$-loss at step $t$ is
# $\|\varepsilon_\theta - \varepsilon\|^2 = \mathrm{SNR}_t\, \|\hat x_0 - x_0\|^2$ with
# $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$: the nearly clean steps, where denoising is easy, get an
# enormous weight in $x_0$ terms, and their gradients compete with the noisy steps that decide the shape of a
# digit. Hang et al. (2023) cap that weight at a constant $\gamma$: each example's $\varepsilon$-loss is multiplied
# by $\min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t$, which is 1 at the noisy steps and smaller at the clean ones.
# With $\gamma = 5$ they report convergence 3.4 times faster. In the language of Exercise 3 it is the weight
# $w_t = \min(\mathrm{SNR}_t, \gamma) / \mathrm{SNR}_t$ of the loss $L_w$: the same denoising score matching
# objective with another weighting $\lambda_t$ (section 3), so the minimizer of each step's loss is unchanged, and
# `ddpm_loss` trains the U-Net below as it is.
#
# The training runs through the package's `fit_steps` (lecture 13 used it too), which adds two ingredients of the
# DDPM recipe to `fit`: a learning rate that warms up and then decays to 0 on a cosine, and an **exponential moving
# average** (EMA) of the weights, $\bar\theta \leftarrow \rho\,\bar\theta + (1-\rho)\,\theta$ after every step
# with a decay $\rho$ (`ema_decay`), which is what gets sampled (Ho et al. use $\rho = 0.9999$ over 800k steps; a
# run of a few thousand steps needs a much shorter memory). Both matter a lot for a briefly trained diffusion
# model: the loss is noisy (a random $t$ per image), and sampling chains $T$ network calls, so small weight noise
# compounds.

# %%
T_MNIST = budget(smoke=25, standard=200, full=1000)
STEPS = budget(smoke=15, standard=13000, full=40000)
BATCH, LR = budget(smoke=(32, 4e-3), standard=(32, 4e-3), full=(128, 2e-3))
EMA_DECAY = budget(smoke=0.9, standard=0.999, full=0.9995)
P_UNCOND, NULL = 0.5, 10                                                 # label dropout; the null label
train_images, train_labels = evaluation.generative_train_split()        # the training split less the FID floor's
x_train = (mnist.to_unit(train_images) * 2 - 1).to(device)              # (N, 1, 28, 28) in [-1, 1], on the device once
y_train = train_labels.to(device)                                       # (N,)


def min_snr_weight(alpha_bar, gamma):
    """w_t = min(SNR_t, gamma) / SNR_t with SNR_t = alpha_bar_t / (1 - alpha_bar_t); (T+1,), w_0 = 0 (never drawn)."""
    snr = alpha_bar[1:] / (1 - alpha_bar[1:])
    return torch.cat([snr.new_zeros(1), snr.clamp(max=gamma) / snr])


beta_mnist = cosine_beta(T_MNIST)
torch.manual_seed(0)
ddpm = Diffusion(UNet(), beta_mnist, n_classes=10, p_uncond=P_UNCOND,
                 weight=min_snr_weight(alpha_bar_of(beta_mnist), 5.0)).to(device)
print(f"U-Net parameters: {sum(p.numel() for p in ddpm.net.parameters()):,}; {STEPS} steps of {BATCH} images "
      f"from {len(x_train)} training digits")


# %%
mnist_history = train_or_load(ddpm, LECTURE, "ddpm_mnist_cfg13k", lambda: fit_steps(
    ddpm, (x_train, y_train), steps=STEPS, batch_size=BATCH, lr=LR, ema_decay=EMA_DECAY, desc="training the U-Net"))
steps = len(mnist_history["step_loss"])
smooth = torch.tensor(mnist_history["step_loss"]).unfold(0, min(50, steps), 1).mean(1)
fig = plot.curves({"epsilon-loss (running mean of 50 steps)": smooth.tolist()}, xlabel="step",
                  title=f"{steps} steps in {mnist_history['seconds']:.0f} s")

# %% [markdown]
# ### What the network sees: $x_t$ and its guess $\hat x_0$
# For a few test digits, $x_t$ at many steps and the network's one-shot estimate
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta)/\sqrt{\bar\alpha_t}$ (Tweedie's denoiser), without
# the label. Precomputed; the slider selects $t$.

# %%
x_test = evaluation.fid_reference(smoke=500)                             # the mode's test set, (N, 1, 28, 28) in [0, 1]
T_SHOWN = list(range(0, T_MNIST + 1, max(1, T_MNIST // 20)))
digits = (x_test[:8] * 2 - 1).to(device)
noise = torch.randn(digits.shape, generator=torch.Generator().manual_seed(0)).to(device)
frames = {}
with torch.no_grad():
    for t in T_SHOWN:
        x_t = q_sample(digits, torch.full((8,), t, device=device), noise, ddpm.alpha_bar)
        ab = ddpm.alpha_bar[t]
        eps_hat = ddpm.eps(x_t, max(t, 1), torch.full((8,), NULL, device=device))
        x0_hat = (x_t - (1 - ab).sqrt() * eps_hat) / ab.sqrt() if t > 0 else x_t
        frames[t] = (x_t.cpu(), x0_hat.clamp(-1, 1).cpu())


def show_denoising(t=T_MNIST // 2):
    x_t, x0_hat = frames[t]
    fig, axes = plt.subplots(2, 1, figsize=(6, 2.4))
    plot.image_grid(((x_t + 1) / 2).clamp(0, 1), nrow=8, ax=axes[0], title=f"x_t at t = {t} of {T_MNIST} "
                    f"(alpha_bar = {ddpm.alpha_bar[t].item():.3f})")
    plot.image_grid((x0_hat + 1) / 2, nrow=8, ax=axes[1], title="the network's estimate of x_0")
    plt.show()


widgets.interactive_plot(show_denoising, t=widgets.slider(T_SHOWN[len(T_SHOWN) // 2], 0, T_MNIST,
                                                          step=T_SHOWN[1] - T_SHOWN[0], description="t"))

# %% [markdown]
# Early on (small $t$) the estimate is the digit; halfway it is a plausible digit that may not be the right one;
# near $T$ it is the blurry average of all digits, $\mathbb E[x_0]$: the best guess when nothing is left.
#
# ## 5. Ancestral sampling on MNIST, and its cost
#
# Samples by ancestral sampling: $T$ network calls per batch. Sample quality is measured with the course's FID
# protocol of lecture 14: the Fréchet distance in the feature space of the course classifier ("FID" here: it is
# **not** Inception FID and is not comparable with published numbers) between $N$ generated images and the
# **reference set**, the test set of the current mode (`evaluation.fid_reference`). FID is biased upwards for
# small $N$, so beside it stands the **floor**: the FID of $N$ real training digits that no model of the course
# trains on (`evaluation.fid_floor`, 5000 training digits drawn once at random; the U-Net was trained on the others), at
# the same $N$: what a perfect model would score. Every FID of this lecture uses the same $N$. The course
# classifier also reports the **confident fraction**, the share of samples it assigns to one digit with
# probability at least 0.9 (real test digits: nearly all).
#
# The samples of this section and the next are **unguided**: no guidance pushes them towards a class (that is
# section 7). The network holds two models of the digits, and both are unguided:
#
# - the **conditional model without guidance** (the $w = 1$ of section 7; Ho and Salimans's $w = 0$): draw a label
#   $y$ from the training digits' class frequencies $p(y)$, then sample $p_\theta(x \mid y)$. Together that is a
#   sample of $\sum_y p(y)\, p_\theta(x \mid y)$, a model of $p(x)$. This is the main sampler below.
# - the **unconditional model**: every sample carries the null label, $\varepsilon_\theta(x_t, t, \varnothing)$, and
#   the network must also decide which digit to draw. Section 6 compares it with the first.

# %%
clf = evaluation.mnist_classifier()
N_FID = budget(smoke=64, standard=500, full=2000)                       # generated samples per FID, all models
test_stats = evaluation.gaussian_stats(evaluation.features(x_test, clf))  # the reference, computed once


def fid_to_test(images):
    """Fréchet distance of images in [0, 1] to the reference set, in the course classifier's feature space."""
    return evaluation.frechet_distance(*evaluation.gaussian_stats(evaluation.features(images, clf)), *test_stats)


fid_floor = evaluation.fid_floor(N_FID, x_test, clf)
print(f"classifier test accuracy {clf.test_accuracy:.4f}; reference: {len(x_test)} test images; "
      f"FID floor ({N_FID} held-out real training digits): {fid_floor:.2f}")


def to_unit_range(x):
    return ((x + 1) / 2).clamp(0, 1).cpu()


def timed(fn):
    if device.type == "cuda":                                           # time only this call's work
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


# %%
class_freq = torch.bincount(train_labels, minlength=10).double() / len(train_labels)  # p(y) of the training digits
unguided = torch.multinomial(class_freq, N_FID, replacement=True,
                             generator=torch.Generator().manual_seed(0)).to(device)    # y ~ p(y), one per sample
null = torch.full((N_FID,), NULL, device=device)                        # the null label: the unconditional model
ddpm_x, ddpm_seconds = timed(lambda: ddpm.sample(N_FID, (1, 28, 28), y=unguided, w=1.0, clip=1.0,
                                                 generator=torch.Generator().manual_seed(0)))
ddpm_fid = fid_to_test(to_unit_range(ddpm_x))
ddpm_confident = evaluation.confident_fraction(to_unit_range(ddpm_x), clf)
print(f"DDPM, {T_MNIST} steps, unguided (y ~ p(y), w = 1): FID {ddpm_fid:.2f} from {N_FID} samples "
      f"(floor {fid_floor:.2f}); "
      f"{ddpm_confident:.0%} confidently classified; {ddpm_seconds:.1f} s, {1000 * ddpm_seconds / N_FID:.1f} ms per image")
ddpm_digits = torch.bincount(evaluation.predict(to_unit_range(ddpm_x), clf), minlength=10)
print(f"samples per predicted digit {ddpm_digits.tolist()} (labels drawn: "
      f"{torch.bincount(unguided.cpu(), minlength=10).tolist()})")
fig = plot.samples_beside_real({f"DDPM, {T_MNIST} steps, unguided": to_unit_range(ddpm_x)}, x_test)

# %% [markdown]
# ## 6. DDIM: deterministic sampling with few steps
#
# The training loss only involves the marginals $q(x_t \mid x_0)$, not the chain that links them. Song, Meng and
# Ermon (2021) noticed that many non-Markovian processes share those marginals, and that one of them has a
# **deterministic** reverse step. Given the prediction $\hat x_0$ and the noise $\hat\varepsilon$ at step $t$,
# jump straight to any earlier step $s < t$ by putting them back together at noise level $s$:
#
# $$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s}\,\hat\varepsilon_\theta(x_t, t) .$$
#
# With a subsequence of $S \ll T$ steps this is DDIM with $\eta = 0$: no noise after $x_T$, so each $x_T$ maps to
# one image (an ODE, the probability-flow ODE of lecture 13 discretized), and $S$ network calls instead of $T$.
# The same trained network serves; nothing is retrained. As in the ancestral sampler, $\hat x_0$ is clipped to
# the data range $[-1, 1]$ and $\hat\varepsilon$ is recomputed from the clipped $\hat x_0$, so that the two parts
# of the step agree. Clipping $\hat x_0$ alone and keeping the network's $\hat\varepsilon$ looks harmless, but
# with strong guidance (section 7) the leftover noise drives the samples out of range, and they stop looking like
# their class. (Try it: set `eps_hat` back to the network's value after the clamp and rerun section 7.)
#
# **DDIM is Euler's method on the probability-flow ODE of lecture 13.** Rescale, $\bar x = x/\sqrt{\bar\alpha}$ and
# $\bar\sigma = \sqrt{1-\bar\alpha}/\sqrt{\bar\alpha}$: then $\bar x_t = x_0 + \bar\sigma_t\,\varepsilon$ is the variance
# *exploding* noising of lecture 13 with noise level $\bar\sigma$. Since $\hat x_0 = \bar x_t - \bar\sigma_t\hat\varepsilon$,
# the DDIM update divided by $\sqrt{\bar\alpha_s}$ reads
#
# $$\bar x_s = \hat x_0 + \bar\sigma_s\,\hat\varepsilon = \bar x_t + (\bar\sigma_s - \bar\sigma_t)\,\hat\varepsilon_\theta(x_t, t),$$
#
# one Euler step from $\bar\sigma_t$ to $\bar\sigma_s$ of $d\bar x/d\bar\sigma = \varepsilon$, lecture 13's probability-flow
# ODE. Fewer DDIM steps are larger Euler steps of the same ODE.
#
# **From deterministic to ancestral: $\eta$.** Song et al. give a whole family of steps with these marginals. With
#
# $$\sigma_s = \eta \sqrt{\frac{1-\bar\alpha_s}{1-\bar\alpha_t}} \sqrt{1 - \frac{\bar\alpha_t}{\bar\alpha_s}}, \qquad
# x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s-\sigma_s^2}\;\hat\varepsilon_\theta(x_t, t) + \sigma_s z ,$$
#
# $\eta = 0$ is the deterministic step above. With $\eta = 1$ and $s = t - 1$, $\sigma_s^2$ is the posterior variance
# $\tilde\beta_t$ and the first two terms are the posterior mean at $\hat x_0$: exactly the ancestral step of
# section 5. With $\eta = 1$ and a subsequence of $S$ steps it is ancestral sampling on a coarser chain, a DDPM
# with $S$ steps whose $\bar\alpha$ agree with ours at the steps kept. Every member of the family uses the same
# trained network; `eta` selects one.

# %%
@torch.no_grad()
def ddim_sample(self, n, shape, steps, y=None, w=1.0, eta=0.0, clip=1.0, generator=None):
    """DDIM on `steps` evenly spaced steps from T to 0: `steps` network calls; returns x_0 (n, *shape).

    eta = 0 is deterministic after x_T; eta = 1 is ancestral sampling on the coarser chain of those steps."""
    dev = self.beta.device
    ts = torch.linspace(self.T, 0, steps + 1).round().long().tolist()   # T = ts[0] > ... > ts[-1] = 0
    x = torch.randn(n, *shape, generator=generator).to(dev)
    for t, s in progress(zip(ts[:-1], ts[1:], strict=True), f"DDIM, {steps} steps", total=steps):
        eps_hat = self.eps(x, t, y, w)
        ab_t, ab_s = self.alpha_bar[t], self.alpha_bar[s]
        x0_hat = (x - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
        if clip is not None:                                             # as in `sample`: clip x0_hat, and
            x0_hat = x0_hat.clamp(-clip, clip)                           # recompute the noise that goes with it
            eps_hat = (x - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()
        sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()   # 0 at s = 0
        x = ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps_hat
        if eta > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(dev)
    return x


Diffusion.ddim_sample = ddim_sample

# %%
DDIM_STEPS = budget(smoke=[5, 10], standard=[5, 10, 20, 50], full=[5, 10, 20, 50, 100, 250])
ETAS = {0.0: "deterministic", 1.0: "ancestral, coarse chain"}          # eta: what that DDIM is
ddim_x, ddim_fid, ddim_seconds = {}, {}, {}
for eta in ETAS:
    for S in DDIM_STEPS:
        ddim_x[eta, S], ddim_seconds[eta, S] = timed(lambda S=S, eta=eta: ddpm.ddim_sample(
            N_FID, (1, 28, 28), S, y=unguided, eta=eta, generator=torch.Generator().manual_seed(0)))
        ddim_fid[eta, S] = fid_to_test(to_unit_range(ddim_x[eta, S]))
        print(f"DDIM, eta = {eta:g}, {S:3d} steps: FID {ddim_fid[eta, S]:6.2f}, {ddim_seconds[eta, S]:5.1f} s")
S_SHOW = DDIM_STEPS[-1]
ddim_confident = {eta: evaluation.confident_fraction(to_unit_range(ddim_x[eta, S_SHOW]), clf) for eta in ETAS}
print(f"DDPM ({T_MNIST} calls): FID {ddpm_fid:.1f}, {ddpm_confident:.0%} confidently classified; floor {fid_floor:.1f}")
for eta in ETAS:
    best = min(DDIM_STEPS, key=lambda S, eta=eta: ddim_fid[eta, S])
    print(f"DDIM, eta = {eta:g}: best FID {ddim_fid[eta, best]:.1f} at {best} calls; at {S_SHOW} calls "
          f"{ddim_confident[eta]:.0%} confidently classified")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for eta, kind in ETAS.items():
    ax.plot(DDIM_STEPS, [ddim_fid[eta, S] for S in DDIM_STEPS], "o-", label=f"DDIM, eta = {eta:g} ({kind})")
ax.plot([T_MNIST], [ddpm_fid], "s", color="C3", label=f"DDPM, {T_MNIST} steps")
ax.axhline(fid_floor, color="gray", ls=":", label=f"floor: {N_FID} real images")
ax.set(xscale="log", xlabel="network calls per sample", ylabel="FID (course classifier)",
       title="unguided samples (y ~ p(y), w = 1): quality vs steps", xticks=DDIM_STEPS + [T_MNIST],
       xticklabels=[str(S) for S in DDIM_STEPS + [T_MNIST]])
ax.minorticks_off()
ax.legend()
plt.show()
fig = plot.samples_beside_real({f"DDPM, {T_MNIST} steps": to_unit_range(ddpm_x),
                                f"DDIM, eta = 0, {S_SHOW} steps": to_unit_range(ddim_x[0.0, S_SHOW]),
                                f"DDIM, eta = 1, {S_SHOW} steps": to_unit_range(ddim_x[1.0, S_SHOW])}, x_test)

# %% [markdown]
# DDIM costs $S/T$ of ancestral sampling. With their well-trained networks Song et al. found the deterministic
# $\eta = 0$ the best of the family at every $S$ below 1000 on CIFAR-10, and close to 1000-step DDPM from about 50
# steps on. With this tiny, briefly trained network, read the printed numbers with three effects in mind. The
# stochastic samplers' fresh noise at every step corrects part of the network's errors, while the deterministic
# one follows them to the end: compare the two curves at the same $S$. A stochastic chain of more steps lets the
# network's errors in at more steps too, so the full $T$-step chain need not beat a coarse one. And FID from
# $N = 500$ samples changes noticeably from one draw of the noise to another (change the generator's seed and
# rerun), so small differences between the points mean little. Where a curve stops improving as $S$ grows, the
# solver is no longer what limits the samples: the network is. Every number is to be compared with the floor,
# not with 0.
#
# ### The unconditional model
# The same two samplers with `S_SHOW` steps and the same $x_T$, now with the null label: the unconditional model
# $\varepsilon_\theta(x_t, t, \varnothing)$, the other unguided model of the digits (section 5).

# %%
null_x, null_fid, null_confident = {}, {}, {}
for eta in ETAS:
    null_x[eta] = ddpm.ddim_sample(N_FID, (1, 28, 28), S_SHOW, y=null, eta=eta,
                                   generator=torch.Generator().manual_seed(0))
    null_fid[eta] = fid_to_test(to_unit_range(null_x[eta]))
    null_confident[eta] = evaluation.confident_fraction(to_unit_range(null_x[eta]), clf)
    print(f"DDIM, eta = {eta:g}, {S_SHOW} steps, null label: FID {null_fid[eta]:6.2f}, "
          f"{null_confident[eta]:.0%} confidently classified (label drawn first: FID {ddim_fid[eta, S_SHOW]:6.2f}, "
          f"{ddim_confident[eta]:.0%})")
fig = plot.samples_beside_real({f"null label, eta = {eta:g}": to_unit_range(null_x[eta]) for eta in ETAS}, x_test)

# %% [markdown]
# Both are models of the same digits, yet compare the numbers: with this network, the unconditional model scores
# worse than the label drawn first, and worst of all with the deterministic sampler. A likely reason is the extra
# decision it has to make. Near $x_T$ its noise estimate is that of the average of all digits; along the way the
# chains must split into ten groups, one per digit, and the split runs through regions of $x_t$ where the small
# network's estimate is least accurate. A deterministic chain that starts near such a boundary follows the
# network's error to the end and can finish between two digits, a hybrid that the classifier is not sure of (look
# for them in the grid); fresh noise at every step gives a stochastic chain a chance to leave such a path. With
# the label drawn first, the network never has to make that decision. This is one reason why conditional models,
# and guidance on top of them, are the norm in practice.
#
# ## 7. Classifier-free guidance
#
# The network was trained both with labels and, half of the time, with the null label: it estimates the noise of
# the class-conditional density $\hat\varepsilon_c = \varepsilon_\theta(x_t, t, y)$ and of the unconditional one
# $\hat\varepsilon_u = \varepsilon_\theta(x_t, t, \varnothing)$. Since the noise is a scaled score,
# $\hat\varepsilon_c - \hat\varepsilon_u \propto -\nabla\log p(y \mid x_t)$ (Bayes' rule): the difference is the
# gradient of an implicit classifier. **Classifier-free guidance** (Ho and Salimans, 2021) extrapolates along it:
#
# $$\hat\varepsilon = w\,(\hat\varepsilon_c - \hat\varepsilon_u) + \hat\varepsilon_u ,$$
#
# which samples (approximately) from $p(x)\,p(y \mid x)^w$: $w = 0$ ignores the label, $w = 1$ is the conditional
# model, $w > 1$ sharpens the class at the cost of diversity. (The paper writes the same thing as
# $(1 + w')\hat\varepsilon_c - w'\hat\varepsilon_u$, so its $w' = w - 1$.)
#
# ### Exercise 5: the guidance combination
# Write `guided_eps(eps_c, eps_u, w)` for a float `w` and two predictions of one shape; return a new tensor (the
# two inputs stay unchanged).

# %% tags=["solution:ex5_guidance"]
def guided_eps(eps_c, eps_u, w):
    """Classifier-free guidance: w (eps_c - eps_u) + eps_u; w = 0 unconditional, w = 1 conditional."""
    ### BEGIN SOLUTION
    return eps_u + w * (eps_c - eps_u)
    ### END SOLUTION


# %% tags=["check:ex5_guidance"]
lecture15.check_guidance(guided_eps)

# %% [markdown]
# `Diffusion.eps` (section 3) already calls this function when $w \notin \{0, 1\}$: one network call on a doubled
# batch (conditional and null labels together), so guided sampling costs twice as much per step.
#
# For each $w$, $N$ samples with labels $0, 1, \dots, 9$ in turn, by DDIM with `CFG_STEPS` steps, all from the same
# $x_T$. The course classifier reads each sample; **class accuracy** is how often it reads the requested label. FID
# is against the (class-balanced) reference set, with the same $N$ and the same floor as in sections 5 and 6.

# %%
W_GRID = budget(smoke=[0.0, 1.0, 2.0], standard=[0.0, 1.0, 2.0, 3.0], full=[0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
CFG_STEPS = budget(smoke=5, standard=20, full=50)
labels = torch.arange(N_FID, device=device) % 10                         # 0, 1, ..., 9, 0, 1, ...
cfg_x, cfg_accuracy, cfg_fid, cfg_confident = {}, {}, {}, {}
for w in W_GRID:
    cfg_x[w], seconds = timed(lambda w=w: ddpm.ddim_sample(N_FID, (1, 28, 28), CFG_STEPS, y=labels, w=w,
                                                           generator=torch.Generator().manual_seed(1)))
    images = to_unit_range(cfg_x[w])
    cfg_accuracy[w] = (evaluation.predict(images, clf) == labels.cpu()).double().mean().item()
    cfg_fid[w] = fid_to_test(images)
    cfg_confident[w] = evaluation.confident_fraction(images, clf)
    print(f"w = {w:3.1f}: class accuracy {cfg_accuracy[w]:.3f}, FID {cfg_fid[w]:6.2f} (floor {fid_floor:.2f}), "
          f"confident {cfg_confident[w]:.2f}  ({seconds:.1f} s)")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.plot(W_GRID, [cfg_accuracy[w] for w in W_GRID], "o-", color="C0")
ax.axhline(0.1, color="C0", ls=":", lw=1)                                 # chance: 1 in 10
ax.set(xlabel="guidance weight w", ylim=(0, 1.02), title=f"guidance: {N_FID} samples, DDIM {CFG_STEPS} steps")
ax.set_ylabel("class accuracy (course classifier)", color="C0")
ax2 = ax.twinx()
ax2.plot(W_GRID, [cfg_fid[w] for w in W_GRID], "s--", color="C1")
ax2.axhline(fid_floor, color="C1", ls=":", lw=1)                          # the floor: real images
ax2.set_ylabel("FID", color="C1")
plt.tight_layout()

# %% [markdown]
# The samples behind these numbers, 6 per class; the slider picks $w$.

# %%
def show_guidance(w=W_GRID[-1]):
    x = cfg_x[w]
    rows = torch.stack([x[labels == c][:6] for c in range(10)], 1).reshape(-1, 1, 28, 28)  # 6 rows of 0..9
    plot.image_grid(to_unit_range(rows), nrow=10,
                    title=f"w = {w:g}: accuracy {cfg_accuracy[w]:.2f}, FID {cfg_fid[w]:.1f}")
    plt.show()


widgets.interactive_plot(show_guidance, w=ipywidgets.SelectionSlider(options=W_GRID, value=W_GRID[-1], description="w",
                                                                    continuous_update=False))

# %% [markdown]
# At $w = 0$ the label is ignored, so accuracy sits at chance (10%): these are the unconditional model's samples,
# as at the end of section 6. At $w = 1$ they are the plain conditional model's, the unguided sampler of sections 5
# and 6 with its labels in turn instead of drawn. Raising $w$ pushes each sample towards its class:
# strokes get bolder and more uniform, and accuracy climbs while diversity falls. FID rewards matching the whole
# distribution, diversity included, so strong guidance makes it worse once the samples of each class become too
# alike, even while accuracy still climbs. That is the fidelity-diversity trade-off that guidance controls in
# text-to-image models.
#
# The samples at $w = 2$, beside real digits:

# %%
W_SHOW = 2.0
fig = plot.samples_beside_real({f"guided, w = {W_SHOW:g}, labels 0-9 in turn": to_unit_range(cfg_x[W_SHOW])}, x_test)
#
# ## 8. Diffusion models and the NCSN of lecture 13
#
# | | NCSN + annealed Langevin (lecture 13) | DDPM / DDIM (this lecture) |
# | --- | --- | --- |
# | noising | $x + \sigma_i z$, geometric $\sigma_1 > \dots > \sigma_L$ (variance **exploding**) | $\sqrt{\bar\alpha_t}x + \sqrt{1-\bar\alpha_t}z$ (variance **preserving**) |
# | network | score $s_\theta(x, \sigma)$ | noise $\varepsilon_\theta(x_t, t) = -\sqrt{1-\bar\alpha_t}\, s_\theta$ |
# | loss | DSM with $\lambda(\sigma) = \sigma^2$ | $\|\varepsilon - \varepsilon_\theta\|^2$: DSM with $\lambda_t = 1-\bar\alpha_t$ (section 3) |
# | sampler | several Langevin steps per noise level | one ancestral step per level (DDPM), or a deterministic ODE step (DDIM) |
# | derived from | score matching + Langevin dynamics | ELBO of a hierarchical latent variable model |
# | SDE view (Song et al., 2021) | VE SDE | VP SDE; DDIM ≈ probability-flow ODE |
#
# The two are the same model family seen from two sides: both learn the score of the data blurred at every noise
# level with the same weighted denoising loss, and differ in the noise schedule and in how the reverse process is
# discretized. The practical differences are the ones measured here: a DDPM ancestral step needs one network call
# where annealed Langevin typically spends several per level, and DDIM reaches usable samples in tens of calls.
# On the 8-Gaussian ring, ancestral sampling gets the mode weights roughly right (the weights and their largest
# error are printed in section 3, beside the Monte-Carlo spread of a weight estimated from that many samples; the
# remaining error is the network's), as annealed Langevin did in lecture 13 and plain Langevin did not. The results
# table of the course README lists the MNIST FIDs of both lectures: the same classifier, reference set and floor
# definition (lecture 14), but each lecture's own number of samples, so compare each FID with the `fid_floor`
# recorded beside it.

# %% [markdown]
# ## Results

# %%
elapsed = time.perf_counter() - T0
FID_UNIT = "FID (course classifier)"
note = (f"course-classifier FID (not Inception), {N_FID} samples vs the {len(x_test)} reference test images; "
        f"{steps} training steps of {BATCH}")
record(LECTURE, "ddpm_fid", ddpm_fid, FID_UNIT, n_data=N_FID, wall_time_s=elapsed,
       note=f"ancestral sampling, T = {T_MNIST}, unguided (y ~ p(y), conditional model, w = 1); {note}")
record(LECTURE, "ddpm_confident_fraction", ddpm_confident, "fraction", n_data=N_FID, wall_time_s=elapsed,
       note="unguided ancestral samples the course classifier assigns to a digit with probability >= 0.9")
for eta in ETAS:
    tag = "" if eta == 0 else f"_eta{eta:g}"
    for S in DDIM_STEPS:
        record(LECTURE, f"ddim{S}{tag}_fid", ddim_fid[eta, S], FID_UNIT, n_data=N_FID, wall_time_s=elapsed,
               note=f"DDIM eta = {eta:g}, {S} steps, unguided (y ~ p(y), w = 1); {note}")
    record(LECTURE, f"ddim{S_SHOW}{tag}_confident_fraction", ddim_confident[eta], "fraction", n_data=N_FID,
           wall_time_s=elapsed, note=f"unguided DDIM-{S_SHOW} (eta = {eta:g}; y ~ p(y), w = 1) samples the course "
                                     "classifier assigns to a digit with probability >= 0.9")
    record(LECTURE, f"null_ddim{S_SHOW}{tag}_fid", null_fid[eta], FID_UNIT, n_data=N_FID, wall_time_s=elapsed,
           note=f"DDIM eta = {eta:g}, {S_SHOW} steps, unconditional model (null label); {note}")
    record(LECTURE, f"null_ddim{S_SHOW}{tag}_confident_fraction", null_confident[eta], "fraction", n_data=N_FID,
           wall_time_s=elapsed, note=f"unconditional (null label) DDIM-{S_SHOW} (eta = {eta:g}) samples the course "
                                     "classifier assigns to a digit with probability >= 0.9")
record(LECTURE, "fid_floor", fid_floor, FID_UNIT, n_data=N_FID, wall_time_s=elapsed,
       note=f"{N_FID} held-out real training images vs the reference set (evaluation.fid_floor)")
for w in W_GRID:
    tag = f"w{w:g}".replace(".", "p")
    record(LECTURE, f"cfg_accuracy_{tag}", cfg_accuracy[w], "fraction", n_data=N_FID, wall_time_s=elapsed,
           note=f"class accuracy of guided samples (course classifier), DDIM {CFG_STEPS} steps")
    record(LECTURE, f"cfg_fid_{tag}", cfg_fid[w], FID_UNIT, n_data=N_FID, wall_time_s=elapsed,
           note=f"guided samples, DDIM {CFG_STEPS} steps; {note}")
    record(LECTURE, f"cfg_confident_fraction_{tag}", cfg_confident[w], "fraction", n_data=N_FID,
           wall_time_s=elapsed, note=f"guided samples, DDIM {CFG_STEPS} steps")
record(LECTURE, "ddpm_ms_per_image", 1000 * ddpm_seconds / N_FID, "ms", n_data=N_FID, wall_time_s=elapsed,
       note=f"ancestral sampling, {T_MNIST} network calls, on {device.type}")
record(LECTURE, f"ddim{S_SHOW}_ms_per_image",
       1000 * ddim_seconds[0.0, S_SHOW] / N_FID, "ms", n_data=N_FID, wall_time_s=elapsed,
       note=f"DDIM, {S_SHOW} network calls, on {device.type}")
record(LECTURE, "toy_elbo_gap", data_log_density - toy_elbo, "nats per point", n_data=len(ring_test),
       wall_time_s=elapsed, note="E[log p_data] - ELBO on the 8-Gaussian ring (>= 0)")
record(LECTURE, "toy_mode_weight_error", mode_weight_error, "max abs error", n_data=N_TOY_SAMPLES,
       wall_time_s=elapsed, note="8-Gaussian ring, ancestral sampling, max |weight - 1/8|")
print(f"ran in {elapsed:.0f} s ({MODE} mode)")

# %% [markdown]
# ## Summary
#
# - The **forward process** adds Gaussian noise on a schedule $\beta_t$; its marginals are closed-form,
#   $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon$ (checked against the step-by-step chain).
#   The cosine schedule spreads the destruction of information more evenly than the linear one.
# - A diffusion model is a **hierarchical VAE** with a fixed encoder; its ELBO is a sum of KLs between Gaussian
#   **posteriors** $q(x_{t-1} \mid x_t, x_0)$ and the reverse model, each a weighted noise-prediction error.
# - **$\varepsilon$-prediction is denoising score matching**: $s_\theta = -\varepsilon_\theta/\sqrt{1-\bar\alpha_t}$;
#   the denoiser $\hat x_0$ is Tweedie's formula. NCSN and DDPM are one family with different schedules and samplers.
# - **Ancestral sampling** needs $T$ network calls; **DDIM** reuses the same network with far fewer, deterministically
#   ($\eta = 0$) or as an ancestral sampler on a coarser chain ($\eta = 1$); on this small network the stochastic
#   samplers correct part of its errors, and the deterministic one pays for them (all measured above).
# - **Classifier-free guidance** needs only label dropout in training; $w$ trades diversity for class fidelity:
#   class accuracy rises with $w$.
# - The **training step** (Exercise 3) is a few lines: a random step and a fresh noise draw per example, $x_t$ in
#   closed form, and a weighted squared error of the predicted noise. The weights $w_t$ choose the member of the
#   family: $L_\text{simple}$, the ELBO, or min-SNR.
# - One network holds two unguided models of the digits: the conditional one with the label drawn first, and the
#   unconditional one (the null label). With this small network the first gives the better samples, and the
#   unconditional one is the one the deterministic sampler hurts most (measured in section 6).
# - Honest scale: a small U-Net, $T = 200$ and 13000 CPU training steps of 32 images in standard mode (about eight
#   epochs), with labels dropped half of the time so that the unconditional (null-label) model trains too. Its
#   samples are scored against the floor of real digits with the course's FID protocol (lecture 14). These
#   course-classifier FIDs are not comparable with published Inception FIDs.
#
# ## References
# - J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan, S. Ganguli. *Deep Unsupervised Learning using Nonequilibrium
#   Thermodynamics.* ICML 2015. [arXiv:1503.03585](https://arxiv.org/abs/1503.03585)
# - J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models.* NeurIPS 2020.
#   [arXiv:2006.11239](https://arxiv.org/abs/2006.11239) (the ELBO decomposition, $\varepsilon$-prediction, the
#   simple loss, the linear schedule)
# - A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models.* ICML 2021.
#   [arXiv:2102.09672](https://arxiv.org/abs/2102.09672) (the cosine schedule)
# - J. Song, C. Meng, S. Ermon. *Denoising Diffusion Implicit Models.* ICLR 2021.
#   [arXiv:2010.02502](https://arxiv.org/abs/2010.02502)
# - J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance.* NeurIPS 2021 Workshop on Deep Generative Models and
#   Downstream Applications (arXiv version 2022). [arXiv:2207.12598](https://arxiv.org/abs/2207.12598)
# - T. Hang, S. Gu, C. Li, J. Bao, D. Chen, H. Hu, X. Geng, B. Guo. *Efficient Diffusion Training via Min-SNR
#   Weighting Strategy.* ICCV 2023. [arXiv:2303.09556](https://arxiv.org/abs/2303.09556)
# - Y. Song, S. Ermon. *Generative Modeling by Estimating Gradients of the Data Distribution.* NeurIPS 2019.
#   [arXiv:1907.05600](https://arxiv.org/abs/1907.05600) (NCSN)
# - Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling through
#   Stochastic Differential Equations.* ICLR 2021. [arXiv:2011.13456](https://arxiv.org/abs/2011.13456)
# - P. Vincent. *A Connection Between Score Matching and Denoising Autoencoders.* Neural Computation, 2011.
#   [link](https://www.iro.umontreal.ca/~vincentp/Publications/smdae_techreport.pdf)
# - O. Ronneberger, P. Fischer, T. Brox. *U-Net: Convolutional Networks for Biomedical Image Segmentation.* 2015.
#   [arXiv:1505.04597](https://arxiv.org/abs/1505.04597)
# - M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter. *GANs Trained by a Two Time-Scale Update Rule
#   Converge to a Local Nash Equilibrium.* NeurIPS 2017. [arXiv:1706.08500](https://arxiv.org/abs/1706.08500) (FID)
