"""A static HTML site of the course: `python -m dgm_course.site --executed executed/ --out _site/`.

The pages are the solution notebooks as `python -m dgm_course.run --mode MODE --out executed/` executed them
(`executed/<lecture>.<mode>.ipynb`), rendered by Sphinx with MyST-NB (configured in `site/conf.py`), which shows
stored outputs without running anything: figures, tables, printed text and the static state of the widgets. An
index page holds the README's introduction and lecture table; each lecture page and the index offer the student
notebook (`lectures/<lecture>.ipynb`) for download and an "Open in Colab" link. A lecture whose executed notebook
is missing, or shows an error, stops the build: a site never shows a traceback.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import nbformat

from .build import INSTALL_TAG, colab_url

ROOT = Path(__file__).resolve().parent.parent
MODES = ("smoke", "standard", "full")
ROW = re.compile(r"^\| (\d\d) \| `(\w+)` \| (.*) \| (\d+) \|$")  # a row of the README's lecture table


def executed_notebooks(executed: Path, mode: str, stems: list[str]) -> dict[str, Path]:
    """`executed/<stem>.<mode>.ipynb` for every lecture; an error naming the missing ones and the command."""
    found = {stem: executed / f"{stem}.{mode}.ipynb" for stem in stems}
    missing = [stem for stem, path in found.items() if not path.is_file()]
    if missing:
        raise SystemExit(f"dgm-site: error: no executed notebook for {', '.join(missing)} in {executed}; run "
                         f"python -m dgm_course.run --mode {mode} --out {executed} first")
    return found


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """One line per error output of an executed notebook: 'cell N: ename: evalue'."""
    return [f"cell {i}: {out.get('ename', '?')}: {str(out.get('evalue', ''))[:200]}"
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def title_of(nb: nbformat.NotebookNode, stem: str) -> str:
    """The lecture's title: the first level-1 heading of its notebook."""
    for cell in nb.cells:
        for line in cell.source.splitlines() if cell.cell_type == "markdown" else []:
            if line.startswith("# "):
                return line[2:].strip()
    raise ValueError(f"{stem}: expected a '# Title' heading in a markdown cell, found none")


def lecture_page(nb: nbformat.NotebookNode, stem: str, mode: str, hide_solutions: bool) -> nbformat.NotebookNode:
    """The page of one lecture: its executed notebook with a note under the title (downloads, Colab, mode)."""
    nb = nbformat.from_dict(nb)  # a deep copy
    nb.metadata.pop("jupytext", None)
    note = (f"\n```{{note}}\nThis page is the lecture's solution notebook as it ran in `{mode}` mode; the widgets "
            f"show their first state (there is no kernel behind this page).\nWork through it yourself: "
            f"{{download}}`the student notebook <../student/{stem}.ipynb>` (exercises to fill in, each with a "
            f"check), or [open it in Colab]({colab_url(stem)}).\n```\n")
    for cell in nb.cells:
        if cell.cell_type == "markdown" and any(line.startswith("# ") for line in cell.source.splitlines()):
            lines = cell.source.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith("# ")) + 1
            cell.source = "\n".join(lines[:at] + [note] + lines[at:])
            break
    for cell in nb.cells:  # the install cell (see dgm_course.build) is for Colab, not for a reader of the page
        if INSTALL_TAG in cell.get("metadata", {}).get("tags", []):
            cell.metadata["tags"] = [*cell.metadata.tags, "remove-cell"]
    if hide_solutions:  # the outputs of a solution cell stay; its code does not
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if any(t.startswith("solution:") for t in tags):
                cell.metadata["tags"] = [*tags, "remove-input"]
    return nb


def readme_parts(readme: str) -> tuple[str, str, dict[str, tuple[str, str]]]:
    """The README's title, its first paragraph, and each lecture's (covers, exercises) from its table."""
    lines = readme.splitlines()
    title = next((line[2:].strip() for line in lines if line.startswith("# ")), "Deep Generative Models")
    body = readme.split("\n\n")
    intro = next((p.strip() for p in body[1:] if p.strip() and not p.lstrip().startswith(("#", "*", "`"))), "")
    rows = {m[2]: (m[3].strip(), m[4]) for m in map(ROW.match, lines) if m}
    return title, intro, rows


