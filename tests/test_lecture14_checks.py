"""Lecture 14 checks: each accepts a correct implementation and rejects the common wrong ones."""

import time

import numpy as np
import pytest
import torch
from scipy import linalg

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture14

# ---------------------------------------------------------------- Exercise 1: the Inception Score


def inception_score(probs):
    p_y = probs.mean(0, keepdim=True)
    kl = (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1)
    return kl.mean().exp()


def inception_score_clamped(probs):  # another correct route: clamp before the log, return a Python float
    log_p = probs.clamp(min=1e-30).log()
    log_p_y = probs.mean(0).clamp(min=1e-30).log()
    return float(torch.exp((probs * (log_p - log_p_y)).sum(1).mean()))


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
    return (torch.xlogy(probs, probs) - probs * torch.log(torch.tensor(1.0 / k))).sum(1).mean().exp()


def is_exp_inside(probs):  # the mean of exp(KL) instead of exp of the mean
    p_y = probs.mean(0, keepdim=True)
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1).exp().mean()


def is_per_sample(probs):
    p_y = probs.mean(0, keepdim=True)
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, p_y)).sum(1).exp()


def test_inception_score_accepts_correct():
    lecture14.check_inception_score(inception_score)
    lecture14.check_inception_score(inception_score_clamped)


@pytest.mark.parametrize("wrong, message", [
    (is_naive_log, "NaN"),
    (is_no_exp, "uniform predictions"),
    (is_reversed_kl, "one-hot"),
    (is_uniform_marginal, "unbalanced"),
    (is_exp_inside, "unbalanced|random soft"),
    (is_per_sample, "wrong thing"),
])
def test_inception_score_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture14.check_inception_score(wrong)


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
    cross = linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * cross))


def frechet_distance_eigvals(mu1, sigma1, mu2, sigma2):  # tr sqrt(S1 S2) = sum of sqrt of its (real) eigenvalues
    ev = torch.linalg.eigvals(sigma1 @ sigma2).real.clamp(min=0)
    return ((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * ev.sqrt().sum()


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


def test_frechet_distance_accepts_correct():
    lecture14.check_frechet_distance(frechet_distance)
    lecture14.check_frechet_distance(frechet_distance_scipy)
    lecture14.check_frechet_distance(frechet_distance_eigvals)


@pytest.mark.parametrize("wrong, message", [
    (fd_commuting, "full covariances"),
    (fd_elementwise_sqrt, "full covariances|itself"),
    (fd_no_factor_two, "diagonal"),
    (fd_mean_norm, "diagonal"),
    (fd_no_sqrt, "diagonal"),
])
def test_frechet_distance_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture14.check_frechet_distance(wrong)


# ---------------------------------------------------------------- Exercise 3: the unbiased MMD^2


def kernel(a, b):
    return (a @ b.T / a.shape[1] + 1) ** 3


def mmd2_unbiased(x, y):
    m, n = len(x), len(y)
    kxx, kyy = kernel(x, x), kernel(y, y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kernel(x, y).mean())


def mmd2_masked(x, y):  # another correct route: masks off the diagonal, Python float
    def off_diagonal_mean(k):
        mask = ~torch.eye(len(k), dtype=torch.bool)
        return k[mask].mean()
    return float(off_diagonal_mean(kernel(x, x)) + off_diagonal_mean(kernel(y, y)) - 2 * kernel(x, y).mean())


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


def mmd2_sqrt(x, y):  # the MMD itself, not its square
    return mmd2_unbiased(x, y).clamp(min=0).sqrt()


def test_mmd2_accepts_correct():
    lecture14.check_mmd2_unbiased(mmd2_unbiased)
    lecture14.check_mmd2_unbiased(mmd2_masked)


@pytest.mark.parametrize("wrong", [mmd2_biased, mmd2_wrong_normalizer, mmd2_cross_once, mmd2_swapped_sizes,
                                   mmd2_sqrt])
def test_mmd2_rejects_wrong(wrong):
    with pytest.raises(CheckError, match="unbiased MMD"):
        lecture14.check_mmd2_unbiased(wrong)


# ---------------------------------------------------------------- Exercise 4: precision and recall


def precision_recall(real, fake, k=3):
    def radius(a):
        return torch.cdist(a, a).kthvalue(k + 1, dim=1).values

    precision = (torch.cdist(fake, real) <= radius(real)).any(1).double().mean()
    recall = (torch.cdist(real, fake) <= radius(fake)).any(1).double().mean()
    return precision, recall


def precision_recall_sorted(real, fake, k=3):  # another correct route: sort, numpy floats
    def radius(a):
        d = torch.cdist(a, a)
        return d.sort(1).values[:, k]

    p = float(np.mean([(torch.linalg.norm(real - f, dim=1) <= radius(real)).any().item() for f in fake]))
    r = float(np.mean([(torch.linalg.norm(fake - x, dim=1) <= radius(fake)).any().item() for x in real]))
    return p, r


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


def test_precision_recall_accepts_correct():
    lecture14.check_precision_recall(precision_recall)
    lecture14.check_precision_recall(precision_recall_sorted)


@pytest.mark.parametrize("wrong, message", [
    (pr_self_neighbour, "drops half|random sets"),
    (pr_swapped, "drops half"),
    (pr_own_balls, "drops half|random sets"),
    (pr_nearest_ball_only, "drops half|random sets"),
])
def test_precision_recall_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture14.check_precision_recall(wrong)


def test_checks_are_fast():
    start = time.perf_counter()
    lecture14.check_inception_score(inception_score)
    lecture14.check_frechet_distance(frechet_distance)
    lecture14.check_mmd2_unbiased(mmd2_unbiased)
    lecture14.check_precision_recall(precision_recall)
    assert time.perf_counter() - start < 8
