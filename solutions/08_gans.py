# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 08 — Generative adversarial networks
#
# Lectures 02–07 trained every model by maximum likelihood: autoregressive models, VAEs (through a bound) and
# flows all need $\log p_\theta(x)$ or a bound on it. This lecture drops the likelihood. A **generator**
# $G_\theta$ turns noise $z$ into samples, and the only training signal is a second network, the
# **discriminator**, that tries to tell those samples from data. Nothing in the model has a density.
#
# **Learning goals**
# 1. See why likelihood and sample quality are different goals: a model can have an excellent likelihood and
#    useless samples, or perfect samples and a terrible likelihood.
# 2. Compare two distributions from samples only: a **two-sample test**, first with a fixed statistic, then with
#    a classifier as the statistic (with a permutation p-value).
# 3. Write the GAN objective, derive the **optimal discriminator** $D^* = p_\text{data}/(p_\text{data} + p_G)$
#    and check, on known 1-D densities, that a trained discriminator finds it and that
#    $V(G, D^*) = 2\,\mathrm{JSD}(p_\text{data} \,\|\, p_G) - \log 4$.
# 4. See why the **minimax** generator loss saturates and the **non-saturating** one does not, by its gradients.
# 5. Train GANs on the 8-Gaussian ring and the 5x5 grid, and measure **mode collapse** with a fixed protocol.
# 6. Train a **DCGAN** on MNIST and measure its samples with a two-sample test and the course's FID.
#
# **Builds on** lecture 03 (maximum likelihood as minimum KL), lecture 04 (KL divergences) and lecture 07
# (flows: a generator $G(z)$ with a density; here $G$ need not be invertible).
#
# The adversarial training loops are the lesson, so they are written out below rather than hidden in a
# trainer.

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import (
    budget,
    ema_update,
    metrics,
    mnist,
    plot,
    progress,
    record,
    setup,
    toy,
    train_or_load,
    widgets,
)
from dgm_course.exercises import lecture08

device, MODE = setup(seed=0)
LECTURE = "08_gans"
T0 = time.perf_counter()

# %% [markdown]
# ## 1. Likelihood and sample quality are different goals
#
# ### A good likelihood with bad samples
# Take a perfect model $p$ of the data and mix it with noise $q$: $m = 0.01\,p + 0.99\,q$. Ninety-nine samples
# in a hundred are noise. Yet, since $m(x) \ge 0.01\,p(x)$ everywhere,
#
# $$\log m(x) \;\ge\; \log p(x) - \log 100 ,$$
#
# and $\mathbb E_{p}[\log m(x)] \le \mathbb E_p[\log p(x)]$ (a KL divergence is non-negative), so the expected
# log-likelihood of the mixture is within $\log 100 \approx 4.6$ nats of the perfect model's, **whatever the
# dimension** $D$. The data log-likelihood itself grows like $D$, so per dimension the gap $4.6/D$ vanishes:
# on MNIST ($D = 784$) it is $\log_2 100 / 784 \approx 0.008$ bits/dim, less than the difference between two
# good models of lecture 07.
#
# Below, $p = \mathcal N(0, I_D)$ (the "perfect model" of data drawn from it), $q = \mathcal N(0, 3^2 I_D)$, and
# the mixture's expected log-likelihood per dimension is estimated on data from $p$ as $D$ grows.

# %%
def gauss_log_prob(x, sigma):                                             # log N(x; 0, sigma^2 I), x (N, D)
    d = x.shape[1]
    return -0.5 * (x / sigma).pow(2).sum(1) - d * math.log(sigma) - 0.5 * d * math.log(2 * math.pi)


dims = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
gen = torch.Generator().manual_seed(0)
per_dim = {"perfect model p": [], "mixture 0.01 p + 0.99 q": [], "bound log p - log 100": []}
for d in dims:
    x = torch.randn(2000, d, generator=gen, dtype=torch.float64)          # data ~ p, (N, D)
    log_p = gauss_log_prob(x, 1.0)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(0.01), gauss_log_prob(x, 3.0) + math.log(0.99)]), 0)
    for key, value in zip(per_dim, (log_p, log_m, log_p - math.log(100)), strict=True):
        per_dim[key].append(value.mean().item() / d)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for key, values in per_dim.items():
    axes[0].semilogx(dims, values, marker=".", label=key)
axes[0].set(xlabel="dimension D", ylabel="E_p[log-likelihood] / D (nats)", title="log-likelihood per dimension")
axes[0].legend()
gap = [p - m for p, m in zip(per_dim["perfect model p"], per_dim["mixture 0.01 p + 0.99 q"], strict=True)]
axes[1].loglog(dims, gap, marker=".", label="measured gap")
axes[1].loglog(dims, [math.log(100) / d for d in dims], "k--", label="log(100) / D")
axes[1].set(xlabel="dimension D", ylabel="nats per dimension", title="perfect model minus mixture")
axes[1].legend()
plt.tight_layout()

# %% [markdown]
# In low dimension the noise $q$ still explains some of the data, so the gap is below $\log 100$; from
# $D \approx 20$ on, $q(x) \ll p(x)$ on the data and the gap is exactly $\log 100 / D$ per dimension. A
# likelihood table would rank this model next to the perfect one; its samples are 99% noise.
#
# ### Perfect samples with a bad likelihood
# The opposite failure: a model that **memorizes** the training set, $p(x) = \frac{1}{N}\sum_i \delta(x - x_i)$.
# Its samples are real digits, indistinguishable from data (they *are* data), and its likelihood of any test
# digit is zero. Any density needs some width, so give each training image a Gaussian kernel of width
# $\sigma$ (a Parzen window, or kernel density estimate):
#
# $$p_\sigma(x) = \frac1N \sum_{i=1}^{N} \mathcal N(x;\, x_i,\, \sigma^2 I) .$$
#
# As $\sigma \to 0$ the samples become exact copies, the likelihood of the training digits goes to $+\infty$,
# and the likelihood of test digits to $-\infty$. Below on dequantized MNIST, $x = (k + u)/256$, in bits per
# dimension (lecture 07's unit; lower is better).

# %%
N_MEMO = budget(smoke=1000, standard=10000, full=60000)
memo_images, _ = mnist.load_mnist("train", n=N_MEMO)
test_images, _ = mnist.test_split(smoke=500)                              # the course's test set (uint8)
gen = torch.Generator().manual_seed(0)
x_memo = mnist.dequantize(memo_images, generator=gen).flatten(1).double()        # (N, 784)
x_test_deq = mnist.dequantize(test_images[:500], generator=gen).flatten(1).double()


def parzen_log_prob(d2, sigma, dim=784):
    """log p_sigma(x) from the squared distances d2 (M, N) of M points x to the N kernel centres; nats, (M,)."""
    log_k = -0.5 * d2 / sigma**2 - dim * math.log(sigma) - 0.5 * dim * math.log(2 * math.pi)
    return torch.logsumexp(log_k, 1) - math.log(d2.shape[1])


# %%
d2_own = torch.cdist(x_memo[:500], x_memo).pow(2)                         # (500, N): includes the own kernel
own = torch.zeros_like(d2_own, dtype=torch.bool)
own[torch.arange(500), torch.arange(500)] = True                          # x_memo[i] is its own centre i
d2_loo = d2_own[~own].reshape(500, -1)                                    # (500, N - 1): leave-one-out
d2_test = torch.cdist(x_test_deq, x_memo).pow(2)                          # (500, N)
sigmas = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
bpd = {"training digits (their own kernel included)": d2_own, "training digits, leave-one-out": d2_loo,
       "test digits": d2_test}
bpd = {k: [metrics.nats_to_bits_per_dim(-parzen_log_prob(d2, s).mean().item(), 784) for s in sigmas]
       for k, d2 in bpd.items()}

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
for key, values in bpd.items():
    axes[0].semilogx(sigmas, values, marker=".", label=key)
axes[0].set(xlabel="kernel width sigma", ylabel="bits / dim", ylim=(-8, 12), title="Parzen window on MNIST")
axes[0].legend(fontsize=8)
plot.image_grid(mnist.to_unit(memo_images[:36]), nrow=6, ax=axes[1], title="samples of the memorizing model")
plt.tight_layout()
best_test = min(bpd["test digits"])
sigma_zero = (2 * math.pi) ** -0.5 * N_MEMO ** (-1 / 784) / 256           # own kernel alone: 0 bits/dim
print(f"test digits at the best sigma ({sigmas[bpd['test digits'].index(best_test)]}): {best_test:.2f} bits/dim; "
      f"a memorized digit's own kernel alone reaches 0 bits/dim at sigma = {sigma_zero:.4f}")

