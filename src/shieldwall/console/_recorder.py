"""Each worker's own view for the console: requests per second by outcome,
by client class, latency, and who is sending them.

The proxy appends one row per finished request to the worker's
:class:`shieldwall.rowfeed.RowFeed` (the same row the detector reads: no
event object and no call per request); :meth:`Recorder.sink` takes a
``RequestEvent`` for other feeds (tests, replays). Once a second
:meth:`Recorder.tick` folds the list into per-second buckets (kept for
``SECONDS_KEPT``) and into rolling 60-second counters of the top talkers by
address, network, user agent and path. Worker 0's console gathers every
worker's :meth:`view` through the admin routes and adds them up.

Pure apart from the optional once-a-second task: the clock is injected and
:meth:`tick` can be called by hand (the tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import logging
import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute
from shieldwall.detect.events import Outcome, RequestEvent
from shieldwall.rowfeed import LiveRow, RowFeed, console_groups

SECONDS_KEPT = 900
"""Per-second buckets kept (15 minutes): the console charts the last 5."""
TOP_WINDOW = 60
"""Seconds the top-talker counters cover."""
MAX_KEYS_PER_SECOND = 5000
"""Distinct addresses/paths/agents counted per second and dimension; the rest
goes to ``(other)``: a randomized flood cannot grow the counters without bound."""
MAX_BUFFER = 500_000
"""Events held between ticks at most; beyond that the sink drops (and counts) them."""
TOP_N = 20
DRAINS_PER_TICK = 10
"""The feed's rows are folded this many times a second (the tick, once a second,
also expires the top counters)."""
OTHER = "(other)"
MAX_AGENT = 160
MAX_PATH = 160

OUTCOMES = ("allowed", "limited", "challenged", "solved", "blocked", "shed", "stale",
            "error", "shield")
"""What happened to a request, as the console charts it. ``shield``: answered by
the shield itself otherwise (its own assets, a failed challenge answer)."""
CLASSES = ("customer", "verified", "unknown", "suspect", "-")
REFUSED = frozenset(("limited", "challenged", "blocked", "shed"))
DIMENSIONS = ("address", "network", "agent", "path")

LATENCY_BOUNDS = tuple(round(0.0005 * 1.5 ** i, 6) for i in range(30))
"""Upper bounds (seconds) of the latency buckets: 0.5 ms to ~64 s, 1.5x apart,
so a percentile read from them is within 50 % (log scale on the chart)."""

log = logging.getLogger(__name__)

_ERRORS = frozenset((Outcome.REFUSED.value, Outcome.TIMEOUT.value, Outcome.NO_UPSTREAM.value))
_STALE = Outcome.STALE.value
_SHIELD = Outcome.SHIELD.value


def outcome_of(ev: RequestEvent) -> str:
    """The console's outcome for one request (see OUTCOMES)."""
    return _outcome(ev.decision, ev.outcome.value, ev.status, ev.path)


def row_of(ev: RequestEvent) -> LiveRow:
    """The feed's row for one event (what the proxy builds itself)."""
    return ((ev.time + ev.request_time, ev.client, ev.path, ev.query, ev.status, ev.bytes_sent,
             ev.request_time, ev.user_agent, ev.session, ev.verified, ev.outcome.value,
             ev.upstream_time), ev.decision, ev.cls, ev.upstream)


def _outcome(d: str, o: str, status: int, path: str) -> str:
    if d == "block":
        return "blocked"
    if d == "limit":
        return "limited"
    if d == "challenge":
        return "challenged"
    if d == "respond":
        # the guard answered itself: a right challenge answer is a redirect with a pass
        return "solved" if status in (302, 303) and "/verify" in path else "shield"
    if o == _STALE:
        return "stale"
    if o in _ERRORS:
        return "error"
    if o == _SHIELD:
        return "shed" if status == 503 else "shield"
    return "allowed"


