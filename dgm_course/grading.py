"""Grade student notebooks: each one runs under `pytest --nbval-lax` in its own process.

Usage: python -m dgm_course.grading SUBMISSIONS --reference lectures/NN.ipynb --out grades/
A code cell tagged `check:<exercise_id>` is one test item; its source and tags are replaced by the
reference's, so a check cannot be edited into passing. nbval 0.11 names items `Cell N`, N counting code
cells only, from 0.
"""

import argparse
import contextlib
import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil

from .runtime import MODES

CHECK = "check:"
KERNEL_DIED = ("Failed to interrupt kernel", "Kernel dead", "waiting for output")
_ITEM = re.compile(r"^submission\S*::Cell (\d+) (PASSED|XPASS|FAILED|XFAIL|ERROR|SKIPPED)", re.M)


class GradingError(ValueError):
    """Bad input to the grader: what was expected and what was given."""


@dataclass
class Grade:
    """One submission's result: which exercises passed, and how the run went."""

    student: str
    passed: dict[str, bool]
    status: str

    def summary(self) -> str:
        """One line: student, exercises passed out of total, status."""
        return f"{self.student}: {sum(self.passed.values())}/{len(self.passed)} {self.status}"


def _check_ids(cell: dict) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    tags = tags if isinstance(tags, list) else []
    return [t[len(CHECK):] for t in tags if isinstance(t, str) and t.startswith(CHECK)]


