"""Requests as columns, and the access log they become.

A family adds requests as they *start* (time, duration, who, what, answer);
outages rewrite what the backend answered; then the log is written the way a
server writes it: nginx stamps a line with the time it finished
(``$time_local``) and several workers with buffered logs interleave by up to
their flush interval; Apache stamps the time the request was received and
writes at completion, so long requests appear late.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shieldwall.detect.families._world import Rng

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
COLUMNS = ("t", "dur", "client", "method", "target", "status", "nbytes", "ref", "ua",
           "dyn", "sess", "view", "page")
_OBJ = {"client", "method", "target", "ref", "ua"}


class Rows:
    """Requests being built: Python lists for one-at-a-time adds, numpy blocks for floods."""

    def __init__(self) -> None:
        self._lists: dict[str, list[object]] = {c: [] for c in COLUMNS}
        self._blocks: list[dict[str, np.ndarray]] = []
        self._next_sess = 0
        self._next_view = 0

    def new_session(self) -> int:
        self._next_sess += 1
        return self._next_sess

    def new_view(self) -> int:
        self._next_view += 1
        return self._next_view

    def add(self, t: float, dur: float, client: str, method: str, target: str, status: int,
            nbytes: int, ref: str, ua: str, *, dyn: bool, sess: int = -1, view: int = -1,
            page: bool = False) -> None:
        L = self._lists
        L["t"].append(t)
        L["dur"].append(dur)
        L["client"].append(client)
        L["method"].append(method)
        L["target"].append(target)
        L["status"].append(status)
        L["nbytes"].append(nbytes)
        L["ref"].append(ref)
        L["ua"].append(ua)
        L["dyn"].append(dyn)
        L["sess"].append(sess)
        L["view"].append(view)
        L["page"].append(page)

    def add_block(self, t: np.ndarray, dur: np.ndarray, client: np.ndarray, method: str | np.ndarray,
                  target: np.ndarray, status: int | np.ndarray, nbytes: np.ndarray, ref: str | np.ndarray,
                  ua: np.ndarray | str, *, dyn: bool = True) -> None:
        n = len(t)

        def col(v: object, dtype: Any) -> np.ndarray:
            if isinstance(v, np.ndarray):
                return np.asarray(v, dtype=dtype)
            a: np.ndarray = np.empty(n, dtype=dtype)
            a[:] = v
            return a

        self._blocks.append({
            "t": col(t, np.float64), "dur": col(dur, np.float64), "client": col(client, object),
            "method": col(method, object), "target": col(target, object),
            "status": col(status, np.int32), "nbytes": col(nbytes, np.int64), "ref": col(ref, object),
            "ua": col(ua, object), "dyn": col(dyn, bool), "sess": col(-1, np.int64),
            "view": col(-1, np.int64), "page": col(False, bool)})

    def columns(self) -> dict[str, np.ndarray]:
        """Every request so far, as one array per column."""
        L = self._lists
        first = {c: np.array(L[c], dtype=object if c in _OBJ else None) for c in COLUMNS}
        if len(L["t"]) == 0:
            first = {c: np.array([], dtype=object if c in _OBJ else
                                 {"t": float, "dur": float, "dyn": bool, "page": bool}.get(c, np.int64))
                     for c in COLUMNS}
        blocks = [first, *self._blocks]
        return {c: np.concatenate([b[c] for b in blocks]) for c in COLUMNS}


def tz_string(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    m = abs(minutes)
    return f"{sign}{m // 60:02d}{m % 60:02d}"


@dataclass
class Style:
    """How the server writes its log."""

    server: str = "nginx"
    """``nginx``: stamped at completion; ``apache``: stamped at start, written at completion."""
    tz_minutes: int = 0
    workers: int = 4
    flush: float = 0.0
    """nginx ``access_log ... buffer= flush=``: seconds a worker may hold lines (0: unbuffered)."""
    dash_zero_bytes: bool = False
    """Apache's ``%b`` writes ``-`` for an empty body."""
    extra: dict[str, object] = field(default_factory=dict)


class Log:
    """The finished log: its lines in file order, formatted lazily in chunks."""

    def __init__(self, cols: dict[str, np.ndarray], style: Style, rng: Rng) -> None:
        t_end = cols["t"] + cols["dur"]
        n = len(t_end)
        if style.server == "apache":
            stamp = cols["t"]
            order_key = t_end + rng.uniform(0, 0.002, n)
        else:
            worker = rng.integers(0, style.workers, n)
            # each worker stamps with its own cached clock, updated once per event-loop turn:
            # with several workers, a line written later can carry the earlier second
            stamp = t_end - (rng.exponential(0.01, n) if style.workers > 1 else 0.0)
            if style.flush > 0:
                phase = rng.uniform(0, style.flush, style.workers)[worker]
                order_key = np.ceil((t_end - phase) / style.flush) * style.flush + phase + t_end * 1e-9
            else:
                order_key = t_end + rng.uniform(0, 0.003, n)
        self.order = np.argsort(order_key, kind="stable")
        self.sec = np.floor(stamp).astype(np.int64)[self.order]
        self.cols = cols
        self.style = style
        self._tz = tz_string(style.tz_minutes)

    def __len__(self) -> int:
        return len(self.order)

    def _stamp(self, sec: int) -> str:
        g = time.gmtime(sec + self.style.tz_minutes * 60)
        return (f"{g.tm_mday:02d}/{_MONTHS[g.tm_mon - 1]}/{g.tm_year}:"
                f"{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} {self._tz}")

    def __iter__(self) -> Iterator[str]:
        c = self.cols
        stamps: dict[int, str] = {}
        dash = self.style.dash_zero_bytes
        for a in range(0, len(self.order), 65536):
            idx = self.order[a:a + 65536]
            secs = self.sec[a:a + 65536].tolist()
            for i, s, client, method, target, status, nb, ref, ua in zip(
                    idx.tolist(), secs, c["client"][idx], c["method"][idx], c["target"][idx],
                    c["status"][idx].tolist(), c["nbytes"][idx].tolist(), c["ref"][idx], c["ua"][idx],
                    strict=True):
                del i
                ts = stamps.get(s)
                if ts is None:
                    ts = stamps[s] = self._stamp(s)
                req = f"{method} {target} HTTP/1.1" if method else "-"
                b = "-" if dash and nb == 0 else nb
                yield f'{client} - - [{ts}] "{req}" {status} {b} "{ref}" "{ua}"'

    def write(self, path: Path) -> Path:
        with open(path, "w", encoding="utf-8") as fh:
            buf: list[str] = []
            for line in self:
                buf.append(line)
                if len(buf) >= 65536:
                    fh.write("\n".join(buf) + "\n")
                    buf.clear()
            if buf:
                fh.write("\n".join(buf) + "\n")
        return path


def unix(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))
