"""The implementations that every exercise's check is tested with, and the tests generated from them.

Each `tests/test_lectureNN_checks.py` declares

    EXERCISES = {
        "ex1_reparameterize": Exercise(
            check=lecture05.check_reparameterize,           # called as check(implementation)
            correct=[reparameterize, reparameterize_loop, reparameterize_float64],
            wrong=[Wrong(reparameterize_std_is_var, "not standard normal", "property"), ...],
        ),
    }
    test_accepts_correct, test_rejects_wrong, test_says_not_done = exercise_tests(EXERCISES)

`tests/test_exercise_coverage.py` then asserts that every exercise of every lecture is there, with at least
MIN_CORRECT correct implementations written differently from the reference and MIN_WRONG wrong ones.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from dgm_course.checks import CheckError, NotDoneError

MIN_CORRECT, MIN_WRONG = 3, 6
#: the failure classes of the audit; each Wrong names the one it belongs to
CLASSES = ("formula", "precision", "shape", "property", "stability", "lie", "raw", "randomness", "edge")
#: CPU seconds a check may take on a correct answer (the issue's bound is 5 s of wall time on 2 idle cores)
MAX_CPU_SECONDS = 5.0


@dataclass(frozen=True)
class Wrong:
    """A wrong implementation, the regex its CheckError message must match, and its failure class."""

    impl: object
    match: str
    kind: str = "formula"

    def __post_init__(self):
        if self.kind not in CLASSES:
            raise ValueError(f"kind must be one of {CLASSES}; got {self.kind!r}")


@dataclass
class Exercise:
    """One exercise: its check (called with one implementation) and the implementations it is tested with.

    `stub` is what the student notebook's untouched solution cell gives the check (by default a function that
    raises the stub's NotImplementedError); None where the check takes no function.
    """

    check: Callable[[object], None]
    correct: list = field(default_factory=list)
    wrong: list[Wrong] = field(default_factory=list)
    stub: object = "function"


class SubclassTensor(torch.Tensor):
    """A tensor subclass: whatever it holds, a check must refuse it (it could fake its comparisons)."""


class LyingTensor(torch.Tensor):
    """A tensor subclass whose comparisons always say True."""

    def __eq__(self, other):
        return True

    __hash__ = torch.Tensor.__hash__


def lie(t: torch.Tensor) -> LyingTensor:
    """`t` as a LyingTensor: a wrong answer of the "lie" class."""
    return t.as_subclass(LyingTensor)


class AlwaysEqual:
    """Not a tensor at all, but equal to everything: a wrong answer of the "lie" class."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = None


def stub_function(exercise_id: str) -> Callable:
    def stub(*args, **kwargs):
        raise NotImplementedError(f"{exercise_id}: replace this line with your solution")
    return stub


def _name(impl) -> str:
    return getattr(impl, "__name__", type(impl).__name__)


def _random_states():
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy(), torch.get_default_dtype()


def exercise_tests(exercises: dict[str, Exercise]):
    """Three parametrized tests over `exercises`: every correct implementation passes (within MAX_CPU_SECONDS,
    leaving the random states and the default dtype as they were), every wrong one fails with its message,
    and the untouched stub says that the exercise is not done yet."""
    correct = [pytest.param(ex, impl, id=f"{ex}-{_name(impl)}") for ex, e in exercises.items() for impl in e.correct]
    wrong = [pytest.param(ex, w, id=f"{ex}-{_name(w.impl)}") for ex, e in exercises.items() for w in e.wrong]
    stubs = [pytest.param(ex, id=ex) for ex, e in exercises.items() if e.stub is not None]

    @pytest.mark.parametrize("exercise, impl", correct)
    def test_accepts_correct(exercise, impl, capsys):
        torch.manual_seed(1234)
        before = _random_states()
        start = time.process_time()
        exercises[exercise].check(impl)
        cpu = time.process_time() - start
        after = _random_states()
        assert "[passed]" in capsys.readouterr().out
        assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
        assert before[3] == after[3]
        assert cpu < MAX_CPU_SECONDS, f"the check took {cpu:.1f} s of CPU on a correct answer"

    @pytest.mark.parametrize("exercise, wrong", wrong)
    def test_rejects_wrong(exercise, wrong):
        with pytest.raises(CheckError, match=wrong.match) as info:
            exercises[exercise].check(wrong.impl)
        assert not isinstance(info.value, NotDoneError)

    @pytest.mark.parametrize("exercise", stubs)
    def test_says_not_done(exercise):
        e = exercises[exercise]
        with pytest.raises(NotDoneError, match=f"{exercise} is not done yet"):
            e.check(stub_function(exercise) if e.stub == "function" else e.stub)

    return test_accepts_correct, test_rejects_wrong, test_says_not_done
