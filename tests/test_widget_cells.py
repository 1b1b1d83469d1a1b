"""One widget per cell (issue 17): no cell of a solution notebook may show the same widget twice.

A notebook shows a cell's last expression once more through its display hook, so a helper that displays a widget
and also returns it shows the widget twice when called on a cell's last line. The static check below reads every
code cell of every solution and flags such a last line; whether `widgets.interactive_plot` returns its widget is
not assumed but probed, and a real IPython shell counts the displays of a widget made on a cell's last line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ipywidgets
import jupytext
import pytest
from IPython.core.interactiveshell import InteractiveShell

from dgm_course import widgets

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))


def _name(node: ast.AST) -> str | None:
    """`f` for f(...) and `module.f` alike; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def interactive_plot_returns_a_widget() -> bool:
    """Run `widgets.interactive_plot` headless once and say whether it hands its widget back."""
    shown = []
    original, widgets.display = widgets.display, shown.append
    try:
        returned = widgets.interactive_plot(lambda k=1: None, k=(0, 2))
    finally:
        widgets.display = original
    assert len(shown) == 1 and isinstance(shown[0], ipywidgets.Widget), "interactive_plot must display its widget"
    return isinstance(returned, ipywidgets.Widget)


def shown_twice(source: str, returns_widget: bool) -> str | None:
    """Why the cell `source` would show a widget twice, or None.

    `returns_widget`: whether `interactive_plot` returns the widget it displays. A widget is displayed as a side
    effect by `display(name)` and by `interactive_plot(...)`; the last line shows its value again unless it ends
    with a semicolon or its value is None.
    """
    tree = ast.parse(source)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or source.rstrip().endswith(";"):
        return None
    last = tree.body[-1].value
    displayed: set[str] = set()  # names bound to a widget that the cell has already displayed
    for statement in tree.body[:-1]:
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and _name(node.func) == "display":
                displayed |= {arg.id for arg in node.args if isinstance(arg, ast.Name)}
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and _name(node.value.func) == "interactive_plot" and returns_widget):
                displayed |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    if isinstance(last, ast.Call) and _name(last.func) == "interactive_plot" and returns_widget:
        return "its last line calls interactive_plot, which displays its widget and returns it"
    if isinstance(last, ast.Call) and _name(last.func) == "display":
        return None
    if isinstance(last, ast.Name) and last.id in displayed:
        return f"its last line shows {last.id}, a widget the cell has displayed already"
    return None


def code_cells(path: Path) -> list[tuple[int, str]]:
    notebook = jupytext.read(path)
    return [(i, cell.source) for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]


def ends_with_interactive_plot(source: str) -> bool:
    body = ast.parse(source).body
    last = body[-1].value if body and isinstance(body[-1], ast.Expr) else None
    return isinstance(last, ast.Call) and _name(last.func) == "interactive_plot"


def test_the_check_sees_the_cells_that_end_with_a_widget():
    """Not vacuous: the solutions hold many cells whose last line is interactive_plot (16 when issue 17 was filed)."""
    assert len(SOLUTIONS) >= 15
    ending = [path.stem for path in SOLUTIONS for _, source in code_cells(path) if ends_with_interactive_plot(source)]
    assert len(ending) >= 10, ending


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_no_cell_shows_a_widget_twice(path):
    returns_widget = interactive_plot_returns_a_widget()
    problems = []
    for index, source in code_cells(path):
        try:
            reason = shown_twice(source, returns_widget)
        except SyntaxError as err:
            pytest.fail(f"{path.name}, code cell {index}: does not parse ({err})")
        if reason:
            problems.append(f"{path.name}, code cell {index} ({source.strip().splitlines()[-1][:60]}...): {reason}")
    assert not problems, "\n".join(problems)


def test_interactive_plot_returns_nothing_to_show():
    assert not interactive_plot_returns_a_widget()


@pytest.mark.parametrize(("source", "flagged"), [
    ("widgets.interactive_plot(f, k=(0, 2))", True),
    ("widgets.interactive_plot(f, k=(0, 2));", False),
    ("w = widgets.interactive_plot(f, k=(0, 2))\nw", True),
    ("w = ipywidgets.IntSlider()\ndisplay(w)\nw", True),
    ("w = ipywidgets.IntSlider()\nw", False),
    ("w = ipywidgets.IntSlider()\ndisplay(w)", False),
    ("x = 1 + 1", False),
])
def test_the_static_check_flags_what_a_notebook_would_show_twice(source, flagged):
    """The check of the notebooks would catch the bug it guards against (interactive_plot returning its widget)."""
    assert bool(shown_twice(source, returns_widget=True)) is flagged
    if "interactive_plot" in source:
        assert shown_twice(source, returns_widget=False) is None


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def count_widget_displays(shell: InteractiveShell, monkeypatch, cell: str) -> int:
    """Run `cell` as a notebook cell and count how often a widget is formatted for display (by display() and by
    the display hook alike: both go through the widget's _repr_mimebundle_)."""
    shown = []
    original = ipywidgets.Widget._repr_mimebundle_

    def counting(self, **kwargs):
        shown.append(self)
        return original(self, **kwargs)

    monkeypatch.setattr(ipywidgets.Widget, "_repr_mimebundle_", counting)
    result = shell.run_cell(cell, store_history=True)
    result.raise_error()
    return len(shown)


def test_a_widget_on_a_cell_s_last_line_is_shown_once(shell, monkeypatch):
    shell.run_cell("from dgm_course import widgets\nimport ipywidgets\nfrom IPython.display import display\n"
                   "def f(a=1):\n    return a\n").raise_error()
    assert count_widget_displays(shell, monkeypatch, "widgets.interactive_plot(f, a=(1, 3))") == 1
    # the counter sees the display hook too: a widget displayed and then returned is counted twice
    assert count_widget_displays(shell, monkeypatch, "w = ipywidgets.IntSlider()\ndisplay(w)\nw") == 2
