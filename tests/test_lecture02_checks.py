"""Lecture 02 checks: each accepts correct implementations written in several ways and rejects the usual mistakes."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import SubclassTensor as Liar

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture02


class AlwaysEqual:  # an object that says it equals anything
    def __eq__(self, other):
        return True

    shape = property(lambda self: (0,))


# ---------------------------------------------------------------- Exercise 1: the FVSBN mask


def fvsbn_mask(D):
    return torch.tril(torch.ones(D, D), diagonal=-1)


def fvsbn_mask_by_comparison(D):  # M[i, j] = [j < i]
    i = torch.arange(D)
    return (i[None, :] < i[:, None]).float()


def fvsbn_mask_loop(D):  # explicit loops
    M = torch.zeros(D, D)
    for i in range(D):
        for j in range(i):
            M[i, j] = 1.0
    return M


def fvsbn_mask_float64(D):  # numpy, float64
    return torch.from_numpy(np.tril(np.ones((D, D)), k=-1))


def fvsbn_mask_with_diagonal(D):  # x_i sees itself: the classic off-by-one
    return torch.tril(torch.ones(D, D))


def fvsbn_mask_shifted(D):  # one step too far: x_i misses x_{i-1}
    return torch.tril(torch.ones(D, D), diagonal=-2)


def fvsbn_mask_transposed(D):  # upper triangular: x_i sees the future
    return torch.triu(torch.ones(D, D), diagonal=1)


def fvsbn_mask_subdiagonal(D):  # only the previous pixel: a Markov chain, not the chain rule
    return torch.diag(torch.ones(D - 1), -1)


def fvsbn_mask_one_pixel_sees_itself(D):  # right for D >= 2, but the single pixel of D = 1 gets a 1
    return torch.ones(1, 1) if D == 1 else fvsbn_mask(D)


# ---------------------------------------------------------------- Exercise 2: the sampling loop


def sample_autoregressive(logits_fn, x, start=0, temperature=1.0, generator=None):
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] / temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_by_uniforms(logits_fn, x, start=0, temperature=1.0, generator=None):  # u < p
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] / temperature)
        u = torch.rand(p.shape, generator=generator)
        x[:, i] = (u < p).to(x.dtype)
    return x


def sample_float64_per_row(logits_fn, x, start=0, temperature=1.0, generator=None):  # float64 probabilities
    out = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(out)[:, i].double() / temperature)
        out[:, i] = torch.bernoulli(p, generator=generator).to(x.dtype)
    return out


def sample_one_shot(logits_fn, x, start=0, temperature=1.0, generator=None):  # all pixels from one pass
    x = x.clone()
    p = torch.sigmoid(logits_fn(x) / temperature)
    x[:, start:] = torch.bernoulli(p, generator=generator)[:, start:]
    return x


def sample_off_by_one(logits_fn, x, start=0, temperature=1.0, generator=None):  # reads the next pixel's logit
    x = x.clone()
    D = x.shape[1]
    for i in range(start, D):
        p = torch.sigmoid(logits_fn(x)[:, min(i + 1, D - 1)] / temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_times_temperature(logits_fn, x, start=0, temperature=1.0, generator=None):
    x = x.clone()
    for i in range(start, x.shape[1]):
        p = torch.sigmoid(logits_fn(x)[:, i] * temperature)
        x[:, i] = torch.bernoulli(p, generator=generator)
    return x


def sample_ignores_start(logits_fn, x, start=0, temperature=1.0, generator=None):
    return sample_autoregressive(logits_fn, x, 0, temperature, generator)


def sample_probabilities(logits_fn, x, start=0, temperature=1.0, generator=None):  # returns p, not a draw
    x = x.clone()
    for i in range(start, x.shape[1]):
        x[:, i] = torch.sigmoid(logits_fn(x)[:, i] / temperature)
    return x


def sample_global_rng(logits_fn, x, start=0, temperature=1.0, generator=None):  # ignores the generator
    return sample_autoregressive(logits_fn, x, start, temperature, None)


def sample_in_place(logits_fn, x, start=0, temperature=1.0, generator=None):  # overwrites the caller's x
    for i in range(start, x.shape[1]):
        x[:, i] = torch.bernoulli(torch.sigmoid(logits_fn(x)[:, i] / temperature), generator=generator)
    return x


def sample_subclass(logits_fn, x, start=0, temperature=1.0, generator=None):
    return sample_autoregressive(logits_fn, x, start, temperature, generator).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 3: NADE's running sum


def nade_logits(x, W, c, V, b, g=torch.sigmoid):
    a = c.expand(x.shape[0], -1)
    logits = []
    for i in range(x.shape[1]):
        logits.append(b[i] + g(a) @ V[i])
        a = a + x[:, i:i + 1] * W[:, i]
    return torch.stack(logits, 1)


def nade_logits_cumsum(x, W, c, V, b, g=torch.sigmoid):  # exclusive cumulative sum of the contributions
    contrib = x[:, :, None] * W.T                      # (B, D, H)
    a = c + contrib.cumsum(1) - contrib
    return (g(a) * V).sum(-1) + b


def nade_logits_float32(x, W, c, V, b, g=torch.sigmoid):  # computed in float32
    return nade_logits(x.float(), W.float(), c.float(), V.float(), b.float(), g)


def nade_logits_preallocated(x, W, c, V, b, g=torch.sigmoid):  # loops over images too, output preallocated
    B, D = x.shape
    out = x.new_empty(B, D)
    for n in range(B):
        a = c.clone()
        for i in range(D):
            out[n, i] = b[i] + g(a) @ V[i]
            a = a + W[:, i] * x[n, i]
    return out


def nade_logits_inclusive(x, W, c, V, b, g=torch.sigmoid):  # x_i in its own hidden vector
    contrib = x[:, :, None] * W.T
    a = c + contrib.cumsum(1)
    return (g(a) * V).sum(-1) + b


def nade_logits_update_first(x, W, c, V, b, g=torch.sigmoid):  # updates the running sum before using it
    a = c.expand(x.shape[0], -1)
    logits = []
    for i in range(x.shape[1]):
        a = a + x[:, i:i + 1] * W[:, i]
        logits.append(b[i] + g(a) @ V[i])
    return torch.stack(logits, 1)


def nade_logits_no_c(x, W, c, V, b, g=torch.sigmoid):
    return nade_logits(x, W, torch.zeros_like(c), V, b, g)


def nade_logits_shifted(x, W, c, V, b, g=torch.sigmoid):  # the running sum one step late: x_i misses x_{i-1}
    contrib = x[:, :, None] * W.T
    a = contrib.cumsum(1) - contrib
    a = c + torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], 1)
    return (g(a) * V).sum(-1) + b


def nade_logits_always_sigmoid(x, W, c, V, b, g=torch.sigmoid):  # ignores the nonlinearity passed
    return nade_logits(x, W, c, V, b)


def nade_logits_transposed(x, W, c, V, b, g=torch.sigmoid):  # (D, B)
    return nade_logits(x, W, c, V, b, g).T


def nade_logits_in_place(x, W, c, V, b, g=torch.sigmoid):  # grows c itself as the running sum (B = 1 thinking)
    a = c
    logits = []
    for i in range(x.shape[1]):
        logits.append(b[i] + g(a) @ V[i])
        a += x[:, i:i + 1] * W[:, i]
    return torch.stack(logits, 1)


def nade_logits_writes_into_c(x, W, c, V, b, g=torch.sigmoid):  # result right, but c is left modified
    out = nade_logits(x, W, c, V, b, g)
    c.add_(W.sum(1))
    return out


def nade_logits_subclass(x, W, c, V, b, g=torch.sigmoid):
    return nade_logits(x, W, c, V, b, g).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 4: MADE masks


def made_masks(m):
    hidden = [(m_l[:, None] >= m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]


def made_masks_loop(m):  # explicit loops
    masks = []
    for layer in range(1, len(m)):
        M = torch.zeros(len(m[layer]), len(m[layer - 1]))
        for k in range(len(m[layer])):
            for j in range(len(m[layer - 1])):
                M[k, j] = float(m[layer][k] >= m[layer - 1][j])
        masks.append(M)
    out = torch.zeros(len(m[0]), len(m[-1]))
    for d in range(len(m[0])):
        for k in range(len(m[-1])):
            out[d, k] = float(m[0][d] > m[-1][k])
    return masks + [out]


def made_masks_numpy64(m):  # numpy, float64, through np.greater_equal.outer
    a = [t.numpy() for t in m]
    hidden = [torch.from_numpy(np.greater_equal.outer(cur, prev).astype(np.float64)) for prev, cur in zip(a[:-1], a[1:], strict=True)]
    return hidden + [torch.from_numpy(np.greater.outer(a[0], a[-1]).astype(np.float64))]


def made_masks_geq_output(m):  # output d sees hidden units with m = m^0(d): d depends on itself
    masks = made_masks(m)
    masks[-1] = (m[0][:, None] >= m[-1][None, :]).float()
    return masks


def made_masks_strict_hidden(m):  # strict inequality in the hidden layers: connections lost
    hidden = [(m_l[:, None] > m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]


def made_masks_transposed(m):
    return [M.T for M in made_masks(m)]


def made_masks_natural_order(m):  # ignores the ordering m^0 and assumes 1..D
    m = [torch.arange(1, len(m[0]) + 1)] + list(m[1:])
    return made_masks(m)


def made_masks_reversed_hidden(m):  # the hidden inequality turned around: a unit sees later inputs
    hidden = [(m_l[:, None] <= m_prev[None, :]).float() for m_prev, m_l in zip(m[:-1], m[1:], strict=True)]
    return hidden + [(m[0][:, None] > m[-1][None, :]).float()]


def made_masks_subclass(m):
    return [M.as_subclass(Liar) for M in made_masks(m)]


def made_masks_counts(m):  # a mask of path counts instead of 0/1 (ones doubled)
    return [2 * M for M in made_masks(m)]


# ---------------------------------------------------------------- Exercise 5: MADE's forward pass and loss


def made_forward(x, weights, biases, masks, A=None, mask_A=None):
    h = x
    for i, (W, b, M) in enumerate(zip(weights, biases, masks, strict=True)):
        h = F.linear(h, W * M, b)
        h = torch.relu(h) if i < len(weights) - 1 else h
    if A is not None:
        h = h + F.linear(x, A * mask_A)
    nll = F.binary_cross_entropy_with_logits(h, x, reduction="none").sum(1)
    return h, nll


def made_forward_loop(x, weights, biases, masks, A=None, mask_A=None):  # explicit loops over units, logsigmoid
    B, D = x.shape
    h = x
    for layer in range(len(weights)):
        W = weights[layer] * masks[layer]
        out = []
        for k in range(W.shape[0]):
            pre = (h * W[k]).sum(1) + biases[layer][k]
            out.append(pre.clamp(min=0) if layer < len(weights) - 1 else pre)
        h = torch.stack(out, 1)
    if A is not None:
        h = h + x @ (A * mask_A).T
    nll = torch.zeros(B)
    for d in range(D):
        nll = nll - (x[:, d] * F.logsigmoid(h[:, d]) + (1 - x[:, d]) * F.logsigmoid(-h[:, d]))
    return h, nll


def made_forward_float64(x, weights, biases, masks, A=None, mask_A=None):  # float64 and the softplus form
    h = x.double()
    for i, (W, b, M) in enumerate(zip(weights, biases, masks, strict=True)):
        h = h @ (W.double() * M.double()).T + b.double()
        h = F.relu(h) if i < len(weights) - 1 else h
    if A is not None:
        h = h + x.double() @ (A.double() * mask_A.double()).T
    nll = (F.softplus(h) - x.double() * h).sum(1)  # -log p = softplus(l) - x l
    return h.float(), nll.float()


def made_forward_unmasked(x, weights, biases, masks, A=None, mask_A=None):  # forgets the masks
    return made_forward(x, weights, biases, [torch.ones_like(M) for M in masks], A,
                        None if mask_A is None else torch.ones_like(mask_A))


def made_forward_unmasked_direct(x, weights, biases, masks, A=None, mask_A=None):  # direct term unmasked
    return made_forward(x, weights, biases, masks, A, None if mask_A is None else torch.ones_like(mask_A))


def made_forward_relu_output(x, weights, biases, masks, A=None, mask_A=None):  # ReLU on the output layer too
    h = x
    for W, b, M in zip(weights, biases, masks, strict=True):
        h = torch.relu(F.linear(h, W * M, b))
    if A is not None:
        h = h + F.linear(x, A * mask_A)
    return h, F.binary_cross_entropy_with_logits(h, x, reduction="none").sum(1)


def made_forward_no_direct(x, weights, biases, masks, A=None, mask_A=None):  # ignores A
    return made_forward(x, weights, biases, masks)


def made_forward_sign(x, weights, biases, masks, A=None, mask_A=None):  # returns log p instead of -log p
    h, nll = made_forward(x, weights, biases, masks, A, mask_A)
    return h, -nll


def made_forward_mean_pixels(x, weights, biases, masks, A=None, mask_A=None):  # mean over pixels, not the sum
    h, _ = made_forward(x, weights, biases, masks, A, mask_A)
    return h, F.binary_cross_entropy_with_logits(h, x, reduction="none").mean(1)


def made_forward_only_ones(x, weights, biases, masks, A=None, mask_A=None):  # forgets the (1 - x) log(1 - p) term
    h, _ = made_forward(x, weights, biases, masks, A, mask_A)
    return h, -(x * F.logsigmoid(h)).sum(1)


def made_forward_log_sigmoid(x, weights, biases, masks, A=None, mask_A=None):  # log(sigmoid): -inf when confident
    h, _ = made_forward(x, weights, biases, masks, A, mask_A)
    p = torch.sigmoid(h)
    return h, -(x * p.log() + (1 - x) * (1 - p).log()).sum(1)


def made_forward_clamped(x, weights, biases, masks, A=None, mask_A=None):  # clamps p: finite but wrong when confident
    h, _ = made_forward(x, weights, biases, masks, A, mask_A)
    p = torch.sigmoid(h).clamp(1e-7, 1 - 1e-7)
    return h, -(x * p.log() + (1 - x) * (1 - p).log()).sum(1)


def made_forward_batch_mean(x, weights, biases, masks, A=None, mask_A=None):  # a scalar, not (B,)
    h, nll = made_forward(x, weights, biases, masks, A, mask_A)
    return h, nll.mean()


def made_forward_detached(x, weights, biases, masks, A=None, mask_A=None):  # the nll through numpy
    h, nll = made_forward(x, weights, biases, masks, A, mask_A)
    return h, torch.tensor(nll.detach().numpy())


def made_forward_subclass(x, weights, biases, masks, A=None, mask_A=None):
    h, nll = made_forward(x, weights, biases, masks, A, mask_A)
    return h, nll.as_subclass(Liar)


def made_forward_masks_transposed(x, weights, biases, masks, A=None, mask_A=None):  # a raw shape error
    return made_forward(x, weights, biases, [M.T for M in masks], A, mask_A)


def made_forward_frozen_hidden(x, weights, biases, masks, A=None, mask_A=None):  # hidden layer detached
    h = x
    for i, (W, b, M) in enumerate(zip(weights, biases, masks, strict=True)):
        h = F.linear(h, (W * M).detach() if i == 0 else W * M, b)
        h = torch.relu(h) if i < len(weights) - 1 else h
    if A is not None:
        h = h + F.linear(x, A * mask_A)
    return h, F.binary_cross_entropy_with_logits(h, x, reduction="none").sum(1)


# ---------------------------------------------------------------- Exercise 6: the ensemble log-likelihood


def ensemble_log_prob(log_p):
    return torch.logsumexp(log_p, 0) - math.log(log_p.shape[0])


def ensemble_by_hand(log_p):  # the maximum subtracted by hand
    m = log_p.max(0).values
    return m + (log_p - m).exp().mean(0).log()


def ensemble_loop_float64(log_p):  # a loop over images, float64
    out = []
    for n in range(log_p.shape[1]):
        col = log_p[:, n].double()
        m = col.max()
        out.append(m + torch.log(sum(torch.exp(v - m) for v in col) / len(col)))
    return torch.stack(out)


def ensemble_scipy(log_p):
    from scipy.special import logsumexp
    return torch.from_numpy(logsumexp(log_p.numpy(), axis=0, b=1 / log_p.shape[0]))


def ensemble_mean_of_logs(log_p):  # averages log p: the average model, not the mixture
    return log_p.mean(0)


def ensemble_no_1_over_k(log_p):
    return torch.logsumexp(log_p, 0)


def ensemble_underflows(log_p):  # right in exact arithmetic; exp(-800) = 0 in float32
    return log_p.exp().mean(0).log()


def ensemble_wrong_axis(log_p):
    return torch.logsumexp(log_p, 1) - math.log(log_p.shape[1])


def ensemble_plus_log_k(log_p):  # adds log K
    return torch.logsumexp(log_p, 0) + math.log(log_p.shape[0])


def ensemble_keepdim(log_p):  # (1, N)
    return torch.logsumexp(log_p, 0, keepdim=True) - math.log(log_p.shape[0])


def ensemble_subclass(log_p):
    return ensemble_log_prob(log_p).as_subclass(Liar)


def ensemble_best_mask(log_p):  # the best mask instead of the mixture (equal only for K = 1)
    return log_p.max(0).values


EXERCISES = {
    "ex1_fvsbn_mask": Exercise(
        check=lecture02.check_fvsbn_mask,
        correct=[fvsbn_mask, fvsbn_mask_by_comparison, fvsbn_mask_loop, fvsbn_mask_float64],
        wrong=[Wrong(fvsbn_mask_with_diagonal, "not autoregressive", "formula"),
               Wrong(fvsbn_mask_shifted, "drops connections", "formula"),
               Wrong(fvsbn_mask_transposed, "not autoregressive", "formula"),
               Wrong(fvsbn_mask_subdiagonal, "drops connections", "formula"),
               Wrong(lambda D: torch.ones(D, D - 1), "wrong shape", "shape"),
               Wrong(lambda D: 0.5 * fvsbn_mask(D), "not a 0/1 mask", "property"),
               Wrong(lambda D: fvsbn_mask(D).as_subclass(Liar), "wrong type", "lie"),
               Wrong(lambda D: AlwaysEqual(), "wrong type", "lie"),
               Wrong(lambda D: F.linear(torch.ones(D), torch.ones(2, 3)), "raised RuntimeError", "raw"),
               Wrong(fvsbn_mask_one_pixel_sees_itself, r"fvsbn_mask\(1\) is wrong", "edge")],
    ),
    "ex2_sampling_loop": Exercise(
        check=lecture02.check_sampler,
        correct=[sample_autoregressive, sample_by_uniforms, sample_float64_per_row],
        wrong=[Wrong(sample_one_shot, "target distribution|too few times", "formula"),
               Wrong(sample_off_by_one, "target distribution", "formula"),
               Wrong(sample_times_temperature, "temperature 0.5", "formula"),
               Wrong(sample_ignores_start, "changed the given pixels", "edge"),
               Wrong(sample_probabilities, "not binary", "property"),
               Wrong(sample_in_place, "in place", "property"),
               Wrong(sample_global_rng, "global random", "randomness"),
               Wrong(sample_subclass, "wrong type", "lie"),
               Wrong(lambda f, x, s=0, t=1.0, g=None: x[:, :2].clone(), "wrong shape", "shape"),
               Wrong(lambda f, x, s=0, t=1.0, g=None: torch.bernoulli(torch.sigmoid(f(x)), g),
                     "raised TypeError", "raw")],
    ),
    "ex3_nade_running_sum": Exercise(
        check=lecture02.check_nade_logits,
        correct=[nade_logits, nade_logits_cumsum, nade_logits_float32, nade_logits_preallocated,
                 lecture02.nade_logits_naive],
        wrong=[Wrong(nade_logits_inclusive, "not close enough", "formula"),
               Wrong(nade_logits_update_first, "not close enough", "formula"),
               Wrong(nade_logits_no_c, "not close enough", "formula"),
               Wrong(nade_logits_shifted, "not close enough", "formula"),
               Wrong(nade_logits_always_sigmoid, r"g = tanh", "formula"),
               Wrong(nade_logits_transposed, "wrong shape", "shape"),
               Wrong(nade_logits_in_place, "raised RuntimeError", "raw"),
               Wrong(nade_logits_writes_into_c, "changed its argument c in place", "property"),
               Wrong(nade_logits_subclass, "wrong type", "lie")],
    ),
    "ex4_made_masks": Exercise(
        check=lecture02.check_made_masks,
        correct=[made_masks, made_masks_loop, made_masks_numpy64],
        wrong=[Wrong(made_masks_geq_output, "not autoregressive", "edge"),
               Wrong(made_masks_strict_hidden, "drops connections", "edge"),
               Wrong(made_masks_reversed_hidden, "not autoregressive", "formula"),
               Wrong(made_masks_natural_order, "not autoregressive", "formula"),
               Wrong(made_masks_transposed, "wrong shape", "shape"),
               Wrong(lambda m: made_masks(m)[:-1], "wrong number of masks", "shape"),
               Wrong(made_masks_counts, "not a 0/1 mask", "property"),
               Wrong(made_masks_subclass, "wrong type", "lie"),
               Wrong(lambda m: [M.numpy().tolist() for M in made_masks(m)], "wrong type", "raw")],
    ),
    "ex5_made_forward": Exercise(
        check=lecture02.check_made_forward,
        correct=[made_forward, made_forward_loop, made_forward_float64],
        wrong=[Wrong(made_forward_unmasked, "not autoregressive", "formula"),
               Wrong(made_forward_unmasked_direct, "not autoregressive", "formula"),
               Wrong(made_forward_relu_output, "logits with direct connections is not close", "formula"),
               Wrong(made_forward_no_direct, "drops connections", "formula"),
               Wrong(made_forward_sign, "is not 1", "formula"),
               Wrong(made_forward_mean_pixels, "is not 1", "formula"),
               Wrong(made_forward_only_ones, "is not 1", "formula"),
               Wrong(made_forward_log_sigmoid, "confident model.*not finite", "precision"),
               Wrong(made_forward_clamped, "confident model", "stability"),
               Wrong(made_forward_batch_mean, "wrong shape", "shape"),
               Wrong(made_forward_detached, "not differentiable", "property"),
               Wrong(made_forward_frozen_hidden, "gradient of nll.mean", "property"),
               Wrong(made_forward_subclass, "wrong type", "lie"),
               Wrong(made_forward_masks_transposed, "raised RuntimeError", "raw"),
               Wrong(lambda *a: made_forward(*a)[1], "wrong thing", "shape")],
    ),
    "ex6_mask_ensemble": Exercise(
        check=lecture02.check_ensemble_log_prob,
        correct=[ensemble_log_prob, ensemble_by_hand, ensemble_loop_float64, ensemble_scipy],
        wrong=[Wrong(ensemble_mean_of_logs, "not close enough", "formula"),
               Wrong(ensemble_no_1_over_k, "not close enough", "formula"),
               Wrong(ensemble_plus_log_k, "not close enough", "formula"),
               Wrong(ensemble_underflows, "not finite", "precision"),
               Wrong(ensemble_wrong_axis, "wrong shape", "shape"),
               Wrong(ensemble_keepdim, "wrong shape", "shape"),
               Wrong(ensemble_best_mask, "not close enough", "formula"),
               Wrong(ensemble_subclass, "wrong type", "lie"),
               Wrong(lambda lp: lp.numpy().tolist(), "wrong type", "raw")],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)


def test_training_check_is_sensitive_to_a_wrong_learning_signal():
    """A loss with the right value but half the gradient (x log p counted twice, its mirror dropped) is caught."""
    def half(x, weights, biases, masks, A=None, mask_A=None):
        h, nll = made_forward(x, weights, biases, masks, A, mask_A)
        return h, nll.detach() + 0.5 * (nll - nll.detach())
    with pytest.raises(CheckError, match="gradient of nll.mean"):
        lecture02.check_made_forward(half)
