import math
import os
import pickle

import pytest
import torch
from tqdm.auto import tqdm

from dgm_course import train


class Gaussian(torch.nn.Module):
    """A diagonal Gaussian with learnable mean and log-std: the smallest likelihood model."""

    def __init__(self, dim=2):
        super().__init__()
        self.mu = torch.nn.Parameter(torch.zeros(dim))
        self.log_sigma = torch.nn.Parameter(torch.zeros(dim))

    def loss(self, x):
        z = (x - self.mu) / self.log_sigma.exp()
        return (0.5 * z**2 + self.log_sigma + 0.5 * math.log(2 * math.pi)).sum(-1).mean()


class OnlyLoss(Gaussian):
    """Fails if the loop calls anything but loss (e.g. forward)."""

    def forward(self, x):
        raise AssertionError("the training loop must call model.loss only")


def data(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, -1.0])


def test_fit_learns_a_gaussian_and_returns_history():
    model = OnlyLoss()
    before = train.evaluate(model, data(500, seed=1))
    history = train.fit(model, data(), data(500, seed=1), epochs=30, lr=0.05, progress=False)
    assert len(history["train_loss"]) == len(history["val_loss"]) == 30
    assert len(history["step_loss"]) == 30 * 16
    assert history["val_loss"][-1] < before - 0.5
    assert torch.allclose(model.mu.detach(), torch.tensor([1.0, -1.0]), atol=0.1)
    assert torch.allclose(model.log_sigma.exp().detach(), torch.tensor([0.5, 2.0]), atol=0.1)


def test_fit_is_reproducible_and_applies_transform():
    seen = []

    def transform(x):
        seen.append(x.shape[0])
        return x

    runs = [train.fit(Gaussian(), data(), epochs=2, seed=3, transform=transform, progress=False) for _ in range(2)]
    assert runs[0]["step_loss"] == runs[1]["step_loss"]
    assert sum(seen) == 2 * 2 * 2000


def test_fit_clips_gradients():
    model = Gaussian()
    train.fit(model, data(64) * 1000, epochs=1, batch_size=64, lr=0.1, clip_grad=1e-3, optimizer=torch.optim.SGD(model.parameters(), lr=1.0), progress=False)
    assert model.mu.detach().norm() <= 1e-3 + 1e-6


def test_fit_follows_a_per_epoch_learning_rate_schedule():
    model = Gaussian()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []

    class Watched(Gaussian):
        def loss(self, x):
            seen.append(optimizer.param_groups[0]["lr"])
            return model.loss(x)

    watched = Watched()
    train.fit(watched, data(), epochs=3, batch_size=1000, lr=[0.3, 0.1, 0.01], optimizer=optimizer, progress=False)
    assert seen == [0.3, 0.3, 0.1, 0.1, 0.01, 0.01]
    one_rate, schedule = (train.fit(Gaussian(), data(), epochs=2, lr=lr, progress=False) for lr in (0.05, [0.05, 0.05]))
    assert one_rate["step_loss"] == schedule["step_loss"]


def test_fit_rejects_a_bad_schedule():
    with pytest.raises(ValueError, match="2 learning rates for 3 epochs"):
        train.fit(Gaussian(), data(), epochs=3, lr=[0.1, 0.1])
    with pytest.raises(ValueError, match="positive numbers; got \\[0.1, -0.1\\]"):
        train.fit(Gaussian(), data(), epochs=2, lr=[0.1, -0.1])
    with pytest.raises(TypeError, match="one learning rate per epoch; got str"):
        train.fit(Gaussian(), data(), epochs=1, lr="0.1")


@pytest.mark.parametrize(("value", "shown"), [(None, True), ("0", True), ("1", False), ("true", False)])
def test_fit_hides_its_progress_bar_when_tqdm_disable_is_set(monkeypatch, value, shown):
    bars = []

    def recording_tqdm(**kwargs):
        bars.append(kwargs["disable"])
        return tqdm(**kwargs)

    monkeypatch.setattr(train, "tqdm", recording_tqdm)
    if value is None:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    else:
        monkeypatch.setenv("TQDM_DISABLE", value)
    train.fit(Gaussian(), data(100), epochs=1, progress=True)
    train.fit(Gaussian(), data(100), epochs=1, progress=False)
    assert bars == [not shown, True]


