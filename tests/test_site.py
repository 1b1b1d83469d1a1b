"""The course site: the runner executes every lecture in smoke mode, `dgm_course.site` renders the executed
notebooks, and the pages, figures, widget state and student downloads are all there, with no error shown."""

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest

from dgm_course import build, run, site

ROOT = Path(__file__).resolve().parents[1]
STEMS = [p.stem for p in sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


class Links(HTMLParser):
    """The images, links and widget scripts of one HTML page."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.scripts = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "script" and attrs.get("type", "").startswith("application/vnd.jupyter.widget"):
            self.scripts.append(attrs["type"])


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text())
    return links


def local(page: Path, url: str) -> Path | None:
    """The file a relative link of `page` points to; None for an absolute URL or an anchor."""
    parsed = urlparse(url)
    if parsed.scheme or parsed.netloc or not parsed.path:
        return None
    return (page.parent / unquote(parsed.path)).resolve()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every lecture run in smoke mode (results kept out of results/), then the site built from the run."""
    work = tmp_path_factory.mktemp("site")
    executed = work / "executed"
    # a smoke-mode cell takes seconds; the limit turns a hung kernel into a failure within minutes, not an hour
    assert run.main(["--mode", "smoke", "--out", str(executed), "--results", str(work / "results"),
                     "--jobs", "2", "--cell-timeout", "600"]) == 0, "a lecture failed; see the runner's table above"
    site.build_site(executed, work / "_site", mode="smoke")
    return executed, work / "_site"


def test_every_executed_notebook_shows_each_widget_once_and_stores_its_state(built):
    executed, _ = built
    for stem in STEMS:
        nb = nbformat.read(executed / f"{stem}.smoke.ipynb", as_version=4)
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            views = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
            assert len(views) <= 1, f"{stem}, code cell {i}: a widget shown {len(views)} times"
        if any(WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])):
            assert nb.metadata.widgets[WIDGET_STATE]["state"], f"{stem}: widgets without stored state"


def test_the_index_links_every_lecture_its_student_notebook_and_colab(built):
    _, out = built
    index = out / "index.html"
    links = parse(index).links
    for stem in STEMS:
        assert f"lectures/{stem}.html" in links, f"the index does not link {stem}"
        assert build.colab_url(stem) in links
        downloads = [local(index, u) for u in links if u.endswith(f"/{stem}.ipynb") and "_downloads" in u]
        assert downloads and downloads[0].read_bytes() == (ROOT / "lectures" / f"{stem}.ipynb").read_bytes()
    bundle = [local(index, u) for u in links if u.endswith("lectures.zip")]
    assert bundle and bundle[0].stat().st_size > 0
    assert "One Jupyter notebook per lecture" in index.read_text(), "the README's introduction"


@pytest.mark.parametrize("stem", STEMS)
def test_a_lecture_page_has_its_figures_its_download_and_no_error(built, stem):
    executed, out = built
    page = out / "lectures" / f"{stem}.html"
    assert page.is_file(), f"no page for {stem}"
    html, links = page.read_text(), parse(page)
    nb = nbformat.read(executed / f"{stem}.smoke.ipynb", as_version=4)
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures > 0, f"{stem}: the executed notebook holds no figure"
    images = [local(page, src) for src in links.images if "_images/" in src]
    assert len(images) >= figures, f"{stem}: {figures} figures in the notebook, {len(images)} on the page"
    assert all(p is not None and p.is_file() and p.stat().st_size > 0 for p in images), f"{stem}: missing images"
    downloads = [local(page, u) for u in links.links if u.endswith(f"/{stem}.ipynb") and "_downloads" in u]
    assert downloads and downloads[0].is_file(), f"{stem}: the student notebook's download link does not resolve"
    assert json.loads(downloads[0].read_text())["cells"], f"{stem}: the download is not a notebook"
    assert build.colab_url(stem) in links.links
    for path in (local(page, u) for u in links.links):  # every link inside the site leads to a file
        assert path is None or path.exists(), f"{stem}: a broken link to {path}"
    assert "output traceback" not in html and "Traceback (most recent call last)" not in html, \
        f"{stem}: the page shows an error output"
    if WIDGET_VIEW in json.dumps([o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])]):
        assert WIDGET_VIEW in links.scripts and WIDGET_STATE in links.scripts, f"{stem}: widget without state"


def test_the_site_refuses_missing_or_failed_lectures(tmp_path):
    root, executed = tmp_path / "root", tmp_path / "executed"
    (root / "lectures").mkdir(parents=True)
    executed.mkdir()
    title = nbformat.v4.new_markdown_cell("# Lecture 99: tiny")
    nbformat.write(nbformat.v4.new_notebook(cells=[title]), root / "lectures" / "99_tiny.ipynb")
    with pytest.raises(SystemExit, match="no executed notebook for 99_tiny .* python -m dgm_course.run --mode smoke"):
        site.stage(executed, "smoke", tmp_path / "src", root)
    failed = nbformat.v4.new_code_cell("1 / 0", outputs=[nbformat.v4.new_output(
        "error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])])
    nbformat.write(nbformat.v4.new_notebook(cells=[title, failed]), executed / "99_tiny.smoke.ipynb")
    with pytest.raises(SystemExit, match="99_tiny, cell 1: ZeroDivisionError: division by zero"):
        site.stage(executed, "smoke", tmp_path / "src", root)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds no earlier site"):
        site.build_site(executed, tmp_path / "taken", "smoke", root)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_a_lecture_page_notes_its_mode_drops_the_install_cell_and_can_hide_solution_code():
    cells = [nbformat.v4.new_markdown_cell("# Lecture 99: tiny\n\nGoals."),
             nbformat.v4.new_code_cell(build.install_cell_source(), metadata={"tags": ["install"]}),
             nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["solution:ex1"]})]
    page = site.lecture_page(nbformat.v4.new_notebook(cells=cells), "99_tiny", "standard", hide_solutions=True)
    title, note = page.cells[0].source.split("\n", 1)
    assert title == "# Lecture 99: tiny" and note.strip().startswith("```{note}") and note.endswith("Goals.")
    assert "`standard` mode" in note and "../student/99_tiny.ipynb" in note and build.colab_url("99_tiny") in note
    assert page.cells[1].metadata.tags == ["install", "remove-cell"], "the install cell is not shown"
    assert page.cells[2].metadata.tags == ["solution:ex1", "remove-input"]
    assert cells[2].metadata.tags == ["solution:ex1"], "the executed notebook itself is not changed"