# %% [markdown]
# The samples on the right are perfect. The likelihood tells another story: as $\sigma$ shrinks the model
# claims ever fewer bits for the digits it memorized, and ever more for new digits. A memorized digit scored by
# its own kernel alone has density $\frac1N (2\pi\sigma^2)^{-D/2}$, which on the dequantized scale (a uniform
# density over pixel values is $256^D$, i.e. 8 bits/dim) is 0 bits/dim at
# $\sigma = (2\pi)^{-1/2} N^{-1/D} / 256$, well below the width $1/256$ of one dequantization cell (printed
# above); smaller kernels give negative bits/dim. Even at its best $\sigma$ the test digits cost nearly as much
# as the 8 bits/dim of a uniform distribution over pixel values (printed above). With a
# leave-one-out estimate the training digits look like test digits again, which is how held-out likelihood
# exposes memorization. A sample-based evaluation has to look for it separately (e.g. nearest training
# neighbours of samples).
#
# **So**: the two goals are different. A GAN optimizes sample quality directly, through a learned judge, and
# gives up the likelihood altogether.
#
# ## 2. Two-sample tests
#
# Given samples $S_P = \{x_i\} \sim P$ and $S_Q = \{y_j\} \sim Q$, test $H_0: P = Q$. Any **statistic** $T$ that
# is large when the samples differ will do, e.g. the distance of the means,
# $T = \lVert \bar x - \bar y \rVert^2$. Its distribution under $H_0$ comes for free from a **permutation
# test**: under $H_0$ the pooled samples are exchangeable, so relabelling them at random gives draws of $T$
# under the null, and
#
# $$\text{p-value} = \frac{1 + \#\{b : T_b \ge T\}}{1 + B} .$$

# %%
def mean_statistic(x, y):
    return (x.mean(0) - y.mean(0)).pow(2).sum()


def permutation_test(statistic, x, y, n_perm=500, seed=0):
    """Statistic T(x, y) and its permutation p-value under H0: both samples from one distribution."""
    g = torch.Generator().manual_seed(seed)
    pooled, n = torch.cat([x, y]), len(x)
    t = statistic(x, y)
    t_null = torch.stack([statistic(pooled[p[:n]], pooled[p[n:]])
                          for p in (torch.randperm(len(pooled), generator=g) for _ in range(n_perm))])
    return t.item(), (1 + (t_null >= t).sum().item()) / (1 + n_perm)


# %% [markdown]
# Three pairs of 2-D sample sets, 1000 points each: the 8-Gaussian ring against fresh ring samples, against a
# ring with one mode missing, and against a single Gaussian with the **same mean and covariance** as the ring.

# %%
ring_a, ring_b = toy.toy_2d("8gaussians", 1000, seed=1), toy.toy_2d("8gaussians", 1400, seed=2)
missing = ring_b[torch.cdist(ring_b, toy.mode_centers("8gaussians")).argmin(1) != 0][:1000]   # 7 of 8 modes
chol = torch.linalg.cholesky(torch.cov(ring_a.T))                          # same mean, same covariance
gauss = ring_a.mean(0) + torch.randn(1000, 2, generator=torch.Generator().manual_seed(3)) @ chol.T
pairs = {"ring vs ring": (ring_a, ring_b[:1000]), "ring vs 7-mode ring": (ring_a, missing),
         "ring vs matched Gaussian": (ring_a, gauss)}
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, (name, (x, y)) in zip(axes, pairs.items(), strict=True):
    t, p = permutation_test(mean_statistic, x, y)
    plot.scatter_2d(x, ax=ax, lim=3, s=1, label="P")
    plot.scatter_2d(y, ax=ax, lim=3, s=1, color="C1", label="Q", title=f"{name}\nmean test: p = {p:.3f}")
plt.tight_layout()

# %% [markdown]
# The mean statistic sees the missing mode (the mean moves) but is blind to the Gaussian, which differs from
# the ring in everything except the first two moments. A fixed statistic only detects the differences it was
# built for.
#
# ### The classifier two-sample test
# Let a classifier choose the statistic (Lopez-Paz & Oquab, 2017). Label $S_P$ with 1 and $S_Q$ with 0, train a
# classifier on half of the pooled samples, and take its **accuracy on the other half** as $T$. Under $H_0$ no
# classifier beats chance on held-out data; the permutation test shuffles the held-out labels (the classifier
# stays fixed, as it never saw them). The classifier is the seed of the GAN idea: a discriminator that tells
# model samples from data, and tells us *where* they differ.

