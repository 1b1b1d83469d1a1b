"""The grader's code inside a student's kernel: run before any student code, it keeps the real check functions.

`install` is called once by the grader's prologue (never a notebook cell). It captures, in a closure, the check
functions, the namespaces the checks rely on (the course package, torch, numpy, builtins, ...) and IPython's
hooks, and defines `__dgm_check__(exercise, challenge)`, which the grader sends instead of each check cell.
That runner verifies that nothing captured was replaced, calls the captured check on the student's answers
(their return values converted to plain values), and signs its verdict with a key that only the prologue saw
(HMAC-SHA256 over the grader's per-check challenge). `__dgm_verdict__()` returns the signed verdict as JSON; the
grader reads it through the execute request's `user_expressions`, on the shell channel, which output floods
cannot drop. Python cannot hide the key from code in the same process that inspects frames, closures or memory:
the grader's static scan rejects such code before it runs (see `scan.py`).
"""

from __future__ import annotations

import builtins
import functools
import hmac
import importlib
import json
import math
import numbers
import operator
import sys
import threading
import time
import traceback
import types

PASSED, FAILED, ERROR, TAMPERING = "passed", "failed", "error", "tampering"
_WATCHED = ("builtins", "math", "numbers", "operator", "functools", "itertools", "torch", "torch.nn",
            "torch.nn.functional", "torch.linalg", "torch.autograd", "torch.autograd.functional", "torch.special",
            "torch.distributions", "numpy", "numpy.linalg", "scipy.stats", "scipy.special")
_HOOK_NAMES = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "transform_cell", "transform_ast",
               "user_expressions", "showtraceback", "_showtraceback", "set_custom_exc", "ex", "ev")
_MAX_MESSAGE = 4000


_VOLATILE = {"_", "__", "___", "get_ipython", "exit", "quit", "display", "input", "__doc__", "__dict__", "__weakref__"}


def _state_of(obj) -> dict:
    """The entries of a namespace that a check relies on: functions, classes, modules and descriptors.

    IPython re-binds a few builtins (`_`, `get_ipython`, ...) on every cell; those are left out.
    """
    return {k: v for k, v in vars(obj).items() if k not in _VOLATILE and (
        callable(v) or isinstance(v, types.ModuleType | property | staticmethod | classmethod) or isinstance(obj, type))}


def _plain(value, depth: int = 0):
    """`value` with subclasses of builtin, torch and numpy types turned into the base type (no lying __eq__)."""
    import numpy as np
    import torch

    cls = type(value)
    if depth > 20 or value is None or cls in (bool, int, float, complex, str, bytes, torch.Tensor, np.ndarray):
        return value
    module = getattr(cls, "__module__", "") or ""
    trusted = module.split(".")[0] in ("builtins", "torch", "numpy")
    if isinstance(value, torch.Tensor):
        return value if trusted else value.as_subclass(torch.Tensor)
    if isinstance(value, np.ndarray):
        return value if trusted else np.asarray(value).view(np.ndarray)
    if isinstance(value, bool):
        return bool.__bool__(value) if hasattr(bool, "__bool__") else bool(int.__int__(value))
    if isinstance(value, int):
        return value if trusted else int.__int__(value)
    if isinstance(value, float):
        return value if trusted else float.__float__(value)
    if isinstance(value, complex):
        return complex(float.__float__(value.real), float.__float__(value.imag))
    if isinstance(value, str):
        return value if cls is str else str.__str__(value)
    if isinstance(value, tuple | list):
        items = [_plain(v, depth + 1) for v in (tuple.__iter__(value) if isinstance(value, tuple)
                                                 else list.__iter__(value))]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in dict.items(value)}
    return value


def _plain_returns(fn):
    """`fn` with its return values converted by `_plain` and torch's global settings (default dtype, grad mode)
    restored after each call, so that a check sees the same settings throughout; classes pass as they are."""
    if not isinstance(fn, types.FunctionType):
        return fn
    import torch

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
        try:
            return _plain(fn(*args, **kwargs))
        finally:
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)

    return wrapper


