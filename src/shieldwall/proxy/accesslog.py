"""The access log (docs/ACCESS_LOG.md), buffered.

Lines are formatted on the request path (one f-string) and written in
batches: when 64 KiB are waiting or on the worker's periodic tick, so a
request costs no syscall. ``$time_local`` is formatted once per second.

Written to stdout (``-``), the log goes to a pipe or a terminal that someone
else reads (journald, a container runtime, ``| tee``). When that reader
stops, a blocking write would stop the whole worker, and the shop with it:
so a pipe is written only while it has room (``poll``), lines wait in a
bounded backlog, and past :data:`MAX_BACKLOG` bytes they are dropped and
counted, with one line on stderr. Losing log lines beats losing shoppers.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import Final

MAX_BACKLOG = 4 * 1024 * 1024
"""Bytes of access-log lines kept while stdout is not being read."""


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


_MS: Final = tuple(_secs(ms / 1000.0) for ms in range(256))
"""``_secs`` of whole milliseconds (uvloop's clock counts in them): made once."""


def _plain(s: str) -> bool:
    """Nothing in ``s`` to escape (see :func:`_esc`)."""
    return s.isprintable() and '"' not in s and "\\" not in s


def is_plain(s: str) -> bool:
    """Nothing in ``s`` the log would escape (for callers that remember it)."""
    return _plain(s)


class AccessLog:
    def __init__(self, target: str, stdout_fd: int = -1, max_backlog: int = MAX_BACKLOG) -> None:
        """``target``: a file path (appended to), ``-`` for stdout (or ``stdout_fd``),
        ``off``/``""`` for none."""
        self.enabled = target not in ("", "off")
        self._fd = -1
        self._own = False
        self._pipe_safe = False
        if target == "-":
            self._fd = stdout_fd if stdout_fd >= 0 else sys.stdout.fileno()
            self._pipe_safe = True
        elif self.enabled:
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._own = True
        self._buf: list[str] = []
        self._size = 0
        self._backlog: list[bytes] = []
        self._backlog_size = 0
        self.max_backlog = max_backlog
        self.dropped = 0
        """Lines dropped because stdout was not read (a metric and a warning)."""
        self._poll: select.poll | None = None
        if self._pipe_safe:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLOUT)
        self._sec = -1
        self._stamp = ""
        # write()'s parts of the line before, reused while their fields match
        self._m_target = self._m_agent = self._m_referer = self._m_method = "\0"
        self._m_version = ""
        self._m_quoted = self._m_quoted_end = ""
        self._m_status = self._m_sent = self._m_us = -1
        self._m_ss = ""
        self._m_outcome = self._m_decision = self._m_cls = "\0"
        self._m_session = self._m_verified = False
        self._m_tail = ""
        self._m_client = "\0"
        self._m_sec = -1
        self._m_head = ""
        self._tails: dict[tuple[str, str, str, bool, bool], str] = {}
        """The end of an answered line (see :meth:`answered_tail`), by its values."""

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
        """One line (docs/ACCESS_LOG.md). Its parts are kept from the line
        before and reused while they are the same (a connection's requests, a
        flood's): the quoted part (request line, referer, agent: built and
        checked for escapes once), the status and bytes, and the tail (the
        outcome, decision, class and flags); times of whole milliseconds come
        from a table. Compared field by field, not hashed: a few
        instructions each when they match."""
        if not self.enabled:
            return
        if target != self._m_target or agent != self._m_agent or referer != self._m_referer \
                or method != self._m_method or version != self._m_version:
            self._m_target, self._m_agent, self._m_referer = target, agent, referer
            self._m_method, self._m_version = method, version
            request = f"{method} {target} HTTP/{version}" if method else "-"
            referer = referer or "-"
            agent = agent or "-"
            if not _plain(request + referer + agent):
                request, referer, agent = _esc(request), _esc(referer), _esc(agent)
            self._m_quoted = f'"{request}" '
            self._m_quoted_end = f' "{referer}" "{agent}" rt='
        if status != self._m_status or sent != self._m_sent:
            self._m_status, self._m_sent = status, sent
            self._m_ss = f"{status} {sent}"
        if outcome != self._m_outcome or decision != self._m_decision or cls != self._m_cls \
                or session != self._m_session or verified != self._m_verified or us != self._m_us:
            self._m_outcome, self._m_decision, self._m_cls = outcome, decision, cls
            self._m_session, self._m_verified, self._m_us = session, verified, us
            self._m_tail = (f' us={str(us) if us else "-"} o={outcome or "-"} '
                            f'd={decision or "-"} c={cls or "-"} s={"1" if session else "0"} '
                            f'v={"1" if verified else "0"}\n')
        sec = int(start)
        if client != self._m_client or sec != self._m_sec:
            stamp = self._stamp if sec == self._sec else self._time_local(start)
            self._m_client, self._m_sec = client, sec
            self._m_head = f"{client} - - [{stamp}] "
        if rt > 0.0:
            ms = int(rt * 1000.0 + 0.5)
            rts = _MS[ms] if ms < 256 else _secs(rt)
        else:
            rts = "0.000"
        if ut >= 0:
            ms = int(ut * 1000.0 + 0.5)
            uts = _MS[ms] if ms < 256 else _secs(ut)
        else:
            uts = "-"
        # one f-string: one allocation (a chain of + made a string per step)
        head, quoted, ss, quoted_end, tail = (self._m_head, self._m_quoted, self._m_ss,
                                             self._m_quoted_end, self._m_tail)
        upv = up or "-"
        line = f"{head}{quoted}{ss}{quoted_end}{rts} up={upv} ut={uts}{tail}"
        self._buf.append(line)
        self._size += len(line)
        if self._size >= 65536:
            self.flush()

    def line_head(self, client: str, start: float) -> str:
        """A line's start, ``client - - [time_local] `` (kept while the client
        and the second are the same, as ``write`` keeps it)."""
        sec = int(start)
        if client != self._m_client or sec != self._m_sec:
            stamp = self._stamp if sec == self._sec else self._time_local(start)
            self._m_client, self._m_sec = client, sec
            self._m_head = f"{client} - - [{stamp}] "
        return self._m_head

    def append(self, line: str) -> None:
        """A whole line made by the caller from :meth:`line_head` and parts it
        keeps (the proxy's early refusal: everything after the request line is
        the same for a flood's requests; see server._Memo)."""
        self._buf.append(line)
        self._size += len(line)
        if self._size >= 65536:
            self.flush()

    def answered_tail(self, outcome: str, decision: str, cls: str, session: bool,
                      verified: bool) -> str:
        """The end of the line of a request the shield answered itself (no
        upstream: ``write``'s fields after ``rt=``), made once per set of
        values (a handful: decision, class, outcome)."""
        key = (outcome, decision, cls, session, verified)
        tail = self._tails.get(key)
        if tail is None:
            tail = (f' up=- ut=- us=- o={outcome or "-"} d={decision or "-"} '
                    f'c={cls or "-"} s={"1" if session else "0"} v={"1" if verified else "0"}\n')
            if len(self._tails) < 256:
                self._tails[key] = tail
        return tail

    def write_answered(self, client: str, start: float, request: str, status: int, sent: int,
                       referer: str, agent: str, rt: float, tail: str,
                       plain: bool = False) -> None:
        """The line ``write`` makes for a request the shield answered itself
        (``request``: its request line as sent, ``tail`` from
        :meth:`answered_tail`), from fewer parts: a flood's refusals are
        thousands a second, each logged (the proxy's early path,
        issue 10). ``plain``: the caller knows that none of the three needs
        escaping (:func:`is_plain` said so of the same text before)."""
        if not self.enabled:
            return
        referer = referer or "-"
        agent = agent or "-"
        if not plain and not _plain(request + referer + agent):
            request, referer, agent = _esc(request), _esc(referer), _esc(agent)
        sec = int(start)
        stamp = self._stamp if sec == self._sec else self._time_local(start)
        ms = int(rt * 1000.0 + 0.5) if rt > 0.0 else 0
        rts = _MS[ms] if ms < len(_MS) else _secs(rt)
        line = f'{client} - - [{stamp}] "{request}" {status} {sent} "{referer}" "{agent}" rt={rts}{tail}'
        self._buf.append(line)
        self._size += len(line)
        if self._size >= 65536:
            self.flush()

    def flush(self) -> None:
        if not self._buf and not self._backlog:
            return
        lines = self._buf
        self._buf = []
        self._size = 0
        if self._poll is not None:
            self._flush_pipe(lines)
            return
        try:
            data = "".join(lines).encode("utf-8", "backslashreplace")
            while data:
                n = os.write(self._fd, data)
                data = data[n:]
        except OSError as exc:
            print(f"shieldwall: access log write failed: {exc}", file=sys.stderr)

    def _flush_pipe(self, lines: list[str]) -> None:
        # Several workers may share a stdout pipe: only writes of at most
        # PIPE_BUF bytes are atomic there, so batches are cut at lines; and a
        # pipe with room for PIPE_BUF bytes takes such a write without blocking.
        backlog = self._backlog
        batches: list[list[bytes]] = [[]]
        size = 0
        for line in lines:
            b = line.encode("utf-8", "backslashreplace")
            if batches[-1] and size + len(b) > select.PIPE_BUF:
                batches.append([])
                size = 0
            batches[-1].append(b)
            size += len(b)
        dropped = 0
        for batch in batches:
            if not batch:  # only the backlog to flush
                continue
            data = b"".join(batch)
            if self._backlog_size + len(data) <= self.max_backlog:
                backlog.append(data)
                self._backlog_size += len(data)
            else:
                dropped += len(batch)
        if dropped:
            if not self.dropped:
                print("shieldwall: stdout is not being read: access log lines are dropped "
                      "(the proxy is unaffected; log to a file with access_log = \"/path\")",
                      file=sys.stderr)
            self.dropped += dropped
        assert self._poll is not None
        sent = 0
        try:
            while sent < len(backlog) and self._poll.poll(0):
                data = backlog[sent]
                n = os.write(self._fd, data)
                if n < len(data):  # a terminal may take part of it
                    backlog[sent] = data[n:]
                    self._backlog_size -= n
                    continue
                self._backlog_size -= n
                sent += 1
        except OSError as exc:
            print(f"shieldwall: access log write failed: {exc}", file=sys.stderr)
            sent = len(backlog)
            self._backlog_size = 0
        if sent:
            del backlog[:sent]

    def close(self) -> None:
        self.flush()
        if self._own and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
