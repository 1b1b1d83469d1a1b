"""One training loop for every likelihood model (it calls `model.loss(x)` and nothing else), and training caches."""

from __future__ import annotations

import numbers
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .runtime import cache_dir, mode, progress_off

Batch = torch.Tensor | tuple[torch.Tensor, ...]


def _as_tuple(data: Batch, what: str) -> tuple[torch.Tensor, ...]:
    tensors = data if isinstance(data, tuple) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{what} must be a tensor or a tuple of tensors; got {type(data).__name__}")
    if any(len(t) != len(tensors[0]) for t in tensors):
        raise ValueError(f"{what}: all tensors need the same first dimension; got {[len(t) for t in tensors]}")
    return tensors


def _batches(tensors, batch_size, generator=None):
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield tuple(t[idx] for t in tensors)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Batch, batch_size: int = 500, transform: Callable | None = None) -> float:
    """The mean of `model.loss` over a dataset, batch-size weighted, in eval mode."""
    tensors = _as_tuple(data, "data")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in _batches(tensors, batch_size):
        batch = tuple(t.to(device) for t in batch)
        if transform is not None:
            batch = (transform(batch[0]),) + batch[1:]
        total += float(model.loss(*batch)) * len(batch[0])
        count += len(batch[0])
    model.train(was_training)
    return total / count


def _is_rate(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _learning_rates(lr: Sequence[float], epochs: int) -> list[float]:
    """A per-epoch schedule, checked: one positive learning rate per epoch."""
    if isinstance(lr, str | bytes) or not isinstance(lr, Sequence):
        raise TypeError(f"lr must be a number or a list of one learning rate per epoch; got {type(lr).__name__}")
    rates = list(lr)
    if len(rates) != epochs:
        raise ValueError(f"lr has {len(rates)} learning rates for {epochs} epochs; give one per epoch")
    if not all(_is_rate(r) and r > 0 for r in rates):
        raise ValueError(f"learning rates must be positive numbers; got {rates}")
    return [float(r) for r in rates]


def fit(
    model: torch.nn.Module,
    train_data: Batch,
    val_data: Batch | None = None,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float | Sequence[float] = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    clip_grad: float | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Minimize `model.loss(x)` with Adam (or `optimizer`); returns the history of train/val loss per epoch and per step.

    `lr` is one learning rate, or one per epoch (a schedule: a list of `epochs` values, set on every parameter
    group of the one optimizer at the start of each epoch; it also overrides the rate of a given `optimizer`).
    `transform` is applied to every training batch as it is drawn (dynamic binarization, dequantization);
    validation runs once per epoch on `val_data` as given. Tuples of tensors are passed as `model.loss(*batch)`.
    """
    tensors = _as_tuple(train_data, "train_data")
    val = _as_tuple(val_data, "val_data") if val_data is not None else None
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")
    lr_per_epoch = None if _is_rate(lr) else _learning_rates(lr, epochs)
    if not hasattr(model, "loss"):
        raise TypeError(f"model must have a loss(x) method returning a scalar; {type(model).__name__} has none")
    device = next(model.parameters()).device
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr_per_epoch[0] if lr_per_epoch else lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "step_loss": [], "epoch_time": []}
    steps_per_epoch = -(-len(tensors[0]) // batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress or progress_off(), desc=type(model).__name__,
               leave=False)
    model.train()
    for epoch in range(epochs):
        if lr_per_epoch is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_per_epoch[epoch]
        start, total, count = time.perf_counter(), 0.0, 0
        for batch in _batches(tensors, batch_size, generator):
            batch = tuple(t.to(device) for t in batch)
            if transform is not None:
                batch = (transform(batch[0]),) + batch[1:]
            loss = model.loss(*batch)
            if loss.ndim != 0:
                raise ValueError(f"model.loss must return a scalar; got shape {tuple(loss.shape)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            history["step_loss"].append(loss.item())
            total, count = total + loss.item() * len(batch[0]), count + len(batch[0])
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history["train_loss"].append(total / count)
        if val is not None:
            history["val_loss"].append(evaluate(model, val, transform=None))
        history["epoch_time"].append(time.perf_counter() - start)
    bar.close()
    model.eval()
    return history


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        try:  # what cannot be loaded safely is refused now, not when a later run loads it
            torch.load(tmp, weights_only=True)
        except pickle.UnpicklingError as err:
            raise TypeError("a cached training record may hold only tensors, numbers, strings, lists, tuples and "
                            f"dicts (it is loaded with weights_only=True); {path.name} holds more: {err}") from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def checkpoint_path(lecture: str, name: str) -> Path:
    """Where `train_or_load` keeps a model: `<cache_dir>/models/<lecture>/<name>-<mode>.pt`."""
    for label, value in (("lecture", lecture), ("name", name)):
        if not value or not isinstance(value, str) or "/" in value or value.startswith("."):
            raise ValueError(f"{label} must be a plain non-empty name without '/'; got {value!r}")
    return cache_dir() / "models" / lecture / f"{name}-{mode()}.pt"


def train_or_load(
    model: torch.nn.Module, lecture: str, name: str, train: Callable[[], Any], force: bool | None = None
) -> Any:
    """Load `model`'s weights and training record from the cache, or call `train()` and cache them.

    The cache is keyed by lecture, name and mode. `force=True` or the environment variable `DGM_RETRAIN=1`
    retrains. Returns whatever `train()` returned (e.g. the history of `fit`), saved beside the weights.
    """
    path = checkpoint_path(lecture, name)
    if force is None:
        force = os.environ.get("DGM_RETRAIN", "0") not in ("", "0")
    if path.exists() and not force:
        # weights_only: a cache file is data, never code (a planted pickle must not run)
        saved = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
        model.load_state_dict(saved["state_dict"])
        model.eval()
        print(f"loaded {name} from the cache {path} (trained in {saved['seconds']:.0f} s; "
              f"train_or_load(..., force=True) or DGM_RETRAIN=1 retrains)")
        return saved["record"]
    start = time.perf_counter()
    record = train()
    seconds = time.perf_counter() - start
    _atomic_save({"state_dict": model.state_dict(), "record": record, "seconds": seconds}, path)
    print(f"trained {name} in {seconds:.0f} s; saved to {path}")
    return record