def index_page(readme: str, titles: dict[str, str], mode: str) -> str:
    """The index (MyST Markdown): the README's title and introduction, then one row per lecture with its links."""
    title, intro, rows = readme_parts(readme)
    table = ["| # | lecture | covers | exercises | work on it |", "| --- | --- | --- | --- | --- |"]
    for stem, name in titles.items():
        covers, exercises = rows.get(stem, ("", ""))
        table.append(f"| {stem[:2]} | [{name}](lectures/{stem}.ipynb) | {covers} | {exercises} | "
                     f"{{download}}`notebook <student/{stem}.ipynb>` · [Colab]({colab_url(stem)}) |")
    toctree = "\n".join(["```{toctree}", ":hidden:", ":maxdepth: 1", "", *[f"lectures/{s}" for s in titles], "```"])
    return "\n\n".join([
        f"# {title}", intro,
        f"Each lecture page shows the lecture's solution notebook with the outputs of a `{mode}`-mode run. To "
        "work through a lecture, download its student notebook (each exercise is a stub to fill in, with a check "
        "cell below it), or open it in Colab, where its first cell installs the course package. "
        "{download}`All student notebooks (zip) <student/lectures.zip>`.",
        "\n".join(table), toctree]) + "\n"


def stage(executed: Path, mode: str, src: Path, root: Path = ROOT, hide_solutions: bool = False) -> list[str]:
    """Write the Sphinx source folder `src`: conf.py, index.md, lectures/*.ipynb and the student downloads."""
    stems = [p.stem for p in sorted((root / "lectures").glob("[0-9][0-9]_*.ipynb"))]
    if not stems:
        raise SystemExit(f"dgm-site: error: expected student notebooks in {root / 'lectures'}, found none")
    notebooks = {stem: nbformat.read(path, as_version=4)
                 for stem, path in executed_notebooks(executed, mode, stems).items()}
    failed = [f"{stem}, {line}" for stem, nb in notebooks.items() for line in error_outputs(nb)]
    if failed:
        raise SystemExit("dgm-site: error: executed notebooks with errors (fix them, then rerun them with "
                         "python -m dgm_course.run --force):\n  " + "\n  ".join(failed))
    for sub in ("lectures", "student"):
        (src / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "site" / "conf.py", src / "conf.py")
    titles = {}
    for stem, nb in notebooks.items():
        titles[stem] = title_of(nb, stem)
        nbformat.write(lecture_page(nb, stem, mode, hide_solutions), src / "lectures" / f"{stem}.ipynb")
        shutil.copy(root / "lectures" / f"{stem}.ipynb", src / "student" / f"{stem}.ipynb")
    with zipfile.ZipFile(src / "student" / "lectures.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        for stem in stems:
            bundle.write(root / "lectures" / f"{stem}.ipynb", f"lectures/{stem}.ipynb")
    (src / "index.md").write_text(index_page((root / "README.md").read_text(), titles, mode))
    return stems


def build_site(executed: Path, out: Path, mode: str = "standard", root: Path = ROOT, hide_solutions: bool = False,
               jobs: int = 1) -> Path:
    """Stage the pages and run Sphinx into `out` (replaced if it holds an earlier site); returns out/index.html."""
    from sphinx.cmd.build import build_main  # slow import, only needed here

    if out.exists() and any(out.iterdir()):
        if not (out / ".buildinfo").is_file():
            raise SystemExit(f"dgm-site: error: {out} is not empty and holds no earlier site; choose another --out")
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="dgm-site-") as scratch:
        src = Path(scratch) / "src"
        stage(executed, mode, src, root, hide_solutions)
        code = build_main(["-b", "html", "-q", "-j", str(jobs), "-d", str(Path(scratch) / "doctrees"),
                           str(src), str(out)])
    if code != 0:
        raise SystemExit(f"dgm-site: error: sphinx-build failed (exit {code}); see its messages above")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    """Command line: build the site from the runner's executed notebooks."""
    p = argparse.ArgumentParser(prog="dgm-site", description=__doc__.splitlines()[0])
    p.add_argument("--executed", type=Path, default=Path("executed"),
                   help="the runner's output folder, with <lecture>.<mode>.ipynb (default executed/)")
    p.add_argument("--out", type=Path, default=Path("_site"), help="the HTML site (default _site/)")
    p.add_argument("--mode", choices=MODES, default="standard", help="which run to show (default standard)")
    p.add_argument("--hide-solutions", action="store_true",
                   help="show the outputs of the solution cells but not their code")
    p.add_argument("--jobs", type=int, default=1, help="Sphinx processes reading pages at once (default 1)")
    p.add_argument("--root", type=Path, default=ROOT, help="the course checkout (default: this package's)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1; got {args.jobs}")
    index = build_site(args.executed, args.out, args.mode, args.root.resolve(), args.hide_solutions, args.jobs)
    print(f"wrote the site: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
