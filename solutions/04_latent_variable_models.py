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
# # Lecture 04: Latent variable models
#
# A latent variable model explains each observation $x$ by an unobserved cause $z$: first draw $z \sim p(z)$,
# then $x \sim p(x \mid z)$. Both pieces can be simple while the marginal $p(x) = \int p(z)\, p(x \mid z)\, dz$
# is not. The price is that $p(x)$, and the posterior $p(z \mid x)$, now involve a sum or an integral over $z$.
# This lecture is about living with that price: computing, bounding and estimating those sums.
#
# **Learning goals.** After this lecture you can
# - explain why a simple conditional $p(x \mid z)$ gives a complex marginal $p(x)$;
# - fit a Gaussian mixture with EM, derive its E- and M-steps, and say why the likelihood never goes down;
# - estimate $\log p(x)$ by importance sampling, and explain why a good proposal matters and why the estimate
#   of $\log p(x)$ is biased low while that of $p(x)$ is not;
# - write the ELBO, prove $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q \,\|\, p(z \mid x))$ and check it numerically;
# - run mean-field variational inference with coordinate updates;
# - tell $\mathrm{KL}(q\,\|\,p)$ (mode seeking) from $\mathrm{KL}(p\,\|\,q)$ (mass covering), and place the
#   $\alpha$-divergences between them;
# - describe the wake-sleep algorithm and what it optimizes compared with the ELBO.
#
# **Builds on.** Lecture 01 (a mixture of two Gaussians as the graph $Z \to X$, Bayes' rule, ancestral
# sampling) and lecture 03 (KL divergence; maximum likelihood as minimum KL). Lecture 05 (variational
# autoencoders) builds directly on the ELBO and the importance-sampling estimator written here.
#
# **Plan.** 1 Why latent variables. 2 Gaussian mixtures and EM (exercises 1 and 2).
# 3 The marginal likelihood and importance sampling (exercise 3). 4 The ELBO (exercise 4). 5 Mean-field
# variational inference (exercise 5). 6 Which KL? 7 Wake-sleep. Then results, summary and references.

# %%
import math
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits
from torch.distributions import MultivariateNormal, Normal

from dgm_course import budget, plot, record, setup, toy, widgets
from dgm_course.exercises import lecture04
from dgm_course.runtime import progress

device, MODE = setup(seed=0, threads=1)                   # small tensors only: one thread is fastest
LECTURE = "04_latent_variable_models"
N_EM = budget(smoke=500, standard=2000, full=20000)        # points for the Gaussian mixture
EM_STEPS = budget(smoke=30, standard=100, full=300)        # EM iterations (ours and scikit-learn's)
N_REPEATS = budget(smoke=200, standard=1000, full=5000)    # repeated importance-sampling estimates
WS_STEPS = budget(smoke=300, standard=3000, full=10000)    # wake-sleep / ELBO training steps
CPU64 = dict(device="cpu", dtype=torch.float64)            # exact comparisons: float64, which MPS lacks

# %% [markdown]
# ## 1. Why latent variables
#
# Take one continuous latent $z \sim \mathcal N(0, 1)$ and a conditional that is just a Gaussian blob around a
# point on a curve, $x \mid z \sim \mathcal N\big(f(z), s^2 I\big)$ with $f(z) = 2.5\,(\sin 1.2z,\ \cos 1.2z)$.
# Every $p(x \mid z)$ is as simple as a density gets. The marginal
#
# $$p(x) = \int p(z)\, p(x \mid z)\, dz$$
#
# is an infinite mixture of these blobs, laid along the curve: a ring, dense at the top (near $z = 0$) and
# fading towards the bottom, that no single Gaussian, and no small table, describes. Sampling from it is trivial (ancestral sampling: $z$, then $x$). Evaluating it needs
# the integral; in one dimension we can do it by quadrature on a grid of $z$ values.

# %%
S_RING = 0.25


def ring_mean(z):                                     # f(z): (...,) -> (..., 2)
    return 2.5 * torch.stack([torch.sin(1.2 * z), torch.cos(1.2 * z)], -1)


def ring_log_px(x, n_quad=401):                       # x (M, 2) -> (M,), log of the integral by quadrature
    z = torch.linspace(-6, 6, n_quad)                              # (Q,)
    log_w = Normal(0.0, 1.0).log_prob(z) + math.log(z[1] - z[0])  # log p(z) dz
    log_lik = Normal(ring_mean(z), S_RING).log_prob(x[:, None, :]).sum(-1)   # (M, Q)
    return torch.logsumexp(log_w + log_lik, 1)


z_ring = torch.randn(2000)
x_ring = ring_mean(z_ring) + S_RING * torch.randn(2000, 2)       # ancestral sampling

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
axes[0].scatter(*x_ring.T, c=z_ring, cmap="coolwarm", s=3)
axes[0].set(title="samples, coloured by z", xlim=(-4, 4), ylim=(-4, 4), aspect="equal")
three_z = torch.tensor([-1.0, 0.0, 1.0])                          # three conditionals p(x | z), overlaid
plot.density_2d(lambda x: Normal(ring_mean(three_z), S_RING).log_prob(x[:, None, :]).sum(-1).logsumexp(1),
                ax=axes[1], n=150, title="p(x | z) for z = -1, 0, 1: simple")
plot.density_2d(ring_log_px, ax=axes[2], n=150, title="p(x) = ∫ p(z) p(x | z) dz: not simple")
fig.tight_layout()
plt.show()

# %% [markdown]
# The same idea runs through the rest of the course: a VAE (lecture 05) replaces $f$ by a neural network and
# $z$ by a vector, and a diffusion model (lecture 15) stacks a thousand such latent layers. The question is
# always the one above: how to learn $p(z)$ and $p(x \mid z)$ when we only see $x$.
#
# ## 2. Gaussian mixtures and EM
#
# The simplest latent variable is discrete. A **Gaussian mixture** with $K$ components is the graph $Z \to X$ of
# lecture 01:
#
# $$z \sim \mathrm{Cat}(\pi_1, \dots, \pi_K), \qquad x \mid z = k \sim \mathcal N(\mu_k, \Sigma_k),
# \qquad \log p(x) = \log \sum_{k=1}^K \pi_k\, \mathcal N(x; \mu_k, \Sigma_k).$$
#
# If we saw $z_n$ for every point, maximum likelihood would be counting and averaging: $\pi_k$ the fraction of
# points with $z_n = k$, $\mu_k$ and $\Sigma_k$ their mean and covariance. We do not see it, and the log of a sum
# has no closed-form maximizer. Below: data from a known four-component mixture, in float64 on the CPU (we
# will compare with scikit-learn to many digits).

# %%
def covariance(angle, sd1, sd2):                       # a rotated diagonal covariance, (2, 2)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, -s], [s, c]], **CPU64)
    return rot @ torch.diag(torch.tensor([sd1**2, sd2**2], **CPU64)) @ rot.T


pi_true = torch.tensor([0.35, 0.25, 0.25, 0.15], **CPU64)                         # (K,)
mu_true = torch.tensor([[-2.0, -1.0], [1.5, 1.8], [2.0, -1.5], [-1.2, 2.2]], **CPU64)  # (K, D)
Sigma_true = torch.stack([covariance(0.5, 0.9, 0.3), covariance(-0.3, 0.6, 0.4),
                          covariance(1.2, 0.8, 0.25), covariance(0.0, 0.4, 0.4)])  # (K, D, D)

gen = torch.Generator().manual_seed(0)
z_em = torch.multinomial(pi_true, N_EM, replacement=True, generator=gen)         # (N,)
eps = torch.randn(N_EM, 2, generator=gen, dtype=torch.float64)
x_em = mu_true[z_em] + (torch.linalg.cholesky(Sigma_true)[z_em] @ eps[..., None])[..., 0]   # (N, D)
print(f"{N_EM} points, counts per component: {torch.bincount(z_em).tolist()}")

# %% [markdown]
# The model's log joint $\log p(x_n, z_n = k) = \log \pi_k + \log \mathcal N(x_n; \mu_k, \Sigma_k)$ as an
# $(N, K)$ table, and the log-likelihood per point, $\frac1N \sum_n \log \sum_k p(x_n, z_n = k)$, computed with
# `logsumexp` so that nothing underflows:

# %%
def gmm_log_joint(x, pi, mu, Sigma):                  # x (N, D), pi (K,), mu (K, D), Sigma (K, D, D) -> (N, K)
    return pi.log() + MultivariateNormal(mu, Sigma).log_prob(x[:, None, :])


def gmm_loglik(x, pi, mu, Sigma):                     # mean log p(x_n), in nats per point
    return torch.logsumexp(gmm_log_joint(x, pi, mu, Sigma), 1).mean()


print(f"log-likelihood of the true parameters: {gmm_loglik(x_em, pi_true, mu_true, Sigma_true):.4f} nats/point")