class _CappedStream:
    """sys.stdout/sys.stderr for graded runs: `flush()` at most 20 times a second, at most `cap` characters a cell.

    A notebook that prints a million flushed lines would otherwise send a million messages; students never see
    these outputs, and `pytest --nbval-lax` by hand runs without this.
    """

    def __init__(self, stream, cap: int) -> None:
        self._stream, self._cap, self._used, self._last = stream, cap, 0, 0.0

    def reset(self, *_) -> None:
        self._used = 0

    def write(self, text: str) -> int:
        if self._used < self._cap:
            self._stream.write(text[:self._cap - self._used])
            self._used += len(text)
            if self._used >= self._cap:
                self._stream.write("\n[further output of this cell dropped by the grader]\n")
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        now = time.monotonic()
        if now - self._last > 0.05:
            self._last = now
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def install(key_hex: str, spec: dict[str, list], output_cap: int = 1 << 20) -> None:
    """Define `__dgm_check__` and `__dgm_verdict__` in the user namespace; `spec` maps exercise -> check call.

    Each spec entry is [module, function, [positional argument names], {keyword: argument name}].
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or "__dgm_check__" in shell.user_ns:
        raise RuntimeError("the grading guard is installed once, by the grader")
    mac = hmac.new(bytes.fromhex(key_hex), digestmod="sha256")
    del key_hex
    user_ns = shell.user_ns
    for name in ("stdout", "stderr"):
        stream = _CappedStream(getattr(sys, name), output_cap)
        setattr(sys, name, stream)
        shell.events.register("pre_run_cell", stream.reset)
    checks = {}
    for ex, (mod_name, fn_name, _, _) in spec.items():
        checks[ex] = getattr(importlib.import_module(mod_name), fn_name)
    import torch  # the exercise modules imported it; the runner resets its global settings around a check

    names = list(_WATCHED) + sorted(n for n in sys.modules if n == "dgm_course" or n.startswith("dgm_course."))
    modules = {n: sys.modules[n] for n in names if n in sys.modules}
    namespaces = [(f"module {n}", m, _state_of(m)) for n, m in modules.items()]
    functions = []  # functions and classes of the course package: their code and defaults must not change
    for n, m in modules.items():
        if not n.startswith("dgm_course"):
            continue
        for k, v in vars(m).items():
            while isinstance(v, types.FunctionType) and v.__module__ == n:  # and what a decorator wrapped
                functions.append((f"{n}.{k}", v, v.__code__, v.__defaults__, v.__kwdefaults__, v.__globals__))
                v = getattr(v, "__wrapped__", None)
            if isinstance(v, type) and v.__module__ == n:
                namespaces.append((f"class {n}.{k}", v, _state_of(v)))
    for cls in (torch.Tensor, torch.nn.Module, *type(shell).__mro__[:-1]):
        namespaces.append((f"class {cls.__module__}.{cls.__qualname__}", cls, _state_of(cls)))
    hooks = {
        "sys.excepthook": lambda: sys.excepthook, "sys.displayhook": lambda: sys.displayhook,
        "sys.settrace": sys.gettrace, "sys.setprofile": sys.getprofile,
        "threading.settrace": lambda: threading.gettrace(),
        "custom exception handler": lambda: (tuple(shell.custom_exceptions), shell.CustomTB),
        "input transformers": lambda: (tuple(shell.input_transformers_cleanup), tuple(shell.input_transformers_post),
                                       tuple(shell.input_transformer_manager.cleanup_transforms),
                                       tuple(shell.input_transformer_manager.line_transforms),
                                       tuple(shell.input_transformer_manager.token_transformers)),
        "AST transformers": lambda: tuple(shell.ast_transformers),
        "the shell's methods": lambda: tuple(k for k in _HOOK_NAMES if k in vars(shell)),
        "the user namespace": lambda: shell.user_ns is user_ns,
        "sys.modules": lambda: tuple(sys.modules.get(n) is m for n, m in modules.items()),
    }
    hook_state = {k: f() for k, f in hooks.items()}
    defaults = {"dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled()}
    verdicts: list[str] = []

    def library_wrapper(new, old) -> bool:
        """torch itself wraps a few functions lazily (torch._dynamo wraps torch.manual_seed): accept a wrapper of
        the original whose code lives in the same library."""
        code = getattr(new, "__code__", None)
        home = sys.modules.get((getattr(old, "__module__", None) or "").split(".")[0])
        root = (getattr(home, "__file__", None) or "").rsplit("/", 1)[0]
        return bool(root) and getattr(new, "__wrapped__", None) is old and code is not None and \
            code.co_filename.startswith(root + "/")

    def tampered() -> str:
        """What was changed since `install`, or ''."""
        for what, obj, state in namespaces:
            now = vars(obj)
            for k, v in state.items():
                new = now.get(k, state)
                if new is not v:
                    if library_wrapper(new, v):
                        state[k] = new
                        continue
                    return f"{what}: {k!r} was replaced or deleted"
        for name, fn, code, defaults_, kwdefaults, globals_ in functions:
            if (fn.__code__ is not code or fn.__defaults__ is not defaults_ or fn.__kwdefaults__ is not kwdefaults
                    or fn.__globals__ is not globals_):
                return f"function {name} was modified"
        for k, f in hooks.items():
            try:
                same = f() == hook_state[k]
            except Exception:  # a hook that cannot even be read was replaced
                same = False
            if not same:
                return f"{k} changed"
        return ""

    def sign(exercise: str, challenge: str, verdict: str, message: str) -> str:
        body = json.dumps([exercise, challenge, verdict, message[:_MAX_MESSAGE]])
        h = mac.copy()
        h.update(body.encode())
        return json.dumps({"body": body, "mac": h.hexdigest()})

    def call_check(exercise: str) -> tuple[str, str]:
        mod_name, fn_name, arg_names, kwarg_names = spec[exercise]
        try:
            args = [_plain_returns(user_ns[n]) for n in arg_names]
            kwargs = {k: _plain_returns(user_ns[n]) for k, n in kwarg_names.items()}
        except KeyError as e:
            return ERROR, f"NameError: {e.args[0]!r} is not defined (run the solution cell before its check)"
        saved = (torch.get_default_dtype(), torch.is_grad_enabled())
        torch.set_default_dtype(defaults["dtype"])
        torch.set_grad_enabled(defaults["grad"])
        try:
            checks[exercise](*args, **kwargs)
        except AssertionError as e:  # CheckError and plain asserts: the check says what is wrong
            return FAILED, str(e) or type(e).__name__
        except Exception as e:  # the student's code raised inside the check
            frames = traceback.format_exception(type(e), e, e.__traceback__, limit=-4)
            return ERROR, "".join(frames)
        finally:
            torch.set_default_dtype(saved[0])
            torch.set_grad_enabled(saved[1])
        return PASSED, ""

    def check(exercise: str, challenge: str) -> None:
        """Run the captured check of `exercise`; remember the signed verdict for `__dgm_verdict__`."""
        verdicts.clear()
        broken = tampered()
        if broken:
            verdict, message = TAMPERING, broken
        else:
            verdict, message = call_check(exercise)
            broken = tampered()
            if broken:
                verdict, message = TAMPERING, broken
        verdicts.append(sign(exercise, challenge, verdict, message))
        if verdict != PASSED:
            print(f"{exercise}: {verdict}\n{message}", file=sys.stderr, flush=True)

    def verdict() -> str:
        return verdicts[-1] if verdicts else ""

    user_ns["__dgm_check__"], user_ns["__dgm_verdict__"] = check, verdict


# the names below are only used to keep the imports of this module's watched namespaces loaded
_KEEP = (builtins, math, numbers, operator)
