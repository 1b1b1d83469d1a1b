"""Checks for lecture 02 (autoregressive models): the FVSBN mask, the sampling loop, NADE's running-sum forward
pass, MADE's masks from connectivity numbers, MADE's forward pass and loss, and the log-likelihood of a mask
ensemble.

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


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the FVSBN mask
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex1_fvsbn_mask", "Exercise 1: the FVSBN mask")
def check_fvsbn_mask(fvsbn_mask: Callable[[int], torch.Tensor]) -> None:
    """Exercise 1: `fvsbn_mask(D)` is the (D, D) 0/1 mask with M[i, j] = 1 exactly when j < i."""
    for D, seed in ((6, 0), (11, 1)):
        M = checks.plain(f"fvsbn_mask({D})", fvsbn_mask(D))
        checks.check_tensor(f"fvsbn_mask({D})", M, shape=(D, D))
        values = torch.unique(M.detach().cpu().float())
        if not all(v in (0.0, 1.0) for v in values.tolist()):
            checks.fail(f"fvsbn_mask({D}) is not a 0/1 mask", "entries 0 and 1 only", f"values {values.tolist()}")
        g = torch.Generator().manual_seed(seed)
        W, b = torch.randn(D, D, generator=g), torch.randn(D, generator=g)
        M = M.cpu().float()

        def logits(x, W=W, b=b, M=M):                       # (B, D) -> (B, D): the FVSBN's masked linear layer
            return F.linear(x, W * M, b)

        checks.check_autoregressive(logits, D, require_all=True, seed=seed, name=f"a linear layer with fvsbn_mask({D})")
    M = checks.plain("fvsbn_mask(1)", fvsbn_mask(1))                   # the edge case: one pixel, no context
    checks.check_tensor("fvsbn_mask(1)", M, shape=(1, 1))
    if float(M.reshape(())) != 0.0:
        checks.fail("fvsbn_mask(1) is wrong", "[[0.]]: a single pixel has no pixel before it",
                    f"[[{float(M.reshape(())):g}]]", "M[i, j] = 1 only when j < i")


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
            out = checks.plain("the sampled x", sample_autoregressive(model.logits, x, 0, temperature, generator))
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

    # the generator alone decides the draws: the same seed gives the same samples, the global RNG is untouched
    x = torch.zeros(50, 3)
    state = torch.get_rng_state()
    first = checks.plain("the sampled x", sample_autoregressive(model.logits, x.clone(), 0, 1.0,
                                                                torch.Generator().manual_seed(7)))
    if not torch.equal(state, torch.get_rng_state()):
        checks.fail("sample_autoregressive uses the global random number generator", "draws from `generator` only",
                    "torch's global random state changed", "pass generator=generator to torch.bernoulli")
    second = checks.plain("the sampled x", sample_autoregressive(model.logits, x.clone(), 0, 1.0,
                                                                 torch.Generator().manual_seed(7)))
    if not torch.equal(first, second):
        checks.fail("sample_autoregressive is not reproducible", "the same samples from two generators with one seed",
                    "different samples", "draw every pixel with torch.bernoulli(p, generator=generator)")
    sample_autoregressive(model.logits, x, 0, 1.0, torch.Generator().manual_seed(8))
    if not torch.equal(x, torch.zeros(50, 3)):
        checks.fail("sample_autoregressive changed its input x in place", "x left as it was (fill a copy)",
                    "x was modified", "start with x = x.clone()")

    # conditioning: x_0 given (half the rows 0, half 1), x_1 and x_2 drawn
    def conditional(count, generator):
        x = torch.zeros(count, 3)
        x[count // 2:, 0] = 1.0
        out = checks.plain("the completed x", sample_autoregressive(model.logits, x.clone(), 1, 1.0, generator))
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
        inputs = (x, W, c, V, b)
        copies = [t.clone() for t in inputs]
        found = checks.plain("nade_logits(x, W, c, V, b)", nade_logits(*copies, *extra))
        checks.check_tensor("nade_logits(x, W, c, V, b)", found, shape=(6, D))
        for name, before, after in zip("x W c V b".split(), inputs, copies, strict=True):
            if not torch.equal(before, after):
                checks.fail(f"nade_logits changed its argument {name} in place", f"{name} left as it was",
                            "modified values", "build the running sum in a new tensor (a = a + ..., not a += ... "
                            "on a view of c)")
        checks.check_close(f"NADE logits (g = {g_name or 'the default, sigmoid'})", found,
                           nade_logits_naive(x, W, c, V, b, *extra), *checks.tolerance(found.dtype, 10),
                           hint="a_1 = c, and a_{i+1} = a_i + W[:, i] x_i only after the logit of x_i is computed; "
                                "logit_i = b_i + V[i] . g(a_i), with the g that was passed")
        checks.check_autoregressive(lambda v, W=W, c=c, V=V, b=b, e=extra: checks.plain(
                                        "nade_logits", nade_logits(v.double(), W, c, V, b, *e), differentiable=True),
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
        masks = made_masks([t.clone() for t in m])
        if not isinstance(masks, (list, tuple)) or len(masks) != len(hidden) + 1:
            checks.fail("made_masks returns the wrong number of masks", f"a list of {len(hidden) + 1} masks",
                        f"{type(masks).__name__} of length {len(masks) if hasattr(masks, '__len__') else '?'}",
                        "one mask per weight matrix: L hidden layers and the output layer")
        sizes = [D, *hidden, D]
        masks = [checks.plain(f"mask {i}", M) for i, M in enumerate(masks)]
        for i, M in enumerate(masks):
            checks.check_tensor(f"mask {i}", M, shape=(sizes[i + 1], sizes[i]))
            if not ((M == 0) | (M == 1)).all():
                checks.fail(f"mask {i} is not a 0/1 mask", "entries 0 and 1 only",
                            f"values from {float(M.min()):g} to {float(M.max()):g}")
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
# Exercise 5: MADE's forward pass and negative log-likelihood
# ----------------------------------------------------------------------------------------------------------

def _made_problem(D: int, hidden: tuple[int, ...], seed: int, scale: float = 1.0, direct: bool = True):
    """A random MADE (float32): weights, biases, masks from covering connectivity numbers and a random
    ordering, direct weights and their mask; and the ordering (the input seen first comes first)."""
    g = torch.Generator().manual_seed(seed)
    m = _degrees(D, hidden, g)
    masks = [(m_l[:, None] >= m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    masks.append((m[0][:, None] > m[-1][None, :]).float())
    sizes = [D, *hidden, D]
    weights = [scale * torch.randn(sizes[i + 1], sizes[i], generator=g) / math.sqrt(sizes[i])
               for i in range(len(sizes) - 1)]
    biases = [0.3 * torch.randn(sizes[i + 1], generator=g) for i in range(len(sizes) - 1)]
    A = scale * torch.randn(D, D, generator=g) / math.sqrt(D) if direct else None
    mask_A = (m[0][:, None] > m[0][None, :]).float() if direct else None
    return weights, biases, masks, A, mask_A, torch.argsort(m[0]).tolist()


def _made_reference(x, weights, biases, masks, A=None, mask_A=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference in float64: logits (B, D) and -log p(x) (B,) by log-sigmoids."""
    h = x.double()
    for i, (W, b, M) in enumerate(zip(weights, biases, masks, strict=True)):
        h = F.linear(h, W.double() * M.double(), b.double())
        h = torch.relu(h) if i < len(weights) - 1 else h
    if A is not None:
        h = h + F.linear(x.double(), A.double() * mask_A.double())
    log_p = (x.double() * F.logsigmoid(h) + (1 - x.double()) * F.logsigmoid(-h)).sum(1)
    return h, -log_p


