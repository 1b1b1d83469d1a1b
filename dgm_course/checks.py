"""Property checks behind the exercises: each passes for every correct implementation and says why a wrong one fails.

A failed check raises `CheckError` (an AssertionError, so nbval and pytest count it as a failure) whose message
gives what was expected, what was found, and a hint; it never shows the solution.
"""

from __future__ import annotations

import functools
import math
import random
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import stats

#: what a student stub raises (see `dgm_course.build`): NotImplementedError("<exercise>: replace this line ...")
STUB_TEXT = "replace this line with your solution"
_PACKAGE = str(Path(__file__).resolve().parent)


class CheckError(AssertionError):
    """An exercise check failed. In Jupyter it shows as its message alone, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython's hook: the lines shown instead of a traceback
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class NotDoneError(CheckError):
    """The exercise still holds its stub."""


def _excepthook(etype, value, tb, previous=sys.excepthook):
    """Plain Python (a solution run as a script): a failed check prints its message, not the checker's frames."""
    if isinstance(value, CheckError):
        print(f"{etype.__name__}: {value}", file=sys.stderr)
    else:
        previous(etype, value, tb)


if sys.excepthook is sys.__excepthook__:  # leave any hook someone else installed (IPython's, a debugger's) alone
    sys.excepthook = _excepthook


def fail(what: str, expected: str, found: str, hint: str = "") -> None:
    """Raise a CheckError with the course's message layout."""
    message = f"{what}\n  expected: {expected}\n  found:    {found}"
    if hint:
        message += f"\n  hint:     {hint}"
    raise CheckError(message)


def passed(exercise: str) -> None:
    """Print the line a student sees when an exercise passes."""
    print(f"[passed] {exercise}")


