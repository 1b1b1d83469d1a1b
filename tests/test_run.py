"""The headless runner: executed notebooks, results replaced only by a complete run, re-runs skipped."""

import json
import os
import subprocess
import sys

import nbformat
import pytest

from dgm_course import run

ROOT = run.ROOT


def test_select_by_number_or_name_and_refuse_unknown():
    assert [p.stem for p in run.select(["4", "05_variational_autoencoders"])] == [
        "04_latent_variable_models", "05_variational_autoencoders"]
    assert len(run.select([])) == len(list((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")))
    with pytest.raises(SystemExit, match="expected a lecture number or name"):
        run.select(["99"])


def test_a_lecture_runs_records_and_is_skipped_the_second_time(tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "results"
    assert run.main(["04", "--mode", "smoke", "--out", str(out), "--results", str(results), "--cold"]) == 0
    executed = nbformat.read(out / "04_latent_variable_models.smoke.ipynb", as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    numbers = json.loads((results / "04_latent_variable_models.smoke.json").read_text())["numbers"]
    assert any(n["name"] == "em_vs_sklearn_loglik_diff" for n in numbers)
    table = capsys.readouterr().out
    assert "| 04_latent_variable_models | smoke | cpu | ok |" in table and "em_vs_sklearn_loglik_diff" in table
    assert run.main(["04", "--mode", "smoke", "--out", str(out), "--results", str(results)]) == 0
    assert "skipped" in capsys.readouterr().out


def test_a_failed_run_keeps_the_previous_results(tmp_path):
    notebook = tmp_path / "solutions" / "98_broken.ipynb"
    notebook.parent.mkdir()
    code = ("from dgm_course.results import record\nrecord('98_broken', 'x', 1.0, 'unit')\n"
            "raise RuntimeError('half way')")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), notebook)
    results = tmp_path / "results"
    results.mkdir()
    (results / "98_broken.smoke.json").write_text('{"lecture": "98_broken", "mode": "smoke", "numbers": []}')
    r = run.run_lecture(notebook, "smoke", tmp_path / "out", results)
    assert r.status.startswith("failed") and "half way" in r.status
    assert json.loads((results / "98_broken.smoke.json").read_text())["numbers"] == []
    assert (tmp_path / "out" / "98_broken.smoke.ipynb").is_file()
    assert not (tmp_path / "out" / "98_broken.smoke.done.json").exists()


def _lecture(tmp_path, stem, code):
    """A one-cell lecture, as the build writes it: solutions/<stem>.ipynb and its jupytext source <stem>.py."""
    notebook = tmp_path / "solutions" / f"{stem}.ipynb"
    notebook.parent.mkdir(exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), notebook)
    notebook.with_suffix(".py").write_text("# %%\n" + code + "\n")
    return notebook


def test_plain_runs_the_source_as_a_script_and_records(tmp_path):
    notebook = _lecture(tmp_path, "97_plain", "from dgm_course.results import record\n"
                        "print('hello from the script')\nrecord('97_plain', 'x', 2.5, 'unit')")
    results, out = tmp_path / "results", tmp_path / "out"
    r = run.run_lecture(notebook, "smoke", out, results, plain=True)
    assert r.status == "ok" and [e["value"] for e in r.numbers] == [2.5]
    assert "hello from the script" in (out / "97_plain.smoke.log").read_text()
    assert not (out / "97_plain.smoke.ipynb").exists()


def test_plain_failure_and_timeout_keep_the_previous_results(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for stem, code, timeout, says in [("96_fails", "raise RuntimeError('half way')", 60, "half way"),
                                      ("95_slow", "import time\ntime.sleep(30)", 2, "timed out after 2 s")]:
        notebook = _lecture(tmp_path, stem, "from dgm_course.results import record\n"
                            f"record('{stem}', 'x', 1.0, 'unit')\n" + code)
        (results / f"{stem}.smoke.json").write_text(f'{{"lecture": "{stem}", "mode": "smoke", "numbers": []}}')
        r = run.run_lecture(notebook, "smoke", tmp_path / "out", results, cell_timeout=timeout, plain=True)
        assert r.status.startswith("failed") and says in r.status
        assert json.loads((results / f"{stem}.smoke.json").read_text())["numbers"] == []
        assert not (tmp_path / "out" / f"{stem}.smoke.done.json").exists()


def test_the_device_script_runs_the_plain_runner_and_leaves_results_in_out(tmp_path):
    """tools/device_full_run.sh, as on a GPU machine without Jupyter (here: no .whl, this interpreter first on PATH)."""
    env = dict(os.environ, OUT=str(tmp_path), JOBS="1", SECONDS_LIMIT="300",
               PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(ROOT / "tools" / "device_full_run.sh"), "--mode", "smoke", "04"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    numbers = json.loads((tmp_path / "results" / "04_latent_variable_models.smoke.json").read_text())["numbers"]
    assert any(n["name"] == "em_vs_sklearn_loglik_diff" for n in numbers)
    assert "| 04_latent_variable_models | smoke |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "logs" / "04_latent_variable_models.smoke.log").exists()