# %% [markdown]
# ### The E-step
#
# EM alternates two steps. The **E-step** fills in the missing $z$ softly: with the current parameters, the
# posterior of each point's component, by Bayes' rule, is its **responsibility**
#
# $$r_{nk} = p(z_n = k \mid x_n) = \frac{\pi_k\, \mathcal N(x_n; \mu_k, \Sigma_k)}{\sum_{j=1}^K \pi_j\,
# \mathcal N(x_n; \mu_j, \Sigma_j)}, \qquad \sum_k r_{nk} = 1 .$$
#
# Far from every component each density is tiny (in 2-D, 40 standard deviations away it is about
# $e^{-800}$, which is $0$ even in float64) and the ratio becomes $0/0$. Compute it in log space:
# $\log r_{nk} = \log p(x_n, k) - \operatorname{logsumexp}_j \log p(x_n, j)$.
#
# **Exercise 1 (E-step).** Return the $(N, K)$ responsibilities, as a new tensor (the arguments are float64, and
# EM reuses them: do not modify them in place). You may use `gmm_log_joint`.

# %% tags=["solution:ex1_e_step"]
def e_step(x, pi, mu, Sigma):
    """Responsibilities r[n, k] = p(z_n = k | x_n): x (N, D), pi (K,), mu (K, D), Sigma (K, D, D) -> (N, K)."""
    ### BEGIN SOLUTION
    log_joint = gmm_log_joint(x, pi, mu, Sigma)                    # (N, K)
    return torch.softmax(log_joint, dim=1)                         # normalize over k, in log space
    ### END SOLUTION


# %% tags=["check:ex1_e_step"]
lecture04.check_e_step(e_step)

# %% [markdown]
# ### The M-step
#
# The **M-step** treats the responsibilities as fractional labels and maximizes the expected complete-data
# log-likelihood
#
# $$Q(\theta) = \sum_{n=1}^N \sum_{k=1}^K r_{nk} \big[\log \pi_k + \log \mathcal N(x_n; \mu_k, \Sigma_k)\big].$$
#
# Setting its derivatives to zero (with a Lagrange multiplier for $\sum_k \pi_k = 1$) gives, with
# $N_k = \sum_n r_{nk}$ the effective number of points of component $k$,
#
# $$\pi_k = \frac{N_k}{N}, \qquad \mu_k = \frac{1}{N_k} \sum_n r_{nk}\, x_n, \qquad
# \Sigma_k = \frac{1}{N_k} \sum_n r_{nk}\, (x_n - \mu_k)(x_n - \mu_k)^\top,$$
#
# the weighted versions of counting and averaging; note that $\Sigma_k$ is centred at the *new* $\mu_k$.
#
# **Exercise 2 (M-step).** Return `(pi, mu, Sigma)` with shapes $(K,)$, $(K, D)$, $(K, D, D)$, without modifying
# `x` or `r` in place.

# %% tags=["solution:ex2_m_step"]
def m_step(x, r):
    """Parameters maximizing Q: x (N, D), r (N, K) -> pi (K,), mu (K, D), Sigma (K, D, D)."""
    ### BEGIN SOLUTION
    N_k = r.sum(0)                                                 # (K,)
    pi = N_k / len(x)
    mu = r.T @ x / N_k[:, None]                                    # (K, D)
    diff = x[:, None, :] - mu                                      # (N, K, D)
    Sigma = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / N_k[:, None, None]
    return pi, mu, Sigma
    ### END SOLUTION


# %% tags=["check:ex2_m_step"]
lecture04.check_m_step(m_step)

# %% [markdown]
# ### Running EM
#
# Initialization: $K$ data points chosen at random as means, the data covariance for every component, equal
# weights. EM only climbs to the nearest stationary point of the likelihood, so we run it from a few random
# initializations and keep the best, the standard remedy (scikit-learn's `n_init`). We keep the parameters of
# every iteration (for the figures and the widget) and assert that the log-likelihood never decreases;
# section 4 proves that it cannot.

# %%
def em(x, pi, mu, Sigma, steps):
    """EM for a Gaussian mixture: the list of (pi, mu, Sigma) after 0, 1, ..., steps iterations."""
    params = [(pi, mu, Sigma)]
    for _ in range(steps):
        r = e_step(x, pi, mu, Sigma)                               # (N, K)
        pi, mu, Sigma = m_step(x, r)
        params.append((pi, mu, Sigma))
    return params


def random_init(x, K, seed):                          # K random points as means, the data covariance, equal weights
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:K]
    return torch.full((K,), 1.0 / K, **CPU64), x[idx].clone(), torch.cov(x.T).expand(K, 2, 2).clone()

# %%
K, N_INITS = 4, 5
runs = []
for seed in range(N_INITS):
    t0 = time.perf_counter()
    params = em(x_em, *random_init(x_em, K, seed), steps=EM_STEPS)
    loglik = torch.stack([gmm_loglik(x_em, *p) for p in params])              # (steps + 1,)
    assert (loglik.diff() >= -1e-10).all(), "EM decreased the log-likelihood"
    runs.append({"seed": seed, "params": params, "loglik": loglik, "time": time.perf_counter() - t0})
    print(f"init {seed}: log-likelihood {loglik[0]:.4f} -> {loglik[-1]:.4f} nats/point")
best = max(runs, key=lambda run: run["loglik"][-1].item())
em_params, em_loglik, em_time = best["params"], best["loglik"], best["time"]
print(f"best: init {best['seed']}, {EM_STEPS} iterations in {em_time:.2f} s; "
      f"the true parameters give {gmm_loglik(x_em, pi_true, mu_true, Sigma_true):.4f}")

# %%
def draw_ellipses(ax, mu, Sigma, **style):            # 2-standard-deviation ellipse of each component
    t = torch.linspace(0, 2 * math.pi, 100, dtype=Sigma.dtype)
    circle = torch.stack([t.cos(), t.sin()])                       # (2, 100)
    for m, S in zip(mu, Sigma, strict=True):
        ax.plot(*(m[:, None] + 2 * torch.linalg.cholesky(S) @ circle), **style)


fig, axes = plt.subplots(1, 4, figsize=(17, 4))
for ax, t in zip(axes[:3], (0, 3, EM_STEPS), strict=True):
    plot.scatter_2d(x_em, ax=ax, lim=4.5, c="0.6", title=f"EM iteration {t} (init {best['seed']})")
    draw_ellipses(ax, *em_params[t][1:], color="C3", lw=2)
    draw_ellipses(ax, mu_true, Sigma_true, color="k", ls=":", lw=1)
for run in runs:
    axes[3].plot(run["loglik"].numpy(), lw=2.5 if run is best else 1, label=f"init {run['seed']}")
axes[3].set(xlabel="iteration", ylabel="log-likelihood (nats/point)", title="EM from each initialization")
axes[3].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Red: EM's components; dotted black: the true ones. Each curve rises fast and then flattens: EM converges to a
# stationary point of the likelihood, and which one depends on the initialization; a run that ends lower has
# typically merged two true components and split another. Move
# the slider to step through the iterations; points are coloured by their most responsible component.

# %%
def show_em_step(t=0):
    pi, mu, Sigma = em_params[t]
    r = e_step(x_em, pi, mu, Sigma)                                # (N, K)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(*x_em.T, c=r.argmax(1), cmap="tab10", vmin=0, vmax=9, s=3)
    draw_ellipses(axes[0], mu, Sigma, color="k", lw=2)
    axes[0].set(xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), aspect="equal", title=f"iteration {t}")
    axes[1].plot(em_loglik.numpy())
    axes[1].plot(t, em_loglik[t].item(), "o", color="C3")
    axes[1].set(xlabel="iteration", ylabel="log-likelihood (nats/point)", title=f"{em_loglik[t]:.4f}")
    fig.tight_layout()
    plt.show()


widgets.interactive_plot(show_em_step, t=widgets.slider(0, 0, EM_STEPS, description="EM step"))

# %% [markdown]
# ### The same thing, by scikit-learn
#
# scikit-learn's `GaussianMixture` runs the same algorithm. To compare like with like we give it our
# initialization (`weights_init`, `means_init`, and `precisions_init` = the inverse covariances), turn off its
# stopping rule (`tol=0`, so it does exactly `max_iter` iterations) and its `reg_covar` (a small constant it
# adds to each covariance's diagonal for stability; ours has none). Its `lower_bounds_` are the log-likelihoods
# before each M-step, i.e. our curve without its last point.

# %%
t0 = time.perf_counter()
sk = GaussianMixture(K, covariance_type="full", tol=0.0, reg_covar=0.0, max_iter=EM_STEPS,
                     weights_init=em_params[0][0].numpy(), means_init=em_params[0][1].numpy(),
                     precisions_init=torch.linalg.inv(em_params[0][2]).numpy())
with warnings.catch_warnings(), threadpool_limits(1):    # a 2-D problem: one BLAS thread is fastest
    warnings.simplefilter("ignore", ConvergenceWarning)   # tol=0 never "converges"; that is intended
    sk.fit(x_em.numpy())
sk_time = time.perf_counter() - t0

