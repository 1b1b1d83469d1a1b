"""A static scan of a student's solution region for code that tampers with the grading (before it ever runs).

Inside one Python process nothing can be hidden from code that inspects frames, closures, the interpreter's
hooks or memory, so the grader does not run such code: a region that reaches for them is reported as
"tampering suspected" and replaced by the reference's stub. The rules are tuned so that every reference solution
in `solutions/` passes (tests/test_grading_scan.py scans them all). Exercises compute with tensors; they never
need the file system, processes, the interpreter's internals, IPython, the course's checks, or dunder attributes.
"""

from __future__ import annotations

import ast
import re

# names that give access to the interpreter, IPython, the checks or the file system
FORBIDDEN_NAMES = {
    "get_ipython", "__builtins__", "__import__", "exec", "eval", "compile", "globals", "locals", "vars",
    "breakpoint", "open", "input", "setattr", "delattr", "memoryview", "exit", "quit", "In", "Out", "help",
    "__loader__", "__spec__", "__file__", "__name__", "sys", "os", "gc", "inspect", "ctypes", "importlib",
    "builtins", "subprocess", "shutil", "pathlib", "pickle", "marshal", "threading", "multiprocessing", "IPython",
    "ipykernel", "dgm_course", "atexit", "weakref", "runpy", "tempfile", "asyncio",
}
FORBIDDEN_NAME_PATTERNS = re.compile(r"^(lecture\d+|_+dgm.*|_i+\d*|_ii+|_oh|_ih|_dh|_\d+)$")
# attributes of frames, code, closures, modules and IPython
FORBIDDEN_ATTRS = {
    "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next", "gi_frame",
    "gi_code", "cr_frame", "cr_code", "ag_frame", "cell_contents", "co_code", "co_consts", "_getframe",
    "_current_frames", "settrace", "setprofile", "modules", "user_ns", "user_global_ns", "kernel", "shell",
    "system", "getoutput", "run_line_magic", "run_cell_magic", "set_custom_exc", "input_transformers_cleanup",
    "input_transformers_post", "ast_transformers", "excepthook", "displayhook", "environ", "fail", "CheckError",
    "check_parameter_counts", "passed", "_C", "_dynamo", "cpp_extension", "load_library", "ops", "hub",
}
ALLOWED_DUNDERS = {"__init__", "__call__", "__len__", "__iter__", "__next__", "__getitem__", "__repr__",
                   "__str__", "__post_init__", "__enter__", "__exit__", "__name__", "__doc__"}
ALLOWED_IMPORTS = {"math", "cmath", "numpy", "torch", "scipy", "itertools", "functools", "collections", "heapq",
                   "bisect", "numbers", "dataclasses", "typing", "random", "statistics", "string", "re", "time",
                   "copy", "operator", "fractions", "decimal", "enum", "sklearn", "matplotlib", "warnings"}
FORBIDDEN_IMPORT_PARTS = {"cpp_extension", "hub", "package", "multiprocessing", "distributed", "ctypeslib", "f2py",
                          "testing", "utils", "serialization", "jit", "compiler", "library", "ops"}
PLAIN_BASES = {"int", "float", "complex", "str", "bytes", "tuple", "list", "dict", "set", "frozenset", "bool",
               "type", "Tensor", "ndarray", "Parameter", "BaseException", "Exception", "AssertionError"}
SUSPICIOUS_TEXT = re.compile(r"solutions/|/proc|\.ipython|startup|grades|junit|\.pth\b|site-packages|\.pyc\b")
MODULE_NAMES = {"torch", "np", "numpy", "math", "F", "nn", "scipy", "stats", "plt", "matplotlib", "itertools",
                "functools", "random", "sklearn", "time", "warnings", "collections", "operator", "numbers"}
REBINDABLE = {"F", "stats", "random", "time", "operator", "numbers", "collections", "functools", "itertools"}
LOADERS = {"load", "loads", "fromfile", "memmap"}


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