# %%
def c2st(x, y, hidden=64, steps=300, n_perm=1000, seed=0):
    """Classifier two-sample test: held-out accuracy of an MLP telling x (label 1) from y (label 0), p-value."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.cat([x, y]).flatten(1).float()
    labels = torch.cat([torch.ones(len(x)), torch.zeros(len(y))])
    order = torch.randperm(len(inputs), generator=g)
    train, test = order[: len(order) // 2], order[len(order) // 2:]
    torch.manual_seed(seed)
    clf = nn.Sequential(nn.Linear(inputs.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                        nn.Linear(hidden, 1)).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    x_tr, y_tr = inputs[train].to(device), labels[train].to(device)
    for _ in progress(range(steps), "classifier two-sample test"):        # full-batch training
        loss = F.binary_cross_entropy_with_logits(clf(x_tr).squeeze(1), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        guess = (clf(inputs[test].to(device)).squeeze(1) > 0).float().cpu()
    y_te = labels[test]
    acc = (guess == y_te).float().mean().item()
    null = torch.stack([(guess == y_te[torch.randperm(len(y_te), generator=g)]).float().mean()
                        for _ in range(n_perm)])
    return acc, (1 + (null >= acc).sum().item()) / (1 + n_perm)


C2ST_STEPS = budget(smoke=100, standard=1000, full=1000)
for name, (x, y) in pairs.items():
    acc, p = c2st(x, y, steps=C2ST_STEPS)
    print(f"{name:26s} classifier accuracy {acc:.3f}   p-value {p:.3f}")

# %% [markdown]
# The classifier finds the matched Gaussian, which the mean test missed, and leaves fresh ring samples alone
# (accuracy near 0.5, a large p-value). The missing mode is harder for it: that mode holds only 1/8 of $P$'s
# mass, so even the Bayes-optimal classifier is right only $\tfrac12(\tfrac18 + 1) = 56\%$ of the time
# (it says "$P$" in the empty mode and "$Q$" everywhere else, where $Q$'s density is 8/7 of $P$'s), and a
# classifier that also fits noise in the seven shared modes gets close to chance on 1000 held-out points.
# No statistic is best for every difference: here the mean test wins, because the missing mode moves the mean.
# Section 6 runs the classifier test on MNIST, real against real and real against GAN samples.
#
# ## 3. The GAN objective
#
# A generator $G_\theta: z \mapsto x$ with $z \sim p_z = \mathcal N(0, I)$ defines the distribution $p_G$ of
# $G(z)$ (a push-forward, with no density we can evaluate). A discriminator $D_\phi(x) \in (0, 1)$ is the
# probability that $x$ is real. Goodfellow et al. (2014) play the two-player game
#
# $$\min_G \max_D \; V(G, D) = \mathbb E_{x \sim p_\text{data}}\big[\log D(x)\big]
#     + \mathbb E_{z \sim p_z}\big[\log\big(1 - D(G(z))\big)\big] .$$
#
# For a fixed $G$, $\max_D V$ is logistic regression of "real" (label 1) against "generated" (label 0): $-V$ is
# the binary cross-entropy of the discriminator. In code $D$ outputs a **logit** $\ell$ and
# $D = \sigma(\ell)$; then $\log D = -\operatorname{softplus}(-\ell)$ and
# $\log(1 - D) = -\operatorname{softplus}(\ell)$, which stay finite for any $\ell$, whereas
# `torch.log(torch.sigmoid(l))` is $\log 0 = -\infty$ once $\sigma(\ell)$ rounds to 0.
#
# ### Exercise 1: the discriminator loss
# Write `discriminator_loss(real_logits, fake_logits)`: the estimate of $-V$ that the discriminator minimizes,
#
# $$\mathcal L_D = -\frac{1}{B_r}\sum_{i=1}^{B_r} \log \sigma(\ell^\text{real}_i)
#                  -\frac{1}{B_f}\sum_{j=1}^{B_f} \log\big(1 - \sigma(\ell^\text{fake}_j)\big),$$
#
# from the logits on a real batch (shape $(B_r,)$) and on a generated batch (shape $(B_f,)$, possibly another
# size), as a scalar tensor. It must be finite for logits of any size.

# %% tags=["solution:ex1_discriminator_loss"]
def discriminator_loss(real_logits, fake_logits):
    """-[mean log D(x) + mean log(1 - D(G(z)))] from the logits, D = sigmoid(logit); a scalar."""
    ### BEGIN SOLUTION
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    ### END SOLUTION


# %% tags=["check:ex1_discriminator_loss"]
lecture08.check_discriminator_loss(discriminator_loss)

# %% [markdown]
# ### The optimal discriminator
# For a fixed $G$, write $V$ as one integral over $x$ (the second expectation is over $p_G$ by the change of
# variables $x = G(z)$):
#
# $$V(G, D) = \int \Big(p_\text{data}(x) \log D(x) + p_G(x) \log\big(1 - D(x)\big)\Big)\, dx .$$
#
# Pointwise, $y \mapsto a \log y + b \log(1 - y)$ is maximized at $y = a/(a + b)$, so
#
# $$D^*_G(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_G(x)} .$$
#
# ### Exercise 2: the optimal discriminator
# Write `optimal_discriminator(log_p_data, log_p_g)` returning $D^*(x)$ elementwise from the two
# **log**-densities (any shape; the result has the same shape, and the inputs are left unchanged: the lecture uses
# them again). In high dimension log-densities are in the hundreds or thousands of negative nats, where `exp`
# returns 0: work with the logs.

# %% tags=["solution:ex2_optimal_discriminator"]
def optimal_discriminator(log_p_data, log_p_g):
    """D*(x) = p_data / (p_data + p_g) from log-densities, elementwise."""
    ### BEGIN SOLUTION
    return torch.sigmoid(log_p_data - log_p_g)                            # 1 / (1 + p_g / p_data)
    ### END SOLUTION


# %% tags=["check:ex2_optimal_discriminator"]
lecture08.check_optimal_discriminator(optimal_discriminator)

# %% [markdown]
# ### Checking $D^*$ on known 1-D densities
# Data from the two-component mixture of `toy.Mixture1D` ($0.3\,\mathcal N(-2, 0.5^2) + 0.7\,\mathcal N(1.5, 0.8^2)$)
# and a fixed "generator" whose samples are $\mathcal N(0, 1.5^2)$: both densities are known, so $D^*$ is
# too. A small MLP discriminator is trained on samples only, with the loss of exercise 1; its
# $\sigma(\ell(x))$ should land on $D^*(x)$ wherever there are samples.

# %%
p_data_1d = toy.Mixture1D()
p_g_1d = toy.Mixture1D(weights=(1.0,), means=(0.0,), stds=(1.5,))
x_real_1d, x_fake_1d = p_data_1d.sample(20000, seed=1)[:, None], p_g_1d.sample(20000, seed=2)[:, None]


def mlp(d_in, d_out, width, depth=3, act=nn.ReLU):
    """depth hidden layers of `width` units."""
    sizes = [d_in] + [width] * depth
    layers = [m for a, b in zip(sizes[:-1], sizes[1:], strict=True) for m in (nn.Linear(a, b), act())]
    return nn.Sequential(*layers, nn.Linear(width, d_out))


def train_discriminator(disc, x_real, x_fake, steps, batch=256, lr=1e-3, seed=0):
    """Minimize discriminator_loss on two fixed sample sets (the generator does not move)."""
    opt = torch.optim.Adam(disc.parameters(), lr=lr)
    g = torch.Generator(device).manual_seed(seed)                         # batches drawn on the device
    x_real, x_fake = x_real.to(device), x_fake.to(device)                 # the samples move there once
    for _ in progress(range(steps), "discriminator"):
        i, j = (torch.randint(len(x), (batch,), generator=g, device=device) for x in (x_real, x_fake))
        loss = discriminator_loss(disc(x_real[i]).squeeze(1), disc(x_fake[j]).squeeze(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return disc


torch.manual_seed(0)
disc_1d = train_discriminator(mlp(1, 1, 64, act=nn.LeakyReLU).to(device), x_real_1d, x_fake_1d,
                              steps=budget(smoke=300, standard=3000, full=5000))

# %%
xs = torch.linspace(-12, 12, 4801, dtype=torch.float64)                  # quadrature grid (CPU, float64)
log_pd, log_pg = p_data_1d.log_prob(xs), p_g_1d.log_prob(xs)
d_star = optimal_discriminator(log_pd, log_pg)
with torch.no_grad():
    d_trained = torch.sigmoid(disc_1d(xs.float()[:, None].to(device))).squeeze(1).cpu().double()

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(xs, log_pd.exp(), label="p_data")
axes[0].plot(xs, log_pg.exp(), label="p_G")
axes[0].set(xlabel="x", xlim=(-5, 5), title="the two densities")
axes[0].legend()
axes[1].plot(xs, d_star, "k", lw=2, label="D* = p_data / (p_data + p_G)")
axes[1].plot(xs, d_trained, "C3--", label="trained discriminator")
axes[1].set(xlabel="x", xlim=(-5, 5), ylim=(0, 1), title="optimal vs trained discriminator")
axes[1].legend()
plt.tight_layout()
mass = (log_pd.exp() + log_pg.exp()) / 2                                  # where the samples are
print(f"mean |D_trained - D*| weighted by (p_data + p_G)/2: "
      f"{torch.trapezoid(mass * (d_trained - d_star).abs(), xs).item():.4f}")

# %% [markdown]
# ### $V(G, D^*) = 2\,\mathrm{JSD} - \log 4$
# Put $D^*$ back into $V$. With the mixture $m = (p_\text{data} + p_G)/2$,
#
# $$V(G, D^*) = \mathbb E_{p_\text{data}}\Big[\log \frac{p_\text{data}}{2m}\Big]
#   + \mathbb E_{p_G}\Big[\log \frac{p_G}{2m}\Big]
#   = \mathrm{KL}(p_\text{data} \,\|\, m) + \mathrm{KL}(p_G \,\|\, m) - \log 4
#   = 2\,\mathrm{JSD}(p_\text{data} \,\|\, p_G) - \log 4 .$$
#
# The Jensen–Shannon divergence is symmetric, bounded by $\log 2$ and zero only when $p_G = p_\text{data}$, so
# the generator's best response to the best discriminator is $p_G = p_\text{data}$, where $V = -\log 4$.
# Both sides are computed below by quadrature, independently: $V$ from its definition with $D^*$ plugged in,
# JSD from the two KL divergences to the mixture. The trained discriminator's $V$ must be lower (it is not
# the maximizer).

# %%
def integral(f):
    return torch.trapezoid(f, xs).item()


def value_v(log_pd, log_pg, d):                                           # V(G, D) by quadrature
    return integral(torch.xlogy(log_pd.exp(), d) + torch.xlogy(log_pg.exp(), 1 - d))   # 0 log 0 = 0


def jsd(log_pd, log_pg):
    log_m = torch.logaddexp(log_pd, log_pg) - math.log(2)
    return 0.5 * integral(log_pd.exp() * (log_pd - log_m)) + 0.5 * integral(log_pg.exp() * (log_pg - log_m))


print(f"V(G, D*)            = {value_v(log_pd, log_pg, d_star):.5f}")
print(f"2 JSD - log 4       = {2 * jsd(log_pd, log_pg) - math.log(4):.5f}")
print(f"V(G, D_trained)     = {value_v(log_pd, log_pg, d_trained.clamp(1e-6, 1 - 1e-6)):.5f}   (below)")
print(f"V at p_G = p_data   = {value_v(log_pd, log_pd, optimal_discriminator(log_pd, log_pd)):.5f}"
      f"   (-log 4 = {-math.log(4):.5f})")

# %% [markdown]
# Sweeping the generator: $p_G = \mathcal N(\mu, 1.5^2)$ for a range of $\mu$. The two curves are the same
# function; they never reach $-\log 4$ because no Gaussian equals the bimodal $p_\text{data}$.

# %%
mus = torch.linspace(-4, 4, 41)
v_curve, jsd_curve = [], []
for mu in mus.tolist():
    log_pg_mu = toy.Mixture1D(weights=(1.0,), means=(mu,), stds=(1.5,)).log_prob(xs)
    v_curve.append(value_v(log_pd, log_pg_mu, optimal_discriminator(log_pd, log_pg_mu)))
    jsd_curve.append(2 * jsd(log_pd, log_pg_mu) - math.log(4))
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(mus, v_curve, lw=3, alpha=0.5, label="V(G_mu, D*)")
ax.plot(mus, jsd_curve, "k--", label="2 JSD(p_data || p_G) - log 4")
ax.axhline(-math.log(4), color="gray", lw=1, ls=":", label="-log 4")
ax.set(xlabel="generator mean mu", ylabel="nats")
ax.legend()
print(f"largest |V(G, D*) - (2 JSD - log 4)| over the sweep: "
      f"{max(abs(a - b) for a, b in zip(v_curve, jsd_curve, strict=True)):.2e}")

# %% [markdown]
# ## 4. Minimax vs non-saturating generator loss
#
# The generator of the minimax game minimizes $\mathbb E_z \log(1 - D(G(z)))$. Early in training its samples
# are poor, the discriminator rejects them confidently, $D(G(z)) \approx 0$, and the loss is flat there: with
# $D = \sigma(\ell)$,
#
# $$\frac{\partial}{\partial \ell} \log\big(1 - \sigma(\ell)\big) = -\sigma(\ell) \;\to\; 0
# \quad \text{as } D(G(z)) \to 0 .$$
#
# Goodfellow et al. (2014) therefore let the generator **maximize** $\log D(G(z))$ instead, the
# **non-saturating** loss $\mathcal L_G = -\mathbb E_z \log D(G(z))$, with
# $\frac{\partial}{\partial \ell}\big(-\log \sigma(\ell)\big) = -(1 - \sigma(\ell)) \to -1$ there. Both push
# $D(G(z))$ up and have the same fixed point $p_G = p_\text{data}$; they differ in how hard they push where
# the generator is bad.
#
# ### Exercise 3: the non-saturating generator loss
# Write `generator_loss(fake_logits)` $= -\frac1B \sum_j \log \sigma(\ell^\text{fake}_j)$ for the logits of
# the discriminator on a generated batch (shape $(B,)$), as a scalar tensor, finite for logits of any size.

# %% tags=["solution:ex3_generator_loss"]
def generator_loss(fake_logits):
    """Non-saturating generator loss -mean log D(G(z)), D = sigmoid(logit); a scalar."""
    ### BEGIN SOLUTION
    return F.softplus(-fake_logits).mean()
    ### END SOLUTION


# %% tags=["check:ex3_generator_loss"]
lecture08.check_generator_loss(generator_loss)

# %% [markdown]
# For comparison, the minimax generator loss (the one that saturates):

# %%
def minimax_generator_loss(fake_logits):
    """mean log(1 - D(G(z))): the generator's term of V, minimized directly."""
    return -F.softplus(fake_logits).mean()


