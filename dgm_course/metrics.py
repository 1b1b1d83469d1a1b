"""Unit conversions for likelihoods: nats per image <-> bits per dimension, with the preprocessing terms."""

from __future__ import annotations

import math

import torch

Number = float | torch.Tensor


def _check_dims(num_dims: int) -> None:
    if not isinstance(num_dims, int) or isinstance(num_dims, bool) or num_dims <= 0:
        raise ValueError(f"num_dims must be a positive int (e.g. 784 for MNIST); got {num_dims!r}")


def nats_to_bits_per_dim(nll_nats: Number, num_dims: int, scale: float = 256.0, log_det: Number = 0.0) -> Number:
    """Bits/dim on the integer scale [0, scale) of an NLL in nats per image.

    `nll_nats` is -log p of the data as the model saw it. If the model saw y = g(x), with x = (pixel + u) / scale
    in (0, 1), pass `log_det` = log|det dy/dx| (per image): then -log p(x) = nll_nats - log_det, and rescaling
    x to pixel units adds num_dims * log(scale) nats. For binarized data (no dequantization) use scale=1.
    """
    _check_dims(num_dims)
    if scale <= 0:
        raise ValueError(f"scale must be positive; got {scale}")
    return (nll_nats - log_det + num_dims * math.log(scale)) / (num_dims * math.log(2.0))


def bits_per_dim_to_nats(bpd: Number, num_dims: int, scale: float = 256.0, log_det: Number = 0.0) -> Number:
    """The inverse of `nats_to_bits_per_dim`: NLL in nats per image of the data as the model saw it."""
    _check_dims(num_dims)
    if scale <= 0:
        raise ValueError(f"scale must be positive; got {scale}")
    return bpd * num_dims * math.log(2.0) - num_dims * math.log(scale) + log_det


def nats_to_bits(nats: Number) -> Number:
    """Nats -> bits."""
    return nats / math.log(2.0)
