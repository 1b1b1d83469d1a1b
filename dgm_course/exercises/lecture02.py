"""Checks for lecture 02 (autoregressive models): the FVSBN mask, the sampling loop, NADE's running-sum forward
pass, MADE's masks from connectivity numbers, and the log-likelihood of a mask ensemble.

Every check builds its own random problem from a fixed seed and computes the reference independently of the
lecture: autoregressive structure through the autograd Jacobian (`checks.check_autoregressive`), NADE against
the naive O(D^2 H) recomputation of every hidden vector, samplers against exactly enumerated joint
probabilities (`checks.check_sampler`), the ensemble against a float64 log-sum-exp.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import checks

DOUBLE = torch.float64


def _call(what: str, fn: Callable, *args, **kwargs):
    """Call the student's function; a NotImplementedError (the stub) passes through unchanged."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # a crash is reported as a failed check with the error in the message
        checks.fail(f"{what} raised {type(err).__name__}", "a result", str(err)[:200],
                    "run the function on a small input and look at the shapes")


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the FVSBN mask
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_fvsbn_mask", "Exercise 1: the FVSBN mask")
def check_fvsbn_mask(fvsbn_mask: Callable[[int], torch.Tensor]) -> None:
    """Exercise 1: `fvsbn_mask(D)` is the (D, D) 0/1 mask with M[i, j] = 1 exactly when j < i."""
    for D, seed in ((6, 0), (11, 1)):
        M = _call("fvsbn_mask", fvsbn_mask, D)
        checks.check_tensor(f"fvsbn_mask({D})", M, shape=(D, D))
        values = torch.unique(M.detach().cpu().float())
        if not all(v in (0.0, 1.0) for v in values.tolist()):
            checks.fail(f"fvsbn_mask({D}) is not a 0/1 mask", "entries 0 and 1 only", f"values {values.tolist()}")
        g = torch.Generator().manual_seed(seed)
        W, b = torch.randn(D, D, generator=g), torch.randn(D, generator=g)
        M = M.detach().cpu().float()

        def logits(x, W=W, b=b, M=M):                       # (B, D) -> (B, D): the FVSBN's masked linear layer
            return F.linear(x, W * M, b)

        checks.check_autoregressive(logits, D, require_all=True, seed=seed, name=f"a linear layer with fvsbn_mask({D})")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: the sampling loop
# ----------------------------------------------------------------------------------------------------------

