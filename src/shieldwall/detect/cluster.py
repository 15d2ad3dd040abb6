"""One verdict for many shields: every worker of every node publishes its
closed 1-second windows through Redis, and every one of them judges the sum
with the same detector. A flood spread over N nodes is then a whole flood to
each of them, not 1/N of one.

Pure part: :func:`encode` / :func:`decode` (a window as compact JSON, its
per-client and per-path tables bounded: the heaviest ``MAX_KEYS`` entries are
kept) and :func:`merge` (windows of one second from many feeds -> one window,
exactly the window one shield seeing all of the traffic would have built,
as long as no table was cut).

IO part: :class:`ClusterJudge`, hooked into
:class:`shieldwall.detect.runtime.DetectRuntime` (``runtime.cluster``). Its
loop publishes this feed's windows as soon as the runtime closes them
(``HSET <prefix>dw:<second> <feed> <window>``, 60 s TTL), waits until every
feed seen alive in the last ``FEED_FRESH`` seconds has published that second
(at most ``MAX_WAIT`` s), merges and steps its own :class:`Detector`. While
Redis answers, the cluster detector's mode is the one sent to the guard;
when Redis is unreachable (no successful round for ``STALE_AFTER`` s) each
feed falls back to its own detector's mode, loudly, and takes the cluster's
again when Redis is back. ``GET /api/verdict`` says which one is in force
(``cluster``).

While the cluster's view is in force, the guard gets the more severe of the
cluster's mode and the node's own (:func:`severest`): the cluster's verdict
for a second needs every feed's window of it, so it comes a round trip and
the slowest feed's tick after the node's own; a node whose own traffic
already says "flood" must not wait for the others to agree before it
protects its shoppers, and the cluster's view still raises a node that sees
too little to judge alone. The mode goes down only when both have calmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from heapq import nlargest
from typing import Any

from shieldwall.detect.detector import Detector, StepResult
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.windows import Window
from shieldwall.guard.decision import Mode

log = logging.getLogger(__name__)

MAX_KEYS = 5000
"""Entries kept per table (sources, paths, queries, agents...) per window and
feed: a botnet of a million addresses must not make a message of megabytes.
Beyond it the heaviest entries are kept (the heavy hitters the detector
names) and the window says ``cut``."""
MAX_WAIT = 1.5
"""Seconds a closed second waits for the other feeds' windows."""
FEED_FRESH = 5.0
"""A feed that published within this many seconds is waited for."""
STALE_AFTER = 3.0
"""No successful Redis round for this long: fall back to the local view."""
WINDOW_TTL = 60

_SUMS = ("n", "pages", "nf", "noreq", "errors", "bfail", "timeouts", "s408", "slow", "sessions",
         "verified", "rt_sum", "ut_sum", "ut_n", "bytes")
_TABLES = ("src", "paths", "queries", "uas", "failed_src", "slow_src")


def _top(d: dict[str, int], n: int = MAX_KEYS) -> dict[str, int]:
    if len(d) <= n:
        return d
    return dict(nlargest(n, d.items(), key=lambda kv: kv[1]))


def encode(w: Window) -> bytes:
    """A window as compact JSON (bounded: see MAX_KEYS)."""
    cut = False
    out: dict[str, Any] = {"sec": w.sec, "gap": w.gap}
    for name in _SUMS:
        out[name] = getattr(w, name)
    for name in _TABLES:
        table: dict[str, int] = getattr(w, name)
        kept = _top(table)
        cut = cut or len(kept) < len(table)
        out[name] = kept
    src = out["src"]
    out["cflags"] = {c: f for c, f in w.cflags.items() if c in src}
    out["curl"] = {c: u for c, u in w.curl.items() if c in src}
    urls = sorted(w.urls)[:MAX_KEYS]
    out["urls"] = urls
    out["qpaths"] = {p: sorted(qs)[:MAX_KEYS] for p, qs in list(w.qpaths.items())[:MAX_KEYS]}
    out["cut"] = cut or len(urls) < len(w.urls) or len(out["qpaths"]) < len(w.qpaths)
    return json.dumps(out, separators=(",", ":")).encode()


def decode(raw: bytes | str) -> Window:
    """Raises ValueError (or KeyError/TypeError) on a message that is not a window."""
    d = json.loads(raw)
    w = Window(int(d["sec"]), bool(d["gap"]))
    for name in _SUMS:
        setattr(w, name, d.get(name, 0))  # a feed of an older version lacks the newer sums
    for name in _TABLES:
        setattr(w, name, {str(k): int(v) for k, v in d[name].items()})
    w.cflags = {str(k): int(v) for k, v in d["cflags"].items()}
    w.curl = {str(k): str(v) for k, v in d.get("curl", {}).items()}  # older feeds lack it
    w.urls = set(d["urls"])
    w.qpaths = {str(p): set(qs) for p, qs in d["qpaths"].items()}
    return w


