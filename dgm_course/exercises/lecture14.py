"""Checks for lecture 14 (evaluating generative models): the Inception Score, the Frechet distance between two
Gaussians, the unbiased MMD^2 of KID, and k-NN precision and recall.

Every check builds its own random problem from a fixed seed, in float64, and computes the reference with its own
formula: closed forms where they exist (IS of one-hot and uniform predictions, the Frechet distance of diagonal
Gaussians), a symmetric-eigendecomposition matrix square root for full covariances, and explicit sums over pairs
for the MMD and the k-NN balls.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64


def _scalar(value, what: str) -> float:
    """A Python float from a number, a one-element tensor or array; fails with a clear message otherwise."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            checks.fail(f"{what} returns the wrong thing", "one number", f"a tensor of shape {tuple(value.shape)}",
                        "reduce over the samples: the score is a single number for the whole set")
        value = value.detach().cpu().item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        checks.fail(f"{what} returns the wrong thing", "one number", type(value).__name__)
    if not math.isfinite(value):
        checks.fail(f"{what} returns NaN or inf", "a finite number", str(value),
                    "look for log(0) (0 log 0 counts as 0) or a square root of a negative number")
    return value


def _close(what: str, found: float, expected: float, atol: float, rtol: float = 1e-6, hint: str = "") -> None:
    if not abs(found - expected) <= atol + rtol * abs(expected):
        checks.fail(what, f"{expected:.6g}", f"{found:.6g}", hint)


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the Inception Score
# ----------------------------------------------------------------------------------------------------------

def _inception_score(probs: torch.Tensor) -> float:
    p_y = probs.mean(0, keepdim=True)                                           # (1, K)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)           # (N,)
    return float(kl.mean().exp())


@checks.exercise("ex1_inception_score", "Exercise 1: the Inception Score")
def check_inception_score(inception_score: Callable) -> None:
    """Exercise 1: `inception_score(probs)`, probs (N, K) the classifier's p(y|x) per sample, returns
    exp(mean_i KL(p(y|x_i) || p(y))) with p(y) the mean of the rows."""
    k = 10
    # 1. Every sample classified with no confidence: p(y|x) = p(y), the score is 1.
    uniform = torch.full((50, k), 1.0 / k, dtype=DOUBLE)
    found = _scalar(inception_score(uniform.clone()), "inception_score")
    _close("the Inception Score of uniform predictions", found, 1.0, atol=1e-6,
           hint="IS = exp(mean KL): with p(y|x) = p(y) every KL is 0, so the score is exp(0) = 1")
    # 2. Confident and balanced: one-hot rows, each class equally often; the score is K (the maximum).
    eye = torch.eye(k, dtype=DOUBLE).repeat(6, 1)                                # (60, K), exact zeros
    found = _scalar(inception_score(eye.clone()), "inception_score")
    _close("the Inception Score of confident (one-hot), balanced predictions", found, float(k), atol=1e-5,
           hint="with one-hot rows log p(y|x) has log(0) entries: 0 log 0 = 0 (torch.xlogy, or clamp before the "
                "log); the KL of a one-hot row from the uniform marginal is log K")
    # 3. Confident but unbalanced: the score is exp(H(p(y))), the effective number of classes.
    counts = torch.tensor([20, 10, 5, 5, 2, 1, 1, 1, 1, 1])
    onehot = torch.eye(k, dtype=DOUBLE).repeat_interleave(counts, dim=0)        # (47, K)
    q = counts.double() / counts.sum()
    found = _scalar(inception_score(onehot.clone()), "inception_score")
    _close("the Inception Score of one-hot predictions with unbalanced classes", found,
           float((-(q * q.log()).sum()).exp()), atol=1e-5,
           hint="p(y) is the mean of the rows p(y|x_i) (the marginal over the samples), not the uniform 1/K")
    # 4. Random soft predictions (Dirichlet rows), against the reference.
    g = torch.Generator().manual_seed(3)
    for n, kk in ((40, 10), (7, 3)):
        logits = 2.5 * torch.randn(n, kk, generator=g, dtype=DOUBLE)
        probs = logits.softmax(1)
        found = _scalar(inception_score(probs.clone()), "inception_score")
        _close(f"the Inception Score of random soft predictions (N = {n}, K = {kk})", found,
               _inception_score(probs), atol=1e-6,
               hint="KL(p(y|x_i) || p(y)) = sum_y p(y|x_i) [log p(y|x_i) - log p(y)], summed over classes, "
                    "averaged over samples, and only then exponentiated")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the Frechet distance between two Gaussians
# ----------------------------------------------------------------------------------------------------------

def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _frechet(mu1, sigma1, mu2, sigma2) -> float:
    s1 = _sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).clamp(min=0).sqrt().sum()  # tr (S1^1/2 S2 S1^1/2)^1/2
    return float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross)