def _made_outputs(made_forward: Callable, x, weights, biases, masks, A=None, mask_A=None,
                  differentiable: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the student's made_forward and return its (logits, nll) as plain tensors, shapes checked."""
    out = made_forward(x, list(weights), list(biases), list(masks), A, mask_A)
    if not isinstance(out, tuple) or len(out) != 2:
        checks.fail("made_forward returns the wrong thing", "a pair (logits, nll)",
                    f"{type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""),
                    "return the logits of all D conditionals and the per-image negative log-likelihood")
    logits = checks.plain("the logits", out[0], differentiable=differentiable)
    nll = checks.plain("the nll", out[1], differentiable=differentiable)
    B, D = x.shape
    checks.check_tensor("the logits", logits, shape=(B, D), finite=False)
    checks.check_tensor("the nll (one value per image: shape (B,))", nll, shape=(B,), finite=False)
    return logits, nll


@checks.exercise("ex5_made_forward", "Exercise 5: MADE's forward pass and loss")
def check_made_forward(made_forward: Callable) -> None:
    """Exercise 5: `made_forward(x, weights, biases, masks, A, mask_A)` -> (logits (B, D), nll (B,)) of a MADE
    with ReLU hidden layers and masked direct connections; nll = -log p(x), differentiable in the weights."""
    # 1. The autoregressive property through the Jacobian, with every earlier input reached (2 hidden layers).
    for D, hidden, seed in ((6, (10,), 0), (7, (9, 8), 1)):
        weights, biases, masks, A, mask_A, order = _made_problem(D, hidden, seed)
        try:
            checks.check_autoregressive(lambda v, w=weights, b=biases, m=masks, a=A, ma=mask_A:
                                        _made_outputs(made_forward, v, w, b, m, a, ma, differentiable=True)[0],
                                        D, order=order, require_all=True, seed=seed,
                                        name=f"made_forward's logits ({len(hidden)} hidden layer(s), a random ordering)")
        except checks.CheckError as err:
            if "drops connections" not in str(err):
                raise
            what, expected, found = (line.split(":", 1)[-1].strip() for line in str(err).splitlines()[:3])
            checks.fail(what, expected, found, "ReLU units can be off, so the direct term (A * mask_A) x is what "
                        "guarantees every earlier input a path: add it whenever A is given")

    # 2. The logits and the exact negative log-likelihood on all 2^D images of a tiny model; p sums to one.
    D = 6
    weights, biases, masks, A, mask_A, _ = _made_problem(D, (10, 8), seed=2)
    states = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * D)            # (64, 6): every binary image
    for with_direct in (True, False):
        a, ma = (A, mask_A) if with_direct else (None, None)
        logits, nll = _made_outputs(made_forward, states.clone(), weights, biases, masks, a, ma)
        ref_logits, ref_nll = _made_reference(states, weights, biases, masks, a, ma)
        what = "with direct connections" if with_direct else "without direct connections (A = None)"
        atol, rtol = checks.tolerance(torch.float32, 10)
        checks.check_close(f"the logits {what}", logits, ref_logits, atol=atol, rtol=rtol,
                           hint="h = relu((W * M) h + b) in every hidden layer, no ReLU on the output layer, and "
                                "the direct term (A * mask_A) x added to the output when A is given")
        total = nll.double().neg().exp().sum()
        if not abs(float(total) - 1) < 1e-4:
            checks.fail(f"exp(-nll) summed over all {2 ** D} binary images is not 1 ({what})",
                        "sum_x p(x) = 1", f"{float(total):.6g}",
                        "nll must be -log p(x) = -sum_d [x_d log sigma(l_d) + (1 - x_d) log(1 - sigma(l_d))], "
                        "summed over the D pixels of each image")
        checks.check_close(f"the nll {what}", nll, ref_nll, atol=atol, rtol=rtol,
                           hint="-log p(x) sums the binary cross-entropy of every pixel, with its logit")

    # 3. A confident model (logits of size 100): the nll must stay finite and exact in float32.
    weights, biases, masks, A, mask_A, _ = _made_problem(D, (10,), seed=3, scale=25.0)
    x = torch.bernoulli(torch.full((16, D), 0.5), generator=torch.Generator().manual_seed(3))
    _, nll = _made_outputs(made_forward, x.clone(), weights, biases, masks, A, mask_A)
    ref_logits, ref_nll = _made_reference(x, weights, biases, masks, A, mask_A)
    if not torch.isfinite(nll).all():
        checks.fail(f"the nll of a confident model (logits up to {ref_logits.abs().max():.0f}) is not finite",
                    "finite values", "inf or NaN",
                    "in float32, 1 - sigmoid(17) rounds to 0 and sigmoid(-104) underflows to 0, and log(0) = -inf: "
                    "compute log sigma(l) from the logit (F.logsigmoid, or F.binary_cross_entropy_with_logits)")
    checks.check_close(f"the nll of a confident model (logits up to {ref_logits.abs().max():.0f})", nll, ref_nll,
                       atol=1e-3, rtol=1e-5, hint="compute log sigma(l) from the logit (F.logsigmoid), "
                       "not log(sigmoid(l)) with a clamp, which cannot go below the clamp's value")

    # 4. Differentiable in every weight, with the gradient of the exact loss.
    weights, biases, masks, A, mask_A, _ = _made_problem(D, (10,), seed=4)
    params = [t.clone().requires_grad_(True) for t in (*weights, *biases, A)]
    x = torch.bernoulli(torch.full((8, D), 0.4), generator=torch.Generator().manual_seed(4))
    n_w = len(weights)
    with torch.enable_grad():
        _, nll = _made_outputs(made_forward, x.clone(), params[:n_w], params[n_w:2 * n_w], masks, params[-1],
                               mask_A, differentiable=True)
        if not nll.requires_grad:
            checks.fail("the nll is not differentiable", "a tensor that carries gradients to the weights",
                        "a tensor without a grad_fn (detached, or rebuilt from .item() or numpy)",
                        "the lecture trains MADE by backpropagating through this nll: keep it in torch")
        grads = torch.autograd.grad(nll.mean(), params, allow_unused=True)
        ref_params = [p.detach().double().requires_grad_(True) for p in params]
        _, ref_nll = _made_reference(x, ref_params[:n_w], ref_params[n_w:2 * n_w], masks, ref_params[-1], mask_A)
        ref_grads = torch.autograd.grad(ref_nll.mean(), ref_params)
    names = [f"weights[{i}]" for i in range(n_w)] + [f"biases[{i}]" for i in range(n_w)] + ["A"]
    for name, found, expected in zip(names, grads, ref_grads, strict=True):
        found = torch.zeros_like(expected) if found is None else found
        checks.check_close(f"the gradient of nll.mean() with respect to {name}", found, expected,
                           atol=1e-4, rtol=1e-4, hint="every weight must reach the nll through torch operations")

    # 5. Training: 30 Adam steps on a fixed batch lower the exact loss as much as the reference's steps do.
    D, hidden = 8, (24,)
    weights, biases, masks, A, mask_A, _ = _made_problem(D, hidden, seed=5)
    x = torch.bernoulli(torch.rand(64, D, generator=torch.Generator().manual_seed(5)) ** 2)
    start = float(_made_reference(x, weights, biases, masks, A, mask_A)[1].mean())

    def train(loss_fn):
        params = [t.clone().requires_grad_(True) for t in (*weights, *biases, A)]
        optimizer = torch.optim.Adam(params, lr=0.03)
        with torch.enable_grad():
            for _ in range(30):
                optimizer.zero_grad()
                loss = loss_fn(params)
                loss.backward()
                optimizer.step()
        p = [t.detach() for t in params]
        return float(_made_reference(x, p[:len(weights)], p[len(weights):-1], masks, p[-1], mask_A)[1].mean())

    def student_loss(p):
        _, nll = _made_outputs(made_forward, x.clone(), p[:len(weights)], p[len(weights):-1], masks, p[-1],
                               mask_A, differentiable=True)
        return nll.mean()

    found = train(student_loss)
    expected = train(lambda p: _made_reference(x, p[:len(weights)], p[len(weights):-1], masks, p[-1],
                                               mask_A)[1].mean().float())
    if not abs(found - expected) <= 2e-3 * abs(expected) + 1e-3:
        checks.fail("30 Adam steps on nll.mean() do not lower the exact loss like the reference",
                    f"{start:.4f} -> {expected:.4f} nats per image", f"{start:.4f} -> {found:.4f}",
                    "train on the mean of your per-image nll; every weight must get its gradient")


