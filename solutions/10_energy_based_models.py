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
# # Lecture 10: Energy-based models
#
# Every model so far paid for its likelihood with a constraint on the architecture: an ordering (autoregressive
# models), a bound (VAEs), an invertible map with a cheap determinant (flows). An **energy-based model** (EBM)
# drops all of them. Take *any* function $f_\theta : \mathbb R^D \to \mathbb R$, for instance a neural network,
# and define
#
# $$p_\theta(x) = \frac{\exp f_\theta(x)}{Z(\theta)}, \qquad Z(\theta) = \int \exp f_\theta(x)\, dx .$$
#
# ($E_\theta = -f_\theta$ is the *energy*: low energy, high probability.) The price moves elsewhere: the
# **partition function** $Z(\theta)$ is an integral over the whole space, intractable in high dimensions, and
# without it we can neither evaluate $\log p_\theta(x)$ nor draw samples directly.
#
# **Learning goals.** After this lecture you can
# - say what an unnormalized density can and cannot do without $Z$ (ratios, comparisons and MCMC: yes;
#   likelihoods and direct sampling: no), and compute $Z$ exactly on a 2-D grid;
# - combine models as a **product of experts**, an AND of densities, and see why it needs an EBM;
# - derive **Metropolis–Hastings** from detailed balance, check it on a small discrete chain, and tune a
#   random-walk sampler by its acceptance rate;
# - show that $\nabla_\theta \log Z(\theta) = \mathbb E_{p_\theta}[\nabla_\theta f_\theta(x)]$ and train an EBM
#   by **contrastive divergence**, with MCMC samples in place of the expectation, against an exact
#   maximum-likelihood baseline, and see what **persistent** chains change.
#
# **Builds on.** Lecture 03 (maximum likelihood as minimum KL) and lecture 06 (a density known up to $Z$; $\log Z$
# by quadrature on a grid). Lecture 11 trains EBMs without MCMC samples (score matching, noise-contrastive
# estimation) and with Langevin dynamics on MNIST.
#
# **Plan.** 1 Unnormalized densities and $Z$ on a grid (exercise 1). 2 Products of experts. 3 Markov chain
# Monte Carlo: detailed balance on a discrete chain (exercise 2), random-walk Metropolis–Hastings (exercise 3),
# acceptance rate and mixing, a widget. 4 Training an EBM: exact maximum likelihood on the grid, the gradient of
# $\log Z$, contrastive divergence (exercise 4), where it is blind, and persistent contrastive divergence. Then
# results, summary and references.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from dgm_course import budget, checks, plot, record, setup, train_or_load, widgets
from dgm_course.exercises import lecture10
from dgm_course.runtime import progress

device, MODE = setup(seed=0, threads=1)   # small tensors only: one thread is faster than two that wait on each other
LECTURE = "10_energy_based_models"
T0 = time.perf_counter()
LIM = 4.0                                                      # every density of this lecture lives on [-4, 4]^2
GRID_N = budget(smoke=40, standard=64, full=96)                # grid points per axis for log Z during training
KL_N = budget(smoke=80, standard=160, full=240)                # a finer, different grid for the reported KL
N_TRAIN = budget(smoke=5000, standard=20000, full=50000)       # training points of the 2-D EBMs
TRAIN_STEPS = budget(smoke=150, standard=3000, full=10000)     # optimizer steps for each EBM
CD_K = budget(smoke=10, standard=20, full=40)                  # MH steps per contrastive-divergence update
N_CHAINS = budget(smoke=400, standard=2000, full=5000)         # parallel chains in the MH experiments
MH_STEPS = budget(smoke=150, standard=1000, full=3000)         # steps per chain
PLANTED_STEPS = budget(smoke=60, standard=600, full=2000)     # extra steps in the planted-mode experiment
CPU64 = dict(device="cpu", dtype=torch.float64)                # exact work in float64 on the CPU (MPS lacks it)

# %% [markdown]
# ## 1. Unnormalized densities and the partition function
#
# A hand-made $f$ to start: a ring of radius 2 with three bumps around it,
#
# $$f(x) = -\frac12\left(\frac{\|x\| - 2}{0.4}\right)^2 + \cos(3\varphi), \qquad \varphi = \operatorname{atan2}(x_2, x_1).$$
#
# Nothing about $f$ is normalized, and nothing needs to be for **comparisons**: the ratio of two probabilities,
#
# $$\frac{p(x)}{p(y)} = \frac{e^{f(x)}/Z}{e^{f(y)}/Z} = e^{f(x) - f(y)},$$
#
# does not involve $Z$. So "is $x$ more likely than $y$?", "where is the mode?", and (section 3) Markov chain
# Monte Carlo, which only ever looks at ratios, all work without $Z$. What needs $Z$ is any *absolute* statement:
# $\log p(x)$ itself, the probability of a region, a likelihood to compare with another model.

# %%
def f_ring(x):                                                 # x (N, 2) -> f(x) (N,)
    r, angle = x.norm(dim=1), torch.atan2(x[:, 1], x[:, 0])
    return -0.5 * ((r - 2) / 0.4) ** 2 + torch.cos(3 * angle)


a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[-2.0, 0.0]])  # on a bump; between two bumps
print(f"f(a) = {f_ring(a).item():.3f}, f(b) = {f_ring(b).item():.3f}:  p(a) / p(b) = exp(f(a) - f(b)) = "
      f"{math.exp(f_ring(a).item() - f_ring(b).item()):.3f}, whatever Z is")

# %% [markdown]
# ### $Z$ by quadrature
#
# In two dimensions the integral is easy: on an $n \times n$ grid $x_{ij}$ over the box $[-L, L]^2$, with
# spacing $h = 2L/(n - 1)$,
#
# $$Z \approx \sum_{i,j} e^{f(x_{ij})}\, h^2, \qquad \log Z \approx \operatorname{logsumexp}_{i,j} f(x_{ij}) + 2 \log h .$$
#
# (For a density that vanishes at the edges of the box this Riemann sum is as accurate as the trapezoidal rule.)
# Work in log space: $f$ can be large, e.g. $f = 1000$ somewhere, and $e^{1000}$ overflows even in float64. The
# same grid costs $n^D$ evaluations in $D$ dimensions: $100^{784}$ for an MNIST image. That is the whole
# difficulty of EBMs, and why only this lecture's toy problems get an exact $Z$.
#
# **Exercise 1 (log Z by quadrature).** Write `log_partition(f, lim, n)` returning $\log Z$ as a scalar tensor,
# where `f` maps points `(M, 2)` to values `(M,)` and the integral runs over $[-\text{lim}, \text{lim}]^2$ with
# $n$ points per axis. It must stay differentiable (section 4 trains through it) and finite when $|f|$ is in the
# thousands. Build the grid on the CPU (e.g. `torch.linspace` and `torch.cartesian_prod`).

# %% tags=["solution:ex1_log_partition"]
def log_partition(f, lim, n):
    """log of the integral of exp(f) over [-lim, lim]^2, on an n x n grid; f maps (M, 2) -> (M,); returns ()."""
    ### BEGIN SOLUTION
    axis = torch.linspace(-lim, lim, n)                          # (n,)
    pts = torch.cartesian_prod(axis, axis)                      # (n*n, 2)
    h = 2 * lim / (n - 1)                                       # grid spacing
    return torch.logsumexp(f(pts), 0) + 2 * math.log(h)
    ### END SOLUTION


# %% tags=["check:ex1_log_partition"]
lecture10.check_log_partition(log_partition)

# %% [markdown]
# How fine must the grid be? The bumps have a width of about 0.4, so once a few grid points fall across each,
# $\log Z$ stops moving. A normalized $p = e^{f - \log Z}$ must also integrate to one; `checks.check_normalized`
# does that with its own (trapezoidal) grid.

# %%
for n in (10, 20, 40, 80, 160, 320):
    print(f"n = {n:3d} points per axis: log Z = {log_partition(f_ring, LIM, n).item():.6f}")
