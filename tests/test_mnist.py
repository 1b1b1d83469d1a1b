"""MNIST reading, the download path against a local HTTP server on 127.0.0.1, and the data protocols."""

import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from dgm_course import mnist

NAMES = mnist.FILES["train"] + mnist.FILES["test"]


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def small_mnist(folder: Path, n: int = 30, gz: bool = True) -> dict[str, np.ndarray]:
    """Real IDX files: the first n images of the shared MNIST if it is there, else random digits."""
    folder.mkdir(parents=True, exist_ok=True)
    shared = os.environ.get("DGM_DATA_DIR")
    arrays = {}
    for name in NAMES:
        source = Path(shared or "/nonexistent") / (name + ".gz")
        if source.exists():
            array = mnist.read_idx(source)[:n]
        else:
            rng = np.random.default_rng(len(name))
            array = rng.integers(0, 256, (n, 28, 28)) if "images" in name else rng.integers(0, 10, n)
        arrays[name] = array.astype(np.uint8)
        write_idx(folder / (name + (".gz" if gz else "")), array, gz)
    return arrays


class Server:
    """A local HTTP server over a folder; `truncate` names files it cuts off half-way (a dropped connection)."""

    def __init__(self, folder: Path, truncate=()):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                path = folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if path.name in truncate else body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    remote = tmp_path / "remote"
    arrays = small_mnist(remote)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in remote.iterdir()}
    return remote, arrays, md5


def test_read_idx_gzipped_and_raw(tmp_path):
    a = np.arange(2 * 28 * 28).reshape(2, 28, 28).astype(np.uint8)
    assert np.array_equal(mnist.read_idx(write_idx(tmp_path / "a.gz", a)), a)
    assert np.array_equal(mnist.read_idx(write_idx(tmp_path / "a", a, gz=False)), a)


def test_read_idx_rejects_bad_headers_and_sizes(tmp_path):
    (tmp_path / "text").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(tmp_path / "text")
    a = np.zeros((3, 28, 28), np.uint8)
    path = write_idx(tmp_path / "short", a, gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"shape \(3, 28, 28\).*2368 bytes, but the file has 2363"):
        mnist.read_idx(path)


def test_download_and_load_through_local_server(tmp_path, served, capsys):
    remote, arrays, md5 = served
    server = Server(remote)
    try:
        local = tmp_path / "cache"
        mnist.ensure_mnist(local, base_url=server.url, md5=md5)
        assert sorted(p.name for p in local.iterdir()) == sorted(n + ".gz" for n in NAMES)
        assert len(server.requests) == 4
        mnist.ensure_mnist(local, base_url=server.url, md5=md5)  # present: nothing downloaded again
        assert len(server.requests) == 4
    finally:
        server.close()
    images, labels = mnist.load_mnist("test", directory=local)
    assert images.dtype == torch.uint8 and images.shape == (30, 28, 28) and labels.dtype == torch.int64
    assert np.array_equal(images.numpy(), arrays["t10k-images-idx3-ubyte"])
    assert "MNIST test: 30 images read" in capsys.readouterr().out


def test_truncated_download_leaves_no_file(tmp_path, served):
    remote, _, md5 = served
    server = Server(remote, truncate={"train-images-idx3-ubyte.gz"})
    try:
        with pytest.raises(OSError, match="cut short"):
            mnist.ensure_mnist(tmp_path / "cache", base_url=server.url, md5=md5)
    finally:
        server.close()
    assert list((tmp_path / "cache").iterdir()) == []


def test_wrong_checksum_is_a_clear_error(tmp_path, served):
    remote, _, md5 = served
    md5 = dict(md5, **{"train-images-idx3-ubyte.gz": "0" * 32})
    server = Server(remote)
    try:
        with pytest.raises(OSError, match="corrupt: MD5 [0-9a-f]{32}, expected 0{32}"):
            mnist.ensure_mnist(tmp_path / "cache", base_url=server.url, md5=md5)
    finally:
        server.close()
    assert list((tmp_path / "cache").iterdir()) == []


def test_offline_without_files_says_where_to_put_them(tmp_path):
    server = Server(tmp_path)  # start and stop a server to get a port that refuses connections
    url = server.url
    server.close()
    with pytest.raises(mnist.MNISTNotFoundError, match=r"(?s)not in .*empty.*DGM_DATA_DIR"):
        mnist.ensure_mnist(tmp_path / "empty", base_url=url)


