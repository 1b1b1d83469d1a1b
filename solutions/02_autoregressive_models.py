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
# # Lecture 02: Autoregressive models
#
# An autoregressive model writes the probability of an image as a product of one-dimensional conditionals,
# one pixel at a time, each given the pixels before it. Every factor is a small classification problem, so
# the likelihood is **exact** and training is plain maximum likelihood. The price is paid elsewhere: in how the
# conditionals share parameters, and in sampling, which cannot be done in parallel.
#
# **Learning goals.** After this lecture you can
# - write the chain rule for 784 binary pixels under an ordering, and count why a table of conditionals is hopeless;
# - build FVSBN as one masked linear layer (one logistic regression per pixel) and count its parameters;
# - build NADE, compute its hidden units with an $O(DH)$ running sum, and check it against the naive $O(D^2H)$ loop;
# - construct MADE's masks from connectivity numbers, write its masked forward pass and its loss (the model
#   the lecture then trains), add direct connections, train with many orderings and average a mask ensemble
#   at test time;
# - run an RNN over the pixel sequence;
# - sample from all four, complete half digits, and measure what a likelihood and a sample cost for each.
#
# **Builds on.** Lecture 01: the chain rule, Bayes networks and their parameter counts, ancestral sampling,
# and logistic regression as a neural conditional. Lecture 03 continues with PixelCNN (masked convolutions),
# and lecture 07 reads MADE as a normalizing flow (MAF and IAF).
#
# **Plan.** 1 Binarized MNIST and the chain rule. 2 FVSBN (exercise 1). 3 Sampling (exercise 2).
# 4 NADE (exercise 3). 5 MADE (exercises 4, 5 and 6). 6 An RNN over pixels. 7 Samples, completions and costs,
# measured. Then results, summary and references.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import budget, checks, fit, mnist, plot, record, setup, train_or_load, widgets
from dgm_course.exercises import lecture02
from dgm_course.runtime import progress

device, MODE = setup(seed=0)
LECTURE = "02_autoregressive_models"
T0 = time.perf_counter()
N_TRAIN = budget(smoke=2000, standard=60000, full=60000)     # training images (binarized afresh every batch)
EPOCHS = {"fvsbn": budget(smoke=1, standard=10, full=40),    # passes over the training set, per model
          "nade": budget(smoke=1, standard=7, full=60),
          "made": budget(smoke=1, standard=10, full=60),
          "made_oa": budget(smoke=1, standard=6, full=100),
          "rnn": budget(smoke=1, standard=1, full=10)}
H_NADE = budget(smoke=64, standard=500, full=500)             # NADE hidden units
H_MADE = budget(smoke=64, standard=500, full=500)             # MADE hidden units (one hidden layer)
N_MASKS = budget(smoke=4, standard=8, full=32)                # MADE: masks (orderings) trained and ensembled
H_RNN = budget(smoke=32, standard=64, full=256)               # GRU hidden units
N_RNN = budget(smoke=300, standard=12000, full=60000)         # RNN training images per epoch (it is slow)
N_SHOW = budget(smoke=8, standard=64, full=64)                # samples shown per model, beside as many test digits
N_TIMED = budget(smoke=4, standard=16, full=16)               # samples per timed sampling call
BATCH = 100

# %% [markdown]
# ## 1. Binarized MNIST and the chain rule
#
# We model $28 \times 28 = 784$ binary pixels. Following the course's protocol, a training batch is binarized
# afresh every time it is drawn, $x_i \sim \mathrm{Bernoulli}(\text{pixel}_i / 255)$, and the test set is
# binarized once with a fixed seed. Likelihoods are reported in nats per image.

# %%
train_images, _ = mnist.load_mnist("train", n=N_TRAIN)
test_images, test_labels = mnist.test_split(smoke=200)     # the course's test set for this mode
D = 28 * 28
x_train = mnist.to_unit(train_images).flatten(1)                           # (N, D) Bernoulli means in [0, 1]
x_test = mnist.binarize_fixed(test_images, seed=0).flatten(1).to(device)   # (N_test, D) in {0, 1}
marginal_logit = torch.logit(x_train.mean(0).clamp(1e-3, 1 - 1e-3)).to(device)   # (D,) log-odds of each pixel
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}; mean test pixel {x_test.mean():.3f}")
plot.image_grid(x_test[:32].view(-1, 28, 28), nrow=16, title="binarized test digits (fixed seed)")
plt.show()

# %% [markdown]
# Fix an ordering of the pixels, here the raster order (row by row, left to right). The chain rule holds for
# any distribution, with no assumption at all:
#
# $$p(x) = p(x_1)\, p(x_2 \mid x_1)\, p(x_3 \mid x_1, x_2) \cdots p(x_D \mid x_1, \dots, x_{D-1})
# = \prod_{i=1}^{D} p(x_i \mid x_{<i}).$$
#
# Each factor is a Bernoulli distribution whose parameter depends on the context $x_{<i}$. A **table** of
# those parameters needs one number per context: $2^{i-1}$ numbers for pixel $i$, so
# $\sum_{i=1}^{D} 2^{i-1} = 2^D - 1$ in all, exactly as many as the full joint table. Let us count.

# %%
n_table = sum(2 ** (i - 1) for i in range(1, D + 1))           # exact Python integers
assert n_table == 2 ** D - 1
print(f"tabular conditionals: 2^{D} - 1 = {n_table:.3e} numbers, a {len(str(n_table))}-digit integer")
print(f"pixel 100 alone needs 2^99 = {2 ** 99:.2e} numbers; we have {len(x_train)} training images")

# %% [markdown]
# About $10^{236}$ parameters (there are about $10^{80}$ atoms in the observable universe), and almost every
# context is never seen in training. The way out is the one of lecture 01: replace each table by a
# **parametric** conditional, $p(x_i = 1 \mid x_{<i}) = f_i(x_{<i}; \theta)$, a small classifier. The models of
# this lecture differ only in the choice of $f_i$ and in how the $f_i$ share parameters. The picture shows the
# ordering and, for one pixel, the context it is allowed to see.

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
axes[0].imshow(torch.arange(D).view(28, 28), cmap="viridis")
axes[0].set_title("raster order: index of each pixel")
i_show = 14 * 28 + 12                                            # a pixel in the middle of the image
context = (torch.arange(D) < i_show).float()
context[i_show] = 0.5
axes[1].imshow(context.view(28, 28), cmap="gray_r", vmin=0, vmax=1)
axes[1].set_title(f"context of pixel {i_show} (grey): x_<i")
for ax in axes:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# All four models below share one interface. Each computes, in one call, the logits of all $D$ conditionals
# for a batch of **given** images, $\ell_i(x) = \operatorname{logit} p(x_i = 1 \mid x_{<i})$, with the promise
# that $\ell_i$ depends on $x_{<i}$ only. Then the log-likelihood is a sum of binary cross-entropies,
#
# $$\log p(x) = \sum_{i=1}^D \big[x_i \log \sigma(\ell_i) + (1 - x_i) \log(1 - \sigma(\ell_i))\big],$$
#
# and `loss(x)` is its negative mean over the batch, which the course's `fit` minimizes.