def _student_frame(tb) -> str:
    """'line N of your code: <source>' for the innermost traceback frame outside the package and torch."""
    frames = [f for f in traceback.extract_tb(tb)
              if not f.filename.startswith(_PACKAGE) and f"{Path('torch')}{Path('/')}" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"line {f.lineno} of your code" + (f": {f.line.strip()}" if f.line else "")


def exercise(exercise_id: str, title: str) -> Callable[[Callable], Callable]:
    """Decorate a check: it says "[passed] <title>" when it passes, "<exercise_id> is not done yet" on a stub,
    turns any other error raised while checking into a CheckError, and leaves the caller's random states, default
    dtype and thread count as they were (the check runs in float32 by default, on its own seeds, on one thread)."""
    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(*args, **kwargs) -> None:
            py_state, np_state, dtype = random.getstate(), np.random.get_state(), torch.get_default_dtype()
            threads = torch.get_num_threads()
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.set_default_dtype(torch.float32)
                    torch.set_num_threads(1)  # small problems: a second thread only waits (and is 10x slower on a busy machine)
                    check(*args, **kwargs)
            except CheckError:
                raise
            except NotImplementedError as e:
                if STUB_TEXT in str(e):
                    raise NotDoneError(f"{exercise_id} is not done yet: replace the stub in its solution cell "
                                       "with your code, run that cell, then this one") from None
                _raised(title, e)
            except Exception as e:  # a wrong answer must reach the student as a CheckError, not a bare error
                _raised(title, e)
            finally:
                torch.set_num_threads(threads)
                random.setstate(py_state)
                np.random.set_state(np_state)
                torch.set_default_dtype(dtype)
            passed(title)

        run.exercise_id = exercise_id
        return run
    return decorate


def _raised(title: str, e: Exception) -> None:
    where = _student_frame(e.__traceback__)
    message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    fail(f"{title}: checking your answer raised {type(e).__name__}",
         "code that runs on the inputs the statement describes (shapes and dtypes as stated)",
         f"{type(e).__name__}: {message}" + (f" ({where})" if where else ""),
         "read the error above; it usually names the shapes or types that do not fit")


def plain(name: str, value, differentiable: bool = False) -> torch.Tensor:
    """`value` as a plain torch.Tensor (numbers and numpy arrays converted), so that comparisons cannot be
    fooled by a subclass or an object with its own `__eq__`. Detached unless `differentiable`."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            fail(f"{name} has the wrong type", "a plain torch.Tensor",
                 f"{type(value).__name__} (a subclass of torch.Tensor)", "return the tensor you computed")
        with torch._C.DisableTorchFunctionSubclass():
            out = torch.Tensor.as_subclass(value, torch.Tensor)
        return out if differentiable else out.detach()
    if type(value) in (bool, int, float) or type(value) is np.ndarray or isinstance(value, np.number):
        return torch.as_tensor(np.asarray(value))
    fail(f"{name} has the wrong type", "a torch.Tensor (or a number)", type(value).__name__)


def tolerance(dtype: torch.dtype, scale: float = 1.0) -> tuple[float, float]:
    """(atol, rtol) for comparing work done in `dtype` with a float64 reference: about 1e-5 relative in float32
    and 1e-10 in float64, times `scale` for operations that accumulate rounding (long sums, exp of large values)."""
    if dtype in (torch.float16, torch.bfloat16):
        base = 1e-2
    elif dtype == torch.float64:
        base = 1e-10
    else:  # float32 and integer results computed through float32
        base = 1e-5
    return base * scale, 10 * base * scale


def _digits_to_differ(a: float, b: float) -> int:
    """The number of significant digits at which `a` and `b` print differently (at least 6, at most 17)."""
    for digits in range(6, 18):
        if f"{a:.{digits}g}" != f"{b:.{digits}g}":
            return digits
    return 17


def _fmt(value, digits: int = 6) -> str:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return f"{value.item():.{digits}g}" if value.numel() == 1 else f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return repr(value)


def check_tensor(name: str, value, shape: Sequence[int | None] | None = None, dtype: torch.dtype | None = None,
                 finite: bool = True) -> torch.Tensor:
    """Check that `value` is a tensor of the given shape (None = any size) and dtype, without NaN/inf."""
    if not isinstance(value, torch.Tensor):
        fail(f"{name} has the wrong type", "a torch.Tensor", type(value).__name__)
    if shape is not None and (value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape, strict=False))):
        pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        fail(f"{name} has the wrong shape", pretty, f"{tuple(value.shape)}", "check which dimensions you reduce over")
    if dtype is not None and value.dtype != dtype:
        fail(f"{name} has the wrong dtype", str(dtype), str(value.dtype))
    if finite and torch.is_floating_point(value) and not torch.isfinite(value).all():
        fail(f"{name} contains NaN or inf", "finite values", "non-finite entries", "look for log(0) or a division by zero")
    return value


def check_scalar(what: str, out, hint: str = "", nonfinite_hint: str = "") -> torch.Tensor:
    """`out` as a 0-d tensor, after failing with what was found unless it is one finite number."""
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        got = f"tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        fail(f"{what} returns the wrong thing", "one number (a scalar tensor)", got, hint)
    if not torch.isfinite(out).all():
        fail(f"{what} is not finite", "a finite number", f"{out.item()}", nonfinite_hint or hint)
    return out.reshape(())


def check_close(name: str, found, expected, atol: float | None = None, rtol: float | None = None,
                hint: str = "") -> None:
    """Check found ≈ expected elementwise (tensors, arrays or numbers). Tolerances default to `tolerance` of
    found's dtype (float32 work is not held to float64 precision)."""
    found = plain(name, found)
    default_atol, default_rtol = tolerance(found.dtype if torch.is_floating_point(found) else torch.float32)
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    f = found.cpu().double()
    e = expected.detach().cpu().double() if isinstance(expected, torch.Tensor) else \
        torch.as_tensor(np.asarray(expected, dtype=np.float64))  # Python floats stay float64
    if f.shape != e.shape:
        fail(f"{name} has the wrong shape", str(tuple(e.shape)), str(tuple(f.shape)), hint)
    if not torch.isfinite(f).all() and not torch.equal(torch.isfinite(f), torch.isfinite(e)):
        fail(f"{name} contains NaN or inf", "finite values", "non-finite entries", hint)
    if not torch.allclose(f, e, atol=atol, rtol=rtol, equal_nan=True):
        worst = (f - e).abs().nan_to_num(math.inf).argmax()
        ew, fw = float(e.reshape(-1)[worst]), float(f.reshape(-1)[worst])
        digits = _digits_to_differ(ew, fw)
        fail(f"{name} is not close enough (atol={atol:g}, rtol={rtol:g})",
             _fmt(ew, digits) + ("" if e.numel() == 1 else f" (at flat index {int(worst)})"),
             _fmt(fw, digits), hint)


def dependency_matrix(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Boolean (D_out, D) matrix: entry [i, j] is True when output variable i depends on input j at the point x.

    x is one point (D,); f maps a batch (1, D) to (1, D_out) or (1, D_out, K) (K values per output variable).
    Masked-out connections give exact zeros in the autograd Jacobian, so the test is `!= 0`.
    """
    x = x.detach().reshape(1, -1).float()
    d_out = f(x).shape[1]
    jac = torch.autograd.functional.jacobian(lambda v: f(v).reshape(d_out, -1), x)  # (D_out, K, 1, D)
    return jac.abs().sum(dim=(1, 2)) > 0


def check_autoregressive(f: Callable[[torch.Tensor], torch.Tensor], dim: int, order: Sequence[int] | None = None,
                         require_all: bool = False, seed: int = 0, name: str = "the model") -> None:
    """Check that output i depends only on inputs that come strictly before i in `order` (default 0, 1, ..., dim-1).

    With `require_all`, output i must also depend on every earlier input (no connection lost).
    f maps (B, dim) to (B, dim) or (B, dim, K); it is evaluated at a random point.
    """
    order = list(range(dim)) if order is None else list(order)
    if sorted(order) != list(range(dim)):
        raise ValueError(f"order must be a permutation of 0..{dim - 1}; got {order}")
    x = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    with torch.enable_grad():
        deps = dependency_matrix(f, x)
    if deps.shape != (dim, dim):
        fail(f"{name} has the wrong output size", f"{dim} outputs, one per input", f"{deps.shape[0]}")
    rank = torch.empty(dim, dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(dim)
    allowed = rank[None, :] < rank[:, None]  # [i, j]: j comes before i
    bad = deps & ~allowed
    if bad.any():
        i, j = (int(v) for v in bad.nonzero()[0])
        what = "itself" if i == j else f"input {j}, which comes after it in the ordering"
        fail(f"{name} is not autoregressive", f"output {i} depends only on inputs before it",
             f"output {i} depends on {what} ({int(bad.sum())} forbidden dependencies in all)",
             "check the mask offset: a variable must never see itself or later variables")
    if require_all:
        missing = allowed & ~deps
        if missing.any():
            i, j = (int(v) for v in missing.nonzero()[0])
            fail(f"{name} drops connections", f"output {i} depends on every earlier input",
                 f"it ignores input {j} ({int(missing.sum())} missing dependencies in all)",
                 "the mask may be shifted one step too far")


def _unpack(out):
    if isinstance(out, tuple) and len(out) == 2:
        return out
    return out, None


def check_invertible(forward: Callable, inverse: Callable, x: torch.Tensor, atol: float = 1e-5,
                     name: str = "the flow") -> None:
    """Check inverse(forward(x)) ≈ x; forward and inverse may return y or (y, log_det)."""
    with torch.no_grad():
        y, _ = _unpack(forward(x))
        check_tensor(f"{name}'s output", y, shape=tuple(x.shape))
        x_back, _ = _unpack(inverse(y))
        check_tensor(f"{name}'s inverse output", x_back, shape=tuple(x.shape))
    err = (x_back - x).abs().max().item()
    if not err <= atol:
        fail(f"{name}'s inverse does not undo its forward pass", f"max |f^-1(f(x)) - x| <= {atol:g}", f"{err:.3g}",
             "apply the inverse operations in reverse order, each one undone exactly")


def check_log_det(forward: Callable, x: torch.Tensor, atol: float = 1e-4, name: str = "the flow") -> None:
    """Check the per-sample log_det of forward(x) -> (y, log_det) against slogdet of the autograd Jacobian.

    The Jacobian is taken in x's dtype: pass float64 x (and a float64 module) for a tight tolerance.
    """
    x = x.detach()
    if x.ndim != 2:
        raise ValueError(f"check_log_det expects x of shape (B, D); got {tuple(x.shape)}")
    y, log_det = _unpack(forward(x))
    if log_det is None:
        fail(f"{name} returns no log-determinant", "a pair (y, log_det)", type(forward(x)).__name__)
    check_tensor(f"{name}'s log_det", log_det, shape=(x.shape[0],))
    for b in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: _unpack(forward(v[None]))[0][0], x[b])
        sign, true = torch.linalg.slogdet(jac)
        if abs(float(log_det[b]) - float(true)) > atol:
            fail(f"{name}'s log_det is wrong for sample {b}", f"log|det J| = {float(true):.6g} (from autograd)",
                 f"{float(log_det[b]):.6g}", "sum the log of the absolute diagonal terms; did you drop a term or a sign?")


def check_normalized(log_prob: Callable[[torch.Tensor], torch.Tensor], lo: float, hi: float, dim: int = 1,
                     n: int = 2001, atol: float = 1e-2, name: str = "the density") -> None:
    """Check that exp(log_prob) integrates to 1 over [lo, hi]^dim (dim 1 or 2), by the trapezoidal rule."""
    if dim not in (1, 2):
        raise ValueError(f"check_normalized integrates in 1 or 2 dimensions; got dim={dim}")
    n = n if dim == 1 else min(n, 401)
    axis = torch.linspace(lo, hi, n, dtype=torch.float64)
    pts = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        values = log_prob(pts.float() if dim == 2 else pts.float().squeeze(1))
    check_tensor(f"{name} (log-density values)", values, shape=(len(pts),))
    p = values.double().exp().reshape((n,) if dim == 1 else (n, n))
    total = torch.trapezoid(p, axis) if dim == 1 else torch.trapezoid(torch.trapezoid(p, axis), axis)
    if abs(float(total) - 1) > atol:
        fail(f"{name} does not integrate to 1", "1.0", f"{float(total):.4f}",
             "a missing normalizing constant or Jacobian factor changes the total mass")


def check_sampler(sample: Callable[[int, torch.Generator], torch.Tensor], probs: torch.Tensor, n: int = 20000,
                  seed: int = 0, alpha: float = 1e-3, name: str = "the sampler") -> None:
    """Chi-square test at a fixed seed that `sample(n, generator)` (int outcomes in 0..K-1) follows `probs` (K,)."""
    probs = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
    k = len(probs)
    draws = sample(n, torch.Generator().manual_seed(seed))
    check_tensor(f"{name}'s output", draws, shape=(n,))
    if torch.is_floating_point(draws) or draws.min() < 0 or draws.max() >= k:
        fail(f"{name} returns values out of range", f"integers in 0..{k - 1}",
             f"{draws.dtype} values from {_fmt(draws.min())} to {_fmt(draws.max())}")
    counts = torch.bincount(draws.long().cpu(), minlength=k).double()
    keep = probs > 0
    if counts[~keep].sum() > 0:
        i = int((counts * (~keep)).argmax())
        fail(f"{name} produces an impossible outcome", f"outcome {i} never (probability 0)",
             f"{int(counts[i])} times out of {n}")
    expected = probs[keep] * n
    chi2, p_value = stats.chisquare(counts[keep].numpy(), (expected / expected.sum() * counts[keep].sum()).numpy())
    if p_value < alpha:
        worst = int(((counts[keep] - expected).abs() / expected.sqrt()).argmax())
        idx = int(torch.arange(k)[keep][worst])
        fail(f"{name} does not follow the target distribution (chi-square p = {p_value:.2g} < {alpha:g})",
             f"outcome {idx} about {float(expected[worst]):.0f} times in {n}", f"{int(counts[idx])} times",
             "check that each variable is drawn from its conditional given the values already drawn")


def check_sum_to_one(name: str, probs: torch.Tensor, dim: int = -1, atol: float = 1e-5) -> None:
    """Check that probabilities are non-negative and sum to 1 along `dim`."""
    check_tensor(name, probs)
    if (probs < -atol).any():
        fail(f"{name} has negative entries", "probabilities >= 0", f"minimum {_fmt(probs.min())}")
    sums = probs.sum(dim)
    err = (sums - 1).abs().max().item()
    if err > atol:
        fail(f"{name} does not sum to 1 along dim {dim}", "sums of 1", f"sums from {sums.min().item():.4g} to {sums.max().item():.4g}",
             "normalize over the right axis")

