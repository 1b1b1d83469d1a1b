"""Every exercise of every lecture is tested with enough correct and wrong implementations (tests/exercise_cases.py)."""

import importlib
import re
from pathlib import Path

import pytest
from exercise_cases import MIN_CORRECT, MIN_WRONG, Exercise

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.py"))


def exercise_ids(source: Path) -> list[str]:
    return re.findall(r'^# %% [^\n]*tags=\[[^\]]*"solution:([\w.-]+)"', source.read_text(), re.M)


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem[:2] for s in SOURCES])
def test_every_exercise_has_its_implementations(source):
    module = importlib.import_module(f"test_lecture{source.stem[:2]}_checks")
    cases: dict[str, Exercise] = getattr(module, "EXERCISES", {})
    ids = exercise_ids(source)
    assert sorted(cases) == sorted(ids), f"{source.name}: exercises {ids}, tested {sorted(cases)}"
    for ex in ids:
        e = cases[ex]
        assert len(e.correct) >= MIN_CORRECT, f"{ex}: {len(e.correct)} correct implementations, need {MIN_CORRECT}"
        assert len(e.wrong) >= MIN_WRONG, f"{ex}: {len(e.wrong)} wrong implementations, need {MIN_WRONG}"
        assert len({id(i) for i in e.correct}) == len(e.correct), f"{ex}: a correct implementation is listed twice"
        check = getattr(e.check, "exercise_id", None) or getattr(getattr(e.check, "func", None), "exercise_id", None)
        assert check in (None, ex), f"{ex}: its check is decorated for {check}"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem[:2] for s in SOURCES])
def test_every_check_cell_calls_a_check_decorated_for_its_exercise(source):
    """The check named in each `check:<exercise>` cell says "[passed]", "not done yet" and catches raw errors."""
    module = importlib.import_module(f"dgm_course.exercises.lecture{source.stem[:2]}")
    cells = re.findall(r'^# %% [^\n]*tags=\[[^\]]*"check:([\w.-]+)"[^\n]*\n(.*?)(?=^# %%|\Z)', source.read_text(), re.M | re.S)
    assert cells, f"{source.name} has no check cells"
    for ex, body in cells:
        names = re.findall(rf"lecture{source.stem[:2]}\.(check_\w+)\(", body)
        assert names, f"{source.name}, check:{ex}: the cell calls no lecture{source.stem[:2]}.check_* function"
        for name in names:
            assert getattr(getattr(module, name), "exercise_id", None) == ex, \
                f"{source.name}: {name} is not decorated with checks.exercise({ex!r}, ...)"
