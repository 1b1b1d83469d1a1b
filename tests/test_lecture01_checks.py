"""The checks of lecture 01 accept correct solutions and reject the usual mistakes."""

import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture01

# --------------------------------------------------------------------------------- exercise 1: parameter counts


def counts_right(parents, num_states=2):
    return sum((num_states - 1) * num_states ** len(pa) for pa in parents)


def counts_no_normalization(parents, num_states=2):  # forgets that probabilities sum to one
    return sum(num_states ** (len(pa) + 1) for pa in parents)


def counts_linear(parents, num_states=2):  # one weight per edge, as if the conditionals were linear
    return sum((num_states - 1) * (len(pa) + 1) for pa in parents)


def counts_binary_only(parents, num_states=2):  # ignores num_states
    return sum(2 ** len(pa) for pa in parents)


def counts_float(parents, num_states=2):  # right formula, float arithmetic: inexact for 2**784
    return sum((num_states - 1) * math.pow(num_states, len(pa)) for pa in parents)


def test_parameter_counts_accepts_correct():
    lecture01.check_parameter_counts(counts_right)


@pytest.mark.parametrize("wrong", [counts_no_normalization, counts_linear, counts_binary_only, counts_float])
def test_parameter_counts_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_parameter_counts(wrong)


# --------------------------------------------------------------------------------- exercise 2: Bayes rule


def posterior_right(log_prior, log_lik):
    log_joint = log_prior[:, None] + log_lik
    return log_joint - torch.logsumexp(log_joint, 0, keepdim=True)


def posterior_probability_space(log_prior, log_lik):  # exp first: 0/0 when every likelihood is tiny
    joint = log_prior.exp()[:, None] * log_lik.exp()
    return (joint / joint.sum(0, keepdim=True)).log()


def posterior_wrong_axis(log_prior, log_lik):  # normalizes over x instead of z
    log_joint = log_prior[:, None] + log_lik
    return log_joint - torch.logsumexp(log_joint, 1, keepdim=True)


def posterior_no_prior(log_prior, log_lik):  # normalized likelihood, prior forgotten
    return log_lik - torch.logsumexp(log_lik, 0, keepdim=True)


def posterior_unnormalized(log_prior, log_lik):  # the joint, not the posterior
    return log_prior[:, None] + log_lik


def test_bayes_posterior_accepts_correct():
    lecture01.check_bayes_posterior(posterior_right)


@pytest.mark.parametrize("wrong", [posterior_probability_space, posterior_wrong_axis, posterior_no_prior,
                                   posterior_unnormalized])
def test_bayes_posterior_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_bayes_posterior(wrong)


# --------------------------------------------------------------------------------- exercise 3: ancestral sampling


def sample_right(parents, cpts, n, generator=None):
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)]
        x[:, i] = (torch.rand(n, generator=generator) < p1).long()
    return x


def sample_right_bernoulli(parents, cpts, n, generator=None):  # another correct way, another random stream
    x = torch.zeros(n, len(parents))
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j].long() for j in pa)].expand(n)
        x[:, i] = torch.bernoulli(p1, generator=generator)
    return x


def sample_right_global_rng(parents, cpts, n, generator=None):  # ignores the generator: still correct
    return sample_right(parents, cpts, n, None)


def sample_ignores_parents(parents, cpts, n, generator=None):  # averages the table over the parents
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i in range(len(parents)):
        x[:, i] = (torch.rand(n, generator=generator) < cpts[i].mean()).long()
    return x


def sample_flipped(parents, cpts, n, generator=None):  # uses p(x_i = 0 | pa) as the probability of a one
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)]
        x[:, i] = (torch.rand(n, generator=generator) > p1).long()
    return x


def sample_reversed(parents, cpts, n, generator=None):  # children before parents: parents still read as zeros
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i in reversed(range(len(parents))):
        p1 = cpts[i][tuple(x[:, j] for j in parents[i])]
        x[:, i] = (torch.rand(n, generator=generator) < p1).long()
    return x


@pytest.mark.parametrize("right", [sample_right, sample_right_bernoulli, sample_right_global_rng])
def test_ancestral_sampling_accepts_correct(right):
    lecture01.check_ancestral_sampling(right)


