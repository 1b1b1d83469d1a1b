"""Checks for the exercises of lecture 01 (background): parameter counts, Bayes rule, ancestral sampling,
a mixture density, Gaussian discriminant analysis and a histogram density.

Each check draws its own random inputs from a fixed seed, so an answer hard-coded for the notebook's example
fails.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Sequence

import torch

from .. import checks
from ..checks import check_close, check_tensor, fail

Parents = Sequence[Sequence[int]]


def _random_dag(n: int, max_parents: int, g: torch.Generator) -> list[tuple[int, ...]]:
    """Parents of each of n variables in topological order: a random subset of the earlier ones."""
    parents = []
    for i in range(n):
        k = int(torch.randint(0, min(i, max_parents) + 1, (1,), generator=g))
        parents.append(tuple(sorted(torch.randperm(i, generator=g)[:k].tolist())) if i else ())
    return parents


# ---------------------------------------------------------------------------------------------- exercise 1


def _brute_force_count(parents: Parents, k: int) -> int:
    total = 0
    for pa in parents:
        for _ in itertools.product(range(k), repeat=len(pa)):  # one distribution per joint value of the parents
            total += k - 1  # k probabilities that sum to one
    return total


@checks.exercise("ex1_parameter_counts", "Exercise 1: parameter counts")
def check_parameter_counts(num_parameters: Callable[..., int]) -> None:
    """Exercise 1: `num_parameters(parents, num_states)` against a count over every parent assignment."""
    g = torch.Generator().manual_seed(101)
    cases = [
        ("5 independent variables", [()] * 5, 2),
        ("a Markov chain of 6 variables", [()] + [(i - 1,) for i in range(1, 6)], 2),
        ("the chain rule over 6 variables (every earlier variable a parent)", [tuple(range(i)) for i in range(6)], 2),
    ]
    for j, k in enumerate((2, 3, 4, 3)):
        cases.append((f"random network #{j + 1} over 6 variables", _random_dag(6, 3, g), k))
    for name, parents, k in cases:
        found = num_parameters(parents, num_states=k)
        expected = _brute_force_count(parents, k)
        if not isinstance(found, numbers.Integral) or isinstance(found, bool):
            fail(f"num_parameters returns the wrong type for {name}", "a Python int", type(found).__name__,
                 "counts are exact integers; 2**784 does not fit in a float or an int64, so stay with Python ints")
        found = int(found)  # a plain int: a subclass cannot decide the comparison
        if found != expected:
            fail(f"num_parameters is wrong for {name}, {k} states per variable (parents: {list(parents)})",
                 str(expected), str(found),
                 "a variable has one distribution over its k values for every joint value of its parents; "
                 "how many free numbers does one distribution over k values need?")
    n = 784
    found = num_parameters([tuple(range(i)) for i in range(n)], num_states=2)
    if not isinstance(found, numbers.Integral) or isinstance(found, bool) or int(found) != 2**n - 1:
        fail("num_parameters is wrong for the full joint of 784 binary pixels (every earlier pixel a parent)",
             "2**784 - 1 exactly", f"{found:.6g}" if isinstance(found, float) else str(found)[:40],
             "use exact Python integer arithmetic (no floats, numpy or torch integers)")


# ---------------------------------------------------------------------------------------------- exercise 2


@checks.exercise("ex2_bayes_posterior", "Exercise 2: Bayes rule")
def check_bayes_posterior(bayes_posterior: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Exercise 2: log p(z|x) sums to one over z, times p(x) gives the joint, and survives tiny likelihoods."""
    g = torch.Generator().manual_seed(102)
    for K, M in ((2, 3), (4, 2), (3, 5)):
        log_prior = torch.randn(K, generator=g).log_softmax(0)  # (K,)   log p(z)
        log_lik = (2 * torch.randn(K, M, generator=g)).log_softmax(1)  # (K, M) log p(x|z), a row per z
        what = f"bayes_posterior(log_prior (K={K},), log_lik ({K}, {M}))"
        out = check_tensor(what, checks.plain(what, bayes_posterior(log_prior.clone(), log_lik.clone())), shape=(K, M))
        checks.check_sum_to_one(f"exp({what})", out.exp(), dim=0, atol=1e-5)
        log_joint = log_prior.double()[:, None] + log_lik.double()  # log p(z, x), exact for float32 inputs
        check_close(f"{what} + log p(x) compared with log p(z, x)", out.double() + log_joint.logsumexp(0),
                    log_joint, *checks.tolerance(out.dtype, 10), hint="Bayes rule weighs each likelihood by the prior p(z) before normalizing")
        far = checks.plain(what, bayes_posterior(log_prior.clone(), log_lik - 1000.0))  # p(x|z) ~ e^-1000
        check_tensor(f"{what} with log_lik - 1000", far, shape=(K, M), finite=False)
        if not torch.isfinite(far).all():
            fail(f"{what} is not finite when every likelihood is tiny (log_lik - 1000)", "finite log-probabilities",
                 "NaN or inf", "exp(-1000) is 0 in floating point, so 0/0 appears: normalize in log space (logsumexp)")
        check_close(f"{what} with log_lik shifted by -1000 (the posterior must not change)", far, out,
                    *checks.tolerance(torch.float32, 10), hint="a constant added to every log-likelihood cancels in Bayes rule")


