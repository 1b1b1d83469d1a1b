"""Where a notebook runs: the cost mode, the device, the seed and the cache directory."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

MODES = ("smoke", "standard", "full")
DEFAULT_MODE = "standard"

T = TypeVar("T")


def progress_off() -> bool:
    """TQDM_DISABLE set (to anything but "", "0" or "false"): tqdm's own switch, which its notebook bars ignore."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, **kwargs) -> Iterator[T]:
    """`iterable` with a progress bar (tqdm's notebook bar in Jupyter, a text bar elsewhere) for a loop a student
    waits on: `for step in progress(range(STEPS), "DCGAN"):`. Off when TQDM_DISABLE is set (tests, the grader,
    the runner), since the notebook bar ignores that variable. The bar disappears when the loop ends.
    """
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=progress_off(), leave=False, **kwargs)


def mode() -> str:
    """The cost mode from the environment variable `DGM_MODE` (default `standard`)."""
    value = os.environ.get("DGM_MODE", DEFAULT_MODE).strip().lower()
    if value not in MODES:
        raise ValueError(f"DGM_MODE must be one of {', '.join(MODES)}; got {value!r}")
    return value


def budget(smoke: T, standard: T, full: T) -> T:
    """The value for the current mode: `budget(smoke=1, standard=20, full=200)`."""
    return {"smoke": smoke, "standard": standard, "full": full}[mode()]


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU (`DGM_DEVICE` overrides)."""
    forced = os.environ.get("DGM_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices) and return a torch generator with that seed."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


def cache_dir() -> Path:
    """The per-user cache directory (`DGM_CACHE_DIR`, else `$XDG_CACHE_HOME/dgm_course`, else `~/.cache/dgm_course`)."""
    if os.environ.get("DGM_CACHE_DIR"):
        return Path(os.environ["DGM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dgm_course"


def setup(seed: int = 0, threads: int | None = None) -> tuple[torch.device, str]:
    """The first call of every lecture: seed everything and return `(device, mode)`, printing both."""
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(seed)
    dev, current = device(), mode()
    print(f"device: {dev}   mode: {current}   seed: {seed}   torch {torch.__version__}")
    return dev, current