# %%
class BinaryAutoregressive(nn.Module):
    """A model of D binary variables whose subclasses give logits(x): (B, D) -> (B, D), logit p(x_i = 1 | x_<i)."""

    def log_prob(self, x):                               # (B, D) in {0, 1} -> (B,)
        return -F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none").sum(1)

    def loss(self, x):
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n, x=None, start=0, temperature=1.0):
        """n images; with x given, keep x[:, :start] and draw the rest (section 3)."""
        x = torch.zeros(n, self.D, device=self.device) if x is None else x
        return sample_autoregressive(self.logits, x, start, temperature)

    @property
    def device(self):
        return next(self.parameters()).device


def n_params(model):
    """Free parameters: trainable entries that some mask leaves connected (masked-out weights do not count)."""
    total = sum(p.numel() for p in model.parameters())
    return total - sum(int((m == 0).sum()) for m in getattr(model, "masked_out", lambda: [])())


@torch.no_grad()
def test_nll(model, x=x_test, batch=500):
    """Mean -log p(x) over the test set, nats per image."""
    model.eval()
    return -torch.cat([model.log_prob(x[i:i + batch]) for i in range(0, len(x), batch)]).mean().item()

# %% [markdown]
# ## 2. FVSBN: one logistic regression per pixel
#
# The fully visible sigmoid belief network (Frey, 1998) takes each conditional to be a logistic regression on
# the pixels before it:
#
# $$p(x_i = 1 \mid x_{<i}) = \sigma\Big(b_i + \sum_{j < i} W_{ij}\, x_j\Big), \qquad i = 1, \dots, D.$$
#
# All $D$ regressions at once are one linear layer, $\ell = (W \odot M)\,x + b$, with a mask $M$ that keeps
# exactly the weights $W_{ij}$ with $j < i$: a **strictly lower-triangular** matrix of ones. Conditional $i$
# has $i - 1$ weights and a bias, so the model has $\sum_i i = D(D+1)/2$ parameters, $307{,}720$ for MNIST:
# quadratic in $D$, instead of exponential.
#
# ### Exercise 1: the FVSBN mask
# Write `fvsbn_mask(D)`, the $(D, D)$ float tensor with $M_{ij} = 1$ if $j < i$ and $0$ otherwise. The check
# builds a masked linear layer with your mask and verifies through its Jacobian that output $i$ depends on
# every input $j < i$ and on nothing else (not even $x_i$ itself).

# %% tags=["solution:ex1_fvsbn_mask"]
def fvsbn_mask(D):
    """(D, D) float mask: M[i, j] = 1 when j < i (x_j may feed the conditional of x_i), else 0."""
    ### BEGIN SOLUTION
    return torch.tril(torch.ones(D, D), diagonal=-1)
    ### END SOLUTION


# %% tags=["check:ex1_fvsbn_mask"]
lecture02.check_fvsbn_mask(fvsbn_mask)

# %%
class FVSBN(BinaryAutoregressive):
    """Fully visible sigmoid belief network (Frey 1998): logits = (W * M) x + b with M strictly lower triangular."""

    def __init__(self, D):
        super().__init__()
        self.D = D
        self.W = nn.Parameter(torch.zeros(D, D))         # W[i, j]: weight of x_j in the regression of x_i
        self.b = nn.Parameter(torch.zeros(D))
        self.register_buffer("M", fvsbn_mask(D))

    def logits(self, x):                                 # (B, D) -> (B, D)
        return F.linear(x, self.W * self.M, self.b)

    def masked_out(self):
        return [self.M]


fvsbn = FVSBN(D).to(device)
fvsbn.b.data.copy_(marginal_logit)                       # start each regression at its pixel's frequency
print(f"FVSBN: {n_params(fvsbn):,} free parameters (D(D+1)/2 = {D * (D + 1) // 2:,})")

# %% [markdown]
# Training is maximum likelihood with Adam. The FVSBN objective is convex (a sum of logistic regressions),
# but it converges slowly at a fixed learning rate, so we decay the rate linearly over the epochs: `fit` is
# called one epoch at a time, with one shared optimizer. Every trained model is cached by `train_or_load`
# (a re-run loads it; `DGM_RETRAIN=1` retrains).

# %%
def fit_decayed(model, epochs, lr, x=None):
    """`fit` one epoch at a time with dynamic binarization and a learning rate decayed linearly to lr / 10."""
    x = x_train if x is None else x
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"train_loss": [], "epoch_time": []}
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = lr * (1 - 0.9 * epoch / max(1, epochs - 1))
        h = fit(model, x, epochs=1, batch_size=BATCH, optimizer=optimizer, transform=mnist.binarize_dynamic,
                seed=epoch)
        history["train_loss"] += h["train_loss"]
        history["epoch_time"] += h["epoch_time"]
        print(f"  epoch {epoch + 1}/{epochs}: train loss {h['train_loss'][0]:.2f} ({h['epoch_time'][0]:.0f} s)")
    return history


torch.manual_seed(0)
hist_fvsbn = train_or_load(fvsbn, LECTURE, "fvsbn", lambda: fit_decayed(fvsbn, EPOCHS["fvsbn"], lr=3e-3))
nll_fvsbn = test_nll(fvsbn)
print(f"FVSBN test NLL: {nll_fvsbn:.2f} nats per image ({sum(hist_fvsbn['epoch_time']):.0f} s of training)")

# %% [markdown]
# The learned weights are worth a look: row $i$ of $W \odot M$, reshaped to $28 \times 28$, is the logistic
# regression that predicts pixel $i$. It relies mostly on the pixels just left of and just above pixel $i$:
# the model discovered locality by itself.

# %%
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, i in zip(axes, [8 * 28 + 14, 12 * 28 + 10, 16 * 28 + 16, 20 * 28 + 12], strict=True):
    w = (fvsbn.W * fvsbn.M)[i].detach().cpu().view(28, 28)
    lim = w.abs().max()
    ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.plot(i % 28, i // 28, "k+", ms=10)
    ax.set_title(f"weights of pixel {i}")
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 3. Sampling, one pixel at a time
#
# The likelihood of a given image needs one pass: all conditionals see known pixels. Sampling does not: $x_i$
# can only be drawn once $x_1, \dots, x_{i-1}$ exist. Ancestral sampling (lecture 01) in the chain-rule
# graph is a loop of $D$ steps,
#
# $$\text{for } i = 1, \dots, D: \qquad x_i \sim \mathrm{Bernoulli}\big(\sigma(\ell_i(x) / T)\big),$$
#
# where each $\ell_i(x)$ is computed with the pixels drawn so far (later pixels are still placeholders, which
# $\ell_i$ ignores by construction). $T$ is a **temperature**: $T = 1$ samples the model, $T < 1$ sharpens
# every conditional towards its more likely value. Starting the loop at pixel `start` with the first pixels
# given samples from the conditional $p(x_{\ge s} \mid x_{<s})$: this completes a partial image.
#
# ### Exercise 2: the sampling loop
# Write `sample_autoregressive(logits_fn, x, start, temperature, generator)`: `logits_fn` maps $(n, D)$ images
# to their $(n, D)$ conditional logits; fill positions `start`, ..., $D-1$ of a copy of `x` in order, each from
# its conditional, and return it (leave `x` itself unchanged). Use `torch.bernoulli(p, generator=generator)`, so
# that the draws come from `generator` alone and the same seed gives the same samples. The check runs your loop on
# a 3-pixel model with arbitrary conditionals, whose 8 joint probabilities it computes exactly, and compares
# the frequencies of 20000 samples with a chi-square test (also with $x_1$ given, and at $T = 0.5$).

# %% tags=["solution:ex2_sampling_loop"]
def sample_autoregressive(logits_fn, x, start=0, temperature=1.0, generator=None):
    """Draw x[:, start:] pixel by pixel from p(x_i | x_<i), keeping x[:, :start]: (n, D) -> (n, D)."""
    ### BEGIN SOLUTION
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] / temperature)     # (n,), uses the pixels drawn so far
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x
    ### END SOLUTION


