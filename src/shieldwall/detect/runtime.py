"""The live detector inside the shield: the proxy's event sink in, mode changes,
suspects and admin routes out.

The proxy appends one row per finished request to the worker's
:class:`shieldwall.rowfeed.RowFeed` (:meth:`DetectRuntime.attach`); other feeds
call :meth:`DetectRuntime.sink` or :meth:`record`, which only append to a
bounded buffer (never block, never raise). Once a second the
tick moves the rows into the same :class:`WindowBuilder` and
:class:`Detector` that ``shieldwall analyze`` uses, closes the windows the
injected clock has passed (minus ``live_lateness``), and calls

- ``on_mode(mode, "detector")`` when the mode changes
  (normal -> elevated -> under_attack -> elevated -> normal, with hysteresis);
- ``on_suspect(client, score, ttl)`` for clients that look like attackers
  while a ddos incident is open (never during a flash crowd).

The lead wires these to ``GuardRuntime.set_mode`` and ``GuardRuntime.mark_suspect``.

One live-only shortcut (:meth:`DetectRuntime.peek`): a flood that is not
overwhelming in its first second (after calm), or does not stand out over an
open flash crowd at once, is confirmed by its second window, a whole second
later. While such a ddos candidate waits for that window, the runtime looks
at the window's first half: when the requests keep coming at least as far
above the traffic the flood arrived on as a surge must be (after calm,
``rate_factor`` x the baseline; on top of a crowd, the crowd's own level;
plus ``surge_threshold`` of the shop's standard deviations), the mode goes to
``under_attack`` then; the detector's own step at the window's close agrees
or takes it back. Verdicts and incidents are the detector's alone, so the
live and the offline feed still agree window by window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute
from shieldwall.detect.detector import Detector, Incident, StepResult, iso
from shieldwall.detect.events import RequestEvent
from shieldwall.detect.rules import DDOS, FLASH_CROWD, NORMAL
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.windows import Row, WindowBuilder
from shieldwall.guard.decision import Mode
from shieldwall.rowfeed import LiveRow, RowFeed, detector_rows

if TYPE_CHECKING:
    from shieldwall.detect.cluster import ClusterJudge

log = logging.getLogger(__name__)

TICK_SLACK = 0.02
"""The tick wakes this long after a window's closing instant (timer jitter)."""
PEEK_AT = 0.5
"""How far into a ddos candidate's confirming second :meth:`DetectRuntime.peek` looks."""
DRAIN_EVERY = 0.1
"""Between ticks the rows are moved into the windows this often: a second of a
flood's rows at once (50,000 at 50k req/s, ~4 ms) held every request behind it
that long, which showed as the default wiring's p99 (bench/proxy.py)."""
MAX_BUFFER = 1_000_000
"""Events held between ticks at most; beyond this the sink drops (and counts) them."""


