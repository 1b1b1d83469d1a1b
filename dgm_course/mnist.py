"""MNIST from the four IDX files, and the course's data protocols (binarized and dequantized MNIST)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .runtime import budget, cache_dir

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MD5 = {  # of the gzipped archives on the mirror
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


class MNISTNotFoundError(FileNotFoundError):
    """MNIST is neither on disk nor downloadable."""


def mnist_dir() -> Path:
    """Where MNIST is looked for: `DGM_DATA_DIR` if set, else `<cache_dir>/mnist`."""
    if os.environ.get("DGM_DATA_DIR"):
        return Path(os.environ["DGM_DATA_DIR"]).expanduser()
    return cache_dir() / "mnist"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or raw), checking its header against its size."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (expected magic 00 00 08 ND; found {raw[:4].hex(' ')})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: header announces {ndim} dimensions but the file has only {len(raw)} bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: header says shape {shape}, i.e. {expected} bytes, but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def download(url: str, dest: str | Path, md5: str, timeout: float = 60.0) -> Path:
    """Download url to dest through a temporary file, renamed only when complete and its MD5 matches."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        digest, size = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            try:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            except http.client.IncompleteRead as err:
                size += len(err.partial)
        if announced is not None and size != int(announced):
            raise OSError(f"download of {url} was cut short: {size} of {announced} bytes")
        if digest.hexdigest() != md5:
            raise OSError(f"download of {url} is corrupt: MD5 {digest.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / (name + ".gz"), directory / name):
        if candidate.is_file():
            return candidate
    return None


def ensure_mnist(directory: str | Path | None = None, base_url: str = MIRROR, md5: dict[str, str] | None = None) -> Path:
    """Make sure the four MNIST files are in `directory` (default `mnist_dir()`), downloading what is missing."""
    directory = Path(directory) if directory is not None else mnist_dir()
    md5 = MD5 if md5 is None else md5
    for name in FILES["train"] + FILES["test"]:
        if _find(directory, name) is not None:
            continue
        try:
            download(base_url + name + ".gz", directory / (name + ".gz"), md5[name + ".gz"])
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise MNISTNotFoundError(
                f"MNIST file {name}(.gz) is not in {directory} and could not be downloaded from {base_url} ({err}).\n"
                f"Put the four IDX files {', '.join(n + '.gz' for n in FILES['train'] + FILES['test'])} "
                f"(gzipped or not) in that folder, or point the environment variable DGM_DATA_DIR at a folder holding them."
            ) from None
    return directory


@lru_cache(maxsize=4)
def _load(directory: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_name, label_name = FILES[split]
    images = read_idx(_find(Path(directory), image_name))
    labels = read_idx(_find(Path(directory), label_name))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{image_name}: expected images of shape (N, 28, 28); found {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{label_name}: expected {len(images)} labels to match the images; found shape {labels.shape}")
    if labels.max() > 9:
        raise ValueError(f"{label_name}: labels must be digits 0-9; found {labels.max()}")
    print(f"MNIST {split}: {len(images)} images read from {directory}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_mnist(split: str = "train", n: int | None = None, directory: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images (uint8, (N, 28, 28)) and labels (int64, (N,)) of a split, the first n if given."""
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    images, labels = _load(str(ensure_mnist(directory)), split)
    if n is not None:
        if not isinstance(n, int) or not 0 < n <= len(images):
            raise ValueError(f"n must be an int in 1..{len(images)} for the {split} split; got {n!r}")
        images, labels = images[:n], labels[:n]
    return images, labels


def test_split(smoke: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's MNIST test set for the current mode, the one every lecture evaluates on: in standard mode the
    first 2000 official test images, in full mode the whole official test split on disk, in smoke mode the first
    `smoke`. Record `len(images)` as `n_data`; never hard-code the size."""
    if not isinstance(smoke, int) or smoke < 1:
        raise ValueError(f"smoke must be a positive int (test images in smoke mode); got {smoke!r}")
    return load_mnist("test", n=budget(smoke=smoke, standard=2000, full=None))


def _check_uint8_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim not in (3, 4):
        got = f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"expected uint8 images of shape (N, 28, 28) or (N, 1, 28, 28); got {got}")


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1]: pixel / 255, the Bernoulli means."""
    _check_uint8_images(images)
    x = images.float() / 255.0
    return x.unsqueeze(1) if x.ndim == 3 else x


def _check_generator(generator: torch.Generator | None, x: torch.Tensor, what: str) -> None:
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"{what}: the generator is on {generator.device} but the images are on {x.device}; draw "
                         f"where the images are, with torch.Generator(device={str(x.device)!r}).manual_seed(...), "
                         "or without a generator (the global random state of that device)")


def binarize_dynamic(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli(pixel/255) draw of a batch of probabilities: the training half of the IWAE protocol.

    It draws on the device of `probs` (from `generator`, on that device, or from the device's global random state),
    so that a batch on a GPU never goes through the host.
    """
    _check_generator(generator, probs, "binarize_dynamic")
    if torch.is_floating_point(probs):
        low, high = torch.stack(torch.aminmax(probs)).tolist()  # one pass and one read from the device; NaN fails
    if not torch.is_floating_point(probs) or not (low >= 0 and high <= 1):
        raise ValueError("binarize_dynamic expects float probabilities in [0, 1] (use to_unit on uint8 images first)")
    return torch.bernoulli(probs, generator=generator)


def binarize_fixed(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A single Bernoulli(pixel/255) draw with a fixed seed, float32 (N, 1, 28, 28) in {0, 1}: the test set protocol.

    The draw is made on the CPU whatever the device of `images`, so the test set is the same on every machine; the
    result is on the device of `images`."""
    probs = to_unit(images).cpu()
    return torch.bernoulli(probs, generator=torch.Generator().manual_seed(seed)).to(images.device)


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization x = (pixel + u) / 256, u ~ U[0, 1): float32 (N, 1, 28, 28) in (0, 1).

    The noise is drawn on the device of `images`, from `generator` (which must be on that device) or from the
    device's global random state."""
    _check_uint8_images(images)
    _check_generator(generator, images, "dequantize")
    x = images.float()
    x = x.unsqueeze(1) if x.ndim == 3 else x
    return (x + torch.rand(x.shape, generator=generator, device=x.device)) / 256.0


def train_val_split(*tensors: torch.Tensor, n_val: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Split tensors with the same first dimension at random: returns (a_train, a_val, b_train, b_val, ...)."""
    if not tensors:
        raise ValueError("train_val_split needs at least one tensor")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"all tensors need the same length; got {[len(t) for t in tensors]}")
    if not isinstance(n_val, int) or not 0 < n_val < n:
        raise ValueError(f"n_val must be an int in 1..{n - 1}; got {n_val!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out: list[torch.Tensor] = []
    for t in tensors:
        out += [t[perm[n_val:]], t[perm[:n_val]]]
    return tuple(out)