sk_loglik = sk.score(x_em.numpy())                       # mean log p(x_n) at its final parameters
em_vs_sklearn = abs(em_loglik[-1].item() - sk_loglik)
curve_diff = np.abs(np.asarray(sk.lower_bounds_) - em_loglik[:-1].numpy()).max()
param_diff = max(np.abs(sk.means_ - em_params[-1][1].numpy()).max(),
                 np.abs(sk.covariances_ - em_params[-1][2].numpy()).max())
print(f"final log-likelihood: ours {em_loglik[-1]:.10f}, scikit-learn {sk_loglik:.10f}, |diff| = {em_vs_sklearn:.2e}")
print(f"largest difference along the curve {curve_diff:.2e}, in the parameters {param_diff:.2e}")
assert em_vs_sklearn <= 1e-3

# %% [markdown]
# The two agree to rounding error (about $10^{-15}$), far inside the $10^{-3}$ we asked for: the same
# algorithm from the same start, in float64.
#
# ## 3. The marginal likelihood and importance sampling
#
# For a continuous $z$ the sum over components becomes an integral,
# $p(x) = \int p(z)\, p(x \mid z)\, dz$, and in more than two or three dimensions no grid can do it. To test
# estimators we need a model where the answer is known: the **linear-Gaussian model** (probabilistic PCA,
# factor analysis with equal noise)
#
# $$z \sim \mathcal N(0, I_d), \qquad x \mid z \sim \mathcal N(Wz + b,\ \sigma^2 I_D).$$
#
# Everything about it is Gaussian and exact:
# $p(x) = \mathcal N(x;\ b,\ WW^\top + \sigma^2 I)$ and $p(z \mid x) = \mathcal N(m, S)$ with
# $S = (I + W^\top W / \sigma^2)^{-1}$ and $m = S\, W^\top (x - b) / \sigma^2$.

# %%
class LinearGaussian:
    """z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D): the exact p(x) and p(z | x) of probabilistic PCA."""

    def __init__(self, W, b, sigma):
        self.W, self.b, self.sigma = W, b, sigma                   # (D, d), (D,), float

    @classmethod
    def random(cls, d, D, sigma, seed, **tensor_kw):
        gen = torch.Generator().manual_seed(seed)
        W = torch.randn(D, d, generator=gen, dtype=torch.float64)
        b = torch.randn(D, generator=gen, dtype=torch.float64)
        return cls(W.to(**tensor_kw), b.to(**tensor_kw), sigma)

    def log_joint(self, x, z):                        # x (N, D), z (..., N, d) -> (..., N)
        log_prior = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)   # log N(z; 0, I)
        return log_prior + Normal(z @ self.W.T + self.b, self.sigma).log_prob(x).sum(-1)

    def log_px(self, x):                              # x (N, D) -> (N,), exact
        D = len(self.b)
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(D, dtype=self.W.dtype, device=self.W.device)
        return MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):                           # x (N, D) -> mean m (N, d), covariance S (d, d)
        d = self.W.shape[1]
        S = torch.linalg.inv(torch.eye(d, dtype=self.W.dtype, device=self.W.device) + self.W.T @ self.W / self.sigma**2)
        return (x - self.b) @ self.W @ S / self.sigma**2, S

    def sample(self, n):                              # ancestral sampling: (n, D)
        z = torch.randn(n, self.W.shape[1], dtype=self.W.dtype, device=self.W.device)
        noise = torch.randn(n, len(self.b), dtype=self.W.dtype, device=self.W.device)
        return z @ self.W.T + self.b + self.sigma * noise

# %% [markdown]
# **Importance sampling.** For any proposal $q(z)$ that is positive wherever $p(x, z)$ is,
#
# $$p(x) = \int q(z)\, \frac{p(x, z)}{q(z)}\, dz = \mathbb E_{z \sim q}\big[w(z)\big], \qquad
# w(z) = \frac{p(x, z)}{q(z)},$$
#
# so $\hat p(x) = \frac1K \sum_{k=1}^K w(z_k)$ with $z_k \sim q$ is an **unbiased** estimate of $p(x)$. The
# prior is always available as a proposal ($w = p(x \mid z)$), but when the posterior is much narrower than the
# prior most prior samples explain $x$ badly and a rare few carry all the weight. The best proposal is the
# posterior itself: then $w(z) = p(x)$ for every $z$ and the estimator has zero variance.
#
# In code the weights live in log space: with a few thousand observed dimensions $\log p(x, z)$ is easily
# $-2000$, and $e^{-2000}$ is $0$ in floating point. The estimate is
#
# $$\log \hat p(x) = \operatorname{logsumexp}_{k}\big(\log p(x, z_k) - \log q(z_k)\big) - \log K .$$
#
# **Exercise 3 (importance sampling).** `log_joint(x, z)` maps $x$ $(N, D)$ and $z$ $(K, N, d)$ to $(K, N)$; `q`
# is a `torch.distributions.Normal` with batch shape $(N, d)$ (independent coordinates; sum its `log_prob` over
# $d$). Draw $K$ samples for each point and return $\log \hat p(x)$, shape $(N,)$.

# %% tags=["solution:ex3_importance_log_px"]
def importance_log_px(log_joint, q, x, K):
    """Importance-sampling estimate of log p(x) with K samples from q: x (N, D) -> (N,)."""
    ### BEGIN SOLUTION
    z = q.sample((K,))                                             # (K, N, d)
    log_w = log_joint(x, z) - q.log_prob(z).sum(-1)                # (K, N)
    return torch.logsumexp(log_w, 0) - math.log(K)
    ### END SOLUTION


# %% tags=["check:ex3_importance_log_px"]
lecture04.check_importance_log_px(importance_log_px)

# %% [markdown]
# ### Prior vs a good proposal, measured
#
# A model with $d = 2$, $D = 6$ and small noise, so that the posterior is about six times narrower than the
# prior in each direction. For one data point we repeat the estimate `N_REPEATS` times for each $K$ (all
# repeats at once: the point is copied along the batch dimension), with two proposals: the prior, and a
# "good" one, the posterior's mean with $1.2\times$ its marginal standard deviations and no correlation
# (close to the posterior, but not equal to it).

# %%
lg = LinearGaussian.random(d=2, D=6, sigma=0.3, seed=2, device=device, dtype=torch.float32)
torch.manual_seed(3)
x_star = lg.sample(1)                                              # (1, D)
log_px_star = lg.log_px(x_star).item()
m_star, S_star = lg.posterior(x_star)                              # (1, d), (d, d)
x_rep = x_star.expand(N_REPEATS, -1)                               # (R, D)
proposals = {"prior": Normal(x_rep.new_zeros(N_REPEATS, 2), x_rep.new_ones(N_REPEATS, 2)),
             "good": Normal(m_star.expand(N_REPEATS, -1), 1.2 * S_star.diagonal().sqrt().expand(N_REPEATS, -1))}
print(f"exact log p(x) = {log_px_star:.4f}; posterior std {S_star.diagonal().sqrt().tolist()} vs prior std 1")

Ks = [1, 3, 10, 30, 100, 300, 1000]
torch.manual_seed(4)
estimates = {name: torch.stack([importance_log_px(lg.log_joint, q, x_rep, k) for k in Ks]).cpu().double()
             for name, q in proposals.items()}                     # name -> (len(Ks), R)

# %% [markdown]
# Three things to read off, per $K$: the spread of $\log \hat p(x)$; its mean minus the truth (the bias); and
# the mean of the ratio $\hat p(x) / p(x)$, which should be 1 (unbiased), with its standard error.

# %%
print(" K   | std log p^: prior    good   | E[log p^] - log p: prior     good  | E[p^/p]: prior          good")
for i, k in enumerate(Ks):
    row = f"{k:4d} |"
    row += "".join(f" {estimates[nm][i].std():11.4f}" for nm in proposals) + "   |"
    row += "".join(f" {estimates[nm][i].mean() - log_px_star:12.4f}" for nm in proposals) + "   |"
    for nm in proposals:
        ratio = (estimates[nm][i] - log_px_star).exp()
        row += f"  {ratio.mean():.3f} ± {ratio.std() / math.sqrt(N_REPEATS):.3f}"
    print(row)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for nm in proposals:
    axes[0].loglog(Ks, estimates[nm].std(1), "o-", label=f"q = {nm}")
    axes[1].semilogx(Ks, estimates[nm].mean(1) - log_px_star, "o-", label=f"q = {nm}")
axes[0].set(xlabel="K", ylabel="std of log p̂(x)", title="spread: ~ 1/√K, much smaller for a good q")
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set_yscale("symlog", linthresh=1e-2)
axes[1].set(xlabel="K", ylabel="E[log p̂(x)] - log p(x)", title="log p̂ is biased low (Jensen)")
ratio = (estimates["prior"][Ks.index(10)] - log_px_star).exp()
axes[2].hist(ratio.numpy(), bins=60)
axes[2].axvline(ratio.mean(), color="C3", label=f"mean {ratio.mean():.2f}")
axes[2].axvline(ratio.median(), color="k", ls=":", label=f"median {ratio.median():.2f}")
axes[2].set(xlabel="p̂(x) / p(x)", title="prior proposal, K = 10: unbiased but skewed")
for ax in axes:
    ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# - The standard deviation falls like $1/\sqrt K$ for both proposals, but the good proposal starts far lower:
