"""The checks of lecture 01 accept correct solutions and reject the usual mistakes."""

import math

import numpy as np
import torch
from exercise_cases import AlwaysEqual, Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Liar

from dgm_course.exercises import lecture01


class LyingInt(int):  # an int that says it equals anything
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__

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


def sample_global_rng(parents, cpts, n, generator=None):  # ignores the generator it is given
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




# --------------------------------------------------------------------------------- more implementations


def counts_loop(parents, num_states=2):  # explicit loops: one factor num_states per parent
    total = 0
    for pa in parents:
        rows = 1
        for _ in pa:
            rows *= num_states
        total += (num_states - 1) * rows
    return total


def counts_math_prod(parents, num_states=2):  # math.prod of the parents' state counts
    return sum((num_states - 1) * math.prod([num_states] * len(pa)) for pa in parents)


def counts_numpy_int(parents, num_states=2):  # numpy int64: overflows at 2**784
    return int(sum(np.int64(num_states - 1) * np.int64(num_states) ** np.int64(len(pa)) for pa in parents))


def counts_roots_free(parents, num_states=2):  # forgets the roots' own distributions
    return sum((num_states - 1) * num_states ** len(pa) for pa in parents if pa)


def posterior_loop_float64(log_prior, log_lik):  # column by column, float64
    K, M = log_lik.shape
    out = torch.empty(K, M, dtype=torch.float64)
    for m in range(M):
        joint = log_prior.double() + log_lik[:, m].double()
        out[:, m] = joint - torch.logsumexp(joint, 0)
    return out


def posterior_log_softmax(log_prior, log_lik):  # log_softmax over z
    return torch.log_softmax(log_prior[:, None] + log_lik, dim=0)


def posterior_broadcast_error(log_prior, log_lik):  # forgets the [:, None]: a raw broadcasting error
    joint = log_prior + log_lik
    return joint - torch.logsumexp(joint, 0, keepdim=True)


def sample_float64_uniforms(parents, cpts, n, generator=None):  # float64 uniforms, int result
    x = torch.zeros(n, len(parents), dtype=torch.long)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)].double()
        x[:, i] = (torch.rand(n, generator=generator, dtype=torch.float64) < p1).long()
    return x


def sample_probabilities(parents, cpts, n, generator=None):  # returns p(x_i = 1 | pa), not a draw
    x = torch.zeros(n, len(parents))
    for i, pa in enumerate(parents):
        x[:, i] = cpts[i][tuple(x[:, j].long() for j in pa)]
    return x


def sample_float_index(parents, cpts, n, generator=None):  # float states used as indices: a raw IndexError
    x = torch.zeros(n, len(parents))
    for i, pa in enumerate(parents):
        x[:, i] = (torch.rand(n, generator=generator) < cpts[i][tuple(x[:, j] for j in pa)]).float()
    return x


def mixture_loop(x, log_pi, mu, sigma):  # a loop over components, float32, running log-add-exp
    out = torch.full_like(x, -math.inf)
    for k in range(len(mu)):
        term = log_pi[k] - 0.5 * ((x - mu[k]) / sigma[k]) ** 2 - torch.log(sigma[k]) - 0.5 * LOG_2PI
        out = torch.logaddexp(out, term)
    return out


def mixture_float64(x, log_pi, mu, sigma):
    return mixture_right(x.double(), log_pi.double(), mu.double(), sigma.double())


def mixture_per_component(x, log_pi, mu, sigma):  # (N, K): forgets to combine the components
    z = (x[:, None] - mu) / sigma
    return log_pi - 0.5 * z**2 - sigma.log() - 0.5 * LOG_2PI


def mixture_math_log(x, log_pi, mu, sigma):  # math.log on a tensor of K values: a raw ValueError
    z = (x[:, None] - mu) / sigma
    return torch.logsumexp(log_pi - 0.5 * z**2 - math.log(sigma) - 0.5 * LOG_2PI, -1)


def gda_loop(x, y, num_classes):  # loops over classes and points
    N, D = x.shape
    pi, mu = torch.zeros(num_classes), torch.zeros(num_classes, D)
    for c in range(num_classes):
        xc = x[y == c]
        pi[c] = len(xc) / N
        mu[c] = xc.sum(0) / len(xc)
    Sigma = torch.zeros(D, D)
    for n in range(N):
        d = x[n] - mu[y[n]]
        Sigma += torch.outer(d, d)
    return pi, mu, Sigma / N


