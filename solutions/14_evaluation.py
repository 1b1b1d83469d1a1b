# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Lecture 14 — Evaluating generative models
#
# Thirteen lectures built models; this one asks how to tell a good one from a bad one. There is no single
# answer, because a generative model is used for different things, and each use has its own test:
#
# | use | question | measured by |
# | --- | --- | --- |
# | density estimation, compression | does the model put mass where the test data is? | test log-likelihood (nats, bits/dim) |
# | sampling | do samples look like data, and cover all of it? | sample-quality scores (IS, FID, KID, precision/recall), people |
# | representation learning | are the latents useful? | clustering, linear probes |
#
# The lecture goes through each column, builds every sample-quality score from scratch, tests the scores
# themselves by experiment (a score must rise when images get worse), and ends with one table comparing
# models of the earlier lectures on MNIST.
#
# **Learning goals**
# 1. Estimate a likelihood with a **kernel density estimate** (Parzen windows), choose its bandwidth by
#    validation, and see why it fails in high dimension, and why it rewards a model that memorizes.
# 2. Use a small **MNIST classifier** as a feature extractor and compute the **Inception Score**, the
#    **Fréchet distance (FID)**, the **kernel distance (KID)**, and **precision and recall**, each from scratch.
# 3. Run the **sanity checks** every score should pass: real vs real is near zero, corruption makes it worse.
# 4. See that **likelihood and sample quality** can disagree, and evaluate **representations** by k-means
#    clustering (NMI) and a linear probe.
# 5. Read a **comparison table** of autoregressive, latent-variable and adversarial models, under the course's
#    one **evaluation protocol** (one reference set, the same number of samples per model, a floor of real digits).
# 6. Turn the answers of a real-or-fake game into the **HYPE$_\infty$** error rate with a bootstrap confidence
#    interval.
#
# **Builds on** lecture 01 (histograms and the curse of dimensionality), 02 (MADE), 05 (VAE, importance
# sampling), 08 (GANs, likelihood vs sample quality) and 03 (test NLL, typicality).
#
# **An honest caveat, once and for all.** The "Inception" Score and the "Fréchet *Inception* Distance" are defined
# with the features of an Inception-v3 network trained on ImageNet. This course has no such network, and
# Inception features of $28\times28$ digits would mean little anyway. Here every score uses the **course
# classifier**, a small CNN trained on MNIST below. The formulas are the published ones; the numbers are on
# a different scale and **cannot be compared with published FID or IS values**, only with each other.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import budget, evaluation, fit, mnist, plot, progress, record, setup, train_or_load, widgets
from dgm_course.exercises import lecture14

device, MODE = setup(seed=0)
LECTURE = "14_evaluation"
T0 = time.perf_counter()

# %% [markdown]
# ## The course's evaluation protocol
#
# Every sample-quality number of the course (this lecture and lectures 08, 09, 13 and 15) is measured the same way,
# with the helpers of `dgm_course.evaluation` that this lecture explains:
#
# - **One reference set**: the test set of the current mode (`mnist.test_split`, returned by
#   `evaluation.fid_reference`): the first 2000 official test images in standard mode, the whole official test split
#   in full mode, fewer in smoke mode. Its size is printed and recorded, never assumed.
# - **The models' training data**: the MNIST training split *less 5000 images drawn once at random*
#   (`evaluation.generative_train_split`; `evaluation.held_out_images` returns them). No generative model of the
#   course ever sees those 5000 digits. They are a random draw and not, say, the last 5000: MNIST's training split
#   is not shuffled, and its tail is not written like the rest, so a floor from the tail would sit far above what a
#   perfect model of the training data scores.
# - **One floor**: $N$ of those held-out real digits scored against the reference set (`evaluation.fid_floor`),
#   with the **same $N$** as the generated samples it is compared with. It is what a perfect model would score with
#   $N$ samples, and it is recorded as `fid_floor` beside every FID table. Within a lecture every model is scored
#   with the same $N$. The floor is itself an estimate from $N$ images and would move with another draw of $N$ real
#   digits (section 5 measures how much two real sets of the same size differ): FID differences of that size
#   between models mean nothing.
# - Beside each model's FID, the **confident fraction** (`evaluation.confident_fraction`): the share of its
#   samples that the course classifier (section 2) assigns to one digit with probability at least 0.9.
#
# Here: the models train on the generative training split, the held-out digits are this lecture's **real samples**
# (they score the floor), and the test set is the reference, all as floats in $[0, 1]$.

# %%
N_TRAIN = budget(smoke=3000, standard=None, full=None)        # None: the whole generative training split
N_EVAL = budget(smoke=500, standard=2000, full=5000)          # samples per evaluated set: every model, the floor
train_images, train_labels = evaluation.generative_train_split(N_TRAIN)   # uint8 (N, 28, 28); what models see
test_images, test_labels = mnist.test_split(smoke=500)                    # the reference set
held_out = evaluation.held_out_images()                                 # 5000 training digits no model sees
x_train, x_test = mnist.to_unit(train_images), mnist.to_unit(test_images)  # float (N, 1, 28, 28) in [0, 1]
x_real = mnist.to_unit(held_out[:N_EVAL])        # "real samples": held-out digits, the floor's images
gen = torch.Generator().manual_seed(0)
perm = torch.randperm(len(x_train), generator=gen)
x_val = x_train[perm[:N_EVAL]]                    # held out from the kernel centres below, for bandwidths
print(f"reference: {len(x_test)} test images; models train on {len(x_train)} images; "
      f"real samples: {len(x_real)} held-out training digits")

# %% [markdown]
# ## 1. Likelihood without a likelihood: kernel density estimates
#
# A model with a tractable likelihood (lectures 02, 03, 07) or a bound on it (05) is evaluated on test
# data by $-\frac1M\sum_m \log p(x_m)$. A GAN or a score model gives only samples. The classic fix, used by the
# first GAN papers, is to turn the samples into a density: the **kernel density estimate** (KDE, Parzen windows)
# of $N$ points $s_1, \dots, s_N$ with a Gaussian kernel of width $\sigma$,
#
# $$\hat p_\sigma(x) = \frac1N \sum_{n=1}^{N} \mathcal N(x;\, s_n, \sigma^2 I), \qquad
# \log \hat p_\sigma(x) = \operatorname{logsumexp}_n\left(-\frac{\|x - s_n\|^2}{2\sigma^2}\right) - \log N
#   - \frac D2 \log(2\pi\sigma^2).$$
#
# The bandwidth $\sigma$ is a hyperparameter: too small and every test point is far from all kernels, too large
# and the density is a blur. It is chosen by the log-likelihood of a **validation** set (never the test set).
# The function returns the log-density for a whole grid of bandwidths at once, so the distances, the
# expensive part, are computed once.

# %%
def kde_log_prob(x, centres, sigmas, batch=500):
    """log p_sigma(x) of the Gaussian KDE of `centres` (N, D) at x (M, D), for each sigma: (S, M)."""
    n, d = centres.shape
    out = []
    for xb in x.split(batch):
        sq = torch.cdist(xb, centres).pow(2)                                        # (b, N)
        out.append(torch.stack([torch.logsumexp(-sq / (2 * s**2), dim=1) for s in sigmas]))   # (S, b)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)[:, None]                 # (S, 1)
    return torch.cat(out, 1).double() - math.log(n) - 0.5 * d * torch.log(2 * math.pi * sigmas**2)


def kde_select(x_val, centres, sigmas):
    """The bandwidth with the best mean validation log-likelihood, and that curve."""
    val_ll = kde_log_prob(x_val, centres, sigmas).mean(1)                           # (S,)
    return float(sigmas[val_ll.argmax()]), val_ll


# %% [markdown]
# ### The curse of dimensionality, measured
#
# Take data from a standard normal $\mathcal N(0, I_D)$: the true density is known, and so is the best possible
# test NLL, the entropy $\frac D2 \log(2\pi e)$. Fit a KDE with $N$ training points, pick $\sigma$ on a
# validation set, and measure how many nats per dimension it loses against the truth as $D$ grows.

# %%
DIMS = [1, 2, 5, 10, 20, 50, 100]
N_KDE = budget(smoke=[200, 1000], standard=[100, 1000, 10000], full=[100, 1000, 10000])
SIGMAS_TOY = torch.logspace(-1.5, 0.5, 21)
kde_gap = {n: [] for n in N_KDE}
for d in progress(DIMS, "KDE of N(0, I_D)"):
    g = torch.Generator().manual_seed(d)
    x_tr, x_va, x_te = (torch.randn(n, d, generator=g) for n in (max(N_KDE), 500, 500))
    true_nll = 0.5 * d * math.log(2 * math.pi * math.e)
    for n in N_KDE:
        sigma, _ = kde_select(x_va, x_tr[:n], SIGMAS_TOY)
        nll = -kde_log_prob(x_te, x_tr[:n], [sigma]).mean().item()
        kde_gap[n].append((nll - true_nll) / d)

fig, ax = plt.subplots(figsize=(5.5, 3.6))
for n, gap in kde_gap.items():
    ax.plot(DIMS, gap, "o-", label=f"N = {n} kernels")
ax.set(xscale="log", xlabel="dimension D", ylabel="KDE test NLL - entropy (nats per dim)",
       title="a KDE of N(0, I_D): the excess NLL per dimension")
ax.legend()

# %% [markdown]
# In one or two dimensions a few hundred points give a KDE within a few hundredths of a nat per dimension of
# the truth. The excess per dimension grows with $D$, and ten times more points buy less and less: to keep a
# fixed accuracy the number of kernels must grow **exponentially** in $D$ (the histogram of lecture 01 had the
# same disease). MNIST has $D = 784$.
#
# ### A KDE of MNIST, and the model that memorizes
#
# The Parzen estimate of the GAN paper (Goodfellow et al., 2014) takes the samples of a model as centres and
# reports the mean log-density of the test images. Before giving it any model, give it the **training images
# themselves**: the "model" that memorizes its training set and replays it. Below, the KDE of $N$ training
# images, bandwidth chosen on held-out training images, for growing $N$.