class DetectRuntime:
    def __init__(
        self,
        settings: DetectSettings,
        *,
        on_mode: Callable[[Mode, str], None] | None = None,
        on_suspect: Callable[[str, float, float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.detector = Detector(settings)
        self.builder = WindowBuilder(lateness=settings.live_lateness, **self.detector.make_builder_args())
        self.on_mode = on_mode
        self.on_suspect = on_suspect
        self.on_step: Callable[[StepResult], None] | None = None
        """Optional hook called with every window's result (tests, metrics)."""
        self.clock = clock
        self._buf: list[RequestEvent] = []
        self._rows: list[Row] = []
        self._take: Callable[[], list[LiveRow]] | None = None
        self.dropped = 0
        self.mode = Mode.NORMAL
        self.incidents: deque[Incident] = deque(maxlen=settings.incidents_kept)
        self._normal_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.early: str | None = None
        """Why :meth:`peek` raised the mode before the confirming window closed (else None)."""
        self._taken_at = 0.0
        self.cluster: ClusterJudge | None = None
        """Set when Redis is configured: publishes our windows, judges everyone's."""
        self.admin_routes: list[AdminRoute] = [
            AdminRoute("GET", "/api/verdict", self._verdict_route),
            AdminRoute("GET", "/api/incidents", self._incidents_route),
        ]

    @classmethod
    def from_settings(
        cls,
        settings: DetectSettings,
        *,
        on_mode: Callable[[Mode, str], None] | None = None,
        on_suspect: Callable[[str, float, float], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> DetectRuntime:
        return cls(settings, on_mode=on_mode, on_suspect=on_suspect, clock=clock)

    # -- the proxy's side ------------------------------------------------------------
    def sink(self, event: RequestEvent) -> None:
        """The EventSink: append and return. Cheap, never blocks, never raises."""
        if not self.enabled:
            return
        if len(self._buf) < MAX_BUFFER:
            self._buf.append(event)
        else:
            self.dropped += 1

    def record(self, row: Row) -> None:
        """The proxy's cheaper entry: the row :meth:`WindowBuilder.add_event`
        would make of the request's event, built by the proxy directly (no
        event object per request). Cheap, never blocks, never raises."""
        if not self.enabled:
            return
        if len(self._rows) < MAX_BUFFER:
            self._rows.append(row)
        else:
            self.dropped += 1

    def attach(self, feed: RowFeed) -> None:
        """Read the worker's row feed at every tick (the proxy's cheapest entry)."""
        self._take = feed.reader()

    # -- the tick ------------------------------------------------------------------------
    def _move(self, since: float | None = None) -> int:
        """Move what the feeds hold into the windows; how many of those requests
        finished at or after ``since`` (counted only when asked: the peek)."""
        buf, self._buf = self._buf, []
        rows, self._rows = self._rows, []
        live = self._take() if self._take is not None else None
        self._taken_at = self.clock()
        n = 0
        if live and self.enabled:
            self.builder.add_rows(detector_rows(live))
            if since is not None:
                n += sum(1 for r in live if r[0][0] >= since)
        if rows:
            self.builder.add_rows(rows)
            if since is not None:
                n += sum(1 for r in rows if r[0] >= since)
        if buf:
            # One batched add_rows call for the whole second (the row is the one
            # WindowBuilder.add_event makes): its setup is paid once, not per event.
            self.builder.add_rows((
                ev.time + ev.request_time, ev.client, ev.path, ev.query, ev.status,
                ev.bytes_sent, ev.request_time, ev.user_agent, ev.session,
                ev.verified, str(ev.outcome), ev.upstream_time,
            ) for ev in buf)
            if since is not None:
                n += sum(1 for ev in buf if ev.time + ev.request_time >= since)
        if self._normal_since is None and (buf or rows or live):
            self._normal_since = self._taken_at
        return n

    def tick(self) -> list[StepResult]:
        """Move buffered events into windows, judge every closed window, call back."""
        self.ticks += 1
        self._move()
        now = self._taken_at
        results = []
        closed = self.builder.close_until(now)
        if self.cluster is not None:
            self.cluster.offer(closed)  # shieldwall.detect.cluster: the cluster-wide verdict
        for w in closed:
            r = self.detector.step(w)
            results.append(r)
            self._after_step(r)
        return results

    def _after_step(self, r: StepResult) -> None:
        for inc in r.closed:
            self.incidents.append(inc)
            self._normal_since = inc.end
        if self.early is not None:
            if r.mode is not Mode.UNDER_ATTACK:
                log.warning("detector: the window did not confirm the early switch (%s)", r.state)
            self.early = None
        if r.mode is not self.mode:
            self.mode = r.mode
            log.warning("detector: mode %s (%s)", r.mode.value, r.state)
            self._call(self.on_mode, r.mode, "detector")
        if r.suspects and self.on_suspect is not None:
            ttl = self.settings.suspect_ttl
            for client, score in r.suspects:
                self._call(self.on_suspect, client, score, ttl)
        if self.on_step is not None:
            self._call(self.on_step, r)

    @staticmethod
    def _call(fn: Callable[..., Any] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # a failing callback must not stop detection
            log.exception("detector callback %r failed", fn)

    # -- the live shortcut ---------------------------------------------------------------
    def peek_due(self) -> float | None:
        """When :meth:`peek` should look (Unix time), or None: only while a ddos window
        raised ``elevated`` and waits for its confirming window, after calm or on top
        of an open flash crowd (the detector raises ``elevated`` there only for an
        attack the per-address caps do not contain; inside a ddos or backend incident
        the mode is the detector's business), and only when one more window confirms
        it (``enter_windows`` <= 2)."""
        last = self.detector.last
        if (last is None or not self.enabled or self.early is not None
                or self.mode is not Mode.ELEVATED or last.raw.verdict != DDOS
                or last.state not in (NORMAL, FLASH_CROWD) or self.settings.enter_windows > 2):
            return None
        return last.features.sec + 1 + PEEK_AT

    def peek(self) -> bool:
        """The first part of a ddos candidate's confirming second: when its requests
        come at ``rate_factor`` x the baseline plus ``surge_threshold`` of the shop's
        standard deviations or more (what the candidate's own second had to beat, and
        more than a surge needs to go on), raise ``under_attack`` now rather than at the
        window's close. On top of an open flash crowd the bar is the crowd's own level
        (the higher of the second before the candidate and the 10 s mean, as
        ``Detector._stands_out`` measures a rise) plus the same ``surge_threshold``
        deviations: the crowd alone never reaches it, a flood that goes on does.
        True when it did."""
        if self.peek_due() is None:
            return False
        last = self.detector.last
        assert last is not None
        f = last.features
        sec = f.sec + 1
        start = max(float(sec), self._taken_at)
        n = self._move(since=start)
        span = self._taken_at - start
        if span < 0.2 or self._taken_at >= sec + 1:
            return False
        s = self.settings
        need = max(s.min_elevated_rps, s.rate_factor * f.ref_rps + s.surge_threshold * f.rate_sd)
        on = "a surge"
        if last.state == FLASH_CROWD:
            need = max(need, max(f.rps_prev, f.rps_10) + s.surge_threshold * f.rate_sd)
            on = "an attack on top of the crowd"
        rate = n / span
        if rate < need:
            return False
        self.early = (f"{rate:.0f} req/s in the first {self._taken_at - sec:.2f} s of the next second "
                      f"({on} goes on above {need:.0f})")
        self.mode = Mode.UNDER_ATTACK
        log.warning("detector: mode under_attack (ddos confirmed early: %s)", self.early)
        self._call(self.on_mode, Mode.UNDER_ATTACK, "detector")
        return True

    async def start(self) -> None:
        """Start the once-a-second tick (nothing when ``[detect] enabled = false``)."""
        if not self.enabled:
            log.warning("detector disabled ([detect] enabled = false): mode stays as set by others")
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="shieldwall-detect")

    def next_tick_in(self) -> float:
        """Seconds until the next window may close: the tick wakes just after a
        window's end plus ``live_lateness``, not at a free-running second, so a
        verdict never waits up to a second more for a window already complete."""
        lateness = self.settings.live_lateness
        return min(1.0, max(0.05, 1.0 - (self.clock() - lateness) % 1.0 + TICK_SLACK))

    async def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("detector tick failed")
            due = self.peek_due()
            if due is not None:
                await asyncio.sleep(max(0.0, due - self.clock()))
                try:
                    self.peek()
                except Exception:
                    log.exception("detector peek failed")
            await self._drain_sleep(self.next_tick_in())

    async def _drain_sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, moving the feeds' rows into the windows every
        :data:`DRAIN_EVERY` on the way (the windows get the same rows; a tick
        then has a tenth of a second's rows left to move, not a whole second's).
        Not while a peek waits: it counts the rows since the tick (see the caller)."""
        steps = max(1, round(seconds / DRAIN_EVERY))
        for i in range(steps):
            await asyncio.sleep(seconds / steps)
            if i < steps - 1:
                try:
                    self._move()
                except Exception:
                    log.exception("detector drain failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- admin routes ---------------------------------------------------------------------
    def verdict(self) -> dict[str, Any]:
        det = self.detector
        last = det.last
        cur = det.active
        since: str | None
        if cur is not None:
            verdict, kind, conf, evidence, since = (
                cur.verdict, cur.kind, cur.confidence, list(cur.evidence), iso(cur.start))
        else:
            verdict, kind, evidence = NORMAL, None, []
            conf = 1.0
            if last is not None and last.raw.verdict != NORMAL:
                evidence = [f"pending: {last.raw.verdict}", *last.raw.evidence]
                if self.early is not None:
                    evidence.append(f"pending: under_attack before the window closed: {self.early}")
                conf = round(1.0 - last.raw.confidence / 2, 2)
            since = iso(self._normal_since) if self._normal_since is not None else None
        return {"verdict": verdict, "kind": kind, "confidence": conf, "evidence": evidence,
                "since": since, "mode": self.mode.value,
                "window": last.features.as_dict() if last is not None else {},
                "events_dropped": self.dropped, "events_late": self.builder.late,
                "enabled": self.enabled,
                **({"cluster": self.cluster.status()} if self.cluster is not None else {})}

    async def _verdict_route(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse.of_json(self.verdict())

    async def _incidents_route(self, req: AdminRequest) -> AdminResponse:
        items = [dict(i.as_json(), open=False) for i in self.incidents]
        if self.detector.current is not None:
            items.append(dict(self.detector.current.as_json(), open=True))
        return AdminResponse.of_json({"incidents": items})