#   the same accuracy with orders of magnitude fewer samples.
# - $\hat p(x)$ is unbiased, yet its distribution is skewed: usually a little too small, occasionally much too
#   large. Taking the log turns this into a **negative bias**: by Jensen's inequality (log is concave)
#   $\mathbb E[\log \hat p(x)] \le \log \mathbb E[\hat p(x)] = \log p(x)$. The bias shrinks as $K$ grows; for
#   large $K$ it is about $-\mathrm{Var}[\hat p]/(2p^2)$, so it too falls like $1/K$.
#
# With $K = 1$ the bound $\mathbb E_q[\log w(z)]$ is exactly the ELBO of the next section; for $K > 1$ it is the
# importance-weighted bound of lecture 05 (IWAE).

# %%
i1 = Ks.index(1)
assert (estimates["prior"][i1].mean() - log_px_star) < -3 * estimates["prior"][i1].std() / math.sqrt(N_REPEATS)
good_ratio = (estimates["good"] - log_px_star).exp()                 # (len(Ks), R)
assert ((good_ratio.mean(1) - 1).abs() < 4 * good_ratio.std(1) / math.sqrt(N_REPEATS) + 1e-3).all()
i100 = Ks.index(100)
is_std_prior, is_std_good = (estimates[nm][i100].std().item() for nm in ("prior", "good"))
print(f"K = 100: std of log p̂(x) {is_std_prior:.4f} (prior) vs {is_std_good:.4f} (good proposal), "
      f"variance ratio {is_std_prior**2 / is_std_good**2:.0f}")

# %% [markdown]
# ## 4. The evidence lower bound (ELBO)
#
# For any distribution $q(z)$, write $\log p(x) = \log p(x, z) - \log p(z \mid x)$, add and subtract
# $\log q(z)$, and average over $z \sim q$:
#
# $$\log p(x) = \underbrace{\mathbb E_{q}\big[\log p(x, z) - \log q(z)\big]}_{\mathrm{ELBO}(q)}
#  + \underbrace{\mathbb E_{q}\Big[\log \frac{q(z)}{p(z \mid x)}\Big]}_{\mathrm{KL}(q \,\|\, p(z \mid x))\ \ge\ 0}.$$
#
# The left side does not depend on $q$. So the ELBO is a lower bound on $\log p(x)$, the gap is exactly
# $\mathrm{KL}(q \,\|\, p(z \mid x))$ ($q$ first: the reverse, mode-seeking KL of section 6), and maximizing the
# ELBO over $q$ is the same as making $q$ close to the posterior in that divergence. The bound is tight when
# $q = p(z \mid x)$. Two other ways to write it: $\mathrm{ELBO} = \mathbb E_q[\log p(x \mid z)] -
# \mathrm{KL}(q \,\|\, p(z))$ (fit the data, stay near the prior) and $\mathbb E_q[\log p(x,z)] + H(q)$.
#
# On the linear-Gaussian model with a Gaussian $q = \mathcal N(m_q, S_q)$ every term is a closed form:
#
# $$\mathbb E_q[\log p(z)] = -\tfrac12\big(d \log 2\pi + \|m_q\|^2 + \operatorname{tr} S_q\big),\quad
# \mathbb E_q[\log p(x \mid z)] = -\tfrac12\Big(D \log 2\pi\sigma^2 + \tfrac{\|x - b - W m_q\|^2
#  + \operatorname{tr}(W S_q W^\top)}{\sigma^2}\Big),\quad H(q) = \tfrac12 \log\det(2\pi e\, S_q).$$
#
# (The middle one uses $\mathbb E_q\big[\|x - b - Wz\|^2\big] = \|x - b - W m_q\|^2 + \operatorname{tr}(W S_q W^\top)$.)
#
# **Exercise 4 (the ELBO in closed form).** For a `LinearGaussian` model (`model.W` $(D, d)$, `model.b` $(D,)$,
# `model.sigma` a float, the noise's standard deviation), one data point `x` $(D,)$ and
# $q = \mathcal N(m_q, S_q)$ with a full covariance `S_q` $(d, d)$, return the ELBO
# $\mathbb E_q[\log p(z)] + \mathbb E_q[\log p(x \mid z)] + H(q)$ as one number (a 0-d tensor), without modifying
# the arguments. The check tests the identity below on random $q$, for which it computes $p(x)$ and
# $p(z \mid x)$ itself.

# %% tags=["solution:ex4_elbo_gaussian"]
def elbo_gaussian(model, x, m_q, S_q):
    """The exact ELBO of q = N(m_q, S_q) for one x on the linear-Gaussian model: x (D,), m_q (d,), S_q (d, d) -> ()."""
    ### BEGIN SOLUTION
    d, D, s2 = len(m_q), len(x), model.sigma**2
    e_log_prior = -0.5 * (d * math.log(2 * math.pi) + m_q @ m_q + S_q.trace())
    resid = x - model.b - model.W @ m_q                                            # (D,)
    e_log_lik = -0.5 * (D * math.log(2 * math.pi * s2) + (resid @ resid + (model.W @ S_q @ model.W.T).trace()) / s2)
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * S_q)
    return e_log_lik + e_log_prior + entropy
    ### END SOLUTION


# %% tags=["check:ex4_elbo_gaussian"]
lecture04.check_elbo_gaussian(elbo_gaussian)

# %% [markdown]
# The KL between two Gaussians with full covariances, for the other side of the identity:

# %%
def kl_gaussian(m_q, S_q, m_p, S_p):                  # KL(N(m_q, S_q) || N(m_p, S_p)), exact
    P = torch.linalg.inv(S_p)
    dm = m_p - m_q
    return 0.5 * ((P @ S_q).trace() + dm @ P @ dm - len(m_q) + torch.logdet(S_p) - torch.logdet(S_q))

# %% [markdown]
# The identity, checked on random Gaussians $q$ (float64, CPU), and once more with a Monte Carlo ELBO:

# %%
lg64 = LinearGaussian(lg.W.to(**CPU64), lg.b.to(**CPU64), lg.sigma)     # the same model in float64
x64 = x_star[0].to(**CPU64)
log_px64 = lg64.log_px(x64[None])[0]
m_post, S_post = lg64.posterior(x64[None])
m_post = m_post[0]
gen = torch.Generator().manual_seed(5)
identity_err = 0.0
for _ in range(5):
    A = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    m_q, S_q = m_post + torch.randn(2, generator=gen, dtype=torch.float64), A @ A.T + 0.05 * torch.eye(2, **CPU64)
    elbo, kl = elbo_gaussian(lg64, x64, m_q, S_q), kl_gaussian(m_q, S_q, m_post, S_post)
    identity_err = max(identity_err, abs(log_px64 - elbo - kl).item())
    print(f"ELBO {elbo:10.4f} + KL {kl:9.4f} = {elbo + kl:.10f}   log p(x) = {log_px64:.10f}")
assert identity_err < 1e-9
tight_gap = (log_px64 - elbo_gaussian(lg64, x64, m_post, S_post)).item()
print(f"largest |log p(x) - ELBO - KL| = {identity_err:.1e};  with q = p(z|x): log p(x) - ELBO = {tight_gap:.1e}")

# %%
q_mc = MultivariateNormal(m_q, S_q)                                # the last random q above
z = q_mc.sample((100_000,))                                        # (M, d)
terms = lg64.log_joint(x64[None], z[:, None, :])[:, 0] - q_mc.log_prob(z)      # (M,)
print(f"Monte Carlo ELBO {terms.mean():.4f} ± {terms.std() / math.sqrt(len(terms)):.4f}, closed form {elbo:.4f}")
assert abs(terms.mean() - elbo) < 5 * terms.std() / math.sqrt(len(terms))

# %% [markdown]
# ### Why EM never decreases the likelihood
#
# The identity holds for a discrete $z$ too, with sums in place of integrals, and it explains EM. Write
# $\mathcal L(q, \theta) = \sum_n \mathrm{ELBO}_n(q_n, \theta)$. The **E-step** sets $q_n = p_\theta(z \mid x_n)$,
# which makes the KL zero: $\mathcal L(q, \theta_t) = \log p_{\theta_t}(x)$. The **M-step** maximizes
# $\mathcal L(q, \theta)$ over $\theta$; with $q$ fixed that is $Q(\theta)$ plus the entropy of $q$, which does not
# depend on $\theta$. Hence
#
# $$\log p_{\theta_{t+1}}(x) \ \ge\ \mathcal L(q, \theta_{t+1}) \ \ge\ \mathcal L(q, \theta_t) = \log p_{\theta_t}(x).$$
#
# EM is coordinate ascent on the ELBO. The chain, checked on our EM run:

