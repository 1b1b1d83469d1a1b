"""Colab and bare Jupyter: every notebook starts with the build's install cell, written from the one repository
constant; the README's Colab links come from it too; and the cell really installs the course into a fresh
environment from a local copy of the repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import dgm_course
from dgm_course import build

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")) + sorted((ROOT / "lectures").glob("*.ipynb"))


def first_code_cell(path):
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[f"{p.parent.name}/{p.stem}" for p in NOTEBOOKS])
def test_every_notebook_starts_with_the_install_cell(path):
    cell = first_code_cell(path)
    assert cell.source == build.install_cell_source() and cell.metadata.tags == ["install"]
    assert f"{dgm_course.REPOSITORY}/archive/refs/heads/main.zip" in cell.source


def test_readme_opens_every_student_notebook_in_colab():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(build.README_START):readme.index(build.README_END)]
    owner_repo = dgm_course.REPOSITORY.removeprefix("https://github.com/")
    for path in sorted((ROOT / "lectures").glob("*.ipynb")):
        url = f"https://colab.research.google.com/github/{owner_repo}/blob/main/lectures/{path.name}"
        assert build.colab_url(path.stem) == url and f"]({url})" in block


@pytest.mark.parametrize("repository", ["https://gitlab.com/a/b", "https://github.com/a", "github.com/a/b",
                                        "https://github.com/a/b/c"])
def test_the_repository_must_be_a_github_address(repository):
    with pytest.raises(ValueError, match="https://github.com/<owner>/<repo>"):
        build.install_cell_source(repository)


TINY = '''\
# %% [markdown]
# # A tiny lecture

# %% tags=["install"]
# an install cell saved back into the source from Jupyter, written for an older repository address
import os

# %%
x = 1
'''


def test_the_build_writes_one_fresh_install_cell_and_follows_the_constant(tmp_path, monkeypatch):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "99_tiny.py").write_text(TINY)
    (tmp_path / "README.md").write_text(f"# Tiny\n\n{build.README_START}\nold links\n{build.README_END}\n")
    assert build.main(["--root", str(tmp_path)]) == 0
    for path in (tmp_path / "solutions" / "99_tiny.ipynb", tmp_path / "lectures" / "99_tiny.ipynb"):
        cells = nbformat.read(path, as_version=4).cells
        installs = [c for c in cells if "install" in c.metadata.get("tags", [])]
        assert len(installs) == 1 and installs[0] is cells[1], "one install cell, right before the first code"
        assert installs[0].source == build.install_cell_source() and cells[2].source == "x = 1"
    assert "old links" not in (tmp_path / "README.md").read_text()
    assert build.colab_url("99_tiny") in (tmp_path / "README.md").read_text()
    # a fork changes the constant: every notebook and the README's links are stale until the build runs
    monkeypatch.setattr(build, "REPOSITORY", "https://github.com/a-fork/dgm")
    assert sorted(p.name for p in build.stale_files(tmp_path)) == ["99_tiny.ipynb", "99_tiny.ipynb", "README.md"]
    assert build.main(["--root", str(tmp_path)]) == 0 and build.main(["--root", str(tmp_path), "--check"]) == 0
    student = nbformat.read(tmp_path / "lectures" / "99_tiny.ipynb", as_version=4)
    assert "https://github.com/a-fork/dgm/archive/refs/heads/main.zip" in student.cells[1].source
    assert "colab.research.google.com/github/a-fork/dgm/blob/main/lectures/99_tiny.ipynb" in \
        (tmp_path / "README.md").read_text()


def test_a_readme_without_the_colab_block_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="colab:start"):
        build.readme_with_colab_links("# A README\n", ["01_x"])


def working_tree_copy(dest: Path) -> Path:
    """The checkout as git would commit it now: tracked and untracked files, without ignored ones."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def fresh_environment(tmp_path: Path) -> Path:
    """A new venv without dgm_course that sees this one's third-party packages (torch is not reinstalled).

    Its site-packages holds a .pth naming a folder of symlinks to this environment's packages, minus the course's
    own files, its metadata and its editable-install hooks.
    """
    shared = tmp_path / "third_party"
    shared.mkdir()
    site_packages = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()))
    for entry in site_packages.iterdir():
        name = entry.name.lower().replace("-", "_")
        if name.startswith(("dgm_course", "__editable__", "__pycache__")) or name.endswith(".pth"):
            continue
        (shared / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "third_party.pth").write_text(f"{shared}\n")
    return python


def run_cell(python: Path, code: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    # offline: pip may use only what the environment has, builds the course with the setuptools it sees
    # (no isolated build environment, which would need the index) and keeps no cache
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    base.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_NO_CACHE_DIR="1",
                PIP_DISABLE_PIP_VERSION_CHECK="1", **env)
    return subprocess.run([python, "-c", code], cwd=cwd, env=base, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None, reason="needs a git checkout")
def test_the_install_cell_installs_the_course_into_a_fresh_environment(tmp_path):
    python = fresh_environment(tmp_path)
    repo = working_tree_copy(tmp_path / "repo")
    cell = first_code_cell(ROOT / "lectures" / "01_background.ipynb").source
    missing = run_cell(python, "import dgm_course", tmp_path)
    assert missing.returncode != 0 and "No module named 'dgm_course'" in missing.stderr
    assert run_cell(python, "import torch, numpy, ipywidgets", tmp_path).returncode == 0

    broken = run_cell(python, cell, tmp_path, DGM_PIP_SOURCE=str(tmp_path / "nowhere"))
    assert broken.returncode != 0
    assert f"RuntimeError: could not install the course package from {tmp_path / 'nowhere'}" in broken.stderr

    # as in a kernel: the cell, then the lecture's own imports, in one process
    after = ("import dgm_course\nfrom dgm_course import budget, toy\nfrom dgm_course.exercises import lecture01\n"
             "print(dgm_course.__file__)\nprint(toy.toy_2d('moons', 5, seed=0).shape, budget(smoke=1, standard=2, full=3))")
    installed = run_cell(python, cell + "\n" + after, tmp_path, DGM_PIP_SOURCE=str(repo), DGM_MODE="smoke")
    assert installed.returncode == 0, installed.stderr[-3000:]
    lines = installed.stdout.splitlines()
    assert lines[0] == f"installed the course package from {repo}"
    assert lines[1].startswith(str(tmp_path / "venv")), f"imported from {lines[1]}, not the fresh environment"
    assert lines[2] == "torch.Size([5, 2]) 1"

    again = run_cell(python, cell, tmp_path, DGM_PIP_SOURCE=str(tmp_path / "nowhere"))
    assert again.returncode == 0 and again.stdout == "", "with the package present the cell does nothing"
