"""The solution -> lecture pipeline: generated notebooks are fresh, stubs parse and name their exercise,
and in every student notebook each exercise's check fails while the stub is in place."""

import ast
import os
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dgm_course import build

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
SOURCES = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))


def tags(cell, prefix):
    return [t.split(":", 1)[1] for t in cell.metadata.get("tags", []) if t.startswith(prefix + ":")]


def test_there_is_a_lecture_per_source():
    assert SOURCES, "no solutions/NN_*.py sources found"
    assert [p.stem for p in LECTURES] == [p.stem for p in SOURCES]


def test_generated_notebooks_are_up_to_date():
    stale = build.stale_files(ROOT)
    assert not stale, f"stale generated notebooks {[str(p.relative_to(ROOT)) for p in stale]}: run python -m dgm_course.build"


SOURCE = '''\
# %% [markdown]
# # A tiny lecture

# %% tags=["solution:ex1_double"]
def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION

# %% tags=["check:ex1_double"]
assert double(3) == 6
'''


def test_build_of_a_tiny_source(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_tiny.py").write_text(SOURCE)
    assert build.main(["--root", str(tmp_path), "--check"]) == 1
    assert build.main(["--root", str(tmp_path)]) == 0
    assert build.main(["--root", str(tmp_path), "--check"]) == 0
    solution = nbformat.read(tmp_path / "solutions" / "99_tiny.ipynb", as_version=4)
    student = nbformat.read(tmp_path / "lectures" / "99_tiny.ipynb", as_version=4)
    nbformat.validate(student)
    for nb in (solution, student):  # the build's install cell comes first (tests/test_colab.py tests it)
        assert nb.cells[1].source == build.install_cell_source() and nb.cells[1].metadata.tags == ["install"]
    assert "return 2 * x" in solution.cells[2].source and solution.metadata.jupytext.formats == "ipynb,py:percent"
    stub = student.cells[2].source
    assert "return 2 * x" not in stub and '"""Twice x."""' in stub
    namespace = {}
    exec(compile(stub, "stub", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="ex1_double"):
        namespace["double"](3)
    assert "jupytext" not in student.metadata
    assert student.cells[3].source == solution.cells[3].source  # checks are untouched


@pytest.mark.parametrize("source, message", [
    (SOURCE.replace('tags=["solution:ex1_double"]', ""), "without a 'solution:<exercise>' tag"),
    (SOURCE.replace("    ### END SOLUTION\n", ""), "99_tiny: no end solution statement"),
])
def test_build_rejects_untagged_or_unclosed_regions(tmp_path, source, message):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_tiny.py").write_text(source)
    with pytest.raises(ValueError, match=message):
        build.outputs(tmp_path)


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_student_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
    solutions = [t for c in nb.cells for t in tags(c, "solution")]
    checks = [t for c in nb.cells for t in tags(c, "check")]
    assert 3 <= len(solutions) <= 6, f"a lecture has 3 to 6 exercises; found {solutions}"
    assert solutions == checks, "each solution cell needs a check cell with the same exercise id"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            ast.parse(textwrap.dedent(cell.source.replace("%matplotlib inline", "")))
        if tags(cell, "solution"):
            assert "NotImplementedError" in cell.source and "BEGIN SOLUTION" not in cell.source
            assert tags(nb.cells[i + 1], "check") == tags(cell, "solution"), "the check cell follows its solution"


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_every_check_fails_on_the_student_stub(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    env = dict(os.environ, DGM_MODE="smoke")
    client.execute(env=env)
    for cell in nb.cells:
        for exercise in tags(cell, "check"):
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert errors, f"the check of {exercise} passed on the stub: it cannot tell done from not done"
            error = errors[0]
            assert error.ename == "NotDoneError" and f"{exercise} is not done yet" in error.evalue, \
                f"{path.name}, check of {exercise}: {error.ename}: {error.evalue[:200]}"
            shown = "\n".join(error.traceback)  # what Jupyter shows: the verdict, not the checker's frames
            assert "Traceback" not in shown and "checks.py" not in shown, shown