@pytest.mark.parametrize("wrong", [sample_ignores_parents, sample_flipped, sample_reversed])
def test_ancestral_sampling_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_ancestral_sampling(wrong)


# --------------------------------------------------------------------------------- exercise 4: mixture density

LOG_2PI = math.log(2 * math.pi)


def mixture_right(x, log_pi, mu, sigma):
    z = (x[:, None] - mu) / sigma
    log_normal = -0.5 * z**2 - sigma.log() - 0.5 * LOG_2PI
    return torch.logsumexp(log_pi + log_normal, -1)


def mixture_distributions(x, log_pi, mu, sigma):  # another correct way
    return torch.logsumexp(log_pi + torch.distributions.Normal(mu, sigma).log_prob(x[:, None]), -1)


def mixture_log_of_sum(x, log_pi, mu, sigma):  # right in exact arithmetic, -inf far from the components
    z = (x[:, None] - mu) / sigma
    pdf = torch.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    return (log_pi.exp() * pdf).sum(-1).log()


def mixture_no_constant(x, log_pi, mu, sigma):  # drops 1/sqrt(2 pi)
    z = (x[:, None] - mu) / sigma
    return torch.logsumexp(log_pi - 0.5 * z**2 - sigma.log(), -1)


def mixture_variance_as_std(x, log_pi, mu, sigma):  # treats sigma as the variance in the exponent
    z2 = (x[:, None] - mu) ** 2 / sigma
    return torch.logsumexp(log_pi - 0.5 * z2 - sigma.log() - 0.5 * LOG_2PI, -1)


def mixture_no_weights(x, log_pi, mu, sigma):  # averages the components with equal weights
    z = (x[:, None] - mu) / sigma
    log_normal = -0.5 * z**2 - sigma.log() - 0.5 * LOG_2PI
    return torch.logsumexp(log_normal, -1) - math.log(len(mu))


def mixture_no_log_sigma(x, log_pi, mu, sigma):  # forgets the -log sigma of each component
    z = (x[:, None] - mu) / sigma
    return torch.logsumexp(log_pi - 0.5 * z**2 - 0.5 * LOG_2PI, -1)


@pytest.mark.parametrize("right", [mixture_right, mixture_distributions])
def test_mixture_log_prob_accepts_correct(right):
    lecture01.check_mixture_log_prob(right)


@pytest.mark.parametrize("wrong", [mixture_log_of_sum, mixture_no_constant, mixture_variance_as_std,
                                   mixture_no_weights, mixture_no_log_sigma])
def test_mixture_log_prob_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_mixture_log_prob(wrong)


# --------------------------------------------------------------------------------- exercise 5: GDA


def gda_right(x, y, num_classes):
    onehot = torch.nn.functional.one_hot(y, num_classes).to(x.dtype)  # (N, C)
    counts = onehot.sum(0)
    pi = counts / len(x)
    mu = onehot.T @ x / counts[:, None]
    diff = x - mu[y]
    return pi, mu, diff.T @ diff / len(x)


def gda_unbiased(x, y, num_classes):  # N - 1 in the covariance
    pi, mu, _ = gda_right(x, y, num_classes)
    diff = x - mu[y]
    return pi, mu, diff.T @ diff / (len(x) - 1)


def gda_global_center(x, y, num_classes):  # centers at the overall mean: adds the between-class spread
    pi, mu, _ = gda_right(x, y, num_classes)
    diff = x - x.mean(0)
    return pi, mu, diff.T @ diff / len(x)


def gda_average_of_class_covariances(x, y, num_classes):  # unweighted average of per-class covariances
    pi, mu, _ = gda_right(x, y, num_classes)
    covs = [(x[y == c] - mu[c]).T @ (x[y == c] - mu[c]) / (y == c).sum() for c in range(num_classes)]
    return pi, mu, torch.stack(covs).mean(0)


def gda_uniform_prior(x, y, num_classes):  # ignores the class frequencies
    _, mu, Sigma = gda_right(x, y, num_classes)
    return torch.full((num_classes,), 1 / num_classes), mu, Sigma


def gda_mean_over_all(x, y, num_classes):  # class means taken over the wrong axis / all points
    pi, _, Sigma = gda_right(x, y, num_classes)
    return pi, x.mean(0).expand(num_classes, -1), Sigma


