import numpy as np
import pytest
import torch
from tqdm.auto import tqdm

from dgm_course import evaluation, mnist, runtime, train


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    closed = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()
    assert evaluation.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-10)


def test_frechet_distance_is_zero_for_equal_gaussians_and_symmetric():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    assert evaluation.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)
    assert evaluation.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(evaluation.frechet_distance(mu2, s2, mu1, s1))
    assert evaluation.frechet_distance(mu1, s1, mu2, s2) > 0


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="means"):
        evaluation.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


@pytest.mark.parametrize("bad, error, message", [
    (torch.zeros(4, 28, 28, dtype=torch.uint8), TypeError, "uint8"),
    (torch.zeros(4, 27, 28), ValueError, "shape"),
    (torch.full((4, 784), 2.0), ValueError, r"\[0, 1\]"),
    (torch.full((4, 784), -1.0), ValueError, r"\(x \+ 1\) / 2"),
    (np.zeros((4, 784)), TypeError, "Tensor"),
])
def test_images_are_checked(bad, error, message):
    with pytest.raises(error, match=message):
        evaluation.features(bad, evaluation.MNISTClassifier())


def test_features_and_predictions_of_each_accepted_shape():
    torch.manual_seed(0)
    clf = evaluation.MNISTClassifier()
    x = torch.rand(7, 1, 28, 28)
    feats = evaluation.features(x, clf, batch_size=3)
    assert feats.shape == (7, evaluation.FEATURES) and feats.dtype == torch.float64
    for view in (x.reshape(7, 784), x.reshape(7, 28, 28)):
        torch.testing.assert_close(evaluation.features(view, clf), feats, rtol=1e-5, atol=1e-6)
    labels = evaluation.predict(x, clf)
    assert labels.shape == (7,) and labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() <= 9


def test_fid_is_near_zero_for_one_set_and_grows_with_noise():
    torch.manual_seed(0)
    clf = evaluation.MNISTClassifier()
    x = torch.rand(300, 1, 28, 28) * (torch.rand(300, 1, 1, 1) > 0.5)
    assert evaluation.fid(x, x, clf) == pytest.approx(0, abs=1e-6)
    noisy = (x + 0.5 * torch.randn_like(x)).clamp(0, 1)
    assert evaluation.fid(x, noisy, clf) > 1e-3


def test_random_shift_moves_digits_without_losing_ink():
    torch.manual_seed(0)
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 10:18, 10:18] = torch.rand(16, 1, 8, 8)
    shifted = evaluation.random_shift(x)
    assert shifted.shape == x.shape
    torch.testing.assert_close(shifted.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))
    assert not torch.equal(shifted, x)


def record_bars(monkeypatch):
    """Record the progress bars of the classifier's training: the epochs' (runtime.progress) and fit's steps'."""
    bars = []

    def epochs_bar(iterable, desc="", **kwargs):
        bars.append(("epochs", desc, runtime.progress_off()))
        return runtime.progress(iterable, desc, **kwargs)

    def steps_bar(**kwargs):
        bars.append(("steps", kwargs["desc"], kwargs["disable"]))
        return tqdm(**kwargs)

    monkeypatch.setattr(evaluation, "progress", epochs_bar)
    monkeypatch.setattr(train, "tqdm", steps_bar)
    return bars


def test_the_course_classifier_trains_caches_and_classifies(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DGM_MODE", "smoke")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bars = record_bars(monkeypatch)
    clf = evaluation.mnist_classifier(torch.device("cpu"))
    assert "trained classifier" in capsys.readouterr().out
    # the first run's long wait (lecture 14) has its bars, which the tests' TQDM_DISABLE switches off
    assert bars == [("epochs", "course classifier, epochs", True), ("steps", "MNISTClassifier", True)]
    assert clf.test_accuracy > 0.8  # 4000 training images, one epoch
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    again = evaluation.mnist_classifier(torch.device("cpu"))
    assert "loaded classifier" in capsys.readouterr().out
    images, labels = mnist.load_mnist("test", n=200)
    torch.testing.assert_close(evaluation.features(mnist.to_unit(images), again),
                               evaluation.features(mnist.to_unit(images), clf))
    assert (evaluation.predict(mnist.to_unit(images), again) == labels).double().mean() > 0.8


def test_the_classifier_trains_the_same_way_whatever_the_notebook_did(monkeypatch, tmp_path):
    """Two trainings give the same weights, also under a float64 default dtype, another global seed and with
    progress bars shown, and neither touches the caller's random state: the FID yardstick does not depend on the
    notebook around it."""
    monkeypatch.setenv("DGM_MODE", "smoke")
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path / "a"))
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    first = evaluation.mnist_classifier(torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected_draw)
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("TQDM_DISABLE", "0")  # the second training shows its bars: they change nothing either
    bars = record_bars(monkeypatch)
    torch.manual_seed(99)
    torch.set_default_dtype(torch.float64)
    try:
        second = evaluation.mnist_classifier(torch.device("cpu"))
    finally:
        torch.set_default_dtype(torch.float32)
    assert bars == [("epochs", "course classifier, epochs", False), ("steps", "MNISTClassifier", False)]
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{name} differs between two trainings"


def test_the_fid_protocol_helpers(monkeypatch, tmp_path):
    monkeypatch.setenv("DGM_MODE", "smoke")
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))
    images, labels = mnist.test_split(smoke=300)
    assert len(images) == len(labels) == 300
    monkeypatch.setenv("DGM_MODE", "standard")
    assert len(mnist.test_split(smoke=300)[0]) == 2000
    monkeypatch.setenv("DGM_MODE", "smoke")
    train, _ = evaluation.generative_train_split()
    all_train, _ = mnist.load_mnist("train")
    held = evaluation.held_out_images()
    assert len(train) == len(all_train) - evaluation.HELD_OUT and len(held) == evaluation.HELD_OUT
    # a partition of the split: every training image is in exactly one part (compared as rows)
    key = lambda x: {bytes(row) for row in x.reshape(len(x), -1).numpy()}  # noqa: E731
    assert len(key(train) & key(held)) < 50  # MNIST has a few duplicate images, nothing more
    assert len(key(train) | key(held)) >= len(key(all_train)) - 1
    assert torch.equal(evaluation.held_out_images(10), held[:10])
    assert torch.equal(evaluation.generative_train_split(7)[0], train[:7])
    clf = evaluation.MNISTClassifier().eval()
    reference = evaluation.fid_reference(smoke=300)
    assert reference.shape == (300, 1, 28, 28) and 0 <= reference.min() and reference.max() <= 1
    floor = evaluation.fid_floor(300, reference, clf)
    assert floor == pytest.approx(evaluation.fid(mnist.to_unit(held[:300]), reference, clf))
    with pytest.raises(ValueError, match="held-out"):
        evaluation.fid_floor(evaluation.HELD_OUT + 1, reference, clf)
    fraction = evaluation.confident_fraction(reference, clf)
    assert 0 <= fraction <= 1
    assert evaluation.confident_fraction(reference, clf, threshold=0.0) == 1.0
