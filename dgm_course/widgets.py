"""Thin helpers over ipywidgets' `interactive` that also run, once and with their defaults, without a browser."""

from __future__ import annotations

import functools
from collections.abc import Callable

import ipywidgets as widgets
from IPython.display import display


def interactive_plot(fn: Callable, **controls) -> None:
    """Display `fn` with one control per keyword (as for `ipywidgets.interactive`) and run it once with the defaults.

    An exception in that first run is raised here, not swallowed into the widget, so a headless run
    (nbval, CI) fails when the widget's function is broken. It returns None, not the widget: a widget returned by
    a cell's last line would be shown a second time by the notebook, beside the one displayed here.
    """
    if not callable(fn):
        raise TypeError(f"interactive_plot expects a function; got {type(fn).__name__}")
    if not controls:
        raise ValueError("interactive_plot needs at least one control, e.g. depth=(1, 10)")
    errors: list[BaseException] = []

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # re-raised below for the first run; shown in the widget afterwards
            errors.append(err)
            raise

    widget = widgets.interactive(guarded, **controls)
    if errors:
        raise errors[0]
    display(widget)


def slider(value: float, low: float, high: float, step: float | None = None, description: str = "") -> widgets.Widget:
    """An int or float slider (by the type of `value`) with a continuous_update that does not flood the kernel."""
    if not low <= value <= high:
        raise ValueError(f"slider value must lie in [{low}, {high}]; got {value}")
    if isinstance(value, int) and isinstance(low, int) and isinstance(high, int):
        return widgets.IntSlider(value=value, min=low, max=high, step=step or 1, description=description,
                                 continuous_update=False)
    return widgets.FloatSlider(value=value, min=low, max=high, step=step or (high - low) / 100,
                               description=description, continuous_update=False)