# %% tags=["check:ex2_sampling_loop"]
lecture02.check_sampler(sample_autoregressive)

# %% [markdown]
# FVSBN samples: strokes with the right thickness and local texture, but rarely a digit. A logistic
# regression per pixel captures local correlations well and global shape poorly.

# %%
torch.manual_seed(1)
samples = {"FVSBN": fvsbn.sample(N_SHOW)}
plot.samples_beside_real({"FVSBN samples (T = 1)": samples["FVSBN"]}, x_test, n=N_SHOW)
plt.show()

# %% [markdown]
# ## 4. NADE: sharing the hidden layer
#
# A better conditional is a one-hidden-layer network per pixel, $h_i = g(c + W_{:,<i}\, x_{<i})$ and
# $p(x_i = 1 \mid x_{<i}) = \sigma(b_i + V_i \cdot h_i)$. With separate weights for each $i$ that costs $O(D^2 H)$
# parameters. The neural autoregressive distribution estimator (NADE; Larochelle and Murray, 2011) **shares**
# one matrix $W \in \mathbb R^{H \times D}$ across all conditionals: column $j$ of $W$ is what $x_j$
# contributes to every later hidden vector. Parameters: $W$, $V \in \mathbb R^{D \times H}$, $b$, $c$:
# $2DH + D + H$, about $785{,}000$ for $H = 500$.
#
# Sharing buys speed too. Evaluated naively, each $a_i = c + W_{:,<i}\, x_{<i}$ costs $O(iH)$, so $O(D^2 H)$ for
# all of them. But consecutive pre-activations differ by one column:
#
# $$a_1 = c, \qquad a_{i+1} = a_i + W_{:,i}\, x_i, \qquad h_i = g(a_i),
# \qquad \ell_i = b_i + V_i \cdot h_i,$$
#
# a running sum that costs $O(H)$ per step and $O(DH)$ in all, the price of one ordinary hidden layer. The
# original NADE uses the sigmoid for $g$; any elementwise nonlinearity works, and we will train with the ReLU,
# which learns much faster here (several nats better after one epoch, in the runs made for this lecture).
#
# ### Exercise 3: NADE's running-sum forward pass
# Write `nade_logits(x, W, c, V, b, g)` returning the $(B, D)$ logits with the $O(DH)$ recursion above (a loop
# over $i$ with a running $(B, H)$ tensor $a$; or, if you prefer, an exclusive cumulative sum), with `g` the
# hidden nonlinearity, leaving the arguments unchanged, in the dtype of the inputs. The check compares with the naive $O(D^2H)$ computation (for the sigmoid and for
# tanh) and verifies the autoregressive property through the Jacobian.

# %% tags=["solution:ex3_nade_running_sum"]
def nade_logits(x, W, c, V, b, g=torch.sigmoid):
    """NADE logits: x (B, D), W (H, D), c (H,), V (D, H), b (D,) -> (B, D), in O(B D H); g the nonlinearity."""
    ### BEGIN SOLUTION
    a = c.expand(x.shape[0], -1)                         # (B, H): a_1 = c
    logits = []
    for i in range(x.shape[1]):
        logits.append(b[i] + g(a) @ V[i])                # (B,): uses x_<i only
        a = a + x[:, i:i + 1] * W[:, i]                  # a_{i+1} = a_i + W[:, i] x_i
    return torch.stack(logits, 1)
    ### END SOLUTION


# %% tags=["check:ex3_nade_running_sum"]
lecture02.check_nade_logits(nade_logits)

# %% [markdown]
# The same check, by hand, on a NADE of MNIST size: the naive loop recomputes every $a_i$ from scratch. The two
# agree to float32 rounding, and the ratio of their times shows the $O(D)$ saving (not the full factor $D/2$:
# the naive loop's matrix products are efficient, the running sum is many small steps).

# %%
def nade_logits_naive(x, W, c, V, b):                    # O(D^2 H): every a_i from scratch
    return torch.stack([b[i] + torch.sigmoid(c + x[:, :i] @ W[:, :i].T) @ V[i] for i in range(x.shape[1])], 1)


g = torch.Generator().manual_seed(0)
W_, V_ = torch.randn(H_NADE, D, generator=g) / 28, torch.randn(D, H_NADE, generator=g) / 20
c_, b_ = torch.zeros(H_NADE), torch.zeros(D)
x_few = x_test[:4].cpu()
with torch.no_grad():
    t = time.perf_counter()
    fast = nade_logits(x_few, W_, c_, V_, b_)            # (4, D), O(D H) per image
    t_fast, t = time.perf_counter() - t, time.perf_counter()
    slow = nade_logits_naive(x_few, W_, c_, V_, b_)      # (4, D), O(D^2 H) per image
    t_slow = time.perf_counter() - t
print(f"max |running sum - naive| = {(fast - slow).abs().max():.2e}; "
      f"time {1e3 * t_fast:.0f} ms vs {1e3 * t_slow:.0f} ms (naive {t_slow / t_fast:.1f}x slower)")

# %% [markdown]
# ### Training NADE with a subset of the conditionals
#
# The exact loss materializes a hidden vector for every pixel of every image, a $(B, D, H)$ tensor: with
# $B = 100$ that is 39 million numbers per batch, and on a CPU the elementwise work on it (the nonlinearity
# and its gradient) costs many times a MADE step. Since $-\log p(x) = \sum_i \mathcal L_i$ is a sum over
# pixels, we train on an **unbiased estimate**: draw an offset $r \in \{0, \dots, s-1\}$ and keep every $s$-th
# conditional,
#
# $$\widehat{\mathcal L}_r = s \sum_{k} \mathcal L_{r + ks}, \qquad
# \frac1s \sum_{r=0}^{s-1} \widehat{\mathcal L}_r = \sum_i \mathcal L_i .$$
#
# The kept pre-activations $a_{r+ks}$ are still running sums, now over blocks of $s$ pixels: one batched
# matrix product gives each block's contribution $\sum_{j \in \text{block}} W_{:,j} x_j$, and a cumulative sum
# over the $D/s$ blocks gives the $a$'s. Every gradient step uses $O(DH)$ multiply-adds in fast matrix
# products and only $D/s$ nonlinearities of size $H$. Test likelihoods are always exact (`nade_logits`).

