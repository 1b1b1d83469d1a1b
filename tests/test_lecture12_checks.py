"""Lecture 12 checks: each accepts correct implementations written in different ways and rejects the common wrong
ones with the right message (tests/exercise_cases.py generates the tests from EXERCISES)."""

import math

import torch
from exercise_cases import Exercise, Wrong, exercise_tests
from exercise_cases import LyingTensor as Liar

from dgm_course.exercises import lecture12

# ---------------------------------------------------------------- Exercise 1: the score of a perturbed mixture


def mixture_score(x, weights, means, stds, sigma):
    var = stds**2 + sigma**2                                                 # (K,)
    diff = x[:, None, :] - means[None]                                       # (B, K, D)
    log_terms = weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var)
    r = torch.softmax(log_terms, 1)                                          # (B, K)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_autograd(x, weights, means, stds, sigma):  # autograd of logsumexp
    var = stds**2 + sigma**2
    x = x.detach().clone().requires_grad_(True)
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    log_p = torch.logsumexp(weights.log() - 0.5 * x.shape[1] * torch.log(2 * math.pi * var) - sq / (2 * var), 1)
    return torch.autograd.grad(log_p.sum(), x)[0]


def mixture_score_loop(x, weights, means, stds, sigma):  # one component at a time, one point at a time
    out = torch.zeros_like(x)
    d = x.shape[1]
    for b in range(len(x)):
        logs = [math.log(w) - 0.5 * d * math.log(s**2 + sigma**2) - float(((x[b] - m) ** 2).sum()) / (2 * (s**2 + sigma**2))
                for w, m, s in zip(weights.tolist(), means, stds.tolist(), strict=True)]
        top = max(logs)
        r = [math.exp(v - top) for v in logs]
        total = sum(r)
        for k, (m, s) in enumerate(zip(means, stds.tolist(), strict=True)):
            out[b] += r[k] / total * -(x[b] - m) / (s**2 + sigma**2)
    return out


def mixture_score_float32(x, weights, means, stds, sigma):
    return mixture_score(x.float(), weights.float(), means.float(), stds.float(), sigma)


def mixture_score_no_sigma(x, weights, means, stds, sigma):
    return mixture_score(x, weights, means, stds, 0.0)


def mixture_score_prior_weights(x, weights, means, stds, sigma):
    var = stds**2 + sigma**2
    return (weights[None, :, None] * (-(x[:, None, :] - means[None]) / var[:, None])).sum(1)


def mixture_score_naive(x, weights, means, stds, sigma):  # densities by exp: NaN far from the modes
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    dens = weights * torch.exp(-(diff**2).sum(-1) / (2 * var)) / var ** (x.shape[1] / 2)
    r = dens / dens.sum(1, keepdim=True)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_forgot_dim(x, weights, means, stds, sigma):  # normalizer var^(-1/2) instead of var^(-D/2)
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    r = torch.softmax(weights.log() - 0.5 * var.log() - (diff**2).sum(-1) / (2 * var), 1)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_wrong_axis(x, weights, means, stds, sigma):  # responsibilities normalized over the batch
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    r = torch.softmax(weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var), 0)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_sign(x, weights, means, stds, sigma):  # points away from the modes
    return -mixture_score(x, weights, means, stds, sigma)


def mixture_score_sigma_as_variance(x, weights, means, stds, sigma):  # s_k^2 + sigma
    var = stds**2 + sigma
    diff = x[:, None, :] - means[None]
    r = torch.softmax(weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var), 1)
    return (r[..., None] * (-diff / var[:, None])).sum(1)


def mixture_score_per_component(x, weights, means, stds, sigma):  # (B, K, D): the sum over k forgotten
    var = stds**2 + sigma**2
    diff = x[:, None, :] - means[None]
    r = torch.softmax(weights.log() - 0.5 * x.shape[1] * var.log() - (diff**2).sum(-1) / (2 * var), 1)
    return r[..., None] * (-diff / var[:, None])


def mixture_score_liar(x, weights, means, stds, sigma):
    return mixture_score(x, weights, means, stds, sigma).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 2: the DSM loss


def dsm_loss(score, x, sigma, z):
    x_tilde = x + sigma * z
    return 0.5 * ((score(x_tilde) + z / sigma) ** 2).sum(1).mean()


def dsm_loss_difference(score, x, sigma, z):  # written with x_tilde - x and sigma^2
    x_tilde = x + sigma * z
    target = -(x_tilde - x) / sigma**2
    return ((score(x_tilde) - target) ** 2).sum(-1).mean() / 2


def dsm_loss_loop(score, x, sigma, z):  # one point at a time
    total = 0
    for b in range(len(x)):
        x_tilde = x[b:b + 1] + sigma * z[b:b + 1]
        total = total + 0.5 * ((score(x_tilde)[0] + z[b] / sigma) ** 2).sum()
    return total / len(x)


