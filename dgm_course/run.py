"""Run lectures headless: `python -m dgm_course.run [LECTURE ...] --mode standard --out executed/`.

Each lecture's solution notebook runs in its own kernel (nbclient), `--jobs` at a time. The executed notebook is
written to `OUT/<lecture>.<mode>.ipynb` (for the site), the numbers it records replace
`results/<lecture>.<mode>.json` only when the whole notebook ran (a failed or interrupted run leaves the old
file as it was), and one table gives each lecture's device, wall time and headline numbers against their
targets. A lecture already run from the same source in that mode is skipped unless `--force`; `--cold` trains
every model afresh (an empty model cache) instead of loading cached ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import results
from .runtime import MODES, device

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One lecture's run: how it went and what it recorded."""

    lecture: str
    mode: str
    status: str
    wall_s: float = 0.0
    device: str = ""
    numbers: list[dict] = field(default_factory=list)


def select(names: list[str], root: Path = ROOT) -> list[Path]:
    """The solution notebooks named by number ("05") or stem ("05_variational_autoencoders"); all when empty."""
    found = sorted((root / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SystemExit(f"dgm-run: error: expected solution notebooks in {root / 'solutions'}, found none")
    chosen = []
    for name in names or [p.stem for p in found]:
        match = [p for p in found if p.stem == name or p.stem[:2] == name.zfill(2)]
        if not match:
            raise SystemExit(f"dgm-run: error: expected a lecture number or name, e.g. 05 or "
                             f"05_variational_autoencoders; got {name!r}")
        chosen += [p for p in match if p not in chosen]
    return chosen


def _digest(notebook: Path) -> str:
    return hashlib.sha256(notebook.read_bytes()).hexdigest()[:16]


def run_lecture(notebook: Path, mode: str, out: Path, results_dir: Path, cold: bool = False, force: bool = False,
                cell_timeout: float = 3600, plain: bool = False) -> Run:
    """Execute one solution notebook; keep its outputs and, when it ran through, its recorded numbers.

    `plain` runs the lecture's jupytext source (solutions/NN_*.py) as a Python script instead, for a machine without
    Jupyter (a GPU server): the same numbers are recorded, but no executed notebook is written, and `cell_timeout`
    bounds the whole script.
    """
    lecture, done = notebook.stem, out / f"{notebook.stem}.{mode}.done.json"
    if not force and done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("source") == _digest(notebook):
            return Run(lecture, mode, "skipped (done; --force reruns)", previous["wall_s"], previous["device"],
                       _numbers(results_dir, lecture, mode))
    with tempfile.TemporaryDirectory(prefix=f"dgm-run-{lecture}-") as scratch:
        # in a kernel the inline backend, not Agg: it stores each figure in the executed notebook, for the site
        backend = "Agg" if plain else "module://matplotlib_inline.backend_inline"
        env = dict(os.environ, DGM_MODE=mode, DGM_RESULTS_DIR=str(Path(scratch) / "results"), MPLBACKEND=backend,
                   TQDM_DISABLE="1")
        if cold:
            env["DGM_CACHE_DIR"] = str(Path(scratch) / "cache")
        start = time.perf_counter()
        if plain:
            status = _run_script(notebook.with_suffix(".py"), env, cell_timeout, out / f"{lecture}.{mode}.log")
        else:
            status = _run_notebook(notebook, env, cell_timeout, out / f"{lecture}.{mode}.ipynb")
        wall = time.perf_counter() - start
        recorded = Path(scratch) / "results" / f"{lecture}.{mode}.json"
        if status == "ok" and recorded.is_file():
            results.write_atomic(results_dir / recorded.name, recorded.read_text())
    dev = str(device())
    if status == "ok":
        results.write_atomic(done, json.dumps({"source": _digest(notebook), "wall_s": round(wall, 1),
                                               "device": dev}))
    return Run(lecture, mode, status, wall, dev, _numbers(results_dir, lecture, mode) if status == "ok" else [])


def _run_notebook(notebook: Path, env: dict, cell_timeout: float, executed: Path) -> str:
    """Run every cell in a fresh kernel; write the executed notebook, outputs and all, even when a cell failed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    # no front-end imitation of ipywidgets' Output widget: with the inline backend, nbclient's imitation left
    # the run waiting forever on an idle kernel at the first interactive_plot (lecture 04); without it, the widget's
    # first plot goes to the cell's outputs, and the widgets' state is still stored
    client.comm_open_handlers = {"jupyter.widget": lambda msg: None}
    try:
        client.execute(env=env)
        status = "ok"
    except CellExecutionError as err:
        status = f"failed: {str(err).strip().splitlines()[-1][:120]}"
    except Exception as err:  # a dead kernel or a timeout: report it, keep the other lectures going
        status = f"failed: {type(err).__name__}: {str(err)[:120]}"
    results.write_atomic(executed, nbformat.writes(nb))
    return status


def _run_script(source: Path, env: dict, timeout: float, log: Path) -> str:
    """Run a lecture's jupytext source as a Python script in its folder; its output goes to `log`."""
    if not source.is_file():
        return f"failed: expected the lecture's source {source}, found none"
    try:
        done = subprocess.run([sys.executable, source.name], cwd=source.parent, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        parts = (p.decode(errors="replace") if isinstance(p, bytes) else p for p in (err.stdout, err.stderr))
        output = "".join(p for p in parts if p)          # the exception holds bytes or str, either may be None
        status = f"failed: timed out after {timeout:.0f} s"
    else:
        output = done.stdout + done.stderr
        last = output.strip().splitlines()[-1][:120] if output.strip() else ""
        status = "ok" if done.returncode == 0 else f"failed: exit {done.returncode}: {last}"
    results.write_atomic(log, output)
    return status


def _numbers(results_dir: Path, lecture: str, mode: str) -> list[dict]:
    path = results_dir / f"{lecture}.{mode}.json"
    return json.loads(path.read_text())["numbers"] if path.is_file() else []


def table(runs: list[Run]) -> str:
    """One Markdown table: lecture, mode, device, status, wall time, then each number with its target."""
    rows = ["| lecture | mode | device | status | wall time | number | value | target | met |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        head = f"| {r.lecture} | {r.mode} | {r.device} | {r.status} | {r.wall_s:.0f} s"
        others = {e["name"]: e["value"] for e in r.numbers}
        shown = [e for e in r.numbers if (r.lecture, e["name"]) in results.TARGETS] or r.numbers[:1]
        if not shown:
            rows.append(head + " | | | | |")
        for e in shown:
            standard, full, _ = results.TARGETS.get((r.lecture, e["name"]), ("", "", ""))
            target = {"standard": standard, "full": full}.get(r.mode, "")
            rows.append(f"{head} | {e['name']} | {e['value']:.4g} | {target} | "
                        f"{results._met(target, e['value'], others)} |")
            head = "| | | | |"
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the chosen lectures and print the table."""
    p = argparse.ArgumentParser(prog="dgm-run", description=__doc__.splitlines()[0])
    p.add_argument("lectures", nargs="*", help="lecture numbers or names (default: all)")
    p.add_argument("--mode", choices=MODES, default="standard", help="DGM_MODE for the runs (default standard)")
    p.add_argument("--out", default="executed", help="folder for the executed notebooks (default executed/)")
    p.add_argument("--results", default=str(ROOT / "results"), help="folder of the results files (default results/)")
    p.add_argument("--jobs", type=int, default=1, help="lectures run at once (default 1)")
    p.add_argument("--cold", action="store_true", help="retrain every model (an empty model cache)")
    p.add_argument("--force", action="store_true", help="rerun lectures already run from the same source")
    p.add_argument("--cell-timeout", type=float, default=3600,
                   help="seconds per cell; with --plain, per lecture (default 3600)")
    p.add_argument("--plain", action="store_true",
                   help="run solutions/NN_*.py as Python scripts (a machine without Jupyter); no executed notebooks")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1; got {args.jobs}")
    notebooks = select(args.lectures)
    out, results_dir = Path(args.out), Path(args.results)

    def one(nb: Path) -> Run:
        r = run_lecture(nb, args.mode, out, results_dir, args.cold, args.force, args.cell_timeout, args.plain)
        print(f"{r.lecture}: {r.status} ({r.wall_s:.0f} s)", flush=True)
        return r

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, notebooks))
    print(table(runs))
    return 0 if all(r.status == "ok" or r.status.startswith("skipped") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