def gda_float64_cov(x, y, num_classes):  # float64, through torch.cov of the centred points
    x = x.double()
    mu = torch.stack([x[y == c].mean(0) for c in range(num_classes)])
    pi = torch.bincount(y, minlength=num_classes).double() / len(x)
    return pi, mu, torch.cov((x - mu[y]).T, correction=0)


def gda_raw_moments(x, y, num_classes):  # Sigma = E[x x^T] - E_y[mu mu^T]: cancels catastrophically in float32
    pi, mu, _ = gda_right(x, y, num_classes)
    second = x.T @ x / len(x)
    return pi, mu, second - (mu[y].T @ mu[y]) / len(x)


def gda_per_class_sigma(x, y, num_classes):  # (C, D, D): one covariance per class
    pi, mu, _ = gda_right(x, y, num_classes)
    return pi, mu, torch.stack([torch.cov((x[y == c] - mu[c]).T, correction=0) for c in range(num_classes)])


def gda_subclass(x, y, num_classes):
    pi, mu, Sigma = gda_right(x, y, num_classes)
    return pi, mu, Sigma.as_subclass(Liar)


def histogram_loop(x_train, x, bins, lim, alpha):  # a loop over the cells, the right edge put in the last one
    width = 2 * lim / bins
    ij_train = ((x_train + lim) / width).floor().clamp(max=bins - 1)
    ij = ((x + lim) / width).floor().clamp(max=bins - 1)
    out = torch.empty(len(x))
    for a in range(bins):
        for b in range(bins):
            count = ((ij_train[:, 0] == a) & (ij_train[:, 1] == b)).sum().item()
            inside = (ij[:, 0] == a) & (ij[:, 1] == b)
            out[inside] = math.log((count + alpha) / (len(x_train) + alpha * bins**2) / width**2)
    return out


def histogram_float_cells(x_train, x, bins, lim, alpha):  # cell numbers left as floats: a raw IndexError
    width = 2 * lim / bins
    ij = ((x + lim) / width).floor().clamp(0, bins - 1)
    counts = torch.zeros(bins, bins)
    return (counts[ij[:, 0], ij[:, 1]] + alpha).log()


def histogram_float64(x_train, x, bins, lim, alpha):
    return histogram_right(x_train.double(), x.double(), bins, lim, alpha)


def histogram_column(x_train, x, bins, lim, alpha):  # (M, 1)
    return histogram_right(x_train, x, bins, lim, alpha)[:, None]


