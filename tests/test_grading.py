"""The grader on a batch of small notebooks that pass, fail, crash, hang, or are not notebooks at all."""

import csv
import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from dgm_course.grading import GradingError, grade_all, grade_submission, main, reference_checks

EXERCISES = ["ex1_add", "ex2_mul", "ex3_neg"]
STUBS = {ex: f"def {ex[4:]}(*args):\n    raise NotImplementedError('{ex}')" for ex in EXERCISES}
SOLUTIONS = {"ex1_add": "def add(a, b):\n    return a + b",
             "ex2_mul": "def mul(a, b):\n    return a * b",
             "ex3_neg": "def neg(a):\n    return -a"}
CHECKS = {"ex1_add": "assert add(2, 3) == 5, 'add(2, 3) should be 5'",
          "ex2_mul": "assert mul(3, 4) == 12, 'mul(3, 4) should be 12'",
          "ex3_neg": "assert neg(5) == -5, 'neg(5) should be -5'"}


def code(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def lecture(solutions: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """A lecture with three exercises; markdown between them, so cell and code-cell indices differ."""
    solutions = {**STUBS, **(solutions or {})}
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "?", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A lecture"), code("import os\nimport time")]
    for ex in EXERCISES:
        nb.cells += [nbformat.v4.new_markdown_cell(f"## Exercise {ex}"),
                     code(solutions[ex], f"solution:{ex}"), code(CHECKS[ex], f"check:{ex}")]
    return nb


def index(nb: nbformat.NotebookNode, tag: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))


def record_pid(name: str, pids: Path) -> nbformat.NotebookNode:
    return code(f"open({str(pids / name)!r}, 'w').write(str(os.getpid()))")


def make_batch(folder: Path, pids: Path) -> None:
    """Write the submissions of the batch test into `folder`."""
    def save(nb, name):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / name)

    correct = lecture(SOLUTIONS)
    stale = code("print('hi')")  # outputs without an execution count: nbval would fail it as is
    stale.outputs = [nbformat.v4.new_output("stream", text="hi\n")]
    correct.cells.insert(2, stale)
    save(correct, "group_a/correct.ipynb")
    save(lecture(SOLUTIONS), "group_a/.ipynb_checkpoints/correct-checkpoint.ipynb")  # must be skipped
    save(lecture({"ex1_add": SOLUTIONS["ex1_add"]}), "partial.ipynb")

    crash = lecture(SOLUTIONS)
    crash.cells.insert(index(crash, "check:ex3_neg"), code("import os\nos._exit(1)"))
    crash.cells.insert(2, record_pid("crash", pids))
    save(crash, "crash.ipynb")

    hang = lecture({**SOLUTIONS, "ex2_mul": "while True:\n    pass\n" + SOLUTIONS["ex2_mul"]})
    hang.cells.insert(2, record_pid("hang", pids))
    save(hang, "hang.ipynb")

    (folder / "not_json.ipynb").write_text('{"cells": [{"cell_type": "code", "source": "x = ')
    (folder / "not_a_notebook.ipynb").write_text('{"hello": "world"}')

    edited = lecture({"ex3_neg": SOLUTIONS["ex3_neg"]})
    edited.cells[index(edited, "check:ex1_add")].metadata.tags.append("raises-exception")  # nbval: may fail
    edited.cells[index(edited, "check:ex2_mul")].source = "pass"
    save(edited, "edited.ipynb")

    missing = lecture(SOLUTIONS)
    del missing.cells[index(missing, "check:ex2_mul")]
    save(missing, "missing.ipynb")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_gone(pid_file: Path) -> None:
    pid = int(pid_file.read_text())
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"kernel {pid} still running"
    except psutil.NoSuchProcess:
        pass


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    path = tmp_path / "lecture.ipynb"
    nbformat.write(lecture(), path)
    return path