# %%
class NADE(BinaryAutoregressive):
    """Neural autoregressive distribution estimator (Larochelle & Murray 2011), trained on every s-th conditional."""

    def __init__(self, D, H, stride=16):
        super().__init__()
        self.D, self.H, self.stride = D, H, stride
        self.W = nn.Parameter(torch.randn(H, D) / math.sqrt(D))   # shared by all conditionals
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(D, H) / math.sqrt(H))
        self.b = nn.Parameter(torch.zeros(D))

    def logits(self, x):                                 # exact, O(B D H)
        return nade_logits(x, self.W, self.c, self.V, self.b, torch.relu)

    def loss(self, x):
        return self.strided_loss(x) if self.training else -self.log_prob(x).mean()

# %%
def strided_loss(self, x, r=None):
    """Unbiased estimate of -log p(x), batch mean: s times the loss of the conditionals r, r + s, r + 2s, ..."""
    s, (B, D), H = self.stride, x.shape, self.H
    r = int(torch.randint(s, ())) if r is None else r
    pad = (s - r, (-(D + s - r)) % s)                    # shift so that kept pixel k starts block k + 1
    blocks_x = F.pad(x, pad).view(B, -1, s)              # (B, K, s)
    blocks_W = F.pad(self.W.T, (0, 0) + pad).view(-1, s, H)   # (K, s, H)
    contrib = torch.einsum("bks,ksh->bkh", blocks_x, blocks_W)    # (B, K, H): each block's sum of W_j x_j
    a = self.c + contrib.cumsum(1)                       # (B, K, H): a at kept pixel k = c + blocks 0..k
    keep = torch.arange(r, D, s, device=x.device)        # (D/s,) the kept pixels
    logit = (torch.relu(a[:, :len(keep)]) * self.V[keep]).sum(-1) + self.b[keep]   # (B, D/s)
    return s * F.binary_cross_entropy_with_logits(logit, x[:, keep], reduction="none").sum(1).mean()


NADE.strided_loss = strided_loss

# %% [markdown]
# Before training on it, check the identity above: averaged over all $s$ offsets, the estimate equals the
# exact negative log-likelihood.

# %%
torch.manual_seed(0)                                     # the initialization owes nothing to the samples drawn above
nade = NADE(D, H_NADE).to(device)
nade.b.data.copy_(marginal_logit)
with torch.no_grad():
    exact = -nade.log_prob(x_test[:8]).mean()
    average = torch.stack([nade.strided_loss(x_test[:8], r) for r in range(nade.stride)]).mean()
print(f"exact {exact:.4f}, average of the {nade.stride} strided estimates {average:.4f}")
assert torch.allclose(exact, average, rtol=1e-4)
print(f"NADE: {n_params(nade):,} parameters (2DH + D + H = {2 * D * H_NADE + D + H_NADE:,})")

# %%
torch.manual_seed(0)
hist_nade = train_or_load(nade, LECTURE, "nade", lambda: fit_decayed(nade, EPOCHS["nade"], lr=3e-3))
nll_nade = test_nll(nade)
print(f"NADE test NLL: {nll_nade:.2f} nats per image ({sum(hist_nade['epoch_time']):.0f} s of training)")

# %% [markdown]
# NADE samples with the same running sum: after drawing $x_i$, add $W_{:,i} x_i$ to $a$. A sample costs
# $O(DH)$, the same as one likelihood evaluation, where the generic loop of exercise 2 would call the
# $O(DH)$ forward pass $D$ times.

# %%
@torch.no_grad()
def nade_sample(self, n, x=None, start=0, temperature=1.0):
    x = torch.zeros(n, self.D, device=self.device) if x is None else x.clone()
    a = self.c.expand(n, -1).clone()                     # (n, H)
    for i in progress(range(self.D), "sampling, pixels"):
        if i >= start:
            p = torch.sigmoid((self.b[i] + torch.relu(a) @ self.V[i]) / temperature)
            x[:, i] = torch.bernoulli(p)
        a += x[:, i:i + 1] * self.W[:, i]
    return x


NADE.sample = nade_sample
torch.manual_seed(1)
samples["NADE"] = nade.sample(N_SHOW)
plot.samples_beside_real({"NADE samples (T = 1)": samples["NADE"]}, x_test, n=N_SHOW)
plt.show()

# %% [markdown]
# ## 5. MADE: masks on an ordinary autoencoder
#
# The masked autoencoder for distribution estimation (MADE; Germain et al., 2015) gets the autoregressive
# property from an ordinary multilayer network by zeroing weights. Give every unit a **connectivity number**:
# - input $d$ gets $m^0(d) \in \{1, \dots, D\}$, its position in the ordering;
# - hidden unit $k$ of layer $l$ gets $m^l(k) \in \{\min m^{l-1}, \dots, D-1\}$: it may see the inputs at
#   positions $1, \dots, m^l(k)$.
#
# A hidden connection is allowed when it does not widen what a unit may see, and an output connection when the
# hidden unit sees strictly earlier inputs:
#
# $$M^{l}_{kj} = \mathbb 1\big[m^l(k) \ge m^{l-1}(j)\big] \quad (\text{hidden layers}), \qquad
# M^{\mathrm{out}}_{dk} = \mathbb 1\big[m^0(d) > m^L(k)\big] \quad (\text{output}).$$
#
# Then every path from input $d'$ to output $d$ passes units with $m^0(d') \le m^1 \le \dots \le m^L < m^0(d)$,
# so output $d$ depends only on inputs earlier in the ordering, and **one forward pass** gives all $D$
# conditionals. The strict inequality sits in the output layer only; hidden units with $m = D$ would feed no
# output, which is why $m^l \le D - 1$. An optional **direct connection** adds the FVSBN term
# $(A \odot M^{\mathrm{dir}})\, x$ with $M^{\mathrm{dir}}_{dd'} = \mathbb 1[m^0(d) > m^0(d')]$ to the output.
#
# ### Exercise 4: MADE masks
# Write `made_masks(m)`: given the list of connectivity numbers `[m0 (D,), m1 (H1,), ..., mL (HL,)]`, return
# the $L + 1$ float masks, shapes $(H_1, D), (H_2, H_1), \dots, (D, H_L)$ (the shape of each `nn.Linear`
# weight). The check builds networks with 1 and 2 hidden layers and random orderings from your masks and
# verifies through the Jacobian that output $d$ depends exactly on the inputs before it in the ordering.

