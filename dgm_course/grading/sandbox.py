"""One sandboxed IPython kernel per submission: bubblewrap, a memory limit, and a client that survives floods.

The kernel runs under `prlimit --as` (its address space) inside `bwrap`: new user, pid, network, IPC, UTS and
cgroup namespaces, all capabilities dropped, `--die-with-parent`, `--new-session`, a cleared environment, an empty
writable HOME and working folder of its own, a tmpfs /tmp, and read-only binds of Python, the virtual
environment, the course package and the data folder, nothing else (no `solutions/`, no other submission, no
grades). It talks to the grader over unix sockets (`ipc` transport) in a folder bound into the sandbox. Killing
bwrap ends the pid namespace, so every process the submission started dies with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import zmq
from jupyter_client import BlockingKernelClient
from jupyter_client.connect import write_connection_file

MAX_MESSAGE = 32 << 20  # bytes: a larger message from the kernel closes its connection
OUTPUT_CAP = 64 << 10  # characters of output kept per cell
MEMORY_WORDS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc",
                "out of memory")
MARKER = "DGM_GRADER_SUBMISSION"  # in every sandboxed process's command line, for the tests


class SandboxError(RuntimeError):
    """The sandbox could not be set up (bubblewrap missing or refusing)."""


def bwrap_path() -> str | None:
    """The bubblewrap executable, or None."""
    return shutil.which("bwrap")


def _system_binds() -> list[str]:
    args = []
    for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/fonts", "/etc/localtime",
              "/etc/alternatives", "/etc/ssl/certs"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def python_binds() -> list[str]:
    """Read-only binds for this Python, its virtual environment and the course package."""
    import dgm_course

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent,
             Path(dgm_course.__file__).resolve().parent}
    return [a for p in sorted(paths, key=lambda p: len(p.parts)) if p.exists()
            for a in ("--ro-bind", str(p), str(p)) if not str(p).startswith(("/usr/", "/bin"))]


_USERNS: bool | None = None


def user_namespace_ok() -> bool:
    """Whether bwrap may create a user namespace here (then the kernel runs as uid 1000, without privileges)."""
    global _USERNS
    if _USERNS is None:
        cmd = [bwrap_path() or "bwrap", *_system_binds(), "--unshare-user", "--uid", "1000", "--gid", "1000",
               "--", "/bin/true"]
        _USERNS = subprocess.run(cmd, capture_output=True).returncode == 0
    return _USERNS


@dataclass
class Result:
    """What one cell did: status ok / error / timeout / dead / wall, its error and its (capped) output."""

    status: str
    ename: str = ""
    evalue: str = ""
    traceback: str = ""
    output: str = ""
    expressions: dict = field(default_factory=dict)

    @property
    def memory(self) -> bool:
        return any(w in f"{self.ename} {self.evalue}" for w in MEMORY_WORDS)


class Kernel:
    """A sandboxed kernel for one submission; use as a context manager, everything it started dies on exit."""

    def __init__(self, env: dict[str, str], data_dir: str | None, memory: int, deadline: float,
                 sandbox: bool = True, threads: int = 1, stop=None) -> None:
        self.deadline, self.sandbox, self.stop = deadline, sandbox, stop
        self.base = Path(tempfile.mkdtemp(prefix="dgm-grade-"))
        for d in ("work", "home", "ipc"):
            (self.base / d).mkdir()
        self.conn, _ = write_connection_file(str(self.base / "ipc" / "kernel.json"), transport="ipc",
                                             ip=str(self.base / "ipc" / "k"))
        home = "/home/student" if sandbox else str(self.base / "home")
        work = "/submission" if sandbox else str(self.base / "work")
        n = str(threads)
        self.env = {"HOME": home, "USER": "student", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1",
                    "PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "TQDM_DISABLE": "1", "MPLBACKEND": "agg",
                    "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1", MARKER: "1", **env}
        if data_dir:
            self.env["DGM_DATA_DIR"] = data_dir
        python = [f"{sys.prefix}/bin/python", "-m", "ipykernel_launcher", "-f", self.conn, "--HistoryManager.enabled=False"]
        if sandbox:
            # the tmpfs first: binds are applied in order, so a venv, checkout or data folder under /tmp (a CI
            # clone) stays visible on top of it
            cmd = ["bwrap", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", *_system_binds(), *python_binds()]
            if data_dir:
                cmd += ["--ro-bind", data_dir, data_dir]
            cmd += ["--bind", str(self.base / "ipc"), str(self.base / "ipc"),
                    "--bind", str(self.base / "home"), home, "--bind", str(self.base / "work"), work,
                    "--chdir", work, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                    "--clearenv"]
            if user_namespace_ok():
                cmd += ["--unshare-user", "--uid", "1000", "--gid", "1000"]
            for k, v in self.env.items():
                cmd += ["--setenv", k, v]
            cmd += ["--", *python]
            popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:
            cmd, popen_env = python, {**{k: v for k, v in os.environ.items() if not k.startswith("DGM_")}, **self.env}
        self.cmd = ["prlimit", f"--as={memory}", "--", *cmd] if memory and shutil.which("prlimit") else cmd
        self.work = self.base / "work"
        self.stderr = open(self.base / "kernel.log", "wb")  # noqa: SIM115 -- closed in __exit__
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr,
                                     cwd=self.base / "work", env=popen_env, start_new_session=True)
        ctx = zmq.Context()
        ctx.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.ctx = ctx
        self.kc = BlockingKernelClient(connection_file=self.conn, context=ctx)
        self.kc.load_connection_file()
        self.kc.start_channels()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        self.stderr.flush()
        with contextlib.suppress(OSError):
            return (self.base / "kernel.log").read_bytes()[-n:].decode(errors="replace")
        return ""

    def wait_ready(self, timeout: float) -> bool:
        end = min(time.monotonic() + timeout, self.deadline)
        while time.monotonic() < end and self.alive():
            with contextlib.suppress(RuntimeError, zmq.ZMQError):
                self.kc.wait_for_ready(timeout=min(5.0, max(0.1, end - time.monotonic())))
                return True
        return False

    def interrupt(self) -> None:
        """SIGINT to the kernel process inside the sandbox (its pid outside the pid namespace)."""
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                if p.cmdline()[1:3] == ["-m", "ipykernel_launcher"]:  # not bwrap, whose arguments name it too
                    p.send_signal(signal.SIGINT)
                    return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.ctx.destroy(linger=0)
        self.stderr.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def _recv(self, sock: zmq.Socket) -> tuple[dict, dict, bytes]:
        """header, parent header and raw content of one message (signatures are not worth checking: the kernel
        holds the key; verdicts carry their own)."""
        frames = sock.recv_multipart()
        i = frames.index(b"<IDS|MSG>")
        return json.loads(frames[i + 2]), json.loads(frames[i + 3]), frames[i + 5]

    def execute(self, code: str, timeout: float, user_expressions: dict | None = None, silent: bool = False,
                store_history: bool = True) -> Result:
        """Run `code`; past `timeout` (or the submission's deadline) interrupt it, then kill the kernel."""
        if not self.alive():
            return Result("dead")
        msg_id = self.kc.execute(code, silent=silent, store_history=store_history,
                                 user_expressions=user_expressions or {}, allow_stdin=False, stop_on_error=False)
        shell, iopub = self.kc.shell_channel.socket, self.kc.iopub_channel.socket
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        out: list[str] = []
        size = 0
        reply = None
        interrupted_at = None
        cell_end = time.monotonic() + timeout
        idle = False
        drain_end = None
        while True:
            now = time.monotonic()
            if reply is not None and (idle or now > drain_end):
                break
            if now > self.deadline or (self.stop is not None and self.stop.is_set()):
                self.kill()
                return Result("wall", output="".join(out))
            if reply is None and now > cell_end:
                if interrupted_at is None:
                    self.interrupt()
                    interrupted_at = now
                elif now - interrupted_at > 5:
                    self.kill()
                    return Result("timeout", output="".join(out))
            if reply is None and not self.alive():
                return Result("dead", output="".join(out))
            events = dict(poller.poll(200))
            if shell in events:
                header, parent, content = self._recv(shell)
                if parent.get("msg_id") == msg_id and header.get("msg_type") == "execute_reply":
                    reply = json.loads(content)
                    drain_end = time.monotonic() + 2
            if iopub in events:
                for _ in range(1000):  # a batch at a time, so a flood cannot starve the shell channel
                    try:
                        frames = iopub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    i = frames.index(b"<IDS|MSG>")
                    if json.loads(frames[i + 3]).get("msg_id") != msg_id:
                        continue
                    kind = json.loads(frames[i + 2]).get("msg_type")
                    if kind == "status" and b'"idle"' in frames[i + 5]:
                        idle = True
                    elif kind in ("stream", "error") and size < OUTPUT_CAP:
                        c = json.loads(frames[i + 5])
                        text = c.get("text") or f"{c.get('ename')}: {c.get('evalue')}\n"
                        out.append(text[:OUTPUT_CAP - size])
                        size += len(out[-1])
        output = "".join(out) + ("\n[output truncated by the grader]\n" if size >= OUTPUT_CAP else "")
        if interrupted_at is not None:
            return Result("timeout", output=output)
        status = reply.get("status", "error")
        return Result("ok" if status == "ok" else "error", str(reply.get("ename", ""))[:200],
                      str(reply.get("evalue", ""))[:2000], "\n".join(map(str, reply.get("traceback", [])))[-4000:],
                      output, reply.get("user_expressions") or {})


def survivors(marker: str = MARKER) -> list[psutil.Process]:
    """Processes still running with the submission marker in their environment (none once grading is over)."""
    found = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if p.pid != os.getpid() and marker in (p.environ() or {}):
                found.append(p)
    return found
