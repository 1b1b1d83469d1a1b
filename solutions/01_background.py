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
# # Lecture 01: Background. What a generative model is, and how to write one down
#
# A generative model is a probability distribution $p(x)$ over the data that we can sample from and, often,
# evaluate. Before building deep ones, this lecture sets up the tools they are all made of: factorizing a
# joint distribution, the chain rule and Bayes rule, ancestral sampling, latent variables, neural
# conditionals, and the yardstick we use for a density model, the negative log-likelihood of held-out data.
#
# **Learning goals.** After this lecture you can
# 1. say what separates a generative model $p(x)$ or $p(x, y)$ from a discriminative one $p(y \mid x)$, and what
#    $p(x)$ is good for (sampling, density estimation, features);
# 2. count the parameters of a joint distribution under the full, fully independent, Markov-chain and
#    Bayes-net factorizations, and explain why 28x28 binary images cannot be modelled without structure;
# 3. evaluate a joint with the chain rule, invert it with Bayes rule in log space, and sample it ancestrally;
# 4. treat a mixture of Gaussians as a latent-variable model $Z \to X$: sample it, evaluate its density and
#    the posterior $p(z \mid x)$;
# 5. fit logistic regression (a neural conditional) and Gaussian discriminant analysis (a generative
#    classifier), and say which wins as the training set grows, and why;
# 6. estimate a 2-D density with a histogram and with a Gaussian mixture, choose their capacity on
#    validation data, compare their test NLL, and measure why histograms fail in high dimension.
#
# **Builds on:** probability (random variables, conditional probability, expectations, the Gaussian density),
# a little linear algebra, and PyTorch basics (tensors, autograd, `nn.Module`, an optimizer). No earlier lecture.
#
# **Leads to:** lecture 02 builds $p(x)$ for images from the chain rule and neural conditionals like the
# logistic regression here; lecture 03 studies maximum likelihood; lecture 04 returns to mixtures, with EM.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgm_course import budget, fit, mnist, plot, record, setup, toy, widgets
from dgm_course.exercises import lecture01

T0 = time.perf_counter()  # the results cell reports the wall time of the whole notebook
device, MODE = setup(seed=0, threads=1)  # the models here are tiny: a second thread costs more than it saves
LECTURE = "01_background"

# two moons: (train, validation, test) sizes
N_MOONS = budget(smoke=(500, 500, 1000), standard=(2000, 1000, 5000), full=(20000, 5000, 20000))
GMM_COMPONENTS = budget(smoke=(4, 16), standard=(2, 4, 8, 16, 32), full=(2, 4, 8, 16, 32, 64))
GMM_STEPS = budget(smoke=150, standard=1500, full=4000)  # full-batch Adam steps per mixture
CLF_SIZES = budget(smoke=(8, 64), standard=(8, 16, 32, 64, 128, 256, 1024), full=(8, 32, 128, 512, 2048))
CLF_REPEATS = budget(smoke=2, standard=10, full=50)  # training sets drawn per size
LR_STEPS = budget(smoke=60, standard=300, full=1000)  # full-batch Adam steps per logistic regression
N_SAMPLES = budget(smoke=5000, standard=20000, full=200000)  # ancestral samples of the small network
N_MNIST_TRAIN = budget(smoke=5000, standard=60000, full=60000)
SOFTMAX_EPOCHS = budget(smoke=1, standard=3, full=10)  # epochs of softmax regression on MNIST

# %% [markdown]
# ## 1. Generative and discriminative models
#
# Given inputs $x$ (an image) and labels $y$ (its digit), a **discriminative** model learns the conditional
# $p(y \mid x)$ and nothing else: it never has to explain where $x$ comes from. A **generative** model learns a
# distribution over the data itself, $p(x)$, or over both, $p(x, y) = p(y)\,p(x \mid y)$, from which the
# classifier follows by Bayes rule. The second task is much larger: $y$ carries about 3 bits, an MNIST image
# hundreds. What do we get for the effort? Three things, all used in this course:
#
# - **Sampling.** Draw new $x \sim p(x)$: new images, sounds, molecules (every lecture from 02 on).
# - **Density estimation.** Evaluate $p(x)$: flag inputs that the model finds unlikely (outliers, anomalies),
#   compress data with $-\log_2 p(x)$ bits (lecture 03), and compare models by how probable they find
#   held-out data.
# - **Features.** A model with latent variables $z$ explains each $x$ by a posterior $p(z \mid x)$, an
#   unsupervised representation (the mixture component below; the VAE's code in lecture 05).
#
# The yardstick for density models in this course is the **test negative log-likelihood**,
# $\mathrm{NLL} = -\frac{1}{M}\sum_{m=1}^{M} \log p(x^{(m)}_{\text{test}})$, in nats (natural log) per data point:
# lower is better, and a model that overfits its training data pays for it here.

# %% [markdown]
# ## 2. Representing a joint distribution: how many parameters?
#
# Take $n$ binary variables $x_1, \dots, x_n$, e.g. the pixels of a black-and-white image. A general
# distribution over them is a table with one probability per joint value: $2^n$ entries that sum to one, so
# $2^n - 1$ free parameters. The **chain rule** rewrites any joint exactly, without assumptions:
#
# $$p(x_1, \dots, x_n) = p(x_1)\, p(x_2 \mid x_1)\, p(x_3 \mid x_1, x_2) \cdots p(x_n \mid x_1, \dots, x_{n-1}).$$
#
# It does not save anything: $p(x_i \mid x_{<i})$ needs one number for each of the $2^{i-1}$ values of its
# conditioning set, and $1 + 2 + \dots + 2^{n-1} = 2^n - 1$. Savings come from **assumptions** that drop
# variables from the conditioning sets:
#
# | factorization | $p(x)$ | parameters ($n$ binary variables) |
# | --- | --- | --- |
# | full joint | $\prod_i p(x_i \mid x_{<i})$ | $2^n - 1$ |
# | fully independent | $\prod_i p(x_i)$ | $n$ |
# | Markov chain | $p(x_1) \prod_{i>1} p(x_i \mid x_{i-1})$ | $1 + 2(n-1)$ |
# | Bayes net on a DAG $G$ | $\prod_i p(x_i \mid x_{\mathrm{pa}(i)})$ | $\sum_i 2^{\lvert\mathrm{pa}(i)\rvert}$ |
#
# A **Bayesian network** is a directed acyclic graph whose node $i$ has parents $\mathrm{pa}(i)$; it stores
# one conditional probability table (CPT) per node. The three rows above it are Bayes nets too: the complete
# DAG, the empty one, and a path.
#
# ### Exercise 1: parameter counts
#
# Variables take `num_states` $= k$ values each. The CPT of node $i$ holds one distribution over the $k$
# values of $x_i$ for every joint value of its parents, and a distribution over $k$ values has $k - 1$ free
# numbers. Write `num_parameters(parents, num_states)` returning
#
# $$\#\theta(G) = \sum_{i=1}^{n} (k - 1)\, k^{\lvert \mathrm{pa}(i) \rvert}$$
#
# as an exact Python `int` (the full joint of 784 pixels has $2^{784} - 1$ parameters, beyond any float).
# `parents[i]` is the tuple of the parents of variable $i$.

# %% tags=["solution:ex1_parameter_counts"]
def num_parameters(parents, num_states=2):
    """Free parameters of a Bayes net: variable i has parents `parents[i]` and `num_states` values."""
    ### BEGIN SOLUTION
    return sum((num_states - 1) * num_states ** len(pa) for pa in parents)
    ### END SOLUTION


# %% tags=["check:ex1_parameter_counts"]
lecture01.check_parameter_counts(num_parameters)

# %% [markdown]
# The four structures as parent lists. For images we order the pixels in raster order (row by row) and give
# each pixel two parents, its left and its upper neighbour: a Bayes net that knows images are locally smooth.

# %%
def full_parents(n):  # the chain rule with nothing dropped: x_i depends on every earlier variable
    return [tuple(range(i)) for i in range(n)]


def independent_parents(n):  # p(x) = prod_i p(x_i)
    return [() for _ in range(n)]


def markov_parents(n):  # p(x_i | x_{i-1})
    return [()] + [(i - 1,) for i in range(1, n)]


