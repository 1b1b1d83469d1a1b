"""The grader on a hostile batch of lecture 01 submissions, in the real sandbox (bubblewrap), as in CI.

Each submission is the real student notebook lectures/01_background.ipynb with solution regions filled in from
solutions/01_background.py, some of them replaced by a cheat, a hog or a chatty, slow or dtype-changing answer.
To keep the run short the reference is lecture 01 cut down to its title, setup cell and exercise cells (the
checks are the real ones); one honest submission is also graded against the whole lecture.
"""

import csv
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import pytest

from dgm_course.grading import Settings, grade_all, survivors
from dgm_course.grading.sandbox import bwrap_path

ROOT = Path(__file__).resolve().parent.parent
LECTURE = ROOT / "lectures" / "01_background.ipynb"
SOLUTION = ROOT / "solutions" / "01_background.py"
EXERCISES = ["ex1_parameter_counts", "ex2_bayes_posterior", "ex3_ancestral_sampling", "ex4_mixture_log_prob",
             "ex5_gda_fit", "ex6_histogram_density"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
pytestmark = pytest.mark.skipif(bwrap_path() is None and not IN_CI, reason="bubblewrap (bwrap) is not installed")
P, F, N, T, M, E, X = "passed", "failed", "not attempted", "timeout", "memory", "error", "tampering suspected"


def solution_regions() -> dict[str, list[str]]:
    regions = {}
    for cell in jupytext.read(SOLUTION).cells:
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("solution:"):
                lines = cell.source.split("\n")
                begin = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
                end = next(i for i, line in enumerate(lines) if "### END SOLUTION" in line)
                regions[tag[len("solution:"):]] = lines[begin + 1:end]
    return regions


HONEST = solution_regions()


def submission(only: bool = False, **replaced: str) -> nbformat.NotebookNode:
    """The student notebook with every region answered honestly, except `replaced` (exercise -> code); with
    `only`, the other exercises are left as stubs."""
    nb = nbformat.read(LECTURE, as_version=4)
    for cell in nb.cells:
        for tag in cell.metadata.get("tags", []):
            if tag.startswith("solution:"):
                ex = tag[len("solution:"):]
                lines = cell.source.split("\n")
                i = next(i for i, line in enumerate(lines) if "raise NotImplementedError" in line)
                if only and ex not in replaced:
                    continue
                region = replaced[ex].split("\n") if ex in replaced else HONEST[ex]
                cell.source = "\n".join(lines[:i - 1] + region + lines[i + 1:])
    return nb


def short(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Lecture 01 cut to its title, setup cell (the first code cell after the Colab install cell) and exercise cells."""
    setup = [c for c in nb.cells if c.cell_type == "code" and "install" not in c.metadata.get("tags", [])][:1]
    keep = [nb.cells[0]] + setup + [
        c for c in nb.cells if any(t.split(":")[0] in ("solution", "check") for t in c.metadata.get("tags", []))]
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    out.cells = keep
    return out


# kernel cheats: ex1 answers 0, then a top-level statement (dedented out of the function) tries to make it pass
KERNEL_CHEATS = {
    "noop_check": "lecture01.check_parameter_counts = lambda f: None",
    "noop_fail": "from dgm_course import checks\nchecks.fail = lambda *a, **k: None\nlecture01.fail = checks.fail",
    "custom_exc": "get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)",
    "input_transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
    "forged_verdict": "__dgm_verdict__ = lambda: '{\"body\": \"[]\", \"mac\": \"0\"}'",
}
LIAR = ("    class Liar(int):\n        def __eq__(self, other):\n            return True\n"
        "        def __ne__(self, other):\n            return False\n    return Liar(0)")
# system cheats: ex1 is answered honestly, then top-level code attacks the grader, the files or the machine
SYSTEM_CHEATS = {
    "exec_solutions": "exec(open(" + repr(str(SOLUTION)) + ").read())",
    "kill_grader": ("import os, signal\nmine = {int(t) for t in os.listdir('/proc/self/task')}\n"
                    "for pid in range(1, 100000):\n    try:\n"
                    "        if pid not in mine: os.kill(pid, signal.SIGKILL)\n    except Exception:\n        pass"),
    "plant_home": ("import os, pickle\nos.makedirs(os.path.expanduser('~/.ipython/profile_default/startup'),"
                   " exist_ok=True)\nopen(os.path.expanduser('~/.ipython/profile_default/startup/x.py'), 'w')"
                   ".write('print(1)')\nos.makedirs(os.path.expanduser('~/.cache/dgm_course/models'), exist_ok=True)\n"
                   "pickle.dump(1, open(os.path.expanduser('~/.cache/dgm_course/models/m.pt'), 'wb'))"),
    "background": ("import subprocess\nsubprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
                   "import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(1000)"),
}


def kernel_cheat(code: str) -> str:
    return "    return 0\n" + code


def system_cheat(code: str) -> str:
    return "\n".join(HONEST["ex1_parameter_counts"]) + "\n" + code


def vandal(paths: list[Path]) -> str:
    """Deletes and overwrites every file it is given (other submissions, the reference, the grades)."""
    lines = ["import os"]
    for p in paths:
        lines += [f"try:\n    open({str(p)!r}, 'a').write('x')\nexcept OSError:\n    pass",
                  f"try:\n    os.remove({str(p)!r})\nexcept OSError:\n    pass"]
    return system_cheat("\n".join(lines))


def make_batch(folder: Path, reference: Path, out: Path, scan: bool, answers: Path) -> dict[str, list[str]]:
    """Write the batch; return the expected verdicts and status per student."""
    honest = [P] * 6
    expected = {}

    def save(name: str, nb: nbformat.NotebookNode, row: list[str], status: str = "ok") -> None:
        nbformat.write(short(nb), folder / f"{name}.ipynb")
        expected[name] = [*row, status]

    if scan:
        # the scan rejects each cheat before it runs; the other exercises are stubs, so no kernel is started
        cheats = {name: kernel_cheat(code) for name, code in KERNEL_CHEATS.items()}
        cheats |= {name: system_cheat(code) for name, code in SYSTEM_CHEATS.items()}
        cheats |= {"lying_eq": LIAR, "vandal": vandal([folder / "honest.ipynb", reference, out / "grades.csv",
                                                        SOLUTION, answers])}
        for name, code in cheats.items():
            save(name, submission(True, ex1_parameter_counts=code), [X] + [N] * 5)
        save("honest", submission(), honest)
        save("chatty", submission(ex1_parameter_counts="\n".join(HONEST["ex1_parameter_counts"])
                                  + "\nfor i in range(1_000_000):\n    print(i, flush=True)"), honest)
        save("slow", submission(ex2_bayes_posterior="\n".join(HONEST["ex2_bayes_posterior"]) + "\ntime.sleep(8)"),
             honest)
        save("dtype", submission(ex4_mixture_log_prob="    torch.set_default_dtype(torch.float64)\n"
                                 "    torch.manual_seed(1234)\n    np.random.seed(0)\n"
                                 + "\n".join(HONEST["ex4_mixture_log_prob"])), honest)
        save("memory_hog", submission(ex3_ancestral_sampling="    big = torch.ones(2**34, dtype=torch.uint8)\n"
                                      "    return big"), [P, P, M, P, P, P])
        save("hang", submission(ex5_gda_fit="    while True:\n        pass"), [P, P, P, P, T, P])
        save("wrong", submission(ex2_bayes_posterior="    return log_lik", ex6_histogram_density="    return x"),
             [P, F, P, P, P, F])
        blank = nbformat.read(LECTURE, as_version=4)
        for cell in blank.cells:  # edited checks, added cells: none of it counts
            if any(t.startswith("check:") for t in cell.metadata.get("tags", [])):
                cell.source = "pass"
        blank.cells.insert(3, nbformat.v4.new_code_cell("print('my own cell')"))
        save("blank_edited", blank, [N] * 6)
        nbformat.write(nbformat.read(ROOT / "lectures" / "02_autoregressive_models.ipynb", as_version=4),
                       folder / "other_lecture.ipynb")
        expected["other_lecture"] = [N] * 6 + ["a notebook for another lecture"]
        (folder / "empty.ipynb").write_text("")
        expected["empty"] = [N] * 6 + ["empty file"]
        (folder / "not_json.ipynb").write_text('{"cells": [')
        expected["not_json"] = [N] * 6 + ["not a notebook: not valid JSON"]
        (folder / "not_a_notebook.ipynb").write_text('{"hello": "world"}')
        expected["not_a_notebook"] = [N] * 6 + ["not a notebook: JSON without"]
        (folder / "missing.ipynb").symlink_to(folder / "nowhere.ipynb")
        expected["missing"] = [N] * 6 + ["missing file"]
    else:  # the in-kernel protections alone, without the static scan
        for name, code in KERNEL_CHEATS.items():
            save(name, submission(ex1_parameter_counts=kernel_cheat(code)), [X] * 6)
        save("lying_eq", submission(ex1_parameter_counts=LIAR), [F] + honest[1:])
        # the system cheats in one kernel (each also has its own submission in the scanned batch): the sandbox
        # contains them, so the answers still pass and nothing outside changes
        code = [vandal([folder / "noop_check.ipynb", reference, out / "grades.csv", SOLUTION, answers])]
        code += [SYSTEM_CHEATS[k] for k in ("plant_home", "background", "kill_grader")]
        code += ["try:\n    " + SYSTEM_CHEATS["exec_solutions"] + "\nexcept OSError:\n    pass"]
        save("system_cheats", submission(ex1_parameter_counts="\n".join(code)), honest)
    return expected


def snapshot(*paths: Path) -> dict[str, str]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def grade_batch(tmp_path: Path, scan: bool) -> tuple[dict[str, list[str]], dict[str, list[str]], float]:
    subs, out = tmp_path / "subs", tmp_path / "out"
    subs.mkdir()
    reference = tmp_path / "reference.ipynb"
    nbformat.write(short(nbformat.read(LECTURE, as_version=4)), reference)
    instructor = tmp_path / "instructor"  # a copy: the checkout itself may change while the tests run
    instructor.mkdir()
    (instructor / SOLUTION.name).write_text(SOLUTION.read_text())
    expected = make_batch(subs, reference, out, scan, instructor / SOLUTION.name)
    home_startup = Path.home() / ".ipython" / "profile_default" / "startup" / "x.py"
    before = snapshot(subs, reference, instructor)
    start = time.perf_counter()
    settings = Settings(cell_timeout=20, max_wall=120, mode="smoke", memory=4 << 30, threads=1,
                        data_dir=os.environ.get("DGM_DATA_DIR"), scan=scan)
    grades = grade_all(subs, reference, out, settings, jobs=2, verbose=False)
    elapsed = time.perf_counter() - start
    assert snapshot(subs, reference, instructor) == before  # no submission, reference or instructor file changed
    assert not home_startup.exists()
    assert not survivors(), "a submission's process survived"
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", *EXERCISES, "passed", "total", "status"]
    table = {r[0]: r[1:7] + [r[9]] for r in rows[1:]}
    assert len(grades) == len(table) == len(expected)
    for g in grades:
        assert (out / "feedback" / f"{g.student}.md").is_file()
    return table, expected, elapsed


def check_rows(table: dict[str, list[str]], expected: dict[str, list[str]]) -> None:
    print("\n".join(f"{k}: {v}" for k, v in sorted(table.items())))
    wrong = {}
    for name, row in expected.items():
        got = table[name]
        if got[:6] != row[:6] or not got[6].startswith(row[6]):
            wrong[name] = (got, row)
    assert not wrong, "\n".join(f"{k}: got {g}, expected {e}" for k, (g, e) in wrong.items())


def test_hostile_batch(tmp_path: Path) -> None:
    table, expected, elapsed = grade_batch(tmp_path, scan=True)
    check_rows(table, expected)
    assert "expected:" in (tmp_path / "out" / "feedback" / "wrong.md").read_text()  # the check's message
    assert "get_ipython" in (tmp_path / "out" / "feedback" / "custom_exc.md").read_text()
    print(f"hostile batch of {len(table)}: {elapsed:.0f} s")


def test_in_kernel_protections_without_the_scan(tmp_path: Path) -> None:
    """With the static scan off, cheats run; the guard, the signed verdicts and the sandbox still hold."""
    table, expected, elapsed = grade_batch(tmp_path, scan=False)
    check_rows(table, expected)
    print(f"unscanned batch of {len(table)}: {elapsed:.0f} s")


def test_whole_lecture_and_nbval_agree(tmp_path: Path) -> None:
    """An honest notebook: full marks from the grader on the whole lecture, and from `pytest --nbval-lax`."""
    subs = tmp_path / "subs"
    subs.mkdir()
    wrong = submission(ex2_bayes_posterior="    return log_lik")
    nbformat.write(wrong, subs / "one_wrong.ipynb")
    settings = Settings(cell_timeout=60, max_wall=300, mode="smoke", threads=2,
                        data_dir=os.environ.get("DGM_DATA_DIR"))
    grades = grade_all(subs, LECTURE, tmp_path / "out", settings, jobs=1, verbose=False)
    assert grades[0].verdicts == {ex: F if ex == "ex2_bayes_posterior" else P for ex in EXERCISES}
    assert grades[0].status == "ok"
    # by hand: the same notebook, cut short, under nbval; only the check cell of ex2 fails
    nbformat.write(short(wrong), tmp_path / "by_hand.ipynb")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "-c",
                          str(tmp_path / "pytest.ini"), str(tmp_path / "by_hand.ipynb"), "-rf"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "DGM_MODE": "smoke"})
    failed = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "Cell 4" in failed[0], run.stdout[-2000:]