# ----------------------------------------------------------------------------------------------------------
# Exercise 6: the log-likelihood of a mask ensemble
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex6_mask_ensemble", "Exercise 6: the ensemble log-likelihood")
def check_ensemble_log_prob(ensemble_log_prob: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Exercise 6: `ensemble_log_prob(log_p)` maps (K, N) per-mask log-likelihoods to the (N,) log-likelihood of
    the mixture (1/K) sum_k p_k(x)."""
    g = torch.Generator().manual_seed(5)
    for K, N, scale in ((4, 7, 3.0), (9, 5, 20.0)):
        log_p = -90.0 + scale * torch.randn(K, N, generator=g)               # MNIST-sized log-likelihoods, float32
        found = checks.plain("ensemble_log_prob(log_p)", ensemble_log_prob(log_p.clone()))
        checks.check_tensor("ensemble_log_prob(log_p)", found, shape=(N,))
        expected = torch.logsumexp(log_p.double(), 0) - math.log(K)
        checks.check_close("the ensemble log-likelihood", found, expected,
                           hint="average the probabilities p_k(x), not the log-probabilities, and do it in log "
                                "space: exp(-90) is fine, exp(-800) is 0 in float32")
    big = -800.0 + 5.0 * torch.randn(3, 4, generator=g)                    # float32; exp underflows to 0
    found = checks.plain("ensemble_log_prob(log_p)", ensemble_log_prob(big.clone()))
    checks.check_tensor("ensemble_log_prob(log_p)", found, shape=(4,), finite=False)
    if not torch.isfinite(found).all():
        checks.fail("the ensemble log-likelihood of very unlikely points is not finite", "finite numbers near -800",
                    "-inf or NaN", "exp(-800) underflows: use torch.logsumexp")
    checks.check_close("the ensemble log-likelihood of very unlikely points", found,
                       torch.logsumexp(big.double(), 0) - math.log(3))
    one = -90.0 + torch.randn(1, 5, generator=g)                             # K = 1: the ensemble is the model
    found = checks.plain("ensemble_log_prob(log_p) with K = 1", ensemble_log_prob(one.clone()))
    checks.check_tensor("ensemble_log_prob(log_p) with K = 1", found, shape=(5,))
    checks.check_close("the ensemble log-likelihood with K = 1 mask", found, one[0].double())
