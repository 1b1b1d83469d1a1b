"""A student's view of the course in JupyterLab, driven in headless Chromium (issue 17, item 6).

The test starts `jupyter lab` on a free local port with a token, in a temporary folder holding a copy of the
student notebook of lecture 01, and drives it in Debian's Chromium through the `playwright` package (never
`playwright install`: the browser is the system's, given by `executable_path`). The kernel runs in smoke mode
with the inline matplotlib backend, as a student's would. The student has solved the exercises above the first
widget (their solution cells are filled in from the solution notebook); the next exercise still holds its stub.

It checks what a student would see at once:
1. the notebook runs to its first widget, which renders with a plot;
2. moving a slider (keyboard on the slider's handle) redraws the plot: the output's pixels change;
3. the check of an exercise whose stub is still in place says "is not done yet", without a traceback;
4. no JavaScript console error and no "Error displaying widget" anywhere on the page.

Screenshots go to $DGM_BROWSER_SHOTS (or pytest's tmp folder); the test prints what each shows.
It skips when chromium or playwright is missing, unless DGM_BROWSER_TEST=required (as .ci/run sets it).
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURE = "01_background"
CHROMIUM = os.environ.get("DGM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRED = os.environ.get("DGM_BROWSER_TEST") == "required"
WIDGET_CODE = "widgets.interactive_plot("  # how a cell that shows a widget reads
SLIDER = "mu_0"  # the slider the test moves: a component's mean, so that the whole plot shifts
STARTUP_S, RUN_S, STEP_S = 180, 300, 60  # generous: CI runs this beside a notebook on a 2-core machine
CELLS = ".jp-NotebookPanel .jp-Notebook .jp-Cell"  # the notebook's cells, markdown and code, in order


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (Debian: apt-get install chromium; or set DGM_CHROMIUM)"
    return None


if (_why := _missing()) is not None:
    if REQUIRED:
        raise RuntimeError(f"DGM_BROWSER_TEST=required but {_why}")
    pytest.skip(f"browser test skipped: {_why}", allow_module_level=True)

from PIL import Image, ImageChops  # noqa: E402  (after the skip: matplotlib brings Pillow)
from playwright.sync_api import Page, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402


# ------------------------------------------------------------------------------------------------ the notebook
def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _exercise(cell, kind: str) -> str | None:
    """'ex5_gda_fit' for a cell tagged `kind:ex5_gda_fit` (kind is 'solution' or 'check'), else None."""
    return next((t.split(":", 1)[1] for t in _tags(cell) if t.startswith(kind + ":")), None)


def prepare_notebook(folder: Path) -> dict:
    """Copy the student notebook into `folder` with the exercises above its first widget solved.

    Returns the cell indices the test needs, found by content (never fixed numbers): the first widget cell, and
    the solution and check cells of the first exercise below it, which keeps its stub.
    """
    student = nbformat.read(ROOT / "lectures" / f"{LECTURE}.ipynb", as_version=4)
    solutions = nbformat.read(ROOT / "solutions" / f"{LECTURE}.ipynb", as_version=4)
    solved = {ex: c.source for c in solutions.cells if (ex := _exercise(c, "solution"))}
    cells = student.cells
    widget = next((i for i, c in enumerate(cells) if c.cell_type == "code" and WIDGET_CODE in c.source), None)
    if widget is None:
        raise AssertionError(f"lectures/{LECTURE}.ipynb has no cell calling {WIDGET_CODE}")
    for c in cells[:widget]:
        if (ex := _exercise(c, "solution")) is not None:
            c.source = solved[ex]  # a student who has done this exercise
    stub = next((i for i in range(widget, len(cells)) if _exercise(cells[i], "solution")), None)
    if stub is None:
        raise AssertionError(f"lectures/{LECTURE}.ipynb has no exercise below its first widget")
    exercise = _exercise(cells[stub], "solution")
    check = next((i for i in range(stub, len(cells)) if _exercise(cells[i], "check") == exercise), None)
    if check is None or "raise NotImplementedError" not in cells[stub].source:
        raise AssertionError(f"{exercise}: expected a stub cell and, below it, its check cell")
    nbformat.write(student, folder / f"{LECTURE}.ipynb")
    return {"cells": len(cells), "widget": widget, "stub": stub, "check": check, "exercise": exercise}


# ------------------------------------------------------------------------------------------------ the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_settings(folder: Path) -> None:
    """User settings: every cell in the page (no windowing, so cells are found by index), no news pop-up."""
    settings = {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }
    for plugin, values in settings.items():
        package, name = plugin.rsplit("/", 1)
        path = folder / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and the kernels it started: they share its process group (start_new_session)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            break
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the server is gone; a kernel that outlived it goes too
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    server.wait()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, in a temporary folder; stopped (with its kernels) at the end."""
    tmp = tmp_path_factory.mktemp("lab")
    notebooks = tmp / "notebooks"
    notebooks.mkdir()
    cells = prepare_notebook(notebooks)
    _lab_settings(tmp / "settings")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "JPY_SESSION_NAME")}
    env.update(  # the kernel inherits this: smoke mode, caches and results in tmp, ipykernel's inline backend
        DGM_MODE="smoke", DGM_CACHE_DIR=str(tmp / "cache"), DGM_RESULTS_DIR=str(tmp / "results"),
        JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
    )
    mnist = ROOT.parent / "shared" / "data" / "mnist"
    if "DGM_DATA_DIR" not in env and mnist.is_dir():
        env["DGM_DATA_DIR"] = str(mnist)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp / "jupyter.log", "w")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}",
         "--LabApp.news_url=", "--ServerApp.allow_root=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({server.returncode}):\n{(tmp / 'jupyter.log').read_text()}")
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer in {STARTUP_S} s") from None
                time.sleep(0.5)
        yield {"base": base, "token": token, "tmp": tmp, **cells}
    finally:
        _stop(server)
        log.close()