# %% [markdown]
# The gradients, on the left as a function of $D(G(z))$, on the right measured on the 1-D problem: a
# generator $G(z) = \mu + 0.5 z$ placed at $\mu = 6$, beyond the data, against a discriminator trained to
# reject it. The gradient that reaches $\mu$ is $\partial \mathcal L_G / \partial \mu$.

# %%
logits = torch.linspace(-12, 6, 400, requires_grad=True)
d_of_g = torch.sigmoid(logits).detach()
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, loss_fn in (("minimax: log(1 - D)", minimax_generator_loss), ("non-saturating: -log D", generator_loss)):
    (grad,) = torch.autograd.grad(loss_fn(logits) * len(logits), logits)
    axes[0].semilogx(d_of_g, grad.abs(), label=name)
axes[0].set(xlabel="D(G(z))", ylabel="|d loss / d logit|", title="gradient reaching the generator")
axes[0].legend()

torch.manual_seed(0)
x_far = toy.Mixture1D(weights=(1.0,), means=(6.0,), stds=(0.5,)).sample(20000, seed=3)[:, None]   # G(z) = 6 + 0.5 z
disc_far = train_discriminator(mlp(1, 1, 64, act=nn.LeakyReLU).to(device), x_real_1d, x_far,
                               steps=budget(smoke=200, standard=1000, full=1000))
mu = torch.tensor(6.0, device=device, requires_grad=True)
z = torch.randn(5000, 1, generator=torch.Generator().manual_seed(4)).to(device)
fake_logits = disc_far(mu + 0.5 * z).squeeze(1)
grads = {name: torch.autograd.grad(fn(fake_logits), mu, retain_graph=True)[0].item()
         for name, fn in (("minimax", minimax_generator_loss), ("non-saturating", generator_loss))}
axes[1].bar(list(grads), [abs(v) for v in grads.values()], color=["C0", "C1"], log=True)
axes[1].set(ylabel="|d L_G / d mu|", title=f"mu = 6, mean D(G(z)) = {torch.sigmoid(fake_logits).mean():.1e}")
plt.tight_layout()
print({k: f"{v:.2e}" for k, v in grads.items()}, f"ratio {grads['non-saturating'] / grads['minimax']:.0f}")

# %% [markdown]
# The minimax gradient is hundreds of times smaller: wherever the discriminator wins clearly, a generator
# trained with it hardly learns. Section 5 trains both losses side by side on the 2-D mixtures.
#
# ## 5. Mode collapse on the ring and the grid
#
# The game's theory assumes the discriminator is optimal at every step; in practice each network takes one
# gradient step in turn. A generator can then chase the discriminator from mode to mode, or put all its mass on
# a few modes the discriminator currently likes: **mode collapse**. Two standard mixtures make it measurable
# (`dgm_course.toy`): 8 Gaussians on a ring of radius 2 (standard deviation $\sigma = 0.141$) and 25 Gaussians
# on a $5\times5$ grid of spacing 1 ($\sigma = 0.05$).
#
# **Easier than the papers' versions.** What makes these sets hard is how narrow a mode is compared with the gaps
# between modes. In the code released with the papers, the ring of the WGAN-GP toy experiments (Gulrajani et al.
# 2017, script `gan_toy.py`) has modes of $\sigma = 0.02$ on a circle of radius 2, and the unrolled-GAN demo of
# Metz et al. (2017) modes of $\sigma = 0.01$ on a circle of radius 1: radius/$\sigma$ = 100 in both, against
# $2/0.141 \approx 14$ here, so our ring is about 7 times blurrier. The WGAN-GP script's grid has $\sigma = 0.05$
# at spacing 2 (spacing/$\sigma$ = 40, against $1/0.05 = 20$ here), so our grid is 2 times blurrier. (That script
# rescales each set afterwards, which changes neither ratio.) Wider modes are easier to find and to fill, which
# lets small networks reach them in a CPU budget; our mode counts and high-quality fractions are therefore **not
# comparable** with the tables of those papers.
#
# **The protocol** (fixed for every model and every mode of this course; the 2500 samples and the $3\sigma$
# rule follow VEEGAN, Srivastava et al. 2017, and PacGAN, Lin et al. 2018): draw $N = 2500$ samples from the
# generator. A sample is **high quality** if it
# lies within $3\sigma$ of its nearest mode centre. A mode is **covered** if at least 20 high-quality samples
# have it as their nearest centre (for a perfect sampler: 312 per ring mode, 100 per grid mode). Report the
# number of covered modes and the high-quality fraction (for exact samples from the data: 0.989, the mass of a
# 2-D Gaussian within $3\sigma$).
#
# ### Exercise 4: the mode-coverage metric
# Write `mode_coverage(samples, centers, std, min_count)`: samples $(N, 2)$, centres $(K, 2)$, the per-mode
# standard deviation and the threshold; return `(modes_covered, high_quality_fraction)` as an `int` and a
# `float`.

# %% tags=["solution:ex4_mode_coverage"]
def mode_coverage(samples, centers, std, min_count):
    """(number of modes with >= min_count samples within 3 std, fraction of samples within 3 std of a mode)."""
    ### BEGIN SOLUTION
    dist, nearest = torch.cdist(samples, centers).min(1)                  # (N,) each
    high_quality = dist < 3 * std
    counts = torch.bincount(nearest[high_quality], minlength=len(centers))  # (K,)
    return int((counts >= min_count).sum()), high_quality.float().mean().item()
    ### END SOLUTION


# %% tags=["check:ex4_mode_coverage"]
lecture08.check_mode_coverage(mode_coverage)