# %%
SIGMAS = torch.logspace(-1.5, -0.3, 13)                           # 0.03 ... 0.5
N_VAL_KDE = budget(smoke=200, standard=500, full=2000)
N_CENTRES = budget(smoke=[250, 1000, 2000], standard=[250, 1000, 4000, 16000, 50000],
                   full=[250, 1000, 4000, 16000, 50000])
centre_pool = x_train[perm[N_EVAL:]].flatten(1)                   # training images, not the validation ones
parzen_memorizer = {}
for n in progress(N_CENTRES, "KDE of training images"):
    sigma, _ = kde_select(x_val[:N_VAL_KDE].flatten(1), centre_pool[:n], SIGMAS)
    parzen_memorizer[n] = (sigma, kde_log_prob(x_test.flatten(1), centre_pool[:n], [sigma]).mean().item())
    print(f"N = {n:6d} training images as centres: sigma = {sigma:.3f}, test log-likelihood "
          f"{parzen_memorizer[n][1]:8.1f} nats")

# %% [markdown]
# Two lessons. First, the estimate is **not converged**: it still climbs by tens of nats each time $N$ is
# multiplied by four (printed above), so a Parzen number says as much about the number of samples as about the model
# (Theis et al., 2016, needed millions of samples for a stable estimate on small image patches). Second, a
# KDE is a memorizer by construction: every kernel sits on a training image, and the best "samples" for it are
# the training images. Section 9 gives the KDE the samples of real models and the memorizer still wins (narrowly
# against the VAE's smooth decoder means, by far against every model's actual random draws).
# These are continuous densities on $[0, 1]^{784}$ (positive log-densities, unlike the binarized NLLs in nats
# of lectures 02 and 05, which are probabilities of discrete images): the two scales do not mix.

# %% [markdown]
# ## 2. The course classifier
#
# Every sample-quality score below looks at images through a classifier: its class probabilities
# $p(y \mid x)$ (the Inception Score) or its penultimate-layer **features** (FID, KID, precision and recall).
# The published scores use Inception-v3 trained on ImageNet; for digits we train our own.
#
# **The model.** Two convolution blocks (3×3 convolutions, batch normalization, ReLU, 2×2 max pooling:
# $28 \to 14 \to 7$ pixels),
# a 128-unit hidden layer whose activations are the **features** $\phi(x) \in \mathbb R^{128}$, and a linear
# head giving the logits of $p(y \mid x)$. Pixels are centred ($x - 0.5$) on the way in, and dropout (30% of the
# features zeroed at random) regularizes the head during training; in evaluation mode it is off, so the features
# are deterministic. Written here; the package holds an identical copy
# (`dgm_course.evaluation.MNISTClassifier`) so that lectures 08, 13 and 15 can score their samples.

# %%
class MNISTClassifier(nn.Module):
    """Two conv blocks and a 128-unit hidden layer (the features); a linear head for the 10 digits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),   # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 7, 7)
        )
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(128, 10))

    def features(self, x):                                  # (N, 1, 28, 28) in [0, 1] -> phi(x): (N, 128)
        return self.hidden(self.conv(x - 0.5))

    def forward(self, x):                                   # -> logits (N, 10)
        return self.head(self.features(x))

    def loss(self, x, y):                                   # cross-entropy, for the generic training loop
        return F.cross_entropy(self(x), y)


# %% [markdown]
# **The recipe.** Cross-entropy with Adam in batches of 128, five epochs over the 60000 training images with a
# falling learning rate ($2\cdot10^{-3}, 2\cdot10^{-3}, 10^{-3}, 3\cdot10^{-4}, 10^{-4}$, one epoch each; one epoch
# over 4000 images in batches of 32 in smoke mode), each batch shifted at random by up to two pixels
# (augmentation: a digit moved by a pixel is the same digit, and it makes the features less sensitive to
# exact positions). `evaluation.mnist_classifier()` runs exactly this through `train_or_load`, under the
# lecture name of this notebook, so the classifier is trained once and shared by every lecture that scores
# samples. We call it, then load its weights into the class above: the same network, bit for bit.

# %%
shared = evaluation.mnist_classifier()                      # trained once per mode (minutes on a CPU), then cached
classifier = MNISTClassifier().to(device)
classifier.load_state_dict(shared.state_dict())
classifier.eval().requires_grad_(False)


@torch.no_grad()
def batched(fn, x, batch=500):
    """fn over x (N, ...) in batches on the device; the result on the CPU."""
    return torch.cat([fn(x[i:i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


logits_test = batched(classifier, x_test)                                 # (N_test, 10)
same = torch.equal(logits_test, batched(shared, x_test))
accuracy = (logits_test.argmax(1) == test_labels).double().mean().item()
print(f"notebook class and package copy agree exactly: {same}")
print(f"test accuracy {accuracy:.2%} on {len(x_test)} test images")

# %% [markdown]
# The accuracy is printed above (about one digit in a hundred is misclassified in standard mode). The mistakes are
# worth a look: many are digits a person would hesitate on too.

# %%
wrong = (logits_test.argmax(1) != test_labels).nonzero()[:, 0][:16]
fig, axes = plt.subplots(1, len(wrong), figsize=(1.1 * len(wrong) + 0.5, 1.6), squeeze=False)
for ax, i in zip(axes[0], wrong.tolist(), strict=True):
    ax.imshow(x_test[i, 0], cmap="gray_r")
    ax.set_title(f"{test_labels[i]}→{logits_test[i].argmax()}", fontsize=9)
    ax.axis("off")

# %% [markdown]
# **Features.** Every score below compares sets of images through $\phi$. We compute and keep the features of
# the reference (test) images and of the "real samples" (held-out training digits, which the scores should find
# nearly indistinguishable from the test set).

# %%
def phi(x):
    """The course classifier's features (N, 128) of images (N, 1, 28, 28) in [0, 1], float64 on the CPU."""
    return batched(classifier.features, x.clamp(0, 1)).double()


def class_probs(x):
    """p(y | x) of the course classifier, (N, 10), float64 on the CPU."""
    return batched(classifier, x.clamp(0, 1)).double().softmax(1)


f_test, f_real = phi(x_test), phi(x_real)
print(f"features: test {tuple(f_test.shape)}, real {tuple(f_real.shape)}; "
      f"{(f_test == 0).double().mean():.0%} of the entries are 0 (ReLU)")

# %% [markdown]
# ## 3. The Inception Score
#
# Salimans et al. (2016) asked a classifier two questions about a set of samples: is each sample clearly *one*
# thing (a peaked $p(y \mid x)$, low entropy), and are *all* things present (a flat marginal
# $p(y) = \mathbb E_{x}[p(y \mid x)]$, high entropy)? Both at once:
#
# $$\mathrm{IS} = \exp\Big(\mathbb E_{x \sim p_g}\, \mathrm{KL}\big(p(y \mid x) \,\|\, p(y)\big)\Big)
#   = \exp\big(H(y) - \mathbb E_x H(y \mid x)\big),$$
#
# the exponential of the mutual information between sample and label. It lies between 1 (every sample
# classified with the same uncertainty) and the number of classes $K$ (every sample confidently one class,
# classes equally often). The expectation is a mean over the $N$ samples, $p(y)$ the mean of their rows.
#
# ### Exercise 1: the Inception Score
# Write `inception_score(probs)`: from the class probabilities `probs` $(N, K)$ (rows sum to 1; float32 or
# float64; $N$ up to thousands) return the score, one number, leaving `probs` unchanged. Rows may contain exact
# zeros (a confident classifier): use $0 \log 0 = 0$ (`torch.xlogy(p, q)` computes $p \log q$ with that
# convention). The check uses uniform rows (IS = 1), one-hot rows (IS = $\exp H(p(y))$, which is $K$ for balanced
# classes, also with $N = 1000$), and random rows.

# %% tags=["solution:ex1_inception_score"]
def inception_score(probs):
    """exp(mean_i KL(p(y|x_i) || p(y))) for probs (N, K); p(y) the mean of the rows."""
    ### BEGIN SOLUTION
    p_y = probs.mean(0, keepdim=True)                                     # (1, K) the marginal
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)     # (N,) KL(p(y|x_i) || p(y))
    return kl.mean().exp()
    ### END SOLUTION


# %% tags=["check:ex1_inception_score"]
lecture14.check_inception_score(inception_score)

# %% [markdown]
# On the test images themselves the score is close to 10, the maximum, because the classifier is confident
# and MNIST is balanced. Salimans et al. computed the mean over 10 splits of the samples; with a few thousand
# samples one split is stable enough here.

# %%
p_test, p_real = class_probs(x_test), class_probs(x_real)
is_test, is_real = float(inception_score(p_test)), float(inception_score(p_real))
print(f"IS of the test images {is_test:.3f}, of {len(x_real)} held-out training digits {is_real:.3f} (maximum 10)")

# %% [markdown]
# ## 4. The Fréchet distance (FID)
#
# The Inception Score never looks at real data: it cannot tell MNIST digits from any other set of confidently
# classified images. Heusel et al. (2017) compare the two sets instead. Fit a Gaussian to the features of each,
# $\mathcal N(\mu_r, \Sigma_r)$ for real images and $\mathcal N(\mu_g, \Sigma_g)$ for generated ones, and report
# the squared **2-Wasserstein (Fréchet) distance** between the two Gaussians, which has a closed form:
#
# $$\mathrm{FID} = \|\mu_r - \mu_g\|^2 + \operatorname{tr}\Big(\Sigma_r + \Sigma_g
#    - 2\big(\Sigma_r^{1/2}\, \Sigma_g\, \Sigma_r^{1/2}\big)^{1/2}\Big).$$
#
# The square roots are **matrix** square roots of symmetric positive semi-definite matrices: with
# $\Sigma = V \operatorname{diag}(\lambda) V^\top$ (`torch.linalg.eigh`), $\Sigma^{1/2} = V \operatorname{diag}(\sqrt{\lambda}) V^\top$.
# The often-quoted $\operatorname{tr}(\Sigma_r \Sigma_g)^{1/2}$ is the same number, since
# $\Sigma_r \Sigma_g$ and $\Sigma_r^{1/2} \Sigma_g \Sigma_r^{1/2}$ have the same eigenvalues; the symmetric form
# avoids a square root of a non-symmetric matrix. For **diagonal** covariances with variances $v_{r,i}, v_{g,i}$
# everything commutes and
#
# $$\mathrm{FID}_\text{diag} = \sum_i (\mu_{r,i} - \mu_{g,i})^2 + \sum_i \big(\sqrt{v_{r,i}} - \sqrt{v_{g,i}}\big)^2 .$$
#
# ### Exercise 2: the Fréchet distance
# Write `frechet_distance(mu1, sigma1, mu2, sigma2)`: means $(D,)$ and covariances $(D, D)$, float64
# tensors; return one number, leaving the arguments unchanged. The covariances are symmetric positive
# semi-definite and may be **singular**, as covariances of ReLU features are (a unit that is never active has
# variance 0): rounding then leaves eigenvalues like $-10^{-17}$ where 0 is meant. The check compares with the
# diagonal closed form, with the distance of a Gaussian to itself (0), with full covariances that do not commute,
# and with singular ones.

