"""Helpers for the course "Deep Generative Models, from background to diffusion".

Infrastructure only (data, training loop, plots, metrics, checks, widgets, results, grading) plus components
that an earlier lecture derived; the model a lecture teaches is always written in that lecture's notebook.
"""

from . import checks, evaluation, metrics, mnist, plot, toy, widgets
from .runtime import budget, cache_dir, device, mode, progress, seed_everything, setup
from .train import ema_update, evaluate, fit, fit_steps, train_or_load

__all__ = [
    "REPOSITORY", "budget", "cache_dir", "checks", "device", "ema_update", "evaluate", "evaluation", "fit", "fit_steps", "metrics", "mnist", "mode", "plot", "progress", "record",
    "seed_everything", "setup", "toy", "train_or_load", "widgets",
]
__version__ = "0.1.0"
# The course repository, in ONE place: each notebook's first cell installs the package from it where it is
# missing (Colab, a bare Jupyter), and the README's "Open in Colab" links point at it. A fork changes this line
# and runs `python -m dgm_course.build`, which rewrites both.
REPOSITORY = "https://github.com/dgm-course/dgm-course"


def __getattr__(name: str):
    # `record` is imported lazily so that `python -m dgm_course.results` does not import its own module twice
    if name == "record":
        from .results import record

        return record
    raise AttributeError(f"module 'dgm_course' has no attribute {name!r}")
