import math

import pytest
import torch

from dgm_course import toy


@pytest.mark.parametrize("name", toy.TOY_2D)
def test_toy_sets_are_seeded_and_shaped(name):
    a = toy.toy_2d(name, 500, seed=1)
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, toy.toy_2d(name, 500, seed=1))
    assert not torch.equal(a, toy.toy_2d(name, 500, seed=2))
    assert a.abs().max() < 6 and a.std(0).min() > 0.3  # on the plotting scale, not degenerate


def test_mode_sets_sit_on_their_centres():
    for name, k in (("8gaussians", 8), ("25gaussians", 25)):
        centers = toy.mode_centers(name)
        x = toy.toy_2d(name, 5000)
        nearest = torch.cdist(x, centers).min(1)
        assert centers.shape == (k, 2)
        assert (nearest.values < 3 * toy.MODE_STD[name]).float().mean() > 0.98
        assert len(nearest.indices.unique()) == k


def test_checkerboard_occupies_alternate_cells():
    x = toy.toy_2d("checkerboard", 4000)
    cell = torch.floor(x).long()
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy set 'moon'"):
        toy.toy_2d("moon", 10)
    with pytest.raises(ValueError, match="positive int"):
        toy.toy_2d("moons", 0)
    with pytest.raises(ValueError, match="8gaussians"):
        toy.mode_centers("moons")


def test_mixture_1d_density_integrates_and_matches_samples():
    mix = toy.Mixture1D()
    grid = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    assert torch.trapezoid(mix.log_prob(grid).exp(), grid).item() == pytest.approx(1.0, abs=1e-6)
    x = mix.sample(20000, seed=0)
    mean = sum(w * m for w, m in zip(mix.weights, mix.means, strict=True))
    assert x.mean().item() == pytest.approx(mean, abs=0.05)
    assert mix.log_prob(torch.tensor(0.0)).item() == pytest.approx(
        math.log(0.3 * math.exp(-8) / (0.5 * math.sqrt(2 * math.pi)) + 0.7 * math.exp(-0.5 * (1.5 / 0.8) ** 2) / (0.8 * math.sqrt(2 * math.pi))),
        rel=1e-5)


def test_mixture_1d_validates():
    with pytest.raises(ValueError, match="sum to 1"):
        toy.Mixture1D(weights=(0.5, 0.6))
    with pytest.raises(ValueError, match="same non-zero length"):
        toy.Mixture1D(weights=(1.0,), means=(0.0, 1.0), stds=(1.0,))
    with pytest.raises(ValueError, match="positive"):
        toy.Mixture1D(weights=(1.0,), means=(0.0,), stds=(0.0,))


def test_toy_discrete():
    draws = toy.toy_discrete(10000, [0.2, 0.5, 0.3], seed=0)
    freq = torch.bincount(draws, minlength=3).float() / 10000
    assert torch.allclose(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.02)
    with pytest.raises(ValueError, match="summing to 1"):
        toy.toy_discrete(10, [0.5, 0.6])
