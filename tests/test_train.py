import contextlib
import copy
import math
import os
import pickle
import warnings

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


class TinyPixelModel(torch.nn.Module):
    """A conv net over 8x8 binary images with a Bernoulli likelihood: the shape of the course's image models."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(4, 1, 3, padding=1))

    def loss(self, x, weight=None):
        nll = torch.nn.functional.binary_cross_entropy_with_logits(self.net(x), x, reduction="none").sum((1, 2, 3))
        return nll.mean() if weight is None else (nll * weight).mean()


def reference_fit(model, tensors, val, *, epochs, batch_size, lr, transform, seed):
    """The loop of `fit` before the GPU data path (every batch indexed on the host, then `.to(device)`), kept to
    show that the CPU results did not move."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps, val_losses = [], []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(tensors[0]), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = tuple(t[order[start:start + batch_size]].to(device) for t in tensors)
            batch = (transform(batch[0]),) + batch[1:]
            loss = model.loss(*batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps.append(loss.item())
        model.eval()
        with torch.no_grad():
            total = sum(float(model.loss(*(t[i:i + 500] for t in val))) * len(val[0][i:i + 500])
                        for i in range(0, len(val[0]), 500))
        val_losses.append(total / len(val[0]))
        model.train()
    return steps, val_losses


def pixel_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.rand(n, generator=g) + 0.5


def test_fit_on_the_cpu_is_bit_identical_to_the_loop_before_the_gpu_data_path():
    from dgm_course import mnist

    train_data, val_data = pixel_data(700, 0), pixel_data(600, 1)
    val_data = (mnist.binarize_fixed((val_data[0] * 255).to(torch.uint8)), val_data[1])
    results = []
    for loop in ("reference", "fit"):
        torch.manual_seed(0)
        model = TinyPixelModel()
        torch.manual_seed(1)  # binarize_dynamic draws from the global generator
        if loop == "reference":
            steps, val_losses = reference_fit(model, train_data, val_data, epochs=2, batch_size=64, lr=3e-3,
                                              transform=mnist.binarize_dynamic, seed=5)
        else:
            history = train.fit(model, train_data, val_data, epochs=2, batch_size=64, lr=3e-3,
                                transform=mnist.binarize_dynamic, seed=5, progress=False)
            steps, val_losses = history["step_loss"], history["val_loss"]
        results.append((steps, val_losses, model.state_dict()))
    (steps_a, val_a, weights_a), (steps_b, val_b, weights_b) = results
    assert len(steps_a) == 2 * 11 and steps_a == steps_b and val_a == val_b
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)


def count_to_calls(monkeypatch):
    """Record the target of every Tensor.to call from now on."""
    calls = []
    original = torch.Tensor.to

    def counting(self, *args, **kwargs):
        calls.append(args[0] if args else kwargs.get("device"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting)
    return calls


def test_fit_copies_nothing_per_batch_when_the_data_are_on_the_model_s_device(monkeypatch):
    train_data, val_data = pixel_data(640, 0), pixel_data(100, 1)
    calls = count_to_calls(monkeypatch)
    history = train.fit(TinyPixelModel(), train_data, val_data, epochs=3, batch_size=32, progress=False)
    assert len(history["step_loss"]) == 3 * 20
    assert len(calls) <= 2 * 3  # the epoch's order (and the validation order), never a batch


def test_the_data_move_to_the_device_once_and_are_indexed_there(monkeypatch):
    """With the meta device standing in for a GPU: the data move once, then every batch is indexed on the device
    without a copy; data over DEVICE_DATA_BYTES stay on the host and each batch is copied on its own."""
    meta = torch.device("meta")
    tensors = pixel_data(100, 0)
    calls = count_to_calls(monkeypatch)
    on_device = train._on(meta, tensors)
    assert [t.device for t in on_device] == [meta, meta] and len(calls) == 2
    assert train._on(meta, on_device) is on_device  # already there: nothing moves
    calls.clear()
    batches = list(train._batches(on_device, 32, meta, torch.Generator().manual_seed(0)))
    assert len(batches) == 4 and all(t.device == meta for batch in batches for t in batch)
    assert len(calls) == 1  # the order, once per epoch

    monkeypatch.setattr(train, "DEVICE_DATA_BYTES", 1000)
    calls.clear()
    on_host = train._on(meta, tensors)
    assert [t.device.type for t in on_host] == ["cpu", "cpu"] and not calls
    batches = list(train._batches(on_host, 32, meta, torch.Generator().manual_seed(0)))
    assert all(t.device == meta for batch in batches for t in batch)
    assert len(calls) == 1 + 2 * 4  # the order, then both tensors of every batch


def test_amp_changes_nothing_on_the_cpu():
    runs = []
    for amp in (False, True):
        torch.manual_seed(0)
        model = TinyPixelModel()
        history = train.fit(model, pixel_data(300, 0), epochs=2, batch_size=50, seed=1, amp=amp, progress=False)
        runs.append((history["step_loss"], model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][key], runs[1][1][key]) for key in runs[0][1])
    with pytest.raises(TypeError, match="amp must be True or False"):
        train.fit(TinyPixelModel(), pixel_data(10, 0), epochs=1, amp="yes")


