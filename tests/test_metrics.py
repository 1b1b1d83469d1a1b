import math

import pytest
import torch

from dgm_course import metrics


def test_uniform_model_has_eight_bits_per_dim():
    # a uniform density on [0, 1]^D has NLL 0 nats; on 256 levels that is log2(256) = 8 bits per dimension
    assert metrics.nats_to_bits_per_dim(0.0, 784) == pytest.approx(8.0)


def test_binary_data_without_dequantization():
    # a fair coin per pixel: 784 log 2 nats per image = 1 bit per dimension when no rescaling is involved
    assert metrics.nats_to_bits_per_dim(784 * math.log(2), 784, scale=1.0) == pytest.approx(1.0)


def test_log_det_term_and_round_trip():
    nll = torch.tensor([1000.0, -500.0])
    log_det = torch.tensor([30.0, -20.0])
    bpd = metrics.nats_to_bits_per_dim(nll, 784, log_det=log_det)
    expected = (nll - log_det + 784 * math.log(256)) / (784 * math.log(2))
    assert torch.allclose(bpd, expected)
    assert torch.allclose(metrics.bits_per_dim_to_nats(bpd, 784, log_det=log_det), nll)
    assert metrics.nats_to_bits(math.log(2)) == pytest.approx(1.0)


@pytest.mark.parametrize("dims", [0, -3, 2.5, True])
def test_bad_dims(dims):
    with pytest.raises(ValueError, match="positive int"):
        metrics.nats_to_bits_per_dim(1.0, dims)


def test_bad_scale():
    with pytest.raises(ValueError, match="scale must be positive"):
        metrics.bits_per_dim_to_nats(1.0, 10, scale=0)