def dsm_loss_float32(score, x, sigma, z):  # the squared error accumulated in float32
    x_tilde = x + sigma * z
    return 0.5 * ((score(x_tilde) + z / sigma).float() ** 2).sum(1).mean()


def dsm_loss_sign(score, x, sigma, z):
    return 0.5 * ((score(x + sigma * z) - z / sigma) ** 2).sum(1).mean()


def dsm_loss_sigma2(score, x, sigma, z):  # -(x_tilde - x) / sigma^2 written as -z / sigma^2
    return 0.5 * ((score(x + sigma * z) + z / sigma**2) ** 2).sum(1).mean()


def dsm_loss_clean_input(score, x, sigma, z):
    return 0.5 * ((score(x) + z / sigma) ** 2).sum(1).mean()


def dsm_loss_sum(score, x, sigma, z):
    return 0.5 * ((score(x + sigma * z) + z / sigma) ** 2).sum()


def dsm_loss_mean_all(score, x, sigma, z):  # averages over the coordinates too: divides by D
    return 0.5 * ((score(x + sigma * z) + z / sigma) ** 2).mean()


def dsm_loss_own_noise(score, x, sigma, z):  # draws new noise instead of using the caller's z
    z = torch.randn_like(x)
    return 0.5 * ((score(x + sigma * z) + z / sigma) ** 2).sum(1).mean()


def dsm_loss_no_grad(score, x, sigma, z):
    with torch.no_grad():
        return dsm_loss(score, x, sigma, z)


def dsm_loss_per_point(score, x, sigma, z):
    return 0.5 * ((score(x + sigma * z) + z / sigma) ** 2).sum(1)


def dsm_loss_liar(score, x, sigma, z):
    return dsm_loss(score, x, sigma, z).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 3: Tweedie's denoiser


def tweedie_denoiser(x_tilde, sigma, score):
    return x_tilde + sigma**2 * score(x_tilde)


def tweedie_loop(x_tilde, sigma, score):  # one point at a time
    return torch.stack([x_tilde[b] + sigma**2 * score(x_tilde[b:b + 1])[0] for b in range(len(x_tilde))])


def tweedie_float32(x_tilde, sigma, score):
    return x_tilde.float() + sigma**2 * score(x_tilde).float()


def tweedie_addcmul(x_tilde, sigma, score):  # torch.add with alpha
    return torch.add(x_tilde, score(x_tilde), alpha=sigma**2)


def tweedie_minus(x_tilde, sigma, score):
    return x_tilde - sigma**2 * score(x_tilde)


def tweedie_sigma(x_tilde, sigma, score):
    return x_tilde + sigma * score(x_tilde)


def tweedie_identity(x_tilde, sigma, score):
    return x_tilde


def tweedie_correction_only(x_tilde, sigma, score):  # the step without the starting point
    return sigma**2 * score(x_tilde)


def tweedie_in_place(x_tilde, sigma, score):
    x_tilde += sigma**2 * score(x_tilde)
    return x_tilde


def tweedie_flat(x_tilde, sigma, score):
    return tweedie_denoiser(x_tilde, sigma, score).reshape(-1)


def tweedie_liar(x_tilde, sigma, score):
    return tweedie_denoiser(x_tilde, sigma, score).as_subclass(Liar)


# ---------------------------------------------------------------- Exercise 4: the sliced loss


