"""environment.yml (conda) and pyproject.toml (pip) must name the same packages with the same bounds."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def parse(spec: str) -> tuple[str, str]:
    name, bound = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", spec).groups()
    return name.lower().replace("_", "-"), bound.replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    wanted = dict(parse(s) for s in pip_specs)
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip_section = next(d["pip"] for d in conda if isinstance(d, dict))
    have = dict(parse(s) for s in conda if isinstance(s, str) and not s.startswith(("python", "pip")))
    have.update(parse(s) for s in pip_section)
    # torch: a range in pyproject (so an installed 2.13.0 satisfies it), pinned in the environment
    assert wanted.pop("torch") == ">=2.2" and have.pop("torch") == "==2.13.0"
    assert have == wanted


def test_readme_and_ci_pin_the_same_torch():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "torch==2.13.0" in readme and "torch==2.13.0" in ci


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"\*\*Run the whole test suite\*\*.*?```bash\n(.+?)\n```", readme, re.S).group(1)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