def test_batch(tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture) -> None:
    subs, out, pids = tmp_path / "subs", tmp_path / "out", tmp_path / "pids"
    subs.mkdir(), pids.mkdir()
    make_batch(subs, pids)
    before = snapshot(subs)
    start = time.perf_counter()
    # --max-wall: a regression in the per-cell timeout shows up as a "timeout" row, not a stuck test
    rc = main([str(subs), "--reference", str(reference), "--out", str(out), "--cell-timeout", "5",
               "--jobs", "2", "--max-wall", "40"])
    elapsed = time.perf_counter() - start
    assert rc == 0
    assert snapshot(subs) == before  # nothing modified, nothing added
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", *EXERCISES, "passed", "total", "status"]
    table = {r[0]: r[1:] for r in rows[1:]}
    invalid = table.pop("not_json")
    assert invalid[:5] == ["0", "0", "0", "0", "3"] and invalid[5].startswith("invalid notebook: not valid JSON")
    invalid = table.pop("not_a_notebook")
    assert invalid == ["0", "0", "0", "0", "3", "invalid notebook: JSON without an 'nbformat' version"]
    assert table == {
        "crash": ["1", "1", "0", "2", "3", "kernel died"],
        "edited": ["0", "0", "1", "1", "3", "ok"],
        "group_a/correct": ["1", "1", "1", "3", "3", "ok"],
        "hang": ["1", "0", "1", "2", "3", "cell timeout"],
        "missing": ["1", "0", "1", "2", "3", "ok"],
        "partial": ["1", "0", "0", "1", "3", "ok"],
    }
    md = (out / "grades.md").read_text().splitlines()
    assert md[0] == "| student | ex1_add | ex2_mul | ex3_neg | passed | total | status |"
    assert md[1] == "| --- | --- | --- | --- | --- | --- | --- |"
    assert "| group_a/correct | 1 | 1 | 1 | 3 | 3 | ok |" in md and len(md) == 2 + 8
    printed = capsys.readouterr().out
    assert "group_a/correct: 3/3 ok" in printed and "crash: 2/3 kernel died" in printed
    for name in ("crash", "hang"):
        assert_gone(pids / name)
    # measured on 2 cores: 17 s with --jobs 2, 35 s with --jobs 1 (a crash costs the cell timeout + 5 s
    # and a kernel start, a hang the cell timeout and a start, the others about 3 s each)
    assert elapsed < 50, f"batch took {elapsed:.1f} s"


def test_wall_clock_limit_keeps_finished_cells(tmp_path: Path, reference: Path) -> None:
    """Past the per-submission limit the run is killed; finished checks count, the rest fail."""
    pids = tmp_path / "pids"
    pids.mkdir()
    nb = lecture({"ex1_add": "def add(a, b):\n    return a + b if os.environ['DGM_MODE'] == 'standard' else 0",
                  "ex2_mul": "time.sleep(600)"})
    nb.cells.insert(2, record_pid("slow", pids))
    nbformat.write(nb, tmp_path / "slow.ipynb")
    start = time.perf_counter()
    grade = grade_submission(tmp_path / "slow.ipynb", reference_checks(reference), cell_timeout=300,
                             mode="standard", max_wall=12)
    assert time.perf_counter() - start < 25
    assert grade.passed == {"ex1_add": True, "ex2_mul": False, "ex3_neg": False}
    assert grade.status == "timeout"
    assert_gone(pids / "slow")


def test_stop_event_kills_the_run(tmp_path: Path, reference: Path) -> None:
    """What Ctrl-C in grade_all does: a set `stop` ends the run at once, killing pytest and the kernel."""
    nbformat.write(lecture(SOLUTIONS), tmp_path / "fine.ipynb")
    stop = threading.Event()
    stop.set()
    start = time.perf_counter()
    grade = grade_submission(tmp_path / "fine.ipynb", reference_checks(reference), stop=stop)
    assert time.perf_counter() - start < 5
    assert grade.status == "timeout" and not any(grade.passed.values())


def test_bad_input(tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    with pytest.raises(GradingError, match="expected SUBMISSIONS to be a folder.*lecture.ipynb"):
        grade_all(reference, reference, tmp_path / "out")
    with pytest.raises(GradingError, match="expected .ipynb files under .*subs"):
        grade_all(subs, reference, tmp_path / "out")
    with pytest.raises(GradingError, match="reference notebook.*nope.ipynb.*no such file"):
        reference_checks(tmp_path / "nope.ipynb")
    (tmp_path / "broken.ipynb").write_text("{")
    with pytest.raises(GradingError, match="valid reference notebook.*not valid JSON"):
        reference_checks(tmp_path / "broken.ipynb")
    plain = lecture()
    for cell in plain.cells:
        cell.metadata.pop("tags", None)
    nbformat.write(plain, tmp_path / "plain.ipynb")
    with pytest.raises(GradingError, match="expected code cells tagged 'check:<exercise_id>'.*plain.ipynb"):
        reference_checks(tmp_path / "plain.ipynb")
    with pytest.raises(GradingError, match="expected mode in"):
        grade_all(subs, reference, tmp_path / "out", mode="fast")
    assert main([str(tmp_path / "nowhere"), "--reference", str(reference), "--out", str(tmp_path)]) == 2
    assert "expected SUBMISSIONS to be a folder" in capsys.readouterr().err
    assert not (tmp_path / "grades.csv").exists()


def test_module_entry_point(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "dgm_course.grading", str(tmp_path), "--reference",
                          str(tmp_path / "missing.ipynb"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert run.returncode == 2
    assert "expected a reference notebook" in run.stderr and "missing.ipynb" in run.stderr
