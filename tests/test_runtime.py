import random

import numpy as np
import pytest
import torch

from dgm_course import runtime


def test_mode_default_and_values(monkeypatch):
    monkeypatch.delenv("DGM_MODE", raising=False)
    assert runtime.mode() == "standard"
    for value in runtime.MODES:
        monkeypatch.setenv("DGM_MODE", value.upper())
        assert runtime.mode() == value


def test_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("DGM_MODE", "quick")
    with pytest.raises(ValueError, match="smoke, standard, full.*'quick'"):
        runtime.mode()


def test_budget_follows_mode(monkeypatch):
    monkeypatch.setenv("DGM_MODE", "smoke")
    assert runtime.budget(smoke=1, standard=2, full=3) == 1
    monkeypatch.setenv("DGM_MODE", "full")
    assert runtime.budget(smoke=1, standard=2, full=3) == 3


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    runtime.seed_everything(5)
    first = draw()
    gen = runtime.seed_everything(5)
    assert draw() == first
    assert torch.rand(1, generator=gen).item() == torch.rand(1, generator=torch.Generator().manual_seed(5)).item()


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        runtime.seed_everything(bad)


def test_device_prefers_override_then_cpu_here(monkeypatch):
    monkeypatch.setenv("DGM_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    monkeypatch.delenv("DGM_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.device() == torch.device("cuda")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path / "c"))
    assert runtime.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DGM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.cache_dir() == tmp_path / "dgm_course"


def test_setup_prints_and_returns(capsys, monkeypatch):
    monkeypatch.setenv("DGM_MODE", "smoke")
    dev, mode = runtime.setup(seed=3)
    assert mode == "smoke" and isinstance(dev, torch.device)
    assert "mode: smoke" in capsys.readouterr().out


@pytest.mark.parametrize("value, shown", [(None, True), ("", True), ("0", True), ("1", False), ("true", False)])
def test_progress_follows_tqdm_disable(monkeypatch, value, shown):
    if value is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", value)
    bar = runtime.progress(range(3), "steps")
    assert bar.disable is (not shown)
    assert list(bar) == [0, 1, 2]
