"""Checks for lecture 14 (evaluating generative models): the Inception Score, the Frechet distance between two
Gaussians, the unbiased MMD^2 of KID, and k-NN precision and recall.

Every check builds its own random problem from a fixed seed and computes the reference with its own formula: closed
forms where they exist (IS of one-hot and uniform predictions, the Frechet distance of diagonal Gaussians), a
symmetric-eigendecomposition matrix square root for full and singular covariances, and explicit sums over index pairs
for the MMD and the k-NN balls. Answers are compared at float32 precision (relative to the size of the numbers
involved), so that work done in float32 passes; the wrong formulas the checks target are off by far more. The
inputs include what real features look like: singular covariances (dead ReLU units), repeated samples (a collapsed
model), points exactly on a ball's boundary.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import checks

DOUBLE = torch.float64
RTOL = 1e-4                      # float32 work: a few ulps times the depth of the computation


def _scalar(value, what: str, hint: str = "reduce over the samples: the score is a single number for the whole set"
            ) -> float:
    """A Python float from the answer (a plain tensor or number), after failing on anything else."""
    value = checks.check_scalar(what, checks.plain(f"{what}'s result", value), hint=hint,
                                nonfinite_hint="look for log(0) (0 log 0 counts as 0), a square root of a negative "
                                               "number, or an overflow")
    return float(value)


def _close(what: str, found: float, expected: float, scale: float = 1.0, hint: str = "") -> None:
    """found ≈ expected to RTOL relative to max(|expected|, scale)."""
    tol = RTOL * max(abs(expected), scale)
    if not abs(found - expected) <= tol:
        digits = checks._digits_to_differ(expected, found)
        checks.fail(f"{what} is not close enough (tolerance {tol:.2g})", f"{expected:.{digits}g}", f"{found:.{digits}g}",
                    hint)


def _unchanged(name: str, inputs: dict[str, torch.Tensor], copies: dict[str, torch.Tensor]) -> None:
    for key, value in inputs.items():
        if not torch.equal(value, copies[key]):
            checks.fail(f"{name} changed its input `{key}`", f"`{key}` left as it was (the caller uses it again)",
                        "values changed in place", "compute new tensors instead of in-place operations (`sub_`, "
                                                   "`mul_`, `x[...] = ...`) on the arguments")


def _call(fn: Callable, name: str, *args):
    """fn(*args) on copies of the arguments; fails if fn changed them."""
    copies = [a.clone() for a in args]
    out = fn(*copies)
    _unchanged(name, {f"argument {i + 1}": c for i, c in enumerate(copies)},
               {f"argument {i + 1}": a for i, a in enumerate(args)})
    return out


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the Inception Score
# ----------------------------------------------------------------------------------------------------------

def _inception_score(probs: torch.Tensor) -> float:
    probs = probs.double()
    p_y = probs.mean(0, keepdim=True)                                           # (1, K)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)           # (N,)
    return float(kl.mean().exp())


@checks.exercise("ex1_inception_score", "Exercise 1: the Inception Score")
def check_inception_score(inception_score: Callable) -> None:
    """Exercise 1: `inception_score(probs)`, probs (N, K) the classifier's p(y|x) per sample (float32 or float64,
    rows summing to 1, exact zeros allowed, N up to thousands), returns exp(mean_i KL(p(y|x_i) || p(y))) with p(y) the
    mean of the rows."""
    k = 10

    def score(probs):
        return _scalar(_call(inception_score, "inception_score", probs), "inception_score")

    # 1. Every sample classified with no confidence: p(y|x) = p(y), the score is 1.
    _close("the Inception Score of uniform predictions", score(torch.full((50, k), 1.0 / k, dtype=DOUBLE)), 1.0,
           hint="IS = exp(mean KL): with p(y|x) = p(y) every KL is 0, so the score is exp(0) = 1")
    # 2. Confident and balanced: one-hot rows, each class equally often; the score is K (the maximum).
    _close("the Inception Score of confident (one-hot), balanced predictions",
           score(torch.eye(k, dtype=DOUBLE).repeat(6, 1)), float(k),
           hint="with one-hot rows log p(y|x) has log(0) entries: 0 log 0 = 0 (torch.xlogy, or clamp before the "
                "log); the KL of a one-hot row from the uniform marginal is log K")
    # 3. Confident but unbalanced: the score is exp(H(p(y))), the effective number of classes.
    counts = torch.tensor([20, 10, 5, 5, 2, 1, 1, 1, 1, 1])
    q = counts.double() / counts.sum()
    _close("the Inception Score of one-hot predictions with unbalanced classes",
           score(torch.eye(k, dtype=DOUBLE).repeat_interleave(counts, dim=0)), float((-(q * q.log()).sum()).exp()),
           hint="p(y) is the mean of the rows p(y|x_i) (the marginal over the samples), not the uniform 1/K")
    # 4. Random soft predictions, in float64 and float32, against the reference.
    g = torch.Generator().manual_seed(3)
    for n, kk, dtype in ((40, 10, DOUBLE), (7, 3, DOUBLE), (300, 10, torch.float32)):
        probs = (2.5 * torch.randn(n, kk, generator=g, dtype=DOUBLE)).softmax(1).to(dtype)
        _close(f"the Inception Score of random soft predictions (N = {n}, K = {kk}, {dtype})", score(probs),
               _inception_score(probs),
               hint="KL(p(y|x_i) || p(y)) = sum_y p(y|x_i) [log p(y|x_i) - log p(y)], summed over classes, "
                    "averaged over samples, and only then exponentiated")
    # 5. Many samples: exp of a mean, never a product of N factors (it overflows).
    probs = torch.eye(k).repeat(100, 1)                                         # (1000, K) float32, one-hot
    _close("the Inception Score of 1000 confident, balanced predictions (float32)", score(probs), float(k),
           hint="exponentiate the mean KL once; a product of N per-sample factors overflows for large N")


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


def _random_cov(d: int, g: torch.Generator, scale: float = 1.0, rank: int | None = None) -> torch.Tensor:
    a = torch.randn(d, rank or d, generator=g, dtype=DOUBLE)
    cov = a @ a.T / d
    return scale * (cov if rank else cov + 0.1 * torch.eye(d, dtype=DOUBLE))


@checks.exercise("ex2_frechet_distance", "Exercise 2: the Frechet distance")
def check_frechet_distance(frechet_distance: Callable) -> None:
    """Exercise 2: `frechet_distance(mu1, sigma1, mu2, sigma2)` = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).

    mu (D,) and sigma (D, D) float64 tensors, the covariances symmetric positive semi-definite and possibly singular;
    returns one number."""
    g = torch.Generator().manual_seed(14)

    def fd(mu1, sigma1, mu2, sigma2):
        return _scalar(_call(frechet_distance, "frechet_distance", mu1, sigma1, mu2, sigma2), "frechet_distance",
                       hint="the distance is one number: sum the squared mean differences and take traces")

    def scale(sigma1, sigma2):
        return float(sigma1.trace() + sigma2.trace())

    # 1. Diagonal covariances: the closed form sum_i (m1_i - m2_i)^2 + (s1_i^1/2 - s2_i^1/2)^2.
    for d in (1, 5):
        mu1, mu2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
        v1, v2 = 0.2 + 2 * torch.rand(d, generator=g, dtype=DOUBLE), 0.2 + 2 * torch.rand(d, generator=g, dtype=DOUBLE)
        closed = float(((mu1 - mu2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
        _close(f"the Frechet distance of two diagonal Gaussians (D = {d})",
               fd(mu1, torch.diag(v1), mu2, torch.diag(v2)), closed, float(v1.sum() + v2.sum()),
               hint="for diagonal covariances it is |mu1 - mu2|^2 + sum_i (sqrt(v1_i) - sqrt(v2_i))^2: check the "
                    "squared mean term and the factor 2 on the cross term")
    # 2. Identical Gaussians with a full covariance: distance 0.
    d = 6
    mu, sigma = torch.randn(d, generator=g, dtype=DOUBLE), _random_cov(d, g)
    _close("the Frechet distance of a Gaussian to itself", fd(mu, sigma, mu, sigma), 0.0, scale(sigma, sigma),
           hint="tr(S + S - 2 (S^1/2 S S^1/2)^1/2) = tr(2S - 2S) = 0: the matrix square root must be a true one")
    # 3. Full covariances that do not commute, against the reference; and the distance is symmetric.
    for s in (1.0, 5.0):
        mu1, mu2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
        sigma1, sigma2 = _random_cov(d, g), _random_cov(d, g, s)
        expected = _frechet(mu1, sigma1, mu2, sigma2)
        _close(f"the Frechet distance of two Gaussians with full covariances (D = {d})", fd(mu1, sigma1, mu2, sigma2),
               expected, scale(sigma1, sigma2),
               hint="the cross term is tr (S1^1/2 S2 S1^1/2)^1/2 (a matrix square root, not an elementwise one); "
                    "tr(S1^1/2 S2^1/2) is only right when S1 and S2 commute (e.g. both diagonal)")
        _close("the Frechet distance with its arguments swapped", fd(mu2, sigma2, mu1, sigma1), expected,
               scale(sigma1, sigma2), hint="the distance is symmetric in the two Gaussians")
    # 4. Singular covariances, as the features of a ReLU network give them (dead units, fewer samples than
    #    dimensions): rank 3 of 8, and a diagonal one with a zero variance.
    d = 8
    mu1, mu2 = torch.randn(d, generator=g, dtype=DOUBLE), torch.randn(d, generator=g, dtype=DOUBLE)
    sigma1, sigma2 = _random_cov(d, g, rank=3), _random_cov(d, g, 2.0, rank=5)
    for what, s1, s2 in (("two singular covariances (ranks 3 and 5 of 8)", sigma1, sigma2),
                         ("a singular covariance and itself", sigma1, sigma1),
                         ("covariances with a dead unit (a zero variance)",
                          torch.diag(torch.tensor([0.0, 1, 2, 0.5, 1, 1, 3, 0.2], dtype=DOUBLE)), sigma2 + 0.1 * torch.eye(d, dtype=DOUBLE))):
        _close(f"the Frechet distance of {what}", fd(mu1, s1, mu2, s2), _frechet(mu1, s1, mu2, s2), scale(s1, s2),
               hint="eigenvalues of a singular covariance come out as 0 or tiny negative numbers in floating point: "
                    "clamp them at 0 before the square root; a Cholesky factor does not exist for singular matrices")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the unbiased MMD^2 of KID
# ----------------------------------------------------------------------------------------------------------

def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel k(a, b) = (a . b / d + 1)^3 between the rows of a (M, d) and b (N, d): (M, N)."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd2_loops(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The unbiased MMD^2 by explicit sums over index pairs, and the mean absolute kernel value (its scale)."""
    x, y = x.double(), y.double()
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = sum(float(kxx[i, j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(float(kyy[i, j]) for i in range(n) for j in range(n) if i != j)
    value = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * float(kxy.sum()) / (m * n)
    return value, float(torch.cat([kxx.flatten(), kyy.flatten(), kxy.flatten()]).abs().mean())


@checks.exercise("ex3_mmd2_unbiased", "Exercise 3: the unbiased MMD^2")
def check_mmd2_unbiased(mmd2_unbiased: Callable) -> None:
    """Exercise 3: `mmd2_unbiased(x, y)`, x (m, d) and y (n, d) with m != n in general (both >= 2), float32 or
    float64, possibly with repeated rows: the unbiased estimate of MMD^2 with KID's polynomial kernel, the mean of k
    over index pairs i != j within x and within y, minus twice the mean over all x-y pairs."""
    g = torch.Generator().manual_seed(21)

    def mmd(x, y):
        return _scalar(_call(mmd2_unbiased, "mmd2_unbiased", x, y), "mmd2_unbiased")

    hint = ("leave out the diagonal k(x_i, x_i) of the x-x and y-y sums (pairs of indices i != j, even where two "
            "samples are equal) and divide by m(m-1) and n(n-1); the cross term is 2/(mn) times the sum over all pairs")
    cases = [(7, 11, 5, 0.0, "random samples"), (12, 4, 3, 0.7, "random samples"), (9, 9, 16, 0.3, "random samples"),
             (2, 3, 4, 0.5, "the smallest samples")]
    for m, n, d, shift, what in cases:
        x = torch.randn(m, d, generator=g, dtype=DOUBLE)
        y = shift + torch.randn(n, d, generator=g, dtype=DOUBLE)
        expected, size = _mmd2_loops(x, y)
        _close(f"the unbiased MMD^2 of {what} (m = {m}, n = {n}, d = {d})", mmd(x, y), expected, size, hint)
    # Repeated samples (a collapsed model repeats its images): pairs are pairs of indices, not of distinct values.
    x = torch.randn(3, 4, generator=g, dtype=DOUBLE).repeat(4, 1)                # (12, 4), each row four times
    y = torch.randn(10, 4, generator=g, dtype=DOUBLE)
    expected, size = _mmd2_loops(x, y)
    _close("the unbiased MMD^2 of a sample with repeated rows (m = 12, n = 10)", mmd(x, y), expected, size, hint)
    # ReLU-like float32 features of a realistic scale: the cubic kernel is large, and float32 must still do.
    x = torch.randn(30, 32, generator=g).relu() * 3
    y = (torch.randn(25, 32, generator=g) + 0.2).relu() * 3
    expected, size = _mmd2_loops(x, y)
    _close("the unbiased MMD^2 of float32 ReLU features (m = 30, n = 25, d = 32)", mmd(x, y), expected, size, hint)
    # Unbiased: over many pairs of samples of one distribution the estimates average to about 0.
    x = torch.randn(200, 4, generator=g, dtype=DOUBLE)
    y = torch.randn(200, 4, generator=g, dtype=DOUBLE)
    found = sum(mmd(x[i:i + 10], y[i:i + 10]) for i in range(0, 200, 10)) / 20
    reference = [_mmd2_loops(x[i:i + 10], y[i:i + 10]) for i in range(0, 200, 10)]
    _close("the average of the MMD^2 estimate over 20 pairs of samples of one distribution", found,
           sum(r[0] for r in reference) / 20, max(r[1] for r in reference),
           hint="an unbiased estimate averages to about 0 here; including i = j terms adds a positive bias of order 1/m")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: precision and recall with k-NN manifolds
# ----------------------------------------------------------------------------------------------------------

def _knn_radius(a: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(a, a)                                                       # (N, N), zeros on the diagonal
    return d.kthvalue(k + 1, dim=1).values                                      # the k-th neighbour, not itself


def _coverage(points: torch.Tensor, centres: torch.Tensor, k: int) -> float:
    """Fraction of `points` inside at least one k-NN ball of `centres` (the boundary counts as inside)."""
    r = _knn_radius(centres.double(), k)
    return float((torch.cdist(points.double(), centres.double()) <= r[None, :]).any(1).double().mean())


def _pr(precision_recall: Callable, real, fake, k) -> tuple[float, float]:
    out = precision_recall(real, fake, k)
    if not isinstance(out, tuple | list) or len(out) != 2:
        checks.fail("precision_recall returns the wrong thing", "a pair (precision, recall)", type(out).__name__)
    hint = "precision and recall are each one fraction: the mean over samples of 'inside some ball'"
    return _scalar(out[0], "precision_recall's precision", hint), _scalar(out[1], "precision_recall's recall", hint)


def _expect_pr(precision_recall: Callable, real, fake, k, what: str, hint: str) -> None:
    """Fail unless precision_recall(real, fake, k) matches the reference coverages (fractions: exact up to rounding)."""
    expected = (_coverage(fake, real, k), _coverage(real, fake, k))
    copies = (real.clone(), fake.clone())
    found = _pr(precision_recall, copies[0], copies[1], k)
    _unchanged("precision_recall", {"real": copies[0], "fake": copies[1]}, {"real": real, "fake": fake})
    if abs(found[0] - expected[0]) > 1e-6 or abs(found[1] - expected[1]) > 1e-6:
        checks.fail(f"precision and recall of {what}", f"({expected[0]:.4g}, {expected[1]:.4g})",
                    f"({found[0]:.4g}, {found[1]:.4g})", hint)


def _grid(shape, g: torch.Generator, spread: float = 1.0, shift: float = 0.0, dtype=DOUBLE) -> torch.Tensor:
    """Gaussian points rounded to multiples of 1/8: every squared distance is exact in float32 and float64, so a
    correct answer in either dtype finds exactly the reference's ties and memberships."""
    return ((shift + spread * torch.randn(shape, generator=g, dtype=DOUBLE)) * 8).round().div(8).to(dtype)


@checks.exercise("ex4_precision_recall", "Exercise 4: precision and recall")
def check_precision_recall(precision_recall: Callable) -> None:
    """Exercise 4: `precision_recall(real, fake, k)` -> (precision, recall) with k-NN balls (Kynkaanniemi et al.).

    precision: the fraction of fake samples inside the union of the real samples' k-NN balls; recall: the
    fraction of real samples inside the union of the fake samples' k-NN balls; a point on a ball's boundary is
    inside. real (N, D), fake (M, D), float32 or float64, possibly with repeated points."""
    g = torch.Generator().manual_seed(8)
    d = 4
    real = _grid((60, d), g)
    # 1. A model that returns the real samples: everything is covered.
    p, r = _pr(precision_recall, real.clone(), real.clone(), 3)
    if abs(p - 1) > 1e-6 or abs(r - 1) > 1e-6:
        checks.fail("precision and recall of the real set against itself", "(1, 1)", f"({p:.4g}, {r:.4g})",
                    "a sample inside (or on the edge of) a ball counts: use <= the radius")
    # 2. Mode dropping: the fake set covers only half of the real one (x_0 < 0), a little jittered.
    half = real[real[:, 0] < 0]
    fake = half + _grid(half.shape, g, 0.1)
    for k in (3, 5):
        _expect_pr(precision_recall, real, fake, k, f"a model that drops half of the data (k = {k})",
                   "precision asks whether fake samples are realistic (inside the real balls), recall whether "
                   "the real data is covered (inside the fake balls); the k-NN radius of a point excludes "
                   "the point itself")
    # 3. Random sets of different sizes and spreads, in float64 and float32.
    for k, (n, m, spread, dtype) in zip((3, 4, 2), ((50, 70, 1.5, DOUBLE), (80, 40, 0.6, DOUBLE),
                                                    (40, 45, 1.0, torch.float32)), strict=True):
        real, fake = _grid((n, d), g, dtype=dtype), _grid((m, d), g, spread, 0.5, dtype=dtype)
        _expect_pr(precision_recall, real, fake, k, f"random sets (N = {n} real, M = {m} fake, k = {k}, {dtype})",
                   "the radius of a ball is the distance to the k-th nearest other point of the same set "
                   "(its distance to itself, 0, is not a neighbour); every ball of the other set counts")
    # 4. Points exactly on a boundary: real points on a line at 0, 1, 2, 4, 8 (k = 1 radii 1, 1, 1, 2, 4);
    #    the fake points at 9 and 12 lie on the boundary of the ball around 8, at 6.5 inside it, at 12.5 outside.
    real = torch.tensor([[0.0], [1.0], [2.0], [4.0], [8.0]], dtype=DOUBLE)
    fake = torch.tensor([[9.0], [12.0], [6.5], [12.5]], dtype=DOUBLE)
    _expect_pr(precision_recall, real, fake, 1, "points exactly on the boundary of a ball (k = 1)",
               "a point on the edge of a ball is inside: compare distances with <=, not <")
    # 5. Repeated points (a collapsed model): a point's neighbours are the other points, copies included, so a
    #    point repeated more than k times has a ball of radius 0 that still contains its copies.
    fake = _grid((5, d), g).repeat(3, 1)                                        # 5 images, each three times
    real = _grid((30, d), g)
    real[:5] = fake[:5]                                                         # five real points among them
    for k in (1, 3):
        _expect_pr(precision_recall, real, fake, k, f"a fake set of 5 points repeated three times (k = {k})",
                   "the k nearest neighbours of a point are the k nearest *other* points, copies at distance 0 "
                   "included: drop the point itself by its index (k + 1-th smallest distance), not every zero")
