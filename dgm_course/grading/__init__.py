"""Grade student notebooks, each in its own sandboxed kernel: `python -m dgm_course.grading` (or `dgm-grade`).

Usage: python -m dgm_course.grading SUBMISSIONS --reference lectures/NN.ipynb --out grades/

Only the student's answers run: the graded notebook is the reference with each exercise's solution region taken
from the submission; every other cell, and every check, is the reference's. See README.md, "Grading".
"""

from __future__ import annotations

import argparse
import ast
import csv
import hmac
import io
import json
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..results import write_atomic
from ..runtime import MODES
from .notebook import (
    GradingError,
    Reference,
    graded_source,
    load_notebook,
    load_reference,
    other_lecture,
    regions,
)
from .sandbox import MEMORY_WORDS, Kernel, Result, SandboxError, bwrap_path, survivors, user_namespace_ok
from .scan import scan

__all__ = ["Grade", "GradingError", "SandboxError", "grade_all", "grade_submission", "load_reference", "main",
           "survivors", "write_reports"]

PASSED, FAILED, NOT_ATTEMPTED, TIMEOUT, MEMORY, ERROR, TAMPERING = (
    "passed", "failed", "not attempted", "timeout", "memory", "error", "tampering suspected")
GIB = 1 << 30


@dataclass
class Grade:
    """One submission: each exercise's verdict and message, and how the run went."""

    student: str
    verdicts: dict[str, str]
    status: str = "ok"
    messages: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def points(self) -> int:
        return sum(v == PASSED for v in self.verdicts.values())

    def summary(self) -> str:
        """One line: student, exercises passed out of total, status."""
        return f"{self.student}: {self.points}/{len(self.verdicts)} {self.status}"


@dataclass
class Settings:
    """How submissions are run (the command line's options)."""

    cell_timeout: float = 60
    max_wall: float = 600
    mode: str = "smoke"
    memory: int = 4 * GIB
    sandbox: bool = True
    threads: int = 1
    data_dir: str | None = None
    scan: bool = True  # the static scan; tests turn it off to exercise the in-kernel protections alone