def test_gda_fit_accepts_correct():
    lecture01.check_gda_fit(gda_right)


@pytest.mark.parametrize("wrong", [gda_unbiased, gda_global_center, gda_average_of_class_covariances,
                                   gda_uniform_prior, gda_mean_over_all])
def test_gda_fit_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_gda_fit(wrong)


# --------------------------------------------------------------------------------- exercise 6: histogram density


def _bin_index(points, bins, lim, clamp=True, transpose=False):
    ij = ((points + lim) / (2 * lim / bins)).floor().long()
    if clamp:
        ij = ij.clamp(0, bins - 1)
    return ij[:, 1] * bins + ij[:, 0] if transpose else ij[:, 0] * bins + ij[:, 1]


def histogram_right(x_train, x, bins, lim, alpha):
    width = 2 * lim / bins
    counts = torch.bincount(_bin_index(x_train, bins, lim), minlength=bins * bins).to(x.dtype)
    p_bin = (counts + alpha) / (len(x_train) + alpha * bins**2)
    return (p_bin / width**2).log()[_bin_index(x, bins, lim)]


def histogram_no_area(x_train, x, bins, lim, alpha):  # a probability per bin, not a density
    counts = torch.bincount(_bin_index(x_train, bins, lim), minlength=bins * bins).to(x.dtype)
    return ((counts + alpha) / (len(x_train) + alpha * bins**2)).log()[_bin_index(x, bins, lim)]


def histogram_alpha_not_normalized(x_train, x, bins, lim, alpha):  # adds alpha but divides by N only
    width = 2 * lim / bins
    counts = torch.bincount(_bin_index(x_train, bins, lim), minlength=bins * bins).to(x.dtype)
    return ((counts + alpha) / len(x_train) / width**2).log()[_bin_index(x, bins, lim)]


def histogram_transposed(x_train, x, bins, lim, alpha):  # looks up the bins of x with the axes swapped
    width = 2 * lim / bins
    counts = torch.bincount(_bin_index(x_train, bins, lim), minlength=bins * bins).to(x.dtype)
    p_bin = (counts + alpha) / (len(x_train) + alpha * bins**2)
    return (p_bin / width**2).log()[_bin_index(x, bins, lim, transpose=True)]


def histogram_no_clamp(x_train, x, bins, lim, alpha):  # x = lim lands one past the last bin
    width = 2 * lim / bins
    counts = torch.bincount(_bin_index(x_train, bins, lim), minlength=bins * bins).to(x.dtype)
    p_bin = (counts + alpha) / (len(x_train) + alpha * bins**2)
    return (p_bin / width**2).log()[_bin_index(x, bins, lim, clamp=False)]


def histogram_bins_from_data(x_train, x, bins, lim, alpha):  # bins over the data's range, not the box
    lo, hi = x_train.min(0).values, x_train.max(0).values
    width = (hi - lo) / bins
    def index(p):
        ij = ((p - lo) / width).floor().long().clamp(0, bins - 1)
        return ij[:, 0] * bins + ij[:, 1]
    counts = torch.bincount(index(x_train), minlength=bins * bins).to(x.dtype)
    p_bin = (counts + alpha) / (len(x_train) + alpha * bins**2)
    return (p_bin / (width[0] * width[1])).log()[index(x)]


def test_histogram_density_accepts_correct():
    lecture01.check_histogram_density(histogram_right)


@pytest.mark.parametrize("wrong", [histogram_no_area, histogram_alpha_not_normalized, histogram_transposed,
                                   histogram_no_clamp, histogram_bins_from_data])
def test_histogram_density_rejects(wrong):
    with pytest.raises(CheckError):
        lecture01.check_histogram_density(wrong)


# --------------------------------------------------------------------------------- the helper the notebook mirrors


def test_log_joint_sums_to_one():
    g = torch.Generator().manual_seed(0)
    parents, cpts = lecture01._random_network(4, g)
    states = torch.cartesian_prod(*[torch.arange(2)] * 4)
    assert abs(float(lecture01.log_joint(parents, cpts, states).exp().sum()) - 1) < 1e-9
