"""Lecture 03 checks: each accepts a correct implementation and rejects the common wrong ones."""

import heapq
import math
from fractions import Fraction

import numpy as np
import torch
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Liar

from dgm_course.exercises import lecture03


class LyingInt(int):  # an int that says it equals anything
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


class LyingStr(str):  # a string that says it starts with nothing else
    def startswith(self, *args):
        return False

# ---------------------------------------------------------------- Exercise 1: the causal mask

def causal_mask(k, mask_type):
    mask = torch.ones(k, k)
    mask[k // 2, k // 2 + (mask_type == "B"):] = 0
    mask[k // 2 + 1:] = 0
    return mask


def causal_mask_by_index(k, mask_type):  # another correct route: compare raster indices with the centre's
    idx = torch.arange(k * k).reshape(k, k)
    centre = (k * k) // 2
    return (idx < centre).float() if mask_type == "A" else (idx <= centre).float()


def mask_types_swapped(k, mask_type):
    return causal_mask(k, "B" if mask_type == "A" else "A")


def mask_whole_centre_row(k, mask_type):  # off by one row: the pixels to the left are lost
    mask = torch.ones(k, k)
    mask[k // 2:] = 0
    return mask


def mask_transposed(k, mask_type):  # column-major order
    return causal_mask(k, mask_type).T.contiguous()


def mask_right_half(k, mask_type):  # keeps the centre row's right side instead of its left
    return causal_mask(k, mask_type).flip(1)




# ---------------------------------------------------------------- Exercise 2: causal self-attention

def attention(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    scores = (q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


def attention_torch(q, k, v):  # another correct route
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def attention_anti_causal(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool).triu()
    return torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, float("-inf")), -1) @ v


def attention_no_mask(q, k, v):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v


def attention_no_scale(q, k, v):
    t = q.shape[-2]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    return torch.softmax((q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")), -1) @ v


def attention_wrong_axis(q, k, v):
    t, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    return torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, -1e9), -2) @ v




# ---------------------------------------------------------------- Exercise 3: the discretized logistic

def dlogistic(x, mu, log_s):
    inv_s = torch.exp(-log_s)
    plus, minus = inv_s * (x + 0.5 - mu), inv_s * (x - 0.5 - mu)
    log_cdf_plus = torch.nn.functional.logsigmoid(plus)                # x = 0: log P = log sigmoid(plus)
    log_one_minus_cdf_minus = torch.nn.functional.logsigmoid(-minus)   # x = 255: log (1 - sigmoid(minus))
    mid = torch.log(torch.clamp(torch.sigmoid(plus) - torch.sigmoid(minus), min=1e-12))
    return torch.where(x <= 0, log_cdf_plus, torch.where(x >= 255, log_one_minus_cdf_minus, mid))


def dlogistic_by_cdf(x, mu, log_s):  # another correct route: a clamped CDF
    s = log_s.exp()
    upper = torch.where(x >= 255, torch.ones_like(mu), torch.sigmoid((x + 0.5 - mu) / s))
    lower = torch.where(x <= 0, torch.zeros_like(mu), torch.sigmoid((x - 0.5 - mu) / s))
    return torch.log(upper - lower + 1e-30)


def dlogistic_no_edges(x, mu, log_s):
    s = log_s.exp()
    return torch.log(torch.sigmoid((x + 0.5 - mu) / s) - torch.sigmoid((x - 0.5 - mu) / s))


def dlogistic_density(x, mu, log_s):  # the density at the bin centre instead of the mass of the bin
    z = (x - mu) / log_s.exp()
    return -z - log_s - 2 * torch.nn.functional.softplus(-z)


def dlogistic_s_not_exp(x, mu, log_s):  # log_s used as if it were s
    return dlogistic(x, mu, log_s.log())




# ---------------------------------------------------------------- Exercise 4: Huffman codes

def huffman(p):
    heap = [(q, i, [i]) for i, q in enumerate(p)]
    heapq.heapify(heap)
    code = [""] * len(p)
    tie = len(p)
    while len(heap) > 1:
        q0, _, s0 = heapq.heappop(heap)
        q1, _, s1 = heapq.heappop(heap)
        for s in s0:
            code[s] = "0" + code[s]
        for s in s1:
            code[s] = "1" + code[s]
        heapq.heappush(heap, (q0 + q1, tie, s0 + s1))
        tie += 1
    return code


def canonical(lengths):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    code, value, prev = [""] * len(lengths), 0, lengths[order[0]]
    for n, i in enumerate(order):
        if n:
            value = (value + 1) << (lengths[i] - prev)
        code[i] = format(value, f"0{lengths[i]}b")
        prev = lengths[i]
    return code


def huffman_canonical(p):  # another correct route: Huffman lengths, canonical codewords
    return canonical([len(w) for w in huffman(p)])


def shannon_code(p):  # prefix-free, within one bit of H, but not optimal
    return canonical([max(1, math.ceil(-math.log2(q))) for q in p])


def huffman_merge_largest(p):
    heap = [(-q, i, [i]) for i, q in enumerate(p)]
    heapq.heapify(heap)
    code, tie = [""] * len(p), len(p)
    while len(heap) > 1:
        q0, _, s0 = heapq.heappop(heap)
        q1, _, s1 = heapq.heappop(heap)
        for s in s0:
            code[s] = "0" + code[s]
        for s in s1:
            code[s] = "1" + code[s]
        heapq.heappush(heap, (q0 + q1, tie, s0 + s1))
        tie += 1
    return code


def not_prefix_free(p):  # short words by rank: '0', '1', '00', '01', ...
    order = sorted(range(len(p)), key=lambda i: -p[i])
    words = [format(n + 2, "b")[1:] for n in range(len(p))]
    code = [""] * len(p)
    for rank, i in enumerate(order):
        code[i] = words[rank]
    return code




# ---------------------------------------------------------------- Exercise 5: the interval update

def narrow(low, high, c_lo, c_hi, total):
    width = high - low + 1
    return low + width * c_lo // total, low + width * c_hi // total - 1


def narrow_by_divmod(low, high, c_lo, c_hi, total):  # another correct route
    width = high - low + 1
    return low + divmod(width * c_lo, total)[0], low + divmod(width * c_hi, total)[0] - 1


def narrow_exclusive(low, high, c_lo, c_hi, total):  # forgets that [low, high] is inclusive
    width = high - low
    return low + width * c_lo // total, low + width * c_hi // total


def narrow_overlapping(low, high, c_lo, c_hi, total):  # forgets the -1: neighbours share a value
    width = high - low + 1
    return low + width * c_lo // total, low + width * c_hi // total




# ---------------------------------------------------------------- more implementations


def causal_mask_loop(k, mask_type):  # explicit loops over the kernel
    mask = torch.zeros(k, k, dtype=torch.float64)
    c = k // 2
    for r in range(k):
        for col in range(k):
            if r < c or (r == c and (col < c or (mask_type == "B" and col == c))):
                mask[r, col] = 1.0
    return mask


def mask_str_offset(k, mask_type):  # adds the string to an int: a raw TypeError
    mask = torch.ones(k, k)
    mask[k // 2, k // 2 + mask_type:] = 0
    return mask


def mask_bool(k, mask_type):  # a bool mask: multiplies, but the statement asks for floats
    return causal_mask(k, mask_type).bool()


def mask_4d(k, mask_type):  # already shaped for a conv weight: (1, 1, k, k)
    return causal_mask(k, mask_type)[None, None]


def mask_k1_wrong(k, mask_type):  # right for k >= 3, but for k = 1 type B also masks the centre
    return torch.zeros(1, 1) if k == 1 else causal_mask(k, mask_type)


def attention_loop(q, k, v):  # a loop over query positions, float32
    q, k, v = q.float(), k.float(), v.float()
    T, d = q.shape[-2], q.shape[-1]
    rows = []
    for i in range(T):
        scores = (q[..., i:i + 1, :] @ k[..., :i + 1, :].transpose(-2, -1)) / math.sqrt(d)   # (..., 1, i+1)
        rows.append(torch.softmax(scores, -1) @ v[..., :i + 1, :])
    return torch.cat(rows, -2)


def attention_naive_softmax(q, k, v):  # exp / sum without subtracting the maximum: overflows in float32
    T, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(d)) * mask
    return e / e.sum(-1, keepdim=True) @ v


def attention_scale_d(q, k, v):  # divides by d instead of sqrt(d)
    T, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax((q @ k.transpose(-2, -1) / d).masked_fill(~mask, float("-inf")), -1) @ v


def attention_2d_transpose(q, k, v):  # k.T reverses every axis: a raw error for batched inputs
    T, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax((q @ k.T / math.sqrt(d)).masked_fill(~mask, float("-inf")), -1) @ v


def attention_weights(q, k, v):  # returns the (T, T) attention weights, not their average of v
    T, d = q.shape[-2], q.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(d)).masked_fill(~mask, float("-inf")), -1)


def dlogistic_float32(x, mu, log_s):  # computed in float32
    return dlogistic(x.float(), mu.float(), log_s.float())


def dlogistic_loop(x, mu, log_s):  # a loop over elements with math, clamped
    x, mu, log_s = torch.broadcast_tensors(x, mu, log_s)
    out = torch.empty(x.shape, dtype=torch.float64)
    flat_out = out.view(-1)
    for j, (xv, m, ls) in enumerate(zip(x.reshape(-1).tolist(), mu.reshape(-1).tolist(), log_s.reshape(-1).tolist(),
                                            strict=True)):
        s = math.exp(ls)
        upper = 1.0 if xv >= 255 else 1 / (1 + math.exp(-(xv + 0.5 - m) / s))
        lower = 0.0 if xv <= 0 else 1 / (1 + math.exp(-(xv - 0.5 - m) / s))
        flat_out[j] = math.log(max(upper - lower, 1e-12))
    return out


def dlogistic_unclamped(x, mu, log_s):  # the edges right, no clamp: -inf where the mass rounds to 0
    s = log_s.exp()
    upper = torch.where(x >= 255, torch.ones_like(mu), torch.sigmoid((x + 0.5 - mu) / s))
    lower = torch.where(x <= 0, torch.zeros_like(mu), torch.sigmoid((x - 0.5 - mu) / s))
    return torch.log(upper - lower)


def dlogistic_half_bin(x, mu, log_s):  # bins of width 2: x +- 1
    s = log_s.exp()
    upper = torch.where(x >= 255, torch.ones_like(mu), torch.sigmoid((x + 1 - mu) / s))
    lower = torch.where(x <= 0, torch.zeros_like(mu), torch.sigmoid((x - 1 - mu) / s))
    return torch.log(torch.clamp(upper - lower, min=1e-12))


def dlogistic_sum_components(x, mu, log_s):  # sums over the last axis: a mixture without weights
    return dlogistic(x, mu, log_s).sum(-1)


def dlogistic_math_exp(x, mu, log_s):  # math.exp on a tensor: a raw error
    s = math.exp(log_s)
    return dlogistic(x, mu, torch.full_like(mu, math.log(s)))


def huffman_sorted_list(p):  # O(n^2): sort the list of nodes at every merge, float64 weights
    nodes = [(float(np.float64(q)), [i]) for i, q in enumerate(p)]
    code = [""] * len(p)
    while len(nodes) > 1:
        nodes.sort(key=lambda t: t[0])
        (q0, s0), (q1, s1) = nodes[0], nodes[1]
        for s in s0:
            code[s] = "0" + code[s]
        for s in s1:
            code[s] = "1" + code[s]
        nodes = nodes[2:] + [(q0 + q1, s0 + s1)]
    return code


def huffman_dict_heap(p):  # heap entries without a tie-breaker: comparing dicts on ties is a raw TypeError
    heap = [(q, {"symbols": [i]}) for i, q in enumerate(p)]
    heapq.heapify(heap)
    code = [""] * len(p)
    while len(heap) > 1:
        q0, a = heapq.heappop(heap)
        q1, b = heapq.heappop(heap)
        for s in a["symbols"]:
            code[s] = "0" + code[s]
        for s in b["symbols"]:
            code[s] = "1" + code[s]
        heapq.heappush(heap, (q0 + q1, {"symbols": a["symbols"] + b["symbols"]}))
    return code


def huffman_one_symbol_per_level(p):  # a "comb": lengths 1, 2, ..., n-1, n-1 by rank: prefix-free, not optimal
    order = sorted(range(len(p)), key=lambda i: -p[i])
    code = [""] * len(p)
    for rank, i in enumerate(order):
        code[i] = "1" * rank + "0" if rank < len(p) - 1 else "1" * rank
    return code


def huffman_dict(p):  # a dict symbol -> codeword instead of a list
    return dict(enumerate(huffman(p)))


def huffman_lying_words(p):  # prefix-violating words that lie about startswith
    return [LyingStr("0") for _ in p]


def narrow_fraction(low, high, c_lo, c_hi, total):  # exact rational arithmetic, floor by hand in a loop
    width = high - low + 1
    out = []
    for c in (c_lo, c_hi):
        f = Fraction(width * c, total)
        out.append(low + f.numerator // f.denominator)
    return out[0], out[1] - 1


def narrow_float_round(low, high, c_lo, c_hi, total):  # round() instead of floor: tiles, but not the decoder's rule
    width = high - low + 1
    return low + round(width * c_lo / total), low + round(width * c_hi / total) - 1


def narrow_float(low, high, c_lo, c_hi, total):  # float division: returns floats
    width = high - low + 1
    return low + width * c_lo / total, low + width * c_hi / total - 1


def narrow_lying(low, high, c_lo, c_hi, total):
    return LyingInt(0), LyingInt(0)


def narrow_interval(interval, c_lo, c_hi, total):  # another signature: a raw TypeError
    low, high = interval
    return low, high


def narrow_swapped(low, high, c_lo, c_hi, total):  # (new_high, new_low)
    a, b = narrow(low, high, c_lo, c_hi, total)
    return b, a


EXERCISES = {
    "ex1_causal_mask": Exercise(
        check=lecture03.check_causal_mask,
        correct=[causal_mask, causal_mask_by_index, causal_mask_loop],
        wrong=[Wrong(mask_types_swapped, "not autoregressive|wrong connections", "formula"),
               Wrong(mask_whole_centre_row, "wrong connections", "formula"),
               Wrong(mask_transposed, "not autoregressive", "formula"),
               Wrong(mask_right_half, "not autoregressive", "formula"),
               Wrong(mask_bool, "wrong dtype", "property"),
               Wrong(mask_4d, "wrong shape", "shape"),
               Wrong(mask_k1_wrong, r"causal_mask\(1, 'B'\) is wrong", "edge"),
               Wrong(lambda k, t: causal_mask(k, t).as_subclass(Liar), "wrong type", "lie"),
               Wrong(mask_str_offset, "raised TypeError", "raw")],
    ),
    "ex2_causal_attention": Exercise(
        check=lecture03.check_causal_attention,
        correct=[attention, attention_torch, attention_loop],
        wrong=[Wrong(attention_anti_causal, "not autoregressive", "formula"),
               Wrong(attention_no_mask, "not autoregressive", "formula"),
               Wrong(attention_no_scale, "not close enough", "formula"),
               Wrong(attention_scale_d, "not close enough", "formula"),
               Wrong(attention_wrong_axis, "not autoregressive", "formula"),
               Wrong(attention_naive_softmax, "not finite for large scores", "stability"),
               Wrong(attention_weights, "wrong shape", "shape"),
               Wrong(attention_2d_transpose, "raised RuntimeError", "raw"),
               Wrong(lambda q, k, v: attention(q, k, v).as_subclass(Liar), "wrong type", "lie")],
    ),
    "ex3_discretized_logistic": Exercise(
        check=lecture03.check_discretized_logistic,
        correct=[dlogistic, dlogistic_by_cdf, dlogistic_float32, dlogistic_loop],
        wrong=[Wrong(dlogistic_no_edges, "not finite|do not sum to 1", "edge"),
               Wrong(dlogistic_density, "do not sum to 1", "formula"),
               Wrong(dlogistic_s_not_exp, "not close enough|do not sum", "formula"),
               Wrong(dlogistic_half_bin, "do not sum to 1", "formula"),
               Wrong(dlogistic_unclamped, "not finite where the mass is tiny", "stability"),
               Wrong(dlogistic_sum_components, "wrong shape", "shape"),
               Wrong(dlogistic_math_exp, "raised (TypeError|RuntimeError|ValueError)", "raw"),
               Wrong(lambda x, mu, ls: dlogistic(x, mu, ls).as_subclass(Liar), "wrong type", "lie")],
    ),
    "ex4_huffman_code": Exercise(
        check=lecture03.check_huffman,
        correct=[huffman, huffman_canonical, huffman_sorted_list],
        wrong=[Wrong(shannon_code, "not optimal", "formula"),
               Wrong(huffman_merge_largest, "outside|not optimal", "formula"),
               Wrong(huffman_one_symbol_per_level, "not optimal|outside", "formula"),
               Wrong(not_prefix_free, "not prefix-free", "property"),
               Wrong(huffman_dict, "wrong thing", "shape"),
               Wrong(huffman_lying_words, "not prefix-free", "lie"),
               Wrong(huffman_dict_heap, "raised TypeError", "raw")],
    ),
    "ex5_arithmetic_narrow": Exercise(
        check=lecture03.check_narrow,
        correct=[narrow, narrow_by_divmod, narrow_fraction],
        wrong=[Wrong(narrow_exclusive, "tile|statement's formula", "edge"),
               Wrong(narrow_overlapping, "tile|statement's formula", "edge"),
               Wrong(narrow_float_round, "statement's formula", "formula"),
               Wrong(narrow_float, "wrong thing", "precision"),
               Wrong(narrow_swapped, "tile|empty", "formula"),
               Wrong(narrow_lying, "tile", "lie"),
               Wrong(narrow_interval, "raised TypeError", "raw")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
