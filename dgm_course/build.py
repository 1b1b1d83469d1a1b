"""The solution -> lecture pipeline: `python -m dgm_course.build` (or `dgm-build`).

`solutions/NN_name.py` (jupytext py:percent) is the single source. From it this writes the paired solution
notebook `solutions/NN_name.ipynb` and the student notebook `lectures/NN_name.ipynb`, where every region between
`### BEGIN SOLUTION` and `### END SOLUTION` becomes a stub raising NotImplementedError that names its exercise
(nbgrader's ClearSolutions does the replacing). Both are written without outputs. `--check` writes nothing
and exits 1 when a generated file is stale.

The first code cell of every generated notebook is written here, not in the sources: it installs the course
package from `dgm_course.REPOSITORY` where `dgm_course` cannot be imported (Colab, a bare Jupyter). A copy of it
that reached a source (a paired notebook saved from Jupyter) is dropped by its tag and written afresh, so it
cannot drift from the constant. The README's "Open in Colab" links come from the same constant.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import jupytext
import nbformat

from . import REPOSITORY

STUB_MARKER = "__EXERCISE__"
PAIRING = {"formats": "ipynb,py:percent"}
BRANCH = "main"
INSTALL_TAG = "install"  # the tag of the generated first code cell
INSTALL_CELL = """\
# On Colab or a bare Jupyter, install the course package where it is missing (this cell is written by
# dgm_course.build; DGM_PIP_SOURCE names another pip source, e.g. a local copy of the course)
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("dgm_course") is None:
    source = os.environ.get("DGM_PIP_SOURCE", "{archive}")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"could not install the course package from {{source}}:\\n{{pip.stderr[-3000:]}}")
    importlib.invalidate_caches()
    if importlib.util.find_spec("dgm_course") is None:
        raise RuntimeError("the course package was installed but cannot be imported: restart the kernel")
    print(f"installed the course package from {{source}}")"""
README_START, README_END = "<!-- colab:start -->", "<!-- colab:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def _owner_repo(repository: str) -> str:
    prefix = "https://github.com/"
    parts = repository.removeprefix(prefix).strip("/").split("/")
    if not repository.startswith(prefix) or len(parts) != 2 or not all(parts):
        raise ValueError(f"dgm_course.REPOSITORY must be https://github.com/<owner>/<repo>; got {repository!r}")
    return "/".join(parts)


def install_cell_source(repository: str | None = None) -> str:
    """The first code cell of every notebook: pip-installs the course from `repository` when it is missing."""
    repository = repository or REPOSITORY
    archive = f"https://github.com/{_owner_repo(repository)}/archive/refs/heads/{BRANCH}.zip"
    return INSTALL_CELL.format(archive=archive)


def colab_url(stem: str, repository: str | None = None) -> str:
    """The "Open in Colab" address of the student notebook `lectures/<stem>.ipynb`."""
    owner_repo = _owner_repo(repository or REPOSITORY)
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/lectures/{stem}.ipynb"


def readme_with_colab_links(readme: str, stems: list[str]) -> str:
    """`readme` with the table between its colab markers rewritten: one "Open in Colab" badge per lecture."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md needs a {README_START} ... {README_END} block for the Colab links")
    rows = ["| lecture | open the student notebook in Colab |", "| --- | --- |"]
    rows += [f"| `{stem}` | [![Open in Colab]({COLAB_BADGE})]({colab_url(stem)}) |" for stem in stems]
    return readme[:start + len(README_START)] + "\n" + "\n".join(rows) + "\n" + readme[end:]


def _exercise_of(cell) -> str | None:
    for tag in cell.get("metadata", {}).get("tags", []):
        if tag.startswith("solution:"):
            return tag.split(":", 1)[1]
    return None


def _normalize(nb, stem: str) -> None:
    """Deterministic ids, no outputs, no execution counts: so a rebuild is byte-identical."""
    for i, cell in enumerate(nb.cells):
        cell.id = hashlib.sha1(f"{stem}:{i}".encode()).hexdigest()[:8]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None


def solution_notebook(source: Path) -> nbformat.NotebookNode:
    """The instructor notebook of a jupytext source, paired with it."""
    nb = jupytext.read(source, fmt="py:percent")
    nb.cells = [c for c in nb.cells if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])]
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, nbformat.v4.new_code_cell(install_cell_source(), metadata={"tags": [INSTALL_TAG]}))
    nb.metadata.setdefault("jupytext", {}).update(PAIRING)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    _normalize(nb, source.stem)
    return nb


def student_notebook(solution: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """The student notebook: solution regions replaced by stubs naming the exercise, pairing removed."""
    from nbgrader.preprocessors import ClearSolutions  # slow import, only needed here

    nb = nbformat.from_dict(solution)  # a deep copy
    nb.metadata.pop("jupytext", None)
    stub = {"python": f'# YOUR CODE HERE\nraise NotImplementedError("{STUB_MARKER}")'}
    try:
        nb, _ = ClearSolutions(enforce_metadata=False, code_stub=stub).preprocess(nb, {})
    except RuntimeError as err:  # nbgrader's word for an unbalanced BEGIN/END pair
        raise ValueError(f"{stem}: {err}") from None
    for i, cell in enumerate(nb.cells):
        if STUB_MARKER in cell.source:
            exercise = _exercise_of(cell)
            if exercise is None:
                raise ValueError(f"{stem}, cell {i}: a solution region in a cell without a 'solution:<exercise>' tag")
            cell.source = cell.source.replace(STUB_MARKER, f"{exercise}: replace this line with your solution")
    _normalize(nb, stem)
    return nb


def outputs(root: Path) -> dict[Path, str]:
    """Every generated file (path -> text) for the sources in `root/solutions`, and the README's Colab links."""
    sources = sorted((root / "solutions").glob("[0-9][0-9]_*.py"))
    files: dict[Path, str] = {}
    for source in sources:
        solution = solution_notebook(source)
        files[source.with_suffix(".ipynb")] = nbformat.writes(solution) + "\n"
        student = student_notebook(solution, source.stem)
        files[root / "lectures" / f"{source.stem}.ipynb"] = nbformat.writes(student) + "\n"
    readme = root / "README.md"
    if readme.is_file():  # a bare folder of sources (as in the tests) has none
        files[readme] = readme_with_colab_links(readme.read_text(), [s.stem for s in sources])
    return files


def stale_files(root: Path) -> list[Path]:
    """Generated files that are missing or differ from what the sources give, and lectures without a source."""
    files = outputs(root)
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    orphans = [p for p in sorted((root / "lectures").glob("*.ipynb")) if p not in files]
    return stale + orphans


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the notebooks, or with --check report stale ones."""
    parser = argparse.ArgumentParser(description="Generate solution and student notebooks from solutions/*.py "
                                                 "(and the README's Colab links)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the course checkout (default: .)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / "solutions").is_dir():
        parser.error(f"{root} has no solutions/ folder; run from the course checkout or pass --root")
    if args.check:
        stale = stale_files(root)
        for path in stale:
            print(f"stale: {path.relative_to(root)}")
        print("all generated notebooks are up to date" if not stale else "run: python -m dgm_course.build")
        return 1 if stale else 0
    (root / "lectures").mkdir(exist_ok=True)
    for path, text in outputs(root).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
