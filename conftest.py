"""Test-run settings shared by the unit tests and by nbval over the solution notebooks.

Kernels started by nbval inherit this process's environment, so the notebooks run in smoke mode, draw
their figures off-screen and write caches and recorded numbers to a temporary folder, not the checkout.
An explicit DGM_MODE (e.g. `DGM_MODE=standard pytest solutions/01_background.ipynb`) is respected.
"""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent
_scratch = Path(tempfile.mkdtemp(prefix="dgm-tests-"))

os.environ.setdefault("DGM_MODE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DGM_CACHE_DIR", str(_scratch / "cache"))
os.environ.setdefault("DGM_RESULTS_DIR", str(_scratch / "results"))
os.environ.setdefault("PYTHONHASHSEED", "0")
# one torch thread per kernel: smoke-mode tensors are small, the xdist workers already fill the cores, and on a
# busy machine a second thread made some notebooks 4x slower (thread waits), not faster
os.environ.setdefault("OMP_NUM_THREADS", "1")
# no progress bars in test kernels: nbval reads a cell's messages only after the cell has finished, and the
# thousands of widget updates of a long training overflow the kernel's message queue, which then drops the
# cell's last messages (a long standard-mode cell failed with "Timeout ... waiting for output"). tqdm's notebook
# bars ignore this variable; `fit` reads it itself.
os.environ.setdefault("TQDM_DISABLE", "1")
_shared_mnist = ROOT.parent / "shared" / "data" / "mnist"
if "DGM_DATA_DIR" not in os.environ and _shared_mnist.is_dir():
    os.environ["DGM_DATA_DIR"] = str(_shared_mnist)

# student notebooks stop at their stubs by design; they are tested by tests/test_pipeline.py instead
collect_ignore_glob = ["lectures/*", ".venv/*"]


def pytest_collection_modifyitems(items):
    """nbval waits only 5 s for a cell's output messages after it finishes; a loaded machine needs longer."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