def grid_parents(height, width):
    """Parents of each pixel in raster order: the pixel on its left and the pixel above, where they exist."""
    parents = []
    for r in range(height):
        for c in range(width):
            left, up = r * width + c - 1, (r - 1) * width + c
            parents.append(((left,) if c > 0 else ()) + ((up,) if r > 0 else ()))
    return parents


# %%
structures = {  # image side h -> parent lists of its n = h * h pixels
    "full joint": lambda h: full_parents(h * h),
    "fully independent": lambda h: independent_parents(h * h),
    "Markov chain": lambda h: markov_parents(h * h),
    "grid Bayes net": lambda h: grid_parents(h, h),
}
sides = range(1, 29)  # images of h x h binary pixels, n = h^2
counts = {name: [num_parameters(make(h)) for h in sides] for name, make in structures.items()}

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, values in counts.items():
    ax.plot([h * h for h in sides], [float(v) for v in values], label=name)
ax.set(yscale="log", ylim=(0.5, 1e260), xlabel="number of binary pixels n = h x h", ylabel="free parameters")
ax.axhline(1e80, color="gray", ls=":")
ax.text(300, 1e85, "10^80: about the number of atoms in the universe", color="gray", fontsize=8)
ax.legend()
plt.show()
for name, values in counts.items():
    c = values[-1]  # 28 x 28 pixels
    print(f"28x28 pixels, {name:18s}:", f"{c:,}" if c < 10**12 else f"2^784 - 1, about 10^{len(str(c)) - 1}")

# %% [markdown]
# The full joint is out of reach by more than 150 orders of magnitude; the independent model has 784 numbers
# but, as we will see on MNIST, cannot draw a stroke. Everything in this course lives between the two:
# lecture 02 keeps the chain rule (no independence assumption at all) and replaces the tables by **neural
# networks** that share parameters across conditioning values.

# %% [markdown]
# ## 3. A small Bayes net: the chain rule, Bayes rule, ancestral sampling
#
# Four binary variables about getting to a lecture on time: it rains ($R$), the alarm clock fails ($A$), the
# train is delayed ($T$, more likely in the rain), and you are late ($L$, if the train is delayed or the alarm
# fails). The graph is $R \to T \to L \leftarrow A$, and its factorization
#
# $$p(r, a, t, l) = p(r)\, p(a)\, p(t \mid r)\, p(l \mid a, t)$$
#
# needs $1 + 1 + 2 + 4 = 8$ numbers instead of $2^4 - 1 = 15$. A CPT is stored as a tensor with one axis per
# parent, holding $p(x_i = 1 \mid \text{parents})$; variables are numbered in a topological order (parents
# first): 0 = $R$, 1 = $A$, 2 = $T$, 3 = $L$.

# %%
net_parents = [(), (), (0,), (1, 2)]
net_cpts = [
    torch.tensor(0.3),  # p(R = 1)
    torch.tensor(0.1),  # p(A = 1)
    torch.tensor([0.1, 0.6]),  # p(T = 1 | R = r), indexed [r]
    torch.tensor([[0.05, 0.7], [0.8, 0.95]]),  # p(L = 1 | A = a, T = t), indexed [a, t]
]
print(f"{num_parameters(net_parents)} parameters, vs {num_parameters(full_parents(4))} for the full joint")

# %% [markdown]
# **The chain rule evaluates the joint.** The probability of a full assignment is the product of one CPT entry
# per variable: look up $p(x_i = 1 \mid x_{\mathrm{pa}(i)})$ and use it, or one minus it, depending on $x_i$.
# In log space the product becomes a sum, which is how every model in this course computes $\log p(x)$.

# %%
def log_joint(parents, cpts, x):
    """log p(x) = sum_i log p(x_i | x_pa(i)) for binary states x: (S, D) -> (S,)."""
    log_p = x.new_zeros(len(x), dtype=torch.float32)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)]  # (S,) p(x_i = 1 | the values of its parents)
        log_p = log_p + torch.where(x[:, i] == 1, p1, 1 - p1).log()
    return log_p


states = torch.cartesian_prod(*[torch.arange(2)] * 4)  # (16, 4) every assignment, x_0 varying slowest
p_joint = log_joint(net_parents, net_cpts, states).exp()  # (16,)
print(f"the 16 probabilities sum to {p_joint.sum():.6f}")

# %% [markdown]
# **Bayes rule inverts a model.** Having written the model in the causal direction, from causes $z$ to
# observations $x$, we often want the other direction: how likely is rain, given that you were late? With a
# prior $p(z)$ and a likelihood $p(x \mid z)$,
#
# $$p(z \mid x) = \frac{p(z)\, p(x \mid z)}{p(x)}, \qquad p(x) = \sum_{z'} p(z')\, p(x \mid z').$$
#
# Likelihoods of continuous data are often tiny ($10^{-300}$ and less), so we compute in log space:
#
# $$\log p(z \mid x) = \log p(z) + \log p(x \mid z) - \operatorname{logsumexp}_{z'} \big[\log p(z') + \log p(x \mid z')\big],$$
#
# where $\operatorname{logsumexp}_j a_j = m + \log \sum_j e^{a_j - m}$ with $m = \max_j a_j$ never overflows
# or underflows (`torch.logsumexp`).
#
# ### Exercise 2: Bayes rule in log space
#
# Write `bayes_posterior(log_prior, log_lik)`: `log_prior` has shape $(K,)$ with entries $\log p(z = k)$, and
# `log_lik` has shape $(K, M)$ with entries $\log p(x_m \mid z = k)$ for $M$ observations $x_m$. Return the
# $(K, M)$ tensor of $\log p(z = k \mid x_m)$; each column is a distribution over $z$. It must stay finite when
# every likelihood is $e^{-1000}$.

# %% tags=["solution:ex2_bayes_posterior"]
def bayes_posterior(log_prior, log_lik):
    """log p(z | x_m) of shape (K, M), from log p(z) of shape (K,) and log p(x_m | z) of shape (K, M)."""
    ### BEGIN SOLUTION
    log_joint_zx = log_prior[:, None] + log_lik  # (K, M) log p(z, x_m)
    return log_joint_zx - torch.logsumexp(log_joint_zx, dim=0, keepdim=True)  # minus log p(x_m)
    ### END SOLUTION


# %% tags=["check:ex2_bayes_posterior"]
lecture01.check_bayes_posterior(bayes_posterior)

# %% [markdown]
# Now the question about rain. Sum $A$ and $T$ out of the joint to get $p(R, L)$, split it into a prior
# $p(R)$ and a likelihood $p(L \mid R)$, and apply Bayes rule. Then condition on the alarm as well.

# %%
p = p_joint.reshape(2, 2, 2, 2)  # indexed [r, a, t, l]
p_RL = p.sum(dim=(1, 2))  # (2, 2) p(R = r, L = l)
log_prior = p_RL.sum(1).log()  # (2,) log p(R)
log_lik = (p_RL / p_RL.sum(1, keepdim=True)).log()  # (2, 2) log p(L = l | R = r)
post = bayes_posterior(log_prior, log_lik).exp()  # (2, 2) p(R = r | L = l)
p_given_alarm = p[:, 1, :, 1].sum(1) / p[:, 1, :, 1].sum()  # (2,) p(R | L = 1, A = 1), from the joint
print(f"p(R=1) = {p_RL.sum(1)[1]:.3f}   p(R=1 | L=1) = {post[1, 1]:.3f}   "
      f"p(R=1 | L=1, A=1) = {p_given_alarm[1]:.3f}")

# %% [markdown]
# Being late raises the probability of rain from 0.30 to about 0.53; learning that the alarm failed brings it
# back down to about 0.32, because the failed alarm already explains the lateness. $R$ and $A$ are independent
# a priori but dependent given their common effect $L$: this is **explaining away**, and it is why posterior
# inference in latent-variable models (lectures 04 and 05) is hard even when the prior is simple.
#
# **Ancestral sampling draws from the joint.** Visit the variables in topological order and draw each from its
# CPT given the values already drawn for its parents:
#
# $$x_1 \sim p(x_1), \quad x_2 \sim p(x_2 \mid x_{\mathrm{pa}(2)}), \quad \dots, \quad x_n \sim p(x_n \mid x_{\mathrm{pa}(n)}).$$
#
# Each sample costs one pass over the graph, and the chain rule guarantees that the whole vector has
# distribution $p(x)$. Every autoregressive model (lecture 02) samples this way.
#
# ### Exercise 3: ancestral sampling
#
# Write `ancestral_sample(parents, cpts, n, generator)` returning an $(n, D)$ integer tensor of $n$
# independent samples of $D$ binary variables. `cpts[i]` has one axis per parent of $i$ (a 0-d tensor for a
# root) and holds $p(x_i = 1 \mid x_{\mathrm{pa}(i)})$, so `cpts[i][tuple(x[:, j] for j in parents[i])]` looks up
# the probabilities for a whole batch at once. A Bernoulli($p$) draw is `u < p` with `u` uniform on $[0, 1)$;
# pass `generator` to `torch.rand` so that results are reproducible.