EXERCISES = {
    "ex1_parameter_counts": Exercise(
        check=lecture01.check_parameter_counts,
        correct=[counts_right, counts_loop, counts_math_prod],
        wrong=[Wrong(counts_no_normalization, "num_parameters is wrong", "formula"),
               Wrong(counts_linear, "num_parameters is wrong", "formula"),
               Wrong(counts_binary_only, "num_parameters is wrong", "formula"),
               Wrong(counts_float, "wrong type", "precision"),
               Wrong(counts_numpy_int, "784 binary pixels", "precision"),
               Wrong(counts_roots_free, "independent variables", "edge"),
               Wrong(lambda parents, num_states=2: LyingInt(3), "num_parameters is wrong", "lie"),
               Wrong(lambda parents, num_states=2: AlwaysEqual(), "wrong type", "lie"),
               Wrong(lambda parents, num_states=2: sum(num_states ** pa for pa in parents), "raised TypeError", "raw")],
    ),
    "ex2_bayes_posterior": Exercise(
        check=lecture01.check_bayes_posterior,
        correct=[posterior_right, posterior_loop_float64, posterior_log_softmax],
        wrong=[Wrong(posterior_probability_space, "not finite", "stability"),
               Wrong(posterior_wrong_axis, "does not sum to 1", "formula"),
               Wrong(posterior_no_prior, "not close enough", "formula"),
               Wrong(posterior_unnormalized, "does not sum to 1", "formula"),
               Wrong(lambda lp, ll: posterior_right(lp, ll).T, "wrong shape", "shape"),
               Wrong(posterior_broadcast_error, "raised RuntimeError", "raw"),
               Wrong(lambda lp, ll: posterior_right(lp, ll).as_subclass(Liar), "wrong type", "lie"),
               Wrong(lambda lp, ll: AlwaysEqual(), "wrong type", "lie")],
    ),
    "ex3_ancestral_sampling": Exercise(
        check=lecture01.check_ancestral_sampling,
        correct=[sample_right, sample_right_bernoulli, sample_float64_uniforms],
        wrong=[Wrong(sample_ignores_parents, "target distribution", "formula"),
               Wrong(sample_flipped, "target distribution", "formula"),
               Wrong(sample_reversed, "target distribution", "formula"),
               Wrong(sample_global_rng, "global random", "randomness"),
               Wrong(sample_probabilities, "other than 0 and 1", "property"),
               Wrong(lambda parents, cpts, n, generator=None: sample_right(parents, cpts, n, generator).T,
                     "wrong shape", "shape"),
               Wrong(sample_float_index, "raised IndexError", "raw"),
               Wrong(lambda parents, cpts, n, generator=None: sample_right(parents, cpts, n, generator).as_subclass(Liar),
                     "wrong type", "lie")],
    ),
    "ex4_mixture_log_prob": Exercise(
        check=lecture01.check_mixture_log_prob,
        correct=[mixture_right, mixture_distributions, mixture_loop, mixture_float64],
        wrong=[Wrong(mixture_log_of_sum, "not finite far", "stability"),
               Wrong(mixture_no_constant, "does not integrate to 1", "formula"),
               Wrong(mixture_variance_as_std, "does not integrate to 1|not close", "formula"),
               Wrong(mixture_no_weights, "not close enough", "formula"),
               Wrong(mixture_no_log_sigma, "does not integrate to 1", "formula"),
               Wrong(mixture_per_component, "wrong shape", "shape"),
               Wrong(mixture_math_log, "raised ValueError", "raw"),
               Wrong(lambda *a: mixture_right(*a).as_subclass(Liar), "wrong type", "lie")],
    ),
    "ex5_gda_fit": Exercise(
        check=lecture01.check_gda_fit,
        correct=[gda_right, gda_loop, gda_float64_cov],
        wrong=[Wrong(gda_unbiased, "Sigma", "formula"),
               Wrong(gda_global_center, "Sigma", "formula"),
               Wrong(gda_average_of_class_covariances, "Sigma", "formula"),
               Wrong(gda_uniform_prior, "pi", "formula"),
               Wrong(gda_mean_over_all, "mu", "formula"),
               Wrong(gda_raw_moments, "Sigma .*data near 300", "precision"),
               Wrong(gda_per_class_sigma, "Sigma has the wrong shape", "shape"),
               Wrong(gda_subclass, "wrong type", "lie"),
               Wrong(lambda x, y, c: gda_right(x, y, c)[:2], "wrong thing", "shape"),
               Wrong(lambda x, y, c: gda_right(x, y.float(), c), "raised RuntimeError", "raw")],
    ),
    "ex6_histogram_density": Exercise(
        check=lecture01.check_histogram_density,
        correct=[histogram_right, histogram_loop, histogram_float64],
        wrong=[Wrong(histogram_no_area, "does not integrate to 1", "formula"),
               Wrong(histogram_alpha_not_normalized, "does not integrate to 1", "formula"),
               Wrong(histogram_transposed, "not close enough", "formula"),
               Wrong(histogram_no_clamp, "fails at the corners", "edge"),
               Wrong(histogram_bins_from_data, "does not integrate|not close", "formula"),
               Wrong(histogram_column, "wrong shape", "shape"),
               Wrong(lambda *a: histogram_right(*a).as_subclass(Liar), "wrong type", "lie"),
               Wrong(histogram_float_cells, "IndexError", "raw")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


# --------------------------------------------------------------------------------- the helper the notebook mirrors


def test_log_joint_sums_to_one():
    g = torch.Generator().manual_seed(0)
    parents, cpts = lecture01._random_network(4, g)
    states = torch.cartesian_prod(*[torch.arange(2)] * 4)
    assert abs(float(lecture01.log_joint(parents, cpts, states).exp().sum()) - 1) < 1e-9
