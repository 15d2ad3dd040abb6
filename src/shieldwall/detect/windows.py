"""1-second windows of raw counts, filled from either feed.

Both feeds call :meth:`WindowBuilder.add` with the same fields: the live
runtime unpacks each :class:`~shieldwall.detect.events.RequestEvent`
(:meth:`WindowBuilder.add_event`), the log readers pass parsed fields
directly (no event object per line: that is the offline fast path). A request
belongs to the window of its *completion* second (start + request time): that
is when the live feed learns of it and when nginx writes its line, so live and
offline windows agree and a slowloris connection counts when it is cut.

Windows close when the watermark passes them (event time, never wall time):
offline the watermark is the newest event minus a reorder slack, live it is the
injected clock minus a smaller one. An event older than every open window
joins the oldest open window and is counted as late, never dropped. A silence
longer than ``idle_gap`` is skipped rather than replayed as empty windows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shieldwall.detect.events import RequestEvent

FAILED_OUTCOMES = frozenset({"refused", "timeout", "none"})
"""Outcomes that mean the backend did not answer."""

_PAGE = 1
_ASSET = 2
_TRUSTED = 4  # presented a shield session or passed a challenge
_KINDS_MAX = 4096
"""Paths whose asset-or-page kind a builder remembers."""


FIELDS = (
    "bfail", "bytes", "cflags", "curl", "errors", "failed_src", "gap", "n", "nf", "noreq", "pages", "paths",
    "qpaths", "queries", "rt_sum", "s408", "sec", "sessions", "slow", "slow_src", "src",
    "timeouts", "uas", "urls", "ut_n", "ut_sum", "verified",
)
"""A :class:`Window`'s fields. This module is compiled with the request path
(shieldwall._build): a compiled class has no ``__slots__`` to list them."""


class Window:
    """Raw counts of one second. Mergeable, bounded by the requests it holds."""

    __slots__ = FIELDS

    def __init__(self, sec: int, gap: bool = False) -> None:
        self.sec = sec
        self.gap = gap
        """Part of a silence longer than ``idle_gap`` in a log: no data, not an outage."""
        self.n = 0
        self.pages = 0
        self.nf = 0
        """Page requests answered 404 (random nonexistent paths)."""
        self.noreq = 0
        """Connections closed before a request line (nginx's ``"-" 408 0``; the shield's
        header deadline): counted as requests, never as pages."""
        self.errors = 0
        """Responses with status >= 500."""
        self.bfail = 0
        """Backend failures: outcome refused/timeout/none, or 500/502/503/504 that
        the backend answered itself (outcome ok) or that a plain log shows (a
        gateway's errors, and the app's own 500s: a shop whose database is down
        answers every page 500; behind the shop's own nginx a dead PHP-FPM is a
        502 the shield receives as an answer)."""
        self.timeouts = 0
        self.s408 = 0
        self.slow = 0
        self.sessions = 0
        self.verified = 0
        self.rt_sum = 0.0
        self.ut_sum = 0.0
        self.ut_n = 0
        self.bytes = 0
        self.src: dict[str, int] = {}
        self.cflags: dict[str, int] = {}
        self.paths: dict[str, int] = {}
        """Page paths (no assets) and their counts."""
        self.urls: set[str] = set()
        """Distinct page URLs (path?query)."""
        self.queries: dict[str, int] = {}
        """Query strings of page requests and their counts."""
        self.qpaths: dict[str, set[str]] = {}
        """Per path, the distinct query strings seen."""
        self.uas: dict[str, int] = {}
        self.curl: dict[str, str] = {}
        """Per page client, the one page URL it requested this second ("" if several): a
        bot repeats its URL second after second, a shopper moves from page to page."""
        self.failed_src: dict[str, int] = {}
        self.slow_src: dict[str, int] = {}


Row = tuple[float, str, str, str, int, int, float, str, bool, bool, str, float]
"""(t_end, client, path, query, status, bytes, rt, ua, session, verified, outcome, ut):
what the log readers produce per line (``readers.Parsed``)."""


_NO_SECOND: Final = -(1 << 60)
"""No second: never a window's (a log's seconds are Unix times, within ~2**33)."""


class WindowBuilder:
    """Turns a stream of requests into closed 1 s :class:`Window` objects in order."""

    def __init__(
        self,
        *,
        lateness: float,
        idle_gap: int = 120,
        asset_extensions: list[str] | tuple[str, ...] = ("css", "js", "png", "jpg"),
        asset_prefixes: list[str] | tuple[str, ...] = ("/static/",),
        slow_seconds: float = 5.0,
        slow_max_bytes: int = 1024,
    ) -> None:
        self.lateness = lateness
        self.idle_gap = idle_gap
        self._asset_ext = frozenset(e.lower() for e in asset_extensions)
        self._asset_prefixes = tuple(asset_prefixes)
        self._slow_seconds = slow_seconds
        self._slow_max_bytes = slow_max_bytes
        self._kinds: dict[str, bool] = {}
        """Paths already judged asset or page (:meth:`_is_asset`)."""
        self._open: dict[int, Window] = {}
        self._next: int | None = None
        """The oldest second not yet closed (None before the first event)."""
        self.max_time = float("-inf")
        self.late = 0
        self.events = 0

    # -- input ---------------------------------------------------------------
    def add_event(self, ev: RequestEvent) -> None:
        """The live feed's entry: the same row the log readers produce."""
        self.add_rows(((
            ev.time + ev.request_time, ev.client, ev.path, ev.query, ev.status,
            ev.bytes_sent, ev.request_time, ev.user_agent, ev.session,
            ev.verified, str(ev.outcome), ev.upstream_time,
        ),))

    def add(
        self, t_end: float, client: str, path: str, query: str, status: int, nbytes: int,
        rt: float, ua: str, session: bool, verified: bool, outcome: str, ut: float,
    ) -> None:
        """Count one finished request (``t_end`` = start + request time, Unix seconds)."""
        self.add_rows(((t_end, client, path, query, status, nbytes, rt, ua, session, verified,
                        outcome, ut),))

    def add_rows(self, rows: Iterable[Row]) -> None:
        """Count finished requests, each a :data:`Row` as the log readers make them.

        The one place a request is counted, for both feeds; written as one loop
        with its lookups hoisted, because it runs once per log line. A run of
        consecutive rows alike in all but their sizes and times (a keep-alive
        connection's requests, a flood's) is counted into the window's tables
        once, with its length (:meth:`_count_run`): the same counts, keys
        inserted in the same order; the sums and the slow-request counts,
        which depend on each row's time and size, are added row by row."""
        opened = self._open
        nxt = self._next
        mx = self.max_time
        slow_s = self._slow_seconds
        slow_b = self._slow_max_bytes
        late = events = 0
        cur_sec = _NO_SECOND  # (a native int: an Optional is boxed and compared generically)
        w: Window | None = None
        # the run being counted: its window, its fields and its length
        rw: Window | None = None
        r_client = r_path = r_query = r_ua = r_outcome = ""
        r_status = 0
        r_session = r_verified = False
        k = 0
        for (t_end, client, path, query, status, nbytes, rt, ua, session, verified,
             outcome, ut) in rows:
            events += 1
            sec = int(t_end) if t_end >= 0 else int(t_end) - 1
            if sec != cur_sec or w is None:
                if nxt is None:
                    nxt = sec
                if sec < nxt:
                    late += 1
                    sec = nxt
                w = opened.get(sec)
                if w is None:
                    w = opened[sec] = Window(sec)
                cur_sec = sec if sec == int(t_end) else _NO_SECOND
            if t_end > mx:
                mx = t_end
            if w is not rw or status != r_status or client != r_client or path != r_path \
                    or query != r_query or ua != r_ua or session != r_session \
                    or verified != r_verified or outcome != r_outcome:
                if rw is not None:
                    self._count_run(rw, r_client, r_path, r_query, r_status, r_ua, r_session,
                                    r_verified, r_outcome, k)
                rw = w
                r_client, r_path, r_query, r_status, r_ua = client, path, query, status, ua
                r_session, r_verified, r_outcome = session, verified, outcome
                k = 0
            k += 1
            w.rt_sum += rt
            w.bytes += nbytes
            if ut >= 0:
                w.ut_sum += ut
                w.ut_n += 1
            if status == 408 or (rt >= slow_s and nbytes <= slow_b):
                w.slow += 1
                if status == 408:
                    w.s408 += 1
                ss = w.slow_src
                ss[client] = ss.get(client, 0) + 1
        if rw is not None:
            self._count_run(rw, r_client, r_path, r_query, r_status, r_ua, r_session,
                            r_verified, r_outcome, k)
        self._next = nxt
        self.max_time = mx
        self.late += late
        self.events += events

    def _is_asset(self, path: str) -> bool:
        """Whether ``path`` is an asset (by extension or prefix), remembered for
        the paths seen most (a shop has a few thousand; random paths beyond
        the bound are judged each time)."""
        kind = self._kinds.get(path)
        if kind is None:
            kind = path.rpartition(".")[2] in self._asset_ext \
                or path.startswith(self._asset_prefixes)
            if len(self._kinds) < _KINDS_MAX:
                self._kinds[path] = kind
        return kind

    def _count_run(self, w: Window, client: str, path: str, query: str, status: int, ua: str,
                   session: bool, verified: bool, outcome: str, k: int) -> None:
        """Count ``k`` requests alike in these fields into ``w``'s counts and
        tables (what does not depend on a request's time or size)."""
        w.n += k
        src = w.src
        src[client] = src.get(client, 0) + k
        cf = w.cflags
        if not path:
            w.noreq += k
            cf[client] = cf.get(client, 0)
        elif self._is_asset(path):
            cf[client] = cf.get(client, 0) | _ASSET
        else:
            cf[client] = cf.get(client, 0) | _PAGE
            w.pages += k
            if status == 404:
                w.nf += k
            paths = w.paths
            paths[path] = paths.get(path, 0) + k
            if query:
                url = path + "?" + query
                qs = w.qpaths.get(path)
                if qs is None:
                    qs = w.qpaths[path] = set()
                qs.add(query)
                queries = w.queries
                queries[query] = queries.get(query, 0) + k
            else:
                url = path
            w.urls.add(url)
            cu = w.curl
            was = cu.get(client)
            if was is None:
                cu[client] = url
            elif was != url:
                cu[client] = ""
        if session or verified:
            cf[client] |= _TRUSTED
            if session:
                w.sessions += k
            if verified:
                w.verified += k
        uas = w.uas
        uas[ua] = uas.get(ua, 0) + k
        failed = False
        if status >= 500:
            w.errors += k
            failed = True
            if (outcome == "-" or outcome == "ok") and (status == 500 or 502 <= status <= 504):
                w.bfail += k
                if status == 504:
                    w.timeouts += k
        if outcome in FAILED_OUTCOMES:
            w.bfail += k
            failed = True
            if outcome == "timeout":
                w.timeouts += k
        elif status == 429:
            failed = True
        if failed:
            fs = w.failed_src
            fs[client] = fs.get(client, 0) + k

    # -- output --------------------------------------------------------------
    def close_until(self, watermark: float) -> list[Window]:
        """Close every window that ends at or before ``watermark - lateness``."""
        return self._close(int(watermark - self.lateness))

    def drain(self) -> list[Window]:
        """Offline: close windows older than the newest event minus the slack."""
        if self._next is None:
            return []
        return self._close(int(self.max_time - self.lateness))

    def flush(self) -> list[Window]:
        """End of input: close everything."""
        if self._next is None or not self._open:
            return []
        return self._close(max(self._open) + 1)

    def _close(self, upto: int) -> list[Window]:
        """Close windows with second < ``upto``, empty ones included, gaps skipped."""
        nxt = self._next
        if nxt is None or upto <= nxt:
            return []
        out: list[Window] = []
        opened = self._open
        while nxt < upto:
            w = opened.pop(nxt, None)
            if w is None:
                # An empty stretch: replay at most idle_gap empty windows, then jump.
                later = [s for s in opened if s < upto]
                stop = min(later) if later else upto
                if stop - nxt > self.idle_gap:
                    # the seconds before a long silence are the log pausing, not a stall
                    for before in out[-6:]:
                        before.gap = True
                    out.extend(Window(s, gap=True) for s in range(nxt, nxt + self.idle_gap))
                    nxt = stop
                    continue
                out.extend(Window(s) for s in range(nxt, stop))
                nxt = stop
                continue
            out.append(w)
            nxt += 1
        self._next = nxt
        return out

    @property
    def pending(self) -> int:
        """Open (not yet closed) windows: bounded by the lateness slack."""
        return len(self._open)