# %% tags=["solution:ex4_made_masks"]
def made_masks(m):
    """Masks from connectivity numbers m = [m0 (D,), m1 (H1,), ..., mL (HL,)]: [(H1, D), ..., (D, HL)] floats."""
    ### BEGIN SOLUTION
    hidden = [(m_l[:, None] >= m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]
    ### END SOLUTION


# %% tags=["check:ex4_made_masks"]
lecture02.check_made_masks(made_masks)

# %% [markdown]
# A tiny MADE, $D = 6$ with a shuffled ordering and one hidden layer of 12 units, drawn as its masks. The
# product of the two masks counts the paths from input $d'$ to output $d$; it is zero wherever $d'$ does not
# come before $d$ (a strictly lower-triangular pattern once rows and columns are put in the ordering). That is
# all MADE guarantees: output $d$ sees **every** earlier input only if the hidden numbers take every value
# below $m^0(d)$; with 12 random draws from $\{1, \dots, 5\}$ a value can be missing, and the cell below says
# whether it is.

# %%
g = torch.Generator().manual_seed(3)
m0_tiny = torch.randperm(6, generator=g) + 1             # (6,) positions in the ordering
m1_tiny = torch.randint(1, 6, (12,), generator=g)        # (12,) hidden connectivity numbers
M1_tiny, M2_tiny = made_masks([m0_tiny, m1_tiny])
paths = M2_tiny @ M1_tiny                                # (6, 6): number of paths input d' -> output d
fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
for ax, (mat, title) in zip(axes, [(M1_tiny, "hidden mask M1 (12, 6)"), (M2_tiny, "output mask M2 (6, 12)"),
                                   (paths, "paths M2 @ M1 (6, 6)")], strict=True):
    ax.imshow(mat, cmap="Blues")
    ax.set_title(title)
axes[0].set_xticks(range(6), [f"m0={int(v)}" for v in m0_tiny], rotation=90)
axes[2].set_xticks(range(6), [f"m0={int(v)}" for v in m0_tiny], rotation=90)
axes[2].set_yticks(range(6), [f"m0={int(v)}" for v in m0_tiny])
plt.show()
missing = sorted(set(range(1, 6)) - set(m1_tiny.tolist()))
print("hidden connectivity numbers m1:", m1_tiny.tolist(), "; values never drawn:", missing or "none",
      "; earlier inputs not reached:", int(((paths == 0) & (m0_tiny[:, None] > m0_tiny[None, :])).sum()))

# %% [markdown]
# ### Exercise 5: MADE's forward pass and loss
# Now the network itself. With weights $W^l$, biases $b^l$ and masks $M^l$ for the $L$ hidden layers and the
# output layer ($l = 1, \dots, L+1$), and optional direct weights $A$ with their mask $M^{\mathrm{dir}}$,
#
# $$h^0 = x, \qquad h^l = \mathrm{ReLU}\big((W^l \odot M^l)\, h^{l-1} + b^l\big) \ (l = 1, \dots, L), \qquad
# \ell = (W^{L+1} \odot M^{L+1})\, h^L + b^{L+1} + (A \odot M^{\mathrm{dir}})\, x,$$
#
# and the negative log-likelihood of each image is the sum of its $D$ binary cross-entropies,
#
# $$-\log p(x) = -\sum_{d=1}^{D} \big[x_d \log \sigma(\ell_d) + (1 - x_d) \log(1 - \sigma(\ell_d))\big].$$
#
# Write `made_forward(x, weights, biases, masks, A=None, mask_A=None)` returning the pair `(logits, nll)`:
# `x` is a $(B, D)$ float32 batch in $\{0, 1\}$; `weights[l]` and `masks[l]` have the shape of an `nn.Linear`
# weight, $(H_1, D), \dots, (D, H_L)$, `biases[l]` is $(H_{l+1},)$; `A` and `mask_A` are $(D, D)$, or `None`
# for no direct connection. `logits` is $(B, D)$ and `nll` is $(B,)$, $-\log p(x_b)$ for each image (not yet
# averaged over the batch). Two demands: the lecture trains MADE by backpropagating through `nll`, so keep it
# a differentiable torch tensor; and a trained MADE is confident, with logits beyond $\pm 100$ where
# $\sigma(\ell)$ rounds to 0 or 1 in float32, so compute the log-probabilities from the logits directly.
# The check verifies through the Jacobian that the logits are autoregressive for random orderings, compares
# `nll` with the exact negative log-likelihood of a tiny MADE on all $2^6$ binary images (whose
# probabilities must sum to one), checks the gradients, and runs 30 Adam steps on your loss, which must lower
# the exact loss as much as the same steps on the reference.

# %% tags=["solution:ex5_made_forward"]
def made_forward(x, weights, biases, masks, A=None, mask_A=None):
    """MADE: x (B, D) -> (logits (B, D), nll (B,)), ReLU hidden layers, masked weights and direct connections."""
    ### BEGIN SOLUTION
    h = x
    for i, (W, b, M) in enumerate(zip(weights, biases, masks, strict=True)):
        h = F.linear(h, W * M, b)                        # (B, H_l), then (B, D) at the output layer
        h = torch.relu(h) if i < len(weights) - 1 else h
    if A is not None:
        h = h + F.linear(x, A * mask_A)                  # the direct, FVSBN-like term
    nll = F.binary_cross_entropy_with_logits(h, x, reduction="none").sum(1)   # (B,) stable in the logits
    return h, nll
    ### END SOLUTION


# %% tags=["check:ex5_made_forward"]
lecture02.check_made_forward(made_forward)

# %% [markdown]
# ### Order-agnostic training and mask ensembles
#
# Any ordering gives a valid model, and the masks are just buffers. MADE's **order-agnostic** training draws
# a new set of masks for every minibatch (a random ordering $m^0$ and new hidden numbers $m^l$), so that one set
# of weights learns many factorizations at once. We keep $K$ fixed mask sets (mask 0 is the raster order, the
# others random orderings) and draw one per batch. At test time, each mask $k$ is a complete model
# $p_k(x)$, and their **ensemble** is the mixture
#
# $$p_{\mathrm{ens}}(x) = \frac1K \sum_{k=1}^K p_k(x), \qquad
# \log p_{\mathrm{ens}}(x) = \operatorname{logsumexp}_k \log p_k(x) - \log K,$$
#
# which by Jensen's inequality is never worse than the average of the $\log p_k(x)$, and usually better than
# the best single mask. The class below holds the weights and the $K$ mask sets; its `logits` and `loss` are
# your `made_forward` with the masks of set $k$.

# %%
class MADE(BinaryAutoregressive):
    """Masked autoencoder for distribution estimation (Germain et al. 2015) with K mask sets and direct connections."""

    def __init__(self, D, hidden=(500,), n_masks=1, direct=True, seed=0):
        super().__init__()
        self.D, self.n_masks, self.k = D, n_masks, 0
        sizes = [D, *hidden, D]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.A = nn.Parameter(torch.zeros(D, D)) if direct else None    # direct input -> output weights
        g = torch.Generator().manual_seed(seed)
        sets = [self.draw_masks(k, hidden, g) for k in range(n_masks)]
        for i in range(len(sizes)):                      # buffer "mask{i}": (K, out, in); the last is direct
            self.register_buffer(f"mask{i}", torch.stack([s[i] for s in sets]))
        self.register_buffer("orders", torch.stack([s[-1] for s in sets]))  # (K, D) the pixel at each position

    def draw_masks(self, k, hidden, g):
        order = torch.arange(self.D) if k == 0 else torch.randperm(self.D, generator=g)
        m0 = torch.empty(self.D, dtype=torch.long)
        m0[order] = torch.arange(1, self.D + 1)          # m0[d] = position of pixel d in the ordering
        m = [m0]
        for H in hidden:
            m.append(torch.randint(int(m[-1].min()), self.D, (H,), generator=g))
        direct = (m0[:, None] > m0[None, :]).float()     # (D, D)
        return [*made_masks(m), direct, order]

    def forward(self, x, k):                             # (B, D) -> (logits (B, D), nll (B,)) with mask set k
        masks = [getattr(self, f"mask{i}")[k] for i in range(len(self.layers) + 1)]
        return made_forward(x, [layer.weight for layer in self.layers], [layer.bias for layer in self.layers],
                            masks[:-1], self.A, masks[-1] if self.A is not None else None)

    def logits(self, x, k=None):
        return self(x, self.k if k is None else k)[0]

    def loss(self, x):                                   # order-agnostic: a random mask set per training batch
        k = int(torch.randint(self.n_masks, ())) if self.training else self.k
        return self(x, k)[1].mean()

    def masked_out(self):                                # the masks of set 0, for counting free parameters
        return [getattr(self, f"mask{i}")[0] for i in range(len(self.layers) + (self.A is not None))]

# %% [markdown]
# First a MADE with one mask, the raster order, one hidden layer of ReLU units and direct connections, trained
# like the others.

# %%
torch.manual_seed(0)                                     # the initialization owes nothing to the samples drawn above
made = MADE(D, hidden=(H_MADE,), n_masks=1).to(device)
made.layers[-1].bias.data.copy_(marginal_logit)
print(f"MADE: {n_params(made):,} free parameters ({sum(p.numel() for p in made.parameters()):,} weights, "
      f"the rest masked out)")
torch.manual_seed(0)
hist_made = train_or_load(made, LECTURE, "made", lambda: fit_decayed(made, EPOCHS["made"], lr=2e-3))
nll_made = test_nll(made)
print(f"MADE test NLL (one mask, raster order): {nll_made:.2f} nats per image "
      f"({sum(hist_made['epoch_time']):.0f} s of training)")

# %% [markdown]
# Now the order-agnostic model: the same network with $K$ mask sets. Before training, the defining property
# at full size: with a random ordering (mask set 1), the Jacobian of the logits is zero exactly where the
# ordering forbids a dependency.

# %%
made_oa = MADE(D, hidden=(H_MADE,), n_masks=N_MASKS, seed=1).to(device)
made_oa.layers[-1].bias.data.copy_(marginal_logit)
made_oa.k = 1
checks.check_autoregressive(lambda v: made_oa.logits(v.to(device)).cpu(), D, order=made_oa.orders[1].tolist(),
                            name="MADE with mask set 1")
made_oa.k = 0
torch.manual_seed(0)
hist_made_oa = train_or_load(made_oa, LECTURE, "made_order_agnostic",
                             lambda: fit_decayed(made_oa, EPOCHS["made_oa"], lr=2e-3))
print(f"order-agnostic MADE: {N_MASKS} mask sets, {sum(hist_made_oa['epoch_time']):.0f} s of training")

# %% [markdown]
# ### Exercise 6: the ensemble log-likelihood
# Write `ensemble_log_prob(log_p)`: from the $(K, N)$ log-likelihoods $\log p_k(x_n)$ of $K$ masks, return the
# $(N,)$ log-likelihoods of the mixture $\frac1K \sum_k p_k(x_n)$. Image log-likelihoods are around $-90$, and
# for unlikely images far below: work in log space.

# %% tags=["solution:ex6_mask_ensemble"]
def ensemble_log_prob(log_p):
    """log (1/K) sum_k exp(log_p[k]): (K, N) -> (N,)."""
    ### BEGIN SOLUTION
    return torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    ### END SOLUTION


# %% tags=["check:ex6_mask_ensemble"]
lecture02.check_ensemble_log_prob(ensemble_log_prob)

# %%
@torch.no_grad()
def mask_log_probs(model, x, batch=500):                 # (K, N): log p_k(x_n) under each mask set k
    model.eval()
    out = []
    for k in range(model.n_masks):
        model.k = k
        out.append(torch.cat([model.log_prob(xb) for xb in x.split(batch)]))
    model.k = 0
    return torch.stack(out)


log_p_masks = mask_log_probs(made_oa, x_test)            # (K, N)
nll_per_mask = -log_p_masks.mean(1)                      # (K,)
ensemble_sizes = [k for k in (1, 2, 4, 8, 16, 32) if k <= N_MASKS]
nll_ensemble = [-ensemble_log_prob(log_p_masks[:k]).mean().item() for k in ensemble_sizes]
print("test NLL of each mask set:", [f"{v:.2f}" for v in nll_per_mask.tolist()])
print(f"mean over masks {nll_per_mask.mean():.2f}, best {nll_per_mask.min():.2f}; ensemble of all {N_MASKS}: "
      f"{nll_ensemble[-1]:.2f} (gain {nll_per_mask.mean() - nll_ensemble[-1]:.2f} nats over the mean single mask)")

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(ensemble_sizes, nll_ensemble, "o-", label="ensemble of the first K masks")
ax.axhline(nll_per_mask.mean().item(), color="gray", ls="--", label="mean single mask")
ax.axhline(nll_made, color="C1", ls=":", label="MADE trained with one mask")
ax.set(xscale="log", xlabel="masks in the ensemble K", ylabel="test NLL (nats)",
       title="order-agnostic MADE: mask ensembles")
ax.set_xticks(ensemble_sizes, [str(k) for k in ensemble_sizes])
ax.legend()
plt.show()

# %%
torch.manual_seed(1)
samples["MADE"] = made.sample(N_SHOW)                        # raster order, as sample_autoregressive assumes
plot.samples_beside_real({"MADE samples (T = 1)": samples["MADE"]}, x_test, n=N_SHOW)
plt.show()

# %% [markdown]
# ## 6. An RNN over the pixel sequence
#
# An RNN summarizes the whole past $x_{<i}$ in a state $s_i$ of fixed size, updated once per pixel:
# $s_i = \mathrm{GRU}(s_{i-1}, [x_{i-1}, \mathrm{pos}_i])$ and $\ell_i = w^\top s_i + b$. The input at step $i$
# is the previous pixel ($x_0 = 0$ as a start symbol) and a one-hot code of the row and column of pixel $i$,
# since an RNN has no other way to know where in the image it is. Parameters do not grow with $D$, and the
# context is unbounded, but the state must be computed **sequentially**, for training and likelihoods as well
# as for sampling: 784 small steps where MADE does one large one.

# %%
class PixelGRU(BinaryAutoregressive):
    """A GRU (Cho et al. 2014) reading the pixels in raster order; its state at step i predicts x_i."""

    def __init__(self, D, H, side=28):
        super().__init__()
        self.D = D
        rows, cols = torch.arange(D) // side, torch.arange(D) % side
        self.register_buffer("pos", torch.cat([F.one_hot(rows, side), F.one_hot(cols, side)], 1).float())  # (D, 56)
        self.gru = nn.GRU(1 + 2 * side, H, batch_first=True)
        self.out = nn.Linear(H, 1)

    def inputs(self, x):                                 # (B, D) -> (B, D, 57): [x_{i-1}, position of i]
        previous = F.pad(x, (1, 0))[:, :-1]
        return torch.cat([previous[..., None], self.pos.expand(len(x), -1, -1)], -1)

    def logits(self, x):                                 # (B, D) -> (B, D), 784 sequential GRU steps
        s, _ = self.gru(self.inputs(x))                  # (B, D, H)
        return self.out(s)[..., 0]

# %%
@torch.no_grad()
def gru_sample(self, n, x=None, start=0, temperature=1.0):
    x = torch.zeros(n, self.D, device=self.device) if x is None else x.clone()
    state = None
    if start > 0:                                        # read the given pixels in one call
        _, state = self.gru(self.inputs(x)[:, :start])
    for i in range(start, self.D):
        previous = x[:, i - 1:i] if i > 0 else x.new_zeros(n, 1)
        s, state = self.gru(torch.cat([previous, self.pos[i].expand(n, -1)], 1)[:, None], state)
        x[:, i] = torch.bernoulli(torch.sigmoid(self.out(s[:, 0])[:, 0] / temperature))
    return x


PixelGRU.sample = gru_sample
torch.manual_seed(0)                                     # the initialization owes nothing to the samples drawn above
rnn = PixelGRU(D, H_RNN).to(device)
print(f"GRU: {n_params(rnn):,} parameters")
torch.manual_seed(0)
hist_rnn = train_or_load(rnn, LECTURE, "rnn", lambda: fit_decayed(rnn, EPOCHS["rnn"], lr=3e-3, x=x_train[:N_RNN]))
nll_rnn = test_nll(rnn)
print(f"GRU test NLL: {nll_rnn:.2f} nats per image ({sum(hist_rnn['epoch_time']):.0f} s of training on "
      f"{min(N_RNN, len(x_train))} images per epoch)")

# %%
torch.manual_seed(1)
samples["RNN"] = rnn.sample(N_SHOW)
plot.samples_beside_real(samples, x_test, n=N_SHOW, title="samples of the four models (T = 1)")
plt.show()

# %% [markdown]
# ## 7. Completions, costs and the comparison
#
# Keeping the top half of a test digit (the first 392 pixels in raster order) and sampling the rest draws from
# $p(x_{\text{bottom}} \mid x_{\text{top}})$, with no extra training: the conditionals are exactly what these
# models learn. (A MADE with a random ordering would first have to sample in its own order; the raster one
# is ready as it is.)

# %%
models = {"FVSBN": fvsbn, "NADE": nade, "MADE": made, "RNN": rnn}
keep = 14 * 28
digits = x_test[:8]                                      # (8, D)
torch.manual_seed(2)
completions = {name: m.sample(len(digits), x=digits.clone(), start=keep) for name, m in models.items()}
top_only = digits.clone()
top_only[:, keep:] = 0.25                                # grey: unknown
rows = [("test digit", digits), ("top half kept", top_only)] + list(completions.items())
fig, axes = plt.subplots(len(rows), 1, figsize=(4.5, 1.0 * len(rows) + 0.5))
for ax, (name, imgs) in zip(axes, rows, strict=True):
    plot.image_grid(imgs.view(-1, 28, 28), nrow=8, ax=ax)
    ax.set_title(name, fontsize=9)
plt.show()

# %% [markdown]
# Try it: choose a test digit, how many rows to keep, the model, and the temperature. With few rows kept the
# completions scatter over several digits; with $T < 1$ they become cleaner and less diverse.

# %%
def complete(digit=0, rows_kept=14, model="MADE", temperature=1.0):
    x = x_test[digit:digit + 1].expand(8, -1).clone()
    torch.manual_seed(digit)
    out = models[model].sample(8, x=x, start=28 * rows_kept, temperature=temperature)
    shown = torch.cat([x_test[digit:digit + 1], out]).view(-1, 28, 28).clone()
    shown[0, rows_kept:] = 0.5 * shown[0, rows_kept:] + 0.25       # dim the part the model does not see
    plot.image_grid(shown, nrow=9, title=f"{model}: rows 0-{rows_kept - 1} kept (first image), 8 completions")
    plt.show()


widgets.interactive_plot(complete, digit=widgets.slider(0, 0, len(x_test) - 1),
                         rows_kept=widgets.slider(14, 0, 27),
                         model=list(models), temperature=widgets.slider(1.0, 0.3, 1.5, 0.1))

# %% [markdown]
# ### What a likelihood and a sample cost
#
# One likelihood evaluation of a batch of 100 test images, and one batch of `N_TIMED` (16) samples, timed for each model
# (best of three; wall clock on this machine). FVSBN and MADE compute all conditionals in one pass, NADE in
# one pass of $D$ small steps, the RNN in $D$ sequential GRU steps. For sampling, the generic loop calls MADE's
# and FVSBN's full pass $D$ times, while NADE and the RNN carry their state along.

# %%
def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


costs = {}
with torch.no_grad():
    for name, m in models.items():
        m.eval()
        t_eval = best_time(lambda m=m: m.log_prob(x_test[:100]))
        t_sample = best_time(lambda m=m: m.sample(N_TIMED), repeats=2)
        costs[name] = (t_eval, t_sample)
nlls = {"FVSBN": nll_fvsbn, "NADE": nll_nade, "MADE": nll_made, "RNN": nll_rnn}
print(f"{'model':8}{'parameters':>12}{'test NLL':>10}{'ms / likelihood':>17}{'ms / sample':>13}")
for name, m in models.items():
    print(f"{name:8}{n_params(m):>12,}{nlls[name]:>10.2f}{1e3 * costs[name][0] / 100:>17.3f}"
          f"{1e3 * costs[name][1] / N_TIMED:>13.1f}")
print(f"{'MADE ens':8}{n_params(made_oa):>12,}{nll_ensemble[-1]:>10.2f}"
      f"{1e3 * N_MASKS * costs['MADE'][0] / 100:>17.3f}{'':>13}   (order-agnostic, {N_MASKS} masks)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
names = list(models)
pos = torch.arange(len(names)).float()
ax.bar(pos - 0.2, [1e3 * costs[n][0] / 100 for n in names], 0.4, label="likelihood of one image")
ax.bar(pos + 0.2, [1e3 * costs[n][1] / N_TIMED for n in names], 0.4, label="one sample")
ax.set(yscale="log", ylabel="milliseconds", xticks=pos.tolist(), title="cost per image (batched)")
ax.set_xticklabels(names)
ax.legend()
plt.show()
ratio_rnn_made = costs["RNN"][0] / costs["MADE"][0]
ratio_made_sample = (costs["MADE"][1] / N_TIMED) / (costs["MADE"][0] / 100)
print(f"RNN likelihood / MADE likelihood: {ratio_rnn_made:.0f}x; MADE sample / MADE likelihood per image: "
      f"{ratio_made_sample:.0f}x")

# %% [markdown]
# ## Results
#
# Headline numbers: the test NLLs (nats per image on the binarized test images, fixed seed 0), the mask
# ensemble, and the timing ratios.

# %%
n_test = len(x_test)
record(LECTURE, "fvsbn_test_nll", nll_fvsbn, "nats per image", n_data=n_test, wall_time_s=time.perf_counter() - T0,
       note=f"{EPOCHS['fvsbn']} epochs, Adam 3e-3 decayed")
record(LECTURE, "nade_test_nll", nll_nade, "nats per image", n_data=n_test, wall_time_s=time.perf_counter() - T0,
       note=f"H={H_NADE}, {EPOCHS['nade']} epochs, strided loss s={nade.stride}, exact test NLL")
record(LECTURE, "made_test_nll", nll_made, "nats per image", n_data=n_test, wall_time_s=time.perf_counter() - T0,
       note=f"one mask (raster order), H={H_MADE}, direct connections, {EPOCHS['made']} epochs")
record(LECTURE, "made_ensemble_test_nll", nll_ensemble[-1], "nats per image", n_data=n_test,
       wall_time_s=time.perf_counter() - T0,
       note=f"order-agnostic MADE, ensemble of {N_MASKS} masks, {EPOCHS['made_oa']} epochs")
record(LECTURE, "made_order_agnostic_single_mask_test_nll", nll_per_mask.mean().item(), "nats per image",
       n_data=n_test, note=f"mean over the {N_MASKS} masks of the order-agnostic MADE")
record(LECTURE, "made_ensemble_gain", nll_per_mask.mean().item() - nll_ensemble[-1], "nats per image",
       n_data=n_test, note="mean single mask minus ensemble, order-agnostic MADE")
record(LECTURE, "rnn_test_nll", nll_rnn, "nats per image", n_data=n_test, wall_time_s=time.perf_counter() - T0,
       note=f"GRU H={H_RNN}, {EPOCHS['rnn']} epoch(s) of {min(N_RNN, len(x_train))} images")
record(LECTURE, "rnn_over_made_likelihood_time", ratio_rnn_made, "ratio", note="batch of 100 test images")
record(LECTURE, "made_sample_over_likelihood_time", ratio_made_sample, "ratio", note="per image, batched")
for name in models:
    key = name.lower()
    record(LECTURE, f"{key}_ms_per_likelihood", 1e3 * costs[name][0] / 100, "ms", note=f"batch of 100, {device.type}")
    record(LECTURE, f"{key}_ms_per_sample", 1e3 * costs[name][1] / N_TIMED, "ms", note=f"batch of {N_TIMED}, {device.type}")

# %%
# published figures: statically binarized MNIST (Larochelle & Murray's), all 10,000 test images; ours are dynamic
published = {"FVSBN": ("97.45", nll_fvsbn, 100, 97), "NADE": ("88.33", nll_nade, 95, 89),
             "MADE": ("88.40", nll_made, 93, 87), "MADE ensemble": ("86.64, 32 masks", nll_ensemble[-1], None, None)}
for name, (paper, value, standard, full) in published.items():
    target = {"standard": standard, "full": full}.get(MODE)
    verdict = "" if target is None else f"; {MODE} target <= {target}: {'met' if value <= target else 'NOT met'}"
    print(f"{name:14} {value:6.2f} nats (published {paper}){verdict}")

# %% [markdown]
# **Discussion.** The cell above says, for the current mode, which targets this run met; the numbers are
# measured as they come. What to expect in standard mode (2 CPU cores, a few minutes of training per model):
# FVSBN is convex and gets close to its optimum (98.3<!-- r:fvsbn_test_nll --> nats in our standard run,
# against 97.45 published). The published figures were measured under another protocol: the statically
# binarized MNIST of Larochelle and Murray (one fixed binarization of train and test) on all 10,000 test
# images, while we resample the training binarization every batch and test on the mode's test split; they
# are a guide, not a like-for-like comparison.
# NADE and MADE are trained for 7 and 10 epochs, far from the hundreds behind the published figures, so they
# stay a few nats above them. Order-agnostic training spreads the same budget over $K$ orderings: each single
# mask is then clearly worse than the MADE trained with one mask, and the ensemble recovers part of the gap,
# but in our short runs not all of it; the published gain (88.40 with one mask, 86.64 with an ensemble of 32
# masks, both with one hidden layer) comes
# after long training. The GRU sees a fraction of an epoch and has no target; its lesson is the cost column:
# every likelihood is 784 sequential steps, where MADE needs one pass.
#
# ## Summary
# - The chain rule makes any distribution over 784 pixels a product of 784 conditionals; tables of them would
#   need $2^{784} - 1$ numbers, so each conditional is a small parametric classifier.
# - **FVSBN**: one logistic regression per pixel = one linear layer with a strictly lower-triangular mask;
#   $D(D+1)/2$ parameters; local structure, weak global shape.
# - **NADE**: one shared hidden layer (sigmoid in the original, ReLU here); the running sum $a_{i+1} = a_i + W_{:,i} x_i$ gives all conditionals in
#   $O(DH)$ instead of $O(D^2H)$, for likelihoods and for sampling alike.
# - **MADE**: masks from connectivity numbers turn an autoencoder into an autoregressive model with one
#   forward pass for all conditionals; order-agnostic training learns many orderings with one set of weights,
#   and a mask ensemble trades test-time compute for likelihood.
# - **RNN**: unbounded context with few parameters, but every likelihood is $D$ sequential steps.
# - Sampling is sequential for every autoregressive model: $D$ steps, and for MADE and FVSBN $D$ full passes.
#   Likelihoods are cheap for the masked models, sampling is cheap for the models with a running state.
#
# ## References
# - B. J. Frey, *Graphical Models for Machine Learning and Digital Communication*, MIT Press, 1998 (FVSBN).
# - H. Larochelle and I. Murray, [The Neural Autoregressive Distribution Estimator](https://proceedings.mlr.press/v15/larochelle11a.html), AISTATS 2011 (the binarized-MNIST results table: FVSBN 97.45 and NADE 88.33 nats, statically binarized MNIST, 10,000 test images).
# - B. Uria, M.-A. Côté, K. Gregor, I. Murray and H. Larochelle, [Neural Autoregressive Distribution Estimation](https://jmlr.org/papers/v17/16-272.html), JMLR 2016 (NADE, its order-agnostic and deep variants).
# - M. Germain, K. Gregor, I. Murray and H. Larochelle, [MADE: Masked Autoencoder for Distribution Estimation](https://arxiv.org/abs/1502.03509), ICML 2015 (the binarized-MNIST results table: 88.40 nats with one hidden layer and one mask, 86.64 with one hidden layer and an ensemble of 32 masks; statically binarized MNIST, 10,000 test images).
# - Y. Burda, R. Grosse and R. Salakhutdinov, [Importance Weighted Autoencoders](https://arxiv.org/abs/1509.00519), ICLR 2016 (the dynamic binarization protocol).
# - K. Cho et al., [Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation](https://arxiv.org/abs/1406.1078), EMNLP 2014 (the GRU).
# - A. van den Oord, N. Kalchbrenner and K. Kavukcuoglu, [Pixel Recurrent Neural Networks](https://arxiv.org/abs/1601.06759), ICML 2016 (RNNs over pixels, and PixelCNN of lecture 03).