# %% tags=["solution:ex3_ancestral_sampling"]
def ancestral_sample(parents, cpts, n, generator=None):
    """n samples (n, D) of binary variables from a Bayes net, drawn in topological order (parents first)."""
    ### BEGIN SOLUTION
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)]  # (n,) or () p(x_i = 1 | parents' sampled values)
        x[:, i] = (torch.rand(n, generator=generator) < p1).long()
    return x
    ### END SOLUTION


# %% tags=["check:ex3_ancestral_sampling"]
lecture01.check_ancestral_sampling(ancestral_sample)

# %% [markdown]
# The frequencies of the 16 joint states among the samples against their exact probabilities, and Bayes rule
# estimated by counting: among the samples where you are late, how often did it rain?

# %%
samples = ancestral_sample(net_parents, net_cpts, N_SAMPLES, torch.Generator().manual_seed(0))  # (N, 4)
index = (samples * 2 ** torch.arange(3, -1, -1)).sum(1)  # (N,) which of the 16 rows of `states`
freq = torch.bincount(index, minlength=16).float() / N_SAMPLES

fig, ax = plt.subplots(figsize=(8, 2.8))
ax.bar(np.arange(16) - 0.2, p_joint, width=0.4, label="exact p(r, a, t, l)")
ax.bar(np.arange(16) + 0.2, freq, width=0.4, label=f"frequency in {N_SAMPLES} samples")
ax.set_xticks(range(16), ["".join(map(str, s.tolist())) for s in states], fontsize=7)
ax.set(xlabel="state r a t l", ylabel="probability")
ax.legend()
plt.show()
late = samples[:, 3] == 1
print(f"p(R=1 | L=1): by counting {samples[late, 0].float().mean():.3f} over {int(late.sum())} samples, "
      f"exact {post[1, 1]:.3f}")

# %% [markdown]
# ## 4. A latent-variable model: a mixture of two Gaussians, $Z \to X$
#
# The smallest Bayes net with a continuous variable has two nodes: a hidden class $z \in \{0, 1\}$ and an
# observation $x \in \mathbb{R}$,
#
# $$z \sim \mathrm{Categorical}(\pi), \qquad x \mid z \sim \mathcal{N}(\mu_z, \sigma_z^2).$$
#
# Sampling it is ancestral sampling: first $z$, then $x$ given $z$. We only ever observe $x$, whose density
# sums the hidden variable out,
#
# $$p(x) = \sum_{k} \pi_k\, \mathcal{N}(x; \mu_k, \sigma_k^2), \qquad
# \log \mathcal{N}(x; \mu, \sigma^2) = -\frac{(x - \mu)^2}{2\sigma^2} - \log \sigma - \tfrac{1}{2}\log 2\pi.$$
#
# Two Gaussians give a bimodal density that no single Gaussian can fit: latent variables buy flexibility.

# %%
log_pi = torch.tensor([0.3, 0.7], device=device).log()  # (K,) log p(z)
mu = torch.tensor([-2.0, 1.5], device=device)  # (K,)
sigma = torch.tensor([0.5, 0.8], device=device)  # (K,) standard deviations


def sample_mixture(n, log_pi, mu, sigma):
    """Ancestral sampling of the mixture: (x, z), each of shape (n,)."""
    z = torch.multinomial(log_pi.exp(), n, replacement=True)  # (n,) z ~ p(z)
    x = mu[z] + sigma[z] * torch.randn(n, device=mu.device)  # (n,) x ~ N(mu_z, sigma_z^2)
    return x, z


# %% [markdown]
# ### Exercise 4: the mixture density
#
# Write `mixture_log_prob(x, log_pi, mu, sigma)` returning $\log p(x)$ for every entry of a 1-D tensor `x`
# of shape $(N,)$, for $K$ components with parameters of shape $(K,)$:
#
# $$\log p(x) = \operatorname{logsumexp}_k \big[\log \pi_k + \log \mathcal{N}(x; \mu_k, \sigma_k^2)\big].$$
#
# Write the Gaussian log-density from the formula above, and keep the result finite far from both components.

# %% tags=["solution:ex4_mixture_log_prob"]
def mixture_log_prob(x, log_pi, mu, sigma):
    """log p(x) of a 1-D Gaussian mixture: x (N,), log_pi, mu, sigma (K,) -> (N,)."""
    ### BEGIN SOLUTION
    z = (x[:, None] - mu) / sigma  # (N, K) standardized distance to each mean
    log_normal = -0.5 * z**2 - sigma.log() - 0.5 * math.log(2 * math.pi)  # (N, K) log N(x; mu_k, sigma_k^2)
    return torch.logsumexp(log_pi + log_normal, dim=-1)
    ### END SOLUTION


# %% tags=["check:ex4_mixture_log_prob"]
lecture01.check_mixture_log_prob(mixture_log_prob)

# %% [markdown]
# **The posterior is a feature.** Bayes rule with $\log p(x \mid z = k) = \log \mathcal{N}(x; \mu_k, \sigma_k^2)$
# gives $p(z \mid x)$, the probability that a point came from each component (its "responsibility"). It is
# a soft clustering learned without labels, a first example of $p(x)$ giving us features.

# %%
def plot_mixture(log_pi, mu, sigma, n=2000, ax=None):
    """Samples, density and components of a 1-D mixture, with the posterior p(z = 1 | x) on a second axis."""
    x, z = sample_mixture(n, log_pi, mu, sigma)
    grid = torch.linspace(-6, 6, 600, device=mu.device)  # (G,)
    u = (grid - mu[:, None]) / sigma[:, None]  # (K, G)
    log_lik = -0.5 * u**2 - sigma[:, None].log() - 0.5 * math.log(2 * math.pi)  # (K, G) log N(grid; mu_k, .)
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    ax.hist([x[z == k].cpu().numpy() for k in range(len(mu))], bins=80, range=(-6, 6), density=True,
            stacked=True, alpha=0.35, label=[f"samples with z = {k}" for k in range(len(mu))])
    ax.plot(grid.cpu(), mixture_log_prob(grid, log_pi, mu, sigma).exp().cpu(), "k", label="p(x)")
    for k in range(len(mu)):
        ax.plot(grid.cpu(), (log_pi[k] + log_lik[k]).exp().cpu(), "--", lw=1,
                label=f"pi_{k} N(x; mu_{k}, sigma_{k}^2)")
    twin = ax.twinx()
    twin.plot(grid.cpu(), bayes_posterior(log_pi, log_lik).exp()[1].cpu(), color="tab:purple", lw=1)
    twin.set_ylabel("p(z = 1 | x)", color="tab:purple")
    twin.set_ylim(-0.02, 1.02)
    ax.set(xlabel="x", ylabel="density")
    ax.legend(fontsize=7, loc="upper left")
    return ax


torch.manual_seed(0)
plot_mixture(log_pi, mu, sigma)
plt.show()

# %% [markdown]
# **Try it.** Move the weights, means and standard deviations. When the components overlap, the posterior
# $p(z = 1 \mid x)$ (purple) changes slowly and the density becomes unimodal; when one $\sigma$ is much larger, the
# posterior flips back to the wide component far out on the other side.

# %%
def show_mixture(pi_1=0.7, mu_0=-2.0, mu_1=1.5, sigma_0=0.5, sigma_1=0.8):
    torch.manual_seed(0)
    pi = torch.tensor([1 - pi_1, pi_1], device=device).clamp(1e-6, 1)
    mu = torch.tensor([mu_0, mu_1], device=device)
    sigma = torch.tensor([sigma_0, sigma_1], device=device)
    plot_mixture(pi.log(), mu, sigma)
    plt.show()


