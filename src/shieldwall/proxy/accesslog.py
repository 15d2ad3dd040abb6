"""The access log (docs/ACCESS_LOG.md), buffered.

Lines are formatted on the request path (one f-string) and written in
batches: when 64 KiB are waiting or on the worker's periodic tick, so a
request costs no syscall. ``$time_local`` is formatted once per second.
"""

from __future__ import annotations

import os
import select
import sys
import time


def _secs(t: float) -> str:
    """``t`` (>= 0) with three decimals, as ``f"{t:.3f}"`` but without the
    format machinery (compiled, an f-string with a format spec is a
    ``str.format`` call: most of a line's cost)."""
    ms = int(t * 1000.0 + 0.5)
    frac = ms % 1000
    return str(ms // 1000) + (".00" if frac < 10 else ".0" if frac < 100 else ".") + str(frac)


def _esc(s: str) -> str:
    """nginx-style escaping of quotes, backslashes and control characters."""
    if not s:
        return "-"
    if s.isprintable() and '"' not in s and "\\" not in s:
        return s
    return "".join(
        c if c.isprintable() and c not in '"\\' and ord(c) < 127 else f"\\x{ord(c):02X}"
        for c in s
    )


class AccessLog:
    def __init__(self, target: str) -> None:
        """``target``: a file path (appended to), ``-`` for stdout, ``off``/``""`` for none."""
        self.enabled = target not in ("", "off")
        self._fd = -1
        self._own = False
        self._pipe_safe = False
        if target == "-":
            self._fd = sys.stdout.fileno()
            # Several workers may share a stdout pipe: only writes of at most
            # PIPE_BUF bytes are atomic there, so batches are cut at lines.
            self._pipe_safe = True
        elif self.enabled:
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._own = True
        self._buf: list[str] = []
        self._size = 0
        self._sec = -1
        self._stamp = ""

    def _time_local(self, t: float) -> str:
        sec = int(t)
        if sec != self._sec:
            self._sec = sec
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec))
        return self._stamp

    def write(self, client: str, start: float, method: str, target: str, version: str,
              status: int, sent: int, referer: str, agent: str, rt: float, up: str,
              ut: float, us: int, outcome: str, decision: str, cls: str,
              session: bool = False, verified: bool = False) -> None:
        if not self.enabled:
            return
        request = f"{method} {target} HTTP/{version}" if method else "-"
        referer = referer or "-"
        agent = agent or "-"
        quoted = request + referer + agent
        if '"' in quoted or "\\" in quoted or not quoted.isprintable():
            request, referer, agent = _esc(request), _esc(referer), _esc(agent)
        sec = int(start)
        stamp = self._stamp if sec == self._sec else self._time_local(start)
        line = (
            f'{client} - - [{stamp}] "{request}" {status} {sent} '
            f'"{referer}" "{agent}" rt={_secs(rt) if rt > 0.0 else "0.000"} up={up or "-"} '
            f'ut={_secs(ut) if ut >= 0 else "-"} us={str(us) if us else "-"} o={outcome or "-"} '
            f'd={decision or "-"} c={cls or "-"} s={"1" if session else "0"} '
            f'v={"1" if verified else "0"}\n'
        )
        self._buf.append(line)
        self._size += len(line)
        if self._size >= 65536:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        lines = self._buf
        self._buf = []
        self._size = 0
        batches: list[bytes] = []
        if self._pipe_safe:
            cur: list[bytes] = []
            size = 0
            for line in lines:
                b = line.encode("utf-8", "backslashreplace")
                if cur and size + len(b) > select.PIPE_BUF:
                    batches.append(b"".join(cur))
                    cur, size = [], 0
                cur.append(b)
                size += len(b)
            if cur:
                batches.append(b"".join(cur))
        else:
            batches.append("".join(lines).encode("utf-8", "backslashreplace"))
        try:
            for data in batches:
                while data:
                    n = os.write(self._fd, data)
                    data = data[n:]
        except OSError as exc:
            print(f"shieldwall: access log write failed: {exc}", file=sys.stderr)

    def close(self) -> None:
        self.flush()
        if self._own and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