class _Scanner(ast.NodeVisitor):
    def __init__(self, lines: range, modules: set[str]) -> None:
        self.lines, self.modules, self.found = lines, modules, []

    def visit_Module(self, node: ast.Module) -> None:
        # short aliases (`F`, `stats`) are also common variable names: bound in the region, they are variables
        bound = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
                 and getattr(n, "lineno", None) in self.lines}
        bound |= {a.arg for n in ast.walk(node) if isinstance(n, ast.arguments)
                  for a in n.posonlyargs + n.args + n.kwonlyargs if getattr(a, "lineno", None) in self.lines}
        self.modules = self.modules - (bound & REBINDABLE)
        self.generic_visit(node)

    def flag(self, node: ast.AST, why: str) -> None:
        if getattr(node, "lineno", None) in self.lines:
            self.found.append(f"line {node.lineno - self.lines.start + 1} of your solution: {why}")

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES or FORBIDDEN_NAME_PATTERNS.match(node.id):
            self.flag(node, f"uses `{node.id}`")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr in FORBIDDEN_ATTRS or FORBIDDEN_NAME_PATTERNS.match(attr) or attr in FORBIDDEN_NAMES - {"os"}:
            self.flag(node, f"uses the attribute `.{attr}`")
        elif attr.startswith("__") and attr not in ALLOWED_DUNDERS:
            self.flag(node, f"uses the attribute `.{attr}`")
        elif attr in LOADERS and isinstance(node.value, ast.Name) and node.value.id in self.modules:
            self.flag(node, f"loads data with `{node.value.id}.{attr}`")
        if isinstance(node.ctx, ast.Store | ast.Del):
            root = _root(node)
            if isinstance(root, ast.Name) and root.id in self.modules:
                self.flag(node, f"changes `{ast.unparse(node)}`, which belongs to a library")
        self.visit(node.value)  # a module's name as an attribute's base is fine (`torch.zeros`): no generic_visit

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if isinstance(node, ast.ImportFrom) and node.level:
            names = ["."]
        for name in names:
            parts = name.split(".")
            if parts[0] not in ALLOWED_IMPORTS or any(p.startswith("_") or p in FORBIDDEN_IMPORT_PARTS for p in parts):
                self.flag(node, f"imports `{name}`")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*" or alias.name.startswith("_") or alias.name in FORBIDDEN_ATTRS | LOADERS:
                    self.flag(node, f"imports `{alias.name}` from `{node.module}`")

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name in PLAIN_BASES:
                self.flag(node, f"class {node.name} subclasses `{ast.unparse(base)}`")
        if node.keywords:
            self.flag(node, f"class {node.name} sets a metaclass or class keywords")
        for item in node.body:
            names = [item.name] if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) else [
                t.id for t in getattr(item, "targets", [getattr(item, "target", None)]) if isinstance(t, ast.Name)]
            for name in names:
                if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
                    self.flag(item, f"class {node.name} defines `{name}`")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "type" and len(node.args) == 3:
            self.flag(node, "creates a class with type(name, bases, dict)")
        if isinstance(func, ast.Name) and func.id == "getattr":
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str) and not name.value.startswith("_")):
                self.flag(node, "uses getattr with a computed or private attribute name")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str | bytes) and SUSPICIOUS_TEXT.search(str(node.value)):
            self.flag(node, f"mentions {str(node.value)[:40]!r}")

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Name) and child.id in self.modules and not isinstance(node, ast.Attribute):
                self.flag(child, f"passes the module `{child.id}` around")
            self.visit(child)


def transform(source: str) -> str:
    """`source` as IPython would run it: magics and shell escapes become calls (`get_ipython().system(...)`)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def scan(cell: str, first: int, last: int, modules: set[str] | None = None) -> list[str]:
    """Reasons to suspect tampering in lines first..last (1-based, inclusive) of a cell's source; [] if none.

    Raises SyntaxError when the cell does not parse (as IPython would transform it).
    """
    tree = ast.parse(transform(cell))
    scanner = _Scanner(range(first, last + 1), MODULE_NAMES | (modules or set()))
    scanner.visit(tree)
    return list(dict.fromkeys(scanner.found))