widgets.interactive_plot(
    show_mixture,
    pi_1=widgets.slider(0.7, 0.0, 1.0, 0.05, "pi_1"),
    mu_0=widgets.slider(-2.0, -4.0, 4.0, 0.1, "mu_0"),
    mu_1=widgets.slider(1.5, -4.0, 4.0, 0.1, "mu_1"),
    sigma_0=widgets.slider(0.5, 0.1, 3.0, 0.05, "sigma_0"),
    sigma_1=widgets.slider(0.8, 0.1, 3.0, 0.05, "sigma_1"),
)

# %% [markdown]
# ## 5. Logistic regression: a neural conditional $p(y \mid x)$
#
# A discriminative model for a binary label makes the parameter of a Bernoulli a function of the input:
#
# $$p(y = 1 \mid x) = \sigma(a), \qquad a = w^\top x + b, \qquad \sigma(a) = \frac{1}{1 + e^{-a}}.$$
#
# This is a one-layer neural network with a sigmoid output; replacing $w^\top x + b$ by a deeper network
# changes nothing else. Its negative log-likelihood simplifies with $\log \sigma(a) = -\operatorname{softplus}(-a)$,
# $\log(1 - \sigma(a)) = -\operatorname{softplus}(a)$ and $\operatorname{softplus}(-a) = \operatorname{softplus}(a) - a$:
#
# $$-\log p(y \mid x) = -y \log \sigma(a) - (1 - y) \log(1 - \sigma(a)) = \operatorname{softplus}(a) - y\,a,$$
#
# with $\operatorname{softplus}(a) = \log(1 + e^a)$, which is exact and stable for any logit (`F.softplus`).
# Such **neural conditionals** are the building block of lecture 02: an autoregressive model is the chain rule
# with one of them for each $p(x_i \mid x_{<i})$.

# %%
class LogisticRegression(nn.Module):
    """p(y = 1 | x) = sigmoid(w^T x + b), trained by minimizing the mean of -log p(y | x)."""

    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        nn.init.zeros_(self.linear.weight)  # the NLL is convex in (w, b): a fixed start keeps runs identical
        nn.init.zeros_(self.linear.bias)

    def logit(self, x):  # (B, D) -> (B,) a = w^T x + b
        return self.linear(x).squeeze(-1)

    def loss(self, x, y):  # x (B, D), y (B,) in {0, 1}
        a = self.logit(x)
        return (F.softplus(a) - y * a).mean()


# %% [markdown]
# Data for this section and the next: two classes in 2-D with the same correlated covariance and opposite
# means, $x \mid y \sim \mathcal{N}(\pm m, \Sigma)$. A variant moves 20% of class 1 into a tight cluster far
# out on class 1's side: points that are easy to classify but are not Gaussian.

# %%
MEAN_SHIFT = torch.tensor([-0.6, 0.6])  # class 1 at +MEAN_SHIFT, class 0 at -MEAN_SHIFT
A_SHARED = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # Sigma = A A^T: unit variances, correlation 0.8
FAR_CENTER = torch.tensor([-3.0, 3.0])  # the far cluster, deep on class 1's side


