"""Notebooks for the grader: read a submission (or say why it is not one), take out its solution regions, and
build the graded notebook, which is the reference with those regions substituted in and nothing else.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB_RAISE = re.compile(r"^\s*raise NotImplementedError\(")
STUB_COMMENT = re.compile(r"^\s*# YOUR CODE HERE\s*$")


class GradingError(ValueError):
    """Bad input to the grader: what was expected and what was given."""


@dataclass
class Exercise:
    """One exercise of the reference: its solution cell split around the stub, and its check call."""

    id: str
    solution_cell: int
    check_cell: int
    prefix: list[str]
    stub: list[str]
    suffix: list[str]
    check: list = field(default_factory=list)  # [module, function, [arg names], {keyword: arg name}]


@dataclass
class Reference:
    """The student version of a lecture, as the grader uses it."""

    path: Path
    nb: nbformat.NotebookNode
    title: str
    exercises: dict[str, Exercise]
    modules: set[str]  # names bound by the notebook's own imports (`torch`, `np`, `F`, `lecture01`, ...)


def _tags(cell: dict, prefix: str) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [t[len(prefix):] for t in tags if isinstance(t, str) and t.startswith(prefix)] if isinstance(tags, list) else []


def _title(nb: nbformat.NotebookNode) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def load_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    """The notebook at `path`, or None and what it is instead (missing file, empty file, not a notebook)."""
    if not path.exists():
        return None, "missing file"
    try:
        raw = path.read_bytes()
    except OSError as e:
        return None, f"unreadable file ({e.strerror})"
    if not raw.strip():
        return None, "empty file"
    try:
        text = raw.decode("utf-8-sig")
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        return None, f"not a notebook: not valid JSON ({str(e)[:80]})"
    if not isinstance(data, dict) or "nbformat" not in data or "cells" not in data:
        return None, "not a notebook: JSON without 'nbformat' and 'cells'"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises many kinds on malformed input; all mean "not a notebook"
        return None, "not a notebook: " + ((str(e).strip().splitlines() or [type(e).__name__])[0][:100])
    return nb, ""


def _check_call(source: str, imports: dict[str, str]) -> list:
    """[module, function, [args], {kw: arg}] of a check cell `module.check_x(name, ...)`."""
    try:
        node = ast.parse(source).body
    except SyntaxError:
        node = []
    call = node[0].value if len(node) == 1 and isinstance(node[0], ast.Expr) else None
    ok = (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
          and all(isinstance(a, ast.Name) for a in call.args)
          and all(k.arg and isinstance(k.value, ast.Name) for k in call.keywords))
    if not ok:
        raise GradingError(f"expected each check cell to be one call `module.check_x(name, ...)`, got {source!r}")
    module = call.func.value.id
    return [imports.get(module, f"dgm_course.exercises.{module}"), call.func.attr, [a.id for a in call.args],
            {k.arg: k.value.id for k in call.keywords}]


def _imports(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Names bound by the notebook's top-level imports -> the module (or `module.attr`) they name."""
    bound = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
    return bound


def _split_stub(lines: list[str], exercise: str) -> tuple[list[str], list[str], list[str]]:
    """prefix, stub, suffix of a reference solution cell (a student stub, or a BEGIN/END region)."""
    marks = [i for i, line in enumerate(lines) if line.strip() in (BEGIN, END)]
    if len(marks) == 2:
        return lines[:marks[0]], lines[marks[0] + 1:marks[1]], lines[marks[1] + 1:]
    raises = [i for i, line in enumerate(lines) if STUB_RAISE.match(line)]
    if not raises:
        raise GradingError(f"expected a stub `raise NotImplementedError(...)` in the solution cell of {exercise}")
    i = raises[0]
    start = i - 1 if i and STUB_COMMENT.match(lines[i - 1]) else i
    return lines[:start], lines[start:i + 1], lines[i + 1:]


def load_reference(path: str | Path) -> Reference:
    """The reference notebook with its exercises: a `solution:<id>` cell and a `check:<id>` cell each."""
    path = Path(path)
    nb, problem = load_notebook(path)
    if nb is None:
        raise GradingError(f"expected a reference notebook (.ipynb), got {str(path)!r}: {problem}")
    imports = _imports(nb)
    solutions = {ex: i for i, c in enumerate(nb.cells) if c.cell_type == "code" for ex in _tags(c, "solution:")}
    exercises: dict[str, Exercise] = {}
    for i, cell in enumerate(nb.cells):
        for ex in _tags(cell, "check:") if cell.cell_type == "code" else []:
            if ex not in solutions:
                raise GradingError(f"expected a cell tagged 'solution:{ex}' in {str(path)!r} for its check cell")
            prefix, stub, suffix = _split_stub(nb.cells[solutions[ex]].source.split("\n"), ex)
            exercises[ex] = Exercise(ex, solutions[ex], i, prefix, stub, suffix, _check_call(cell.source, imports))
    if not exercises:
        raise GradingError(f"expected code cells tagged 'check:<exercise_id>' in {str(path)!r}, found none")
    return Reference(path, nb, _title(nb), exercises, set(imports))


def _meaningful(lines: list[str]) -> list[str]:
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def region_of(source: str, ex: Exercise) -> list[str] | None:
    """The student's lines in place of the stub, or None when the exercise was not attempted.

    With BEGIN/END markers in the student's cell, the lines between them; otherwise the lines that replace the
    stub when the cell is aligned line by line with the reference's (edits outside the region are dropped).
    """
    lines = source.split("\n")
    marks = [i for i, line in enumerate(lines) if line.strip() in (BEGIN, END)]
    if len(marks) == 2 and marks[0] < marks[1]:
        region = lines[marks[0] + 1:marks[1]]
    else:
        ref = ex.prefix + ex.stub + ex.suffix
        a0, a1 = len(ex.prefix), len(ex.prefix) + len(ex.stub)
        lo, hi = 0, len(lines)
        for a, b, n in difflib.SequenceMatcher(None, ref, lines, autojunk=False).get_matching_blocks():
            for k in range(n):
                if a + k < a0 and ref[a + k].strip():
                    lo = max(lo, b + k + 1)
                elif a + k >= a1 and ref[a + k].strip():
                    hi = min(hi, b + k)
        region = lines[lo:hi] if lo <= hi else []
    mine = _meaningful(region)
    if not mine or mine == _meaningful(ex.stub) or all(STUB_RAISE.match(s) for s in mine):
        return None
    return region


def regions(nb: nbformat.NotebookNode, reference: Reference) -> dict[str, list[str] | None]:
    """Each exercise's region in the submission (None: not attempted, including a missing `solution:` tag)."""
    cells = {ex: c for c in nb.cells if c.cell_type == "code" for ex in _tags(c, "solution:")}
    return {ex: region_of(cells[ex].source, e) if ex in cells else None for ex, e in reference.exercises.items()}


def other_lecture(nb: nbformat.NotebookNode, reference: Reference) -> str:
    """A description of the lecture `nb` belongs to when it is not the reference's, else ''."""
    tags = {t for c in nb.cells for t in _tags(c, "solution:") + _tags(c, "check:")}
    title = _title(nb)
    if tags & set(reference.exercises) or (not tags and title == reference.title):
        return ""
    return f"a notebook for another lecture ({title or 'untitled'!r}, expected {reference.title!r})"


def graded_source(ex: Exercise, region: list[str]) -> tuple[str, int, int]:
    """The solution cell with `region` in place of the stub, and the region's first and last line (1-based)."""
    lines = ex.prefix + region + ex.suffix
    return "\n".join(lines), len(ex.prefix) + 1, len(ex.prefix) + len(region)
