"""Checks for lecture 03 (maximum likelihood, PixelCNN, compression): the causal convolution mask, causal
self-attention, the discretized logistic likelihood, Huffman codes and the arithmetic coder's interval update.

Every check builds its own random problem from a fixed seed and computes its reference independently of the
lecture (dependency patterns through autograd, float64 closed forms, an exhaustive partition test).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks

DOUBLE = torch.float64


# ----------------------------------------------------------------------------------------------------------
# Exercise 1: the causal mask of a masked convolution (types A and B)
# ----------------------------------------------------------------------------------------------------------

def _masked_conv(mask: torch.Tensor, c_in: int, c_out: int, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A k x k convolution with random weights multiplied by `mask`, zero padding, same output size."""
    k = mask.shape[-1]
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(c_out, c_in, k, k, generator=g) * mask
    bias = torch.randn(c_out, generator=g)
    return lambda h: F.conv2d(h, weight, bias, padding=k // 2)


def _expected_pattern(size: int, k: int, mask_type: str) -> torch.Tensor:
    """(D, D) boolean: output pixel i of one masked k x k layer may depend on input pixel j (raster order)."""
    r, c = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    dr, dc = r[None, :] - r[:, None], c[None, :] - c[:, None]          # (D, D): input minus output position
    inside = (dr.abs() <= k // 2) & (dc.abs() <= k // 2)
    before = (dr < 0) | ((dr == 0) & ((dc < 0) if mask_type == "A" else (dc <= 0)))
    return inside & before


def _as_mask(causal_mask: Callable, k: int, mask_type: str) -> torch.Tensor:
    mask = checks.plain(f"causal_mask({k}, {mask_type!r})", causal_mask(k, mask_type))
    checks.check_tensor(f"causal_mask({k}, {mask_type!r})", mask, shape=(k, k))
    if not torch.is_floating_point(mask):
        checks.fail(f"causal_mask({k}, {mask_type!r}) has the wrong dtype", "a float tensor of 0s and 1s",
                    str(mask.dtype), "it multiplies the float weights of the convolution")
    if not ((mask == 0) | (mask == 1)).all():
        checks.fail(f"causal_mask({k}, {mask_type!r}) is not a 0/1 mask", "entries 0 or 1",
                    f"values from {mask.min().item():.3g} to {mask.max().item():.3g}")
    return mask.detach().float()


@checks.exercise("ex1_causal_mask", "Exercise 1: the causal mask of a masked convolution")
def check_causal_mask(causal_mask: Callable) -> None:
    """Exercise 1: `causal_mask(k, mask_type)` is the (k, k) 0/1 mask of a type "A" or "B" masked convolution."""
    size = 7
    # A stack A -> B -> B on 7 x 7 images must be autoregressive in raster order (checked through its Jacobian).
    layers = [_masked_conv(_as_mask(causal_mask, 5, "A"), 1, 4, seed=1),
              _masked_conv(_as_mask(causal_mask, 3, "B"), 4, 4, seed=2),
              _masked_conv(_as_mask(causal_mask, 3, "B"), 4, 1, seed=3)]

    def stack(x):                                        # (B, 49) -> (B, 49)
        h = x.reshape(-1, 1, size, size)
        for i, layer in enumerate(layers):
            h = layer(torch.tanh(h) if i else h)
        return h.reshape(len(x), -1)

    checks.check_autoregressive(stack, size * size, name="a PixelCNN stack (type A, then two type-B layers)")
    # One layer of each type and size must see exactly the pixels of its window that come before (A) or up to (B).
    for k in (3, 5, 7):
        for mask_type in ("A", "B"):
            layer = _masked_conv(_as_mask(causal_mask, k, mask_type), 1, 1, seed=10 + k)
            basis = torch.eye(size * size).reshape(-1, 1, size, size)          # one image per input pixel
            with torch.no_grad():                                                # the layer is linear: columns
                deps = (layer(basis) - layer(torch.zeros_like(basis[:1]))).reshape(size * size, -1).T != 0
            want = _expected_pattern(size, k, mask_type)
            if not torch.equal(deps, want):
                i, j = (int(v) for v in (deps != want).nonzero()[0])
                (ri, ci), (rj, cj) = divmod(i, size), divmod(j, size)
                checks.fail(f"a single type-{mask_type} layer with a {k} x {k} kernel has the wrong connections",
                            f"output pixel (row {ri}, col {ci}) {'depends' if want[i, j] else 'does not depend'} "
                            f"on input pixel (row {rj}, col {cj})",
                            "it does not" if want[i, j] else "it does",
                            "type A sees the rows above and the pixels to the left in the centre row; type B "
                            "also sees the centre pixel itself")
    # The smallest kernel, k = 1: type A sees nothing (the centre is the current pixel), type B its own feature.
    for mask_type, want in (("A", 0.0), ("B", 1.0)):
        mask = _as_mask(causal_mask, 1, mask_type)
        if float(mask.reshape(())) != want:
            checks.fail(f"causal_mask(1, {mask_type!r}) is wrong", f"[[{want:g}]]", f"[[{float(mask.reshape(())):g}]]",
                        "a 1 x 1 kernel is only its centre: masked for type A, kept for type B")


# ----------------------------------------------------------------------------------------------------------
# Exercise 2: causal self-attention
# ----------------------------------------------------------------------------------------------------------

def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(future, -math.inf), -1) @ v


@checks.exercise("ex2_causal_attention", "Exercise 2: causal self-attention")
def check_causal_attention(causal_self_attention: Callable) -> None:
    """Exercise 2: `causal_self_attention(q, k, v)` = softmax(q k^T / sqrt(d) + causal mask) v, (B, T, d)."""
    g = torch.Generator().manual_seed(0)
    b, t, d = 3, 9, 8
    q, k, v = (torch.randn(b, t, d, generator=g, dtype=DOUBLE) for _ in range(3))
    out = checks.plain("the attention output", causal_self_attention(q.clone(), k.clone(), v.clone()))
    checks.check_tensor("the attention output", out, shape=(b, t, d))
    # The defining property first: position i mixes positions j <= i only. Inputs are shifted one step to the
    # right (as a pixel transformer does with its start token), so the result must be strictly autoregressive.
    wq, wk, wv = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(3))

    def shifted(x):                                      # (1, T) -> (1, T): embed, shift right, attend, read out
        h = torch.cat([x.new_zeros(1, 1), x[:, :-1]], 1)[..., None] * torch.linspace(-1, 1, d)   # (1, T, d)
        return checks.plain("the attention output", causal_self_attention(h @ wq, h @ wk, h @ wv),
                            differentiable=True).sum(-1)

    checks.check_autoregressive(shifted, t, require_all=True, name="causal self-attention after a one-step shift")
    checks.check_close("the attention output", out, _reference_attention(q, k, v), *checks.tolerance(out.dtype, 10),
                       hint="scores q k^T are divided by sqrt(d), masked with -inf above the diagonal, and the "
                            "softmax runs over the keys (the last axis)")
    # Sharp attention in float32 (scores in the hundreds, as in a trained model), with two head dimensions.
    q, k, v = (torch.randn(2, 3, t, d, generator=g) for _ in range(3))
    q = 40.0 * q
    out = checks.plain("the attention output", causal_self_attention(q.clone(), k.clone(), v.clone()))
    checks.check_tensor("the attention output for (2, 3, T, d) inputs", out, shape=(2, 3, t, d), finite=False)
    if not torch.isfinite(out).all():
        checks.fail("the attention output is not finite for large scores (float32, scores in the hundreds)",
                    "finite values", "NaN or inf", "exp(100) overflows float32: use torch.softmax, which subtracts "
                    "the maximum first, and -inf (not a large negative number times a mask) for the masked scores")
    checks.check_close("the attention output for large scores (float32, (2, 3, T, d) inputs)", out,
                       _reference_attention(q.double(), k.double(), v.double()), *checks.tolerance(torch.float32, 100))