log_Z_ring = log_partition(f_ring, LIM, 320).item()
checks.check_normalized(lambda x: f_ring(x) - log_Z_ring, -LIM, LIM, dim=2, atol=1e-3, name="e^(f - log Z)")
print(f"p(a) = {math.exp(f_ring(a).item() - log_Z_ring):.4f}, p(b) = {math.exp(f_ring(b).item() - log_Z_ring):.4f} "
      "(densities: now they need Z)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot.density_2d(f_ring, ax=axes[0], lim=LIM, title="f(x): what the model knows", log_scale=True)
plot.density_2d(lambda x: f_ring(x) - log_Z_ring, ax=axes[1], lim=LIM, title=f"p(x) = exp(f(x) - log Z), log Z = {log_Z_ring:.3f}")
for ax in axes:
    ax.plot(*zip(a[0].tolist(), b[0].tolist(), strict=True), "wo", ms=5)
plt.show()

# %% [markdown]
# ## 2. Products of experts: an AND of models
#
# A mixture $\frac12 p_1 + \frac12 p_2$ is an **OR**: a point is likely if either component likes it. A
# **product of experts** (Hinton, 2002) is an **AND**:
#
# $$p(x) = \frac{p_1(x)\, p_2(x)}{Z}, \qquad \log p(x) = f_1(x) + f_2(x) - \log Z ,$$
#
# likely only where *every* expert agrees, so each expert can veto. In log space the product is just a sum of the
# experts' $f$: an EBM, whose $Z$ is new even when every expert is normalized. Sampling is no longer "pick a
# component": that needs MCMC (section 3).
#
# A check first, where everything is known in closed form: the product of two Gaussian densities
# $\mathcal N(x; \mu_1, \Sigma_1)\,\mathcal N(x; \mu_2, \Sigma_2)$ has the precision $\Sigma^{-1} = \Sigma_1^{-1} +
# \Sigma_2^{-1}$, the mean $\mu = \Sigma(\Sigma_1^{-1}\mu_1 + \Sigma_2^{-1}\mu_2)$, and the normalizer
# $Z = \mathcal N(\mu_1; \mu_2, \Sigma_1 + \Sigma_2)$.

# %%
mu1, S1 = torch.tensor([-0.5, 0.3], **CPU64), torch.tensor([[1.0, 0.4], [0.4, 0.6]], **CPU64)
mu2, S2 = torch.tensor([1.0, -0.2], **CPU64), torch.tensor([[0.5, -0.2], [-0.2, 1.2]], **CPU64)
expert1, expert2 = MultivariateNormal(mu1, S1), MultivariateNormal(mu2, S2)
S_prod = torch.linalg.inv(torch.linalg.inv(S1) + torch.linalg.inv(S2))
mu_prod = S_prod @ (torch.linalg.solve(S1, mu1) + torch.linalg.solve(S2, mu2))
log_Z_prod = log_partition(lambda x: expert1.log_prob(x.double()) + expert2.log_prob(x.double()), 6.0, 301)
print(f"log Z of the product: quadrature {log_Z_prod.item():.6f}, closed form "
      f"{MultivariateNormal(mu2, S1 + S2).log_prob(mu1).item():.6f}")
x_chk = torch.randn(5, 2, **CPU64)
gap = expert1.log_prob(x_chk) + expert2.log_prob(x_chk) - log_Z_prod - MultivariateNormal(mu_prod, S_prod).log_prob(x_chk)
print(f"max |log p_product - log N(mu, Sigma)| at 5 points: {gap.abs().max().item():.2e}")

# %% [markdown]
# Now two experts of different kinds: a ring ("the point is at distance about 2 from the origin") and a broad
# Gaussian ("the point is up and to the right"). Each is normalized by quadrature; then OR and AND.

# %%
def f_ring_expert(x):                                          # a plain ring, radius 2
    return -0.5 * ((x.norm(dim=1) - 2) / 0.25) ** 2


blob = MultivariateNormal(torch.tensor([1.5, 1.5]), 0.8 * torch.eye(2))
log_Z1 = log_partition(f_ring_expert, LIM, 200).item()
log_p1 = lambda x: f_ring_expert(x) - log_Z1                                 # noqa: E731
log_p2 = lambda x: blob.log_prob(x.float())                                  # noqa: E731
log_or = lambda x: torch.logaddexp(log_p1(x), log_p2(x)) - math.log(2)       # noqa: E731
f_and = lambda x: log_p1(x) + log_p2(x)                                      # noqa: E731
log_Z_and = log_partition(f_and, LIM, 200).item()
print(f"log Z of the product of the two (normalized) experts: {log_Z_and:.3f}  (Z = {math.exp(log_Z_and):.4f})")

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
panels = [(log_p1, "expert 1: ring"), (log_p2, "expert 2: Gaussian"), (log_or, "mixture: OR"),
          (lambda x: f_and(x) - log_Z_and, "product: AND")]
for ax, (fn, title) in zip(axes, panels, strict=True):
    plot.density_2d(fn, ax=ax, lim=LIM, n=160, title=title)
plt.show()

# %% [markdown]
# The mixture keeps the whole ring and the whole blob; the product keeps only the arc of the ring inside the
# blob, and it is sharper than either expert. Its normalizer $Z = \int p_1 p_2\,dx$ (printed above) is the
# density of the difference $X_1 - X_2$ of two independent draws, one from each expert, at zero (for the two
# Gaussians, $\mathcal N(\mu_1; \mu_2, \Sigma_1 + \Sigma_2)$ is exactly that): small when the experts mostly
# disagree, and here with no closed form.
#
# ## 3. Markov chain Monte Carlo
#
# To sample $p = \tilde p / Z$ knowing only $\tilde p = e^{f}$, build a Markov chain whose stationary distribution
# is $p$, run it long, and read off its states. A chain on states $i$ with transition probabilities
# $T_{ij} = P(x_{t+1} = j \mid x_t = i)$ leaves $\pi$ invariant if $\pi T = \pi$. A simple sufficient condition
# is **detailed balance**:
#
# $$\pi_i T_{ij} = \pi_j T_{ji} \quad \text{for all } i, j \qquad\Longrightarrow\qquad
# \sum_i \pi_i T_{ij} = \pi_j \sum_i T_{ji} = \pi_j .$$
#
# (The flow of probability from $i$ to $j$ equals the flow back.) **Metropolis–Hastings** builds such a $T$ from
# any proposal $Q_{ij}$: from $i$, propose $j \sim Q_{i\cdot}$ and accept it with probability
#
# $$A_{ij} = \min\left(1, \frac{\tilde p_j\, Q_{ji}}{\tilde p_i\, Q_{ij}}\right), \qquad\text{else stay at } i .$$
#
# For $i \ne j$, $\pi_i T_{ij} = \pi_i Q_{ij} A_{ij} = \min(\pi_i Q_{ij}, \pi_j Q_{ji})$, which is symmetric in
# $i, j$: detailed balance holds. The ratio $\tilde p_j / \tilde p_i$ is all that is needed, so $Z$ never appears.
# The Hastings factor $Q_{ji}/Q_{ij}$ corrects for a proposal that goes one way more easily than the other.
#
# ### A discrete chain, exactly
#
# **Exercise 2 (the Metropolis–Hastings transition matrix).** Write `mh_transition_matrix(p_tilde, Q)` returning
# the $K \times K$ matrix $T$: $T_{ij} = Q_{ij} A_{ij}$ for $j \ne i$, and $T_{ii}$ the rest of row $i$ (proposals
# of $i$ itself plus every rejection). `p_tilde` `(K,)` is positive but unnormalized, `Q` `(K, K)` has rows that sum
# to one, and zeros where a move is never proposed ($Q_{ij} > 0$ exactly when $Q_{ji} > 0$): mind the division.
# Leave `p_tilde` and `Q` unchanged (the lecture uses `Q` again): return a new matrix.

# %% tags=["solution:ex2_mh_matrix"]
def mh_transition_matrix(p_tilde, Q):
    """The Metropolis-Hastings kernel T (K, K) for target p_tilde (K,) (unnormalized) and proposal Q (K, K)."""
    ### BEGIN SOLUTION
    T = torch.minimum(Q, p_tilde[None, :] * Q.T / p_tilde[:, None])   # Q_ij min(1, p_j Q_ji / (p_i Q_ij))
    T = T - torch.diag(torch.diagonal(T))                             # off-diagonal moves only
    return T + torch.diag(1 - T.sum(1))                               # stay: everything not moved
    ### END SOLUTION


# %% tags=["check:ex2_mh_matrix"]
lecture10.check_mh_transition_matrix(mh_transition_matrix)

# %% [markdown]
# A target on $K = 6$ states and a lopsided proposal: a walk on a ring that steps right with probability 0.7 and
# left with 0.3. Build $T$, check detailed balance and invariance, and compare with the "Metropolis" chain that
# forgets the Hastings factor.

# %%
p_tilde = torch.tensor([1.0, 4.0, 2.0, 8.0, 3.0, 5.0], **CPU64)   # unnormalized target
K = len(p_tilde)
pi = p_tilde / p_tilde.sum()
Q = torch.zeros(K, K, **CPU64)
for i in range(K):
    Q[i, (i + 1) % K], Q[i, (i - 1) % K] = 0.7, 0.3
T = mh_transition_matrix(p_tilde, Q)
flow = pi[:, None] * T                                          # pi_i T_ij
print(f"detailed balance: max |pi_i T_ij - pi_j T_ji| = {(flow - flow.T).abs().max().item():.2e}")
print(f"invariance:       max |pi T - pi|             = {(pi @ T - pi).abs().max().item():.2e}")

T_no_hastings = Q * torch.clamp(p_tilde[None, :] / p_tilde[:, None], max=1)   # Metropolis's ratio, asymmetric Q
T_no_hastings = T_no_hastings + torch.diag(1 - T_no_hastings.sum(1) + torch.diagonal(T_no_hastings))
pi_wrong = torch.linalg.matrix_power(T_no_hastings, 2000)[0]    # its stationary distribution
print(f"without the Hastings factor the chain converges to {np.round(pi_wrong.numpy(), 3)}, not {np.round(pi.numpy(), 3)}")

# %% [markdown]
# Convergence: start every chain in state 0, so the distribution of $x_t$ is row 0 of $T^t$, and measure its
# total-variation distance to $\pi$. Beside it, 5000 simulated chains after 50 steps (a histogram of states).

# %%
steps = np.arange(0, 61)
tv = [0.5 * (torch.linalg.matrix_power(T, int(t))[0] - pi).abs().sum().item() for t in steps]
tv_wrong = [0.5 * (torch.linalg.matrix_power(T_no_hastings, int(t))[0] - pi).abs().sum().item() for t in steps]
gen = torch.Generator().manual_seed(0)
states = torch.zeros(5000, dtype=torch.long)
for _ in range(50):
    states = torch.multinomial(T[states], 1, generator=gen)[:, 0]   # one step of every chain
counts = torch.bincount(states, minlength=K).double() / len(states)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].semilogy(steps, tv, label="Metropolis-Hastings")
axes[0].semilogy(steps, tv_wrong, label="without the Hastings factor")
axes[0].set(xlabel="step t", ylabel="TV(p_t, π)", title="distance to the target, from state 0")
axes[0].legend()
width = 0.27
axes[1].bar(np.arange(K) - width, pi.numpy(), width, label="target π")
axes[1].bar(np.arange(K), counts.numpy(), width, label="5000 MH chains, t = 50")
axes[1].bar(np.arange(K) + width, pi_wrong.numpy(), width, label="no Hastings: stationary")
axes[1].set(xlabel="state", ylabel="probability")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# The distance falls geometrically, at the rate of the second-largest eigenvalue modulus of $T$; the chain
# without the Hastings factor converges just as fast, to the wrong distribution (green bars). The proposal's
# rightward drift is not compensated, so mass accumulates in states that are easy to enter from the left and hard
# to leave to the right, such as state 5 before the light state 0.
#
# ### Random-walk Metropolis in continuous space
#
# In $\mathbb R^D$ the simplest proposal is a Gaussian step, $x' = x + \sigma\varepsilon$ with
# $\varepsilon \sim \mathcal N(0, I)$. It is symmetric, $q(x' \mid x) = q(x \mid x')$, so the Hastings factor is 1
# and the acceptance probability is $\min(1, \tilde p(x')/\tilde p(x)) = \min(1, e^{f(x') - f(x)})$. In log space:
# draw $u \sim \mathcal U(0, 1)$ and accept if $\log u < f(x') - f(x)$.
#
# **Exercise 3 (a Metropolis–Hastings step).** Write `mh_step(x, log_p, sigma)` for a batch of independent chains:
# `x` is `(N, D)`, `log_p` maps `(N, D)` to `(N,)` (an unnormalized log-density, possibly $-\infty$ outside its
# support, and possibly far from normalized: values around $-1000$ are fine, so stay in log space), `sigma` is the
# proposal's standard deviation. Return `(x_new, accepted)`: the new states `(N, D)` and a boolean `(N,)` mask of
# the accepted proposals. Each chain decides for itself, with fresh random numbers at every call; a rejected chain
# stays exactly where it was, and `x` itself is left unchanged.