# %% tags=["solution:ex2_frechet_distance"]
def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2) for means (D,), covariances (D, D)."""
    ### BEGIN SOLUTION
    lam, v = torch.linalg.eigh(sigma1)
    root1 = (v * lam.clamp(min=0).sqrt()) @ v.T                          # Sigma_1^1/2
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp(min=0).sqrt().sum()   # tr (...)^1/2
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross
    ### END SOLUTION


# %% tags=["check:ex2_frechet_distance"]
lecture14.check_frechet_distance(frechet_distance)

# %% [markdown]
# The FID of two sets of features, and three comparisons: with the package's implementation (which the other
# lectures call), with the diagonal closed form (keeping only the variances of the two fitted Gaussians), and
# the sanity check that matters most: **test images against held-out training digits**, two samples of the same
# distribution, should be near zero. That number is the course's **floor**, and `evaluation.fid_floor` gives it
# too.

# %%
def gaussian_stats(f):
    """Mean (D,) and unbiased covariance (D, D) of features f (N, D)."""
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (len(f) - 1)


def fid_of(f_a, f_b):
    """FID (course classifier, not Inception) between two sets of features."""
    return float(frechet_distance(*gaussian_stats(f_a), *gaussian_stats(f_b)))


(mu_t, s_t), (mu_r, s_r) = gaussian_stats(f_test), gaussian_stats(f_real)
fid_test_train = fid_of(f_test, f_real)
closed_diag = float(((mu_t - mu_r) ** 2).sum() + ((s_t.diagonal().sqrt() - s_r.diagonal().sqrt()) ** 2).sum())
ours_diag = float(frechet_distance(mu_t, torch.diag(s_t.diagonal()), mu_r, torch.diag(s_r.diagonal())))
fid_floor = evaluation.fid_floor(N_EVAL, x_test, shared)
print(f"FID(test, train):   ours {fid_test_train:.5f}   package {evaluation.fid(x_test, x_real, shared):.5f}   "
      f"evaluation.fid_floor {fid_floor:.5f}")
print(f"diagonal Gaussians: ours {ours_diag:.5f}   closed form {closed_diag:.5f}")

# %% [markdown]
# All three agree with the package, and the diagonal case with its closed form. FID(test, train) is small
# compared with what a model gets (section 9) but **not zero**. Part of it is estimation bias, the subject of
# the next section; part is real: MNIST's test digits were written by other people than the training digits.
#
# ## 5. The kernel distance (KID)
#
# FID has two weaknesses: it sees only the first two moments of the features (a Gaussian fit), and its
# estimate from $N$ samples is **biased**: the plug-in covariances make FID of two samples of the *same*
# distribution positive, by an amount that shrinks like $1/N$, so FIDs computed with different $N$ cannot be
# compared. Bińkowski et al. (2018) proposed the **Kernel Inception Distance**: the squared maximum mean
# discrepancy between the two feature distributions, with a polynomial kernel,
#
# $$k(a, b) = \left(\tfrac1d\, a^\top b + 1\right)^3, \qquad
#   \mathrm{MMD}^2(p, q) = \mathbb E\, k(x, x') + \mathbb E\, k(y, y') - 2\, \mathbb E\, k(x, y),$$
#
# with $x, x' \sim p$ and $y, y' \sim q$ independent. From samples $x_1..x_m$ and $y_1..y_n$ its **unbiased**
# estimate leaves out the pairs of a sample with itself:
#
# $$\widehat{\mathrm{MMD}}{}^2_u = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j) + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j)
#   - \frac{2}{mn}\sum_{i, j} k(x_i, y_j).$$
#
# Its expectation is the true MMD², exactly 0 when $p = q$, so a single estimate may be **negative**. The kernel
# is given:

# %%
def polynomial_kernel(a, b):
    """KID's kernel k(a, b) = (a . b / d + 1)^3 between the rows of a (M, d) and b (N, d): (M, N)."""
    return (a @ b.T / a.shape[1] + 1) ** 3


# %% [markdown]
# ### Exercise 3: the unbiased MMD²
# Write `mmd2_unbiased(x, y)` for $x$ $(m, d)$ and $y$ $(n, d)$ with `polynomial_kernel`; $m \ne n$ in
# general (both at least 2), float32 or float64. One number; leave `x` and `y` unchanged. A sample may contain
# the same row several times (a collapsed model repeats its images): "$i \ne j$" means different indices.
# (Build the three kernel matrices and remove the diagonals from the sums; no loops, the lecture calls it on
# sets of 1000.)

# %% tags=["solution:ex3_mmd2_unbiased"]
def mmd2_unbiased(x, y):
    """Unbiased MMD^2 between samples x (m, d) and y (n, d) with the polynomial kernel."""
    ### BEGIN SOLUTION
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()                           # pairs i != j only
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * k_xy.mean()
    ### END SOLUTION


# %% tags=["check:ex3_mmd2_unbiased"]
lecture14.check_mmd2_unbiased(mmd2_unbiased)

# %% [markdown]
# KID is reported as $\mathrm{MMD}^2_u$ of the features; Bińkowski et al. average it over random subsets
# of 1000 samples and give the spread as an error bar. We do the same with 10 subsets.

# %%
def kid_of(f_a, f_b, n_subsets=10, size=1000, seed=0):
    """KID (course classifier): mean and std of the unbiased MMD^2 over random subsets of the features."""
    g = torch.Generator().manual_seed(seed)
    size = min(size, len(f_a), len(f_b))
    values = torch.tensor([float(mmd2_unbiased(f_a[torch.randperm(len(f_a), generator=g)[:size]],
                                               f_b[torch.randperm(len(f_b), generator=g)[:size]]))
                           for _ in range(n_subsets)])
    return values.mean().item(), values.std().item()


kid_test_train, kid_test_train_std = kid_of(f_test, f_real)
print(f"KID(test, train) = {kid_test_train:.4f} ± {kid_test_train_std:.4f} (mean ± std over subsets)")

# %% [markdown]
# ### Bias: FID and KID against the number of samples
#
# Two disjoint sets of $N$ training images each, for growing $N$: the same distribution, so the ideal score is
# 0 at every $N$.

# %%
N_BIAS = budget(smoke=[50, 100, 250, 500], standard=[100, 250, 500, 1000, 2000, 4000],
                full=[100, 250, 500, 1000, 2000, 5000, 10000])                 # N_EVAL among them
pool = phi(x_train[perm[-2 * max(N_BIAS):]])                   # (2 N_max, 128) training images
half = max(N_BIAS)
bias = {"FID": [fid_of(pool[:n], pool[half:half + n]) for n in N_BIAS],
        "KID": [kid_of(pool[:n], pool[half:half + n], n_subsets=1, size=n)[0] for n in N_BIAS]}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
axes[0].plot(N_BIAS, bias["FID"], "o-")
axes[0].set(xscale="log", yscale="log", xlabel="N per set", ylabel="FID", title="FID of two real sets: biased")
axes[1].plot(N_BIAS, bias["KID"], "o-", color="C1")
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(xscale="log", xlabel="N per set", ylabel="KID", title="KID of two real sets: unbiased")
plt.tight_layout()
i = N_BIAS.index(N_EVAL)
print(f"N = {N_EVAL}: two training sets FID {bias['FID'][i]:.3f}, KID {bias['KID'][i]:.4f}; "
      f"test vs training images FID {fid_test_train:.3f}, KID {kid_test_train:.4f}")

# %% [markdown]
# FID falls roughly like $1/N$ (a straight line of slope $-1$ on log-log axes): a 2000-sample FID and a
# 10000-sample FID of the same model differ, and published FIDs fix $N$ (often 50000) for that reason; so does this
# course (the floor at the same $N$). KID fluctuates around zero, with a noise that shrinks with $N$. The printed
# line separates the two parts of FID(test, train): two *training* sets of the same size give the pure bias, and
# test against training digits adds whatever differs between the two splits. MNIST's test images were written by
# other people than its training images (and in standard mode the reference is the first 2000 test images, from
# the cleaner first half of the test set), so some real shift is expected; FID, with its bias measured beside it,
# sees it most clearly. Whether KID sees it too cannot be read off one estimate and its spread over subsets; it
# is a question for a **two-sample test** (lecture 08), with the unbiased MMD² as the statistic. Under the null
# hypothesis that both sets come from one distribution, their labels are exchangeable: pool the features, split
# them at random into two sets of the original sizes many times, and count how often a random split gives an
# MMD² at least as large as the observed one. That fraction is the **permutation p-value**. The pooled kernel
# matrix is computed once; each split only re-sums its blocks, written with a 0/1 membership vector $a$ of the
# first set: $\sum_{i \ne j \in A} k_{ij} = a^\top K_0 a$ with $K_0$ the kernel matrix with its diagonal zeroed.

# %%
def mmd2_permutation_test(f_a, f_b, n_perm=200, seed=0):
    """Unbiased MMD^2 of f_a (m, d) vs f_b (n, d) and its permutation p-value under p_a = p_b."""
    m, n = len(f_a), len(f_b)
    k0 = polynomial_kernel(*(torch.cat([f_a, f_b]),) * 2).fill_diagonal_(0)     # (m + n, m + n)
    g = torch.Generator().manual_seed(seed)
    a = torch.zeros(n_perm + 1, m + n, dtype=k0.dtype)                # row 0: the observed split
    a[0, :m] = 1
    for p in range(1, n_perm + 1):
        a[p, torch.randperm(m + n, generator=g)[:m]] = 1
    ka = a @ k0                                                          # (P + 1, m + n)
    sum_aa = (ka * a).sum(1)
    sum_ab = (ka * (1 - a)).sum(1)
    sum_bb = k0.sum() - 2 * sum_ab - sum_aa
    stat = sum_aa / (m * (m - 1)) + sum_bb / (n * (n - 1)) - 2 * sum_ab / (m * n)
    return stat[0].item(), ((stat[1:] >= stat[0]).sum().item() + 1) / (n_perm + 1)


