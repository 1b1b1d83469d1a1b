"""Training throughput of `fit` (images per second) for a MADE-like masked MLP and a small PixelCNN, with the
package's `fit` and `binarize_dynamic` as they are now or as they were at a git revision, so that a change to the
training loop can be checked not to slow the CPU path down.

    python tools/bench_fit.py                 # the working tree's fit
    python tools/bench_fit.py --rev bd9fd14   # fit and binarize_dynamic of that revision (before the GPU data path)

Run it on an idle machine, with DGM_DATA_DIR set; it trains on 6000 (MADE) and 1500 (PixelCNN) training digits,
three timed epochs each after a warm-up, and prints the median.
"""
import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dgm_course import mnist as mnist_now


def load_at(rev, module):
    """dgm_course.<module> as it was at git revision `rev`, imported beside today's package (its relative imports
    resolve to today's modules)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{rev}:dgm_course/{module}.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"dgm_course._{module}_at_{rev}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rev", help="git revision whose fit and binarize_dynamic to time (default: the working tree)")
args = parser.parse_args()
if args.rev:
    train, mnist = load_at(args.rev, "train"), load_at(args.rev, "mnist")
else:
    from dgm_course import train
    mnist = mnist_now
which = args.rev or "now"
torch.set_num_threads(2)
images = mnist_now.to_unit(mnist_now.load_mnist("train", n=6000)[0])


class MADE(nn.Module):
    def __init__(self, d=784, h=500):
        super().__init__()
        order = torch.arange(d)
        deg = torch.randint(0, d - 1, (h,), generator=torch.Generator().manual_seed(0))
        self.register_buffer("m1", (deg[:, None] >= order[None, :]).float())
        self.register_buffer("m2", (order[:, None] > deg[None, :]).float())
        self.l1, self.l2 = nn.Linear(d, h), nn.Linear(h, d)

    def loss(self, x):
        x = x.flatten(1)
        h = F.relu(F.linear(x, self.l1.weight * self.m1, self.l1.bias))
        logits = F.linear(h, self.l2.weight * self.m2, self.l2.bias)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()


class MaskedConv(nn.Conv2d):
    def __init__(self, cin, cout, k, kind):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, k // 2, k // 2 + (kind == "B"):] = 0
        mask[:, :, k // 2 + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class PixelCNN(nn.Module):
    def __init__(self, c=64, layers=5):
        super().__init__()
        self.net = nn.Sequential(MaskedConv(1, c, 7, "A"), nn.ReLU(),
                                 *[m for _ in range(layers) for m in (MaskedConv(c, c, 3, "B"), nn.ReLU())],
                                 nn.Conv2d(c, 1, 1))

    def loss(self, x):
        return F.binary_cross_entropy_with_logits(self.net(x), x, reduction="none").sum((1, 2, 3)).mean()


for name, model, n, batch in (("MADE", MADE(), 6000, 100), ("PixelCNN", PixelCNN(), 1500, 32)):
    torch.manual_seed(0)
    train.fit(model, images[:200], epochs=1, batch_size=batch, transform=mnist.binarize_dynamic, progress=False)
    rates = []
    for rep in range(3):
        t0 = time.perf_counter()
        train.fit(model, images[:n], epochs=1, batch_size=batch, transform=mnist.binarize_dynamic, progress=False,
                  seed=rep)
        rates.append(n / (time.perf_counter() - t0))
    print(f"{which:8s} {name:8s} images/s: median {sorted(rates)[1]:.0f} (runs {', '.join(f'{r:.0f}' for r in rates)})")