@lru_cache(maxsize=65536)
def network_of(address: str) -> str:
    """/24 for IPv4, /48 for IPv6 (the prefixes the guard and detector use by default)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    bits = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def latency_bucket(seconds: float) -> int:
    """The index of the first bound >= seconds (len(LATENCY_BOUNDS) beyond the last)."""
    return bisect_left(LATENCY_BOUNDS, seconds)


def percentile(counts: dict[int, int] | list[int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile; None with no requests."""
    items = sorted(counts.items()) if isinstance(counts, dict) else list(enumerate(counts))
    total = sum(n for _, n in items)
    if total == 0:
        return None
    rank = q * total
    acc = 0
    for i, n in items:
        acc += n
        if acc >= rank and n:
            return LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1] * 1.5
    return LATENCY_BOUNDS[-1] * 1.5


@dataclass
class Second:
    """Everything counted for one wall-clock second on one worker."""

    outcomes: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    latency: dict[int, int] = field(default_factory=dict)
    """Latency bucket index -> requests (allowed and served requests only)."""

    def as_json(self, at: int) -> list[Any]:
        return [at, self.outcomes, self.classes, {str(k): v for k, v in self.latency.items()}]


def _add_into(counts: dict[str, list[int]], key: str, n: int, refused: int) -> None:
    """Add ``[n, refused]`` to ``counts[key]`` (a new list when the key is new)."""
    cur = counts.get(key)
    if cur is None:
        counts[key] = [n, refused]
    else:
        cur[0] += n
        cur[1] += refused


class _Rolling:
    """Counts over the last TOP_WINDOW seconds for one dimension: key -> [requests, refused]."""

    def __init__(self) -> None:
        self.total: dict[str, list[int]] = {}
        self.seconds: deque[tuple[int, dict[str, list[int]]]] = deque()

    def add_second(self, at: int, counts: dict[str, list[int]]) -> None:
        """Add one drain's counts for second ``at``; a second drained several times
        is kept as one entry, still capped at MAX_KEYS_PER_SECOND keys (the rest
        goes to OTHER), so the window's size is bounded as before."""
        if self.seconds and self.seconds[-1][0] == at:
            held = self.seconds[-1][1]
            merged: dict[str, list[int]] = {}
            for k, (n, r) in counts.items():
                if k not in held and len(held) >= MAX_KEYS_PER_SECOND:
                    k = OTHER
                _add_into(held, k, n, r)
                _add_into(merged, k, n, r)
            counts = merged
        else:
            self.seconds.append((at, counts))
        for k, (n, r) in counts.items():
            _add_into(self.total, k, n, r)

    def expire(self, before: int) -> None:
        total = self.total
        while self.seconds and self.seconds[0][0] < before:
            _, counts = self.seconds.popleft()
            for k, (n, r) in counts.items():
                cur = total[k]
                cur[0] -= n
                cur[1] -= r
                if cur[0] <= 0:
                    del total[k]

    def top(self, n: int) -> list[list[Any]]:
        best = heapq.nlargest(n, self.total.items(), key=lambda kv: kv[1][0])
        return [[k, v[0], v[1]] for k, v in best]