def _say(*args, file=None) -> None:
    """print that survives a closed or broken stdout/stderr: the tables matter more than the progress lines."""
    try:
        print(*args, file=file or sys.stdout, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def _check_verdict(result: Result, key: bytes, ex: str, challenge: str) -> tuple[str, str]:
    """Verdict and message of a check cell from its signed verdict; anything else is tampering or a failure."""
    if result.status == "timeout":
        return TIMEOUT, "the check did not finish within the time limit of a cell"
    if result.status in ("wall", "dead"):
        return "", ""
    if result.memory:
        return MEMORY, f"{result.ename}: {result.evalue}"
    if result.status == "error":
        return ERROR, f"{result.ename}: {result.evalue}"
    raw = result.expressions.get("verdict", {})
    try:
        signed = json.loads(ast.literal_eval(raw["data"]["text/plain"]))
        body, mac = signed["body"], signed["mac"]
        good = hmac.compare_digest(hmac.new(key, body.encode(), "sha256").hexdigest(), mac)
        ex_, challenge_, verdict, message = json.loads(body)
    except Exception:  # no verdict, or not one the guard wrote
        return TAMPERING, "the check cell gave no verdict: something replaced or bypassed it"
    if not good or ex_ != ex or challenge_ != challenge:
        return TAMPERING, "the check cell's verdict was forged"
    if verdict == "tampering":
        return TAMPERING, f"the grader's protections were changed: {message}"
    if verdict != "passed" and any(w in message for w in MEMORY_WORDS):
        return MEMORY, message
    return {"passed": PASSED, "failed": FAILED}.get(verdict, ERROR), message


def _kernel_end(kernel: Kernel, result: Result) -> tuple[str, str]:
    """Verdict for the exercises left when the kernel is gone, and the submission's status."""
    if result.status == "wall":
        return TIMEOUT, "wall-clock limit reached"
    log = kernel.log_tail()
    if result.memory or any(w in log for w in ("MemoryError", "bad_alloc", "Cannot allocate memory")):
        return MEMORY, "kernel died (memory limit)"
    return ERROR, f"kernel died (exit code {kernel.proc.poll()})"


def _run(reference: Reference, graded: dict[str, str], grade: Grade, settings: Settings,
         stop: threading.Event) -> None:
    """Run the graded notebook in a fresh sandboxed kernel; fill in the verdicts of the exercises in `graded`."""
    key = secrets.token_bytes(32)
    deadline = time.monotonic() + settings.max_wall
    env = {"DGM_MODE": settings.mode}
    spec = {ex: reference.exercises[ex].check for ex in graded}
    check_cells = {e.check_cell: e.id for e in reference.exercises.values()}
    solution_cells = {e.solution_cell: e.id for e in reference.exercises.values()}
    with Kernel(env, settings.data_dir, settings.memory, deadline, settings.sandbox, settings.threads, stop) as kernel:
        if not kernel.wait_ready(120):
            grade.status = f"error: the kernel did not start: {kernel.log_tail(300).strip()[-200:]}"
            for ex in graded:
                grade.verdicts[ex] = ERROR
            return
        prologue = (f"from dgm_course.grading import guard as _g\n_g.install({key.hex()!r}, {json.dumps(spec)})\n"
                    "del _g")
        result = kernel.execute(prologue, 300, silent=True, store_history=False)
        if result.status != "ok":
            grade.status = f"error: the grader's prologue failed: {result.ename} {result.evalue}"[:300]
            for ex in graded:
                grade.verdicts[ex] = _kernel_end(kernel, result)[0] if result.status in ("wall", "dead") else ERROR
            return
        for i, cell in enumerate(reference.nb.cells):
            if cell.cell_type != "code":
                continue
            ex = check_cells.get(i)
            sol = solution_cells.get(i)
            if ex is not None:
                if ex not in graded or ex in grade.verdicts:
                    continue
                challenge = secrets.token_hex(16)
                result = kernel.execute(f"__dgm_check__({ex!r}, {challenge!r})", settings.cell_timeout,
                                        {"verdict": "__dgm_verdict__()"})
                verdict, message = _check_verdict(result, key, ex, challenge)
                if verdict:
                    grade.verdicts[ex] = verdict
                    if message:
                        grade.messages[ex] = "\n".join(filter(None, [grade.messages.get(ex), message]))
            else:
                source = graded.get(sol, cell.source) if sol is not None else cell.source
                if not source.strip():
                    continue
                result = kernel.execute(source, settings.cell_timeout)
                if sol in graded and result.status in ("timeout", "error") and sol not in grade.verdicts:
                    if result.status == "timeout" or result.memory:
                        grade.verdicts[sol] = TIMEOUT if result.status == "timeout" else MEMORY
                        grade.messages[sol] = "the solution cell " + (
                            "did not finish within the time limit of a cell" if result.status == "timeout"
                            else f"ran out of memory: {result.ename}: {result.evalue}")
                    else:
                        grade.messages[sol] = f"the solution cell raised {result.ename}: {result.evalue}"
            if result.status in ("wall", "dead"):
                verdict, grade.status = _kernel_end(kernel, result)
                for ex in graded:
                    if ex not in grade.verdicts:
                        grade.verdicts[ex] = verdict
                        grade.messages.setdefault(ex, f"not checked: {grade.status}")
                return
        for ex in graded:
            grade.verdicts.setdefault(ex, ERROR)


def grade_submission(path: str | Path, reference: Reference, student: str = "", settings: Settings | None = None,
                     stop: threading.Event | None = None) -> Grade:
    """Grade one notebook against `reference` in a sandboxed kernel of its own (the file is only read)."""
    settings = settings or Settings()
    path = Path(path)
    start = time.monotonic()
    grade = Grade(student or path.stem, dict.fromkeys(reference.exercises, NOT_ATTEMPTED))
    nb, problem = load_notebook(path)
    if nb is None:
        grade.status = problem
        return grade
    problem = other_lecture(nb, reference)
    if problem:
        grade.status = problem
        return grade
    grade.verdicts = {}
    graded: dict[str, str] = {}
    for ex, region in regions(nb, reference).items():
        exercise = reference.exercises[ex]
        if region is None:
            grade.verdicts[ex] = NOT_ATTEMPTED
            continue
        source, first, last = graded_source(exercise, region)
        try:
            findings = scan(source, first, last, reference.modules) if settings.scan else []
        except SyntaxError as e:
            grade.verdicts[ex], grade.messages[ex] = ERROR, f"the solution does not parse: {e.msg} (line {e.lineno})"
            continue
        if findings:
            grade.verdicts[ex], grade.messages[ex] = TAMPERING, "; ".join(findings)
        else:
            graded[ex] = source
    if graded:
        _run(reference, graded, grade, settings, stop or threading.Event())
    grade.verdicts = {ex: grade.verdicts[ex] for ex in reference.exercises}
    grade.seconds = time.monotonic() - start
    return grade


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


def _feedback(grade: Grade) -> str:
    lines = [f"# Feedback for {grade.student}", "", f"{grade.points} of {len(grade.verdicts)} exercises passed."]
    if grade.status != "ok":
        lines += ["", f"Run: {grade.status}"]
    for ex, verdict in grade.verdicts.items():
        lines += ["", f"## {ex}: {verdict}"]
        if grade.messages.get(ex):
            lines += ["", "```", grade.messages[ex].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_reports(grades: list[Grade], exercises: list[str], out: str | Path) -> None:
    """Write grades.csv, grades.md and feedback/<student>.md into `out`, each atomically."""
    out = Path(out)
    header = ["student", *exercises, "passed", "total", "status"]
    rows = [[g.student, *(g.verdicts[ex] for ex in exercises), g.points, len(exercises), g.status]
            for g in sorted(grades, key=lambda g: g.student)]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    write_atomic(out / "grades.csv", buf.getvalue())
    lines = ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |"
             for row in [header, *rows]]
    lines.insert(1, "|" + " --- |" * len(header))
    write_atomic(out / "grades.md", "\n".join(lines) + "\n")
    for g in grades:
        name = "/".join(part.lstrip(".") or "_" for part in g.student.split("/"))
        write_atomic(out / "feedback" / f"{name}.md", _feedback(g))


def check_sandbox() -> None:
    """Raise SandboxError unless bubblewrap is installed and can start a sandbox here."""
    if bwrap_path() is None:
        raise SandboxError("bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf "
                           "install bubblewrap); install it, or pass --no-sandbox to grade without isolation")
    import subprocess

    from .sandbox import _system_binds

    run = subprocess.run(["bwrap", *_system_binds(), "--unshare-all", "--die-with-parent", "--", "/bin/true"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SandboxError(f"bubblewrap cannot create a sandbox here: {run.stderr.strip()[:300]}")
    user_namespace_ok()


def grade_all(submissions: str | Path, reference: str | Path, out: str | Path, settings: Settings | None = None,
              jobs: int = 1, verbose: bool = True) -> list[Grade]:
    """Grade every notebook under `submissions` against `reference`; write the reports into `out`."""
    settings = settings or Settings()
    if settings.mode not in MODES:
        raise GradingError(f"expected mode in {MODES}, got {settings.mode!r}")
    if jobs < 1 or settings.cell_timeout <= 0 or settings.max_wall <= 0:
        raise GradingError(f"expected jobs >= 1 and positive time limits, got jobs={jobs}, "
                           f"cell_timeout={settings.cell_timeout}, max_wall={settings.max_wall}")
    ref = load_reference(reference)
    found = find_submissions(submissions, exclude=Path(reference))
    if settings.sandbox:
        check_sandbox()
    else:
        _say("dgm-grade: WARNING: grading WITHOUT a sandbox (--no-sandbox): submissions can read the solutions, "
             "write anywhere you can, and forge or break the grades. Use this only on trusted notebooks.",
             file=sys.stderr)
    stop = threading.Event()

    def grade(item: tuple[str, Path]) -> Grade:
        try:
            g = grade_submission(item[1], ref, item[0], settings, stop)
        except Exception as e:  # one unforeseen failure must not stop the batch
            g = Grade(item[0], dict.fromkeys(ref.exercises, ERROR), f"error: {type(e).__name__}: {e}"[:300])
        if verbose:
            _say(g.summary())
        return g

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each thread waits on its own kernel
        try:
            grades = list(pool.map(grade, found.items()))
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise
    write_reports(grades, list(ref.exercises), out)
    return grades


def main(argv: list[str] | None = None) -> int:
    """Command line: grade a folder of submissions, write OUT/grades.csv, OUT/grades.md and OUT/feedback/."""
    p = argparse.ArgumentParser(prog="dgm-grade", description=(__doc__ or "").splitlines()[0])
    p.add_argument("submissions", help="folder of student .ipynb files (searched recursively)")
    p.add_argument("--reference", required=True, help="the student lecture notebook (lectures/NN_name.ipynb)")
    p.add_argument("--out", required=True, help="folder for grades.csv, grades.md and feedback/")
    p.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    p.add_argument("--max-wall", type=float, default=600, help="seconds per submission, all cells (default 600)")
    p.add_argument("--memory", type=float, default=4, help="GiB of address space per kernel (default 4)")
    p.add_argument("--mode", choices=MODES, default="smoke", help="DGM_MODE for the run (default smoke)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument("--no-sandbox", action="store_true", help="run kernels without bubblewrap (trusted work only)")
    args = p.parse_args(argv)
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    settings = Settings(args.cell_timeout, args.max_wall, args.mode, int(args.memory * GIB), not args.no_sandbox,
                        threads, os.environ.get("DGM_DATA_DIR"))
    try:
        grades = grade_all(args.submissions, args.reference, args.out, settings, args.jobs)
    except (GradingError, SandboxError) as e:
        _say(f"dgm-grade: error: {e}", file=sys.stderr)
        return 2
    _say(f"graded {len(grades)} submissions; tables in {Path(args.out) / 'grades.csv'} and grades.md, "
         f"feedback in {Path(args.out) / 'feedback'}")
    return 0