def two_class_data(n, seed, far_fraction=0.0):
    """n labelled points (x (n, 2), y (n,)), half of each class, optionally with a far cluster in class 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2  # (n,)
    x = torch.randn(n, 2, generator=g) @ A_SHARED.T + (2 * y[:, None] - 1) * MEAN_SHIFT  # (n, 2)
    far = (torch.rand(n, generator=g) < far_fraction) & (y == 1)
    x = torch.where(far[:, None], FAR_CENTER + 0.3 * torch.randn(n, 2, generator=g), x)
    return x.to(device), y.to(device)


# %%
x_clf, y_clf = two_class_data(256, seed=1)
logreg = LogisticRegression(2).to(device)
history = fit(logreg, (x_clf, y_clf.float()), epochs=LR_STEPS, batch_size=len(x_clf), lr=0.05, progress=False)

fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
plot.curves({"train NLL": history["train_loss"]}, ax=axes[0], xlabel="full-batch step", ylabel="nats")
plot.density_2d(lambda pts: F.logsigmoid(logreg.logit(pts)), ax=axes[1], lim=4, device=device,
                title="p(y = 1 | x) and the training data")
plot.scatter_2d(x_clf, ax=axes[1], lim=4, c=y_clf.cpu(), cmap="coolwarm", s=6, alpha=0.8)
plt.show()
print(f"w = {logreg.linear.weight.detach().cpu().numpy().round(2)}, b = {logreg.linear.bias.item():.2f}")

# %% [markdown]
# ## 6. Generative or discriminative classifier?
#
# **Gaussian discriminant analysis (GDA)** models the joint instead: a class prior and one Gaussian per class
# with a covariance shared by all classes,
#
# $$p(y = c) = \pi_c, \qquad p(x \mid y = c) = \mathcal{N}(x; \mu_c, \Sigma).$$
#
# Maximizing $\sum_n \log p(x_n, y_n)$ has a closed-form solution: the class frequencies, the class means, and
# the covariance of each point around the mean of its own class,
#
# $$\hat\pi_c = \frac{N_c}{N}, \qquad \hat\mu_c = \frac{1}{N_c}\sum_{n: y_n = c} x_n, \qquad
# \hat\Sigma = \frac{1}{N}\sum_{n=1}^{N} (x_n - \hat\mu_{y_n})(x_n - \hat\mu_{y_n})^\top.$$
#
# ### Exercise 5: fit GDA
#
# Write `fit_gda(x, y, num_classes)` for `x` of shape $(N, D)$ and integer labels `y` of shape $(N,)$,
# returning `(pi, mu, Sigma)` of shapes $(C,)$, $(C, D)$ and $(D, D)$: the maximum-likelihood estimates above
# (note the $1/N$), in the dtype of `x`. The check also feeds float32 data far from the origin, where only the
# centred form above keeps its digits ($\frac1N\sum_n x_n x_n^\top - \dots$ cancels catastrophically).

# %% tags=["solution:ex5_gda_fit"]
def fit_gda(x, y, num_classes):
    """Maximum-likelihood GDA: class priors (C,), class means (C, D), shared covariance (D, D)."""
    ### BEGIN SOLUTION
    onehot = F.one_hot(y, num_classes).to(x.dtype)  # (N, C)
    N_c = onehot.sum(0)  # (C,)
    pi = N_c / len(x)
    mu = (onehot.T @ x) / N_c[:, None]  # (C, D)
    diff = x - mu[y]  # (N, D) each point minus the mean of its own class
    Sigma = diff.T @ diff / len(x)
    return pi, mu, Sigma
    ### END SOLUTION


# %% tags=["check:ex5_gda_fit"]
lecture01.check_gda_fit(fit_gda)

# %% [markdown]
# **GDA's classifier is a logistic regression.** By Bayes rule the log-odds of two classes is
#
# $$\log \frac{p(y = 1 \mid x)}{p(y = 0 \mid x)} = \log\frac{\pi_1}{\pi_0} + \log \mathcal{N}(x; \mu_1, \Sigma) - \log \mathcal{N}(x; \mu_0, \Sigma) = w^\top x + b,$$
#
# because the quadratic terms $-\frac12 x^\top \Sigma^{-1} x$ cancel, leaving
# $w = \Sigma^{-1}(\mu_1 - \mu_0)$ and $b = -\frac12 \mu_1^\top \Sigma^{-1}\mu_1 + \frac12 \mu_0^\top \Sigma^{-1}\mu_0 + \log\frac{\pi_1}{\pi_0}$.
# Both models therefore draw a straight decision boundary. They differ in how they choose it: GDA fits
# $p(x, y)$, every point counting through the means and covariance; logistic regression fits $p(y \mid x)$ only.
# We check the algebra against Bayes rule (exercise 2) on the data above.

# %%
def gda_logistic(pi, mu, Sigma):
    """(w, b) with p(y = 1 | x) = sigmoid(w^T x + b) for two-class GDA."""
    Sigma_inv_mu = torch.linalg.solve(Sigma, mu.T).T  # (2, D) rows Sigma^-1 mu_c
    w = Sigma_inv_mu[1] - Sigma_inv_mu[0]
    b = -0.5 * (mu[1] @ Sigma_inv_mu[1] - mu[0] @ Sigma_inv_mu[0]) + (pi[1] / pi[0]).log()
    return w, b


def gaussian_log_prob(x, mu, Sigma):  # log N(x; mu, Sigma): (N, D), (D,), (D, D) -> (N,)
    diff = x - mu
    maha = (diff * torch.linalg.solve(Sigma, diff.T).T).sum(-1)  # (N,) (x - mu)^T Sigma^-1 (x - mu)
    return -0.5 * (maha + torch.logdet(Sigma) + x.shape[1] * math.log(2 * math.pi))


pi_hat, mu_hat, Sigma_hat = fit_gda(x_clf, y_clf, 2)
log_lik = torch.stack([gaussian_log_prob(x_clf, mu_hat[c], Sigma_hat) for c in range(2)])  # (2, N)
w, b = gda_logistic(pi_hat, mu_hat, Sigma_hat)
gap = bayes_posterior(pi_hat.log(), log_lik).exp()[1] - torch.sigmoid(x_clf @ w + b)
print(f"max |p(y=1|x) by Bayes rule - sigmoid(w^T x + b)| = {gap.abs().max():.2e}")

# %% [markdown]
# The two boundaries, fitted on 1024 points of each data set. On Gaussian data they agree. With the far
# cluster, GDA's class-1 mean and its covariance are pulled towards points that were never in doubt, and its
# boundary moves into class 1; logistic regression barely notices points it already classifies with
# confidence, because their gradient $\sigma(a) - y$ is nearly zero.

# %%
DATASETS = {"Gaussian classes": 0.0, "with a far cluster": 0.2}


def accuracy(w, b, x, y):
    return ((x @ w + b > 0).long() == y).float().mean().item()


def fit_both(x, y):
    """(w, b) of GDA (closed form) and of logistic regression (Adam on the NLL) on one training set."""
    model = LogisticRegression(2).to(x.device)
    fit(model, (x, y.float()), epochs=LR_STEPS, batch_size=len(x), lr=0.05, progress=False)
    return {"GDA": gda_logistic(*fit_gda(x, y, 2)),
            "logistic regression": (model.linear.weight[0].detach(), model.linear.bias[0].detach())}


# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
grid_pts, _ = plot.grid_2d(lim=5, n=200)  # (200 * 200, 2)
grid_xx, grid_yy = grid_pts[:, 0].reshape(200, 200).numpy(), grid_pts[:, 1].reshape(200, 200).numpy()
for ax, (name, far_fraction) in zip(axes, DATASETS.items(), strict=True):
    x, y = two_class_data(1024, seed=2, far_fraction=far_fraction)
    plot.scatter_2d(x, ax=ax, lim=5, c=y.cpu(), cmap="coolwarm", s=3, title=name)
    for (model_name, (w, b)), color in zip(fit_both(x, y).items(), ("k", "tab:green"), strict=True):
        logit = (grid_pts.to(device) @ w + b).reshape(200, 200).cpu()
        ax.contour(grid_xx, grid_yy, logit.numpy(), levels=[0], colors=color)
        ax.plot([], [], color=color, label=model_name)
    ax.legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# **Accuracy against training-set size.** For each size we draw several training sets, fit both models on
# each, and measure the accuracy on 20,000 fresh test points.

# %%
curves_by_data = {}
for name, far_fraction in DATASETS.items():
    x_te, y_te = two_class_data(20000, seed=999, far_fraction=far_fraction)
    acc = {model: torch.zeros(len(CLF_SIZES), CLF_REPEATS) for model in ("GDA", "logistic regression")}
    for i, n in enumerate(CLF_SIZES):
        for r in range(CLF_REPEATS):
            x, y = two_class_data(n, seed=10_000 * n + r, far_fraction=far_fraction)
            for model_name, (w, b) in fit_both(x, y).items():
                acc[model_name][i, r] = accuracy(w, b, x_te, y_te)
    curves_by_data[name] = acc

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, (name, acc) in zip(axes, curves_by_data.items(), strict=True):
    for model_name, a in acc.items():
        sem = a.std(1) / math.sqrt(CLF_REPEATS)  # standard error of the mean over training sets
        ax.errorbar(CLF_SIZES, a.mean(1), yerr=sem, marker="o", ms=3, capsize=2, label=model_name)
    ax.set(xscale="log", xlabel="training points", title=name)
    ax.set_xticks(CLF_SIZES, [str(n) for n in CLF_SIZES], minor=False)
    ax.minorticks_off()
axes[0].set_ylabel("test accuracy")
axes[0].legend()
plt.show()
for name, acc in curves_by_data.items():
    for i in (0, len(CLF_SIZES) - 1):
        print(f"{name}, n={CLF_SIZES[i]}: GDA {acc['GDA'][i].mean():.3f}, "
              f"logistic regression {acc['logistic regression'][i].mean():.3f}")

# %% [markdown]
# When its assumptions hold, the generative classifier loses nothing: on the Gaussian data both reach about
# the same accuracy at every size. (These two classes are almost separable, so there is little room for the
# small-sample advantage that theory allows GDA; compare the printed numbers, which differ by less than their
# error bars.) When its assumptions do not hold, the discriminative classifier wins, here at every size, because
# it spends nothing on modelling $p(x)$ and is not misled by a wrong model of it. Ng and Jordan (2001) made
# the trade-off precise: a discriminative model has the lower asymptotic error, a generative model may approach
# its own (higher) asymptote faster, with fewer examples, on problems harder than this one. For classification alone,
# discriminative models usually win; in the rest of this course we want $p(x)$ itself, and there is no way
# around modelling it.

# %% [markdown]
# ## 7. Density estimation in 2-D: a histogram against a Gaussian mixture
#
# Now the unsupervised problem: given samples of the two-moons data, estimate $p(x)$ and report the NLL of a
# held-out test set. The validation set chooses each model's capacity; the test set is used once, at the end.

# %%
n_train, n_val, n_test = N_MOONS
x_train = toy.toy_2d("moons", n_train, seed=1).to(device)  # (N, 2)
x_val = toy.toy_2d("moons", n_val, seed=2).to(device)
x_test = toy.toy_2d("moons", n_test, seed=3).to(device)
plot.scatter_2d(x_train, lim=3.5, title=f"two moons: {n_train} training points")
plt.show()

# %% [markdown]
# **The histogram.** Cover the box $[-\ell, \ell]^2$ with a grid of $B = \text{bins}^2$ square cells of side
# $\Delta = 2\ell/\text{bins}$ and count the $c_b$ training points in each cell. A cell holding no training point
# would give a test point in it probability zero and an infinite NLL, so we add a pseudo-count $\alpha$ to every
# cell. The density is constant within a cell:
#
# $$\hat p(x) = \frac{c_{b(x)} + \alpha}{(N + \alpha B)\,\Delta^2},$$
#
# where $b(x)$ is the cell holding $x$. Dividing by the cell's area $\Delta^2$ turns the probability of the cell
# into a density: $\hat p$ integrates to one over the box.
#
# ### Exercise 6: histogram density
#
# Write `histogram_log_prob(x_train, x, bins, lim, alpha)` returning $\log \hat p(x)$ of shape $(M,)$ for points
# `x` of shape $(M, 2)$ inside the box. Cell coordinates are $\lfloor (x_d + \ell)/\Delta \rfloor$ along each axis
# $d$; a point on the right edge $x_d = \ell$ belongs to the last cell. Create new tensors with `x_train.new_*`
# so that the function runs on any device.

# %% tags=["solution:ex6_histogram_density"]
def histogram_log_prob(x_train, x, bins, lim, alpha):
    """log of the smoothed histogram density with bins x bins cells on [-lim, lim]^2, at points x (M, 2)."""
    ### BEGIN SOLUTION
    width = 2 * lim / bins  # Delta

    def cell(points):  # (P, 2) -> (P,) flat cell index in 0 .. bins^2 - 1
        ij = ((points + lim) / width).floor().long().clamp(0, bins - 1)
        return ij[:, 0] * bins + ij[:, 1]

    counts = x_train.new_zeros(bins * bins).index_add_(0, cell(x_train), x_train.new_ones(len(x_train)))
    p_cell = (counts + alpha) / (len(x_train) + alpha * bins**2)  # (B,) probability of each cell
    return (p_cell / width**2).log()[cell(x)]
    ### END SOLUTION


# %% tags=["check:ex6_histogram_density"]
lecture01.check_histogram_density(histogram_log_prob)

# %% [markdown]
# **Choosing the number of bins.** Few bins blur the moons together (underfitting); many bins give each
# training point its own cell, so the training NLL keeps falling while validation points land in cells that
# hold only the pseudo-count (overfitting). The validation NLL picks the compromise.

# %%
LIM, ALPHA = 4.0, 0.1  # the box [-4, 4]^2 holds all the data; a tenth of a pseudo-point per cell
bin_grid = list(range(2, 101, 2))
train_nll = [-histogram_log_prob(x_train, x_train, k, LIM, ALPHA).mean().item() for k in bin_grid]
val_nll = [-histogram_log_prob(x_train, x_val, k, LIM, ALPHA).mean().item() for k in bin_grid]
best_bins = bin_grid[int(np.argmin(val_nll))]
hist_test_nll = -histogram_log_prob(x_train, x_test, best_bins, LIM, ALPHA).mean().item()

fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot(bin_grid, train_nll, label="train")
ax.plot(bin_grid, val_nll, label="validation")
ax.axvline(best_bins, color="gray", ls=":")
ax.set(xlabel="bins per axis", ylabel="NLL (nats per point)", title=f"best on validation: {best_bins} bins")
ax.legend()
plt.show()
print(f"histogram with {best_bins}x{best_bins} cells: test NLL {hist_test_nll:.3f} nats per point")

# %% [markdown]
# **Try it.** Change the number of bins and watch the estimate go from a blur to a scatter of isolated cells.

# %%
def show_histogram(bins=best_bins):
    tr = -histogram_log_prob(x_train, x_train, bins, LIM, ALPHA).mean().item()
    va = -histogram_log_prob(x_train, x_val, bins, LIM, ALPHA).mean().item()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    plot.density_2d(lambda pts: histogram_log_prob(x_train, pts, bins, LIM, ALPHA), ax=ax, lim=3.5, n=300,
                    device=device, title=f"{bins}x{bins} bins: train {tr:.2f}, val {va:.2f} nats")
    plt.show()


widgets.interactive_plot(show_histogram, bins=widgets.slider(best_bins, 2, 100, 1, "bins"))

# %% [markdown]
# **The Gaussian mixture.** The same model as in section 4, in $D = 2$ dimensions with $K$ components:
#
# $$p(x) = \sum_{k=1}^{K} \pi_k\, \mathcal{N}(x; \mu_k, \Sigma_k), \qquad
# \log \mathcal{N}(x; \mu, \Sigma) = \log\lvert\det A\rvert - \tfrac12 \lVert A (x - \mu)\rVert^2 - \tfrac{D}{2}\log 2\pi,$$
#
# where we parametrize each precision matrix as $\Sigma_k^{-1} = A_k^\top A_k$ with $A_k$ lower triangular and a
# positive diagonal (the diagonal stored through its log). Any such $A_k$ is valid, so we can optimize the
# parameters freely, $\log\lvert\det A_k\rvert$ is the sum of the log-diagonal, and no matrix inverse is
# needed to evaluate the density. The weights are $\pi = \operatorname{softmax}(\text{logits})$.
#
# We fit it by **maximum likelihood with gradient descent**: minimize the mean NLL of the training set with
# Adam, through the course's generic training loop `fit`, which calls `model.loss(x)` and nothing else.
# (Lecture 04 derives the classic alternative, EM.)

# %%
class GaussianMixture(nn.Module):
    """p(x) = sum_k pi_k N(x; mu_k, Sigma_k) with Sigma_k^-1 = A_k^T A_k, A_k lower triangular."""

    def __init__(self, mu_init, std_init=0.5):  # mu_init: (K, D) starting means
        super().__init__()
        K, D = mu_init.shape
        self.logits = nn.Parameter(mu_init.new_zeros(K))  # pi = softmax(logits)
        self.mu = nn.Parameter(mu_init.clone())  # (K, D)
        self.log_diag = nn.Parameter(mu_init.new_full((K, D), -math.log(std_init)))  # log of A's diagonal
        self.lower = nn.Parameter(mu_init.new_zeros(K, D, D))  # A's strictly lower triangle

    def precision_factor(self):  # A: (K, D, D)
        return torch.tril(self.lower, diagonal=-1) + torch.diag_embed(self.log_diag.exp())

    def log_prob(self, x):  # (N, D) -> (N,)
        diff = (x[:, None, :] - self.mu)[..., None]  # (N, K, D, 1) x - mu_k
        u = (self.precision_factor() @ diff).squeeze(-1)  # (N, K, D) A_k (x - mu_k)
        log_normal = self.log_diag.sum(-1) - 0.5 * (u**2).sum(-1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return torch.logsumexp(self.logits.log_softmax(0) + log_normal, dim=-1)

    def loss(self, x):  # mean NLL, in nats per point
        return -self.log_prob(x).mean()


# %% [markdown]
# Sampling is ancestral again: $z \sim \pi$, then $x = \mu_z + A_z^{-1}\varepsilon$ with
# $\varepsilon \sim \mathcal{N}(0, I)$, whose covariance is $A_z^{-1}A_z^{-\top} = \Sigma_z$.

# %%
@torch.no_grad()
def _sample(self, n):
    z = torch.multinomial(self.logits.softmax(0), n, replacement=True)  # (n,) component of each sample
    eps = torch.randn(n, self.mu.shape[1], 1, device=self.mu.device)  # (n, D, 1)
    A = self.precision_factor()[z]  # (n, D, D)
    return self.mu[z] + torch.linalg.solve_triangular(A, eps, upper=False).squeeze(-1)  # mu_z + A_z^-1 eps


GaussianMixture.sample = _sample


# %% [markdown]
# One mixture per number of components $K$, each started from $K$ training points chosen at random; the
# validation NLL picks $K$.

# %%
def fit_mixture(K, seed=0):
    start = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:K].to(device)
    model = GaussianMixture(x_train[start])
    history = fit(model, x_train, x_val, epochs=GMM_STEPS, batch_size=len(x_train), lr=0.03, progress=False)
    return model, history


mixtures = {K: fit_mixture(K) for K in GMM_COMPONENTS}
mixture_val_nll = {K: h["val_loss"][-1] for K, (_, h) in mixtures.items()}
best_K = min(mixture_val_nll, key=mixture_val_nll.get)
gmm, gmm_history = mixtures[best_K]
with torch.no_grad():
    mixture_test_nll = gmm.loss(x_test).item()
print("validation NLL by K:", {K: round(v, 3) for K, v in mixture_val_nll.items()})
print(f"mixture with K = {best_K}: test NLL {mixture_test_nll:.3f} nats per point")

# %%
torch.manual_seed(0)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
plot.curves({"train": gmm_history["train_loss"], "validation": gmm_history["val_loss"]}, ax=axes[0],
            xlabel="full-batch step", ylabel="NLL (nats per point)", title=f"training, K = {best_K}")
plot.density_2d(lambda pts: histogram_log_prob(x_train, pts, best_bins, LIM, ALPHA), ax=axes[1], lim=3.5,
                n=300, device=device, title=f"histogram: test NLL {hist_test_nll:.2f}")
plot.density_2d(gmm.log_prob, ax=axes[2], lim=3.5, n=300, device=device,
                title=f"mixture: test NLL {mixture_test_nll:.2f}")
plot.scatter_2d(gmm.sample(n_test), ax=axes[3], lim=3.5, title="samples from the mixture")
plt.show()

# %% [markdown]
# The mixture wins clearly: a few smooth, elongated bumps (as many as validation chose, printed above) fit the
# moons better than a thousand independent cells, and its capacity grows with $K$ without cutting space into ever smaller boxes. Both
# models are still honest density estimators, normalized and evaluated on data they never saw.

# %% [markdown]
# ## 8. The curse of dimensionality, measured
#
# A histogram with $m$ bins per axis in $d$ dimensions has $m^d$ cells. With a fixed amount of data, almost all
# of them are empty once $m^d$ outgrows $N$, and a test point then lands in a cell that no training point
# visited: the estimate there is the pseudo-count alone, whatever the data said. We measure this for
# standard Gaussian data with $m = 10$ cells per axis on $[-3, 3]$, and $N = 10{,}000$ training points.

# %%
def cell_ids(x, bins, lim):  # (N, d) -> (N,) one integer per cell of a bins^d grid on [-lim, lim]^d
    ij = ((x + lim) / (2 * lim / bins)).floor().long().clamp(0, bins - 1)  # (N, d)
    return (ij * bins ** torch.arange(x.shape[1])).sum(1)


dims, M_BINS = list(range(1, 13)), 10
empty = []  # fraction of test points whose cell holds no training point
for d in dims:
    g = torch.Generator().manual_seed(d)
    x_tr, x_te = torch.randn(10_000, d, generator=g), torch.randn(2_000, d, generator=g)
    visited = torch.isin(cell_ids(x_te, M_BINS, 3.0), cell_ids(x_tr, M_BINS, 3.0))  # (2000,) cell has data
    empty.append(1 - visited.float().mean().item())

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
axes[0].semilogy(dims, [M_BINS**d for d in dims], marker="o", label="cells, 10^d")
axes[0].axhline(10_000, color="gray", ls=":", label="training points")
axes[0].set(xlabel="dimension d", ylabel="count")
axes[0].legend()
axes[1].plot(dims, empty, marker="o")
axes[1].set(xlabel="dimension d", ylabel="fraction", ylim=(-0.02, 1.02), title="test points in an empty cell")
plt.show()
print("  ".join(f"d={d}: {e:.2f}" for d, e in zip(dims, empty, strict=True)))

# %% [markdown]
# At five dimensions half of the test points, and at seven almost all of them, fall in cells that the training
# data never reached: there the histogram knows nothing but its pseudo-count. A 28x28 binary image is a
# 784-dimensional point whose histogram is the full joint table: every image is its own cell. Let us check that
# on MNIST.

# %% [markdown]
# ## 9. MNIST: the independent model and a grid Bayes net, fit in closed form
#
# The course protocol for binarized MNIST (from the IWAE paper): a training image is re-binarized with
# $x_i \sim \mathrm{Bernoulli}(\text{pixel}_i / 255)$ every time it is used, the test set is binarized once with a
# fixed seed, and NLLs are in nats per image. For models that are products of Bernoulli tables, maximum
# likelihood under this protocol has a closed form: the log-likelihood is linear in each binary pixel, and the
# binarizations of different pixels are independent, so its expectation over the random draws only needs the
# **expected counts**, in which each pixel value is replaced by its probability $p_i = \text{pixel}_i/255$.

# %%
images, labels = mnist.load_mnist("train", n=N_MNIST_TRAIN)
test_images, test_labels = mnist.test_split(smoke=500)  # the course's test set for this mode
probs = mnist.to_unit(images).reshape(-1, 784).to(device)  # (N, 784) Bernoulli means pixel / 255
x_test_mnist = mnist.binarize_fixed(test_images, seed=0).reshape(-1, 784).to(device)  # (M, 784) in {0, 1}
labels, test_labels = labels.to(device), test_labels.to(device)


def as_bytes(x):  # (N, 784) binary images -> N byte strings, one per image, to compare images exactly
    return [bytes(row) for row in np.packbits(x.cpu().numpy().astype(np.uint8), axis=1)]


seen = set(as_bytes(mnist.binarize_fixed(images, seed=1).reshape(-1, 784)))
in_train = sum(image in seen for image in as_bytes(x_test_mnist))
print(f"{in_train} of {len(x_test_mnist)} binarized test images occur in the binarized training set")

# %% [markdown]
# No test image occurs in the training set: a histogram over images (the full joint) would give every one of
# them the pseudo-count only.
#
# **The fully independent model** $p(x) = \prod_i \theta_i^{x_i}(1 - \theta_i)^{1 - x_i}$, whose log we write
# `bernoulli_log_prob(x, theta)`: the data first, then the Bernoulli means (probabilities). The whole course keeps
# this name and argument order; the variant that takes logits instead of probabilities is called
# `bernoulli_log_prob_logits(x, logits)`, data first too. It has the maximum-likelihood
# estimate $\hat\theta_i = \frac{1}{N}\sum_n p_{n,i}$, the mean image. We add one pseudo-count to each outcome
# (some border pixels are never on in the training set, and a single "on" test pixel there would cost an
# infinite NLL).

# %%
def bernoulli_log_prob(x, theta):
    """sum_i log Bernoulli(x_i; theta_i): data x (M, D) in {0, 1} first, then the means theta (D,) in (0, 1) -> (M,)."""
    return (x * theta.log() + (1 - x) * (1 - theta).log()).sum(-1)


theta = (probs.sum(0) + 1) / (len(probs) + 2)  # (784,) add-one smoothed mean image
independent_test_nll = -bernoulli_log_prob(x_test_mnist, theta).mean().item()
print(f"independent pixels (784 parameters): test NLL {independent_test_nll:.1f} nats per image")
fig, ax = plt.subplots(figsize=(2.4, 2.6))
plot.image_grid(theta.reshape(1, 28, 28), ax=ax, title="theta: the mean image")
plt.show()

# %% [markdown]
# **The grid Bayes net** of section 2 gives each pixel its left and upper neighbours as parents: a table
# $\theta_{i}[a, b] = p(x_i = 1 \mid x_{\text{left}} = a, x_{\text{up}} = b)$ per pixel. Its expected counts weight
# each training image by the probability that the parents take the values $(a, b)$, e.g.
# $\mathbb{E}[\#\{x_i = 1, x_{\text{left}} = 1, x_{\text{up}} = 0\}] = \sum_n p_{n,i}\, p_{n,\text{left}}\,(1 - p_{n,\text{up}})$.
# Pixels outside the image count as 0.

# %%
P = probs.reshape(-1, 28, 28)  # (N, 28, 28)
P_left = F.pad(P, (1, 0))[:, :, :28]  # (N, 28, 28) p(left neighbour is on), 0 beyond the image
P_up = F.pad(P, (0, 0, 1, 0))[:, :28, :]  # (N, 28, 28) same for the neighbour above
theta_grid = P.new_empty(2, 2, 28, 28)  # [a, b, r, c] = p(x_rc = 1 | left = a, up = b)
for a in (0, 1):
    for b in (0, 1):
        weight = (P_left if a else 1 - P_left) * (P_up if b else 1 - P_up)  # (N, 28, 28) p(parents = (a, b))
        theta_grid[a, b] = ((weight * P).sum(0) + 1) / (weight.sum(0) + 2)
del P_left, P_up, weight

X = x_test_mnist.reshape(-1, 28, 28)
X_left, X_up = F.pad(X, (1, 0))[:, :, :28].long(), F.pad(X, (0, 0, 1, 0))[:, :28, :].long()
rows, cols = torch.arange(28, device=device)[:, None], torch.arange(28, device=device)
theta_x = theta_grid[X_left, X_up, rows, cols]  # (M, 28, 28) p(x_rc = 1 | its parents' test values)
grid_test_nll = -(X * theta_x.log() + (1 - X) * (1 - theta_x).log()).sum((1, 2)).mean().item()
print(f"grid Bayes net ({num_parameters(grid_parents(28, 28))} parameters): "
      f"test NLL {grid_test_nll:.1f} nats per image")

# %% [markdown]
# Samples from both, the grid net's by the ancestral sampler of exercise 3 with 784 variables (we cut each
# pixel's $2 \times 2$ table down to the parents it actually has): 64 of each, beside 64 binarized test digits.

# %%
theta_cpu = theta_grid.cpu()


def pixel_cpt(r, c):  # pixel (r, c)'s table, indexed by the parents it has (a missing neighbour counted as 0)
    table = theta_cpu[:, :, r, c]  # (2, 2) indexed [left, up]
    if r and c:
        return table
    if c:
        return table[:, 0]  # first row: left neighbour only
    if r:
        return table[0, :]  # first column: upper neighbour only
    return table[0, 0]  # the top-left pixel has no parents


grid_cpts = [pixel_cpt(r, c) for r in range(28) for c in range(28)]  # raster order, as in grid_parents
grid_samples = ancestral_sample(grid_parents(28, 28), grid_cpts, plot.SHOWN, torch.Generator().manual_seed(0))
independent_samples = torch.bernoulli(theta.cpu().expand(plot.SHOWN, 784), generator=torch.Generator().manual_seed(0))
plot.samples_beside_real({f"independent pixels, NLL {independent_test_nll:.0f}": independent_samples,
                          f"grid Bayes net, NLL {grid_test_nll:.0f}": grid_samples.float()}, x_test_mnist)
plt.show()

# %% [markdown]
# Two parents per pixel take the test NLL from about 199<!-- r:mnist_independent_test_nll --> to about
# 116<!-- r:mnist_grid_bayes_net_test_nll --> nats, with four times the parameters:
# the samples now have strokes and blobs, though nothing like digits, because a pixel sees only two
# neighbours. The models of lectures 02 to 05 learn far richer conditionals (MADE reaches
# 91<!-- r:02_autoregressive_models/made_test_nll --> nats in lecture 02's standard run); published models reach about 80 nats, on the statically binarized MNIST of their papers (lecture 02
# compares the protocols).
#
# **A generative classifier on MNIST.** One independent-pixel model per class, $p(x \mid y = c)$, plus the class
# frequencies, classifies by Bayes rule (exercise 2): this is **naive Bayes**. Its discriminative counterpart
# is logistic regression with 10 classes, $p(y \mid x) = \operatorname{softmax}(W x + b)_y$, trained on
# dynamically binarized images.

# %%
onehot = F.one_hot(labels, 10).float()  # (N, 10)
theta_class = (onehot.T @ probs + 1) / (onehot.sum(0)[:, None] + 2)  # (10, 784) add-one smoothed class means
log_on, log_off = theta_class.log(), (1 - theta_class).log()  # (10, 784) log p(x_i = 1 | y), log p(x_i = 0 | y)
log_lik = log_on @ x_test_mnist.T + log_off @ (1 - x_test_mnist).T  # (10, M) log p(x | y = c)
prior = onehot.mean(0)  # (10,) p(y = c)
naive_bayes_accuracy = (bayes_posterior(prior.log(), log_lik).argmax(0) == test_labels).float().mean().item()


class SoftmaxRegression(nn.Module):
    """p(y | x) = softmax(W x + b)_y: logistic regression with C classes."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def loss(self, x, y):  # mean of -log p(y | x)
        return -self.linear(x).log_softmax(-1).gather(1, y[:, None]).mean()