# ------------------------------------------------------------------------------------------------ the page
def _kernel_idle(lab) -> bool:
    try:
        kernels = _get(f"{lab['base']}/api/kernels?token={lab['token']}")
    except urllib.error.HTTPError:  # jupyter_server answers 500 while a kernel is still starting
        return False
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


def wait_idle(page: Page, lab, cells: list[int], timeout: float = RUN_S) -> None:
    """Wait until each of `cells` shows an execution count and the kernel is idle; fail with the errors shown."""
    start = time.monotonic()
    stalled = None  # since when the kernel is idle with nothing queued while some of `cells` have not run
    prompts = [page.locator(CELLS).nth(i).locator(".jp-InputPrompt") for i in cells]
    while True:
        done = all(p.inner_text().strip().strip("[]:").isdigit() for p in prompts)
        quiet = _kernel_idle(lab) and not page.locator(".jp-InputPrompt", has_text="[*]").count()
        if done and quiet:
            return
        stalled = (stalled or time.monotonic()) if quiet else None
        if time.monotonic() - start > timeout or (stalled and time.monotonic() - stalled > 10):
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            shown = "\n---\n".join(errors.all_inner_texts())
            why = "stopped before them" if stalled else f"did not finish in {timeout:.0f} s"
            raise AssertionError(f"the run of cells {cells} {why}; error outputs on the page:\n{shown}")
        page.wait_for_timeout(250)


def select(cell) -> None:
    """Select a cell in command mode, as a click on its prompt does."""
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputPrompt").click()
    cell.page.keyboard.press("Escape")


def run_menu(page: Page, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def changed_pixels(before: bytes, after: bytes) -> float:
    """Fraction of pixels that differ between two PNG screenshots (1.0 when their sizes differ)."""
    a, b = (Image.open(io.BytesIO(x)).convert("RGB") for x in (before, after))
    if a.size != b.size:
        return 1.0
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > 16 else 0)
    return diff.histogram()[255] / (a.width * a.height)