size = min(1000, len(f_test), len(f_real))                          # KID's subset size
g = torch.Generator().manual_seed(1)
sub_test, sub_real = (f[torch.randperm(len(f), generator=g)[:size]] for f in (f_test, f_real))
mmd2_observed, kid_p_value = mmd2_permutation_test(sub_test, sub_real)
print(f"{size} test vs {size} held-out training digits: MMD^2 = {mmd2_observed:.4f} "
      f"(Exercise 3 gives {float(mmd2_unbiased(sub_test, sub_real)):.4f}); permutation p-value {kid_p_value:.3f}")

# %% [markdown]
# A p-value near its smallest possible value, $1/(P+1)$ with $P$ permutations, says that no random split looks as
# different as the real one: the train/test shift is real and the kernel distance detects it too. A large p-value
# says that at this sample size KID cannot tell the two sets apart, and FID's larger gap may then owe more to its
# bias than to the data. Within this lecture every evaluated set has $N$ = `N_EVAL` images, so its FIDs are
# comparable with each other and with the floor.
#
# ## 6. Precision and recall
#
# A single distance mixes two failures: samples that do not look like data (low **fidelity**) and data that the
# samples never resemble (low **diversity**, e.g. dropped modes). Sajjadi et al. (2018) and Kynkäänniemi et al.
# (2019) separate them. Kynkäänniemi's version approximates the **manifold** of a set of feature vectors
# $\Phi = \{\phi_1, \dots, \phi_N\}$ by the union of balls around each point, of radius the distance to its
# $k$-th nearest neighbour in the same set (the point itself does not count):
#
# $$\mathrm{manifold}(\Phi) = \bigcup_{\phi \in \Phi} B\big(\phi,\, \|\phi - \mathrm{NN}_k(\phi)\|\big),\qquad
#   \mathrm{precision} = \frac{1}{M}\sum_{j=1}^{M} \mathbb 1\big[\phi_g^j \in \mathrm{manifold}(\Phi_r)\big],\quad
#   \mathrm{recall} = \frac{1}{N}\sum_{i=1}^{N} \mathbb 1\big[\phi_r^i \in \mathrm{manifold}(\Phi_g)\big].$$
#
# Precision: the fraction of generated samples that land among real ones. Recall: the fraction of real samples
# that the generated ones cover.
#
# ### Exercise 4: precision and recall
# Write `precision_recall(real, fake, k=3)`: features `real` $(N, D)$ and `fake` $(M, D)$, float32 or float64,
# $N, M > k$; return the pair (precision, recall), two numbers, leaving the features unchanged. A point on the
# edge of a ball is inside. A set may contain repeated points (a collapsed model): a point's $k$ nearest
# neighbours are the $k$ nearest *other* points of its set, copies included. `torch.cdist` gives all pairwise
# distances; `Tensor.kthvalue` the $k$-th smallest (remember the zero distance of each point to itself).

# %% tags=["solution:ex4_precision_recall"]
def precision_recall(real, fake, k=3):
    """k-NN precision and recall (Kynkaanniemi et al., 2019) of fake (M, D) against real (N, D)."""
    ### BEGIN SOLUTION
    def radii(f):                                                         # distance to the k-th other point
        return torch.cdist(f, f).kthvalue(k + 1, dim=1).values            # (N,)

    precision = (torch.cdist(fake, real) <= radii(real)[None, :]).any(1).double().mean()
    recall = (torch.cdist(real, fake) <= radii(fake)[None, :]).any(1).double().mean()
    return precision, recall
    ### END SOLUTION


# %% tags=["check:ex4_precision_recall"]
lecture14.check_precision_recall(precision_recall)

# %% [markdown]
# Now one function gives every score of a set of images against the test set, and four "models" made of
# real images show what each score sees: training images (the ideal), training images of the digits 0 to 4
# only (half of the modes dropped), training images with Gaussian noise (every mode, poor fidelity), and ten
# training images, one per digit, each repeated (a memorizer with total mode collapse).

# %%
def scores(x=None, f=None, p=None):
    """IS, FID, KID, precision and recall of images x (N, 1, 28, 28) in [0, 1] against the test set."""
    f = phi(x) if f is None else f
    p = class_probs(x) if p is None else p
    precision, recall = precision_recall(f_test, f)
    return {"IS": float(inception_score(p)), "FID": fid_of(f_test, f), "KID": kid_of(f_test, f)[0],
            "precision": float(precision), "recall": float(recall)}