softmax_reg = SoftmaxRegression(784, 10).to(device)
fit(softmax_reg, (probs, labels), epochs=SOFTMAX_EPOCHS, batch_size=256,
    lr=3e-3, transform=mnist.binarize_dynamic)
with torch.no_grad():
    softmax_accuracy = (softmax_reg.linear(x_test_mnist).argmax(-1) == test_labels).float().mean().item()
print(f"test accuracy: naive Bayes {naive_bayes_accuracy:.3f}, softmax regression {softmax_accuracy:.3f}")

# %% [markdown]
# The independence assumption is badly wrong for pixels, and the generative classifier pays for it, as in the
# far-cluster experiment: the discriminative model, which never models $p(x)$, is clearly better.

# %% [markdown]
# ## Results
#
# The headline numbers of this lecture, written to `results/01_background.<mode>.json`: the test NLL of the
# histogram and of the mixture on two moons (nats per point), and the MNIST numbers above.

# %%
wall = time.perf_counter() - T0
n_mnist = len(x_test_mnist)
record(LECTURE, "histogram_test_nll", hist_test_nll, "nats per point", n_data=n_test, wall_time_s=wall,
       note=f"two moons, {best_bins}x{best_bins} bins on [-{LIM:g}, {LIM:g}]^2, alpha={ALPHA}, N={n_train}")