# %%
def gmm_elbo(x, q, pi, mu, Sigma):                    # mean over points of sum_k q (log p(x, k) - log q)
    log_joint = gmm_log_joint(x, pi, mu, Sigma)                    # (N, K)
    return (q * (log_joint - q.clamp_min(1e-300).log())).sum(1).mean()


for t in (0, 1, 5):
    q = e_step(x_em, *em_params[t])
    chain = [em_loglik[t], gmm_elbo(x_em, q, *em_params[t]), gmm_elbo(x_em, q, *em_params[t + 1]), em_loglik[t + 1]]
    assert abs(chain[0] - chain[1]) < 1e-10 and chain[1] <= chain[2] + 1e-12 and chain[2] <= chain[3] + 1e-12
    print(f"t = {t}: log p(θ_t) = {chain[0]:.6f} = L(q, θ_t) = {chain[1]:.6f} <= L(q, θ_t+1) = {chain[2]:.6f}"
          f" <= log p(θ_t+1) = {chain[3]:.6f}")

# %% [markdown]
# ### Widget: the ELBO as a function of q
#
# A linear-Gaussian model with a one-dimensional $z$, one observed $x$, and $q = \mathcal N(m_q, s_q^2)$.
# Move $q$ and watch the ELBO (blue), the fixed $\log p(x)$ (black) and their gap, which is
# $\mathrm{KL}(q\,\|\,p(z \mid x))$. It starts at the prior; the gap closes only when $q$ sits on the posterior.

# %%
lg1 = LinearGaussian.random(d=1, D=3, sigma=0.7, seed=6)
x1 = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
log_px1 = lg1.log_px(x1[None])[0].item()
m1, S1 = lg1.posterior(x1[None])
z_axis = torch.linspace(-4, 4, 400, dtype=torch.float64)


def show_elbo(m_q=0.0, s_q=1.0):
    S_q = torch.tensor([[s_q**2]], dtype=torch.float64)
    elbo = elbo_gaussian(lg1, x1, torch.tensor([m_q], dtype=torch.float64), S_q).item()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].plot(z_axis, Normal(m1[0, 0], S1[0, 0].sqrt()).log_prob(z_axis).exp(), "k", label="p(z | x)")
    axes[0].plot(z_axis, Normal(m_q, s_q).log_prob(z_axis).exp(), "C0", label="q(z)")
    axes[0].set(xlabel="z", ylim=(0, None), title=f"posterior N({m1[0, 0]:.2f}, {S1[0, 0].sqrt():.2f}²)")
    axes[0].legend()
    axes[1].bar(["ELBO", "log p(x)"], [elbo, log_px1], color=["C0", "k"])
    axes[1].set(ylim=(min(elbo, log_px1) - 1, max(0.0, log_px1 + 1)), title=f"gap = KL = {log_px1 - elbo:.3f}")
    fig.tight_layout()
    plt.show()
    return elbo, log_px1 - elbo


widgets.interactive_plot(show_elbo, m_q=widgets.slider(0.0, -3.0, 3.0, description="mean m_q"),
                         s_q=widgets.slider(1.0, 0.05, 2.0, description="std s_q"))

# %% [markdown]
# ## 5. Mean-field variational inference
#
# When the posterior is out of reach we choose a family of $q$ and maximize the ELBO over it. The classic
# family is **mean field**: $q(z) = \prod_j q_j(z_j)$, independent coordinates. Holding all factors but one
# fixed, the ELBO as a function of $q_j$ is $-\mathrm{KL}\big(q_j \,\|\, \tilde p_j\big)$ + const with
# $\log \tilde p_j(z_j) = \mathbb E_{q_{-j}}[\log p(x, z)]$, so the best factor is
#
# $$q_j^*(z_j) \ \propto\ \exp\Big(\mathbb E_{q_{-j}}\big[\log p(x, z)\big]\Big),$$
#
# the expectation taken over all the *other* coordinates. Cycling through $j$ is **coordinate ascent
# variational inference** (CAVI); each update maximizes the ELBO in one factor, so the ELBO never decreases.
#
# For the linear-Gaussian model, $\log p(x, z)$ is quadratic in $z$:
# $\log p(x, z) = -\tfrac12 z^\top \Lambda z + \eta^\top z + \text{const}$ with precision
# $\Lambda = I + W^\top W / \sigma^2$ and $\eta = W^\top (x - b) / \sigma^2$. Collecting the terms in $z_j$ and
# replacing every other $z_i$ by its mean $m_i = \mathbb E_{q_i}[z_i]$ gives a Gaussian:
#
# $$q_j^* = \mathcal N\Big(\frac{\eta_j - \sum_{i \ne j} \Lambda_{ji}\, m_i}{\Lambda_{jj}},\ \ \frac{1}{\Lambda_{jj}}\Big).$$
#
# **Exercise 5 (a mean-field update).** Given the current means `m` $(d,)$ of all factors, the precision `Lambda`
# $(d, d)$ and `eta` $(d,)$, return the mean and the variance of the optimal $q_j$ (two numbers: 0-d tensors or
# floats), leaving `m` as it is (the caller writes the update into it).

# %% tags=["solution:ex5_mean_field_update"]
def mean_field_update(j, m, Lambda, eta):
    """The optimal factor q_j = N(mean_j, var_j) given the means m (d,) of the others: returns (mean_j, var_j)."""
    ### BEGIN SOLUTION
    others = Lambda[j] @ m - Lambda[j, j] * m[j]                   # sum over i != j of Lambda_ji m_i
    return (eta[j] - others) / Lambda[j, j], 1.0 / Lambda[j, j]
    ### END SOLUTION


# %% tags=["check:ex5_mean_field_update"]
lecture04.check_mean_field_update(mean_field_update)

# %% [markdown]
# A posterior with strong correlation: two latent causes whose effects on $x$ are almost the same
# (nearly parallel columns of $W$). Seeing $x$ tells us their sum well but not how it splits: **explaining
# away**, a strongly negative posterior correlation. We run CAVI from $q = $ prior and track the ELBO after
# every single-coordinate update.

# %%
W_ea = torch.tensor([[1.0, 0.9], [0.9, 1.0], [1.0, 1.0]], **CPU64)    # (D, d), nearly parallel columns
lg_ea = LinearGaussian(W_ea, torch.zeros(3, **CPU64), sigma=0.5)
x_ea = torch.tensor([1.5, 1.5, 1.8], **CPU64)
Lambda = torch.eye(2, **CPU64) + W_ea.T @ W_ea / lg_ea.sigma**2       # (d, d) posterior precision
eta = W_ea.T @ (x_ea - lg_ea.b) / lg_ea.sigma**2                       # (d,)
m_ea, S_ea = lg_ea.posterior(x_ea[None])
print(f"posterior correlation {S_ea[0, 1] / S_ea.diagonal().prod().sqrt():.3f}")

m, v = torch.zeros(2, **CPU64), torch.ones(2, **CPU64)
path, elbos = [m.clone()], [elbo_gaussian(lg_ea, x_ea, m, torch.diag(v)).item()]
for _ in range(100):                                               # sweeps
    for j in range(2):
        m[j], v[j] = mean_field_update(j, m, Lambda, eta)
        path.append(m.clone())
        elbos.append(elbo_gaussian(lg_ea, x_ea, m, torch.diag(v)).item())