def test_amp_is_bfloat16_autocast_on_cuda_only():
    assert isinstance(train._autocast(torch.device("cpu"), True), contextlib.nullcontext)
    assert isinstance(train._autocast(torch.device("mps"), True), contextlib.nullcontext)
    assert isinstance(train._autocast(torch.device("cuda"), False), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available" on a machine without a GPU
        context = train._autocast(torch.device("cuda"), True)
    assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16


def test_evaluate_moves_the_data_once(monkeypatch):
    x = data(1001)
    calls = count_to_calls(monkeypatch)
    train.evaluate(Gaussian(), x, batch_size=100)
    assert len(calls) <= 1


def lectures_ema_loop(model, tensors, *, steps, batch_size, lr, ema_decay, seed=0):
    """The training loop that lectures 13 and 15 wrote out before `fit_steps` (warm-up over 100 steps, cosine decay,
    EMA with a short memory at the start), kept to show that `fit_steps` gives the same weights."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = copy.deepcopy(model).requires_grad_(False)
    gen, losses = torch.Generator().manual_seed(seed), []
    for step in range(steps):
        idx = torch.randint(0, len(tensors[0]), (batch_size,), generator=gen)
        loss = model.loss(*(t[idx] for t in tensors))
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        losses.append(loss.item())
    model.load_state_dict(ema.state_dict())
    return losses


def test_fit_steps_is_the_lectures_loop_bit_for_bit_and_keeps_the_average():
    x, w = pixel_data(300, seed=3)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(TinyPixelModel())
    history = train.fit_steps(models[0], (x, w), steps=150, batch_size=16, lr=3e-3, ema_decay=0.99)
    reference = lectures_ema_loop(models[1], (x, w), steps=150, batch_size=16, lr=3e-3, ema_decay=0.99)
    assert history["step_loss"] == reference and history["seconds"] > 0
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)
    torch.manual_seed(0)
    plain = TinyPixelModel()                          # ema_decay 0: the average is the last step's weights
    train.fit_steps(plain, (x, w), steps=150, batch_size=16, lr=3e-3, ema_decay=0.0)
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), models[0].parameters(), strict=True))


def test_ema_update_and_fit_steps_reject_bad_input():
    average, model = Gaussian(), Gaussian()
    with torch.no_grad():
        model.mu.fill_(1.0)
    train.ema_update(average, model, 0.75)
    assert torch.allclose(average.mu, torch.full((2,), 0.25)) and torch.equal(model.mu, torch.ones(2))
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\]; got 1.5"):
        train.ema_update(average, model, 1.5)
    good = dict(steps=5, batch_size=4, lr=1e-3, ema_decay=0.9)
    for bad, message in (({"steps": 0}, "steps must be a positive int; got 0"),
                         ({"batch_size": 2.5}, "batch_size must be a positive int; got 2.5"),
                         ({"lr": -1.0}, "lr must be a positive number; got -1.0"),
                         ({"ema_decay": 1.0}, r"ema_decay must be in \[0, 1\); got 1.0")):
        with pytest.raises(ValueError, match=message):
            train.fit_steps(Gaussian(), data(50), **(good | bad))
    with pytest.raises(TypeError, match="has none"):
        train.fit_steps(torch.nn.Linear(2, 2), data(50), **good)


class BatchNormModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))

    def loss(self, x):
        return (self.net(x) - 1).pow(2).mean()


def test_fit_steps_keeps_the_models_buffers_of_the_last_step():
    """Only parameters are averaged: running statistics must be the trained ones, not the initial copy's."""
    torch.manual_seed(0)
    model = BatchNormModel()
    x = torch.randn(200, 2) * 3 + 5
    train.fit_steps(model, x, steps=50, batch_size=32, lr=1e-2, ema_decay=0.9)
    bn = model.net[1]
    assert bn.num_batches_tracked.item() == 50
    assert not torch.equal(bn.running_mean, torch.zeros(2)) and not torch.equal(bn.running_var, torch.ones(2))