class Recorder:
    """The per-worker sink, buckets and top talkers. See the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time, feed: RowFeed | None = None) -> None:
        self.clock = clock
        self._buf: list[LiveRow] = []
        self._take = feed.reader() if feed is not None else None
        self._feed = feed
        self.dropped = 0
        self.seconds: deque[tuple[int, Second]] = deque(maxlen=SECONDS_KEPT)
        self.top = {d: _Rolling() for d in DIMENSIONS}
        self.backends = _Rolling()
        """upstream key -> [requests, errors] over TOP_WINDOW."""
        self.ticked = 0.0
        """The clock at the last tick: every second before int(ticked) is complete."""
        self._task: asyncio.Task[None] | None = None
        self.admin_routes = [AdminRoute("GET", "/api/console/local", self._local_route)]

    def sink(self, event: RequestEvent) -> None:
        """An EventSink for feeds other than the proxy's rows: append and return."""
        if len(self._buf) < MAX_BUFFER:
            self._buf.append(row_of(event))
        else:
            self.dropped += 1

    def drain(self) -> None:
        """Fold the rows since the last drain into their seconds and the top counters."""
        buf, self._buf = self._buf, []
        if self._take is not None:
            rows = self._take()
            buf = rows if not buf else buf + rows
        self.ticked = self.clock()
        self._fold(buf)

    def tick(self) -> None:
        """:meth:`drain`, then forget top counts older than the top window."""
        self.drain()
        horizon = int(self.clock()) - TOP_WINDOW
        for r in self.top.values():
            r.expire(horizon)
        self.backends.expire(horizon)

    def _second(self, at: int) -> Second:
        secs = self.seconds
        for s_at, s in reversed(secs):
            if s_at == at:
                return s
            if s_at < at:
                break
        s = Second()
        if not secs or secs[-1][0] < at:
            secs.append((at, s))
        else:  # a late event for an older second (rare): keep it in order
            items = sorted([*secs, (at, s)], key=lambda x: x[0])
            secs.clear()
            secs.extend(items[-SECONDS_KEPT:])
        return s

    def _fold(self, rows: Iterable[LiveRow]) -> None:
        # First collapse identical requests (a flood is the same few requests
        # many times over): compiled, once per row (shieldwall.rowfeed); the
        # rest of the work once per distinct request.
        groups = console_groups(rows if isinstance(rows, list) else list(rows), LATENCY_BOUNDS)
        per_dim: dict[str, dict[str, list[int]]] = {d: {} for d in DIMENSIONS}
        per_backend: dict[str, list[int]] = {}
        last_at = None
        sec = Second()
        for (at, client, agent, path, decision, outcome, status, cls, bucket, upstream), n \
                in groups.items():
            if at != last_at:
                sec = self._second(at)
                last_at = at
            out = _outcome(decision, outcome, status, path)
            sec.outcomes[out] = sec.outcomes.get(out, 0) + n
            cls = cls or "-"
            sec.classes[cls] = sec.classes.get(cls, 0) + n
            if out in ("allowed", "stale", "error"):
                sec.latency[bucket] = sec.latency.get(bucket, 0) + n
            refused = n if out in REFUSED else 0
            for dim, key in (("address", client), ("network", network_of(client)),
                             ("agent", agent[:MAX_AGENT] or "(none)"),
                             ("path", path[:MAX_PATH] or "/")):
                counts = per_dim[dim]
                cur = counts.get(key)
                if cur is None:
                    if len(counts) >= MAX_KEYS_PER_SECOND:
                        key = OTHER
                        cur = counts.get(key)
                    if cur is None:
                        counts[key] = [n, refused]
                        continue
                cur[0] += n
                cur[1] += refused
            if upstream:
                cur = per_backend.setdefault(upstream, [0, 0])
                cur[0] += n
                if outcome in _ERRORS or status >= 500:
                    cur[1] += n
        now = int(self.clock())
        for dim, counts in per_dim.items():
            if counts:
                self.top[dim].add_second(now, counts)
        if per_backend:
            self.backends.add_second(now, per_backend)

    def view(self, since: int = 0, top: int = TOP_N) -> dict[str, Any]:
        """This worker's seconds after ``since`` (unix seconds) and its top talkers."""
        return {
            "pid": os.getpid(),
            "now": self.clock(),
            "ticked": self.ticked,
            "seconds": [s.as_json(at) for at, s in self.seconds if at > since],
            "top": {d: r.top(top) for d, r in self.top.items()},
            "backends": {k: v for k, v in self.backends.total.items()},
            "events_dropped": self.dropped + (self._feed.dropped if self._feed is not None else 0),
        }

    async def _local_route(self, req: AdminRequest) -> AdminResponse:
        try:
            since = int(float(req.query.get("since", "0")))
        except ValueError:
            return AdminResponse.error(400, '"since" must be a unix time in seconds')
        return AdminResponse.of_json(self.view(since))

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="shieldwall-console-recorder")

    async def _run(self) -> None:
        # Drained ten times a second, not once: a second of a flood's rows folded
        # at once (~4 ms at 50k req/s) held every request behind it that long.
        n = 0
        while True:
            await asyncio.sleep(1.0 / DRAINS_PER_TICK)
            n += 1
            try:
                if n % DRAINS_PER_TICK:
                    self.drain()
                else:
                    self.tick()
            except Exception:  # a bad event must not stop the console's counting
                log.exception("console recorder tick failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
