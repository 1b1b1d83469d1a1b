"""Measured numbers quoted in the lectures' prose agree with the recorded standard-mode results.

A markdown cell that quotes a number from a run marks it with the name it is recorded under, right after it:
`91.5<!-- r:vae_test_nll -->` (invisible when rendered). `r:LECTURE/name` quotes another lecture's result and
`r:name*100` a fraction written as a percentage. The number must equal the recorded value rounded to the digits
written, so a re-run that moves the value fails here until the prose is updated.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))
MARK = re.compile(r"(-?\d[\d,]*(?:\.\d+)?)\s*(?:[%×x]|\$[^$]*\$|\*\*)?\s*<!--\s*r:([\w./-]+?)(?:\*(\d+(?:\.\d+)?))?\s*-->")


def markdown(source: Path) -> str:
    """The markdown cells of a jupytext py:percent source, comment markers removed."""
    cells = re.split(r"^# %%", source.read_text(), flags=re.M)
    text = [c for c in cells if c.startswith(" [markdown]")]
    return "\n".join(re.sub(r"^# ?", "", line) for c in text for line in c.splitlines()[1:])


def recorded(lecture: str) -> dict[str, float]:
    path = ROOT / "results" / f"{lecture}.standard.json"
    return {n["name"]: n["value"] for n in json.loads(path.read_text())["numbers"]} if path.is_file() else {}


def quotes(text: str) -> list[tuple[str, str, float]]:
    return [(m[1], m[2], float(m[3] or 1)) for m in MARK.finditer(text)]


def agrees(written: str, value: float, scale: float) -> bool:
    decimals = len(written.split(".")[1]) if "." in written else 0
    return abs(float(written.replace(",", "")) - value * scale) <= 0.5 * 10 ** -decimals * (1 + 1e-9)


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem[:2] for s in SOURCES])
def test_quoted_numbers_match_the_recorded_results(source):
    wrong = []
    for written, name, scale in quotes(markdown(source)):
        lecture, _, key = name.rpartition("/")
        values = recorded(lecture or source.stem)
        if key not in values:
            wrong.append(f"{written} quotes {name}, which results/{lecture or source.stem}.standard.json lacks")
        elif not agrees(written, values[key], scale):
            wrong.append(f"{written} quotes {name} = {values[key] * scale:.6g}")
    assert not wrong, f"{source.name}: prose contradicts the recorded results:\n  " + "\n  ".join(wrong)


def test_the_marker_is_read_as_intended():
    text = "NLL 91.5<!-- r:vae_test_nll --> nats, 98%<!-- r:acc*100 -->, 1,047<!-- r:05_x/ratio -->"
    assert quotes(text) == [("91.5", "vae_test_nll", 1.0), ("98", "acc", 100.0), ("1,047", "05_x/ratio", 1.0)]
    assert agrees("91.5", 91.479, 1) and not agrees("91.4", 91.479, 1)
    assert agrees("98", 0.9812, 100) and agrees("1,047", 1046.76, 1) and not agrees("1,046", 1046.76, 1)