# %% [markdown]
# The protocol as one function, and the reference numbers of exact samples from each mixture:

# %%
N_EVAL, MIN_COUNT = 2500, 20                                              # the protocol: fixed in all modes
TOY = {"ring": "8gaussians", "grid": "25gaussians"}


def coverage(samples, data):
    name = TOY[data]
    return mode_coverage(samples.cpu(), toy.mode_centers(name), toy.MODE_STD[name], MIN_COUNT)


for data, name in TOY.items():
    modes, hq = coverage(toy.toy_2d(name, N_EVAL, seed=7), data)
    print(f"{data}: exact samples cover {modes}/{len(toy.mode_centers(name))} modes, high quality {hq:.3f}")

# %% [markdown]
# ### The adversarial training loop
# One iteration of the **alternating update** is
#
# 1. a **discriminator step**: with a real batch $x_{1..B}$ and a generated batch $\tilde x_j = G(z^D_j)$,
#    $$\phi \leftarrow \phi - \text{step of } \nabla_\phi \mathcal L_D(\phi),\qquad
#      \mathcal L_D = -\tfrac1B \textstyle\sum_i \log D_\phi(x_i) - \tfrac1B \sum_j \log\big(1 - D_\phi(\tilde x_j)\big),$$
#    in which $\tilde x$ is a **constant**: this step must not move $G$ (detach the generated batch);
# 2. a **generator step** through the *updated* discriminator, on fresh noise $z^G$:
#    $\theta \leftarrow \theta - \text{step of } \nabla_\theta\, \mathcal L_G\big(D_\phi(G_\theta(z^G))\big)$,
#    with $\mathcal L_G$ the non-saturating loss of exercise 3 (or the minimax one). Only $G$'s optimizer steps:
#    the backward pass also leaves gradients in $D$'s parameters, which must not reach $D$'s next step.
#
# ### Exercise 5: one alternating GAN update
# Write `gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss)`. `G` maps noise $(B, Z)$ to
# samples shaped like `x_real` $(B, \dots)$; `D` maps a batch $(B, \dots)$ to logits $(B,)$; `opt_G` and `opt_D` are
# the two players' optimizers (any `torch.optim` optimizer); `z_D` and `z_G` are two noise batches $(B, Z)$, the
# first for the discriminator step, the second for the generator step; `g_loss(fake_logits)` is the generator's
# loss (exercise 3's by default). Do the two steps above, the discriminator's loss by exercise 1's
# `discriminator_loss` with $D$ called on the real and on the generated batch separately (as one batch, batch
# normalization in $D$ would mix them), and return the two losses, each computed before its own update, as Python
# floats `(d_loss, g_loss_value)`. Tensors and parameters are float32. On entry the parameters' `.grad` may hold
# anything (the previous generator step leaves gradients in $D$): clear them so that each step uses its own
# loss's gradient alone.
#
# The check runs your function on a linear $G$ and $D$, for which the whole step can be worked out by hand (the
# losses, the gradient each optimizer sees, the parameters after), twice in a row, and then 40 times on a 1-D toy
# problem, where the generator must end where the reference update puts it. The training loops below call it.

# %% tags=["solution:ex5_gan_step"]
def gan_step(G, D, opt_G, opt_D, x_real, z_D, z_G, g_loss=generator_loss):
    """One discriminator step, then one generator step through the updated D; returns (d_loss, g_loss) floats."""
    ### BEGIN SOLUTION
    d_loss = discriminator_loss(D(x_real), D(G(z_D).detach()))        # the fakes are constants for D's step
    opt_D.zero_grad()
    d_loss.backward()
    opt_D.step()
    loss = g_loss(D(G(z_G)))                                            # through the updated D
    opt_G.zero_grad()                                                   # D's grads from here are cleared next time
    loss.backward()
    opt_G.step()
    return d_loss.item(), loss.item()
    ### END SOLUTION


# %% tags=["check:ex5_gan_step"]
lecture08.check_gan_step(gan_step)

# %% [markdown]
# The 2-D training loop around it: Adam with $\beta_1 = 0.5$, a common choice for GANs since DCGAN (a long
# momentum memory makes the two players oscillate). The learning rate decays linearly to 0, so that late, small
# steps let the generator settle into the modes instead of circling around them. The generator is an MLP from
# $z \in \mathbb R^{Z}$ to $\mathbb R^2$; the discriminator an MLP with leaky ReLUs (no dead units where the generator
# has not been yet), flattened to one logit per sample. Every `every` steps the loop saves the generator's samples
# for one fixed noise batch of size $N = 2500$, and the discriminator's $D(x)$ on a $60 \times 60$ grid of the
# plane: the snapshots for the coverage curves and the widget.

# %%
Z_DIM_2D = 2
D_GRID, _ = plot.grid_2d(3.0, 60)                                        # (3600, 2): where D is drawn


def train_gan_2d(G, D, data, steps, g_loss, batch, lr=1e-3, every=100, seed=0):
    """Alternate one D step and one G step (gan_step); returns losses and the snapshots of G(z_fixed)."""
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.9))
    decay = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps) for opt in (opt_d, opt_g)]
    gen = torch.Generator(device).manual_seed(seed)                       # batches and noise drawn on the device
    z_fixed = torch.randn(N_EVAL, Z_DIM_2D, generator=torch.Generator().manual_seed(1)).to(device)
    data, d_grid = data.to(device), D_GRID.to(device)                     # moved to the device once
    history = {"d_loss": [], "g_loss": [], "step": [], "samples": [], "d_grid": []}
    for step in progress(range(1, steps + 1), "2-D GAN"):
        x = data[torch.randint(len(data), (batch,), generator=gen, device=device)]      # (B, 2)
        z_d, z_g = (torch.randn(batch, Z_DIM_2D, generator=gen, device=device) for _ in range(2))   # (B, Z) each
        d_loss, loss = gan_step(G, D, opt_g, opt_d, x, z_d, z_g, g_loss)
        for schedule in decay:
            schedule.step()
        history["d_loss"].append(d_loss)
        history["g_loss"].append(loss)
        if step % every == 0 or step == steps:
            with torch.no_grad():
                history["step"].append(step)
                history["samples"].append(G(z_fixed).cpu())
                history["d_grid"].append(torch.sigmoid(D(d_grid)).cpu().reshape(60, 60))
    return history


# %% [markdown]
# Four runs: the minimax and the non-saturating generator loss, each on the ring and on the grid, with the
# same networks and seeds. The grid gets more steps and larger batches (512 rather than 256): with 25 small
# modes, a larger batch lets the discriminator see the few samples that fall between modes, and punish them.

# %%
GAN_STEPS = {"ring": budget(smoke=150, standard=2000, full=10000),
             "grid": budget(smoke=150, standard=6000, full=30000)}
BATCH_2D = {"ring": 256, "grid": 512}
WIDTH_2D = budget(smoke=64, standard=128, full=256)
LOSSES = {"minimax": minimax_generator_loss, "non-saturating": generator_loss}
data_2d = {data: toy.toy_2d(name, 100_000, seed=0) for data, name in TOY.items()}
gans_2d, runs_2d = {}, {}
for data in TOY:
    for variant, loss_fn in LOSSES.items():
        torch.manual_seed(0)
        G = mlp(Z_DIM_2D, 2, WIDTH_2D).to(device)
        D = nn.Sequential(*mlp(2, 1, WIDTH_2D, act=lambda: nn.LeakyReLU(0.2)), nn.Flatten(0)).to(device)   # logits (B,)
        gans_2d[data, variant] = nn.ModuleDict({"G": G, "D": D})
        runs_2d[data, variant] = train_or_load(
            gans_2d[data, variant], LECTURE, f"gan2d_{data}_{variant.replace('-', '_')}",
            lambda G=G, D=D, data=data, loss_fn=loss_fn: train_gan_2d(G, D, data_2d[data], GAN_STEPS[data], loss_fn,
                                                                      batch=BATCH_2D[data]))

# %% [markdown]
# Coverage over training, by the protocol above, from the saved snapshots:

