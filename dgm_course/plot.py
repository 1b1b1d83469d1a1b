"""Figures every lecture draws: image grids, 2-D scatters, 2-D density heat maps and training curves."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _axes(ax, figsize=(4, 4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_grid(images, nrow: int | None = None, ax=None, title: str | None = None, pad: int = 1):
    """Show a batch of images, (N, H, W) or (N, 1, H, W) with values in [0, 1], as one grid; returns the figure."""
    x = _to_numpy(images).astype(np.float32)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"image_grid expects (N, H, W) or (N, 1, H, W) with N > 0; got shape {tuple(x.shape)}")
    n, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    grid = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(x):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    fig, ax = _axes(ax, figsize=(0.35 * nrow + 0.5, 0.35 * ncol + 0.5))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


SHOWN = 64   # samples in a grid a student judges a model by (8 x 8), beside as many real digits


def samples_beside_real(samples: Mapping[str, torch.Tensor] | torch.Tensor, real: torch.Tensor, n: int = SHOWN,
                        title: str | None = None, real_title: str = "real digits"):
    """Grids of `n` real images (titled `real_title`) and of the first `n` of each model's samples, side by side at
    the same size, so that a student judges samples against what they imitate. `samples`: one batch, or
    {name: batch}; images in [0, 1], (N, H, W), (N, 1, H, W) or flat (N, 784). Returns the figure."""
    batches = dict(samples) if isinstance(samples, Mapping) else {"samples": samples}
    panels = {real_title: real, **batches}
    for name, x in panels.items():
        if len(x) < n:
            raise ValueError(f"samples_beside_real shows {n} images per grid; {name!r} has only {len(x)}")
    side = math.ceil(math.sqrt(n))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), squeeze=False)
    for ax, (name, x) in zip(axes[0], panels.items(), strict=True):
        x = x[:n].detach().cpu().float() if isinstance(x, torch.Tensor) else torch.as_tensor(x[:n]).float()
        if x.ndim == 2:
            x = x.view(n, 1, 28, 28)
        image_grid(x, nrow=side, ax=ax, title=name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def scatter_2d(points, ax=None, title: str | None = None, lim: float | None = 4.0, s: float = 2, **kwargs):
    """Scatter (N, 2) points on square axes of half-width `lim`; returns the figure."""
    p = _to_numpy(points)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"scatter_2d expects points of shape (N, 2); got {tuple(p.shape)}")
    fig, ax = _axes(ax)
    ax.scatter(p[:, 0], p[:, 1], s=s, alpha=kwargs.pop("alpha", 0.5), **kwargs)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return fig


def grid_2d(lim: float = 4.0, n: int = 200) -> tuple[torch.Tensor, float]:
    """An n x n grid of points covering [-lim, lim]^2, as (n*n, 2), and the area of one cell."""
    if n < 2 or lim <= 0:
        raise ValueError(f"grid_2d needs n >= 2 and lim > 0; got n={n}, lim={lim}")
    axis = torch.linspace(-lim, lim, n)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), (2 * lim / (n - 1)) ** 2


@torch.no_grad()
def density_2d(log_prob: Callable[[torch.Tensor], torch.Tensor], ax=None, lim: float = 4.0, n: int = 200,
               title: str | None = None, device: torch.device | str | None = None, log_scale: bool = False):
    """Heat map of exp(log_prob(x)) on [-lim, lim]^2, log_prob mapping (M, 2) to (M,); returns the figure."""
    pts, _ = grid_2d(lim, n)
    values = log_prob(pts.to(device) if device is not None else pts)
    if not isinstance(values, torch.Tensor) or values.shape != (n * n,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"log_prob must map (M, 2) points to a tensor of shape (M,); got {got}")
    img = values.float().cpu().reshape(n, n)
    img = img if log_scale else img.exp()
    fig, ax = _axes(ax)
    ax.imshow(img.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis", interpolation="nearest")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return fig


def curves(history: Mapping[str, Sequence[float]], ax=None, title: str | None = None, ylabel: str = "loss",
           xlabel: str = "epoch", logy: bool = False):
    """Plot each named sequence of a history (e.g. `fit`'s train_loss and val_loss); returns the figure."""
    if not isinstance(history, Mapping) or not history:
        raise TypeError(f"curves expects a non-empty mapping name -> sequence of numbers; got {type(history).__name__}")
    fig, ax = _axes(ax, figsize=(5, 3.5))
    for name, values in history.items():
        if len(values):
            ax.plot(np.arange(1, len(values) + 1), values, label=name, marker="." if len(values) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    if title:
        ax.set_title(title)
    return fig