def merge(sec: int, windows: Iterable[Window]) -> Window:
    """The window of ``sec`` one shield would have built from all the feeds'
    requests: sums added, per-key counts added, client flags or-ed, sets
    joined, a client's one URL kept where the feeds agree. A gap only when every
    feed had one."""
    out = Window(sec)
    gaps: list[bool] = []
    for w in windows:
        gaps.append(w.gap)
        for name in _SUMS:
            setattr(out, name, getattr(out, name) + getattr(w, name))
        for name in _TABLES:
            acc: dict[str, int] = getattr(out, name)
            for k, v in getattr(w, name).items():
                acc[k] = acc.get(k, 0) + v
        for c, f in w.cflags.items():
            out.cflags[c] = out.cflags.get(c, 0) | f
        cu = out.curl
        for c, u in w.curl.items():  # one URL only if every feed saw that one
            was = cu.get(c)
            cu[c] = u if was is None or was == u else ""
        out.urls |= w.urls
        for p, qs in w.qpaths.items():
            have = out.qpaths.get(p)
            if have is None:
                out.qpaths[p] = set(qs)
            else:
                have |= qs
    out.gap = bool(gaps) and all(gaps)
    return out


_SEVERITY = {Mode.NORMAL: 0, Mode.ELEVATED: 1, Mode.UNDER_ATTACK: 2}


def severest(*modes: Mode) -> Mode:
    """The most severe of ``modes`` (NORMAL < ELEVATED < UNDER_ATTACK)."""
    return max(modes, key=_SEVERITY.__getitem__)