def test_hand_placed_raw_files_and_data_dir(tmp_path, monkeypatch):
    arrays = small_mnist(tmp_path / "mine", n=12, gz=False)
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "mine"))
    assert mnist.mnist_dir() == tmp_path / "mine"
    images, labels = mnist.load_mnist("train", n=5)
    assert images.shape == (5, 28, 28) and np.array_equal(labels.numpy(), arrays["train-labels-idx1-ubyte"][:5])


def test_hand_placed_files_with_mismatched_labels_are_rejected(tmp_path):
    small_mnist(tmp_path, n=10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(ValueError, match="expected 10 labels"):
        mnist.load_mnist("test", directory=tmp_path)


def test_load_arguments_are_checked(tmp_path):
    small_mnist(tmp_path, n=10)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        mnist.load_mnist("val", directory=tmp_path)
    with pytest.raises(ValueError, match=r"n must be an int in 1..10"):
        mnist.load_mnist("test", n=11, directory=tmp_path)


@pytest.mark.skipif("DGM_DATA_DIR" not in os.environ, reason="the full MNIST is only on machines with ../shared")
def test_shared_mnist_statistics():
    images, labels = mnist.load_mnist("train")
    assert images.shape == (60000, 28, 28)
    assert (images.float() / 255).mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert torch.bincount(labels).tolist()[:3] == [5923, 6742, 5958]


def test_protocols():
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    probs = mnist.to_unit(images)
    assert probs.shape == (64, 1, 28, 28) and probs.max() <= 1
    fixed = mnist.binarize_fixed(images, seed=3)
    assert torch.equal(fixed, mnist.binarize_fixed(images, seed=3))  # the test set is binarized once
    assert set(fixed.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(mnist.binarize_dynamic(probs), mnist.binarize_dynamic(probs))  # fresh every batch
    many = torch.stack([mnist.binarize_dynamic(probs) for _ in range(200)]).mean(0)
    assert (many - probs).abs().mean() < 0.05
    x = mnist.dequantize(images, torch.Generator().manual_seed(0))
    assert ((x * 256).floor() == images.unsqueeze(1).float()).all() and x.min() >= 0 and x.max() < 1


def test_protocols_reject_wrong_inputs():
    with pytest.raises(TypeError, match="uint8 images.*float32"):
        mnist.to_unit(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnist.binarize_dynamic(torch.full((2, 1, 28, 28), 255.0))


def test_train_val_split():
    x, y = torch.arange(100), torch.arange(100) * 2
    x_tr, x_val, y_tr, y_val = mnist.train_val_split(x, y, n_val=10, seed=0)
    assert len(x_tr) == 90 and len(x_val) == 10 and torch.equal(y_val, 2 * x_val)
    assert sorted(torch.cat([x_tr, x_val]).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="same length"):
        mnist.train_val_split(x, y[:5], n_val=2)
    with pytest.raises(ValueError, match="n_val"):
        mnist.train_val_split(x, n_val=100)


def test_protocols_draw_on_the_device_of_the_images():
    """Dynamic binarization and dequantization draw where the batch is (the meta device stands in for a GPU), so
    a batch on a GPU never goes through the host; a generator on another device is a clear error."""
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    assert mnist.dequantize(images.to("meta")).device.type == "meta"
    for draw, batch in ((mnist.dequantize, images), (mnist.binarize_dynamic, mnist.to_unit(images))):
        with pytest.raises(ValueError, match="generator is on cpu but the images are on meta"):
            draw(batch.to("meta"), torch.Generator().manual_seed(0))


def test_protocols_on_the_cpu_are_the_draws_they_always_were():
    images = torch.randint(0, 256, (16, 28, 28), dtype=torch.uint8)
    expected = (images.float().unsqueeze(1) + torch.rand((16, 1, 28, 28), generator=torch.Generator().manual_seed(3))) / 256
    assert torch.equal(mnist.dequantize(images, torch.Generator().manual_seed(3)), expected)
    probs = mnist.to_unit(images)
    torch.manual_seed(4)
    expected = torch.bernoulli(probs)
    torch.manual_seed(4)
    assert torch.equal(mnist.binarize_dynamic(probs), expected)
    assert torch.equal(mnist.binarize_dynamic(probs, torch.Generator().manual_seed(5)),
                       torch.bernoulli(probs, generator=torch.Generator().manual_seed(5)))


def test_binarize_dynamic_rejects_nan():
    probs = torch.full((2, 1, 28, 28), 0.5)
    probs[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mnist.binarize_dynamic(probs)