x_pool, y_pool = x_train[perm[N_EVAL:]], train_labels[perm[N_EVAL:]]
first_of_each = torch.stack([(y_pool == c).nonzero()[0, 0] for c in range(10)])
probe_sets = {
    "training images": x_real,
    "digits 0-4 only": x_pool[y_pool < 5][:N_EVAL],
    "Gaussian noise 0.3": (x_real + 0.3 * torch.randn(x_real.shape, generator=gen)).clamp(0, 1),
    "10 images, repeated": x_pool[first_of_each].repeat(N_EVAL // 10, 1, 1, 1),
}
probe_scores = {name: scores(x) for name, x in probe_sets.items()}
print(f"{'':22s}" + "".join(f"{k:>11s}" for k in probe_scores["training images"]))
for name, sc in probe_scores.items():
    print(f"{name:22s}" + "".join(f"{v:11.3f}" for v in sc.values()))

# %% [markdown]
# Read the table by rows (the comments describe a standard-mode run). Dropping half of the digits keeps precision
# but about halves recall, and IS falls to about 5 (five classes). The ten repeated images are the Inception
# Score's blind spot: ten clean, confidently classified, balanced digits score almost like the real data, while
# recall (near 0), FID and KID expose the collapse. Noise lowers precision but wipes out recall almost completely:
# in this feature space the noisy digits crowd together (the classifier sees them as alike), so their $k$-NN balls are
# tiny and cover few real images, while the real balls are wide enough to contain some noisy ones. The k-NN
# manifolds describe the *local density* of each set, and what counts as "near" is decided by the feature
# network.

# ## 7. Sanity checks: do the scores rise as images get worse?
#
# A score is only useful if it orders image sets the way a person would. Heusel et al. tested FID by corrupting
# real images more and more; we do the same for every score with three corruptions of the real samples:
# additive Gaussian noise of standard deviation $s$, Gaussian blur of width $s$ pixels, and salt-and-pepper
# noise (a fraction $s$ of the pixels set to 0 or 1). Everything is computed here; the widget below only looks
# it up.

# %%
def gaussian_blur(x, s):
    """Blur images (N, 1, 28, 28) with a Gaussian kernel of standard deviation s pixels."""
    if s == 0:
        return x
    t = torch.arange(-6, 7, dtype=x.dtype)
    w = torch.exp(-t**2 / (2 * s**2))
    w = w / w.sum()
    x = F.conv2d(x, w.view(1, 1, 1, -1), padding=(0, 6))                # rows, then columns: separable
    return F.conv2d(x, w.view(1, 1, -1, 1), padding=(6, 0))


def corrupt(x, kind, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if kind == "blur":
        return gaussian_blur(x, s)
    hit = torch.rand(x.shape, generator=g) < s                            # salt and pepper
    return torch.where(hit, torch.randint(0, 2, x.shape, generator=g).to(x.dtype), x)


LEVELS = {"noise": [0, 0.05, 0.1, 0.2, 0.3, 0.5], "blur": [0, 0.5, 1, 1.5, 2, 3],
          "salt and pepper": [0, 0.01, 0.02, 0.05, 0.1, 0.2]}
LEVELS = budget(smoke={k: v[::2] for k, v in LEVELS.items()}, standard=LEVELS, full=LEVELS)
corrupted = {kind: [corrupt(x_real, kind, s) for s in levels] for kind, levels in LEVELS.items()}
curves = {}
for kind, levels in progress(LEVELS.items(), "scoring corrupted images"):
    curves[kind] = [probe_scores["training images"] if s == 0 else scores(x)
                    for s, x in zip(levels, corrupted[kind], strict=True)]
fid_noise_0_1 = curves["noise"][LEVELS["noise"].index(0.1)]["FID"]     # recorded: FID at noise s = 0.1
for kind, levels in LEVELS.items():
    print(f"{kind:16s} s:   " + "".join(f"{s:8g}" for s in levels))
    for key in ("FID", "KID", "IS", "precision", "recall"):
        print(f"{'':16s} {key:9s}" + "".join(f"{c[key]:8.2f}" for c in curves[kind]))

# %%
def show_corruption(kind="noise", level=2):
    levels = LEVELS[kind]
    level = min(level, len(levels) - 1)
    fig = plt.figure(figsize=(13, 3.3))
    plot.image_grid(corrupted[kind][level][:16], nrow=4, ax=fig.add_subplot(1, 5, 1),
                    title=f"{kind}, s = {levels[level]}")
    for i, key in enumerate(("FID", "KID", "IS", "precision")):
        ax = fig.add_subplot(1, 5, i + 2)
        values = [c[key] for c in curves[kind]]
        ax.plot(levels, values, "o-", color=f"C{i}")
        ax.plot(levels[level], values[level], "o", ms=12, mfc="none", color="k")
        ax.set(xlabel="strength s", title=key)
    plt.tight_layout()
    plt.show()


widgets.interactive_plot(show_corruption, kind=list(LEVELS),
                         level=widgets.slider(2, 0, max(len(v) for v in LEVELS.values()) - 1, description="level"))

# %% [markdown]
# What the standard-mode run shows (the printed table above). **FID, KID and IS pass**: FID and KID rise and
# IS falls, monotonically, for all three corruptions. The weakest noise (standard deviation 0.05) moves FID
# only a little, while 1% salt and pepper, nearly invisible to the eye, already multiplies it several times.
# **Precision is not a fidelity detector for every corruption**: noise and salt and
# pepper lower it, but blur *raises* it towards 1 (blurred digits sit in the dense middle of the real
# manifold); it is **recall** that collapses under all three, for the reason seen in section 6 (corrupted
# images crowd into a small region of feature space). The scales differ wildly: a blur of one pixel, a mild
# change to the eye, costs about as much FID as strong, clearly visible noise; the classifier, not the human eye,
# decides what counts as different. Every feature-based score inherits the invariances and blind spots of its
# network.

# ## 8. Three models to evaluate
#
# The comparison needs models. The lectures that teach them (02, 05, 08) train them for longer; here each is a
# small version trained within this notebook's budget, on the same data, so that all rows of the table come
# from one run. The recaps are short: the lectures have the derivations.
#
# **An autoregressive model: MADE (lecture 02)** on binarized MNIST, one hidden layer in raster order. Hidden
# unit $k$ gets a degree $m(k) \in \{1, \dots, D-1\}$, sees the inputs $j \le m(k)$, and feeds the outputs
# $i > m(k)$. Sampling is sequential, but with one hidden layer it need not cost $D$ full passes: after pixel $i$
# is drawn, its contribution to the pre-activations is added once, $a \leftarrow a + W_{:, i}\, x_i$ (the NADE
# trick), so a sample costs about as much as one density evaluation.

# %%
class MADE(nn.Module):
    """One-hidden-layer MADE for binary images (B, 1, 28, 28), raster order (Germain et al., 2015)."""

    def __init__(self, d=784, hidden=500):
        super().__init__()
        m_in = torch.arange(1, d + 1)                                     # input degrees 1..D
        m_h = torch.arange(hidden) * (d - 1) // hidden + 1                # hidden degrees spread over 1..D-1
        self.register_buffer("mask_in", (m_h[:, None] >= m_in[None, :]).float())    # (H, D)
        self.register_buffer("mask_out", (m_in[:, None] > m_h[None, :]).float())    # (D, H)
        self.w_in, self.w_out = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def logits(self, x):                                                  # (B, D) -> (B, D), entry i from x_<i
        h = F.relu(F.linear(x, self.w_in.weight * self.mask_in, self.w_in.bias))
        return F.linear(h, self.w_out.weight * self.mask_out, self.w_out.bias)

    def loss(self, x):                                                    # NLL in nats per image
        x = x.flatten(1)
        return F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none").sum(1).mean()


@torch.no_grad()
def made_sample(self, n, generator=None):
    w, v = self.w_in.weight * self.mask_in, self.w_out.weight * self.mask_out     # (H, D), (D, H)
    u = torch.rand(n, w.shape[1], generator=generator).to(w.device)       # uniforms for the Bernoulli draws
    a = self.w_in.bias.expand(n, -1).clone()                              # pre-activations given x_<1: (n, H)
    x = torch.zeros_like(u)
    for i in progress(range(w.shape[1]), "MADE sampling"):
        p_i = torch.sigmoid(F.relu(a) @ v[i] + self.w_out.bias[i])        # p(x_i = 1 | x_<i): (n,)
        x[:, i] = (u[:, i] < p_i).float()
        a += x[:, i:i + 1] * w[:, i]                                      # add pixel i's contribution
    return x.view(n, 1, 28, 28)


MADE.sample = made_sample

# %% [markdown]
# **A latent-variable model: the VAE (lecture 05)** with a Bernoulli decoder and a 16-dimensional Gaussian
# latent; `loss` is the negative ELBO, and `log_prob_iw` the importance-weighted estimate
# $\log \frac1K \sum_k p(x, z_k)/q(z_k \mid x)$, a tighter lower bound on $\log p(x)$ for the table. Its
# samples can be shown two ways: Bernoulli draws from $p(x \mid z)$ (what the likelihood is about) or the
# decoder means (what papers usually show).

# %%
class VAE(nn.Module):
    """Bernoulli VAE: x (B, 1, 28, 28) in {0, 1} <-> z (B, d_z) ~ N(0, I) (Kingma & Welling, 2014)."""

    def __init__(self, d=784, hidden=512, d_z=16):
        super().__init__()
        self.d_z = d_z
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, 2 * d_z))
        self.dec = nn.Sequential(nn.Linear(d_z, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def log_weights(self, x, k=1):                                        # log p(x, z) - log q(z|x): (k, B)
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)               # (B, d_z) each
        z = mu + (0.5 * logvar).exp() * torch.randn(k, *mu.shape, device=mu.device)   # (k, B, d_z)
        log_px_z = -F.binary_cross_entropy_with_logits(self.dec(z), x.flatten(1).expand(k, -1, -1),
                                                       reduction="none").sum(-1)
        log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
        log_qz = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
        return log_px_z + log_pz - log_qz

    def loss(self, x):                                                    # negative ELBO, nats per image
        return -self.log_weights(x).mean()

    def log_prob_iw(self, x, k=50):                                       # IWAE bound (B,)
        return torch.logsumexp(self.log_weights(x, k), 0) - math.log(k)

    @torch.no_grad()
    def sample(self, n, generator=None, mean=False):
        z = torch.randn(n, self.d_z, generator=generator).to(next(self.parameters()).device)
        p = torch.sigmoid(self.dec(z))
        if not mean:
            p = (torch.rand(p.shape, generator=generator).to(p.device) < p).float()
        return p.view(n, 1, 28, 28)


# %% [markdown]
# Both are trained with the course's `fit` on dynamically binarized training images and scored on the fixed
# binarization of the test set (the protocol of lectures 02 and 05), with `train_or_load` caching.

# %%
LIK_EPOCHS = budget(smoke=1, standard=3, full=20)
x_test_bin = mnist.binarize_fixed(test_images, seed=0)                   # (N_test, 1, 28, 28) in {0, 1}
torch.manual_seed(0)
made, vae = MADE().to(device), VAE().to(device)
for name, model, epochs in (("made_gen", made, LIK_EPOCHS), ("vae_gen", vae, LIK_EPOCHS)):   # cached by name
    train_or_load(model, LECTURE, name, lambda m=model, e=epochs: fit(
        m, x_train, epochs=e, batch_size=128, lr=2e-3, transform=mnist.binarize_dynamic))
with torch.no_grad():
    made_nll = batched(lambda x: F.binary_cross_entropy_with_logits(
        made.logits(x.flatten(1)), x.flatten(1), reduction="none").sum(1), x_test_bin).mean().item()
    torch.manual_seed(0)
    vae_nll_iw = -batched(vae.log_prob_iw, x_test_bin, batch=100).mean().item()
    vae_elbo = batched(lambda x: -vae.log_weights(x)[0], x_test_bin).mean().item()
print(f"test NLL: MADE {made_nll:.1f} nats (exact); VAE <= {vae_nll_iw:.1f} (IWAE, K = 50), "
      f"negative ELBO {vae_elbo:.1f}")

# %% [markdown]
# **An implicit model: a GAN (lecture 08)** with MLP generator and discriminator and the non-saturating loss:
# the discriminator minimizes $-\log D(x) - \log(1 - D(G(z)))$, the generator $-\log D(G(z))$; with
# $D = \sigma(\ell)$ these are softplus functions of the logit $\ell$. It works on grey-level images scaled to
# $[-1, 1]$ (a $\tanh$ output, batch normalization in the generator, the DCGAN recipe) and has no likelihood at
# all. The loop is the lesson of lecture 08, so it is written out.

# %%
D_Z = 64
gan = nn.ModuleDict({
    "G": nn.Sequential(nn.Linear(D_Z, 256), nn.BatchNorm1d(256), nn.ReLU(),
                       nn.Linear(256, 512), nn.BatchNorm1d(512), nn.ReLU(),
                       nn.Linear(512, 784), nn.Tanh(), nn.Unflatten(1, (1, 28, 28))),   # images in [-1, 1]
    "D": nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256),
                       nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Flatten(0)),            # logits (B,)
}).to(device)
GAN_STEPS = budget(smoke=50, standard=4000, full=20000)

# %% [markdown]
# One step updates the discriminator on a real and a generated batch (the generated one detached), then the
# generator through the updated discriminator.

