"""Lecture 14's exercise checks: correct implementations written in several ways pass, and the common mistakes are
rejected with the right message (tests/exercise_cases.py generates the tests from EXERCISES)."""

import math
import warnings

import numpy as np
import torch
from exercise_cases import AlwaysEqual as Always
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Liar
from scipy import linalg

from dgm_course.exercises import lecture14

# ---------------------------------------------------------------- Exercise 1: the Inception Score


def inception_score(probs):
    p_y = probs.mean(0, keepdim=True)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)
    return kl.mean().exp()


def inception_score_clamped(probs):  # clamp before the log, return a Python float
    log_p = probs.clamp(min=1e-30).log()
    log_p_y = probs.mean(0).clamp(min=1e-30).log()
    return float(torch.exp((probs * (log_p - log_p_y)).sum(1).mean()))


def inception_score_entropies(probs):  # exp(H(y) - E H(y|x)) in float64, with numpy
    p = probs.double().numpy()
    p_y = p.mean(0)
    h_y = -np.sum(p_y[p_y > 0] * np.log(p_y[p_y > 0]))
    h_yx = -np.mean(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1))
    return np.exp(h_y - h_yx)


def inception_score_loops(probs):  # explicit loops, in float32
    n, k = probs.shape
    p_y = [sum(float(probs[i, c]) for i in range(n)) / n for c in range(k)]
    total = 0.0
    for i in range(n):
        for c in range(k):
            p = float(probs[i, c])
            if p > 0:
                total += p * (math.log(p) - math.log(p_y[c]))
    return torch.tensor(math.exp(total / n), dtype=torch.float32)


def is_naive_log(probs):  # 0 * log 0 = NaN for one-hot rows
    p_y = probs.mean(0, keepdim=True)
    return (probs * (probs.log() - p_y.log())).sum(1).mean().exp()


def is_no_exp(probs):  # the mean KL, i.e. log IS
    return inception_score(probs).log()


def is_reversed_kl(probs):  # KL(p(y) || p(y|x))
    p_y = probs.mean(0, keepdim=True).expand_as(probs)
    return (torch.xlogy(p_y, p_y) - p_y * probs.clamp(min=1e-30).log()).sum(1).mean().exp()


def is_uniform_marginal(probs):  # p(y) = 1/K instead of the marginal over the samples
    k = probs.shape[1]
    return (torch.xlogy(probs, probs) - probs * math.log(1.0 / k)).sum(1).mean().exp()


def is_exp_inside(probs):  # the mean of exp(KL) instead of exp of the mean
    p_y = probs.mean(0, keepdim=True)
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1).exp().mean()


def is_product(probs):  # the geometric mean as a product of N factors: overflows for large N
    p_y = probs.mean(0, keepdim=True)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)
    return kl.exp().prod() ** (1 / len(probs))


def is_per_sample(probs):
    p_y = probs.mean(0, keepdim=True)
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1).exp()


def is_marginal_wrong_axis(probs):  # p(y) as the mean over classes: raises when broadcasting (N, 1) against (N, K)
    p_y = probs.mean(1, keepdim=True).T
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1).mean().exp()


def is_in_place(probs):  # clamps the caller's probabilities in place
    log_p = probs.clamp_(min=1e-12).log()
    return (probs * (log_p - probs.mean(0).log())).sum(1).mean().exp()


def is_liar(probs):
    return inception_score(probs).as_subclass(Liar)


def is_always(probs):
    return Always()


# ---------------------------------------------------------------- Exercise 2: the Frechet distance


def sqrtm_psd(a):
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    s1 = sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def frechet_distance_scipy(mu1, sigma1, mu2, sigma2):  # the classic route: scipy's sqrtm of the product
    mu1, sigma1, mu2, sigma2 = (np.asarray(t) for t in (mu1, sigma1, mu2, sigma2))
    with warnings.catch_warnings():  # "Matrix is singular": the square root is still accurate enough here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        cross = linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * cross))


def frechet_distance_eigvals(mu1, sigma1, mu2, sigma2):  # tr sqrt(S1 S2) = sum of sqrt of its (real) eigenvalues
    ev = torch.linalg.eigvals(sigma1 @ sigma2).real.clamp(min=0)
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * ev.sqrt().sum()


def frechet_distance_float32(mu1, sigma1, mu2, sigma2):  # everything in float32
    return frechet_distance(mu1.float(), sigma1.float(), mu2.float(), sigma2.float())


