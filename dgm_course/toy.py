"""Seeded toy data: 2-D point sets, 1-D Gaussian mixtures and small discrete distributions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

TOY_2D = ("moons", "8gaussians", "25gaussians", "checkerboard", "spirals", "swissroll", "rings")


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int; got {n!r}")


def mode_centers(name: str) -> torch.Tensor:
    """The mode centres of `8gaussians` (a ring of radius 2) or `25gaussians` (a 5x5 grid, spacing 1): (K, 2)."""
    if name == "8gaussians":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (2.0 * torch.stack([angles.cos(), angles.sin()], 1)).float()
    if name == "25gaussians":
        g = torch.arange(-2, 3, dtype=torch.float32)
        return torch.cartesian_prod(g, g)
    raise ValueError(f"mode_centers knows '8gaussians' and '25gaussians'; got {name!r}")


MODE_STD = {"8gaussians": 0.02**0.5, "25gaussians": 0.05}  # per-mode standard deviation


def toy_2d(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points of the named 2-D toy set (one of `TOY_2D`), float32 of shape (n, 2), reproducible from `seed`."""
    if name not in TOY_2D:
        raise ValueError(f"unknown toy set {name!r}; expected one of {', '.join(TOY_2D)}")
    _check_n(n)
    rng = np.random.default_rng(seed)
    if name == "moons":
        t = rng.uniform(0, math.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        pts = np.stack([x, y], 1) + 0.05 * rng.standard_normal((n, 2))
        pts = (pts - [0.5, 0.25]) * 2.0
    elif name in ("8gaussians", "25gaussians"):
        centers = mode_centers(name).numpy()
        pts = centers[rng.integers(len(centers), size=n)] + MODE_STD[name] * rng.standard_normal((n, 2))
    elif name == "checkerboard":
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.uniform(0, 1, n) + 2 * rng.integers(0, 2, n) - 2  # in [-2, -1) or [0, 1)
        x2 = x2 + (np.floor(x1) % 2)  # shift every other column by one cell
        pts = np.stack([x1, x2], 1)
    elif name == "spirals":
        t = np.sqrt(rng.uniform(0, 1, n)) * 3 * math.pi
        sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        pts = sign[:, None] * np.stack([t * np.cos(t), t * np.sin(t)], 1) / 3.0
        pts = pts + 0.1 * rng.standard_normal((n, 2))
    elif name == "swissroll":
        t = 1.5 * math.pi * (1 + 2 * rng.uniform(0, 1, n))
        pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0 + 0.1 * rng.standard_normal((n, 2))
    else:  # rings: three concentric circles of radius 1, 2 and 3
        radius = rng.integers(1, 4, n).astype(float)
        angle = rng.uniform(0, 2 * math.pi, n)
        pts = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.08 * rng.standard_normal((n, 2))
    return torch.as_tensor(pts, dtype=torch.float32)


@dataclass(frozen=True)
class Mixture1D:
    """A 1-D Gaussian mixture with known density: `sample(n, seed)` and exact `log_prob(x)`."""

    weights: tuple[float, ...] = (0.3, 0.7)
    means: tuple[float, ...] = (-2.0, 1.5)
    stds: tuple[float, ...] = (0.5, 0.8)

    def __post_init__(self) -> None:
        k = len(self.weights)
        if k == 0 or len(self.means) != k or len(self.stds) != k:
            raise ValueError(f"weights, means, stds need the same non-zero length; got {k}, {len(self.means)}, {len(self.stds)}")
        if min(self.weights) < 0 or abs(sum(self.weights) - 1) > 1e-6:
            raise ValueError(f"weights must be non-negative and sum to 1; got {self.weights}")
        if min(self.stds) <= 0:
            raise ValueError(f"stds must be positive; got {self.stds}")

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """n samples, float32 of shape (n,)."""
        _check_n(n)
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        x = np.asarray(self.means)[k] + np.asarray(self.stds)[k] * rng.standard_normal(n)
        return torch.as_tensor(x, dtype=torch.float32)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density at each element of x (any shape)."""
        x = torch.as_tensor(x)
        w, mu, sd = (x.new_tensor(v) for v in (self.weights, self.means, self.stds))
        comp = torch.distributions.Normal(mu, sd).log_prob(x.unsqueeze(-1)) + w.log()
        return torch.logsumexp(comp, -1)


def toy_discrete(n: int, probs: torch.Tensor | list[float], seed: int = 0) -> torch.Tensor:
    """n draws (int64, shape (n,)) from a categorical distribution with the given probabilities."""
    _check_n(n)
    p = torch.as_tensor(probs, dtype=torch.float64)
    if p.ndim != 1 or (p < 0).any() or abs(float(p.sum()) - 1) > 1e-6:
        raise ValueError(f"probs must be a 1-D non-negative vector summing to 1; got {p.tolist()}")
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(p, n, replacement=True, generator=g)
