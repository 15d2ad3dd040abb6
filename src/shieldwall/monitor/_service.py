"""The running monitor: the IO shell around :class:`MonitorCore`.

Per check, a round loop starts every local probe at the top of each interval,
waits until every probe (local and remote) has reported or the round's
deadline (timeout + grace) passes, and closes the round. An escalation loop
turns due pages into Apprise deliveries on a thread pool, one per channel,
recording each page before it is sent and each delivery once the provider
took it (at least once: see _delivery.py). Everything the core returns is written to SQLite at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shieldwall.monitor._alerts import deliver
from shieldwall.monitor._checks import run_check
from shieldwall.monitor._config import CheckSettings, MonitorSettings, parse_listen
from shieldwall.monitor._delivery import Outgoing
from shieldwall.monitor._engine import CheckRule, MonitorCore, RoundOutcome
from shieldwall.monitor._escalation import maintenance_at
from shieldwall.monitor._history import Coverage
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._messages import render
from shieldwall.monitor._metrics import MonitorMetrics
from shieldwall.monitor._quorum import Health, ProbeResult, RoundReport
from shieldwall.monitor._shield import fetch_verdict
from shieldwall.monitor._store import Store

log = logging.getLogger("shieldwall.monitor")

STATE_FILE = "monitor.json"
VERDICT_WAIT = 1.5  # the first page waits at most this long for the shield's verdict


@dataclass(slots=True)
class CheckState:
    """What the status page and the API show for a check right now."""

    settings: CheckSettings
    health: Health = Health.UNKNOWN
    last_round: RoundReport | None = None
    since: float = 0.0


def read_state(data_dir: str | Path) -> dict[str, Any] | None:
    """The running monitor's address and API token, as it left them."""
    try:
        data = json.loads((Path(data_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        *,
        data_dir: str | Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.data_dir = Path(data_dir or settings.monitor.data_dir)
        self.wall = wall
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_data_dir(self.data_dir)
        self.store = Store.in_dir(self.data_dir)
        self.metrics = MonitorMetrics()
        self.policy = settings.policy()
        self.token = settings.api_token() or secrets.token_urlsafe(24)
        self.probe_tokens = {p.token: p.name for p in settings.probes.remote}
        self.local_probes = {p.name: p.source_address for p in settings.probes.local}
        rules = {
            c.name: CheckRule(
                tuple(settings.probes_for(c)),
                quorum=settings.quorum_for(c),
                confirm_rounds=settings.probes.confirm_rounds,
                recover_rounds=settings.probes.recover_rounds,
            )
            for c in settings.checks
        }
        resume = []
        for inc, sent in self.store.resumable():
            if inc.check not in rules:
                # nobody watches this check any more: it cannot recover, so it must not page forever
                now = wall()
                gone = dataclasses.replace(
                    inc, ended_at=inc.ended_at or now, recovered_at=inc.recovered_at or now, updated_at=now
                )
                self.store.save_incident(gone)
                log.warning("incident #%d: check %r is no longer configured; closed without paging", inc.id, inc.check)
                continue
            resume.append((inc, sent))
        self.instance = self.store.meta("instance") or ""
        if not self.instance:
            self.instance = secrets.token_hex(4)
            self.store.set_meta("instance", self.instance)
        self.core = MonitorCore(
            rules,
            self.policy,
            resume=resume,
            next_id=self.store.next_id(),
            instance=self.instance,
            retry=settings.retry(),
        )
        self.checks = {c.name: CheckState(c) for c in settings.checks}
        self._coverage = {c.name: Coverage(slack=c.interval / 2) for c in settings.checks}
        for inc, outbox in resume:
            if inc.open and inc.check in self.checks:
                self.checks[inc.check].health = Health.DOWN
                self.checks[inc.check].since = inc.started_at
            owed = [f"{o.key} to {', '.join(d.target for d in o.pending)}" for o in outbox if o.pending]
            log.warning(
                "resuming incident #%d on %s (%s), delivered: %s; owed (sent again unless proven sent): %s",
                inc.id,
                inc.check,
                "open" if inc.open else "closed",
                ", ".join(o.key for o in outbox if o.status.value == "sent") or "nothing",
                "; ".join(owed) or "nothing",
            )
        self.metrics.incidents_open.set(sum(1 for i, _ in resume if i.open))
        self._round_ready = {c: asyncio.Event() for c in self.checks}
        self._kick = asyncio.Event()
        self._stop = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="apprise")
        self._verdict_pending: dict[int, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_warning: dict[tuple[str, str], bool] = {}
        self.url = ""
        self.sock: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------
    def bind(self) -> socket.socket:
        host, port = parse_listen(self.settings.monitor.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
        bound = sock.getsockname()
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound[1]}"
        self.sock = sock
        return sock

    def _write_state(self) -> None:
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"url": self.url, "pid": os.getpid(), "token": self.token}, f)
        os.replace(tmp, path)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Release the pool, the database and the data directory's lock
        (:meth:`run` does this on its way out)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        self._lock.close()

    async def run(self) -> None:
        import uvicorn

        from shieldwall.monitor._web import build_app

        if self.sock is None:
            self.bind()
        assert self.sock is not None
        now = self.wall()
        for c in self.settings.checks:
            self.store.note_check(c.name, c.url, now)
        self.store.set_meta("revenue_per_minute", str(self.settings.monitor.revenue_per_minute))
        self.store.set_meta("currency", self.settings.monitor.currency)
        self.store.set_meta("title", self.settings.monitor.title)
        config = uvicorn.Config(
            build_app(self), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        # the monitor owns SIGINT/SIGTERM (the CLI turns them into stop())
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        web = asyncio.create_task(server.serve(sockets=[self.sock]))
        self._write_state()
        log.warning("monitor listening on %s (status page, /metrics, probe and ack API)", self.url)
        # Apprise loads its plugins on first use (~0.3 s): pay that now, not in the first page
        await asyncio.get_running_loop().run_in_executor(self._pool, _warm_apprise)
        loops = [asyncio.create_task(self._round_loop(c)) for c in self.settings.checks]
        loops.append(asyncio.create_task(self._escalation_loop()))
        try:
            await self._stop.wait()
        finally:
            for t in loops:
                t.cancel()
            for t in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            # let deliveries in flight finish, so their rows are not left "sending"
            pending = [t for t in self._tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=5)
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await web
            with contextlib.suppress(OSError):
                (self.data_dir / STATE_FILE).unlink()
            self.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- rounds --------------------------------------------------------------------
    def accept(self, result: ProbeResult) -> bool:
        """A result from a local or remote probe, counted in the open round."""
        if not self.core.record(result):
            return False
        if self.core.round_complete(result.check):
            self._round_ready[result.check].set()
        return True

    async def _probe(self, check: CheckSettings, probe: str) -> None:
        try:
            result = await run_check(check, probe, source_address=self.local_probes[probe], wall=self.wall)
        except Exception:  # a bug of ours is not an outage of theirs: the probe is "missing"
            log.exception("probe %s crashed on %s", probe, check.name)
            return
        self.accept(result)

    async def _round_loop(self, check: CheckSettings) -> None:
        """Rounds on a fixed grid (no drift). A round closes when every probe
        has reported or at start + timeout + grace; a result that arrives
        later is not lost, it counts in the next round. If a round overruns
        the interval, the next one starts at the next grid slot (never a burst)."""
        loop = asyncio.get_running_loop()
        ready = self._round_ready[check.name]
        mine = [p for p in self.settings.probes_for(check) if p in self.local_probes]
        close_after = check.timeout + self.settings.monitor.round_grace
        t0 = loop.time()
        n = 0
        while True:
            start = t0 + n * check.interval
            await asyncio.sleep(max(0.0, start - loop.time()))
            for p in mine:
                self._spawn(self._probe(check, p))  # bounded by the check's own timeout
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), timeout=max(0.0, start + close_after - loop.time()))
            ready.clear()
            self.close_round(check.name)
            n = max(n + 1, math.ceil((loop.time() - t0) / check.interval))

    def close_round(self, check: str) -> RoundOutcome:
        """Close the check's round now: judge it, record what changed."""
        outcome = self.core.close_round(check, self.wall())
        self._handle(outcome)
        return outcome

    def _handle(self, out: RoundOutcome) -> None:
        rep = out.report
        state = self.checks[rep.check]
        seen = [r.at for r in (*rep.failing, *rep.passing)]
        if seen:  # the check was watched this round; a round of missing probes is unknown time
            new, span = self._coverage[rep.check].note(min(seen), state.settings.interval)
            self.store.observe(rep.check, span, new=new)
        if rep.health is not state.health:
            state.since = rep.closed_at
        state.health = rep.health
        state.last_round = rep
        self.metrics.round(rep)
        for r in (*rep.failing, *rep.passing):
            key = (rep.check, r.probe)
            if self._last_warning.get(key, True) != r.ok:
                if r.ok:
                    log.info("probe %s sees %s up again", r.probe, rep.check)
                else:
                    log.warning("probe %s sees %s failing: %s (%s)", r.probe, rep.check, r.reason, rep.health.value)
            self._last_warning[key] = r.ok
        if out.opened is not None:
            inc = out.opened
            self.store.save_incident(inc)
            self.metrics.incidents.labels(inc.check).inc()
            self.metrics.incidents_open.inc()
            log.error("incident #%d opened: %s down since %.3f: %s", inc.id, inc.check, inc.started_at, inc.reason)
            if self.settings.monitor.shield_admin:
                self._verdict_pending[inc.id] = self.wall() + VERDICT_WAIT
                self._spawn(self._attach_verdict(inc.id))
            self._kick.set()
        if out.updated is not None:
            self.store.save_incident(out.updated)
            if out.updated.verdict is None and self.settings.monitor.shield_admin and out.updated.id not in self._verdict_pending:
                self._spawn(self._attach_verdict(out.updated.id))
        if out.closed is not None:
            inc = out.closed
            self.store.save_incident(inc)
            self.metrics.incidents_open.dec()
            log.warning("incident #%d closed: %s was down %.1fs", inc.id, inc.check, inc.duration(inc.ended_at or 0))
            self._kick.set()

    async def _attach_verdict(self, incident_id: int) -> None:
        admin = self.settings.monitor.shield_admin
        assert admin is not None
        try:
            got = await fetch_verdict(admin, self.settings.monitor.shield_token)
            if got is not None:
                inc = self.core.attach_verdict(incident_id, got[0], got[1])
                if inc is not None:
                    self.store.save_incident(inc)
        finally:
            self._verdict_pending.pop(incident_id, None)
            self._kick.set()

    # -- people --------------------------------------------------------------------
    def acknowledge(self, incident_id: int, by: str) -> Incident | None:
        inc = self.core.acknowledge(incident_id, by=by, now=self.wall())
        if inc is None:
            stored = self.store.incident(incident_id)
            if stored is None:
                return None
            return stored  # closed and done: nothing to stop
        self.store.save_incident(inc)
        log.warning("incident #%d acknowledged by %s", incident_id, inc.acked_by)
        return inc

    async def _escalation_loop(self) -> None:
        tick = max(0.05, min(1.0, min(c.interval for c in self.settings.checks) / 4))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=tick)
            self._kick.clear()
            self.dispatch_due()

    def dispatch_due(self) -> list[asyncio.Task[None]]:
        """Plan what is due, persist it, start every delivery due now (each
        channel on its own, in the thread pool); returns their tasks."""
        now = self.wall()
        for o in self.core.plan(now):
            self.store.save_outgoing(o, now=now)
        hold = [i for i, until in self._verdict_pending.items() if until > now]
        tasks = []
        for inc, o, d in self.core.sends(now, hold=hold):
            tasks.append(self._spawn(self._send(inc, o, d.target, late=d.attempts > 0)))
        self._update_backlog(now)
        return tasks

    async def deliver_due(self) -> None:
        """One escalation tick, waiting for its deliveries (tests drive this
        with their own clock)."""
        for _ in range(len(self.policy.steps) + 2):  # a failed step brings the next one forward
            self._kick.clear()
            tasks = self.dispatch_due()
            if tasks:
                await asyncio.wait(tasks)
            if not self._kick.is_set():
                return

    async def _send(self, inc: Incident, o: Outgoing, target: str, *, late: bool) -> None:
        now = self.wall()
        title, body = render(o.page, inc, now=now, dedup=o.dedup, late_since=o.created_at if late else None)
        urls = self.settings.alerts.urls(target) if target in self.settings.alerts.targets else []
        loop = asyncio.get_running_loop()
        try:
            ok, error = await loop.run_in_executor(self._pool, deliver, urls, title, body, o.page.kind, o.dedup)
        except Exception as e:  # the pool is shutting down
            ok, error = False, f"{type(e).__name__}: {e}"
        now = self.wall()
        page, exhausted = self.core.outcome(inc.id, o.key, target, ok=ok, error=error, now=now)
        if page is None:
            return
        self.store.save_outgoing(page, title=title, body=body, now=now)
        self.metrics.notifications.labels(o.page.kind.value, "sent" if ok else "failed").inc()
        d = page.deliveries[target]
        if ok:
            log.warning("sent %s for incident #%d to %s (%s)", o.key, inc.id, target, o.dedup)
        else:
            log.error(
                "could not send %s for incident #%d to %s (attempt %d, next in %.0fs): %s",
                o.key, inc.id, target, d.attempts, max(0.0, d.next_try - now), error,
            )
        if exhausted:
            fallback = [t for t in page.deliveries if page.deliveries[t].fallback]
            log.error(
                "every channel of %s for incident #%d failed: escalating at once%s",
                o.key, inc.id, f"; trying the fallback {', '.join(fallback)}" if fallback else "",
            )
            self._kick.set()
        self._update_backlog(now)

    def _update_backlog(self, now: float) -> None:
        owed = self.core.undelivered()
        self.metrics.undelivered.set(len(owed))
        self.metrics.undelivered_oldest.set(max((now - o.created_at for _, o in owed), default=0.0))

    def undelivered(self) -> list[dict[str, Any]]:
        """Pages tried and not yet through, for the status API (behind the token)."""
        now = self.wall()
        return [
            {
                "incident": inc.id,
                "check": inc.check,
                "page": o.key,
                "dedup_key": o.dedup,
                "since": o.created_at,
                "owed_for": now - o.created_at,
                "channels": [
                    {"target": d.target, "attempts": d.attempts, "next_try": d.next_try, "error": d.error}
                    for d in o.pending
                ],
            }
            for inc, o in self.core.undelivered()
        ]

    # -- views -----------------------------------------------------------------------
    def status(self, *, full: bool = False) -> dict[str, Any]:
        """The state of every check. The public view says up/degraded/down and
        the incident's title; probe names, failure reasons (addresses, error
        texts) and the delivery backlog only with ``full`` (the API token)."""
        now = self.wall()
        window = maintenance_at(self.policy.maintenance, now)
        checks = []
        for name, st in self.checks.items():
            rep = st.last_round
            open_inc = self.core.open_incident(name)
            entry: dict[str, Any] = {
                "name": name,
                "health": public_health(st.health),
                "since": st.since or None,
                "incident": {"id": open_inc.id, "title": open_inc.title} if open_inc else None,
            }
            if full:
                probes = self.settings.probes_for(st.settings)
                entry |= {
                    "places": self.settings.places_for(st.settings),
                    "probes": len(probes),
                    "quorum": self.settings.quorum_for(st.settings),
                    "probe_health": st.health.value,
                    "failing": [r.to_json() for r in rep.failing] if rep else [],
                    "passing": [r.probe for r in rep.passing] if rep else [],
                    "missing": list(rep.missing) if rep else [],
                }
            checks.append(entry)
        out: dict[str, Any] = {
            "title": self.settings.monitor.title,
            "now": now,
            "maintenance": {"reason": window.reason, "until": window.end} if window else None,
            "checks": checks,
        }
        if full:
            out["undelivered"] = self.undelivered()
        return out


_PUBLIC_HEALTH = {
    Health.UP: "up",
    Health.WARNING: "degraded",
    Health.SUSPECT: "degraded",
    Health.DOWN: "down",
    Health.UNKNOWN: "unknown",
}


def public_health(h: Health) -> str:
    """What the public may know: up, degraded (some probes see trouble, or an
    outage is being confirmed), down, or unknown (no round yet)."""
    return _PUBLIC_HEALTH[h]


def _warm_apprise() -> None:
    import apprise

    apprise.Apprise().add("json://127.0.0.1/warm-up")


class DataDirBusy(RuntimeError):
    pass


def _lock_data_dir(data_dir: Path) -> Any:
    """One monitor per data directory: two would page twice for everything."""
    import fcntl

    f = open(data_dir / "monitor.lock", "a+")  # noqa: SIM115 - held for the monitor's life
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise DataDirBusy(f"another monitor is already running on {data_dir}") from None
    return f
