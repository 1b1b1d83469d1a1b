"""Lecture 03 checks: each accepts a correct implementation and rejects the common wrong ones."""

import heapq
import math

import pytest
import torch

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture03

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


def test_causal_mask_accepts_correct():
    lecture03.check_causal_mask(causal_mask)
    lecture03.check_causal_mask(causal_mask_by_index)


@pytest.mark.parametrize("wrong, message", [
    (mask_types_swapped, "wrong connections"),
    (mask_whole_centre_row, "wrong connections"),
    (mask_transposed, "not autoregressive"),
    (mask_right_half, "not autoregressive"),
])
def test_causal_mask_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture03.check_causal_mask(wrong)


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


def test_causal_attention_accepts_correct():
    lecture03.check_causal_attention(attention)
    lecture03.check_causal_attention(attention_torch)


@pytest.mark.parametrize("wrong, message", [
    (attention_anti_causal, "not autoregressive"),
    (attention_no_mask, "not autoregressive"),
    (attention_no_scale, "not close enough"),
    (attention_wrong_axis, "not autoregressive"),
])
def test_causal_attention_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture03.check_causal_attention(wrong)


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


def test_discretized_logistic_accepts_correct():
    lecture03.check_discretized_logistic(dlogistic)
    lecture03.check_discretized_logistic(dlogistic_by_cdf)


@pytest.mark.parametrize("wrong, message", [
    (dlogistic_no_edges, "do not sum to 1"),
    (dlogistic_density, "do not sum to 1"),
    (dlogistic_s_not_exp, "not close enough"),
])
def test_discretized_logistic_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture03.check_discretized_logistic(wrong)


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


def test_huffman_accepts_correct():
    lecture03.check_huffman(huffman)
    lecture03.check_huffman(huffman_canonical)


@pytest.mark.parametrize("wrong, message", [
    (shannon_code, "not optimal"),
    (huffman_merge_largest, "outside|not optimal"),
    (not_prefix_free, "not prefix-free"),
])
def test_huffman_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture03.check_huffman(wrong)


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


def test_narrow_accepts_correct():
    lecture03.check_narrow(narrow)
    lecture03.check_narrow(narrow_by_divmod)


@pytest.mark.parametrize("wrong, message", [
    (narrow_exclusive, "tile"),
    (narrow_overlapping, "tile"),
])
def test_narrow_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture03.check_narrow(wrong)


@pytest.mark.parametrize("check", [lecture03.check_causal_mask, lecture03.check_causal_attention,
                                   lecture03.check_discretized_logistic, lecture03.check_huffman,
                                   lecture03.check_narrow])
def test_stub_raises_not_implemented(check):
    def stub(*args, **kwargs):
        raise NotImplementedError("exN")
    with pytest.raises(NotImplementedError):
        check(stub)