def test_fit_passes_tuples_to_loss():
    class Conditional(Gaussian):
        def loss(self, x, y):
            assert x.shape[0] == y.shape[0]
            return super().loss(x + y[:, None])

    x, y = data(100), torch.zeros(100)
    assert len(train.fit(Conditional(), (x, y), (x, y), epochs=1, progress=False)["val_loss"]) == 1


def test_fit_rejects_bad_input():
    with pytest.raises(TypeError, match="tensor or a tuple of tensors; got list"):
        train.fit(Gaussian(), [1, 2], epochs=1)
    with pytest.raises(ValueError, match="positive int"):
        train.fit(Gaussian(), data(), epochs=0)
    with pytest.raises(TypeError, match="has none"):
        train.fit(torch.nn.Linear(2, 2), data(), epochs=1)

    class VectorLoss(Gaussian):
        def loss(self, x):
            return super().loss(x).expand(3)

    with pytest.raises(ValueError, match="scalar; got shape"):
        train.fit(VectorLoss(), data(), epochs=1, progress=False)


def test_train_or_load_caches_and_retrains(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DGM_MODE", "smoke")
    monkeypatch.delenv("DGM_RETRAIN", raising=False)
    calls = []

    def make(model):
        def run():
            calls.append(1)
            return train.fit(model, data(), epochs=3, lr=0.05, progress=False)
        return run

    trained = Gaussian()
    history = train.train_or_load(trained, "01_background", "gauss", make(trained))
    path = tmp_path / "models" / "01_background" / "gauss-smoke.pt"
    assert path.exists() and not list(path.parent.glob("*.part"))
    fresh = Gaussian()
    again = train.train_or_load(fresh, "01_background", "gauss", make(fresh))
    assert len(calls) == 1 and again == history and torch.equal(fresh.mu, trained.mu)
    assert "loaded gauss from the cache" in capsys.readouterr().out
    train.train_or_load(Gaussian(), "01_background", "gauss", make(Gaussian()), force=True)
    monkeypatch.setenv("DGM_RETRAIN", "1")
    train.train_or_load(Gaussian(), "01_background", "gauss", make(Gaussian()))
    assert len(calls) == 3
    monkeypatch.setenv("DGM_MODE", "standard")  # the mode is part of the key
    assert train.checkpoint_path("01_background", "gauss").name == "gauss-standard.pt"


def test_train_or_load_leaves_nothing_when_training_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))

    def broken():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_or_load(Gaussian(), "01_background", "gauss", broken)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*"))


def test_checkpoint_names_are_checked():
    with pytest.raises(ValueError, match="without '/'"):
        train.checkpoint_path("01_background", "../escape")


def test_evaluate_is_batch_weighted():
    model = Gaussian()
    x = data(1001)
    assert train.evaluate(model, x, batch_size=100) == pytest.approx(model.loss(x).item(), rel=1e-5)


class Opaque:
    """An object that pickles, but only as a reference to this class."""


class Payload:
    """A pickle that runs a command when it is loaded without weights_only."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_train_or_load_refuses_records_that_would_need_unsafe_loading(monkeypatch, tmp_path):
    """Cache files are loaded with weights_only=True: a record holding arbitrary objects is refused when saved,
    and a planted pickle that would run code is refused when loaded."""
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))

    with pytest.raises(TypeError, match="weights_only"):
        train.train_or_load(Gaussian(), "01_background", "opaque", lambda: {"thing": Opaque()})
    assert not list(tmp_path.rglob("*.pt*"))

    path = train.checkpoint_path("01_background", "planted")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Gaussian().state_dict(), "record": Payload(tmp_path / "pwned"), "seconds": 1.0}, path)
    with pytest.raises(pickle.UnpicklingError):
        train.train_or_load(Gaussian(), "01_background", "planted", lambda: {})
    assert not (tmp_path / "pwned").exists()