assert all(b >= a - 1e-12 for a, b in zip(elbos, elbos[1:], strict=False)), "CAVI decreased the ELBO"
log_px_ea = lg_ea.log_px(x_ea[None])[0].item()
mf_var_ratio = (v / S_ea.diagonal()).max().item()
print(f"means: mean field {m.tolist()} vs posterior {m_ea[0].tolist()}")
print(f"variances: mean field {v.tolist()} vs posterior marginals {S_ea.diagonal().tolist()}")
print(f"final ELBO {elbos[-1]:.4f} < log p(x) {log_px_ea:.4f}: gap {log_px_ea - elbos[-1]:.4f} nats")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
draw_ellipses(axes[0], m_ea, S_ea[None], color="k", lw=2, label="p(z | x)")
draw_ellipses(axes[0], m[None], torch.diag(v)[None], color="C3", lw=2, label="mean-field q")
axes[0].plot(*torch.stack(path).T, ".-", color="C0", ms=4, lw=1, label="CAVI path of the means")
axes[0].set(aspect="equal", xlabel="z1", ylabel="z2", title="explaining away: q is too narrow")
axes[0].legend(fontsize=8)
axes[1].plot(elbos, label="ELBO after each update")
axes[1].axhline(log_px_ea, color="k", ls=":", label="log p(x)")
axes[1].set(xlabel="coordinate update", ylabel="nats", ylim=(elbos[4] - 1, log_px_ea + 0.5))
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# Mean field finds the exact posterior mean but its variances are those of the *conditionals*
# ($1/\Lambda_{jj}$), much smaller than the marginal variances: a factorized $q$ cannot tilt, and
# $\mathrm{KL}(q\,\|\,p)$ penalizes mass where $p$ has none far more than it rewards covering $p$, so $q$
# shrinks inside the ellipse. The zigzag path shows why correlation also makes CAVI slow. Both effects are
# general, and the next section looks at the first one directly.
#
# ## 6. Which KL? Mode seeking and mass covering
#
# Fit one Gaussian $q$ to a bimodal target $p$ (a `toy.Mixture1D` with modes at $\pm 2$), two ways.
#
# - **Reverse** (exclusive) $\mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q - \log p]$, the approximation first: what
#   variational inference minimizes, the mode-seeking KL.
#   Where $p \approx 0$, $\log p \to -\infty$, so $q$ must vanish there: it is **zero forcing**, and settles on
#   one mode (which one depends on the start).
# - **Forward** (inclusive) $\mathrm{KL}(p\,\|\,q) = \mathbb E_p[\log p - \log q]$, the target first: what maximum
#   likelihood minimizes (lecture 03's $\mathrm{KL}(p_\text{data}\,\|\,p_\theta)$), the mass-covering KL.
#   Where $p > 0$ and $q \approx 0$ the cost explodes, so $q$ must cover all of $p$: it is **mass covering**.
#   For a Gaussian $q$ the optimum matches moments, $\mu = \mathbb E_p[z]$, $\sigma^2 = \mathrm{Var}_p[z]$
#   (set the derivatives of $\mathbb E_p[\log q]$ to zero), and sits between the modes, where $p$ is small.
#
# Between them lies the **$\alpha$-divergence** family (Amari; Minka 2005), for normalized $p$ and $q$
#
# $$D_\alpha(p\,\|\,q) = \frac{1}{\alpha(1 - \alpha)}\Big(1 - \int p(z)^\alpha\, q(z)^{1-\alpha}\, dz\Big),$$
#
# with $\alpha \to 1$ giving $\mathrm{KL}(p\,\|\,q)$ and $\alpha \to 0$ giving $\mathrm{KL}(q\,\|\,p)$;
# $\alpha = \tfrac12$ is four times the squared Hellinger distance. We compute every divergence by quadrature
# on a grid (float64) and minimize over $(\mu, \log\sigma)$ with L-BFGS.

# %%
target = toy.Mixture1D(weights=(0.45, 0.55), means=(-2.0, 2.0), stds=(0.6, 0.6))
z_grid = torch.linspace(-9, 9, 3001, dtype=torch.float64)
log_p = target.log_prob(z_grid)                                    # (G,)


def divergence(alpha, mu, log_s):                     # D_alpha(p || q) for q = N(mu, exp(log_s)^2), on the grid
    log_q = Normal(mu, log_s.exp()).log_prob(z_grid)
    if alpha == 0:                                                 # KL(q || p)
        return torch.trapezoid(log_q.exp() * (log_q - log_p), z_grid)
    if alpha == 1:                                                 # KL(p || q)
        return torch.trapezoid(log_p.exp() * (log_p - log_q), z_grid)
    overlap = torch.trapezoid((alpha * log_p + (1 - alpha) * log_q).exp(), z_grid)
    return (1 - overlap) / (alpha * (1 - alpha))