def feed_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ClusterJudge:
    """Publishes this feed's windows, judges the cluster's (see the module doc)."""

    def __init__(self, settings: DetectSettings, redis_url: str, prefix: str,
                 on_mode: Callable[[Mode, str], None] | None,
                 on_suspect: Callable[[str, float, float], None] | None,
                 clock: Callable[[], float] = time.time, feed: str | None = None) -> None:
        from shieldwall.guard._redis_url import key_prefix, parse_url

        self.settings = settings
        self.url = redis_url
        target = parse_url(redis_url)
        self.target = target
        self.k = key_prefix(target, prefix) + "dw:"
        self.detector = Detector(settings)
        self.on_mode = on_mode
        self.on_suspect = on_suspect
        self.clock = clock
        self.feed = feed or feed_id()
        self.client: Any = None
        self._extra: list[Any] = []
        self._outbox: list[Window] = []
        self._own: OrderedDict[int, Window] = OrderedDict()
        """This feed's recent windows: the fallback for a second nobody published."""
        self._next: int | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_ok = -1e18
        self.healthy = False
        self.local_mode = Mode.NORMAL
        self.cluster_mode = Mode.NORMAL
        self.forwarded: Mode | None = None
        self.last: StepResult | None = None
        self.feeds_last = 0
        self.cut = 0
        self.judged = 0
        self.failures = 0
        self.last_error = ""

    # -- the runtime's side (synchronous) --------------------------------------
    def offer(self, windows: list[Window]) -> None:
        """The runtime closed these windows: queue them to publish, now."""
        if not windows:
            return
        self._outbox.extend(windows)
        del self._outbox[:-120]
        for w in windows:
            self._own[w.sec] = w
        while len(self._own) > 120:
            self._own.popitem(last=False)
        if self._next is None:
            self._next = windows[0].sec
        self._wake.set()

    def local(self, mode: Mode, source: str) -> None:
        """The local detector's mode (installed as the runtime's on_mode)."""
        self.local_mode = mode
        self._forward(self.in_force())

    def local_suspect(self, client: str, score: float, ttl: float) -> None:
        """The local detector's suspects (installed as the runtime's
        on_suspect): passed on only while the cluster's view is not in force.
        With Redis the cluster's detector names suspects from the same
        clients' counts (a client's connections meet one node behind a
        balancer hashing the source) and more; both lists at once would mark
        every borderline client twice as often as one shield does."""
        if not self.healthy and self.on_suspect is not None:
            self.on_suspect(client, score, ttl)

    def in_force(self) -> Mode:
        """The mode the guard gets: the node's own without Redis; with it,
        the more severe of the cluster's and the node's own (module doc)."""
        if not self.healthy:
            return self.local_mode
        return severest(self.cluster_mode, self.local_mode)

    def _forward(self, mode: Mode) -> None:
        if mode is self.forwarded:
            return
        self.forwarded = mode
        if self.on_mode is not None:
            try:
                self.on_mode(mode, "detector")
            except Exception:
                log.exception("cluster: mode callback failed")

    def status(self) -> dict[str, Any]:
        last = self.last
        return {
            "healthy": self.healthy,
            "in_force": "cluster" if self.healthy else "local (Redis unreachable)",
            "mode": self.cluster_mode.value, "local_mode": self.local_mode.value,
            "guard_mode": self.forwarded.value if self.forwarded is not None else None,
            "verdict": last.raw.verdict if last is not None else None,
            "state": last.state if last is not None else None,
            "feeds": self.feeds_last, "judged": self.judged, "cut_windows": self.cut,
            "failures": self.failures, "last_error": self.last_error, "feed": self.feed,
            "redis": self.target.kind,
        }

    # -- the loop -------------------------------------------------------------
    async def start(self) -> None:
        from shieldwall.guard._redis_url import make_client

        self.client, self._extra = make_client(self.target, 0.5)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="shieldwall-cluster")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for c in [self.client, *self._extra]:
            if c is not None:
                with contextlib.suppress(Exception):
                    await c.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)
            self._wake.clear()
            try:
                await asyncio.wait_for(self.round(), 3.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down, or a bug: never stop the loop
                self.failures += 1
                self.last_error = f"{exc.__class__.__name__}: {exc}"
            self._check_health()

    def _check_health(self) -> None:
        healthy = self.clock() - self.last_ok < STALE_AFTER
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                log.warning("cluster: judging the cluster's windows again (mode %s)",
                            self.cluster_mode.value)
                self._forward(self.in_force())
            else:
                log.error("cluster: Redis unreachable (%s); this node judges its own traffic "
                          "(mode %s) until it returns", self.last_error, self.local_mode.value)
                self._forward(self.local_mode)

    async def round(self) -> None:
        """Publish what is queued, judge every second that is ripe."""
        now = self.clock()
        out, self._outbox = self._outbox, []
        pipe = self.client.pipeline(transaction=False)
        for w in out:
            key = f"{self.k}{w.sec}"
            raw = encode(w)
            if raw.endswith(b'"cut":true}'):
                self.cut += 1
            pipe.hset(key, self.feed, raw)
            pipe.expire(key, WINDOW_TTL)
        pipe.hset(self.k + "feeds", self.feed, f"{now:.3f}")
        pipe.expire(self.k + "feeds", WINDOW_TTL)
        pipe.hgetall(self.k + "feeds")
        try:
            res = await pipe.execute()
        except BaseException:
            self._outbox[:0] = out
            raise
        feeds = {bytes(f).decode() for f, t in res[-1].items() if now - float(t) <= FEED_FRESH}
        self.last_ok = now
        if self._next is not None and self._own and self._next < next(iter(self._own)):
            self._next = next(iter(self._own))  # a long outage: judge from what is kept
        while self._next is not None and self._next in self._own:
            sec = self._next
            got = await self.client.hgetall(f"{self.k}{sec}")
            have = {bytes(f).decode(): v for f, v in got.items()}
            own_closed_at = sec + 1 + self.settings.live_lateness
            if not feeds <= set(have) and now < own_closed_at + MAX_WAIT:
                return  # others have not published this second yet
            windows = []
            for f, raw in have.items():
                try:
                    windows.append(decode(raw))
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.last_error = f"feed {f}: unreadable window for {sec}"
            if not windows:
                windows = [self._own[sec]]
            self._judge(sec, windows)
            self._next = sec + 1

    def _judge(self, sec: int, windows: list[Window]) -> None:
        self.feeds_last = len(windows)
        r = self.detector.step(merge(sec, windows))
        self.last = r
        self.judged += 1
        if r.mode is not self.cluster_mode:
            log.warning("cluster: mode %s (%s, %d feeds)", r.mode.value, r.state, len(windows))
            self.cluster_mode = r.mode
        if self.healthy:
            self._forward(self.in_force())
        elif self.clock() - self.last_ok < STALE_AFTER:
            self._forward(severest(r.mode, self.local_mode))
        if r.suspects and self.on_suspect is not None:
            for client, score in r.suspects:
                try:
                    self.on_suspect(client, score, self.settings.suspect_ttl)
                except Exception:
                    log.exception("cluster: suspect callback failed")