class _TableModel:
    """A 3-pixel autoregressive model with arbitrary conditionals: logit of x_i given every value of x_<i."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.t0 = 1.5 * torch.randn((), generator=g, dtype=DOUBLE)         # logit p(x_0 = 1)
        self.t1 = 1.5 * torch.randn(2, generator=g, dtype=DOUBLE)          # logit p(x_1 = 1 | x_0)
        self.t2 = 1.5 * torch.randn(2, 2, generator=g, dtype=DOUBLE)       # logit p(x_2 = 1 | x_0, x_1)
        self.calls = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:                      # (n, 3) -> (n, 3)
        self.calls += 1
        b = x.detach().round().long().clamp(0, 1)
        out = torch.stack([self.t0.expand(len(x)), self.t1[b[:, 0]], self.t2[b[:, 0], b[:, 1]]], 1)
        return out.to(x.dtype)

    def joint(self, temperature: float = 1.0) -> torch.Tensor:
        """(8,) exact probabilities of the outcomes 4 x_0 + 2 x_1 + x_2, each conditional tempered."""
        p = torch.empty(8, dtype=DOUBLE)
        for k in range(8):
            x0, x1, x2 = (k >> 2) & 1, (k >> 1) & 1, k & 1
            terms = [(self.t0, x0), (self.t1[x0], x1), (self.t2[x0, x1], x2)]
            p[k] = math.prod(float(torch.sigmoid(t / temperature)) if v else float(torch.sigmoid(-t / temperature))
                             for t, v in terms)
        return p


def _encode(x: torch.Tensor) -> torch.Tensor:
    return (4 * x[:, 0] + 2 * x[:, 1] + x[:, 2]).round().long()


@checks.exercise("ex2_sampling_loop", "Exercise 2: the sampling loop")
def check_sampler(sample_autoregressive: Callable) -> None:
    """Exercise 2: `sample_autoregressive(logits_fn, x, start, temperature, generator)` draws x_start, ..., x_{D-1}
    one at a time from their conditionals, keeping x_0, ..., x_{start-1}, with each logit divided by temperature."""
    model = _TableModel(seed=3)
    n = 20000

    def unconditional(temperature):
        def sample(count, generator):
            x = torch.zeros(count, 3)
            out = _call("sample_autoregressive", sample_autoregressive, model.logits, x, 0, temperature, generator)
            checks.check_tensor("the sampled x", out, shape=(count, 3))
            values = torch.unique(out.detach()).tolist()
            if not set(values) <= {0.0, 1.0}:
                checks.fail("the sampled x is not binary", "values 0 and 1", f"values {values[:6]}",
                            "draw each pixel with torch.bernoulli(p, generator=generator)")
            return _encode(out)
        return sample

    checks.check_sampler(unconditional(1.0), model.joint(1.0), n=n, seed=0, name="sample_autoregressive (temperature 1)")

    model.calls = 0
    unconditional(1.0)(5, torch.Generator().manual_seed(1))
    if model.calls < 3:
        checks.fail("sample_autoregressive calls the model too few times", "one call per sampled pixel (3 here)",
                    f"{model.calls} call(s)", "pixel i must be drawn after pixels 0..i-1, from logits computed with them")

    # conditioning: x_0 given (half the rows 0, half 1), x_1 and x_2 drawn
    def conditional(count, generator):
        x = torch.zeros(count, 3)
        x[count // 2:, 0] = 1.0
        out = _call("sample_autoregressive", sample_autoregressive, model.logits, x.clone(), 1, 1.0, generator)
        checks.check_tensor("the completed x", out, shape=(count, 3))
        if not torch.equal(out[:, 0], x[:, 0]):
            checks.fail("sample_autoregressive changed the given pixels", "x[:, :start] returned unchanged",
                        "different values there", "only positions start, ..., D-1 are sampled")
        return _encode(out)

    joint = model.joint(1.0)                                                    # the prefix is half 0, half 1:
    p_x0 = torch.stack([joint[:4].sum(), joint[4:].sum()])
    mixture = torch.cat([joint[:4] / p_x0[0] / 2, joint[4:] / p_x0[1] / 2])      # x_0 fixed half-half
    checks.check_sampler(conditional, mixture, n=n, seed=2, name="sample_autoregressive (x_0 given, start=1)")

    checks.check_sampler(unconditional(0.5), model.joint(0.5), n=n, seed=4,
                         name="sample_autoregressive (temperature 0.5)")


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: NADE's running-sum forward pass
# ----------------------------------------------------------------------------------------------------------

def nade_logits_naive(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor, b: torch.Tensor,
                      g: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid) -> torch.Tensor:
    """The O(D^2 H) reference: every a_i = c + W[:, :i] x_<i recomputed from scratch. (B, D) -> (B, D)."""
    D = x.shape[1]
    out = []
    for i in range(D):
        a_i = c + x[:, :i] @ W[:, :i].T                         # (B, H)
        out.append(b[i] + g(a_i) @ V[i])                         # (B,)
    return torch.stack(out, 1)


@checks.exercise("ex3_nade_running_sum", "Exercise 3: NADE's running-sum forward pass")
def check_nade_logits(nade_logits: Callable) -> None:
    """Exercise 3: `nade_logits(x, W, c, V, b, g)` returns the (B, D) logits of p(x_i = 1 | x_<i) of a NADE with
    hidden nonlinearity g (the sigmoid by default)."""
    for D, H, seed, g_name in ((9, 5, 0, None), (14, 8, 1, "tanh")):
        g = torch.Generator().manual_seed(seed)
        W, V = torch.randn(H, D, generator=g, dtype=DOUBLE), torch.randn(D, H, generator=g, dtype=DOUBLE)
        c, b = torch.randn(H, generator=g, dtype=DOUBLE), torch.randn(D, generator=g, dtype=DOUBLE)
        x = torch.bernoulli(torch.full((6, D), 0.4, dtype=DOUBLE), generator=g)
        extra = () if g_name is None else (torch.tanh,)       # the default g, then g = tanh passed explicitly
        found = _call("nade_logits", nade_logits, x.clone(), W, c, V, b, *extra)
        checks.check_tensor("nade_logits(x, W, c, V, b)", found, shape=(6, D))
        checks.check_close(f"NADE logits (g = {g_name or 'the default, sigmoid'})", found,
                           nade_logits_naive(x, W, c, V, b, *extra), atol=1e-8, rtol=1e-6,
                           hint="a_1 = c, and a_{i+1} = a_i + W[:, i] x_i only after the logit of x_i is computed; "
                                "logit_i = b_i + V[i] . g(a_i), with the g that was passed")
        checks.check_autoregressive(lambda v, W=W, c=c, V=V, b=b, e=extra: nade_logits(v.double(), W, c, V, b, *e),
                                    D, require_all=True, seed=seed, name="nade_logits")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: MADE masks from connectivity numbers
# ----------------------------------------------------------------------------------------------------------

def _degrees(D: int, hidden: tuple[int, ...], g: torch.Generator) -> list[torch.Tensor]:
    """A random ordering (m^0 a permutation of 1..D) and hidden connectivity numbers that cover every value."""
    m = [torch.randperm(D, generator=g) + 1]
    low = 1
    for H in hidden:
        cover = torch.arange(low, D)                                   # every allowed value at least once
        rest = torch.randint(low, D, (H - len(cover),), generator=g)
        m_l = torch.cat([cover, rest])[torch.randperm(H, generator=g)]
        m.append(m_l)
        low = int(m_l.min())
    return m


@checks.exercise("ex4_made_masks", "Exercise 4: MADE masks")
def check_made_masks(made_masks: Callable) -> None:
    """Exercise 4: `made_masks(m)` turns connectivity numbers m = [m^0 (D,), m^1 (H_1,), ..., m^L (H_L,)] into the
    L + 1 masks of a MADE, (H_1, D), (H_2, H_1), ..., (D, H_L), which make output d depend on exactly the
    inputs d' with m^0(d') < m^0(d)."""
    for D, hidden, seed in ((7, (12,), 0), (8, (10, 9), 1)):
        g = torch.Generator().manual_seed(seed)
        m = _degrees(D, hidden, g)
        masks = _call("made_masks", made_masks, [t.clone() for t in m])
        if not isinstance(masks, (list, tuple)) or len(masks) != len(hidden) + 1:
            checks.fail("made_masks returns the wrong number of masks", f"a list of {len(hidden) + 1} masks",
                        f"{type(masks).__name__} of length {len(masks) if hasattr(masks, '__len__') else '?'}",
                        "one mask per weight matrix: L hidden layers and the output layer")
        sizes = [D, *hidden, D]
        for i, M in enumerate(masks):
            checks.check_tensor(f"mask {i}", M, shape=(sizes[i + 1], sizes[i]))
        weights = [torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=DOUBLE) for i in range(len(masks))]
        biases = [0.1 * torch.randn(sizes[i + 1], generator=g, dtype=DOUBLE) for i in range(len(masks))]
        masks = [M.detach().cpu().to(DOUBLE) for M in masks]

        def made(x, weights=weights, biases=biases, masks=masks):    # tanh keeps every path alive
            h = x.double()
            for i, (W_i, b_i, M_i) in enumerate(zip(weights, biases, masks, strict=True)):
                h = F.linear(h, W_i * M_i, b_i)
                h = torch.tanh(h) if i < len(weights) - 1 else h
            return h

        order = torch.argsort(m[0]).tolist()                            # the input with m^0 = 1 comes first
        checks.check_autoregressive(made, D, order=order, require_all=True, seed=seed,
                                    name=f"a MADE with {len(hidden)} hidden layer(s) and these masks")


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: the log-likelihood of a mask ensemble
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex5_mask_ensemble", "Exercise 5: the ensemble log-likelihood")
def check_ensemble_log_prob(ensemble_log_prob: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Exercise 5: `ensemble_log_prob(log_p)` maps (K, N) per-mask log-likelihoods to the (N,) log-likelihood of
    the mixture (1/K) sum_k p_k(x)."""
    g = torch.Generator().manual_seed(5)
    for K, N, scale in ((4, 7, 3.0), (9, 5, 20.0)):
        log_p = -90.0 + scale * torch.randn(K, N, generator=g, dtype=DOUBLE)   # MNIST-sized log-likelihoods
        found = _call("ensemble_log_prob", ensemble_log_prob, log_p.clone())
        checks.check_tensor("ensemble_log_prob(log_p)", found, shape=(N,))
        expected = torch.logsumexp(log_p, 0) - math.log(K)
        checks.check_close("the ensemble log-likelihood", found, expected, atol=1e-6, rtol=1e-7,
                           hint="average the probabilities p_k(x), not the log-probabilities, and do it in log "
                                "space: exp(-90) is fine, exp(-800) is 0 in float32")
    big = -800.0 + 5.0 * torch.randn(3, 4, generator=g)                    # float32; exp underflows to 0
    found = _call("ensemble_log_prob", ensemble_log_prob, big.clone())
    if not isinstance(found, torch.Tensor) or found.shape != (4,) or not torch.isfinite(found).all():
        checks.fail("the ensemble log-likelihood of very unlikely points is not finite", "finite numbers near -800",
                    "-inf, NaN or a wrong shape", "exp(-800) underflows: use torch.logsumexp")
    checks.check_close("the ensemble log-likelihood of very unlikely points", found,
                       torch.logsumexp(big.double(), 0) - math.log(3), atol=1e-3, rtol=1e-6)