# %%
cover_2d = {key: [coverage(s, key[0]) for s in run["samples"]] for key, run in runs_2d.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for key, values in cover_2d.items():
    data, variant = key
    ax = axes[list(TOY).index(data)]
    steps = runs_2d[key]["step"]
    ax.plot(steps, [m for m, _ in values], label=f"{variant}: modes covered")
    ax.plot(steps, [hq * len(toy.mode_centers(TOY[data])) for _, hq in values], "--",
            color=ax.lines[-1].get_color(), label=f"{variant}: high-quality fraction x K")
for ax, data in zip(axes, TOY, strict=True):
    ax.set(xlabel="training step", title=f"{data}: {len(toy.mode_centers(TOY[data]))} modes")
    ax.legend(fontsize=7)
plt.tight_layout()

# %%
def show_final(ax, data, variant):
    samples = runs_2d[data, variant]["samples"][-1]
    modes, hq = cover_2d[data, variant][-1]
    centres = toy.mode_centers(TOY[data])
    plot.scatter_2d(data_2d[data][:N_EVAL], ax=ax, lim=3, s=1, color="lightgray")
    plot.scatter_2d(samples, ax=ax, lim=3, s=1, color="C3")
    ax.scatter(centres[:, 0], centres[:, 1], marker="x", color="k", s=15)
    ax.set_title(f"{data}, {variant}\n{modes}/{len(centres)} modes, {hq:.0%} high quality", fontsize=9)


fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
for ax, (data, variant) in zip(axes, runs_2d, strict=True):
    show_final(ax, data, variant)
plt.tight_layout()

# %% [markdown]
# ### Scrub through training
# The generator's samples (red, the same noise batch throughout) at each saved step, over the data (grey) and the
# discriminator's $D(x)$ at that step (blue: judged generated, red: judged real). The game becomes visible: $D$
# rises where data lack samples and falls where samples lack data, and the generator follows its slope.
# Watch for the generator jumping between modes, for bridges of samples between modes (a continuous $G$ from a
# connected noise space must pass through the gaps; the high-quality fraction counts them), and for modes that
# stay empty.

# %%
def show_snapshot(data="grid", variant="non-saturating", snapshot=1.0):
    run = runs_2d[data, variant]
    i = round(snapshot * (len(run["step"]) - 1))
    samples = run["samples"][i]
    modes, hq = coverage(samples, data)
    fig, ax = plt.subplots(figsize=(5.2, 4.5))
    image = ax.imshow(run["d_grid"][i], origin="lower", extent=(-3, 3, -3, 3), cmap="coolwarm", vmin=0, vmax=1,
                      alpha=0.6)
    fig.colorbar(image, ax=ax, label="D(x)")
    plot.scatter_2d(data_2d[data][:N_EVAL], ax=ax, lim=3, s=1, color="dimgray")
    plot.scatter_2d(samples, ax=ax, lim=3, s=1, color="C3")
    ax.set_title(f"step {run['step'][i]}: {modes} modes, {hq:.0%} high quality")
    plt.show()


widgets.interactive_plot(show_snapshot, data=list(TOY), variant=list(LOSSES),
                         snapshot=widgets.slider(1.0, 0.0, 1.0, 0.01, description="progress"))

# %% [markdown]
# ## 6. A DCGAN on MNIST
#
# Radford et al. (2016) found a convolutional recipe that trains stably: the generator upsamples with
# **transposed convolutions**, batch normalization and ReLUs, ending in $\tanh$; the discriminator is a mirror
# image with strided convolutions and leaky ReLUs; no pooling; Adam with learning rate $2 \cdot 10^{-4}$ and
# $\beta_1 = 0.5$. Data are continuous images in $[0, 1]$ (`mnist.to_unit`); inside the networks they live in
# $[-1, 1]$, so the discriminator rescales its input and `sample` maps the generator's $\tanh$ back.
# The channel counts here are small (32 and 64, where the DCGAN paper's networks start at 128) so that a CPU
# trains it in minutes; both networks get one extra $3 \times 3$ convolution at 7 and at 14 pixels, cheap depth.
#
# One change to the discriminator: **spectral normalization** (Miyato et al. 2018) instead of batch norm. Each
# layer's weight matrix $W$ is divided by its largest singular value $\sigma(W)$ (estimated by one step of power
# iteration at each forward pass in training mode). For the final linear layer this caps the gain at exactly 1; for
# a convolution $W$ is the kernel reshaped to (output channels, input channels $\times$ kernel size), and the cap
# on the layer's gain holds only up to a factor set by the kernel size and stride, the approximation Miyato et al.
# make. With leaky ReLUs (gain at most 1) in between, $D$'s logit has a bounded Lipschitz constant: the
# discriminator cannot become arbitrarily sharp, and the generator's gradient stays informative (lecture 09
# returns to Lipschitz discriminators). On this budget it matters: with batch norm in $D$ instead, the same
# training gave a clearly worse FID and samples skewed toward a few digits (try it: replace the `sn(...)` wrappers
# by plain layers and put `nn.BatchNorm2d(2 * ch)` back after the strided convolution to $2\,$`ch` channels).
# So did the discriminator without its two $3 \times 3$ convolutions.

# %%
Z_DIM, CH = 64, 32


class DCGenerator(nn.Module):
    """z (B, 64) -> image (B, 1, 28, 28) in [-1, 1]: 7x7 -> 14x14 -> 28x28 by transposed convolutions."""

    def __init__(self, z_dim=Z_DIM, ch=CH):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim, 2 * ch * 7 * 7), nn.Unflatten(1, (2 * ch, 7, 7)), nn.BatchNorm2d(2 * ch), nn.ReLU(),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), nn.BatchNorm2d(2 * ch), nn.ReLU(),             # (B, 2ch, 7, 7)
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),   # (B, ch, 14, 14)
            nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.ReLU(),
            nn.ConvTranspose2d(ch, 1, 4, stride=2, padding=1), nn.Tanh())                           # (B, 1, 28, 28)

    def forward(self, z):
        return self.net(z)

    @torch.no_grad()
    def sample(self, n, generator=None):
        """n images (n, 1, 28, 28) in [0, 1]."""
        device = next(self.parameters()).device
        return (self(torch.randn(n, Z_DIM, generator=generator).to(device)) + 1) / 2


class DCDiscriminator(nn.Module):
    """image (B, 1, 28, 28) in [-1, 1] -> logit (B,): 28x28 -> 14x14 -> 7x7 by strided convolutions, each layer
    spectrally normalized (no batch norm)."""

    def __init__(self, ch=CH):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm                     # weight / (its largest singular value)
        self.net = nn.Sequential(
            sn(nn.Conv2d(1, ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),                         # (B, ch, 14, 14)
            sn(nn.Conv2d(ch, ch, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),                    # (B, 2ch, 7, 7)
            sn(nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)), nn.LeakyReLU(0.2),
            nn.Flatten(), sn(nn.Linear(2 * ch * 7 * 7, 1)))

    def forward(self, x):
        return self.net(x).squeeze(1)


# %% [markdown]
# The loop is the 2-D one with images: one discriminator step, one non-saturating generator step, the learning
# rate decaying linearly to 0, snapshots of 64 fixed noise vectors along the way. The real batch goes to
# $[-1, 1]$ with $2x - 1$. Two departures from the DCGAN recipe. A learning rate of $3 \cdot 10^{-4}$ (on this
# budget it gave a clearly better FID than $2 \cdot 10^{-4}$). And Adam without momentum, $\beta_1 = 0$ and
# $\beta_2 = 0.9$, the setting of Gulrajani et al. (2017) for Lipschitz-constrained discriminators. In a game,
# momentum keeps each player moving in the direction that answered its opponent some steps ago, which makes the
# two oscillate (the 2-D loop above keeps a short memory, $\beta_1 = 0.5$, for this reason; Gidel et al. 2019 show
# that positive momentum can keep such games from converging). On this budget, with the spectrally normalized
# discriminator, the same training with $\beta_1 = 0.5$ and $\beta_2 = 0.999$ gave a clearly worse FID (try it).
#
# **Weight averaging.** A GAN's generator never settles: each step answers the current discriminator, so its
# weights keep circling around a good solution, and the samples of the last step carry that step's jitter. An
# exponential moving average of the generator's weights (Yazıcı et al. 2019; Karras et al. 2018 sample their
# Progressive GAN this way),
#
# $$\bar\theta \leftarrow \beta\,\bar\theta + (1 - \beta)\,\theta, \qquad \beta = 0.999,$$
#
# averages over the last $1/(1 - \beta) = 1000$ steps. The average is only evaluated, never trained, and it does
# not feed back into the game. Its batch-norm statistics belong to no network that was trained, so after training
# they are recomputed: the average generator runs on fresh noise batches in training mode, with `momentum=None`
# (a plain cumulative mean over those batches).

# %%
@torch.no_grad()
def recompute_batch_norm(G, n_batches=20, batch=500, seed=2):
    """Set G's batch-norm running statistics to their mean over n_batches fresh noise batches."""
    for m in G.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None                                             # cumulative average
    G.train()
    gen = torch.Generator(device).manual_seed(seed)
    for _ in range(n_batches):
        G(torch.randn(batch, Z_DIM, generator=gen, device=device))
    G.eval()


# %%
def train_dcgan(G, D, G_avg, images, steps, batch=64, lr=3e-4, beta=0.999, n_snapshots=6, seed=0):
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.0, 0.9))   # no momentum (see the text)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.0, 0.9))
    decay = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps) for opt in (opt_d, opt_g)]
    gen = torch.Generator(device).manual_seed(seed)                       # batches and noise drawn on the device
    images = images.to(device)                                            # (N, 1, 28, 28): moved there once
    z_fixed = torch.randn(64, Z_DIM, generator=torch.Generator().manual_seed(1)).to(device)
    at = {round(steps * (k + 1) / n_snapshots) for k in range(n_snapshots)}
    history = {"d_loss": [], "g_loss": [], "step": [], "samples": []}
    for step in progress(range(1, steps + 1), "DCGAN"):
        x = 2 * images[torch.randint(len(images), (batch,), generator=gen, device=device)] - 1   # (B, 1, 28, 28)
        z_d, z_g = (torch.randn(batch, Z_DIM, generator=gen, device=device) for _ in range(2))
        d_loss, loss = gan_step(G, D, opt_g, opt_d, x, z_d, z_g)
        for schedule in decay:
            schedule.step()
        ema_update(G_avg, G, beta)                                        # the weight average
        history["d_loss"].append(d_loss)
        history["g_loss"].append(loss)
        if step in at:
            G.eval()                                                      # batch norm with running statistics
            with torch.no_grad():
                history["step"].append(step)
                history["samples"].append(((G(z_fixed) + 1) / 2).cpu())
            G.train()
    recompute_batch_norm(G_avg)
    return history