# ---------------------------------------------------------------------------------------------- exercise 3


def log_joint(parents: Parents, cpts: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log p(x) = sum_i log p(x_i | x_pa(i)) of binary states x (S, D); cpts[i][pa values] = p(x_i = 1 | pa)."""
    log_p = torch.zeros(len(x), dtype=torch.float64)
    for i, pa in enumerate(parents):
        p1 = cpts[i][tuple(x[:, j] for j in pa)].double()
        log_p += torch.where(x[:, i] == 1, p1, 1 - p1).log()
    return log_p


def _random_network(d: int, g: torch.Generator) -> tuple[list[tuple[int, ...]], list[torch.Tensor]]:
    parents = _random_dag(d, 2, g)
    cpts = [0.05 + 0.9 * torch.rand((2,) * len(pa), generator=g) for pa in parents]
    return parents, cpts


@checks.exercise("ex3_ancestral_sampling", "Exercise 3: ancestral sampling")
def check_ancestral_sampling(ancestral_sample: Callable[..., torch.Tensor]) -> None:
    """Exercise 3: chi-square test of `ancestral_sample(parents, cpts, n, generator)` against the exact joint."""
    g = torch.Generator().manual_seed(103)
    d = 5
    states = torch.cartesian_prod(*[torch.arange(2)] * d)  # (32, d); row r is r written in binary, x_0 first
    powers = 2 ** torch.arange(d - 1, -1, -1)
    for j in range(2):
        parents, cpts = _random_network(d, g)
        probs = log_joint(parents, cpts, states).exp()  # (32,)
        name = f"ancestral_sample on random network #{j + 1} (parents: {parents})"

        def sample(n: int, generator: torch.Generator, parents=parents, cpts=cpts, name=name) -> torch.Tensor:
            x = checks.plain(f"{name}: its output", ancestral_sample(parents, cpts, n, generator))
            x = check_tensor(f"{name}: its output", x, shape=(n, d))
            if not ((x == 0) | (x == 1)).all():
                fail(f"{name} returns values other than 0 and 1", "binary values", f"values {x.unique().tolist()[:6]}")
            return (x.long().cpu() * powers).sum(1)  # (n,) index of each joint state

        state = torch.get_rng_state()
        first = sample(200, torch.Generator().manual_seed(50 + j))
        if not torch.equal(state, torch.get_rng_state()):
            fail(f"{name} uses the global random number generator", "draws from `generator` only",
                 "torch's global random state changed", "pass generator=generator to torch.rand")
        if not torch.equal(first, sample(200, torch.Generator().manual_seed(50 + j))):
            fail(f"{name} is not reproducible", "the same samples from two generators with the same seed",
                 "different samples", "draw every uniform with torch.rand(..., generator=generator)")
        checks.check_sampler(sample, probs, n=20000, seed=j, name=name)


# ---------------------------------------------------------------------------------------------- exercise 4


@checks.exercise("ex4_mixture_log_prob", "Exercise 4: the mixture density")
def check_mixture_log_prob(mixture_log_prob: Callable[..., torch.Tensor]) -> None:
    """Exercise 4: log p(x) of a 1-D Gaussian mixture: finite far away, normalized, equal to sum_k pi_k N(x)."""
    g = torch.Generator().manual_seed(104)
    for K in (2, 3):
        log_pi = torch.randn(K, generator=g).log_softmax(0)  # (K,)
        mu = 3 * torch.randn(K, generator=g)  # (K,)
        sigma = 0.3 + torch.rand(K, generator=g)  # (K,) standard deviations
        what = f"mixture_log_prob with K={K} components"

        def f(x: torch.Tensor, log_pi=log_pi, mu=mu, sigma=sigma) -> torch.Tensor:
            return mixture_log_prob(x, log_pi, mu, sigma)

        far = check_tensor(f"{what} at x = -80 and 80", checks.plain(what, f(torch.tensor([-80.0, 80.0]))), shape=(2,),
                           finite=False)
        if not torch.isfinite(far).all():
            fail(f"{what} is not finite far from every component (x = -80, 80)", "finite log-densities",
                 f"{far.tolist()}", "exp of a very negative number is 0 in floating point; combine the components "
                 "with torch.logsumexp instead of taking the log of a sum")
        checks.check_normalized(lambda x, f=f, what=what: checks.plain(what, f(x)), float(mu.min()) - 8, float(mu.max()) + 8,
                                n=8001, atol=2e-3, name=what)
        x = mu[torch.randint(K, (300,), generator=g)] + 2 * torch.randn(300, generator=g)
        normal = torch.distributions.Normal(mu, sigma)
        expected = torch.logsumexp(log_pi + normal.log_prob(x[:, None]), -1)
        found = check_tensor(what, checks.plain(what, f(x)), shape=(300,))
        check_close(f"{what} at random points", found, expected, atol=1e-4,
                    rtol=1e-4, hint="each component is weighted by its mixing probability; sigma is a standard deviation")


# ---------------------------------------------------------------------------------------------- exercise 5


@checks.exercise("ex5_gda_fit", "Exercise 5: Gaussian discriminant analysis")
def check_gda_fit(fit_gda: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Exercise 5: the maximum-likelihood pi, mu and shared Sigma of Gaussian discriminant analysis."""
    g = torch.Generator().manual_seed(105)
    for C, D, N, offset in ((2, 2, 40, 0.0), (3, 3, 90, 0.0), (3, 2, 400, 300.0)):
        y = torch.multinomial(torch.tensor([0.55, 0.3, 0.15][:C]), N, replacement=True, generator=g)
        y[:C] = torch.arange(C)  # every class present, in unequal numbers
        x = torch.randn(N, D, generator=g) @ torch.randn(D, D, generator=g) + 3 * torch.randn(C, D, generator=g)[y]
        x = x + offset  # far from the origin: float32 data whose spread is small next to its mean
        out = fit_gda(x.clone(), y.clone(), C)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            fail("fit_gda returns the wrong thing", "a tuple (pi, mu, Sigma)", type(out).__name__)
        pi, mu, Sigma = (checks.plain(name, v) for name, v in zip(("pi", "mu", "Sigma"), out, strict=True))
        check_tensor("pi", pi, shape=(C,))
        check_tensor("mu", mu, shape=(C, D))
        check_tensor("Sigma", Sigma, shape=(D, D))
        counts = torch.bincount(y, minlength=C).double()
        pi_hat = counts / N
        mu_hat = torch.stack([x[y == c].double().mean(0) for c in range(C)])
        diff = x.double() - mu_hat[y]
        Sigma_hat = diff.T @ diff / N
        where = f"({C} classes of sizes {counts.long().tolist()}, D={D}" + (f", data near {offset:g})" if offset else ")")
        check_close(f"pi {where}", pi, pi_hat, atol=1e-5, hint="pi_c is the fraction of training points in class c")
        check_close(f"mu {where}", mu, mu_hat, atol=1e-4, rtol=1e-5, hint="mu_c averages the points of class c only")
        check_close(f"Sigma {where}", Sigma, Sigma_hat, atol=1e-4, rtol=1e-4,
                    hint="one covariance shared by all classes: center each point at the mean of its own class "
                         "(subtract the means first: E[xx^T] - mu mu^T loses the digits in float32), and divide by N "
                         "as maximum likelihood does (not N - 1, not per class)")


# ---------------------------------------------------------------------------------------------- exercise 6


def _histogram_reference(x_train: torch.Tensor, x: torch.Tensor, bins: int, lim: float,
                         alpha: float) -> torch.Tensor:
    width = 2 * lim / bins

    def cell(p):  # (N, 2) -> (N, 2) integer bin coordinates, the right edge in the last bin
        return ((p + lim) / width).floor().long().clamp(0, bins - 1)

    same = (cell(x)[:, None, :] == cell(x_train)[None, :, :]).all(-1)  # (M, N)
    counts = same.sum(1).double()
    return ((counts + alpha) / (len(x_train) + alpha * bins**2) / width**2).log()


@checks.exercise("ex6_histogram_density", "Exercise 6: histogram density")
def check_histogram_density(histogram_log_prob: Callable[..., torch.Tensor]) -> None:
    """Exercise 6: the smoothed 2-D histogram density: defined at the box edges, normalized, equal to counts."""
    g = torch.Generator().manual_seed(106)
    for bins, lim, alpha, N in ((5, 2.0, 0.5, 300), (12, 1.5, 0.1, 500)):
        u = torch.rand(N, 2, generator=g)
        x_train = torch.stack([u[:, 0] * 1.9 * lim - 0.95 * lim, (u[:, 1] ** 2) * 1.2 * lim - 0.6 * lim], 1)
        what = f"histogram_log_prob (bins={bins}, lim={lim}, alpha={alpha}, N={N})"

        def f(x: torch.Tensor, x_train=x_train, bins=bins, lim=lim, alpha=alpha) -> torch.Tensor:
            return histogram_log_prob(x_train, x, bins, lim, alpha)

        edges = torch.tensor([[lim, lim], [-lim, -lim], [lim, -lim], [-lim, lim]])
        try:
            at_edges = checks.plain(what, f(edges))
        except NotImplementedError:
            raise
        except Exception as err:  # typically an index one past the last bin
            fail(f"{what} fails at the corners of the box", "a log-density at x = (+-lim, +-lim)",
                 f"{type(err).__name__}: {err}", "a point on the right edge x = lim belongs to the last bin")
        check_tensor(f"{what} at the corners", at_edges, shape=(4,))
        checks.check_normalized(lambda p, f=f, what=what: checks.plain(what, f(p)), -lim, lim, dim=2, atol=1e-2, name=what)
        x = torch.cat([edges, (2 * torch.rand(400, 2, generator=g) - 1) * lim])
        check_close(f"{what} at random points of the box", check_tensor(what, checks.plain(what, f(x)), shape=(len(x),)),
                    _histogram_reference(x_train, x, bins, lim, alpha), atol=1e-4, rtol=1e-4,
                    hint="count the training points in the bin of x (both coordinates), add alpha, normalize over "
                         "all bins, and divide by the area of a bin")


__all__ = [
    "check_ancestral_sampling", "check_bayes_posterior", "check_gda_fit", "check_histogram_density",
    "check_mixture_log_prob", "check_parameter_counts", "log_joint",
]