# %%
def train_gan(batch=64, lr=2e-4):
    G, D = gan["G"], gan["D"]
    opt_g = torch.optim.Adam(G.parameters(), lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr, betas=(0.5, 0.999))
    x_data = x_train.to(device)                                           # the training images, moved once
    g = torch.Generator(device).manual_seed(0)                            # batches and noise drawn on the device
    history = {"loss_d": [], "loss_g": []}
    for _ in progress(range(GAN_STEPS), "GAN"):
        x = 2 * x_data[torch.randint(len(x_data), (batch,), generator=g, device=device)] - 1
        fake = G(torch.randn(batch, D_Z, generator=g, device=device))
        loss_d = F.softplus(-D(x)).mean() + F.softplus(D(fake.detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-D(fake)).mean()                              # non-saturating generator loss
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        history["loss_d"].append(loss_d.item())
        history["loss_g"].append(loss_g.item())
    return history


torch.manual_seed(0)
gan_history = train_or_load(gan, LECTURE, "gan_gen", train_gan)
gan.eval()                                       # batch norm with its running statistics from here on


@torch.no_grad()
def gan_sample(n, generator=None):
    return (gan["G"](torch.randn(n, D_Z, generator=generator).to(device)) + 1) / 2     # back to [0, 1]


# %% [markdown]
# Samples of all three, timed: each model draws $N$ samples (`N_EVAL`, the $N$ of the floor) in one call. The
# grids show the first 64 of each beside 64 held-out real digits, at the same size.

# %%
def timed(fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out.cpu(), time.perf_counter() - start


g = torch.Generator().manual_seed(1)
samples, seconds = {}, {}
samples["MADE"], seconds["MADE"] = timed(lambda: made.sample(N_EVAL, g))
samples["VAE (Bernoulli draws)"], seconds["VAE (Bernoulli draws)"] = timed(lambda: vae.sample(N_EVAL, g))
samples["VAE (decoder means)"], seconds["VAE (decoder means)"] = timed(lambda: vae.sample(N_EVAL, g, mean=True))
samples["GAN"], seconds["GAN"] = timed(lambda: gan_sample(N_EVAL, g))
print(f"{N_EVAL} samples in: " + ", ".join(f"{name} {sec:.2f} s" for name, sec in seconds.items()))
plot.samples_beside_real(samples, x_real, title=f"the first {plot.SHOWN} of each model's samples, "
                         f"beside {plot.SHOWN} held-out real digits")
plt.show()

# %% [markdown]
# ## 9. The comparison table, and likelihood vs sample quality
#
# Every row is scored by the course's protocol: against the same reference test images, with the same classifier,
# from the same number $N$ of samples. Besides the three models, two reference rows: **real digits** (the held-out
# training digits: the floor of the protocol, and what a model that memorizes its training set would produce, the
# best any model can do on sample scores, with no generalization at all), and **binarized real digits**, the best
# a model of *binarized* MNIST can do, since its samples are binary while the reference images are grey. And one row for
# the argument of Theis et al. (2016), seen in lecture 08: the mixture $0.01\, p_\text{MADE} + 0.99\, \text{noise}$
# (uniformly random binary images). Its log-likelihood is at least $\log 0.01 + \log p_\text{MADE}(x)$, so its test
# NLL is at most **4.6 nats** worse than MADE's, while 99% of its samples are noise.

# %%
g = torch.Generator().manual_seed(2)
keep = torch.rand(N_EVAL, generator=g) < 0.01
noise = (torch.rand(N_EVAL, 1, 28, 28, generator=g) < 0.5).float()
rows = {"real digits (memorizer; the floor)": (x_real, None, 0.0),
        "binarized real digits": (mnist.binarize_fixed(held_out[:N_EVAL], seed=1), None, 0.0)}
rows |= {name: (x, None, seconds[name]) for name, x in samples.items()}
rows["MADE"] = (samples["MADE"], made_nll, seconds["MADE"])
rows["VAE (Bernoulli draws)"] = (samples["VAE (Bernoulli draws)"], vae_nll_iw, seconds["VAE (Bernoulli draws)"])
rows["VAE (decoder means)"] = (samples["VAE (decoder means)"], vae_nll_iw, seconds["VAE (decoder means)"])
rows["1% MADE + 99% noise"] = (torch.where(keep[:, None, None, None], samples["MADE"], noise),
                               made_nll + math.log(100), seconds["MADE"])

table = {}
for name, (x, nll, sec) in progress(rows.items(), "scoring the models"):
    sigma, _ = kde_select(x_val[:N_VAL_KDE].flatten(1), x.flatten(1), SIGMAS)
    parzen = kde_log_prob(x_test.flatten(1), x.flatten(1), [sigma]).mean().item()
    table[name] = {"NLL": nll, **scores(x), "confident": evaluation.confident_fraction(x, shared),
                   "Parzen": parzen, "seconds": sec}
print(f"FID floor ({N_EVAL} held-out real digits vs the {len(x_test)} reference images): {fid_floor:.2f}")

# %%
from IPython.display import Markdown, display


def fmt(v, digits=2):
    return "—" if v is None else f"{v:.{digits}f}"


lines = ["| model | test NLL (nats, binarized) | FID | KID | precision | recall | IS | confident | Parzen log-lik | "
         f"sampling ({N_EVAL} samples) |", "|" + " --- |" * 10]
for name, r in table.items():
    nll = fmt(r["NLL"], 1) if name != "1% MADE + 99% noise" else f"≤ {r['NLL']:.1f}"
    lines.append(f"| {name} | {nll} | {fmt(r['FID'])} | {fmt(r['KID'], 3)} | {fmt(r['precision'])} | "
                 f"{fmt(r['recall'])} | {fmt(r['IS'])} | {fmt(r['confident'])} | {fmt(r['Parzen'], 0)} | "
                 f"{r['seconds']:.2f} s |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# How to read it (the comments are about the standard-mode run; in smoke mode the models are barely trained):
#
# - **Real digits win every sample score** and the Parzen column. They are the floor of the protocol, and also
#   what a model that **memorizes** its training set and replays it would produce; as a model, the memorizer would
#   have an *infinite* test NLL (the empirical distribution of the training set gives probability 0 to every test
#   image). Sample scores measure how samples look, not whether a model generalizes; only a held-out likelihood,
#   or an explicit check for copies of training images, catches memorization.
# - **Binarization alone** costs well over a hundred FID points: the binary samples of MADE and the VAE should be
#   compared with the binarized real digits, not with the floor.
# - **The same VAE, two sets of scores.** Its Bernoulli draws and its decoder means have one likelihood and very
#   different scores: the smooth means look cleaner to a person and get a higher IS, precision and a far higher
#   Parzen score, a somewhat better FID, yet a *worse* KID, because this classifier's features are very
#   sensitive to blur (section 7) and the two distances weigh that differently. A sample-quality number also
#   measures how the samples were post-processed, and which network looks at them.
# - **The 1% mixture.** Its NLL bound is within 4.6 nats ($\log 100$) of MADE's, a gap of the size that separates
#   ordinary models, yet its FID is many times any model's, its precision and confident fraction near 0.
#   Likelihood and sample quality are different questions (Theis et al., 2016). Its recall is a warning about
#   k-NN recall: the scattered noise images have huge $k$-NN balls that swallow real images, so outliers
#   inflate recall (Naeem et al., 2020, propose "density and coverage" for this reason).
# - **The GAN** has no likelihood. Its samples are sharp digits of a few styles, with a speckled background from
#   its short training (lecture 08 trains a better one): compare its precision with its recall. Rank the three
#   models by FID and by NLL: the two orders need not agree.
# - **IS and the confident fraction** are far below the real data's for every model: the classifier is unsure
#   about generated digits.
# - **Sampling time** follows the structure: one pass for the VAE and the GAN, $D = 784$ sequential steps for
#   MADE, far slower even with the incremental trick (a PixelCNN pays a full network pass per pixel).
#
# ## 10. Evaluating representations
#
# A third use of a generative model is its latent space. Two standard tests on the 10 digit classes, which no
# model saw during training: **clustering** (k-means with 10 clusters on the representations of the test images,
# scored by the normalized mutual information with the labels, 0 for unrelated, 1 for identical partitions)
# and a **linear probe** (logistic regression trained on the representations of labelled training images,
# accuracy on the test images). Compared: raw pixels, their 16 principal components, the VAE's posterior means
# $\mu(x)$ (16-D), MADE's hidden layer (500-D), the features of an untrained copy of the classifier, and, as a
# supervised ceiling that is not a fair competitor, the trained classifier's features.

# %%
import warnings

from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

N_PROBE = budget(smoke=1000, standard=5000, full=20000)
x_probe, y_probe = x_train[perm[-N_PROBE:]], train_labels[perm[-N_PROBE:]]
bin_probe, bin_test = mnist.binarize_fixed(train_images[perm[-N_PROBE:]], seed=2), x_test_bin
torch.manual_seed(0)
untrained = MNISTClassifier().to(device).eval()
pca = PCA(16, random_state=0).fit(x_probe.flatten(1).numpy())
representations = {
    "pixels (784)": lambda x, b: x.flatten(1),
    "PCA (16)": lambda x, b: torch.from_numpy(pca.transform(x.flatten(1).numpy())),
    "VAE mu(x) (16)": lambda x, b: batched(lambda v: vae.enc(v.flatten(1)).chunk(2, 1)[0], b),
    "MADE hidden (500)": lambda x, b: batched(lambda v: F.relu(F.linear(
        v.flatten(1), made.w_in.weight * made.mask_in, made.w_in.bias)), b),
    "untrained CNN features (128)": lambda x, b: batched(untrained.features, x),
    "classifier features (128, supervised)": lambda x, b: phi(x),
}

# %%
warnings.filterwarnings("ignore", category=ConvergenceWarning)   # a probe stopped at 300 iterations is fine here
rep_scores = {}
for name, rep in progress(representations.items(), "representations"):
    r_train, r_test = (rep(x, b).double().numpy() for x, b in ((x_probe, bin_probe), (x_test, bin_test)))
    scaler = StandardScaler().fit(r_train)
    r_train, r_test = scaler.transform(r_train), scaler.transform(r_test)
    clusters = KMeans(10, n_init=4, random_state=0).fit_predict(r_test)
    probe = LogisticRegression(max_iter=300).fit(r_train, y_probe.numpy())
    rep_scores[name] = (normalized_mutual_info_score(test_labels.numpy(), clusters),
                        probe.score(r_test, test_labels.numpy()))
    print(f"{name:40s} k-means NMI {rep_scores[name][0]:.3f}   linear probe {rep_scores[name][1]:.1%}")

# %% [markdown]
# What to look for in the printed numbers. Pixels are already quite linearly separable with a few thousand
# labelled images, a high bar for an unsupervised representation on MNIST, but k-means on raw pixels finds the
# digits poorly. Compressing into 16 dimensions (PCA, the VAE) typically costs a little probe accuracy and helps
# clustering a lot, because distances become meaningful; MADE's hidden layer, trained only to predict pixels, is a
# strong linear probe. A random convolutional network is a surprisingly strong baseline (its architecture is a
# prior). The classifier's features, trained *with* the labels, are in a class of their own, which is also why
# its feature space is a reasonable place to compare digit images. A representation is judged
# by what it makes easy for a simple downstream learner, which depends on the task, not on the likelihood.

# ## 11. People as the judge: a HYPE-style game
#
# In the end, sample quality is what people perceive. HYPE (Zhou et al., 2019) makes human evaluation
# repeatable: people see real and generated images one at a time and say "real" or "fake". **HYPE$_\infty$** is
# their error rate with unlimited time (50% means the fakes cannot be told apart); **HYPE$_\text{time}$** shrinks
# the exposure time until people can no longer answer reliably, and reports that threshold.
#
# ### The HYPE$_\infty$ score, with a confidence interval
#
# HYPE$_\infty$ is the evaluators' error rate over all their answers: fakes judged real plus reals judged fake,
# divided by the number of images judged (here real and fake are equally likely). 0% means every image was told
# apart; 50%, the rate of a coin flip, means the fakes are indistinguishable from real images; above 50% the
# fakes look *more* real than the real images. Zhou et al. report it with a 95% **bootstrap** confidence interval:
# resample the answers with replacement many times, recompute the error rate each time, and take the 2.5% and
# 97.5% quantiles. The two kinds of error are worth reporting too: fakes taken for real measure the model;
# reals taken for fake measure how suspicious the evaluator is.

# %%
def hype_inf(is_fake, said_fake, n_boot=2000, seed=0):
    """HYPE_inf: (error rate, 95% bootstrap interval (low, high), error on fakes, error on reals).
    is_fake, said_fake: (A,) bool over all answers."""
    errors = (is_fake != said_fake).double()                              # (A,)
    g = torch.Generator().manual_seed(seed)
    boot = errors[torch.randint(len(errors), (n_boot, len(errors)), generator=g)].mean(1)   # (n_boot,)
    return (errors.mean().item(), (boot.quantile(0.025).item(), boot.quantile(0.975).item()),
            errors[is_fake].mean().item(), errors[~is_fake].mean().item())


def print_hype(who, is_fake, said_fake):
    rate, (low, high), on_fakes, on_reals = hype_inf(is_fake, said_fake)
    print(f"{who}: HYPE_inf = {rate:.1%} (95% bootstrap interval {low:.1%} to {high:.1%}) over {len(is_fake)} "
          f"answers; fakes judged real {on_fakes:.0%}, reals judged fake {on_reals:.0%}")
    return rate, low, high


# %% [markdown]
# ### The game
#
# Play it against this notebook's GAN. Each round shows 8 images, numbered 1 to 8, each a GAN sample or a held-out
# real digit with probability ½. The rules come first, as a small class with no screen (so that they can be run
# and tested without a person): a round opens and shows its images once; its guesses are taken once, as 8 letters
# `r`/`f`; every scored round is kept in `hype_answers` (round → (truth, guesses)) and scored with the function
# above.

# %%
import io

import ipywidgets
from IPython.display import Image, display
from matplotlib.figure import Figure

HYPE_N = 8
hype_answers = {}                       # round -> (truth, your guesses), strings of r/f: every submitted round


def hype_images(round):
    """The images of one round (HYPE_N, 1, 28, 28) and which of them are fake (HYPE_N,) bool; seeded by round."""
    g = torch.Generator().manual_seed(100 + round)
    is_fake = torch.rand(HYPE_N, generator=g) < 0.5
    idx = torch.randint(N_EVAL, (HYPE_N,), generator=g)
    return torch.where(is_fake[:, None, None, None], samples["GAN"][idx], x_real[idx]), is_fake


def print_hype_answers(who, answers):
    """print_hype over every kept round of `answers` (round -> (truth, guesses), strings of r/f)."""
    truth, said = ("".join(v[i] for v in answers.values()) for i in (0, 1))
    return print_hype(who, torch.tensor([c == "f" for c in truth]), torch.tensor([c == "f" for c in said]))


def hype_png(images, truth=None, said=None):
    """A row of images (HYPE_N, 1, 28, 28) as PNG bytes, numbered; with `truth` and `said` (r/f strings) titled
    with the truth, green where the guess was right and red where it was wrong."""
    fig = Figure(figsize=(1.3 * HYPE_N, 1.8))              # not pyplot: nothing is shown until a widget shows it
    for i, ax in enumerate(fig.subplots(1, HYPE_N)):
        ax.imshow(images[i, 0], cmap="gray_r", vmin=0, vmax=1)
        ax.set(xticks=[], yticks=[])
        if truth is None:
            ax.set_title(str(i + 1))
        else:
            right = said[i] == truth[i]
            ax.set_title(f"{i + 1} {'fake' if truth[i] == 'f' else 'real'}", color="C2" if right else "C3")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.05)
    return buffer.getvalue()


# %%
class HypeGame:
    """The game's rules without a screen: a round opens once, and its guesses are taken once and kept."""

    def __init__(self, answers, first_round=None):
        self.answers = answers                              # round -> (truth, guesses): the scored rounds
        self.round = max(answers, default=-1) if first_round is None else first_round - 1   # the last round opened
        self.waiting = False                                # whether the open round still waits for its guesses

    def start(self):
        """Open the next round (an open round not yet scored is dropped); its images (HYPE_N, 1, 28, 28)."""
        self.round += 1
        self.waiting = True
        return hype_images(self.round)[0]

    def submit(self, guesses):
        """Score the open round's guesses (HYPE_N letters r/f): print its error rate and HYPE_inf over all
        scored rounds, close the round, and return the round's error rate. ValueError on a bad input."""
        if not self.waiting:
            raise ValueError("no round is waiting for guesses: click 'show round' first")
        said = "".join(guesses.split()).lower()
        if len(said) != HYPE_N or not set(said) <= {"r", "f"}:
            raise ValueError(f"type exactly {HYPE_N} letters, each r (real) or f (fake), e.g. rffrrfrf; "
                             f"got {guesses!r}")
        truth = "".join("f" if f else "r" for f in hype_images(self.round)[1].tolist())
        self.answers[self.round], self.waiting = (truth, said), False
        errors = sum(a != b for a, b in zip(said, truth, strict=True))
        print(f"round {self.round}: truth {truth}, guesses {said}: error rate {errors / HYPE_N:.0%} "
              f"({errors} of {HYPE_N})")
        print_hype_answers(f"rounds scored so far ({len(self.answers)})", self.answers)
        return errors / HYPE_N


# %% [markdown]
# One round played by a script, to show the rules at work: a fixed rule that calls **every** image real (not a
# person; it plays its own rounds, far from yours, and keeps its answers apart from `hype_answers`). Its first
# answer has the wrong length and is rejected; the round stays open for the second. The rule is a useful baseline:
# it is wrong exactly on the fakes, so its error rate is the share of fakes in its rounds, about 50% in the long
# run, without looking at a single image. An error rate near 50% is therefore not enough by itself: the two kinds
# of error (fakes judged real, reals judged fake) tell a fooled evaluator from a lazy one.

# %%
scripted = HypeGame({}, first_round=1000)              # a fixed rule, not a person; its own answers
scripted.start()
for attempt in ("rrf", "r" * HYPE_N):
    try:
        scripted.submit(attempt)
    except ValueError as err:
        print(f"rejected: {err}")
display(Image(hype_png(hype_images(scripted.round)[0], *scripted.answers[scripted.round])))

# %% [markdown]
# Now play (the widget needs a running notebook; nothing happens until you click):
#
# 1. Choose an exposure in milliseconds (0: the images stay until you submit) and click **show round**. After a
#    short "get ready", the 8 images appear for that long, then vanish. The exposure is fixed when the round
#    starts, and nothing you type or move brings the images back.
# 2. Type your 8 guesses in the box, image 1 first (e.g. `rffrrfrf`), and click **submit**. Pressing Enter does
#    nothing. A guess that is not 8 letters `r`/`f` is refused with a message, and the round stays open.
# 3. The images come back titled with the truth (green where you were right), with this round's error rate and
#    HYPE$_\infty$ over all your scored rounds with its 95% bootstrap interval. Click **show round** for the next
#    round.
#
# Strictly, HYPE$_\infty$ is measured with unlimited time: play at exposure 0 for it. Lower the exposure from
# round to round to feel HYPE$_\text{time}$, where your error rate climbs towards 50% (the score pools every
# round you played).

# %%
def hype_widget(game):
    """The game on screen: 'show round' shows a new round once, for the exposure; 'submit' scores the guesses."""
    style, ms = {"description_width": "initial"}, "exposure (ms, 0 = until you submit)"
    show, submit = ipywidgets.Button(description="show round"), ipywidgets.Button(description="submit")
    exposure = ipywidgets.IntSlider(value=0, min=0, max=2000, step=50, description=ms, style=style,
                                    layout=ipywidgets.Layout(width="520px"))
    guesses = ipywidgets.Text(description=f"your {HYPE_N} guesses", placeholder="r or f each, e.g. rffrrfrf",
                              style=style)
    status = ipywidgets.Label("choose an exposure, then click 'show round'")
    blank = hype_png(torch.zeros(HYPE_N, 1, 28, 28))         # empty numbered frames, between rounds
    picture, result = ipywidgets.Image(value=blank, format="png"), ipywidgets.Output()

    def on_show(_):
        seconds = exposure.value / 1000                     # fixed for this round
        show.disabled = True                                # a double click must not skip to the next round
        picture.layout.visibility = "hidden"
        picture.value, guesses.value = hype_png(game.start()), ""
        result.clear_output()
        if seconds:
            status.value = f"round {game.round}: get ready"
            time.sleep(0.3)                                 # the browser decodes the hidden picture first
        picture.layout.visibility = "visible"
        status.value = f"round {game.round}: type your {HYPE_N} guesses, then click submit"
        if seconds:
            time.sleep(seconds)
            picture.layout.visibility, picture.value = "hidden", blank
            time.sleep(0.1)                                 # the digits are gone before the empty frames show
            picture.layout.visibility = "visible"
            status.value = f"round {game.round}: time is up; type your {HYPE_N} guesses, then click submit"
        show.disabled = False

    def on_submit(_):
        with result:
            result.clear_output()
            try:
                game.submit(guesses.value)
            except ValueError as err:
                print(err)
                return
        picture.value = hype_png(hype_images(game.round)[0], *game.answers[game.round])
        picture.layout.visibility = "visible"
        status.value = f"round {game.round} scored (titles: the truth): 'show round' starts round {game.round + 1}"

    show.on_click(on_show)
    submit.on_click(on_submit)
    display(ipywidgets.VBox([ipywidgets.HBox([show, exposure]), status, picture,
                             ipywidgets.HBox([guesses, submit]), result]))


hype_widget(HypeGame(hype_answers))

# %% [markdown]
# Your HYPE$_\infty$ over every round you submitted, for the record (run this cell again after playing):

# %%
if hype_answers:
    print_hype_answers("your answers", hype_answers)
else:
    print("no scored rounds yet: play a few rounds above (submit after each), then run this cell again")

# %% [markdown]
# A notebook that runs without a person (the course's tests, a batch run) still needs a number here, so the next
# cell plays the game with a **simulated observer: not a person**, a fixed rule. It calls an image fake when the
# course classifier is unsure of its digit (top class probability below 0.9, the confident fraction's threshold),
# and real otherwise. Its HYPE$_\infty$ says how often that one rule is fooled by the GAN, over many rounds; it
# measures nothing about human perception, and it will be too hard on real digits that happen to be ambiguous.
# Compare it with your own score above: a person looks at strokes and backgrounds, not at a classifier's doubt.

# %%
HYPE_ROUNDS = budget(smoke=20, standard=50, full=200)
rounds = [hype_images(r) for r in range(HYPE_ROUNDS)]
hype_fake = torch.cat([f for _, f in rounds])                             # (A,) the truth
hype_said_fake = torch.cat([class_probs(x).max(1).values < 0.9 for x, _ in rounds])   # the rule's answers
hype_sim, hype_sim_low, hype_sim_high = print_hype("simulated observer (a fixed rule, not a person)", hype_fake,
                                                   hype_said_fake)

# %% [markdown]
# The MLP GAN trained for a minute is easy to catch with unlimited time; with an exposure of a few hundred
# milliseconds it gets harder. Human evaluation is the gold standard and also the most expensive, noisy and
# slow one, which is why the automatic scores above exist.

# %% [markdown]
# ## Results

# %%
elapsed = time.perf_counter() - T0
record(LECTURE, "classifier_test_accuracy", accuracy, "fraction", n_data=len(x_test), wall_time_s=elapsed,
       note="course MNIST classifier (2 conv blocks, 128 features), test images")
record(LECTURE, "fid_test_train", fid_test_train, "FID (course classifier)", n_data=N_EVAL, wall_time_s=elapsed,
       note=f"{N_EVAL} held-out training digits vs the {len(x_test)} reference test images (this notebook's FID)")
record(LECTURE, "fid_floor", fid_floor, "FID (course classifier)", n_data=N_EVAL, wall_time_s=elapsed,
       note=f"evaluation.fid_floor: {N_EVAL} held-out training digits vs the {len(x_test)} reference test images")
record(LECTURE, "kid_test_train", kid_test_train, "KID (course classifier)", n_data=N_EVAL, wall_time_s=elapsed,
       note="unbiased MMD^2, cubic polynomial kernel, mean of 10 subsets of 1000")
record(LECTURE, "kid_test_train_p_value", kid_p_value, "p-value", n_data=size, wall_time_s=elapsed,
       note="permutation test (200 permutations) of MMD^2 between test and held-out training digits")
record(LECTURE, "fid_noise_0_1", fid_noise_0_1, "FID (course classifier)", n_data=N_EVAL, wall_time_s=elapsed,
       note="held-out training digits + N(0, 0.1^2) noise, clamped, vs the reference test images")
record(LECTURE, "is_test", is_test, "IS (course classifier)", n_data=len(x_test), wall_time_s=elapsed)
record(LECTURE, "made_test_nll", made_nll, "nats", n_data=len(x_test), wall_time_s=elapsed,
       note=f"one-hidden-layer MADE, {LIK_EPOCHS} epoch(s), binarized test set")
record(LECTURE, "vae_test_nll_iw", vae_nll_iw, "nats", n_data=len(x_test), wall_time_s=elapsed,
       note=f"IWAE K=50 bound, MLP VAE d_z=16, {LIK_EPOCHS} epoch(s)")
for key, name in (("MADE", "made"), ("VAE (Bernoulli draws)", "vae"), ("VAE (decoder means)", "vae_means"),
                  ("GAN", "gan")):
    record(LECTURE, f"{name}_fid", table[key]["FID"], "FID (course classifier)", n_data=N_EVAL, wall_time_s=elapsed,
           note=f"{N_EVAL} samples vs the {len(x_test)} reference test images; compare with fid_floor")
    record(LECTURE, f"{name}_confident_fraction", table[key]["confident"], "fraction", n_data=N_EVAL,
           wall_time_s=elapsed, note="samples the course classifier assigns to a digit with probability >= 0.9")
record(LECTURE, "gan_precision", table["GAN"]["precision"], "fraction", n_data=N_EVAL, wall_time_s=elapsed)
record(LECTURE, "gan_recall", table["GAN"]["recall"], "fraction", n_data=N_EVAL, wall_time_s=elapsed)
record(LECTURE, "parzen_memorizer_loglik", parzen_memorizer[max(N_CENTRES)][1], "nats", n_data=max(N_CENTRES),
       wall_time_s=elapsed, note="Gaussian KDE of training images, test log-density on [0, 1]^784")
record(LECTURE, "hype_inf_simulated_observer", hype_sim, "fraction", n_data=len(hype_fake), wall_time_s=elapsed,
       note=f"HYPE_inf of the GAN judged by a fixed rule (fake if the classifier's top probability < 0.9), not a "
            f"person; 95% bootstrap interval {hype_sim_low:.3f}-{hype_sim_high:.3f}")

# %% [markdown]
# **Against the targets (standard mode).** The classifier's test accuracy on the reference test images is printed
# in section 2 (target: at least 99%). FID(test, train), the course's floor, is above the FID of two training sets
# of the same size (pure estimation bias) and far below every model's FID: near zero on the scale that matters,
# the remainder being MNIST's train/test shift. FID and KID rise with noise, blur and salt and pepper from a
# visible strength on; IS falls. These FIDs use the course classifier and cannot be compared with published
# (Inception) FIDs.
#
# ## Summary
#
# - **Likelihood** answers "does the model explain held-out data?"; it needs a tractable density or a bound.
#   A **kernel density estimate** turns samples into a density, but in 784 dimensions it is far from converged,
#   depends on the number of samples, and rewards memorization; use it, if at all, only with these caveats.
# - Sample-quality scores look at images through a network. Here it is the **course classifier** (about 99%
#   test accuracy in standard mode), not Inception: the formulas are the published ones, the numbers are comparable
#   only within the course, and only under one protocol: one reference set (the mode's test set), the same number
#   $N$ of samples for every model, and the floor of $N$ held-out real digits recorded beside them.
# - **IS** $= \exp \mathbb E\, \mathrm{KL}(p(y|x)\,\|\,p(y))$ rewards confident, balanced predictions and never
#   looks at real data (ten repeated images score like the test set). **FID** compares Gaussian fits of real and
#   generated features; it is biased in $N$. **KID**, an unbiased MMD² with a cubic kernel, fixes the bias.
#   **Precision and recall** separate fidelity from coverage.
# - The sanity checks: FID and KID are small for real vs real (whether the remainder is MNIST's train/test
#   shift is settled by a permutation test on MMD², the two-sample test of lecture 08); FID, KID and IS move the right way as
#   noise, blur or salt and pepper grow; precision does not (recall does). Each score inherits the invariances of
#   its feature network.
# - **Likelihood and sample quality disagree**: the 1%-model mixture is 4.6 nats from MADE and looks like noise;
#   the memorizer has perfect samples and no generalization. Report both kinds of numbers, with $N$, the feature
#   network and the post-processing of samples stated.
# - **Representations** are judged by downstream tasks (clustering NMI, linear probes), a third, separate axis.
# - **People** remain the reference for perceived quality: HYPE$_\infty$ is their error rate at telling real from
#   generated, reported with a bootstrap confidence interval (here from your own rounds of the game, and from a
#   simulated observer when no person plays).
#
# ## References
# - L. Theis, A. van den Oord, M. Bethge. *A note on the evaluation of generative models.* ICLR 2016.
#   [arXiv:1511.01844](https://arxiv.org/abs/1511.01844) (Parzen estimates; likelihood vs sample quality)
# - I. Goodfellow et al. *Generative Adversarial Nets.* NeurIPS 2014. [arXiv:1406.2661](https://arxiv.org/abs/1406.2661)
#   (Table 1: Parzen-window log-likelihood of the MNIST test set under a Gaussian KDE of GAN samples, bandwidth by
#   cross-validation, real-valued pixels: 225 ± 2 nats for the GAN)
# - T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford, X. Chen. *Improved Techniques for Training
#   GANs.* NeurIPS 2016. [arXiv:1606.03498](https://arxiv.org/abs/1606.03498) (Inception Score)
# - M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter. *GANs Trained by a Two Time-Scale Update
#   Rule Converge to a Local Nash Equilibrium.* NeurIPS 2017. [arXiv:1706.08500](https://arxiv.org/abs/1706.08500)
#   (FID, and its tests with noise, blur and other corruptions)
# - M. Bińkowski, D. J. Sutherland, M. Arbel, A. Gretton. *Demystifying MMD GANs.* ICLR 2018.
#   [arXiv:1801.01401](https://arxiv.org/abs/1801.01401) (KID)
# - M. S. M. Sajjadi, O. Bachem, M. Lucic, O. Bousquet, S. Gelly. *Assessing Generative Models via Precision and
#   Recall.* NeurIPS 2018. [arXiv:1806.00035](https://arxiv.org/abs/1806.00035)
# - M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo. *Reliable Fidelity and Diversity Metrics for Generative Models.*
#   ICML 2020. [arXiv:2002.09797](https://arxiv.org/abs/2002.09797) (density and coverage; outliers and k-NN recall)
# - T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen, T. Aila. *Improved Precision and Recall Metric for Assessing
#   Generative Models.* NeurIPS 2019. [arXiv:1904.06991](https://arxiv.org/abs/1904.06991)
# - S. Zhou, M. Gordon, R. Krishna, A. Narcomey, L. Fei-Fei, M. Bernstein. *HYPE: A Benchmark for Human eYe
#   Perceptual Evaluation of Generative Models.* NeurIPS 2019. [arXiv:1904.01121](https://arxiv.org/abs/1904.01121)
# - S. Barratt, R. Sharma. *A Note on the Inception Score.* 2018. [arXiv:1801.01973](https://arxiv.org/abs/1801.01973)
# - M. Germain, K. Gregor, I. Murray, H. Larochelle. *MADE.* ICML 2015. [arXiv:1502.03509](https://arxiv.org/abs/1502.03509);
#   D. P. Kingma, M. Welling. *Auto-Encoding Variational Bayes.* ICLR 2014. [arXiv:1312.6114](https://arxiv.org/abs/1312.6114);
#   Y. Burda, R. Grosse, R. Salakhutdinov. *Importance Weighted Autoencoders.* ICLR 2016.
#   [arXiv:1509.00519](https://arxiv.org/abs/1509.00519)