def frechet_distance_loops(mu1, sigma1, mu2, sigma2):  # Python loops for the sums, sqrt(S2) S1 sqrt(S2) for the cross
    d = len(mu1)
    mean_term = sum((float(mu1[i]) - float(mu2[i])) ** 2 for i in range(d))
    trace = sum(float(sigma1[i, i]) + float(sigma2[i, i]) for i in range(d))
    s2 = sqrtm_psd(sigma2)
    cross = sum(math.sqrt(max(float(v), 0.0)) for v in torch.linalg.eigvalsh(s2 @ sigma1 @ s2))
    return mean_term + trace - 2 * cross


def fd_commuting(mu1, sigma1, mu2, sigma2):  # tr(S1^1/2 S2^1/2): right only when S1 S2 = S2 S1
    cross = (sqrtm_psd(sigma1) @ sqrtm_psd(sigma2)).trace()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_elementwise_sqrt(mu1, sigma1, mu2, sigma2):  # sqrt of the entries of S1 S2
    cross = (sigma1 @ sigma2).clamp(min=0).sqrt().trace()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_no_factor_two(mu1, sigma1, mu2, sigma2):
    s1 = sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - cross


def fd_mean_norm(mu1, sigma1, mu2, sigma2):  # |mu1 - mu2| instead of its square
    return frechet_distance(mu1, sigma1, mu2, sigma2) - ((mu1 - mu2) ** 2).sum() + (mu1 - mu2).norm()


def fd_no_sqrt(mu1, sigma1, mu2, sigma2):  # tr(S1 S2) without the square root
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * (sigma1 @ sigma2).trace()


def fd_no_clamp(mu1, sigma1, mu2, sigma2):  # sqrt of eigenvalues that rounding made slightly negative: NaN
    w, v = torch.linalg.eigh(sigma1)
    s1 = (v * w.sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).sqrt().sum()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_cholesky(mu1, sigma1, mu2, sigma2):  # L L^T = S1 is right for full rank, but fails on singular covariances
    chol = torch.linalg.cholesky(sigma1)
    cross = torch.linalg.eigvalsh(chol.T @ sigma2 @ chol).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_torch_sqrtm(mu1, sigma1, mu2, sigma2):  # torch has no sqrtm: AttributeError
    cross = torch.linalg.sqrtm(sigma1 @ sigma2).trace()
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_per_dimension(mu1, sigma1, mu2, sigma2):  # not reduced: (D,)
    return (mu1 - mu2) ** 2 + (sigma1.diagonal().sqrt() - sigma2.diagonal().sqrt()) ** 2


def fd_in_place(mu1, sigma1, mu2, sigma2):  # right value, mu1 overwritten
    s1 = sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(s1 @ sigma2 @ s1).clamp(min=0).sqrt().sum()
    return (mu1.sub_(mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def fd_liar(mu1, sigma1, mu2, sigma2):
    return frechet_distance(mu1, sigma1, mu2, sigma2).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 3: the unbiased MMD^2


def kernel(a, b):
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
    m, n = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kernel(x, y).mean())


def mmd2_masked(x, y):  # masks off the diagonal, Python float
    def off_diagonal_mean(k):
        mask = ~torch.eye(len(k), dtype=torch.bool)
        return k[mask].mean()
    return float(off_diagonal_mean(kernel(x, x)) + off_diagonal_mean(kernel(y, y)) - 2 * kernel(x, y).mean())


def mmd2_loops(x, y):  # explicit loops over index pairs
    m, n, d = len(x), len(y), x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def mmd2_triu_float32(x, y):  # upper triangles counted twice, in float32
    x, y = x.float(), y.float()
    m, n = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return (2 * kxx.triu(1).sum() / (m * (m - 1)) + 2 * kyy.triu(1).sum() / (n * (n - 1))
            - 2 * kernel(x, y).sum() / (m * n))


def mmd2_biased(x, y):  # the V-statistic: diagonal included
    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def mmd2_wrong_normalizer(x, y):  # the diagonal dropped but still divided by m^2
    m, n = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / m**2 + (kyy.sum() - kyy.diagonal().sum()) / n**2
            - 2 * kernel(x, y).mean())


def mmd2_cross_once(x, y):  # the cross term counted once
    return mmd2_unbiased(x, y) + kernel(x, y).mean()


def mmd2_swapped_sizes(x, y):  # x-x sum divided by n(n-1)
    m, n = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kernel(x, y).mean())