def _load(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    """The notebook at `path`, or None and a short reason why it is not one."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
        data = json.loads(text)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None, f"not valid JSON ({e})"
    if not isinstance(data, dict) or "nbformat" not in data:
        return None, "JSON without an 'nbformat' version"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # nbformat raises many kinds on malformed input; all mean "not a notebook"
        return None, (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
    return nb, ""


def reference_checks(reference: str | Path) -> dict[str, nbformat.NotebookNode]:
    """The reference notebook's check cells, keyed by exercise id in notebook order."""
    reference = Path(reference)
    if not reference.is_file():
        raise GradingError(f"expected a reference notebook (.ipynb file), got {str(reference)!r}: no such file")
    nb, reason = _load(reference)
    if nb is None:
        raise GradingError(f"expected a valid reference notebook, got {str(reference)!r}: {reason}")
    checks: dict[str, nbformat.NotebookNode] = {}
    for cell in nb.cells:
        for ex in _check_ids(cell) if cell.cell_type == "code" else []:
            checks.setdefault(ex, cell)
    if not checks:
        raise GradingError(f"expected code cells tagged '{CHECK}<exercise_id>' in {str(reference)!r}, found none")
    return checks


def find_submissions(folder: str | Path, exclude: Path | None = None) -> dict[str, Path]:
    """Map student name (path relative to `folder`, without .ipynb) to notebook, skipping hidden folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"expected SUBMISSIONS to be a folder of .ipynb files, got {str(folder)!r}")
    found = {}
    for path in sorted(folder.rglob("*.ipynb")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or (exclude and path.resolve() == exclude.resolve()):
            continue  # .ipynb_checkpoints and the like
        found[rel.with_suffix("").as_posix()] = path
    if not found:
        raise GradingError(f"expected .ipynb files under {str(folder)!r}, found none")
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill pytest and every process under it; kernels run in their own session, so kill them by pid."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if hasattr(os, "killpg"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()
    psutil.wait_procs(family, timeout=10)


def _subprocess_env(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    # progress bars send a message per update; nbval reads them only after the cell, and too many are dropped
    env.update(DGM_MODE=mode, PYTHONUNBUFFERED="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", TQDM_DISABLE="1")
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():  # a source checkout: let the kernel import dgm_course
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def _parse_junit(junit: Path) -> tuple[dict[int, bool], str]:
    """{code cell index: passed} and a status from nbval's junit XML (xfail counts as failed)."""
    passed: dict[int, bool] = {}
    messages = []
    for case in ET.parse(junit).iter("testcase"):
        bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
        messages += [c.get("message", "") for c in bad]
        cell = re.fullmatch(r"Cell (\d+)", case.get("name", ""))
        if cell is None:  # not a cell: nbval could not even collect the notebook
            return {}, "error: nbval could not collect the notebook"
        passed[int(cell[1])] = passed.get(int(cell[1]), True) and not bad  # teardown errors add an entry
    if any(k in m for m in messages for k in KERNEL_DIED):
        return passed, "kernel died"
    return passed, "cell timeout" if any("Timeout of" in m for m in messages) else "ok"


def _run_pytest(nb: nbformat.NotebookNode, tmp: Path, cell_timeout: float, mode: str, max_wall: float,
                stop: threading.Event) -> tuple[dict[int, bool], str]:
    """Run nbval on `nb` in `tmp`; return {code cell index: passed} and a status."""
    work, report = tmp / "work", tmp / "report"
    work.mkdir(), report.mkdir()
    nbformat.write(nb, work / "submission.ipynb")
    (report / "pytest.ini").write_text("[pytest]\n")  # keeps the repository's pytest config out
    junit, log = report / "junit.xml", report / "pytest.log"
    cmd = [sys.executable, "-m", "pytest", "submission.ipynb", "-v", "-c", str(report / "pytest.ini"),
           "--rootdir", str(work), "-p", "nbval.plugin", "-p", "no:cacheprovider", "--nbval-lax",
           "--nbval-current-env", f"--nbval-cell-timeout={cell_timeout}", f"--junitxml={junit}"]
    # per cell nbval waits at most cell_timeout, then 5 s for the interrupt and 5 s for idle
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    deadline = time.monotonic() + min(max_wall, 60 + (cell_timeout + 10) * n_code)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=_subprocess_env(mode), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        while proc.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                _kill_tree(proc)
                text = log.read_text(errors="replace")  # no junit yet: read the -v lines written so far
                return {int(n): r in ("PASSED", "XPASS") for n, r in _ITEM.findall(text)}, "timeout"
            time.sleep(0.1)
    if not junit.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return {}, f"error: pytest exit code {proc.returncode}: {tail[0][:100]}"
    return _parse_junit(junit)


def grade_submission(path: str | Path, checks: dict[str, nbformat.NotebookNode], student: str = "",
                     cell_timeout: float = 60, mode: str = "smoke", max_wall: float = 3600,
                     stop: threading.Event | None = None) -> Grade:
    """Grade one notebook against the reference `checks`, on a copy in a temporary folder (`stop` aborts)."""
    path = Path(path)
    student = student or path.stem
    nb, reason = _load(path)
    if nb is None:
        return Grade(student, dict.fromkeys(checks, False), f"invalid notebook: {reason}")
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        cell.outputs, cell.execution_count = [], None  # nbval fails unrun cells that have outputs
        ref = next((checks[ex] for ex in _check_ids(cell) if ex in checks), None)
        if ref is not None:
            cell.source = ref.source
            cell.metadata["tags"] = copy.deepcopy(ref.metadata.get("tags", []))
    code_ids = [_check_ids(c) for c in nb.cells if c.cell_type == "code"]
    with tempfile.TemporaryDirectory(prefix="dgm-grade-", ignore_cleanup_errors=True) as tmp:
        passed_cells, status = _run_pytest(nb, Path(tmp), cell_timeout, mode, max_wall, stop or threading.Event())
    passed = {}
    for ex in checks:
        cells = [n for n, ids in enumerate(code_ids) if ex in ids]
        passed[ex] = bool(cells) and all(passed_cells.get(n, False) for n in cells)
    return Grade(student, passed, status)


def write_tables(grades: list[Grade], exercises: list[str], out: str | Path) -> None:
    """Write `grades.csv` and `grades.md` (1 = passed, 0 = failed) into the folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = ["student", *exercises, "passed", "total", "status"]
    rows = [[g.student, *(int(g.passed[ex]) for ex in exercises), sum(g.passed.values()), len(exercises),
             g.status] for g in sorted(grades, key=lambda g: g.student)]
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    lines = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in [header, *rows]]
    lines.insert(1, "|" + " --- |" * len(header))
    (out / "grades.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def grade_all(submissions: str | Path, reference: str | Path, out: str | Path, cell_timeout: float = 60,
              mode: str = "smoke", jobs: int = 1, max_wall: float = 3600, verbose: bool = True) -> list[Grade]:
    """Grade every notebook under `submissions` against `reference`; write the tables into `out`."""
    if mode not in MODES:
        raise GradingError(f"expected mode in {MODES}, got {mode!r}")
    if jobs < 1 or cell_timeout <= 0 or max_wall <= 0:
        raise GradingError(f"expected jobs >= 1 and positive timeouts, got jobs={jobs}, "
                           f"cell_timeout={cell_timeout}, max_wall={max_wall}")
    checks = reference_checks(reference)
    found = find_submissions(submissions, exclude=Path(reference))
    stop = threading.Event()

    def grade(item: tuple[str, Path]) -> Grade:
        try:
            g = grade_submission(item[1], checks, item[0], cell_timeout, mode, max_wall, stop)
        except Exception as e:  # one unforeseen failure must not stop the batch
            g = Grade(item[0], dict.fromkeys(checks, False), f"error: {type(e).__name__}: {e}")
        if verbose:
            print(g.summary(), flush=True)
        return g

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each thread waits on its own subprocess
        try:
            grades = list(pool.map(grade, found.items()))
        except KeyboardInterrupt:  # the runs are in their own sessions: Ctrl-C does not reach them
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise
    write_tables(grades, list(checks), out)
    return grades


def main(argv: list[str] | None = None) -> int:
    """Command line: grade a folder of submissions, write OUT/grades.csv and OUT/grades.md."""
    p = argparse.ArgumentParser(prog="dgm-grade", description=__doc__.splitlines()[0])
    p.add_argument("submissions", help="folder of student .ipynb files (searched recursively)")
    p.add_argument("--reference", required=True, help="the student lecture notebook with the check cells")
    p.add_argument("--out", required=True, help="folder for grades.csv and grades.md")
    p.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    p.add_argument("--mode", choices=MODES, default="smoke", help="DGM_MODE for the run (default smoke)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument("--max-wall", type=float, default=3600, help="seconds per submission at most (default 3600)")
    args = p.parse_args(argv)
    try:
        grades = grade_all(args.submissions, args.reference, args.out, args.cell_timeout, args.mode,
                           args.jobs, args.max_wall)
    except GradingError as e:
        print(f"dgm-grade: error: {e}", file=sys.stderr)
        return 2
    print(f"graded {len(grades)} submissions; tables in {Path(args.out) / 'grades.csv'} and grades.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