# %% tags=["solution:ex3_mh_step"]
def mh_step(x, log_p, sigma):
    """One random-walk Metropolis step for N chains: x (N, D) -> x_new (N, D), accepted (N,) bool."""
    ### BEGIN SOLUTION
    x_prop = x + sigma * torch.randn_like(x)                          # symmetric proposal
    log_u = torch.rand(len(x), device=x.device).log()                 # (N,)
    accepted = log_u < log_p(x_prop) - log_p(x)                       # min(1, p(x') / p(x)), no Z needed
    return torch.where(accepted[:, None], x_prop, x), accepted
    ### END SOLUTION


# %% tags=["check:ex3_mh_step"]
lecture10.check_mh_step(mh_step)

# %% [markdown]
# First use: sampling the product of experts of section 2, which no direct method could. The chains start
# from the origin and run on $f_1 + f_2$ (no $Z$).

# %%
def run_mh(log_p, x0, sigma, steps, keep=1):
    """Run chains from x0 (N, D): the paths of the first `keep` chains (steps + 1, keep, D), the final states
    (N, D) and the acceptance rate over all steps and chains."""
    x, path, accepted_total = x0.clone(), [x0[:keep].clone()], 0.0
    for _ in progress(range(steps), "MH steps"):
        x, accepted = mh_step(x, log_p, sigma)
        path.append(x[:keep].clone())
        accepted_total += accepted.float().mean().item()
    return torch.stack(path), x, accepted_total / steps


