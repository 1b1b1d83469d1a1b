import numpy as np
import pytest
import torch

from dgm_course import evaluation, mnist


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


def test_the_course_classifier_trains_caches_and_classifies(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DGM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DGM_MODE", "smoke")
    clf = evaluation.mnist_classifier(torch.device("cpu"))
    assert "trained classifier" in capsys.readouterr().out
    assert clf.test_accuracy > 0.8  # 4000 training images, one epoch
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    again = evaluation.mnist_classifier(torch.device("cpu"))
    assert "loaded classifier" in capsys.readouterr().out
    images, labels = mnist.load_mnist("test", n=200)
    torch.testing.assert_close(evaluation.features(mnist.to_unit(images), again),
                               evaluation.features(mnist.to_unit(images), clf))
    assert (evaluation.predict(mnist.to_unit(images), again) == labels).double().mean() > 0.8