# ----------------------------------------------------------------------------------------------------------
# Exercise 3: the discretized logistic likelihood
# ----------------------------------------------------------------------------------------------------------

def _reference_dlogistic(x: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    s = log_s.exp()
    upper = torch.where(x >= 255, torch.ones_like(mu), torch.sigmoid((x + 0.5 - mu) / s))
    lower = torch.where(x <= 0, torch.zeros_like(mu), torch.sigmoid((x - 0.5 - mu) / s))
    return (upper - lower).log()


@checks.exercise("ex3_discretized_logistic", "Exercise 3: the discretized logistic likelihood")
def check_discretized_logistic(discretized_logistic_log_prob: Callable) -> None:
    """Exercise 3: `discretized_logistic_log_prob(x, mu, log_s)`, the log mass of the bin [x - 0.5, x + 0.5]."""
    g = torch.Generator().manual_seed(0)
    n, kk = 40, 3
    mu = torch.rand(n, kk, generator=g, dtype=DOUBLE) * 300 - 20          # some means beyond the edges
    log_s = torch.rand(n, kk, generator=g, dtype=DOUBLE) * 3.0 + 0.5      # s from 1.6 to 33
    values = torch.arange(256, dtype=DOUBLE)
    # Summed over all 256 values, each component must give probability 1: the edge bins take the tails.
    logp_all = checks.plain("the log-probabilities", discretized_logistic_log_prob(values[:, None, None], mu[None],
                                                                                  log_s[None]))   # (256, N, K)
    checks.check_tensor("the log-probabilities of all 256 values", logp_all, shape=(256, n, kk), finite=False)
    if not torch.isfinite(logp_all).all():
        bad = (~torch.isfinite(logp_all)).nonzero()[0].tolist()
        checks.fail("log P(x) is not finite where the mass is tiny",
                    "finite values for every x in 0..255 (a clamp inside the log, or a stable formula)",
                    f"{logp_all[tuple(bad)].item()} at x = {bad[0]}, mu = {mu[bad[1], bad[2]].item():.1f}, "
                    f"s = {log_s[bad[1], bad[2]].exp().item():.2f}",
                    "two sigmoids that both round to 1 leave a difference of 0, and log(0) = -inf")
    total = logp_all.exp().sum(0)
    err = (total - 1).abs().max().item()
    if not err < 1e-4:
        checks.fail("the probabilities over the 256 values do not sum to 1", "sum over x of P(x) = 1 for every mu, s",
                    f"sums from {total.min().item():.4f} to {total.max().item():.4f}",
                    "x = 0 takes all the mass below 0.5 and x = 255 all the mass above 254.5")
    x = torch.randint(0, 256, (n, 1), generator=g).to(DOUBLE)
    x[:4] = 0.0
    x[4:8] = 255.0
    logp = checks.plain("log P(x)", discretized_logistic_log_prob(x.clone(), mu.clone(), log_s.clone()))
    checks.check_tensor("log P(x)", logp, shape=(n, kk), finite=False)
    ref = _reference_dlogistic(x, mu, log_s)
    # compare where the mass is not vanishingly small; float32 resolves a difference of two sigmoids near 1 only to
    # about 1e-7, so float32 work is compared where P(x) > 1e-3
    floor = -15.0 if logp.dtype == DOUBLE else -7.0
    keep = ref > floor
    checks.check_close(f"log P(x) (where P(x) > {math.exp(floor):.0e})", logp[keep], ref[keep],
                       *checks.tolerance(logp.dtype, 10),
                       hint="P(x) = sigmoid((x + 0.5 - mu) / s) - sigmoid((x - 0.5 - mu) / s), with s = exp(log_s): "
                            "a mass of a bin, not a density at its centre")


# ----------------------------------------------------------------------------------------------------------
# Exercise 4: Huffman codes
# ----------------------------------------------------------------------------------------------------------

def _optimal_expected_length(p: list[float]) -> float:
    """Expected length of an optimal prefix code: the sum of the weights of all merged nodes (Huffman's theorem)."""
    heap = list(p)
    heapq.heapify(heap)
    total = 0.0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total


@checks.exercise("ex4_huffman_code", "Exercise 4: Huffman codes")
def check_huffman(huffman_code: Callable) -> None:
    """Exercise 4: `huffman_code(p)` returns one codeword ('0'/'1' string) per symbol, an optimal prefix code."""
    rng = np.random.default_rng(4)                       # its own generator: the notebook's random state is untouched
    sources = [[0.5, 0.5], [0.9, 0.05, 0.05], [0.25] * 4]
    for k in (3, 5, 8, 13, 26):
        for concentration in (0.3, 3.0):
            w = rng.gamma(concentration, 1.0, size=k) + 1e-3
            sources.append((w / w.sum()).tolist())
    for p in sources:
        code = huffman_code(list(p))
        if not isinstance(code, (list, tuple)) or len(code) != len(p):
            checks.fail("huffman_code returns the wrong thing", f"a list of {len(p)} codewords, one per symbol",
                        f"{type(code).__name__} of length {len(code) if hasattr(code, '__len__') else '?'}")
        if not all(isinstance(w, str) and w and set(w) <= {"0", "1"} for w in code):
            checks.fail("a codeword is not a non-empty string of '0' and '1'", "e.g. '0', '10', '110'",
                        repr([w for w in code if not (isinstance(w, str) and w and set(w) <= {'0', '1'})][0]))
        code = [str.__str__(w) for w in code]            # plain strings: a subclass cannot decide the comparisons
        for a in range(len(code)):
            for b in range(len(code)):
                if a != b and code[b].startswith(code[a]):
                    checks.fail(f"the code is not prefix-free (source with {len(p)} symbols)",
                                "no codeword is the beginning of another",
                                f"codeword {code[a]!r} of symbol {a} begins codeword {code[b]!r} of symbol {b}",
                                "read the codewords off the leaves of one binary tree")
        lengths = torch.tensor([len(w) for w in code], dtype=DOUBLE)
        pt = torch.tensor(p, dtype=DOUBLE)
        L, H = float((pt * lengths).sum()), float(-(pt * pt.log2()).sum())
        if not H - 1e-9 <= L < H + 1:
            checks.fail("the expected length is outside [H, H + 1)", f"{H:.4f} <= L < {H + 1:.4f}", f"L = {L:.4f}")
        best = _optimal_expected_length(list(p))
        if L > best + 1e-9:
            checks.fail(f"the code is prefix-free but not optimal (source with {len(p)} symbols)",
                        f"expected length {best:.4f} bits", f"{L:.4f} bits",
                        "always merge the two LEAST probable nodes; ceil(-log2 p) lengths are not optimal")


# ----------------------------------------------------------------------------------------------------------
# Exercise 5: the interval update of the arithmetic coder
# ----------------------------------------------------------------------------------------------------------

@checks.exercise("ex5_arithmetic_narrow", "Exercise 5: the interval update of the arithmetic coder")
def check_narrow(narrow: Callable) -> None:
    """Exercise 5: `narrow(low, high, c_lo, c_hi, total)` gives the symbol's sub-interval of the integer [low, high].

    The sub-intervals of all symbols must tile [low, high] exactly, in order, each one non-empty and roughly
    proportional to its frequency, and everything must stay in Python integers (no floating-point rounding).
    """
    rng = random.Random(0)
    for trial in range(300):
        total = rng.choice([2, 3, 10, 2**8, 2**16])
        k = rng.randint(2, min(total, 12))
        cuts = sorted(rng.sample(range(1, total), k - 1))
        cdf = [0, *cuts, total]
        low = rng.randrange(0, 2**31)
        width = rng.randrange(2**30 + 1, 2**32 - low) if trial % 3 else rng.randrange(total, 4 * total)
        high = low + width - 1
        prev_high = low - 1
        for s in range(k):
            out = narrow(low, high, cdf[s], cdf[s + 1], total)
            if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(v, int) for v in out)):
                checks.fail("narrow returns the wrong thing", "a pair of Python ints (new_low, new_high)",
                            repr(out)[:80], "use integer arithmetic: (width * c) // total")
            new_low, new_high = int(out[0]), int(out[1])   # plain ints: a subclass cannot decide the comparisons
            if new_low != prev_high + 1:
                checks.fail("the sub-intervals of the symbols do not tile [low, high]",
                            f"symbol {s} starts at {prev_high + 1}, right after symbol {s - 1} ends"
                            if s else f"symbol 0 starts at low = {low}",
                            f"it starts at {new_low}",
                            "the interval is inclusive: width = high - low + 1, and a sub-interval ends one "
                            "before the next one starts")
            if new_high < new_low:
                checks.fail("a symbol gets an empty sub-interval", "new_low <= new_high",
                            f"[{new_low}, {new_high}]")
            share = (new_high - new_low + 1) / width
            freq = (cdf[s + 1] - cdf[s]) / total
            if abs(share - freq) > 2 / width:
                checks.fail("a sub-interval is not proportional to its symbol's frequency",
                            f"a share of {freq:.6f} of [low, high]", f"{share:.6f}")
            want = (low + width * cdf[s] // total, low + width * cdf[s + 1] // total - 1)
            if (new_low, new_high) != want:
                checks.fail("a sub-interval differs from the statement's formula (the decoder must round the same way)",
                            f"[{want[0]}, {want[1]}]", f"[{new_low}, {new_high}]",
                            "low' = low + floor(w c_lo / total) and high' = low + floor(w c_hi / total) - 1, with "
                            "integer floor division")
            prev_high = new_high
        if prev_high != high:
            checks.fail("the sub-intervals of the symbols do not tile [low, high]",
                        f"the last symbol ends at high = {high}", f"it ends at {prev_high}",
                        "the interval is inclusive: width = high - low + 1")
