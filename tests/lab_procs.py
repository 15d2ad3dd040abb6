"""Starting test processes so that every one is stopped by its PID, also when
the test fails. A module of its own (not conftest) so test files can import
the type: several test folders have a conftest.py of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


class Procs:
    """Starts subprocesses and guarantees they are killed at teardown."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kw)  # type: ignore[call-overload]
        self._procs.append(proc)
        return proc

    def python(self, *args: str, **kw: object) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, *args], **kw)

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
