"""The grader's parts that need no kernel: notebooks and regions, the static scan, reports, the command line.

The sandboxed runs (a hostile batch) are in tests/test_grading_batch.py.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

import dgm_course.grading as grading
from dgm_course.grading import Grade, GradingError, load_reference, main, write_reports
from dgm_course.grading.notebook import load_notebook, other_lecture, region_of, regions
from dgm_course.grading.scan import scan

ROOT = Path(__file__).resolve().parent.parent
LECTURE = ROOT / "lectures" / "01_background.ipynb"


def solution_cells():
    for source in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py")):
        for cell in jupytext.read(source).cells:
            if "### BEGIN SOLUTION" in cell.source:
                yield source.stem, cell


def test_scan_accepts_every_reference_solution() -> None:
    """No honest answer is called tampering: every solution region of every lecture passes the scan."""
    count = 0
    for stem, cell in solution_cells():
        lines = cell.source.split("\n")
        begin = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
        end = next(i for i, line in enumerate(lines) if "### END SOLUTION" in line)
        assert scan(cell.source, begin + 2, end, {"torch", "np", "F", "nn", "math", "plt"}) == [], (stem, cell.source)
        count += 1
    assert count >= 60


@pytest.mark.parametrize("code, why", [
    ("    return get_ipython()", "get_ipython"),
    ("    return 0\n!rm -rf ~", "get_ipython"),  # a shell escape is a call to get_ipython().system
    ("    return 0\n%run solutions/01_background.py", "get_ipython"),
    ("    return 0\nlecture01.check_x = print", "lecture01"),
    ("    torch.allclose = lambda *a, **k: True\n    return 0", "belongs to a library"),
    ("    t = torch\n    return 0", "passes the module `torch`"),
    ("    import os\n    return 0", "imports `os`"),
    ("    from torch import _C\n    return 0", "imports"),
    ("    return (0).__class__.__base__.__subclasses__()", "__class__"),
    ("    return sys._getframe(1).f_back", "sys"),
    ("    return (lambda: 0).__globals__", "__globals__"),
    ("    return getattr(parents, '__cl' + 'ass__')", "getattr"),
    ("    return exec('1')", "exec"),
    ("    return open('/etc/passwd').read()", "open"),
    ("    class A(int):\n        pass\n    return A(0)", "subclasses `int`"),
    ("    class A:\n        def __eq__(self, o):\n            return True\n    return A()", "defines `__eq__`"),
    ("    class A:\n        __eq__ = lambda s, o: True\n    return A()", "defines `__eq__`"),
    ("    class T(torch.Tensor):\n        pass\n    return 0", "subclasses `torch.Tensor`"),
    ("    return type('A', (int,), {})(0)", "type(name, bases, dict)"),
    ("    return torch.load('m.pt', weights_only=False)", "loads data"),
    ("    return __dgm_check__", "__dgm_check__"),
    ("    x = '/proc/self/mem'\n    return 0", "/proc"),
])
def test_scan_flags_tampering(code: str, why: str) -> None:
    cell = "def num_parameters(parents, num_states=2):\n    \"\"\"Doc.\"\"\"\n" + code
    found = scan(cell, 3, cell.count("\n") + 1, {"torch", "np", "lecture01"})
    assert found and why in " ".join(found), found


def test_scan_lets_variables_shadow_short_aliases() -> None:
    cell = "def f(x):\n    F = x @ x.T\n    return F, math.pi, torch.zeros(3), isinstance(x, torch.Tensor)"
    assert scan(cell, 2, 3, {"F", "torch", "math"}) == []


def test_regions() -> None:
    ref = load_reference(LECTURE)
    ex = ref.exercises["ex1_parameter_counts"]
    stub = ref.nb.cells[ex.solution_cell].source
    assert region_of(stub, ex) is None  # the untouched stub
    assert region_of(stub.replace("    # YOUR CODE HERE\n", ""), ex) is None
    answer = "    return sum((num_states - 1) * num_states ** len(pa) for pa in parents)"
    lines = stub.split("\n")
    mine = "\n".join(lines[:-2] + ["    # my solution", answer])
    assert region_of(mine, ex) == ["    # my solution", answer]
    edited = mine.replace('"""Free parameters', '"""My docstring; free parameters')  # edits outside
    assert region_of(edited, ex)[-1] == answer
    marked = "def anything():\n    ### BEGIN SOLUTION\n" + answer + "\n    ### END SOLUTION\n"
    assert region_of(marked, ex) == [answer]
    nb = nbformat.read(LECTURE, as_version=4)
    nb.cells[ex.solution_cell].source = mine
    found = regions(nb, ref)
    assert found["ex1_parameter_counts"] == ["    # my solution", answer]
    assert all(v is None for k, v in found.items() if k != "ex1_parameter_counts")
    nb.cells[ex.solution_cell].metadata.tags = []  # retagged: the answer no longer counts
    assert regions(nb, ref)["ex1_parameter_counts"] is None


def test_notebook_problems_are_named(tmp_path: Path) -> None:
    assert load_notebook(tmp_path / "gone.ipynb") == (None, "missing file")
    (tmp_path / "empty.ipynb").write_text("\n")
    assert load_notebook(tmp_path / "empty.ipynb") == (None, "empty file")
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert load_notebook(tmp_path / "broken.ipynb")[1].startswith("not a notebook: not valid JSON")
    (tmp_path / "data.ipynb").write_text("[1, 2]")
    assert load_notebook(tmp_path / "data.ipynb")[1].startswith("not a notebook: JSON without")
    ref = load_reference(LECTURE)
    other = nbformat.read(ROOT / "lectures" / "02_autoregressive_models.ipynb", as_version=4)
    assert other_lecture(other, ref).startswith("a notebook for another lecture ('Lecture 02")
    assert other_lecture(nbformat.read(LECTURE, as_version=4), ref) == ""


def test_reports(tmp_path: Path) -> None:
    grades = [Grade("b/bob", {"e1": "passed", "e2": "failed"}, "ok", {"e2": "e2 is wrong\n  expected: 1"}),
              Grade("alice", {"e1": "timeout", "e2": "not attempted"}, "wall-clock limit reached")]
    write_reports(grades, ["e1", "e2"], tmp_path)
    with open(tmp_path / "grades.csv", newline="") as f:
        assert list(csv.reader(f)) == [["student", "e1", "e2", "passed", "total", "status"],
                                       ["alice", "timeout", "not attempted", "0", "2", "wall-clock limit reached"],
                                       ["b/bob", "passed", "failed", "1", "2", "ok"]]
    assert "| b/bob | passed | failed | 1 | 2 | ok |" in (tmp_path / "grades.md").read_text()
    assert "expected: 1" in (tmp_path / "feedback" / "b" / "bob.md").read_text()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_no_kernel_needed_and_closed_stdout(tmp_path: Path) -> None:
    """Invalid submissions get rows without a kernel; the tables are written even with stdout closed."""
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "empty.ipynb").write_text("")
    nbformat.write(nbformat.read(LECTURE, as_version=4), subs / "blank.ipynb")
    run = subprocess.run([sys.executable, "-c", "import os, sys; os.close(1); from dgm_course.grading import main; "
                          f"sys.exit(main([{str(subs)!r}, '--reference', {str(LECTURE)!r}, '--out', "
                          f"{str(tmp_path / 'out')!r}, '--no-sandbox']))"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "WARNING: grading WITHOUT a sandbox" in run.stderr
    rows = (tmp_path / "out" / "grades.csv").read_text().splitlines()
    assert rows[1].endswith(",0,6,ok") and rows[1].startswith("blank,not attempted")
    assert rows[2].endswith("0,6,empty file")


def test_refuses_without_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(grading, "bwrap_path", lambda: None)
    nbformat.write(nbformat.read(LECTURE, as_version=4), tmp_path / "blank.ipynb")
    assert main([str(tmp_path), "--reference", str(LECTURE), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bubblewrap is not installed" in err and "--no-sandbox" in err
    assert not (tmp_path / "out").exists()


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    with pytest.raises(GradingError, match="expected SUBMISSIONS to be a folder"):
        grading.grade_all(LECTURE, LECTURE, tmp_path / "out")
    with pytest.raises(GradingError, match="expected .ipynb files under .*subs"):
        grading.grade_all(subs, LECTURE, tmp_path / "out")
    with pytest.raises(GradingError, match="reference notebook.*nope.ipynb.*missing file"):
        load_reference(tmp_path / "nope.ipynb")
    plain = nbformat.read(LECTURE, as_version=4)
    for cell in plain.cells:
        cell.metadata.pop("tags", None)
    nbformat.write(plain, tmp_path / "plain.ipynb")
    with pytest.raises(GradingError, match="expected code cells tagged 'check:<exercise_id>'"):
        load_reference(tmp_path / "plain.ipynb")
    with pytest.raises(GradingError, match="expected mode in"):
        grading.grade_all(subs, LECTURE, tmp_path / "out", grading.Settings(mode="fast"))
    assert main([str(tmp_path / "nowhere"), "--reference", str(LECTURE), "--out", str(tmp_path)]) == 2
    assert "expected SUBMISSIONS to be a folder" in capsys.readouterr().err


def test_module_entry_point(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "dgm_course.grading", str(tmp_path), "--reference",
                          str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ})
    assert run.returncode == 2
    assert "expected a reference notebook" in run.stderr and "missing.ipynb" in run.stderr
