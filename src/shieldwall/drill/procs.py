"""Every process the lab starts, and the faults it injects into them.

Each process is started in its own session and remembered by PID; the lab
stops all of them (SIGCONT first, for frozen ones, then SIGTERM, then
SIGKILL) when the drill ends, fails or is interrupted. Faults act on the
same records: kill (SIGKILL), freeze (SIGSTOP), thaw (SIGCONT), restart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shieldwall.drill import netsafety


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (bind 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http(host: str, port: int, path: str = "/healthz", timeout: float = 15.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``path`` until it answers any HTTP status; raise if the process dies or time runs out."""
    netsafety.check_target(host, port)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before {host}:{port} answered")
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"{host}:{port}{path} did not answer within {timeout:g}s ({last})")


@dataclass
class Managed:
    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    frozen: bool = False
    history: list[tuple[str, int]] = field(default_factory=list)
    """(event, pid) in order: start, kill, freeze, thaw, exit."""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Lab:
    """The registry of the lab's processes; a context manager that always cleans up."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, Managed] = {}

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Managed:
        m = self.procs.get(name)
        if m is None:
            m = self.procs[name] = Managed(name, args, self.workdir / f"{name}.log", env)
        if m.alive():
            raise RuntimeError(f"{name} is already running as pid {m.pid}")
        with open(m.log, "ab") as log:
            full_env = {**os.environ, **(m.env or {})}
            m.proc = subprocess.Popen(m.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True, env=full_env)
        m.frozen = False
        m.history.append(("start", m.proc.pid))
        return m

    def python(self, name: str, *args: str, env: dict[str, str] | None = None) -> Managed:
        return self.start(name, [sys.executable, *args], env)

    def _signal(self, m: Managed, sig: signal.Signals) -> None:
        if m.proc is None or m.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(m.proc.pid, sig)

    def kill(self, name: str) -> int | None:
        """SIGKILL: the backend dies mid-request, like a machine losing power."""
        m = self.procs[name]
        pid = m.pid
        self._signal(m, signal.SIGKILL)
        if m.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=5)
        if pid is not None:
            m.history.append(("kill", pid))
        return pid

    def freeze(self, name: str) -> None:
        """SIGSTOP: the backend hangs with its sockets open (the worst kind of failure)."""
        m = self.procs[name]
        self._signal(m, signal.SIGSTOP)
        m.frozen = True
        m.history.append(("freeze", m.pid or 0))

    def thaw(self, name: str) -> None:
        m = self.procs[name]
        self._signal(m, signal.SIGCONT)
        m.frozen = False
        m.history.append(("thaw", m.pid or 0))

    def stop(self, name: str, grace: float = 3.0) -> None:
        m = self.procs[name]
        if m.proc is None:
            return
        pid = m.proc.pid
        if m.proc.poll() is not None:
            # Gone already: stop_all's SIGTERM reached it before this wait did
            # (on a loaded machine nginx often exits first). Its exit is still
            # recorded once, and what it left in its session still goes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if not m.history or m.history[-1] not in (("exit", pid), ("kill", pid)):
                m.history.append(("exit", pid))  # (a process the drill killed stays killed)
            return
        self._signal(m, signal.SIGCONT)
        self._signal(m, signal.SIGTERM)
        try:
            m.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self._signal(m, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=5)
        # anything the process left in its own session (nginx workers) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        m.history.append(("exit", pid))

    def stop_all(self, grace: float = 3.0) -> None:
        """Every process at once: all are asked to stop (SIGCONT, SIGTERM) before
        any is waited for, and they share one grace. One by one, each with its
        own grace, a lab of a dozen processes on a loaded machine took longer
        than a person pressing Ctrl-C will wait (and than the test allows)."""
        names = list(reversed(list(self.procs)))
        for name in names:
            m = self.procs[name]
            try:
                self._signal(m, signal.SIGCONT)
                self._signal(m, signal.SIGTERM)
            except Exception:  # cleanup must reach every process
                pass
        deadline = time.monotonic() + grace
        for name in names:
            try:
                self.stop(name, grace=max(0.1, deadline - time.monotonic()))
            except Exception:  # cleanup must reach every process
                pass
