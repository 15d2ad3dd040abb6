"""The monitor's whole brain, without a socket: quorum, incidents, escalation.

The IO shell feeds it probe results and the time, persists what it returns and
sends the pages it plans; the same object drives a one-hour simulated run in
the tests. Nothing here sleeps, reads a clock or touches a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shieldwall.monitor import _incident as lifecycle
from shieldwall.monitor._escalation import Page, Policy, due_pages, maintenance_at, recovery_page
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
    sent: set[str] = field(default_factory=set)


class MonitorCore:
    def __init__(
        self,
        rules: Mapping[str, CheckRule],
        policy: Policy,
        *,
        resume: Iterable[tuple[Incident, Iterable[str]]] = (),
        next_id: int = 1,
    ) -> None:
        """``resume``: incidents from the store (open, or closed awaiting their
        recovery message) with the page keys already sent for each."""
        self.policy = policy
        self._next_id = next_id
        self._tracked: dict[int, _Tracked] = {}
        down_checks: set[str] = set()
        for inc, sent in resume:
            self._tracked[inc.id] = _Tracked(inc, set(sent))
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
            self._tracked[inc.id] = _Tracked(inc)
            out.opened = inc
        elif current is not None and report.recovery is not None:
            closed = lifecycle.close(current, report.recovery)
            self._tracked[closed.id].incident = closed
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
        return t.incident

    def attach_verdict(self, incident_id: int, verdict: str, kind: str | None) -> Incident | None:
        t = self._tracked.get(incident_id)
        if t is None:
            return None
        t.incident = lifecycle.attach_verdict(t.incident, verdict=verdict, kind=kind)
        return t.incident

    def due(self, now: float) -> list[tuple[Incident, Page]]:
        """Pages to send now. The caller records each with :meth:`mark_sent`
        before it sends, so a crash can lose a page but never repeat one."""
        out: list[tuple[Incident, Page]] = []
        for t in list(self._tracked.values()):
            inc = t.incident
            frozen = frozenset(t.sent)
            if inc.open:
                for page in due_pages(
                    self.policy,
                    declared_at=inc.declared_at,
                    acked=inc.acked,
                    closed=False,
                    sent=frozen,
                    now=now,
                ):
                    out.append((inc, page))
            elif "recovery" in frozen:
                del self._tracked[inc.id]  # the story is told
            else:
                page_r = recovery_page(self.policy, sent=frozen, now=now)
                if page_r is None:
                    del self._tracked[inc.id]  # nobody was paged: nothing to say
                else:
                    out.append((inc, page_r))
        return out

    def mark_sent(self, incident_id: int, key: str) -> None:
        t = self._tracked.get(incident_id)
        if t is None:
            return
        t.sent.add(key)

    def unmark(self, incident_id: int, key: str) -> None:
        """A delivery failed and may be retried: plan ``key`` again."""
        t = self._tracked.get(incident_id)
        if t is not None:
            t.sent.discard(key)

    def sent(self, incident_id: int) -> frozenset[str]:
        t = self._tracked.get(incident_id)
        return frozenset(t.sent) if t else frozenset()