record(LECTURE, "mixture_test_nll", mixture_test_nll, "nats per point", n_data=n_test, wall_time_s=wall,
       note=f"two moons, K={best_K} full-covariance Gaussians, {GMM_STEPS} Adam steps, N={n_train}")
record(LECTURE, "mnist_independent_test_nll", independent_test_nll, "nats per image", n_data=n_mnist,
       wall_time_s=wall, note=f"independent Bernoulli pixels, closed form on {len(probs)} training images")
record(LECTURE, "mnist_grid_bayes_net_test_nll", grid_test_nll, "nats per image", n_data=n_mnist,
       wall_time_s=wall, note="left and upper neighbours as parents, closed form (expected counts)")
record(LECTURE, "mnist_naive_bayes_accuracy", naive_bayes_accuracy, "fraction correct", n_data=n_mnist,
       wall_time_s=wall)
record(LECTURE, "mnist_softmax_regression_accuracy", softmax_accuracy, "fraction correct", n_data=n_mnist,
       wall_time_s=wall)
print(f"wall time of the notebook: {wall:.1f} s in {MODE} mode")

# %% [markdown]
# ## Summary
#
# - A **discriminative** model learns $p(y \mid x)$; a **generative** model learns $p(x)$ or $p(x, y)$, which can
#   be sampled, evaluated on new data, and inverted by Bayes rule to classify or to infer latent features.
# - A joint over $n$ binary variables needs $2^n - 1$ numbers; the chain rule is exact but saves nothing.
#   Independence ($n$), a Markov chain ($2n - 1$) and Bayes nets ($\sum_i 2^{\lvert\mathrm{pa}(i)\rvert}$) trade
#   expressiveness for size. On MNIST, two parents per pixel instead of none take the test NLL from about
#   199<!-- r:mnist_independent_test_nll --> to about 116<!-- r:mnist_grid_bayes_net_test_nll --> nats.
# - The chain rule **evaluates** a Bayes net, **ancestral sampling** draws from it, and **Bayes rule**, computed
#   with `logsumexp`, inverts it; observing a common effect makes independent causes dependent (explaining away).
# - A mixture of Gaussians is the Bayes net $Z \to X$: latent variables make simple pieces flexible, and the
#   posterior $p(z \mid x)$ is a learned feature.
# - Logistic regression is a **neural conditional**; GDA, its generative twin, has the same linear boundary,
#   learns faster when its Gaussian assumption holds, and loses when it does not.
# - On 2-D data a Gaussian mixture fit by maximum likelihood beats a histogram whose bin count was tuned on
#   validation data; in higher dimensions histograms fail outright, since almost every cell is empty.
#   Lecture 02 keeps the chain rule and makes each conditional a neural network.

