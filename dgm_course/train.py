"""One training loop for every likelihood model (it calls `model.loss(x)` and nothing else), and training caches."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .runtime import cache_dir, mode, progress, progress_off

Batch = torch.Tensor | tuple[torch.Tensor, ...]

#: Data up to this many bytes (all tensors together) move to the model's accelerator once, for the whole run;
#: larger data stay on the host and each batch is copied on its own.
DEVICE_DATA_BYTES = 4 * 2**30


def _as_tuple(data: Batch, what: str) -> tuple[torch.Tensor, ...]:
    tensors = data if isinstance(data, tuple) else (data,)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(f"{what} must be a tensor or a tuple of tensors; got {type(data).__name__}")
    if any(len(t) != len(tensors[0]) for t in tensors):
        raise ValueError(f"{what}: all tensors need the same first dimension; got {[len(t) for t in tensors]}")
    return tensors


def _on(device: torch.device, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The tensors moved to `device` once, for the whole run; on the host instead when they exceed DEVICE_DATA_BYTES."""
    if all(t.device == device for t in tensors):
        return tensors
    if device.type == "cpu" or sum(t.nbytes for t in tensors if t.device != device) <= DEVICE_DATA_BYTES:
        return tuple(t.to(device) for t in tensors)
    return tuple(t.cpu() for t in tensors)


def _batches(tensors: tuple[torch.Tensor, ...], batch_size: int, device: torch.device,
             generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches on `device`, in a random order drawn from the CPU `generator` (else in order), indexed where the data
    are: one copy of the order per epoch, none per batch, when the data are on `device` already (see `_on`)."""
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(tensors[0].device)  # the same order on every device, since the CPU generator draws it
    on_device = tensors[0].device == device
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        batch = tuple(t[idx] for t in tensors)
        yield batch if on_device else tuple(t.to(device) for t in batch)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when `amp`; nothing otherwise (CPU and MPS train in the default dtype)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Batch, batch_size: int = 500, transform: Callable | None = None) -> float:
    """The mean of `model.loss` over a dataset, batch-size weighted, in eval mode and in full precision.

    The data move to the model's device once (as in `fit`); `transform` runs on each batch there.
    """
    device = next(model.parameters()).device
    tensors = _on(device, _as_tuple(data, "data"))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in _batches(tensors, batch_size, device):
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
    amp: bool = False,
) -> dict[str, list[float]]:
    """Minimize `model.loss(x)` with Adam (or `optimizer`); returns the history of train/val loss per epoch and per step.

    `lr` is one learning rate, or one per epoch (a schedule: a list of `epochs` values, set on every parameter
    group of the one optimizer at the start of each epoch; it also overrides the rate of a given `optimizer`).
    `transform` is applied to every training batch as it is drawn (dynamic binarization, dequantization), on the
    model's device; validation runs once per epoch on `val_data` as given. Tuples of tensors are passed as
    `model.loss(*batch)`.

    On an accelerator (CUDA, MPS) the training and validation data move to the model's device once, at the start,
    and every batch is indexed there: no copy per batch. Each epoch's order is still drawn from a CPU generator
    seeded with `seed`, so the batches are the same on every device, and on the CPU nothing moves at all. Data
    larger than `DEVICE_DATA_BYTES` (4 GiB) together stay on the host and are copied batch by batch.

    `amp=True` runs the forward pass and the loss under bfloat16 autocast on CUDA (no gradient scaling is needed
    for bfloat16); on the CPU and MPS it changes nothing. It is safe for conv nets trained by a likelihood or a
    denoising loss, where bfloat16 rounding is noise next to the minibatch noise. Validation stays in float32:
    never report a likelihood (NLL, bits per dim) computed under autocast.
    """
    tensors = _as_tuple(train_data, "train_data")
    val = _as_tuple(val_data, "val_data") if val_data is not None else None
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")
    if not isinstance(amp, bool):
        raise TypeError(f"amp must be True or False; got {amp!r}")
    lr_per_epoch = None if _is_rate(lr) else _learning_rates(lr, epochs)
    if not hasattr(model, "loss"):
        raise TypeError(f"model must have a loss(x) method returning a scalar; {type(model).__name__} has none")
    device = next(model.parameters()).device
    tensors = _on(device, tensors)
    val = _on(device, val) if val is not None else None
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
        for batch in _batches(tensors, batch_size, device, generator):
            if transform is not None:
                batch = (transform(batch[0]),) + batch[1:]
            with _autocast(device, amp):
                loss = model.loss(*batch)
            if loss.ndim != 0:
                raise ValueError(f"model.loss must return a scalar; got shape {tuple(loss.shape)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            value = loss.item()  # one device-to-host read per step
            history["step_loss"].append(value)
            total, count = total + value * len(batch[0]), count + len(batch[0])
            bar.update()
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)  # drawn with the next rate-limited update
        history["train_loss"].append(total / count)
        if val is not None:
            history["val_loss"].append(evaluate(model, val, transform=None))
        history["epoch_time"].append(time.perf_counter() - start)
    bar.close()
    model.eval()
    return history


@torch.no_grad()
def ema_update(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """One step of an exponential moving average of the weights, parameter by parameter:
    theta_avg <- decay * theta_avg + (1 - decay) * theta. `average` has `model`'s architecture (a deep copy)."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1]; got {decay!r}")
    for p_avg, p in zip(average.parameters(), model.parameters(), strict=True):
        p_avg.lerp_(p, 1 - decay)


def fit_steps(
    model: torch.nn.Module,
    train_data: Batch,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    ema_decay: float,
    warmup: int = 100,
    seed: int = 0,
    desc: str = "training steps",
) -> dict[str, Any]:
    """Adam on `model.loss(*batch)` for `steps` minibatches drawn with replacement, the recipe of the diffusion and
    score models: the learning rate warms up linearly over `warmup` steps, then decays to 0 on a cosine; an
    exponential moving average (EMA) of the weights is kept with decay min(ema_decay, (1 + step) / (10 + step)) (a
    short memory in the first steps) and copied into `model`'s parameters at the end, so the average is what gets
    sampled; `model`'s buffers (batch-norm statistics, say) stay those of the last step.

    The indices come from a CPU generator seeded with `seed` (the same batches on every device) and index the data
    where they live; like `fit`, the data move to the model's device once. Returns {"step_loss": one float per
    step, "seconds": training time}; the losses stay on the device until the end (no sync per step).
    """
    tensors = _as_tuple(train_data, "train_data")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("warmup", warmup)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if not _is_rate(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1); got {ema_decay!r}")
    if not hasattr(model, "loss"):
        raise TypeError(f"model must have a loss(x) method returning a scalar; {type(model).__name__} has none")
    device = next(model.parameters()).device
    tensors = _on(device, tensors)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = copy.deepcopy(model).requires_grad_(False)
    gen, losses, start = torch.Generator().manual_seed(seed), [], time.perf_counter()
    for step in progress(range(steps), desc):
        idx = torch.randint(0, len(tensors[0]), (batch_size,), generator=gen).to(tensors[0].device)   # (B,)
        loss = model.loss(*(t[idx] for t in tensors))
        for group in opt.param_groups:                                   # warm-up, then cosine decay to 0
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        losses.append(loss.detach())
    with torch.no_grad():
        for p, p_ema in zip(model.parameters(), ema.parameters(), strict=True):
            p.copy_(p_ema)
    return {"step_loss": torch.stack(losses).tolist(), "seconds": time.perf_counter() - start}


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
