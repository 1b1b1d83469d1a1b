"""Lecture 06 checks: each accepts a correct implementation and rejects the common wrong ones."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from dgm_course.checks import CheckError
from dgm_course.exercises import lecture06

# ---------------------------------------------------------------- Exercise 1: the mixture-CDF flow


def cdf_flow(x, logits, mu, log_sigma):
    log_pi = torch.log_softmax(logits, 0)
    t = (x[:, None] - mu) / log_sigma.exp()
    z = (log_pi.exp() * torch.special.ndtr(t)).sum(1)
    return z, torch.logsumexp(log_pi + Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_flow_distributions(x, logits, mu, log_sigma):  # another correct route: torch.distributions
    comp = Normal(mu, log_sigma.exp())
    pi = torch.softmax(logits, 0)
    z = (pi * comp.cdf(x[:, None])).sum(1)
    return z, torch.logsumexp(pi.log() + comp.log_prob(x[:, None]), 1)


def cdf_no_softmax(x, logits, mu, log_sigma):  # logits used as weights
    t = (x[:, None] - mu) / log_sigma.exp()
    z = (logits * torch.special.ndtr(t)).sum(1)
    return z, torch.logsumexp(logits.abs().log() + Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_missing_chain_rule(x, logits, mu, log_sigma):  # forgets the 1/sigma_k of d/dx Phi((x - mu)/sigma)
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    log_pi = torch.log_softmax(logits, 0)
    t = (x[:, None] - mu) / log_sigma.exp()
    return z, torch.logsumexp(log_pi + Normal(0.0, 1.0).log_prob(t), 1)


def cdf_missing_weights(x, logits, mu, log_sigma):  # density without the mixing weights
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    t = (x[:, None] - mu) / log_sigma.exp()
    return z, torch.logsumexp(Normal(0.0, 1.0).log_prob(t) - log_sigma, 1)


def cdf_log_of_sum(x, logits, mu, log_sigma):  # right in exact arithmetic, -inf in the float32 tails
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    pi = torch.softmax(logits, 0)
    return z, (pi * Normal(mu, log_sigma.exp()).log_prob(x[:, None]).exp()).sum(1).log()


def cdf_log_of_cdf(x, logits, mu, log_sigma):  # log_det = log z: the CDF instead of its derivative
    z, _ = cdf_flow(x, logits, mu, log_sigma)
    return z, z.log()


def test_cdf_flow_accepts_correct():
    lecture06.check_cdf_flow(cdf_flow)
    lecture06.check_cdf_flow(cdf_flow_distributions)


@pytest.mark.parametrize("wrong, message", [
    (cdf_no_softmax, "leaves \\[0, 1\\]"),
    (cdf_missing_chain_rule, "log_det is wrong"),
    (cdf_missing_weights, "log_det is wrong"),
    (cdf_log_of_sum, "not finite far in the tails"),
    (cdf_log_of_cdf, "log_det is wrong"),
])
def test_cdf_flow_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture06.check_cdf_flow(wrong)


def test_cdf_flow_stub_raises_not_implemented():
    def stub(x, logits, mu, log_sigma):
        raise NotImplementedError("ex1_cdf_flow")
    with pytest.raises(NotImplementedError):
        lecture06.check_cdf_flow(stub)


# ---------------------------------------------------------------- Exercise 2: the change of variables formula


def cov(x, f_inverse, log_p_z):
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) + torch.linalg.slogdet(jac)[1]


def cov_loop(x, f_inverse, log_p_z):  # another correct route: one Jacobian per point
    out = []
    for row in x:
        jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v[None])[0], row)
        out.append(log_p_z(f_inverse(row[None]))[0] + torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def cov_logdet_no_abs(x, f_inverse, log_p_z):  # torch.logdet: NaN for a negative determinant
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) + torch.logdet(jac)


def cov_sign_error(x, f_inverse, log_p_z):  # divides by the volume factor of f^-1 instead of multiplying
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(f_inverse(x)) - torch.linalg.slogdet(jac)[1]


def cov_base_at_x(x, f_inverse, log_p_z):  # log p_Z at x instead of at z = f^-1(x)
    jac = torch.autograd.functional.jacobian(lambda v: f_inverse(v).sum(0), x).permute(1, 0, 2)
    return log_p_z(x) + torch.linalg.slogdet(jac)[1]


def cov_no_jacobian(x, f_inverse, log_p_z):
    return log_p_z(f_inverse(x))


def test_change_of_variables_accepts_correct():
    lecture06.check_change_of_variables(cov)
    lecture06.check_change_of_variables(cov_loop)


@pytest.mark.parametrize("wrong, message", [
    (cov_logdet_no_abs, "NaN or inf"),
    (cov_sign_error, "not close enough"),
    (cov_base_at_x, "not close enough"),
    (cov_no_jacobian, "not close enough"),
])
def test_change_of_variables_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture06.check_change_of_variables(wrong)


# ---------------------------------------------------------------- Exercise 3: the planar layer


def planar(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))


def planar_psi(z, u, w, b):  # another correct route: psi(z) written out, then the lemma
    a = z @ w + b
    psi = (1 / torch.cosh(a) ** 2)[:, None] * w             # (N, D)
    return z + torch.tanh(a)[:, None] * u, (1 + psi @ u).abs().log()


def planar_no_abs(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(1 + (1 - h**2) * (w @ u))


def planar_h_not_derivative(z, u, w, b):  # h instead of h'
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + h * (w @ u)))


def planar_no_h_prime(z, u, w, b):  # log|1 + w^T u|: the derivative of h dropped
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 + w @ u)).expand(len(z))


def planar_sign_error(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, torch.log(torch.abs(1 - (1 - h**2) * (w @ u)))


def planar_u_w_swapped(z, u, w, b):  # moves along w instead of u
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * w, torch.log(torch.abs(1 + (1 - h**2) * (w @ u)))


def planar_no_log_det(z, u, w, b):
    h = torch.tanh(z @ w + b)
    return z + h[:, None] * u, z.new_zeros(len(z))


def test_planar_accepts_correct():
    lecture06.check_planar_layer(planar)
    lecture06.check_planar_layer(planar_psi)


@pytest.mark.parametrize("wrong, message", [
    (planar_no_abs, "NaN or inf"),
    (planar_h_not_derivative, "log_det is wrong"),
    (planar_no_h_prime, "log_det is wrong"),
    (planar_sign_error, "log_det is wrong"),
    (planar_u_w_swapped, "f\\(z\\)"),
    (planar_no_log_det, "log_det is wrong"),
])
def test_planar_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture06.check_planar_layer(wrong)


# ---------------------------------------------------------------- Exercise 4: the constraint


def u_hat(u, w):
    wu = w @ u
    return u + (-1 + F.softplus(wu) - wu) * w / (w @ w)


def u_hat_projection(u, w):  # another correct route: split u into its parts along and across w
    w_unit = w / w.norm()
    along = (u @ w_unit) * w_unit
    return u - along + (-1 + torch.log1p(torch.exp(-(w @ u).abs())) + torch.relu(w @ u)) * w / (w @ w)


def u_hat_sign_error(u, w):
    wu = w @ u
    return u + (wu - (-1 + F.softplus(wu))) * w / (w @ w)


def u_hat_norm_not_squared(u, w):
    wu = w @ u
    return u + (-1 + F.softplus(wu) - wu) * w / w.norm()


def u_hat_without_minus_one(u, w):  # m(a) = softplus(a): still >= -1, but not the paper's choice
    wu = w @ u
    return u + (F.softplus(wu) - wu) * w / (w @ w)


def u_hat_item(u, w):  # w^T u taken out of the graph
    wu = (w @ u).item()
    return u + (-1 + F.softplus(torch.tensor(wu, dtype=u.dtype)) - wu) * w / (w @ w)


def u_hat_in_place(u, w):
    wu = (w @ u).detach()
    with torch.no_grad():
        u += (-1 + F.softplus(wu) - wu) * w / (w @ w)
    return u


def u_hat_clamp(u, w):  # only repairs u when w^T u < -1, by projecting to the boundary
    wu = w @ u
    return u + torch.clamp(-1 - wu, min=0) * w / (w @ w)


def test_constraint_accepts_correct():
    lecture06.check_constraint(u_hat)
    lecture06.check_constraint(u_hat_projection)


@pytest.mark.parametrize("wrong, message", [
    (u_hat_sign_error, "w\\^T u_hat < -1"),
    (u_hat_norm_not_squared, "u_hat|w\\^T u_hat < -1"),
    (u_hat_without_minus_one, "u_hat .*not close enough"),
    (u_hat_item, "gradient"),
    (u_hat_in_place, "changed its inputs"),
    (u_hat_clamp, "u_hat .*not close enough"),
])
def test_constraint_rejects_wrong(wrong, message):
    with pytest.raises(CheckError, match=message):
        lecture06.check_constraint(wrong)