with torch.no_grad():
    _, x_poe, acc_poe = run_mh(lambda x: f_and(x), torch.zeros(N_CHAINS, 2), 0.5, MH_STEPS // 2)
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
plot.density_2d(lambda x: f_and(x) - log_Z_and, ax=axes[0], lim=LIM, n=160, title="product of experts (quadrature)")
plot.scatter_2d(x_poe, ax=axes[1], lim=LIM, title=f"{N_CHAINS} MH chains, acceptance {acc_poe:.2f}")
plt.show()

# %% [markdown]
# ### Acceptance rate and mixing
#
# The proposal scale $\sigma$ is the one knob. Too small: nearly every step is accepted, but the chain crawls
# (a random walk of tiny steps). Too large: the proposals land in empty space and are rejected, and the chain
# sits still. In between, the chain **mixes**: it forgets its start and visits every mode in proportion to its
# mass. For a Gaussian target in high dimension the best random-walk scale accepts about 23% of proposals
# (Roberts, Gelman and Gilks, 1997); in one dimension about 44%.
#
# The target from now on, the density that section 4 will learn: a mixture of three Gaussians with weights
# 0.5, 0.3 and 0.2, its density known exactly.

# %%
W_TRUE = torch.tensor([0.5, 0.3, 0.2])
MU_TRUE = torch.tensor([[-1.6, -1.0], [1.6, -0.8], [0.2, 1.8]])
COV_TRUE = torch.tensor([[[0.5, 0.3], [0.3, 0.4]], [[0.25, -0.1], [-0.1, 0.5]], [[0.6, 0.0], [0.0, 0.12]]])


def true_mixture(dtype=torch.float32, dev="cpu"):
    w, mu, cov = (t.to(dev, dtype) for t in (W_TRUE, MU_TRUE, COV_TRUE))
    return MixtureSameFamily(Categorical(w), MultivariateNormal(mu, cov))


p_true, p_true64 = true_mixture(dev=device), true_mixture(torch.float64)


def mode_of(x):                                                # the most responsible component of each point, (N,)
    comp = p_true.component_distribution.log_prob(x[:, None, :]) + p_true.mixture_distribution.logits
    return comp.argmax(1)


print(f"mass of the target inside [-{LIM:g}, {LIM:g}]^2: {p_true64.sample((200000,)).abs().max(1).values.le(LIM).double().mean():.5f}")

# %% [markdown]
# Every chain starts at the centre of the smallest component (weight 0.2). For each $\sigma$ we record the
# acceptance rate, the path of one chain, and, at a few checkpoints, the **mode-weight error**: the
# total-variation distance between the fraction of chains in each component and the true weights. It starts at
# 0.8 (all chains in the 0.2 component) and falls to the Monte Carlo noise level once the chains have mixed. The
# widget below only looks these runs up.

# %%
SIGMAS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
CHECKPOINTS = sorted({t for t in (3, 10, 30, 100, 300, 1000, 3000) if t < MH_STEPS} | {MH_STEPS})


def mode_error(x):                                             # TV between the chains' mode fractions and the weights
    frac = torch.bincount(mode_of(x), minlength=3).float().cpu() / len(x)
    return 0.5 * (frac - W_TRUE).abs().sum().item()


mh_runs = {}
x_start = MU_TRUE[2].to(device).repeat(N_CHAINS, 1)               # (N, 2) all in the 0.2 component
with torch.no_grad():
    for sigma in SIGMAS:
        x, paths, accepted, errors, done = x_start, [x_start[:1].cpu()], 0.0, [], 0
        for t in CHECKPOINTS:                                   # run on to each checkpoint, then measure
            path, x, acc = run_mh(p_true.log_prob, x, sigma, t - done)
            paths.append(path[1:, 0].cpu())
            accepted, done = accepted + acc * (t - done), t
            errors.append(mode_error(x))
        mh_runs[sigma] = dict(path=torch.cat(paths), x_end=x.cpu(), acceptance=accepted / MH_STEPS, errors=errors)
        print(f"sigma = {sigma:5.2f}: acceptance {accepted / MH_STEPS:.3f}, mode-weight error after "
              + ", ".join(f"{t}: {e:.3f}" for t, e in zip(CHECKPOINTS, errors, strict=True)))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
axes[0].semilogx(SIGMAS, [mh_runs[s]["acceptance"] for s in SIGMAS], "o-")
axes[0].axhline(0.234, color="gray", ls="--", lw=1)
axes[0].set(xlabel="proposal scale σ", ylabel="acceptance rate", title="acceptance falls with σ")
for sigma in SIGMAS:
    axes[1].loglog(CHECKPOINTS, mh_runs[sigma]["errors"], "o-", ms=3, label=f"σ = {sigma}")
mc_noise = 0.5 * (2 * W_TRUE * (1 - W_TRUE) / (math.pi * N_CHAINS)).sqrt().sum().item()   # E TV of exact draws
axes[1].axhline(mc_noise, color="gray", ls="--", lw=1)
axes[1].set(xlabel="MH steps", ylabel="TV(mode fractions, weights)", title="mixing: from one mode to all three")
axes[1].legend(fontsize=7)
plt.show()

# %%
def show_chain(sigma=0.3, steps_shown=100):
    run = mh_runs[sigma]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    plot.density_2d(lambda x: p_true.log_prob(x), ax=axes[0], lim=LIM, n=120, device=device,
                    title=f"σ = {sigma}: first {steps_shown} steps of one chain")
    axes[0].plot(*run["path"][: steps_shown + 1].T, "w.-", lw=0.8, ms=3)
    axes[1].plot(run["path"][:, 0], lw=0.8)
    axes[1].set(xlabel="step", ylabel="x₁ of that chain", title=f"trace, acceptance {run['acceptance']:.2f}")
    plot.scatter_2d(run["x_end"], ax=axes[2], lim=LIM,
                    title=f"all chains at step {MH_STEPS}: mode error {run['errors'][-1]:.2f}")
    plt.show()


widgets.interactive_plot(show_chain, sigma=SIGMAS, steps_shown=(10, MH_STEPS, 10))

# %% [markdown]
# Reading the runs: with $\sigma = 0.03$ almost every proposal is accepted, and the trace is a slow wiggle inside
# one component: after all the steps most chains are still where they started. With $\sigma = 10$ the trace is flat
# for long stretches (rejections), with rare long jumps. At $\sigma = 1$ to $3$, accepting between a third and an
# eighth of the proposals, the chains jump between components often and the mode-weight error falls fastest, down
# to the dashed line: the error that exact independent draws would have with this many chains. Acceptance alone is
# a poor guide: 0.97 at the smallest scale belongs to the worst sampler here, and the best one accepts less than
# the 23% of the high-dimensional rule (two dimensions and three separated modes are far from its assumptions).
#
# ### Effective sample size
#
# Acceptance says how often a chain moves, not how much its draws tell us about $p$. The diagnostic for that is the
# **effective sample size**: $T$ successive, correlated states of a chain estimate a mean as well as
#
# $$\text{ESS} = \frac{T}{1 + 2\sum_{k \ge 1} \rho_k}$$
#
# independent draws would, where $\rho_k$ is the autocorrelation of the chain at lag $k$ (the sum is cut where
# $\rho_k$ first drops below 0.05, since the far lags are mostly noise). Below, for each $\sigma$, chains started
# at exact draws of the target (so that only mixing is measured, not the way in from a bad start), the
# autocorrelation of $x_1$ pooled over the chains, and the ESS per step beside the acceptance rate.

# %%
ESS_STEPS = budget(smoke=200, standard=500, full=2000)         # steps per chain for the autocorrelation
ESS_CHAINS = budget(smoke=100, standard=200, full=500)


def ess_per_step(sigma):
    """ESS / T of x_1 for random-walk MH on the target, chains started at exact draws."""
    x, trace = p_true.sample((ESS_CHAINS,)), []
    with torch.no_grad():
        for _ in range(ESS_STEPS):
            x, _ = mh_step(x, p_true.log_prob, sigma)
            trace.append(x[:, 0].cpu().double())
    tr = torch.stack(trace, 1)                                   # (chains, T)
    tr = tr - tr.mean()
    tau = 1.0                                                    # 1 + 2 sum_k rho_k
    for k in range(1, ESS_STEPS // 2):
        rho = float((tr[:, :-k] * tr[:, k:]).mean() / (tr**2).mean())
        if rho < 0.05:
            break
        tau += 2 * rho
    return 1 / tau


with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):   # leave the notebook's stream alone
    torch.manual_seed(1)
    ess = {sigma: ess_per_step(sigma) for sigma in SIGMAS}
print("ESS per step: " + ", ".join(f"sigma {s}: {e:.3f}" for s, e in ess.items()))
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.loglog(SIGMAS, list(ess.values()), "o-", label="ESS per step (of x₁)")
ax.loglog(SIGMAS, [mh_runs[s]["acceptance"] for s in SIGMAS], "s--", label="acceptance rate")
ax.set(xlabel="proposal scale σ", ylabel="fraction", title="what a step is worth")
ax.legend()
plt.show()

# %% [markdown]
# The ESS per step peaks at an intermediate $\sigma$ and falls at both ends, while the acceptance rate only falls:
# at the smallest scales almost every step is accepted but each moves the chain by a hair, and at the largest
# almost none is. Even at the best $\sigma$ a step is worth only a few hundredths of an independent draw here: $x_1$
# changes mostly when a chain changes mode, and that is rare. At the smallest scales the autocorrelation has not
# decayed within the window at all, so the printed ESS is only an upper bound.
#
# ## 4. Training an energy-based model
#
# Now learn $f_\theta$ from samples of the mixture. The model is a small MLP on the box $B = [-L, L]^2$,
#
# $$p_\theta(x) = \frac{e^{f_\theta(x)}}{Z(\theta)}\ \text{on } B\ (\text{zero outside}), \qquad Z(\theta) = \int_B e^{f_\theta(x)}\, dx .$$
#
# The box is a modelling choice with a purpose: $Z$ must be finite for $p_\theta$ to exist, and an MLP's
# $e^{f_\theta}$ need not be integrable over $\mathbb R^2$ (a ReLU network can grow linearly in every direction).
# The true density has practically all of its mass inside (printed above).
#
# Maximum likelihood minimizes the negative log-likelihood
#
# $$\mathcal L(\theta) = -\frac1N \sum_n f_\theta(x_n) + \log Z(\theta) .$$

# %%
class EBM(nn.Module):
    """p(x) = exp(f(x)) / Z on the box [-LIM, LIM]^2, f an MLP."""

    def __init__(self, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x):                                      # x (N, 2) -> f(x) (N,)
        return self.net(x).squeeze(-1)

    def log_p_tilde(self, x):                                  # f on the box, -inf outside: what MCMC sees
        inside = (x.abs() <= LIM).all(1)
        return torch.where(inside, self(x), torch.full_like(x[:, 0], -math.inf))

    def log_Z(self, n=GRID_N):                                 # exercise 1's quadrature (its grid is on the CPU)
        return log_partition(lambda pts: self(pts.to(device, torch.float32)).cpu(), LIM, n).to(device)

    def loss(self, x):                                         # exact NLL, -mean f(x) + log Z
        return -self(x).mean() + self.log_Z()

# %% [markdown]
# Data, and the yardsticks: $\mathrm{KL}(p\,\|\,p_\theta)$, the true density first (the forward, mass-covering KL
# of lecture 03), on a fine grid (both normalized on that grid, so the KL is between two distributions over the
# same cells),
#
# $$\mathrm{KL}(p\,\|\,p_\theta) \approx \sum_i p_i \log \frac{p_i}{q_i}, \qquad p_i \propto p(x_i),\ q_i \propto e^{f_\theta(x_i)} ,$$
#
# and the test NLL against the true density's. Since $\mathrm{KL}(p\,\|\,p_\theta) = \mathbb E_p[-\log p_\theta] - H(p)$,
# both measure the same thing; the KL is the exact version of the test-NLL gap.

# %%
x_train = p_true64.sample((N_TRAIN,)).float()                   # (N, 2)
x_test = p_true64.sample((5000,)).float()
kl_grid, kl_cell = plot.grid_2d(LIM, KL_N)                      # (KL_N^2, 2), a different grid from training's
log_p_cells = torch.log_softmax(p_true64.log_prob(kl_grid.double()), 0)   # log p_i
true_test_nll = -p_true64.log_prob(x_test.double()).mean().item()


@torch.no_grad()
def grid_kl(model):                                            # KL(true || model) over the cells of the fine grid
    log_q_cells = torch.log_softmax(model(kl_grid.to(device)).cpu().double(), 0)
    return (log_p_cells.exp() * (log_p_cells - log_q_cells)).sum().item()


@torch.no_grad()
def test_nll(model):                                           # -log p_model(x_test), with Z by quadrature
    return (-model(x_test.to(device)).mean() + model.log_Z(KL_N)).item()


print(f"{N_TRAIN} training points; true density's test NLL {true_test_nll:.4f} nats")

# %% [markdown]
# One loop trains both EBMs of this section; only the loss differs. The loss gets the model and a data batch and
# returns a scalar (and may report extra numbers, such as an acceptance rate). Adam, with the step size decaying
# along a cosine, and the KL recorded along the way.

# %%
def train_ebm(model, loss_fn, steps, batch=256, lr=3e-3, eval_every=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    eval_every = eval_every or max(1, steps // 30)
    history = {"loss": [], "kl_step": [], "kl": [], "extra": []}
    data = x_train.to(device)                                  # the training points live on the device
    for t in progress(range(steps), "EBM training steps"):
        x = data[torch.randint(len(data), (batch,), generator=gen).to(device)]   # (B, 2), indexed on the device
        loss, extra = loss_fn(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history["loss"].append(loss.item())
        history["extra"].append(extra)
        if t % eval_every == 0 or t == steps - 1:
            history["kl_step"].append(t + 1)
            history["kl"].append(grid_kl(model))
    return history

# %% [markdown]
# ### The baseline: exact maximum likelihood on the grid
#
# In 2-D we can afford $\log Z(\theta)$ by quadrature at every step, and autograd differentiates through the
# log-sum-exp. This is the best this model class can do with this data: the reference for everything that
# follows, and for lecture 11.

# %%
torch.manual_seed(0)
ml_ebm = EBM().to(device)
ml_hist = train_or_load(ml_ebm, LECTURE, "ml_ebm", lambda: train_ebm(
    ml_ebm, lambda model, x: (model.loss(x), None), TRAIN_STEPS))
ml_kl, ml_nll = grid_kl(ml_ebm), test_nll(ml_ebm)
print(f"exact ML: KL(true || model) = {ml_kl:.4f} nats, test NLL {ml_nll:.4f} (true density {true_test_nll:.4f})")

# %% [markdown]
# ### The gradient of $\log Z$
#
# Without a grid we cannot compute $\log Z(\theta)$, but its gradient is an expectation:
#
# $$\nabla_\theta \log Z(\theta) = \frac{1}{Z(\theta)} \int \nabla_\theta e^{f_\theta(x)}\, dx
# = \int \frac{e^{f_\theta(x)}}{Z(\theta)}\, \nabla_\theta f_\theta(x)\, dx = \mathbb E_{x \sim p_\theta}\big[\nabla_\theta f_\theta(x)\big].$$
#
# So the gradient of the NLL is a difference of two averages of the same quantity,
#
# $$\nabla_\theta \mathcal L(\theta) = -\mathbb E_{x \sim \text{data}}\big[\nabla_\theta f_\theta(x)\big] + \mathbb E_{x \sim p_\theta}\big[\nabla_\theta f_\theta(x)\big],$$
#
# which pushes $f$ up on the data and down on the model's own samples; it is zero when the two agree. Checked
# on the trained model: the autograd gradient of the quadrature $\log Z$, against Monte Carlo averages of
# $\nabla_\theta f_\theta$ over $M$ samples of $p_\theta$, drawn exactly (from the grid's cells) and by MH chains
# that start at the data.

# %%
params = list(ml_ebm.parameters())


def flat_grad(scalar):                                         # d scalar / d theta, flattened (P,)
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(scalar, params)])


@torch.no_grad()
def exact_grid_samples(model, m, gen, n=GRID_N):                      # exact draws from the model restricted to the grid
    pts, _ = plot.grid_2d(LIM, n)
    idx = torch.multinomial(torch.softmax(model(pts.to(device)).cpu(), 0), m, replacement=True, generator=gen)
    return pts[idx].to(device)


grad_quad = flat_grad(ml_ebm.log_Z())                          # autograd through the quadrature
gen = torch.Generator().manual_seed(1)
M_VALUES = budget(smoke=[100, 1000, 10000], standard=[100, 1000, 10000, 100000], full=[100, 1000, 10000, 100000, 1000000])


def rel_error(x):                                              # |mean grad f(x) - grad log Z| / |grad log Z|
    return (flat_grad(ml_ebm(x).mean()) - grad_quad).norm().item() / grad_quad.norm().item()


rel_err = {m: np.mean([rel_error(exact_grid_samples(ml_ebm, m, gen)) for _ in range(5)]) for m in M_VALUES}
with torch.no_grad():
    _, x_mh, _ = run_mh(ml_ebm.log_p_tilde, x_train[:M_VALUES[-2]].to(device), 0.3, 200)
for m, e in rel_err.items():
    print(f"M = {m:7d} exact samples: |MC - autograd| / |autograd| = {e:.4f} (mean of 5 draws)")
print(f"M = {M_VALUES[-2]:7d} MH samples (200 steps from the data): {rel_error(x_mh):.4f}")

# %% [markdown]
# The Monte Carlo error falls like $1/\sqrt M$ (tenfold more samples, about three times smaller), down to the
# quadrature's own discretization; MH samples do as well as exact ones once the chains have mixed. This is the
# identity contrastive divergence builds on: the intractable $\log Z$ enters the gradient only through samples of
# the model.
#
# ### Contrastive divergence
#
# Samples of $p_\theta$ cost an MCMC run, and $\theta$ changes at every step. Hinton's **contrastive divergence**
# (CD-$k$) makes that cheap: start the chains *at the data batch* and run only $k$ MH steps, then use
#
# $$\nabla_\theta \ell_\text{CD} = \frac1{M}\sum_{m} \nabla_\theta f_\theta(\tilde x_m) - \frac1B \sum_{b} \nabla_\theta f_\theta(x_b),
# \qquad \tilde x_m = \text{$k$ MCMC steps from the data} .$$
#
# It is the gradient of the surrogate $\ell_\text{CD} = \overline{f_\theta(\tilde x)} - \overline{f_\theta(x)}$
# with the samples held fixed: they depend on $\theta$ through the chain, but that dependence is ignored (it is
# what makes CD a biased estimate of the likelihood gradient). If the model already equals the data distribution,
# the chains start at stationarity and the two terms cancel in expectation; where the model is wrong, $k$ steps
# are enough to drift towards its own (wrong) preferences, and the update corrects them. The value of
# $\ell_\text{CD}$ is not a likelihood; its gradient is the signal.
#
# **Exercise 4 (the contrastive-divergence loss).** Write `cd_loss(f, x_data, x_model)` returning the scalar
# $\ell_\text{CD}$ whose gradient is the formula above: `f` maps `(N, D)` to `(N,)`, `x_data` is `(B, D)` and
# `x_model` `(M, D)` (possibly $M \neq B$). The samples are constants: no gradient may flow into them.

# %% tags=["solution:ex4_cd_loss"]
def cd_loss(f, x_data, x_model):
    """The CD surrogate mean f(x_model) - mean f(x_data), samples held fixed; returns a scalar."""
    ### BEGIN SOLUTION
    return f(x_model.detach()).mean() - f(x_data).mean()
    ### END SOLUTION


# %% tags=["check:ex4_cd_loss"]
lecture10.check_cd_loss(cd_loss)

# %% [markdown]
# The CD-$k$ loss for the training loop: $k$ MH steps from the batch, with $\sigma = 0.3$, which accepts most
# proposals on this scale of data while moving each chain by about $0.3\sqrt{k}$ over the run. The grid is not
# touched: this is how an EBM is trained when $Z$ is out of reach. (The grid only *measures* the result.)

# %%
CD_SIGMA = 0.3


def cd_k_loss(model, x):
    with torch.no_grad():                                      # the sampler is not differentiated
        x_model = x
        for _ in range(CD_K):
            x_model, accepted = mh_step(x_model, model.log_p_tilde, CD_SIGMA)
    return cd_loss(model, x, x_model), accepted.float().mean().item()


torch.manual_seed(0)
cd_ebm = EBM().to(device)                                       # the same initialization as the ML model
cd_hist = train_or_load(cd_ebm, LECTURE, f"cd{CD_K}_ebm", lambda: train_ebm(cd_ebm, cd_k_loss, TRAIN_STEPS))
cd_kl, cd_nll = grid_kl(cd_ebm), test_nll(cd_ebm)
print(f"CD-{CD_K}: KL(true || model) = {cd_kl:.4f} nats, test NLL {cd_nll:.4f}; "
      f"final acceptance {np.mean(cd_hist['extra'][-100:]):.2f}")

# %% [markdown]
# ### CD-1: the shortest chain
#
# The same recipe with a single MH step per update (Hinton's original CD-1 used one Gibbs sweep). One step from the
# data barely moves the samples: the two averages nearly cancel, the gradient is mostly noise, and the model only
# learns to be locally consistent around the data. Mass it puts far away is never seen by the chains and never
# corrected.

# %%
def cd_1_loss(model, x):
    with torch.no_grad():
        x_model, accepted = mh_step(x, model.log_p_tilde, CD_SIGMA)
    return cd_loss(model, x, x_model), accepted.float().mean().item()


torch.manual_seed(0)
cd1_ebm = EBM().to(device)
cd1_hist = train_or_load(cd1_ebm, LECTURE, "cd1_ebm", lambda: train_ebm(cd1_ebm, cd_1_loss, TRAIN_STEPS))
cd1_kl, cd1_nll = grid_kl(cd1_ebm), test_nll(cd1_ebm)
print(f"CD-1: KL(true || model) = {cd1_kl:.4f} nats, test NLL {cd1_nll:.4f}")

# %% [markdown]
# ### The three models side by side
#
# The true density, and each model normalized by quadrature; beneath each model, samples drawn *from the model*
# by long MH chains started from uniform noise over the box (not from the data), the way one would sample an EBM
# with no grid at hand.

# %%
models = {"exact ML": ml_ebm, f"CD-{CD_K}": cd_ebm, "CD-1": cd1_ebm}
kls = {"exact ML": ml_kl, f"CD-{CD_K}": cd_kl, "CD-1": cd1_kl}
noise = (torch.rand(N_CHAINS, 2, device=device) * 2 - 1) * LIM
model_samples = {}
with torch.no_grad():
    for name, model in models.items():
        model_samples[name] = run_mh(model.log_p_tilde, noise, 0.5, MH_STEPS)[1].cpu()

fig, axes = plt.subplots(2, 4, figsize=(16, 8))
plot.density_2d(p_true64.log_prob, ax=axes[0, 0], lim=LIM, n=160, title="true density")
plot.scatter_2d(x_train[:N_CHAINS], ax=axes[1, 0], lim=LIM, title="training data")
for col, (name, model) in enumerate(models.items(), start=1):
    log_Z_model = model.log_Z(KL_N).item()
    plot.density_2d(lambda x, m=model, lz=log_Z_model: m(x) - lz, ax=axes[0, col], lim=LIM, n=160, device=device,
                    title=f"{name}: KL {kls[name]:.3f} nats")
    plot.scatter_2d(model_samples[name], ax=axes[1, col], lim=LIM, title=f"{name}: MH samples from noise")
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for (name, hist), color in zip([("exact ML", ml_hist), (f"CD-{CD_K}", cd_hist), ("CD-1", cd1_hist)], ["C0", "C1", "C2"], strict=True):
    axes[0].semilogy(hist["kl_step"], hist["kl"], color=color, label=name)
axes[0].set(xlabel="step", ylabel="KL(true || model) [nats]", title="learning curves (measured on the grid)")
axes[0].legend()
for hist, name, color in [(cd_hist, f"CD-{CD_K}", "C1"), (cd1_hist, "CD-1", "C2")]:
    axes[1].plot(np.convolve(hist["loss"], np.ones(50) / 50, mode="valid"), color=color, label=name)
axes[1].set(xlabel="step", ylabel="CD surrogate (smoothed)", title="the CD loss hovers near zero")
axes[1].legend()
plt.show()

# %% [markdown]
# What to look for. Exact maximum likelihood recovers the three components with their weights; it is the
# yardstick. CD-$k$ never computes $Z$ or a likelihood and ends up just as close: its chains start at the data,
# which already sit in the right proportions, and a few steps are enough to notice and flatten a wrong bump near
# the data. Here even CD-1 ends about as close (numbers above), although its learning curve is the noisiest and it
# gets there only as the step size decays. The learning curves of CD are noisier than ML's (its gradient is a
# difference of two small-sample averages), and the CD loss says nothing about progress: it hovers near zero from
# the first steps on, for a bad model and a good one alike. The samples from noise show the other side of MCMC: a
# good EBM is only as useful for generation as the sampler that mixes over it; with $\sigma = 0.5$ and
# a thousand steps these chains mix well on all three models.
#
# ### Where contrastive divergence is blind
#
# CD's samples never travel far from the data. A mode of the model far from every data point is invisible to it:
# no chain reaches it, so the term that should push it down is missing. To see this, plant one. Take the exact-ML
# model and add a learnable bump $a \exp(-\|x - c\|^2 / (2 \cdot 0.4^2))$ at the empty corner $c = (3, 3)$, with
# $a$ chosen so that the model puts a quarter of its mass near $c$ (the truth puts almost none there), then continue
# training, once by exact ML and once by CD-$k$, from the same start.

# %%
C_SPURIOUS = (3.0, 3.0)


class PlantedEBM(EBM):
    """An EBM plus a learnable bump a * exp(-|x - c|^2 / (2 * 0.4^2)) at the empty corner c."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))

    def forward(self, x):                                      # x (N, 2) -> f(x) (N,)
        bump = torch.exp(-0.5 * ((x - x.new_tensor(C_SPURIOUS)) ** 2).sum(1) / 0.4**2)
        return super().forward(x) + self.a * bump


@torch.no_grad()
def corner_mass(model):                                        # P_model(|x - c| < 1) on the fine grid
    q = torch.softmax(model(kl_grid.to(device)).cpu().double(), 0)
    return q[(kl_grid - torch.tensor(C_SPURIOUS)).norm(dim=1) < 1].sum().item()


def planted_start(a):                                          # the ML fit plus a bump of height a
    model = PlantedEBM(a).to(device)
    model.load_state_dict(ml_ebm.state_dict(), strict=False)
    return model


lo, hi = 0.0, 50.0
for _ in range(30):                                            # bisection: corner mass 0.25 at the start
    a0 = (lo + hi) / 2
    lo, hi = (a0, hi) if corner_mass(planted_start(a0)) < 0.25 else (lo, a0)
planted = {}
for name, loss_fn in [("exact ML", lambda model, x: (model.loss(x), None)), (f"CD-{CD_K}", cd_k_loss)]:
    model = planted_start(a0)
    start = (grid_kl(model), corner_mass(model))
    hist = train_or_load(model, LECTURE, f"planted_{name.split()[-1].lower().replace('-', '')}",
                         lambda m=model, fn=loss_fn: train_ebm(m, fn, PLANTED_STEPS, lr=1e-3))
    planted[name] = dict(model=model, start=start, kl=grid_kl(model), mass=corner_mass(model), a=model.a.item(),
                         hist=hist)
    print(f"{name:9s}: corner mass {start[1]:.3f} -> {planted[name]['mass']:.3f}, a {a0:.2f} -> "
          f"{planted[name]['a']:.2f}, KL {start[0]:.3f} -> {planted[name]['kl']:.3f} nats")

# %% [markdown]
# Exact ML sees the bump through $\log Z$: its gradient $\mathbb E_{p_\theta}[\nabla_\theta f] -
# \mathbb E_\text{data}[\nabla_\theta f]$ is large wherever the model has mass that the data lack, and within a few
# hundred steps the network learns to cancel the bump (the amplitude $a$ itself hardly moves: the MLP's parameters
# do the work). CD's chains start at the data and take $k$ steps of size $0.3$: hardly any gets near the corner,
# so the term that should push the bump down is nearly missing. After the same number of steps CD has removed only
# part of the planted mass (the numbers printed above), through the few chains that stray towards it. This is the
# bias of CD in its plainest form.
#
# ### Persistent contrastive divergence
#
# Tieleman's remedy (2008): do not restart the chains at the data for every update. Keep one set of chains, the
# **persistent chains**, and at each update advance them by the same $k$ MH steps from where the previous update
# left them; their states are the model samples $\tilde x_m$ of exercise 4's loss. Nothing else changes: the same
# loss, the same sampler, the same cost per update. Because $\theta$ moves little between updates, the chains stay
# close to samples of the current model, and across updates they add up to one long run: they wander wherever the
# model puts mass, the planted corner included, and the loss then pushes that mass down. To compare like with like,
# the persistent chains start where CD's chains start, at a data batch (256 points, the batch size), and continue
# from the same planted model, with the same steps and learning rate.

# %%
class PersistentChains:
    """PCD (Tieleman 2008): the model samples are MH chains kept from one update to the next."""

    def __init__(self, x0):                                    # x0 (M, 2): where the chains start
        self.x = x0.clone()

    def loss(self, model, x):                                  # the CD loss of exercise 4, chains not restarted
        with torch.no_grad():                                  # the sampler is not differentiated
            for _ in range(CD_K):
                self.x, accepted = mh_step(self.x, model.log_p_tilde, CD_SIGMA)
        return cd_loss(model, x, self.x), accepted.float().mean().item()


torch.manual_seed(0)
pcd = PersistentChains(x_train[torch.randperm(len(x_train))[:256]].to(device))
model, name = planted_start(a0), f"PCD-{CD_K}"
start = (grid_kl(model), corner_mass(model))
hist = train_or_load(model, LECTURE, f"planted_pcd{CD_K}", lambda: {
    **train_ebm(model, pcd.loss, PLANTED_STEPS, lr=1e-3), "chains": pcd.x.cpu()})   # the chains, kept with the weights
planted[name] = dict(model=model, start=start, kl=grid_kl(model), mass=corner_mass(model), a=model.a.item(), hist=hist)
print(f"{name:9s}: corner mass {start[1]:.3f} -> {planted[name]['mass']:.3f}, a {a0:.2f} -> "
      f"{planted[name]['a']:.2f}, KL {start[0]:.3f} -> {planted[name]['kl']:.3f} nats")

# %%
fig, axes = plt.subplots(1, 5, figsize=(21, 4))
panels = [("start: ML fit + planted bump", planted_start(a0))] + [(f"after {PLANTED_STEPS} steps of {n}", r["model"])
                                                                  for n, r in planted.items()]
for ax, (title, model) in zip(axes[:4], panels, strict=True):
    lz = model.log_Z(KL_N).item()
    plot.density_2d(lambda x, m=model, lz=lz: m(x) - lz, ax=ax, lim=LIM, n=160, device=device,
                    title=f"{title}\ncorner mass {corner_mass(model):.3f}")
    ax.plot(*x_train[:300].T, "w.", ms=1, alpha=0.5)
axes[3].plot(*planted[f"PCD-{CD_K}"]["hist"]["chains"].T, "r.", ms=2, alpha=0.6)   # where the persistent chains ended
for (name, r), color in zip(planted.items(), ["C0", "C1", "C3"], strict=True):
    axes[4].semilogy(r["hist"]["kl_step"], r["hist"]["kl"], color=color, label=name)
axes[4].set(xlabel="step", ylabel="KL(p || p_model) [nats]", title="after planting the bump")
axes[4].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# White dots: training data; red dots (fourth panel): the persistent chains at the end. The persistent chains are
# not tied to the data, so some of them reach the corner, and from then on the model's own samples show the
# spurious mass that the data lack: the loss lowers $f_\theta$ there until the chains leave. With the same loss,
# sampler and cost per update as CD, PCD removes far more of the planted mass (numbers printed above); what changed
# is only that the chains were not reset. The price is that the chains must keep up with the model: with a large
# learning rate, or a model whose modes move faster than the chains mix, the persistent samples lag behind (Tieleman
# keeps the learning rate small for this reason). Lecture 11 uses the same idea on MNIST with a replay buffer of
# persistent Langevin chains; the other remedies are samplers that start from noise, and objectives that need no
# samples of the model at all (score matching, noise-contrastive estimation).
#
# ## Results
#
# The headline numbers: $\mathrm{KL}(p\,\|\,p_\theta)$ on the fine grid for the exact-ML baseline and for CD-$k$
# (and CD-1), the test NLLs beside the true density's, the mass left on the planted mode by each method (exact ML,
# CD-$k$ and persistent CD-$k$), and the best mode-weight error of random-walk MH on the target.

# %%
elapsed = time.perf_counter() - T0
record(LECTURE, "ml_ebm_kl", ml_kl, "nats", n_data=N_TRAIN, wall_time_s=elapsed,
       note=f"KL(true || model) on a {KL_N}x{KL_N} grid; exact ML with log Z by quadrature ({GRID_N}^2 grid), "
            f"{TRAIN_STEPS} steps")
record(LECTURE, "cd_ebm_kl", cd_kl, "nats", n_data=N_TRAIN, wall_time_s=elapsed,
       note=f"KL(true || model) on a {KL_N}x{KL_N} grid; CD-{CD_K} with random-walk MH (sigma {CD_SIGMA}), "
            f"{TRAIN_STEPS} steps")
record(LECTURE, "cd1_ebm_kl", cd1_kl, "nats", n_data=N_TRAIN, wall_time_s=elapsed,
       note="KL(true || model) on the same grid; CD-1 (one MH step per update)")
record(LECTURE, "ml_ebm_test_nll", ml_nll, "nats", n_data=len(x_test), wall_time_s=elapsed,
       note=f"true density: {true_test_nll:.4f} nats")
record(LECTURE, "cd_ebm_test_nll", cd_nll, "nats", n_data=len(x_test), wall_time_s=elapsed,
       note=f"CD-{CD_K}; true density: {true_test_nll:.4f} nats")
for name, key in [("exact ML", "ml"), (f"CD-{CD_K}", "cd"), (f"PCD-{CD_K}", "pcd")]:
    record(LECTURE, f"{key}_planted_mode_mass", planted[name]["mass"], "probability", n_data=N_TRAIN,
           wall_time_s=elapsed, note=f"model mass within 1 of the planted mode at {C_SPURIOUS} after {PLANTED_STEPS} "
                                     f"steps of {name} (start {planted[name]['start'][1]:.3f}; true mass ~0)")
record(LECTURE, "mh_best_mode_weight_error", min(r["errors"][-1] for r in mh_runs.values()), "TV", n_data=N_CHAINS,
       wall_time_s=elapsed, note=f"random-walk MH on the target, best of sigma in {SIGMAS}, {MH_STEPS} steps")
print(f"whole notebook: {time.perf_counter() - T0:.0f} s in {MODE} mode")

# %% [markdown]
# **Discussion.** Measured in standard mode (20 000 training points, 3000 Adam steps per model): exact maximum
# likelihood reaches $\mathrm{KL}(p\,\|\,p_\theta) =$ 0.0067<!-- r:ml_ebm_kl --> nats on the $160 \times 160$ grid
# (test NLL 2.728<!-- r:ml_ebm_test_nll --> nats, against the true density's printed above), CD-20 reaches
# 0.0028<!-- r:cd_ebm_kl --> nats (test NLL 2.723<!-- r:cd_ebm_test_nll -->) and CD-1 0.0068<!-- r:cd1_ebm_kl -->
# nats. So on this problem contrastive divergence, which never evaluates $Z$, is as good as the exact-likelihood
# baseline. That CD-20 came out *below* the ML fit is not a ranking: all three are limited by the finite sample and
# by the noise of stochastic optimization, and differences of a few thousandths of a nat change order from one seed
# to the next (change the seeds of the data and of the initializations above to see it). What does separate the
# methods is the planted mode: exact ML cut its mass from 0.25 to 0.003<!-- r:ml_planted_mode_mass --> in 600 steps,
# CD-20 only to 0.141<!-- r:cd_planted_mode_mass -->; persistent CD-20, with the same cost per update, removes most
# of it and ends close to ML (printed above, and recorded as `pcd_planted_mode_mass`). Random-walk MH on the target reaches the Monte Carlo noise
# level of 2000 chains (a mode-weight error of about 0.01<!-- r:mh_best_mode_weight_error -->) within 1000 steps for
# every $\sigma$ from 0.3 up, within 100 steps for $\sigma = 1$ and $3$; the two smallest scales have not mixed.
# There is no published figure to compare with: the target is the course's own.
#
# ## Summary
#
# - An EBM is any $f_\theta$ with $p_\theta = e^{f_\theta}/Z(\theta)$. Ratios $p(x)/p(y) = e^{f(x) - f(y)}$ need
#   no $Z$; likelihoods and direct sampling do. In 2-D, $\log Z$ is a log-sum-exp over a grid; in $D$ dimensions
#   that grid has $n^D$ points.
# - A product of experts adds their $f$: an AND of models, sharper than each expert, with a new $Z$.
# - Metropolis–Hastings samples $p$ from $\tilde p$ alone: accept with $\min(1, \tilde p(x') q(x \mid x') /
#   (\tilde p(x) q(x' \mid x)))$. Detailed balance makes $p$ invariant; the Hastings factor is needed for an
#   asymmetric proposal. The proposal scale trades acceptance against step length, and acceptance alone does not
#   show mixing.
# - $\nabla_\theta \log Z = \mathbb E_{p_\theta}[\nabla_\theta f_\theta]$, so the likelihood gradient is "up on the
#   data, down on the model's samples". Contrastive divergence takes those samples from short MCMC runs started at
#   the data: cheap, biased, and, on this 2-D problem, close to exact maximum likelihood, but blind to mass far from
#   the data. Persistent CD keeps the chains across updates, so they reach such mass and the update removes it.
#
# ## References
#
# - G. E. Hinton, *Training Products of Experts by Minimizing Contrastive Divergence*, Neural Computation 14(8), 2002.
#   [doi:10.1162/089976602760128018](https://doi.org/10.1162/089976602760128018) (products of experts, CD).
# - M. A. Carreira-Perpiñán and G. E. Hinton, *On Contrastive Divergence Learning*, AISTATS 2005.
#   [PMLR R5:33-40](https://proceedings.mlr.press/r5/carreira-perpinan05a.html) (the bias of CD).
# - T. Tieleman, *Training Restricted Boltzmann Machines using Approximations to the Likelihood Gradient*, ICML 2008.
#   [doi:10.1145/1390156.1390290](https://doi.org/10.1145/1390156.1390290) (persistent CD).
# - N. Metropolis, A. W. Rosenbluth, M. N. Rosenbluth, A. H. Teller, E. Teller, *Equation of State Calculations by
#   Fast Computing Machines*, J. Chem. Phys. 21, 1953. [doi:10.1063/1.1699114](https://doi.org/10.1063/1.1699114)
# - W. K. Hastings, *Monte Carlo Sampling Methods Using Markov Chains and Their Applications*, Biometrika 57(1), 1970.
#   [doi:10.1093/biomet/57.1.97](https://doi.org/10.1093/biomet/57.1.97)
# - G. O. Roberts, A. Gelman, W. R. Gilks, *Weak Convergence and Optimal Scaling of Random Walk Metropolis
#   Algorithms*, Annals of Applied Probability 7(1), 1997. [doi:10.1214/aoap/1034625254](https://doi.org/10.1214/aoap/1034625254)
# - Y. LeCun, S. Chopra, R. Hadsell, M. Ranzato, F. J. Huang, *A Tutorial on Energy-Based Learning*, 2006.
#   [PDF](http://yann.lecun.com/exdb/publis/pdf/lecun-06.pdf)
# - Y. Song and D. P. Kingma, *How to Train Your Energy-Based Models*, 2021.
#   [arXiv:2101.03288](https://arxiv.org/abs/2101.03288) (the next lecture's methods too).
