"""The course's MNIST classifier and the Fréchet distance in its feature space. Defined in lecture 14.

Lecture 14 builds and explains these; they are promoted here unchanged so that the lectures on GANs, score models
and diffusion can report a sample-quality number. "FID" in this course is the Fréchet distance between Gaussians
fitted to the 128 penultimate features of this small classifier, not of Inception-v3: its values are not
comparable with published FIDs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import mnist
from .runtime import budget, device, progress
from .train import fit, train_or_load

FEATURES = 128


class MNISTClassifier(nn.Module):
    """Two conv blocks (with batch norm) and a 128-unit hidden layer: about 99% test accuracy after five epochs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),   # (N, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # (N, 64, 7, 7)
        )
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(FEATURES, 10))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> (N, 128) penultimate activations."""
        return self.hidden(self.conv(x - 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 10) logits

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x), y)


def random_shift(x: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """Translate each image of a batch by up to `pixels` in each direction (zero padding): the training augmentation."""
    n = len(x)
    padded = F.pad(x, (pixels,) * 4)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2, n)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])


def as_images(images: torch.Tensor) -> torch.Tensor:
    """Accept (N, 784), (N, 28, 28) or (N, 1, 28, 28) floats in [0, 1]; return (N, 1, 28, 28) float32."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor; got {type(images).__name__}")
    if images.dtype == torch.uint8:
        raise TypeError("images must be floats in [0, 1]; got uint8 pixels (use dgm_course.mnist.to_unit first)")
    if images.ndim < 2 or images.shape[1:] not in ((784,), (28, 28), (1, 28, 28)):
        raise ValueError(f"images must have shape (N, 784), (N, 28, 28) or (N, 1, 28, 28); got {tuple(images.shape)}")
    if len(images) == 0:
        raise ValueError("images is empty")
    low, high = images.min().item(), images.max().item()
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(f"images must lie in [0, 1]; got values in [{low:.3g}, {high:.3g}] "
                         "(a model working in [-1, 1] maps back with (x + 1) / 2)")
    return images.reshape(-1, 1, 28, 28).float()


def mnist_classifier(dev: torch.device | None = None, force: bool | None = None) -> MNISTClassifier:
    """The course classifier, trained once per mode and cached (lecture "14_evaluation", name "classifier").

    The recipe: Adam with shifts of up to 2 pixels, one epoch per learning rate of a decreasing list: five epochs
    over the 60000 training images in batches of 128 in standard mode, one over 4000 in batches of 32 in smoke mode.
    It is the yardstick of every FID in the course, so it trains the same way on every machine: on the CPU, in
    float32, from its own seed, with deterministic algorithms, whatever device and default dtype the notebook
    uses and without touching the notebook's random state; only then is it moved to `dev`.
    `test_accuracy` is measured on the mode's test set (`mnist.test_split`) after training. The training shows
    progress bars (epochs, and steps within the epoch), off under TQDM_DISABLE.
    """
    dev = dev or device()
    n_train, batch_size = budget(smoke=(4000, 32), standard=(None, 128), full=(None, 128))
    lr_epochs = budget(smoke=[2e-3], standard=[2e-3, 2e-3, 1e-3, 3e-4, 1e-4], full=[2e-3, 2e-3, 1e-3, 3e-4, 1e-4])
    dtype, deterministic = torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled()
    try:
        torch.set_default_dtype(torch.float32)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(14)
            clf = MNISTClassifier()  # on the CPU

            def train():
                images, labels = mnist.load_mnist("train", n=n_train)
                data = (mnist.to_unit(images), labels)
                optimizer = torch.optim.Adam(clf.parameters())
                history = {}
                for epoch, lr in progress(list(enumerate(lr_epochs)), "course classifier, epochs"):
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    part = fit(clf, data, epochs=1, batch_size=batch_size, optimizer=optimizer,
                               transform=random_shift, seed=14 + epoch, progress=True)
                    history = {key: history.get(key, []) + values for key, values in part.items()}
                test_images, test_labels = mnist.test_split(smoke=500)
                accuracy = (predict(mnist.to_unit(test_images), clf) == test_labels).double().mean().item()
                return {"history": history, "test_accuracy": accuracy, "n_test": len(test_labels)}

            record = train_or_load(clf, "14_evaluation", "classifier", train, force=force)
    finally:
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic)
    clf.test_accuracy = record["test_accuracy"]
    clf.requires_grad_(False)
    return clf.to(dev).eval()


