import ipywidgets
import pytest

from dgm_course import widgets


def test_interactive_plot_runs_once_with_defaults_and_displays_its_widget_once(monkeypatch):
    calls, shown = [], []

    def show(depth=3, scale=0.5):
        calls.append((depth, scale))
        return depth * scale

    monkeypatch.setattr(widgets, "display", shown.append)
    returned = widgets.interactive_plot(show, depth=(1, 10), scale=widgets.slider(0.5, 0.0, 1.0))
    assert returned is None  # a returned widget would be shown again by a cell's last line
    assert len(shown) == 1 and isinstance(shown[0], ipywidgets.interactive)
    w = shown[0]
    assert calls == [(3, 0.5)] and w.result == 1.5
    w.children[0].value = 4  # a student moves the slider
    assert calls[-1] == (4, 0.5) and w.result == 2.0


def test_interactive_plot_raises_a_broken_function_headless():
    def broken(k=1):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        widgets.interactive_plot(broken, k=(0, 3))


def test_bad_arguments():
    with pytest.raises(TypeError, match="expects a function"):
        widgets.interactive_plot(3, k=(0, 1))
    with pytest.raises(ValueError, match="at least one control"):
        widgets.interactive_plot(lambda: None)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        widgets.slider(2, 0, 1)
    assert isinstance(widgets.slider(2, 0, 5), ipywidgets.IntSlider)
    assert isinstance(widgets.slider(0.2, 0.0, 1.0), ipywidgets.FloatSlider)