# %%
def fit_gaussian(alpha, mu0, s0):
    """Minimize D_alpha(p || q) over q = N(mu, s^2) from (mu0, s0): returns (mu, s, divergence)."""
    mu = torch.tensor(mu0, dtype=torch.float64, requires_grad=True)
    log_s = torch.tensor(math.log(s0), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([mu, log_s], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = divergence(alpha, mu, log_s)
        loss.backward()
        return loss

    opt.step(closure)
    return mu.item(), log_s.exp().item(), divergence(alpha, mu, log_s).item()

# %% [markdown]
# The divergences with small $\alpha$ have several local minima, so each fit starts from three places (near
# the right mode, near the left one, wide in the middle) and we keep the best:

# %%
alphas = [0.0, 0.25, 0.4, 0.5, 0.75, 1.0]
starts = [(1.0, 0.5), (-1.0, 0.5), (0.2, 2.0)]
local_fits = {a: [fit_gaussian(a, *start) for start in starts] for a in alphas}
fits = {a: min(local_fits[a], key=lambda fit: fit[2]) for a in alphas}      # the global minimum
for a in alphas:
    print(f"alpha = {a:4.2f}: best q = N({fits[a][0]:6.3f}, {fits[a][1]:.3f}²);  from the three starts: "
          + ", ".join(f"{d:.3f}" for _, _, d in local_fits[a]))
mean_p = sum(w * m for w, m in zip(target.weights, target.means, strict=True))
var_p = sum(w * (s**2 + m**2) for w, m, s in zip(target.weights, target.means, target.stds, strict=True)) - mean_p**2
assert abs(fits[1.0][0] - mean_p) < 1e-4 and abs(fits[1.0][1] - math.sqrt(var_p)) < 1e-4   # moment matching
assert abs(fits[0.0][0] - 2.0) < 0.05 and fits[0.0][1] < 0.7                                 # one mode
print(f"moments of p: N({mean_p:.3f}, {var_p**0.5:.3f}²)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
colors = plt.cm.viridis(np.linspace(0, 0.9, len(alphas)))
for ax in axes:
    ax.fill_between(z_grid, log_p.exp(), color="0.85", label="target p")
for a, c in zip(alphas, colors, strict=True):
    axes[0].plot(z_grid, Normal(*fits[a][:2]).log_prob(z_grid).exp(), color=c, label=f"α = {a}")
axes[0].set(xlabel="z", title="best q for D_α(p || q): KL(q||p) at α = 0, KL(p||q) at α = 1")
for (mu, s, d), start in zip(local_fits[0.0], starts, strict=True):
    axes[1].plot(z_grid, Normal(mu, s).log_prob(z_grid).exp(), label=f"KL(q||p) = {d:.3f}, from μ0 = {start[0]}")
axes[1].set(xlabel="z", title="KL(q || p): three local minima")
for ax in axes:
    ax.set_xlim(-6, 6)
    ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# As $\alpha$ goes from 0 to 1 the best fit jumps, between $\alpha = 0.25$ and $0.4$ for this target, from
# hugging one mode to straddling both; for the reverse KL, the other mode and the wide compromise remain as
# local minima, so where an optimizer ends up depends on where it starts. Variational inference
# (the ELBO) uses the $\alpha = 0$ end, which explains the too-narrow mean-field posterior of section 5;
# maximum likelihood, and expectation propagation, use the $\alpha = 1$ end. Neither is "right": mode seeking
# gives samples that look like real ones but misses modes; mass covering gives every mode some mass but puts
# mass between them too. The same trade-off returns with GANs (lectures 08 and 09).
#
# ## 7. Wake-sleep
#
# The **Helmholtz machine** (Dayan et al. 1995) pairs a generative model $p_\theta(z)\,p_\theta(x \mid z)$ with
# a **recognition model** $q_\phi(z \mid x)$: one network that outputs an approximate posterior for any $x$ (an
# *amortized* $q$). Here, on $3 \times 3$ binary images made of horizontal and vertical bars:
# $z \in \{0,1\}^6$ says which bars are on, $p_\theta(z_j = 1) = \sigma(a_j)$,
# $p_\theta(x_i = 1 \mid z) = \sigma\big((Wz + c)_i\big)$ and $q_\phi(z_j = 1 \mid x) = \sigma\big((Rx + s)_j\big)$,
# independent given $x$. The **wake-sleep** algorithm (Hinton et al. 1995) alternates
#
# - **wake**: take a data point $x$, sample $z \sim q_\phi(z \mid x)$, take a gradient step on
#   $\log p_\theta(x, z)$ in $\theta$;
# - **sleep**: dream $z \sim p_\theta(z)$, $x \sim p_\theta(x \mid z)$, take a gradient step on
#   $\log q_\phi(z \mid x)$ in $\phi$.
#
# **What it optimizes.** The wake step's expected gradient is $\nabla_\theta\, \mathbb E_{q_\phi}[\log p_\theta(x, z)]
# = \nabla_\theta \mathrm{ELBO}$, exactly the ELBO's (and EM's M-step) gradient. The sleep step minimizes
# $\mathbb E_{p_\theta(x)}\big[\mathrm{KL}\big(p_\theta(z \mid x)\,\|\,q_\phi(z \mid x)\big)\big]$: the *forward*
# (inclusive, mass-covering) KL, on the model's own dreams, whereas the ELBO's $\phi$-gradient would minimize the
# *reverse* (exclusive, mode-seeking)
# $\mathrm{KL}(q_\phi \,\|\, p_\theta(z \mid x))$ on the data. The two phases follow different objectives, so
# wake-sleep does not ascend any single function and has no convergence guarantee; its advantage in 1995 was
# that both phases are local, low-variance updates, with no gradient through the samples of $z$.
#
# With 6 binary latents there are only $2^6 = 64$ values of $z$ and $2^9 = 512$ images, so every quantity is
# exact by enumeration: $\log p_\theta(x)$, the ELBO, both KLs, and the data distribution itself. The data come
# from a known machine (each bar on with probability 0.2, pixels $\approx$ OR of their bars with noise).

# %%
Z_ALL = torch.tensor([[(s >> j) & 1 for j in range(6)] for s in range(64)], dtype=torch.float32, device=device)
X_ALL = torch.tensor([[(s >> i) & 1 for i in range(9)] for s in range(512)], dtype=torch.float32, device=device)
BARS = torch.zeros(6, 3, 3, device=device)
for i in range(3):
    BARS[i, i, :], BARS[3 + i, :, i] = 1, 1                        # 3 horizontal, then 3 vertical bars
BARS = BARS.reshape(6, 9)


def bernoulli_log_prob_logits(x, logits):             # sum over the last axis of log Bern(x; sigmoid(logits))
    return (x * logits - F.softplus(logits)).sum(-1)

# %%
class Helmholtz(torch.nn.Module):
    """Generative p(z) p(x|z) and recognition q(z|x), all logistic (Dayan et al. 1995)."""

    def __init__(self, d=6, D=9):
        super().__init__()
        self.a, self.c, self.s = (torch.nn.Parameter(torch.zeros(n)) for n in (d, D, d))
        self.W = torch.nn.Parameter(0.1 * torch.randn(D, d))       # generative weights
        self.R = torch.nn.Parameter(0.1 * torch.randn(d, D))       # recognition weights

    def log_joint(self, x, z):                        # log p(x, z), broadcasting: x (..., D), z (..., d)
        return bernoulli_log_prob_logits(z, self.a) + bernoulli_log_prob_logits(x, z @ self.W.T + self.c)

    def log_q(self, z, x):                            # log q(z | x)
        return bernoulli_log_prob_logits(z, x @ self.R.T + self.s)

    def dream(self, n):                               # (z, x) ~ p(z) p(x | z), no gradient
        with torch.no_grad():
            z = torch.bernoulli(torch.sigmoid(self.a).expand(n, -1))
            return z, torch.bernoulli(torch.sigmoid(z @ self.W.T + self.c))

# %% [markdown]
# Exact quantities by enumerating the 64 latent states (for each $x$: a row of 64 log joints):

# %%
def exact(model, x):                                  # x (N, D) -> (N,), (N,), (N, 64), (N, 64)
    """log p(x), the ELBO, log p(z | x) and log q(z | x) for every x, by summing over all 64 states of z."""
    log_joint = model.log_joint(x[:, None, :], Z_ALL[None])        # (N, 64)
    log_px = torch.logsumexp(log_joint, 1)
    log_q = model.log_q(Z_ALL[None], x[:, None, :])                # (N, 64)
    elbo = (log_q.exp() * (log_joint - log_q)).sum(1)
    return log_px, elbo, log_joint - log_px[:, None], log_q


@torch.no_grad()
def evaluate_hm(model, p_data):
    """Exact cross-entropy E_data[-log p(x)], ELBO gap E_data[KL(q||p(z|x))] and sleep loss E_p(x)[KL(p(z|x)||q)]."""
    log_px, elbo, log_post, log_q = exact(model, X_ALL)
    sleep_kl = (log_post.exp() * (log_post - log_q)).sum(1)
    return {"cross-entropy": -(p_data * log_px).sum().item(), "KL(q||p), data": (p_data * (log_px - elbo)).sum().item(),
            "KL(p||q), dreams": (log_px.exp() * sleep_kl).sum().item()}


true_hm = Helmholtz().to(device)
with torch.no_grad():
    true_hm.a.fill_(math.log(0.2 / 0.8))
    true_hm.W.copy_(6.0 * BARS.T)                                  # a bar lights its pixels: sigmoid(3) = 0.95
    true_hm.c.fill_(-3.0)                                          # an unlit pixel is on with sigmoid(-3) = 0.05
    p_data = exact(true_hm, X_ALL)[0].exp()                        # (512,) the data distribution
entropy = -(p_data * p_data.log()).sum().item()
torch.manual_seed(7)
x_bars = X_ALL[torch.multinomial(p_data, 2000, replacement=True)]  # a training set of 2000 images
print(f"sum of p_data = {p_data.sum():.6f}; entropy = {entropy:.4f} nats (the best cross-entropy possible)")
plot.image_grid(x_bars[:32].reshape(-1, 3, 3), nrow=16, title="training images")
plt.show()

# %% [markdown]
# Training: wake-sleep as above, against the same model trained on the exact ELBO (its gradient through the
# sum over the 64 states of $q$, possible only because $z$ is this small), both with Adam, the same
# initialization and the same minibatches. Each run is scored every 100 steps with the exact quantities.

# %%
def wake_sleep_step(model, x, opt_gen, opt_rec):
    with torch.no_grad():                                          # wake: z ~ q(z | x) for real x
        z = torch.bernoulli(torch.sigmoid(x @ model.R.T + model.s))
    opt_gen.zero_grad()
    (-model.log_joint(x, z).mean()).backward()                    # ... and fit p(x, z) to it
    opt_gen.step()
    z_dream, x_dream = model.dream(len(x))                        # sleep: dream (z, x) ~ p
    opt_rec.zero_grad()
    (-model.log_q(z_dream, x_dream).mean()).backward()            # ... and fit q(z | x) to it
    opt_rec.step()


# %%
def train_hm(method, steps, batch=100, lr=0.03, seed=8):
    torch.manual_seed(seed)
    model = Helmholtz().to(device)
    opt_gen = torch.optim.Adam([model.a, model.W, model.c], lr=lr)
    opt_rec = torch.optim.Adam([model.R, model.s], lr=lr)
    history = {}
    for step in progress(range(steps + 1), "training steps"):
        if step % 100 == 0:
            for key, value in evaluate_hm(model, p_data).items():
                history.setdefault(key, []).append(value)
        x = x_bars[torch.randint(len(x_bars), (batch,), device=device)]
        if method == "wake-sleep":
            wake_sleep_step(model, x, opt_gen, opt_rec)
        else:
            opt_gen.zero_grad()
            opt_rec.zero_grad()
            (-exact(model, x)[1].mean()).backward()                # the exact ELBO, averaged over the batch
            opt_gen.step()
            opt_rec.step()
    return model, history

# %%
t0 = time.perf_counter()
hm_runs = {method: train_hm(method, WS_STEPS) for method in ("wake-sleep", "ELBO")}
ws_time = time.perf_counter() - t0
for method, (_, history) in hm_runs.items():
    print(f"{method:10s}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.items()))
print(f"({WS_STEPS} steps each, {ws_time:.1f} s; data entropy {entropy:.4f} nats)")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, key in zip(axes, hm_runs["ELBO"][1], strict=True):
    for method, (_, history) in hm_runs.items():
        ax.plot(100 * np.arange(len(history[key])), history[key], label=method)
    ax.set(xlabel="training step", ylabel="nats", title=key)
axes[0].axhline(entropy, color="k", ls=":", label="data entropy")
axes[0].legend()
fig.tight_layout()
plt.show()
torch.manual_seed(9)
plot.samples_beside_real({f"{method}: dreams x ~ p(x)": model.dream(plot.SHOWN)[1].reshape(-1, 3, 3)
                          for method, (model, _) in hm_runs.items()}, x_bars.reshape(-1, 3, 3),
                         real_title="training images")
plt.show()

# %% [markdown]
# Does each latent unit stand for one bar, as in the true machine? A unit "draws a bar" when the three pixels with
# the largest generative weights $W_{ij}$ of that unit are exactly the pixels of one bar; we count the units that
# do, and the distinct bars they draw.

# %%
def bars_drawn(model):
    """(units whose three strongest pixels form one bar, distinct bars drawn that way)."""
    bars = [set(BARS[b].nonzero().flatten().tolist()) for b in range(6)]
    top3 = [set(model.W[:, j].detach().topk(3).indices.tolist()) for j in range(model.W.shape[1])]
    matches = [bars.index(t) for t in top3 if t in bars]
    return len(matches), len(set(matches))


bar_units = {method: bars_drawn(model) for method, (model, _) in hm_runs.items()}
for method, (units, distinct) in bar_units.items():
    print(f"{method:10s}: {units} of 6 units draw a single bar, {distinct} distinct bars of 6")

# %% [markdown]
# Left: the exact cross-entropy, which both runs push down towards the data entropy without reaching it in this
# budget: like EM, both settle in local optima. Where fewer than six units draw single bars (the counts above),
# the latent units share the work in a more tangled code than the true machine's one-unit-per-bar code (compare
# the dreams with the training images). Middle: the ELBO gap on the data, $\mathrm{KL}(q\,\|\,p(z \mid x))$,
# which the ELBO run minimizes directly and wake-sleep only indirectly. Right: the forward KL on dreams,
# $\mathrm{KL}(p(z \mid x)\,\|\,q)$, the sleep phase's own objective. The wake phase of both runs
# follows the same $\theta$-gradient; what differs is how each trains $q$, and a worse $q$ also slows the
# learning of $p$, since the wake phase learns from $q$'s guesses.
#
# ### Explaining away: the two KLs, exactly
#
# How far apart can the two recognition objectives be? Take the smallest case of **explaining away**: two
# independent, rare causes of one binary effect (a burglar or an earthquake, and an alarm), a Helmholtz machine
# with $d = 2$ latents and $D = 1$ pixel: $p(z_j = 1) = 0.1$ and $p(x = 1 \mid z) = \sigma(8 z_1 + 8 z_2 - 6)$.
# Seeing the alarm makes each cause likely, but once one explains it the other is not needed: the posterior
# puts almost all its mass on exactly one cause, either one. We fit a factorized $q(z_1)\,q(z_2)$ to it both
# ways, by L-BFGS on the exact sums over the four states, from the same start.

# %%
Z2 = Z_ALL[:4, :2]                                                 # the 4 states of two bits, (4, 2)
alarm = Helmholtz(d=2, D=1).to(device)
with torch.no_grad():
    alarm.a.fill_(math.log(0.1 / 0.9))
    alarm.W.fill_(8.0)
    alarm.c.fill_(-6.0)
    log_joint2 = alarm.log_joint(torch.ones(1, device=device), Z2)   # x = 1 (the alarm rang), (4,)
    log_post2 = log_joint2 - log_joint2.logsumexp(0)


def kl_both(log_q, log_p):                            # (KL(q || p), KL(p || q)) over the enumerated states
    return (log_q.exp() * (log_q - log_p)).sum(), (log_p.exp() * (log_p - log_q)).sum()


def fit_factorized(direction):
    logits = torch.tensor([0.1, -0.1], device=device, requires_grad=True)   # a slightly asymmetric start
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        kl = kl_both(bernoulli_log_prob_logits(Z2, logits), log_post2)[0 if direction == "reverse" else 1]
        kl.backward()
        return kl

    opt.step(closure)
    return bernoulli_log_prob_logits(Z2, logits).detach()          # log q over the 4 states

# %%
log_q_excl, log_q_incl = fit_factorized("reverse"), fit_factorized("forward")
print("state (z1, z2):            " + "  ".join(f"({int(a)}, {int(b)})" for a, b in Z2.tolist()))
for name, lq in (("posterior p(z | x = 1)", log_post2), ("q by KL(q || p), ELBO", log_q_excl),
                 ("q by KL(p || q), sleep", log_q_incl)):
    kls = "" if lq is log_post2 else "   KL(q||p) = {:.3f}, KL(p||q) = {:.3f}".format(*kl_both(lq, log_post2))
    print(f"{name:24s}: " + "  ".join(f"{v:6.3f}" for v in lq.exp().tolist()) + kls)
post_marginals = (log_post2.exp()[:, None] * Z2).sum(0)
incl_marginals = (log_q_incl.exp()[:, None] * Z2).sum(0)
assert torch.allclose(incl_marginals, post_marginals, atol=1e-4)   # forward KL = matching the marginals

# %% [markdown]
# The forward-KL fit (the sleep phase's objective) reproduces the posterior marginals, about 0.52 for each cause,
# as moment matching must for a factorized $q$; but as a joint distribution it then puts a quarter of its mass on
# "no cause", which the posterior all but rules out. The reverse-KL fit (the ELBO's) commits to one explanation,
# mostly one cause and not the other, and ignores the equally good alternative: the mode seeking of sections 5
# and 6. Wake-sleep trains its recognition model to cover the posterior, variational inference to pick a mode.
#
# ## Results

# %%
record(LECTURE, "em_vs_sklearn_loglik_diff", em_vs_sklearn, "nats per point", n_data=N_EM,
       wall_time_s=em_time + sk_time, note=f"{EM_STEPS} EM iterations, K={K}, same initialization, reg_covar=0")
record(LECTURE, "em_vs_sklearn_curve_max_diff", curve_diff, "nats per point", n_data=N_EM,
       note="largest difference along the log-likelihood curves")
record(LECTURE, "em_final_loglik", em_loglik[-1].item(), "nats per point", n_data=N_EM,
       note="true parameters: " + f"{gmm_loglik(x_em, pi_true, mu_true, Sigma_true).item():.4f}")
record(LECTURE, "is_std_log_px_prior_k100", is_std_prior, "nats", n_data=N_REPEATS, note="prior proposal")
record(LECTURE, "is_std_log_px_good_k100", is_std_good, "nats", n_data=N_REPEATS,
       note="posterior mean, 1.2x marginal std")
record(LECTURE, "elbo_identity_max_error", identity_err, "nats", note="|log p(x) - ELBO - KL|, 5 random q")
record(LECTURE, "mean_field_var_ratio", mf_var_ratio, "ratio", note="mean-field variance / posterior marginal")
for method, (_, history) in hm_runs.items():
    record(LECTURE, method.replace("-", "_").lower() + "_cross_entropy", history["cross-entropy"][-1],
           "nats per image", n_data=len(x_bars), wall_time_s=ws_time / 2, note=f"data entropy {entropy:.4f}")
    record(LECTURE, method.replace("-", "_").lower() + "_bar_units", bar_units[method][0], "units of 6",
           note=f"latent units whose 3 strongest generative weights form one bar; {bar_units[method][1]} distinct bars")

# %% [markdown]
# ## Summary
#
# - A latent variable makes a complex $p(x)$ out of a simple prior and a simple conditional; the cost is the
#   sum or integral over $z$ in $p(x)$ and in $p(z \mid x)$.
# - **EM** fits a Gaussian mixture by alternating Bayes' rule (E-step, responsibilities in log space) and
#   weighted maximum likelihood (M-step). It is coordinate ascent on the ELBO, so the likelihood never
#   decreases; ours matches scikit-learn's to rounding error (the differences printed in section 2) from the
#   same start.
# - **Importance sampling** estimates $p(x)$ without bias, and $\log p(x)$ with a downward (Jensen) bias; its
#   variance depends on how close the proposal is to the posterior, by orders of magnitude.
# - **The ELBO**: $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q\,\|\,p(z \mid x))$, exact, and tight at the
#   posterior. Maximizing it over $q$ is approximate inference; over $\theta$, approximate learning.
# - **Mean field** optimizes one factor at a time, $q_j \propto \exp \mathbb E_{q_{-j}} \log p(x, z)$; the ELBO
#   rises monotonically, but correlated posteriors come out too narrow.
# - The reverse $\mathrm{KL}(q\,\|\,p)$ seeks a mode, the forward $\mathrm{KL}(p\,\|\,q)$ covers the mass, and the
#   $\alpha$-divergences interpolate.
# - **Wake-sleep** trains $p$ with the ELBO's gradient and $q$ with the forward (inclusive) KL on dreams: two
#   objectives.
#   Lecture 05 replaces it by one objective, the ELBO, with reparameterized gradients: the VAE.
#
# ## References
#
# - A. P. Dempster, N. M. Laird, D. B. Rubin (1977). *Maximum likelihood from incomplete data via the EM
#   algorithm.* JRSS B. [doi:10.1111/j.2517-6161.1977.tb01600.x](https://doi.org/10.1111/j.2517-6161.1977.tb01600.x)
# - R. M. Neal, G. E. Hinton (1998). *A view of the EM algorithm that justifies incremental, sparse, and other
#   variants.* [doi:10.1007/978-94-011-5014-9_12](https://doi.org/10.1007/978-94-011-5014-9_12)
# - G. E. Hinton, P. Dayan, B. J. Frey, R. M. Neal (1995). *The "wake-sleep" algorithm for unsupervised neural
#   networks.* Science. [doi:10.1126/science.7761831](https://doi.org/10.1126/science.7761831)
# - P. Dayan, G. E. Hinton, R. M. Neal, R. S. Zemel (1995). *The Helmholtz machine.* Neural Computation.
#   [doi:10.1162/neco.1995.7.5.889](https://doi.org/10.1162/neco.1995.7.5.889)
# - T. Minka (2005). *Divergence measures and message passing.* Microsoft Research technical report
#   MSR-TR-2005-173. [link](https://www.microsoft.com/en-us/research/publication/divergence-measures-and-message-passing/)
# - D. M. Blei, A. Kucukelbir, J. D. McAuliffe (2017). *Variational inference: a review for statisticians.*
#   JASA. [arXiv:1601.00670](https://arxiv.org/abs/1601.00670)
# - M. E. Tipping, C. M. Bishop (1999). *Probabilistic principal component analysis.* JRSS B.
#   [doi:10.1111/1467-9868.00196](https://doi.org/10.1111/1467-9868.00196)
# - C. M. Bishop (2006). *Pattern Recognition and Machine Learning*, chapters 9 (mixtures and EM) and 10
#   (variational inference). [link](https://www.microsoft.com/en-us/research/publication/pattern-recognition-machine-learning/)
# - Y. Burda, R. Grosse, R. Salakhutdinov (2016). *Importance weighted autoencoders.*
#   [arXiv:1509.00519](https://arxiv.org/abs/1509.00519)