def _random_cov(d: int, g: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=DOUBLE)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=DOUBLE))


def _call_fd(frechet_distance: Callable, mu1, sigma1, mu2, sigma2) -> float:
    return _scalar(frechet_distance(mu1.clone(), sigma1.clone(), mu2.clone(), sigma2.clone()), "frechet_distance")


@checks.exercise("ex2_frechet_distance", "Exercise 2: the Frechet distance")
def check_frechet_distance(frechet_distance: Callable) -> None:
    """Exercise 2: `frechet_distance(mu1, sigma1, mu2, sigma2)` = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).

    mu (D,) and sigma (D, D) float64 tensors; returns one number."""
    g = torch.Generator().manual_seed(14)
    # 1. Diagonal covariances: the closed form sum_i (m1_i - m2_i)^2 + (s1_i^1/2 - s2_i^1/2)^2.
    for d in (1, 5):
        mu1, mu2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
        v1, v2 = 0.2 + 2 * torch.rand(d, generator=g, dtype=DOUBLE), 0.2 + 2 * torch.rand(d, generator=g, dtype=DOUBLE)
        closed = float(((mu1 - mu2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
        found = _call_fd(frechet_distance, mu1, torch.diag(v1), mu2, torch.diag(v2))
        _close(f"the Frechet distance of two diagonal Gaussians (D = {d})", found, closed, atol=1e-8,
               hint="for diagonal covariances it is |mu1 - mu2|^2 + sum_i (sqrt(v1_i) - sqrt(v2_i))^2: check the "
                    "squared mean term and the factor 2 on the cross term")
    # 2. Identical Gaussians with a full covariance: distance 0.
    d = 6
    mu, sigma = torch.randn(d, generator=g, dtype=DOUBLE), _random_cov(d, g)
    found = _call_fd(frechet_distance, mu, sigma, mu, sigma)
    _close("the Frechet distance of a Gaussian to itself", found, 0.0, atol=1e-7,
           hint="tr(S + S - 2 (S^1/2 S S^1/2)^1/2) = tr(2S - 2S) = 0: the matrix square root must be a true one")
    # 3. Full covariances that do not commute, against the reference; and the distance is symmetric.
    for scale in (1.0, 5.0):
        mu1, mu2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
        sigma1, sigma2 = _random_cov(d, g), _random_cov(d, g, scale)
        expected = _frechet(mu1, sigma1, mu2, sigma2)
        found = _call_fd(frechet_distance, mu1, sigma1, mu2, sigma2)
        _close(f"the Frechet distance of two Gaussians with full covariances (D = {d})", found, expected, atol=1e-6,
               hint="the cross term is tr (S1^1/2 S2 S1^1/2)^1/2 (a matrix square root, not an elementwise one); "
                    "tr(S1^1/2 S2^1/2) is only right when S1 and S2 commute (e.g. both diagonal)")
        swapped = _call_fd(frechet_distance, mu2, sigma2, mu1, sigma1)
        _close("the Frechet distance with its arguments swapped", swapped, expected, atol=1e-6,
               hint="the distance is symmetric in the two Gaussians")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the unbiased MMD^2 of KID
# ----------------------------------------------------------------------------------------------------------

def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel k(a, b) = (a . b / d + 1)^3 between the rows of a (M, d) and b (N, d): (M, N)."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2_loops(x: torch.Tensor, y: torch.Tensor) -> float:
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = sum(float(kxx[i, j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(float(kyy[i, j]) for i in range(n) for j in range(n) if i != j)
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * float(kxy.sum()) / (m * n)


@checks.exercise("ex3_mmd2_unbiased", "Exercise 3: the unbiased MMD^2")
def check_mmd2_unbiased(mmd2_unbiased: Callable) -> None:
    """Exercise 3: `mmd2_unbiased(x, y)`, x (m, d) and y (n, d), the unbiased estimate of MMD^2 with KID's
    polynomial kernel: the mean of k over pairs i != j within x and within y, minus twice the mean over all x-y pairs."""
    g = torch.Generator().manual_seed(21)
    for m, n, d, shift in ((7, 11, 5, 0.0), (12, 4, 3, 0.7), (9, 9, 16, 0.3)):
        x = torch.randn(m, d, generator=g, dtype=DOUBLE)
        y = shift + torch.randn(n, d, generator=g, dtype=DOUBLE)
        expected = _mmd2_loops(x, y)
        found = _scalar(mmd2_unbiased(x.clone(), y.clone()), "mmd2_unbiased")
        _close(f"the unbiased MMD^2 (m = {m}, n = {n}, d = {d})", found, expected, atol=1e-8, rtol=1e-7,
               hint="leave out the diagonal k(x_i, x_i) of the x-x and y-y sums and divide by m(m-1) and n(n-1); "
                    "the cross term is 2/(mn) times the sum over all pairs")
    # unbiased: over many pairs of samples of the same distribution the estimates average to 0 (a biased,
    # V-statistic version stays positive). Reference values are used, so this only adds the hint.
    x = torch.randn(200, 4, generator=g, dtype=DOUBLE)
    y = torch.randn(200, 4, generator=g, dtype=DOUBLE)
    total = sum(_scalar(mmd2_unbiased(x[i:i + 10].clone(), y[i:i + 10].clone()), "mmd2_unbiased")
                for i in range(0, 200, 10)) / 20
    reference = sum(_mmd2_loops(x[i:i + 10], y[i:i + 10]) for i in range(0, 200, 10)) / 20
    _close("the average of the MMD^2 estimate over 20 pairs of samples of one distribution", total, reference,
           atol=1e-8, rtol=1e-7, hint="an unbiased estimate averages to about 0 here; including i = j terms adds a "
                                       "positive bias of order 1/m")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: precision and recall with k-NN manifolds
# ----------------------------------------------------------------------------------------------------------

def _knn_radius(a: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(a, a)                                                       # (N, N), zeros on the diagonal
    return d.kthvalue(k + 1, dim=1).values                                      # the k-th neighbour, not itself


def _coverage(points: torch.Tensor, centres: torch.Tensor, k: int) -> float:
    """Fraction of `points` inside at least one k-NN ball of `centres`."""
    r = _knn_radius(centres, k)
    return float((torch.cdist(points, centres) <= r[None, :]).any(1).double().mean())


def _pr(precision_recall: Callable, real, fake, k) -> tuple[float, float]:
    out = precision_recall(real.clone(), fake.clone(), k)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail("precision_recall returns the wrong thing", "a pair (precision, recall)", type(out).__name__)
    return _scalar(out[0], "precision_recall's precision"), _scalar(out[1], "precision_recall's recall")


def _expect_pr(precision_recall: Callable, real, fake, k, what: str, hint: str) -> None:
    """Fail unless precision_recall(real, fake, k) matches the reference coverages to 1e-9."""
    expected = (_coverage(fake, real, k), _coverage(real, fake, k))
    found = _pr(precision_recall, real, fake, k)
    if abs(found[0] - expected[0]) > 1e-9 or abs(found[1] - expected[1]) > 1e-9:
        checks.fail(f"precision and recall of {what}", f"({expected[0]:.4g}, {expected[1]:.4g})",
                    f"({found[0]:.4g}, {found[1]:.4g})", hint)


@checks.exercise("ex4_precision_recall", "Exercise 4: precision and recall")
def check_precision_recall(precision_recall: Callable) -> None:
    """Exercise 4: `precision_recall(real, fake, k)` -> (precision, recall) with k-NN balls (Kynkaanniemi et al.).

    precision: the fraction of fake samples inside the union of the real samples' k-NN balls; recall: the
    fraction of real samples inside the union of the fake samples' k-NN balls. real (N, D), fake (M, D)."""
    g = torch.Generator().manual_seed(8)
    d = 4
    real = torch.randn(60, d, generator=g, dtype=DOUBLE)
    # 1. A model that returns the real samples: everything is covered.
    p, r = _pr(precision_recall, real, real, 3)
    if abs(p - 1) > 1e-9 or abs(r - 1) > 1e-9:
        checks.fail("precision and recall of the real set against itself", "(1, 1)", f"({p:.4g}, {r:.4g})",
                    "a sample inside (or on the edge of) a ball counts: use <= the radius")
    # 2. Mode dropping: the fake set covers only half of the real one (x_0 < 0), a little jittered.
    half = real[real[:, 0] < 0]
    fake = half + 0.05 * torch.randn(half.shape, generator=g, dtype=DOUBLE)
    for k in (3, 5):
        _expect_pr(precision_recall, real, fake, k, f"a model that drops half of the data (k = {k})",
                   "precision asks whether fake samples are realistic (inside the real balls), recall whether "
                   "the real data is covered (inside the fake balls); the k-NN radius of a point excludes "
                   "the point itself")
    # 3. Random sets of different sizes and spreads.
    for k, (n, m, spread) in zip((3, 4), ((50, 70, 1.5), (80, 40, 0.6)), strict=True):
        real = torch.randn(n, d, generator=g, dtype=DOUBLE)
        fake = 0.5 + spread * torch.randn(m, d, generator=g, dtype=DOUBLE)
        _expect_pr(precision_recall, real, fake, k, f"random sets (N = {n} real, M = {m} fake, k = {k})",
                   "the radius of a ball is the distance to the k-th nearest other point of the same set "
                   "(its distance to itself, 0, is not a neighbour)")