def test_student_notebook_in_jupyterlab(lab, tmp_path):
    shots = Path(os.environ.get("DGM_BROWSER_SHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    seen: list[str] = []  # what each screenshot shows, printed at the end

    def shoot(name: str, what: str, target=None) -> bytes:
        png = (target or page).screenshot(path=str(shots / name))
        seen.append(f"{shots / name}: {what}")
        return png

    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(STEP_S * 1000)
            console_errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
            page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))

            page.goto(f"{lab['base']}/lab/tree/{LECTURE}.ipynb?reset&token={lab['token']}")
            cells = page.locator(CELLS)
            cells.first.wait_for(timeout=STARTUP_S * 1000)
            deadline = time.monotonic() + STARTUP_S
            while not _kernel_idle(lab):  # the kernel starts with the notebook
                assert time.monotonic() < deadline, f"the kernel did not start in {STARTUP_S} s"
                page.wait_for_timeout(250)
            assert cells.count() == lab["cells"], "the page shows a different number of cells than the notebook"
            config = json.loads(page.locator("#jupyter-config-data").text_content())
            extensions = {e["name"] for e in config.get("federated_extensions", [])}
            assert "@jupyter-widgets/jupyterlab-manager" in extensions, (  # ipywidgets>=8 brings it (jupyterlab_widgets)
                f"JupyterLab runs without the ipywidgets extension; it has {sorted(extensions)}")
            shoot("1_opened.png", f"lecture {LECTURE} (student version) just opened in JupyterLab, kernel idle")

            # 1. run every cell above the first widget, then the widget's cell
            widget_cell = cells.nth(lab["widget"])
            select(widget_cell)
            run_menu(page, "Run All Above Selected Cell")
            code_above = [i for i in range(lab["widget"]) if "jp-CodeCell" in (cells.nth(i).get_attribute("class") or "")]
            wait_idle(page, lab, code_above)
            select(widget_cell)
            page.keyboard.press("Shift+Enter")
            wait_idle(page, lab, [lab["widget"]])
            interact = widget_cell.locator(".widget-interact")
            slider = interact.first.locator(".widget-slider", has_text=SLIDER)
            plot = interact.first.locator("img")
            slider.wait_for()
            plot.first.wait_for()
            shown = interact.first  # the widget: its sliders and its output, where the plot is drawn
            shown.scroll_into_view_if_needed()
            readout = slider.locator(".widget-readout")
            value_before, src_before = readout.inner_text(), plot.first.get_attribute("src")
            before = shoot("2_widget_before.png", f"the first widget's output: its sliders and the plot drawn by the "
                           f"inline backend, {SLIDER} = {value_before}", shown)

            # 2. move the slider with the keyboard, as a student can: End takes it to its maximum
            slider.locator(".noUi-handle").focus()
            page.keyboard.press("End")
            page.wait_for_function(  # the kernel redraws into the widget's output: a new image
                "([cell, src]) => { const img = cell.querySelector('.widget-interact img');"
                " return img !== null && img.getAttribute('src') !== src && img.complete; }",
                arg=[widget_cell.element_handle(), src_before], timeout=RUN_S * 1000)
            wait_idle(page, lab, [lab["widget"]])
            page.wait_for_timeout(500)  # let the new image paint
            value_after = readout.inner_text()
            after = shoot("3_widget_after.png", f"the same output after pressing End on the {SLIDER} slider: "
                          f"{SLIDER} = {value_after}, plot redrawn", shown)
            assert value_after != value_before, f"the {SLIDER} slider did not move ({value_before})"
            assert plot.count() == 1, f"the widget shows {plot.count()} plots after the redraw, not one"
            shown_widgets = interact.count()  # asserted at the end, after the checks that do not depend on it
            moved = changed_pixels(before, after)
            seen[-1] += f" ({moved:.1%} of its pixels differ from the screenshot before)"
            assert moved > 0.01, f"the plot's pixels barely changed ({moved:.2%}) after moving the slider"

            # 3. the check of an exercise whose stub is still in place
            stub_cell, check_cell = cells.nth(lab["stub"]), cells.nth(lab["check"])
            select(stub_cell)
            page.keyboard.press("Shift+Enter")
            select(check_cell)
            page.keyboard.press("Shift+Enter")
            wait_idle(page, lab, [lab["stub"], lab["check"]])
            verdict = check_cell.locator(".jp-OutputArea-output")
            verdict.first.wait_for()
            text = "\n".join(verdict.all_inner_texts()).strip()
            check_cell.scroll_into_view_if_needed()
            shoot("4_check_not_done.png", f"the stub of {lab['exercise']} and its check cell, whose output is: "
                  f"{text.splitlines()[0] if text else '(nothing)'}", page.locator(".jp-NotebookPanel"))
            assert f"{lab['exercise']} is not done yet" in text, f"the check says:\n{text}"
            for stack in ("Traceback", "Cell In[", "---->", 'File "'):
                assert stack not in text, f"the check shows a traceback ({stack!r}):\n{text}"
            assert len(text.splitlines()) <= 2, f"the check's verdict is more than one message:\n{text}"

            # 4. nothing broken on the page
            shoot("5_page.png", "the whole JupyterLab window at the end of the test")
            body = page.locator("body").inner_text()
            assert "Error displaying widget" not in body
            assert "Traceback" not in body, "a traceback shows on the page"
            assert not console_errors, "JavaScript console errors:\n" + "\n".join(console_errors)
            assert shown_widgets == 1, f"the widget's cell shows {shown_widgets} widgets, not one (issue 17, item 1)"
        except (AssertionError, PlaywrightTimeout):
            try:
                page.screenshot(path=str(shots / "failure.png"), full_page=True)
                seen.append(f"{shots / 'failure.png'}: the page when the test failed")
            except Exception:  # the page may be gone; the failure itself is what matters
                pass
            raise
        finally:
            browser.close()
            print(f"\nbrowser test: {time.monotonic() - t0:.0f} s in the browser; screenshots:")
            for line in seen:
                print("  " + line)