@torch.no_grad()
def _batched(fn, images: torch.Tensor, clf: MNISTClassifier, batch_size: int) -> torch.Tensor:
    dev = next(clf.parameters()).device
    x = as_images(images).to(dev)  # once, not per batch
    was_training = clf.training
    clf.eval()
    out = torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).cpu()
    clf.train(was_training)
    return out


def features(images: torch.Tensor, clf: MNISTClassifier | None = None, batch_size: int = 500) -> torch.Tensor:
    """The classifier's (N, 128) penultimate features of images in [0, 1], float64 on the CPU."""
    clf = clf or mnist_classifier()
    return _batched(clf.features, images, clf, batch_size).double()


def predict(images: torch.Tensor, clf: MNISTClassifier | None = None, batch_size: int = 500) -> torch.Tensor:
    """The classifier's predicted digit (N,) int64 for images in [0, 1]."""
    clf = clf or mnist_classifier()
    return _batched(clf, images, clf, batch_size).argmax(dim=1)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2): the squared 2-Wasserstein distance of two Gaussians."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[-1] if mu1.ndim == 1 else -1
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"expected means (D,) and covariances (D, D) of one D; got {mu1.shape}, {sigma1.shape}, "
                         f"{mu2.shape}, {sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ sigma2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def gaussian_stats(feats: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), N >= 2."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2; got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid(images_a: torch.Tensor, images_b: torch.Tensor, clf: MNISTClassifier | None = None) -> float:
    """The Fréchet distance between two image sets in the course classifier's feature space (not Inception FID)."""
    clf = clf or mnist_classifier()
    return frechet_distance(*gaussian_stats(features(images_a, clf)), *gaussian_stats(features(images_b, clf)))


#: HELD_OUT training images, drawn once at random (seed HELD_OUT_SEED), that no generative model of the course
#: trains on (use `generative_train_split`): real digits unseen by every model, the floor's samples. A random draw,
#: not the tail of the split: MNIST's training split is not shuffled, and its last images are not like the rest.
HELD_OUT, HELD_OUT_SEED = 5000, 0


def _held_out_index(n_train: int) -> torch.Tensor:
    """Boolean mask (n_train,) of the held-out training images."""
    mask = torch.zeros(n_train, dtype=torch.bool)
    mask[torch.randperm(n_train, generator=torch.Generator().manual_seed(HELD_OUT_SEED))[:HELD_OUT]] = True
    return mask


def generative_train_split(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST training images and labels (uint8, int64) for a generative model scored by FID: the training split
    less its HELD_OUT held-out images, in the split's order; the first n of them if n is given."""
    images, labels = mnist.load_mnist("train")
    keep = ~_held_out_index(len(images))
    images, labels = images[keep], labels[keep]
    if n is not None:
        if not isinstance(n, int) or not 0 < n <= len(images):
            raise ValueError(f"n must be an int in 1..{len(images)}; got {n!r}")
        images, labels = images[:n], labels[:n]
    return images, labels


def held_out_images(n: int = HELD_OUT) -> torch.Tensor:
    """The first n held-out training images (uint8, (n, 28, 28)): real digits no model of the course trained on."""
    if not isinstance(n, int) or not 1 <= n <= HELD_OUT:
        raise ValueError(f"n must be an int in 1..{HELD_OUT} (the held-out training images); got {n!r}")
    images, _ = mnist.load_mnist("train")
    return images[_held_out_index(len(images))][:n]


def fid_reference(smoke: int = 500) -> torch.Tensor:
    """The reference images of every FID in the course, in [0, 1]: the mode's test set (`mnist.test_split`)."""
    return mnist.to_unit(mnist.test_split(smoke=smoke)[0])


def fid_floor(n: int, reference: torch.Tensor, clf: MNISTClassifier | None = None) -> float:
    """The FID of n real held-out training digits (`held_out_images(n)`) against `reference`: what a perfect model
    of the training data scores with n samples. Record it as `fid_floor` beside every FID from n generated samples."""
    if not isinstance(n, int) or not 2 <= n <= HELD_OUT:
        raise ValueError(f"n must be an int in 2..{HELD_OUT} (the held-out training images); got {n!r}")
    return fid(mnist.to_unit(held_out_images(n)), reference, clf)


def confident_fraction(images: torch.Tensor, clf: MNISTClassifier | None = None, threshold: float = 0.9) -> float:
    """The fraction of images that the course classifier assigns to some digit with probability >= threshold:
    how many samples look like a digit (real test digits score about 0.98)."""
    clf = clf or mnist_classifier()
    probs = _batched(lambda x: F.softmax(clf(x), -1), images, clf, 500)
    return (probs.max(-1).values >= threshold).double().mean().item()