# %% [markdown]
# ## References
#
# - A. Y. Ng and M. I. Jordan, *On discriminative vs. generative classifiers: a comparison of logistic regression and
#   naive Bayes*, NeurIPS 2001. [proceedings](https://proceedings.neurips.cc/paper/2001/hash/7b7a53e239400a13bd6be6c91c4f6c4e-Abstract.html)
# - J. Pearl, *Probabilistic Reasoning in Intelligent Systems: Networks of Plausible Inference*, Morgan Kaufmann,
#   1988 (Bayes nets and explaining away).
#   [publisher](https://shop.elsevier.com/books/probabilistic-reasoning-in-intelligent-systems/pearl/978-0-08-051489-5)
# - D. Koller and N. Friedman, *Probabilistic Graphical Models: Principles and Techniques*, MIT Press, 2009,
#   chapters 3 (Bayes nets) and 17 (parameter estimation). [publisher](https://mitpress.mit.edu/9780262013192/)
# - C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, sections 1.4 (the curse of
#   dimensionality), 2.5 (histograms), 4.2 (generative classifiers) and 9.2 (mixtures of Gaussians).
#   [free PDF](https://www.microsoft.com/en-us/research/publication/pattern-recognition-machine-learning/)
# - K. P. Murphy, *Probabilistic Machine Learning: An Introduction*, MIT Press, 2022, chapters 9 (discriminant
#   analysis) and 10 (logistic regression). [free PDF](https://probml.github.io/pml-book/book1.html)
# - D. W. Scott, *On optimal and data-based histograms*, Biometrika 66(3), 1979. [doi:10.1093/biomet/66.3.605](https://doi.org/10.1093/biomet/66.3.605)
# - Y. Burda, R. Grosse and R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (the dynamically
#   binarized MNIST protocol). [arXiv:1509.00519](https://arxiv.org/abs/1509.00519)
# - S. Ermon, A. Grover and others, *CS236: Deep Generative Models*, Stanford, course notes on background and
#   autoregressive models. [notes](https://deepgenerativemodels.github.io/notes/)