def sliced_loss(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)                                                             # (B, D)
    sv = (s * v).sum(1)                                                      # (B,)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]              # (B, D): v^T J
    return ((jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_vr(score, x, v):  # the variance-reduced form with 1/2 |s|^2: also unbiased
    x = x.detach().requires_grad_(True)
    s = score(x)
    jv = torch.autograd.grad((s * v).sum(), x, create_graph=True)[0]
    return ((jv * v).sum(1) + 0.5 * (s**2).sum(1)).mean()


def sliced_loss_loop(score, x, v):  # one point at a time
    terms = []
    for b in range(len(x)):
        xb = x[b:b + 1].detach().requires_grad_(True)
        sv = (score(xb)[0] * v[b]).sum()
        jv = torch.autograd.grad(sv, xb, create_graph=True)[0][0]
        terms.append(jv @ v[b] + 0.5 * sv**2)
    return torch.stack(terms).mean()


def sliced_loss_float32(score, x, v):  # v^T J v through the gradient of (s . v), summed in float32
    x = x.detach().requires_grad_(True)
    s = score(x)
    vj = torch.autograd.grad(s, x, grad_outputs=v, create_graph=True)[0]     # v^T J, the same as grad of (s . v)
    return ((vj * v).sum(1).float() + 0.5 * (s * v).sum(1).float() ** 2).mean()


def sliced_loss_no_create_graph(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x)[0]
    return ((jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_unprojected_grad(score, x, v):  # grad of s.sum() instead of (v . s): misses the projection
    x = x.detach().requires_grad_(True)
    s = score(x)
    g = torch.autograd.grad(s.sum(), x, create_graph=True)[0]
    return ((g * v).sum(1) + 0.5 * (s * v).sum(1) ** 2).mean()


def sliced_loss_sign(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
    return (-(jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_no_half(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
    return ((jv * v).sum(1) + sv**2).mean()


def sliced_loss_own_projections(score, x, v):  # ignores the given v and draws Gaussian ones
    return sliced_loss(score, x, torch.randn_like(x))


def sliced_loss_non_scalar_grad(score, x, v):  # autograd.grad of a vector without grad_outputs
    x = x.detach().requires_grad_(True)
    sv = (score(x) * v).sum(1)
    jv = torch.autograd.grad(sv, x, create_graph=True)[0]
    return ((jv * v).sum(1) + 0.5 * sv**2).mean()


def sliced_loss_per_point(score, x, v):
    x = x.detach().requires_grad_(True)
    s = score(x)
    sv = (s * v).sum(1)
    jv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
    return (jv * v).sum(1) + 0.5 * sv**2


def sliced_loss_liar(score, x, v):
    return sliced_loss(score, x, v).as_subclass(Liar)


EXERCISES = {
    "ex1_mixture_score": Exercise(
        check=lecture12.check_mixture_score,
        correct=[mixture_score, mixture_score_autograd, mixture_score_loop, mixture_score_float32],
        wrong=[
            Wrong(mixture_score_no_sigma, "ignores the noise level", "formula"),
            Wrong(mixture_score_prior_weights, "prior weights", "formula"),
            Wrong(mixture_score_forgot_dim, "not close enough", "formula"),
            Wrong(mixture_score_wrong_axis, "not close enough", "formula"),
            Wrong(mixture_score_sign, "not close enough", "formula"),
            Wrong(mixture_score_sigma_as_variance, "not close enough", "formula"),
            Wrong(mixture_score_naive, "NaN or inf far from the modes", "stability"),
            Wrong(mixture_score_per_component, "wrong shape", "shape"),
            Wrong(mixture_score_liar, "wrong type", "lie"),
        ],
    ),
    "ex2_dsm_loss": Exercise(
        check=lecture12.check_dsm_loss,
        correct=[dsm_loss, dsm_loss_difference, dsm_loss_loop, dsm_loss_float32],
        wrong=[
            Wrong(dsm_loss_sign, "wrong sign", "formula"),
            Wrong(dsm_loss_sigma2, "not -z / sigma\\^2", "formula"),
            Wrong(dsm_loss_clean_input, "evaluated at the noisy point", "formula"),
            Wrong(dsm_loss_sum, "not close enough", "formula"),
            Wrong(dsm_loss_mean_all, "not close enough", "formula"),
            Wrong(dsm_loss_own_noise, "not close enough", "randomness"),
            Wrong(dsm_loss_no_grad, "carries no gradient", "property"),
            Wrong(dsm_loss_per_point, "wrong thing", "shape"),
            Wrong(dsm_loss_liar, "wrong type", "lie"),
        ],
    ),
    "ex3_tweedie": Exercise(
        check=lecture12.check_tweedie,
        correct=[tweedie_denoiser, tweedie_loop, tweedie_float32, tweedie_addcmul],
        wrong=[
            Wrong(tweedie_minus, "along the score", "formula"),
            Wrong(tweedie_sigma, "sigma\\^2 times the score", "formula"),
            Wrong(tweedie_identity, "not close enough", "formula"),
            Wrong(tweedie_correction_only, "not close enough", "formula"),
            Wrong(tweedie_in_place, "in place", "property"),
            Wrong(tweedie_flat, "wrong shape", "shape"),
            Wrong(tweedie_liar, "wrong type", "lie"),
        ],
    ),
    "ex4_sliced_loss": Exercise(
        check=lecture12.check_sliced_loss,
        correct=[sliced_loss, sliced_loss_vr, sliced_loss_loop, sliced_loss_float32],
        wrong=[
            Wrong(sliced_loss_unprojected_grad, "not close enough", "formula"),
            Wrong(sliced_loss_sign, "not close enough", "formula"),
            Wrong(sliced_loss_no_half, "not close enough", "formula"),
            Wrong(sliced_loss_own_projections, "not close enough", "randomness"),
            Wrong(sliced_loss_no_create_graph, "no gradient|cannot be differentiated|gradient of the sliced", "property"),
            Wrong(sliced_loss_non_scalar_grad, "raised", "raw"),
            Wrong(sliced_loss_per_point, "wrong thing", "shape"),
            Wrong(sliced_loss_liar, "wrong type", "lie"),
        ],
    ),
}

test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)
