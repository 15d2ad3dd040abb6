"""The monitor's whole brain, without a socket: quorum, incidents, escalation.

The IO shell feeds it probe results and the time, persists what it returns and
sends the pages it plans; the same object drives a one-hour simulated run in
the tests. Nothing here sleeps, reads a clock or touches a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from shieldwall.monitor import _incident as lifecycle
from shieldwall.monitor._delivery import (
    Delivery,
    Outgoing,
    RetryPolicy,
    eligible,
    new_outgoing,
    paged_channels,
    record_outcome,
)
from shieldwall.monitor._escalation import (
    Page,
    PageKind,
    Policy,
    due_pages,
    maintenance_at,
    recovery_page,
)
from shieldwall.monitor._incident import Incident
from shieldwall.monitor._quorum import ProbeResult, QuorumTracker, RoundReport, summarize


@dataclass(frozen=True, slots=True)
class CheckRule:
    probes: tuple[str, ...]
    quorum: int
    confirm_rounds: int
    recover_rounds: int = 1


@dataclass(slots=True)
class RoundOutcome:
    report: RoundReport
    opened: Incident | None = None
    updated: Incident | None = None
    closed: Incident | None = None


@dataclass(slots=True)
class _Tracked:
    incident: Incident
    outbox: list[Outgoing] = field(default_factory=list)

    @property
    def planned(self) -> frozenset[str]:
        return frozenset(o.key for o in self.outbox)

    def exhausted_steps(self) -> dict[int, float]:
        return {
            o.page.step: o.exhausted
            for o in self.outbox
            if o.page.kind is PageKind.ALERT and o.exhausted is not None
        }


class MonitorCore:
    def __init__(
        self,
        rules: Mapping[str, CheckRule],
        policy: Policy,
        *,
        resume: Iterable[tuple[Incident, Iterable[Outgoing]]] = (),
        next_id: int = 1,
        instance: str = "local",
        retry: RetryPolicy | None = None,
    ) -> None:
        """``resume``: incidents from the store (open, or closed with pages
        still owed) with every page planned for each, delivered or not.
        ``instance`` names this monitor in the deduplication keys."""
        self.policy = policy
        self.instance = instance
        self.retry = retry or RetryPolicy(fallback=policy.fallback)
        self._next_id = next_id
        self._tracked: dict[int, _Tracked] = {}
        self._dirty: dict[tuple[int, str], Outgoing] = {}
        down_checks: set[str] = set()
        for inc, outbox in resume:
            self._tracked[inc.id] = _Tracked(inc, list(outbox))
            self._next_id = max(self._next_id, inc.id + 1)
            if inc.open:
                down_checks.add(inc.check)
        self.trackers = {
            name: QuorumTracker(
                name,
                rule.probes,
                quorum=rule.quorum,
                confirm_rounds=rule.confirm_rounds,
                recover_rounds=rule.recover_rounds,
                down=name in down_checks,
            )
            for name, rule in rules.items()
        }

    # -- probes and rounds ---------------------------------------------------
    def record(self, result: ProbeResult) -> bool:
        tracker = self.trackers.get(result.check)
        return tracker.record(result) if tracker else False

    def round_complete(self, check: str) -> bool:
        return self.trackers[check].complete()

    def open_incident(self, check: str) -> Incident | None:
        for t in self._tracked.values():
            if t.incident.check == check and t.incident.open:
                return t.incident
        return None

    def close_round(self, check: str, now: float) -> RoundOutcome:
        report = self.trackers[check].close_round(now)
        out = RoundOutcome(report)
        current = self.open_incident(check)
        if report.outage is not None and current is None:
            quiet = maintenance_at(self.policy.maintenance, report.outage.declared_at) is not None
            inc = lifecycle.open_incident(check, report.outage, quiet=quiet)
            inc = dataclasses.replace(inc, id=self._next_id)
            self._next_id += 1
            for older in self._tracked.values():
                if older.incident.check == check:
                    self._retire(older, report.outage.declared_at)
            self._tracked[inc.id] = _Tracked(inc)
            out.opened = inc
        elif current is not None and report.recovery is not None:
            closed = lifecycle.close(current, report.recovery)
            tracked = self._tracked[closed.id]
            tracked.incident = closed
            self._supersede(tracked, lambda o: o.page.kind is PageKind.REALERT)
            out.closed = closed
        elif current is not None and report.failing:
            reason = summarize(report.failing)
            if reason != current.reason:
                updated = lifecycle.update(current, reason=reason, now=now)
                self._tracked[updated.id].incident = updated
                out.updated = updated
        return out

    # -- people --------------------------------------------------------------
    def incident(self, incident_id: int) -> Incident | None:
        t = self._tracked.get(incident_id)
        return t.incident if t else None

    def acknowledge(self, incident_id: int, *, by: str, now: float) -> Incident | None:
        t = self._tracked.get(incident_id)
        if t is None:
            return None
        t.incident = lifecycle.acknowledge(t.incident, by=by, now=now)
        if t.incident.open:  # a person has it: nobody else needs waking
            self._supersede(t, lambda o: o.page.kind is not PageKind.RECOVERY)
        return t.incident

    def attach_verdict(self, incident_id: int, verdict: str, kind: str | None) -> Incident | None:
        t = self._tracked.get(incident_id)
        if t is None:
            return None
        t.incident = lifecycle.attach_verdict(t.incident, verdict=verdict, kind=kind)
        return t.incident

    # -- pages ---------------------------------------------------------------
    def _supersede(self, t: _Tracked, which: Callable[[Outgoing], bool]) -> None:
        for o in t.outbox:
            if which(o) and o.pending:
                o.supersede()
                self._dirty[(o.incident_id, o.key)] = o

    def _retire(self, t: _Tracked, now: float) -> None:
        """A newer incident on the same check tells the current truth: the
        older one's owed pages, its recovery included, are superseded."""
        self._supersede(t, lambda o: True)
        if "recovery" not in t.planned:
            paged = paged_channels(t.outbox)
            if paged:
                o = new_outgoing(t.incident.id, Page("recovery", PageKind.RECOVERY, paged, now), instance=self.instance, now=now)
                o.supersede()
                t.outbox.append(o)
                self._dirty[(o.incident_id, o.key)] = o

    def _add(self, t: _Tracked, page: Page, now: float) -> None:
        if page.kind is PageKind.REALERT:
            self._supersede(t, lambda o: o.page.kind is PageKind.REALERT)
        o = new_outgoing(t.incident.id, page, instance=self.instance, now=now)
        t.outbox.append(o)
        self._dirty[(o.incident_id, o.key)] = o

    def plan(self, now: float) -> list[Outgoing]:
        """Plan what is due at ``now``; returns every page planned or changed
        since the last call, for the caller to persist before it sends."""
        for t in list(self._tracked.values()):
            inc = t.incident
            if inc.open:
                for page in due_pages(
                    self.policy,
                    declared_at=inc.declared_at,
                    acked=inc.acked,
                    closed=False,
                    sent=t.planned,
                    now=now,
                    exhausted=t.exhausted_steps(),
                ):
                    self._add(t, page, now)
                continue
            if "recovery" not in t.planned:
                page_r = recovery_page(paged_channels(t.outbox), sent=t.planned, now=now)
                if page_r is not None:
                    self._add(t, page_r, now)
            if all(not o.pending for o in t.outbox) and (
                "recovery" in t.planned or not paged_channels(t.outbox)
            ):
                del self._tracked[inc.id]  # the story is told (or there was nobody to tell)
        changed = list(self._dirty.values())
        self._dirty.clear()
        return changed

    def sends(self, now: float, *, hold: Iterable[int] = ()) -> list[tuple[Incident, Outgoing, Delivery]]:
        """Deliveries to try now (marked in flight until :meth:`outcome`).
        ``hold``: incidents whose first page waits a moment (the shield's verdict)."""
        held = set(hold)
        out: list[tuple[Incident, Outgoing, Delivery]] = []
        for t in self._tracked.values():
            for o, d in eligible(t.outbox, now):
                if t.incident.id in held and d.attempts == 0:
                    continue
                d.in_flight = True
                out.append((t.incident, o, d))
        return out

    def outcome(
        self, incident_id: int, key: str, target: str, *, ok: bool, error: str, now: float
    ) -> tuple[Outgoing | None, bool]:
        """One delivery's outcome: (the page, to persist; True when every
        channel of it has now failed, so the next step is due at once)."""
        t = self._tracked.get(incident_id)
        o = next((x for x in t.outbox if x.key == key), None) if t else None
        if o is None:
            return None, False
        exhausted = record_outcome(o, target, ok=ok, error=error, now=now, policy=self.retry)
        return o, exhausted

    def outbox(self, incident_id: int) -> list[Outgoing]:
        t = self._tracked.get(incident_id)
        return list(t.outbox) if t else []

    def undelivered(self) -> list[tuple[Incident, Outgoing]]:
        """Pages tried and not yet through: what an outside system should alert on."""
        return [(t.incident, o) for t in self._tracked.values() for o in t.outbox if o.failed_once]

    def planned(self, incident_id: int) -> frozenset[str]:
        t = self._tracked.get(incident_id)
        return t.planned if t else frozenset()