def mmd2_same_size(x, y):  # assumes m = n: one normalizer for everything
    m = len(x)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return ((kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kernel(x, y).sum() / m**2)


def mmd2_sqrt(x, y):  # the MMD itself, not its square
    return mmd2_unbiased(x, y).clamp(min=0).sqrt()


def mmd2_distinct_values(x, y):  # drops every pair of equal samples, not just i = j
    def off_diagonal_mean(a):
        k = kernel(a, a)
        return k[torch.cdist(a, a) > 0].mean()
    return off_diagonal_mean(x) + off_diagonal_mean(y) - 2 * kernel(x, y).mean()


def mmd2_in_place(x, y):  # rescales the caller's features in place
    d = x.shape[1]
    x.div_(d**0.5)
    y.div_(d**0.5)
    m, n = len(x), len(y)
    kxx, kyy, kxy = (x @ x.T + 1) ** 3, (y @ y.T + 1) ** 3, (x @ y.T + 1) ** 3
    return ((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1)) - 2 * kxy.mean())


def mmd2_liar(x, y):
    return mmd2_unbiased(x, y).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 4: precision and recall


def precision_recall(real, fake, k=3):
    def radius(a):
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    precision = (torch.cdist(fake, real) <= radius(real)).any(1).double().mean()
    recall = (torch.cdist(real, fake) <= radius(fake)).any(1).double().mean()
    return precision, recall


def precision_recall_sorted(real, fake, k=3):  # sort, per-point loops, numpy floats
    def radius(a):
        d = torch.cdist(a, a)
        return d.sort(1).values[:, k]

    p = float(np.mean([(torch.linalg.norm(real - f, dim=1) <= radius(real)).any().item() for f in fake]))
    r = float(np.mean([(torch.linalg.norm(fake - x, dim=1) <= radius(fake)).any().item() for x in real]))
    return p, r


def precision_recall_squared(real, fake, k=3):  # squared distances and topk, in float32
    real, fake = real.float(), fake.float()

    def sq(a, b):
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)

    def radius2(a):
        return sq(a, a).topk(k + 1, dim=1, largest=False).values[:, k]

    return ((sq(fake, real) <= radius2(real)).any(1).float().mean(),
            (sq(real, fake) <= radius2(fake)).any(1).float().mean())


def precision_recall_loops(real, fake, k=3):  # everything in Python loops
    def dist(a, b):
        return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b, strict=True)))

    def coverage(points, centres):
        radii = [sorted(dist(c, o) for j, o in enumerate(centres) if j != i)[k - 1] for i, c in enumerate(centres)]
        return sum(any(dist(p, c) <= r for c, r in zip(centres, radii, strict=True)) for p in points) / len(points)

    return coverage(fake, real), coverage(real, fake)


def pr_self_neighbour(real, fake, k=3):  # counts the point itself as its first neighbour
    def radius(a):
        return torch.cdist(a, a).kthvalue(k, dim=1).values

    return ((torch.cdist(fake, real) <= radius(real)).any(1).double().mean(),
            (torch.cdist(real, fake) <= radius(fake)).any(1).double().mean())


def pr_swapped(real, fake, k=3):
    p, r = precision_recall(real, fake, k)
    return r, p


def pr_own_balls(real, fake, k=3):  # precision measured with the fake set's own balls
    def radius(a):
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    return ((torch.cdist(fake, real) <= radius(fake)[:, None]).any(1).double().mean(),
            (torch.cdist(real, fake) <= radius(real)[:, None]).any(1).double().mean())


def pr_nearest_ball_only(real, fake, k=3):  # only the ball of the nearest point is tried, not the union
    def inside_nearest(points, centres):
        r = torch.cdist(centres, centres).kthvalue(k + 1, dim=1).values
        d = torch.cdist(points, centres)
        nearest = d.argmin(1)
        return (d.min(1).values <= r[nearest]).double().mean()

    return inside_nearest(fake, real), inside_nearest(real, fake)


def pr_strict(real, fake, k=3):  # a point on the boundary counted as outside
    def radius(a):
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    return ((torch.cdist(fake, real) < radius(real)).any(1).double().mean(),
            (torch.cdist(real, fake) < radius(fake)).any(1).double().mean())


def pr_drop_zeros(real, fake, k=3):  # removes every zero distance, so copies of a point are not neighbours
    def radius(a):
        d = torch.cdist(a, a)
        d = torch.where(d > 0, d, torch.full_like(d, float("inf")))
        return d.kthvalue(k, dim=1).values

    return ((torch.cdist(fake, real) <= radius(real)).any(1).double().mean(),
            (torch.cdist(real, fake) <= radius(fake)).any(1).double().mean())


def pr_fixed_k(real, fake, k=3):  # ignores k
    return precision_recall(real, fake, 3)