# %%
from dgm_course import evaluation  # noqa: E402  (the FID protocol and the course classifier, lecture 14)

N_TRAIN = budget(smoke=2000, standard=None, full=None)                   # None: the whole generative split
train_images, _ = evaluation.generative_train_split(N_TRAIN)             # 5000 held-out digits stay unseen (FID floor)
x_train = mnist.to_unit(train_images)                                     # (N, 1, 28, 28) in [0, 1]
DCGAN_STEPS = budget(smoke=30, standard=9000, full=40000)
torch.manual_seed(0)
dc_G, dc_D = DCGenerator().to(device), DCDiscriminator().to(device)
dc_G_avg = copy.deepcopy(dc_G)                                            # the weight average: starts at G
print(f"generator {sum(p.numel() for p in dc_G.parameters()):,} parameters, "
      f"discriminator {sum(p.numel() for p in dc_D.parameters()):,}; {DCGAN_STEPS} steps of batch 64 "
      f"= {DCGAN_STEPS * 64 / len(x_train):.1f} epochs")
dc_history = train_or_load(nn.ModuleDict({"G": dc_G, "D": dc_D, "G_avg": dc_G_avg}), LECTURE, "dcgan_mnist_sn4_9k",
                           lambda: train_dcgan(dc_G, dc_D, dc_G_avg, x_train, DCGAN_STEPS))
dc_G.eval()
dc_G_avg.eval()

# %% [markdown]
# Samples of the generator $G$ (not the average) for the same 64 noise vectors over training, and the two losses. A GAN's losses do not fall
# steadily: each is measured against an opponent that keeps changing. $\mathcal L_D$ near
# $\log 4 = 1.39$ means a discriminator at chance; near 0, one that wins.

# %%
snaps = dc_history["samples"]
fig, axes = plt.subplots(1, len(snaps), figsize=(2.2 * len(snaps), 2.6))
for ax, step, images in zip(axes, dc_history["step"], snaps, strict=True):
    plot.image_grid(images[:36], nrow=6, ax=ax, title=f"step {step}")
plt.tight_layout()

# %%
d_curve, g_curve = torch.tensor(dc_history["d_loss"]), torch.tensor(dc_history["g_loss"])
window = min(50, len(d_curve))
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(d_curve.unfold(0, window, 1).mean(1), label="discriminator loss L_D")
ax.plot(g_curve.unfold(0, window, 1).mean(1), label="generator loss L_G (non-saturating)")
ax.axhline(math.log(4), color="gray", ls=":", lw=1, label="log 4 (D at chance)")
ax.set(xlabel="step", ylabel=f"moving average over {window} steps", title="DCGAN losses")
ax.legend()

# %% [markdown]
# ### Measuring the samples
# Two sample-based numbers, each on `N_GEN` generated images (the number is printed below):
# 1. the classifier two-sample test of section 2, an MLP on the raw pixels: real vs real (two disjoint random
#    sets of training digits), training vs test digits, and real vs generated;
# 2. the **FID** of the course: the Fréchet distance between Gaussians fitted to the features of a small MNIST
#    classifier (`dgm_course.evaluation`, built in lecture 14),
#    $\lVert \mu_a - \mu_b \rVert^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b - 2 (\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2})^{1/2}\big)$.
#    It is **not** the Inception FID of the literature, so its values are comparable only within this course.
#    The course's FID protocol (lecture 14): the reference set is the mode's test set
#    (`evaluation.fid_reference`), and the **floor** is the FID of `N_GEN` real training digits that no model
#    trained on (5000 training digits drawn once at random and held out by `evaluation.generative_train_split`) against the
#    same reference: what a perfect model would score with the same number of samples. Beside it, the fraction of
#    samples the classifier assigns to some digit with probability at least 0.9 (`evaluation.confident_fraction`).

