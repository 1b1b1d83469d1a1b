"""The solution -> lecture pipeline: `python -m dgm_course.build` (or `dgm-build`).

`solutions/NN_name.py` (jupytext py:percent) is the single source. From it this writes the paired solution
notebook `solutions/NN_name.ipynb` and the student notebook `lectures/NN_name.ipynb`, where every region between
`### BEGIN SOLUTION` and `### END SOLUTION` becomes a stub raising NotImplementedError that names its exercise
(nbgrader's ClearSolutions does the replacing). Both are written without outputs. `--check` writes nothing
and exits 1 when a generated file is stale.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import jupytext
import nbformat

STUB_MARKER = "__EXERCISE__"
PAIRING = {"formats": "ipynb,py:percent"}


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
    """Every generated file (path -> text) for the sources in `root/solutions`."""
    sources = sorted((root / "solutions").glob("[0-9][0-9]_*.py"))
    files: dict[Path, str] = {}
    for source in sources:
        solution = solution_notebook(source)
        files[source.with_suffix(".ipynb")] = nbformat.writes(solution) + "\n"
        student = student_notebook(solution, source.stem)
        files[root / "lectures" / f"{source.stem}.ipynb"] = nbformat.writes(student) + "\n"
    return files


def stale_files(root: Path) -> list[Path]:
    """Generated files that are missing or differ from what the sources give, and lectures without a source."""
    files = outputs(root)
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    orphans = [p for p in sorted((root / "lectures").glob("*.ipynb")) if p not in files]
    return stale + orphans


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the notebooks, or with --check report stale ones."""
    parser = argparse.ArgumentParser(description="Generate solution and student notebooks from solutions/*.py")
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