def pr_memberships(real, fake, k=3):  # the per-sample memberships, not their fractions
    def radius(a):
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    return ((torch.cdist(fake, real) <= radius(real)).any(1).double(),
            (torch.cdist(real, fake) <= radius(fake)).any(1).double())


def pr_in_place(real, fake, k=3):  # centres both sets in place (distances unchanged, inputs changed)
    centre = real.mean(0)
    return precision_recall(real.sub_(centre), fake.sub_(centre), k)


def pr_liar(real, fake, k=3):
    p, r = precision_recall(real, fake, k)
    return p.as_subclass(Liar), r.as_subclass(Liar)


EXERCISES = {
    "ex1_inception_score": Exercise(
        check=lecture14.check_inception_score,
        correct=[inception_score, inception_score_clamped, inception_score_entropies, inception_score_loops],
        wrong=[
            Wrong(is_naive_log, "not finite", "edge"),
            Wrong(is_no_exp, "uniform predictions", "formula"),
            Wrong(is_reversed_kl, "one-hot", "formula"),
            Wrong(is_uniform_marginal, "unbalanced", "formula"),
            Wrong(is_exp_inside, "unbalanced|random soft", "formula"),
            Wrong(is_product, "not finite|1000", "precision"),
            Wrong(is_per_sample, "one number", "shape"),
            Wrong(is_marginal_wrong_axis, "raised RuntimeError", "raw"),
            Wrong(is_in_place, "changed its input", "property"),
            Wrong(is_liar, "wrong type", "lie"),
            Wrong(is_always, "wrong type", "lie"),
        ],
    ),
    "ex2_frechet_distance": Exercise(
        check=lecture14.check_frechet_distance,
        correct=[frechet_distance, frechet_distance_scipy, frechet_distance_eigvals, frechet_distance_float32,
                 frechet_distance_loops],
        wrong=[
            Wrong(fd_commuting, "full covariances", "formula"),
            Wrong(fd_elementwise_sqrt, "full covariances|itself", "formula"),
            Wrong(fd_no_factor_two, "diagonal", "formula"),
            Wrong(fd_mean_norm, "diagonal", "formula"),
            Wrong(fd_no_sqrt, "diagonal", "formula"),
            Wrong(fd_no_clamp, "not finite|raised", "precision"),
            Wrong(fd_cholesky, "raised", "edge"),
            Wrong(fd_torch_sqrtm, "raised AttributeError", "raw"),
            Wrong(fd_per_dimension, "one number", "shape"),
            Wrong(fd_in_place, "changed its input", "property"),
            Wrong(fd_liar, "wrong type", "lie"),
        ],
    ),
    "ex3_mmd2_unbiased": Exercise(
        check=lecture14.check_mmd2_unbiased,
        correct=[mmd2_unbiased, mmd2_masked, mmd2_loops, mmd2_triu_float32],
        wrong=[
            Wrong(mmd2_biased, "unbiased MMD", "formula"),
            Wrong(mmd2_wrong_normalizer, "unbiased MMD", "formula"),
            Wrong(mmd2_cross_once, "unbiased MMD", "formula"),
            Wrong(mmd2_swapped_sizes, "unbiased MMD", "formula"),
            Wrong(mmd2_sqrt, "unbiased MMD", "formula"),
            Wrong(mmd2_same_size, "unbiased MMD", "shape"),
            Wrong(mmd2_distinct_values, "repeated rows", "edge"),
            Wrong(mmd2_in_place, "changed its input", "property"),
            Wrong(mmd2_liar, "wrong type", "lie"),
        ],
    ),
    "ex4_precision_recall": Exercise(
        check=lecture14.check_precision_recall,
        correct=[precision_recall, precision_recall_sorted, precision_recall_squared, precision_recall_loops],
        wrong=[
            Wrong(pr_self_neighbour, "drops half|random sets", "formula"),
            Wrong(pr_swapped, "drops half", "formula"),
            Wrong(pr_own_balls, "drops half|random sets", "formula"),
            Wrong(pr_nearest_ball_only, "drops half|random sets", "formula"),
            Wrong(pr_fixed_k, r"k = 5|k = 4|k = 2|k = 1", "formula"),
            Wrong(pr_strict, "boundary|random sets", "edge"),
            Wrong(pr_drop_zeros, "repeated", "edge"),
            Wrong(pr_memberships, "one number|wrong thing", "shape"),
            Wrong(pr_in_place, "changed its input", "property"),
            Wrong(pr_liar, "wrong type", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