# %%
N_GEN = budget(smoke=500, standard=2000, full=5000)                      # generated images per comparison
reference = evaluation.fid_reference(smoke=500)                          # (N_ref, 1, 28, 28): the test set
x_test = reference[:N_GEN]
dc_samples = {name: torch.cat([G.sample(500, generator=torch.Generator().manual_seed(k)).cpu()
                               for k in range(N_GEN // 500)])             # (N_GEN, 1, 28, 28) in [0, 1]
              for name, G in (("last step", dc_G), ("weight average", dc_G_avg))}
x_fake = dc_samples["weight average"]                                     # the DCGAN's samples from here on
plot.samples_beside_real({f"DCGAN, {name}": x for name, x in dc_samples.items()}, x_test)
perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(5))
real_a, real_b = x_train[perm[:N_GEN]], x_train[perm[N_GEN:2 * N_GEN]]
print(f"{N_GEN} images per set; FID reference: {len(reference)} test images")
for name, other in (("train vs train", real_b), ("train vs test", x_test), ("train vs DCGAN", x_fake)):
    acc, p = c2st(real_a, other, steps=C2ST_STEPS // 3)
    print(f"{name:14s} classifier two-sample test: accuracy {acc:.3f}, p-value {p:.3f}")

# %% [markdown]
# Two disjoint sets of training digits are indistinguishable, as they must be. Training and test digits are
# **not**: by the description of the MNIST data set, the first 5000 test digits come from NIST's Special
# Database 3 (written by Census Bureau employees, cleaner than the students' digits mixed into the training
# set), and in standard mode the course's test set (the first 2000 official test digits) lies entirely in that
# part. A two-sample test finds such a shift without being told what to look for. The third line measures the
# DCGAN's samples the same way.

# %%
clf = evaluation.mnist_classifier()
fid_floor = evaluation.fid_floor(N_GEN, reference, clf)
print(f"FID (course classifier, not Inception; {N_GEN} samples vs {len(reference)} test images): "
      f"floor (held-out training digits) {fid_floor:.2f}")
dc_fid, dc_confident = {}, {}
for name, x in dc_samples.items():
    dc_fid[name], dc_confident[name] = evaluation.fid(x, reference, clf), evaluation.confident_fraction(x, clf)
    digits = torch.bincount(evaluation.predict(x, clf), minlength=10)
    print(f"DCGAN, {name:14s}: FID {dc_fid[name]:6.2f} ({dc_fid[name] / fid_floor:.1f} x the floor), "
          f"confidently classified {dc_confident[name]:.1%}, samples per predicted digit {digits.tolist()}")

# %% [markdown]
# ## 7. Results
#
# The headline numbers: mode coverage on the ring and the grid by the protocol of section 5 (2500 samples;
# high quality within $3\sigma$; a mode covered with at least 20 high-quality samples), for the better of the
# two generator losses on each data set, and the DCGAN's FID in the course classifier's feature space with the
# floor measured at the same number of samples and the fraction of confidently classified samples.

# %%
best = {data: max(LOSSES, key=lambda v, data=data: cover_2d[data, v][-1]) for data in TOY}
for data in TOY:
    for variant in LOSSES:
        modes, hq = cover_2d[data, variant][-1]
        print(f"{data:4s} {variant:15s} {modes:2d}/{len(toy.mode_centers(TOY[data]))} modes, "
              f"{hq:.3f} high quality" + ("   <- best" if variant == best[data] else ""))
elapsed = time.perf_counter() - T0
for data in TOY:
    modes, hq = cover_2d[data, best[data]][-1]
    note = (f"{best[data]} GAN, {GAN_STEPS[data]} steps of batch {BATCH_2D[data]}; {N_EVAL} samples, "
            f">= {MIN_COUNT} within 3 sigma")
    record(LECTURE, f"{data}_modes", modes, "modes", n_data=N_EVAL, wall_time_s=elapsed, note=note)
    record(LECTURE, f"{data}_high_quality", hq, "fraction", n_data=N_EVAL, wall_time_s=elapsed, note=note)
for name, key in (("weight average", "dcgan"), ("last step", "dcgan_last")):
    record(LECTURE, f"{key}_fid", dc_fid[name], "FID (course classifier)", n_data=N_GEN, wall_time_s=elapsed,
           note=f"{name} generator; {DCGAN_STEPS} steps of batch 64; {N_GEN} samples against the "
                f"{len(reference)} test images")
    record(LECTURE, f"{key}_confident_fraction", dc_confident[name], "fraction", n_data=N_GEN,
           wall_time_s=elapsed, note=f"{name} generator; samples the course classifier assigns to a digit with "
                                     "probability >= 0.9")
record(LECTURE, "fid_floor", fid_floor, "FID (course classifier)", n_data=N_GEN, wall_time_s=elapsed,
       note=f"{N_GEN} held-out training images against the {len(reference)} test images")
print(f"total time {elapsed:.0f} s in {MODE} mode")

# %% [markdown]
# **Discussion** (numbers from a standard-mode run on a CPU; smoke mode trains far too briefly for them).
# - **Ring**: both generator losses cover 8/8 modes after 2000 steps, the better one with
#   95.1%<!-- r:ring_high_quality*100 --> high-quality samples (the table above gives both). With Adam,
#   $\beta_1 = 0.5$ and a decaying learning rate the minimax loss does not get stuck here: the discriminator never
#   becomes confident enough, this early, for its gradient to vanish (section 4 shows the regime where it does).
# - **Grid**: both losses cover 25/25 modes after 6000 steps of batch 512, the better one with
#   93.7%<!-- r:grid_high_quality*100 --> high-quality samples, meeting the targets (at least 24/25 and 90%). Two
#   choices matter on this CPU budget: the larger batch (the discriminator sees more of the few samples between
#   modes) and the learning-rate decay (without it the samples keep jittering around the modes at the scale of one
#   step). The curves above show the high-quality fraction rising last, long after the modes are found; the
#   samples that miss are the bridges between neighbouring modes. Remember that these modes are blurrier than the
#   papers' (section 5).
# - **DCGAN**: 9000 steps of batch 64 in standard mode (about 10 epochs; the parameter line above prints the
#   exact figure). Judge it by three numbers printed above, each beside its real-data reference: the FID of the
#   weight-averaged generator against the floor of real held-out digits at the same 2000 samples (the course's
#   standard bar for this lecture is 4 times the floor), the fraction of confidently classified samples (real test
#   digits come close to all of them), and the predicted-digit counts (a generator that favours a few digits has
#   mildly collapsed). The same numbers for the generator of the last step show what averaging the weights changes,
#   at no extra training cost. Compare the classifier two-sample test's accuracy on the DCGAN's samples with its
#   accuracy on training against test digits.
#   These FIDs are the course classifier's and are not comparable with Inception FIDs.
#
# ## Summary
# - Likelihood and sample quality can disagree completely: a mixture with 99% noise loses only $\log 100$ nats
#   of log-likelihood in any dimension, and a memorizing model has perfect samples and an infinite test NLL.
# - A two-sample test compares distributions from samples alone; a classifier makes a strong statistic, and a
#   permutation test gives its p-value without assumptions.
# - A GAN trains a generator against such a classifier. For a fixed generator the best discriminator is
#   $D^* = p_\text{data}/(p_\text{data} + p_G)$, and against it the generator minimizes
#   $2\,\mathrm{JSD}(p_\text{data} \,\|\, p_G) - \log 4$; both were checked numerically in 1-D.
# - The minimax generator loss saturates when the discriminator wins; the non-saturating loss
#   $-\log D(G(z))$ keeps the gradient.
# - Training alternates one discriminator step (on real and **detached** generated samples) and one generator
#   step through the updated discriminator, each on its own loss's gradients alone (exercise 5).
# - Alternating gradient steps are not the idealized game: mode collapse and bridges between modes are
#   measurable with a fixed coverage protocol (on toy sets easier than the papers').
# - A DCGAN produces digits on a CPU in minutes (sampled from an average of its generator's weights); its samples
#   are measured by a two-sample test and by an FID
#   in the feature space of the course's classifier.
#
# Lecture 09 replaces the Jensen–Shannon divergence by other divergences (f-GAN) and by the Wasserstein
# distance (WGAN), which behave better when the supports of $p_\text{data}$ and $p_G$ do not overlap.
#
# ## References
# - I. Goodfellow et al., *Generative Adversarial Nets*, NeurIPS 2014. <https://arxiv.org/abs/1406.2661>
# - A. Radford, L. Metz, S. Chintala, *Unsupervised Representation Learning with Deep Convolutional Generative
#   Adversarial Networks* (DCGAN), ICLR 2016. <https://arxiv.org/abs/1511.06434>
# - L. Theis, A. van den Oord, M. Bethge, *A note on the evaluation of generative models*, ICLR 2016
#   (the noise mixture and the memorizing model). <https://arxiv.org/abs/1511.01844>
# - D. Lopez-Paz, M. Oquab, *Revisiting Classifier Two-Sample Tests*, ICLR 2017. <https://arxiv.org/abs/1610.06545>
# - L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, *Unrolled Generative Adversarial Networks*, ICLR 2017
#   (the ring and grid mode-collapse benchmarks). <https://arxiv.org/abs/1611.02163>
# - A. Srivastava et al., *VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational Learning*,
#   NeurIPS 2017 (the 3σ high-quality protocol). <https://arxiv.org/abs/1705.07761>
# - Z. Lin, A. Khetan, G. Fanti, S. Oh, *PacGAN: The power of two samples in generative adversarial networks*,
#   NeurIPS 2018 (the 25-Gaussian grid protocol with 2500 samples). <https://arxiv.org/abs/1712.04086>
# - M. Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium* (FID),
#   NeurIPS 2017. <https://arxiv.org/abs/1706.08540>
# - Y. Yazıcı, C.-S. Foo, S. Winkler, K.-H. Yap, G. Piliouras, V. Chandrasekhar, *The Unusual Effectiveness of
#   Averaging in GAN Training*, ICLR 2019 (the moving average of the generator's weights).
#   <https://arxiv.org/abs/1806.04498>
# - T. Karras, T. Aila, S. Laine, J. Lehtinen, *Progressive Growing of GANs for Improved Quality, Stability, and
#   Variation*, ICLR 2018. <https://arxiv.org/abs/1710.10196>
# - T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, *Spectral Normalization for Generative Adversarial Networks*,
#   ICLR 2018. <https://arxiv.org/abs/1802.05957>
# - I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, *Improved Training of Wasserstein GANs*,
#   NeurIPS 2017 (Adam with beta_1 = 0, beta_2 = 0.9). <https://arxiv.org/abs/1704.00028>
# - G. Gidel, R. A. Hemmat, M. Pezeshki, R. Le Priol, G. Huang, S. Lacoste-Julien, I. Mitliagkas, *Negative
#   Momentum for Improved Game Dynamics*, AISTATS 2019. <https://arxiv.org/abs/1807.04740>
