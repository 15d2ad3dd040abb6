"""The incident record and its lifecycle: open, update, acknowledge, close.

Plain values with pure transitions; the store persists them and the shell
decides when. Times are unix seconds (wall clock), because incidents outlive
the process and are read by people.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shieldwall.monitor._quorum import Outage, Recovery


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    check: str
    started_at: float
    declared_at: float
    reason: str
    probes: tuple[str, ...] = ()
    updated_at: float = 0.0
    ended_at: float | None = None
    recovered_at: float | None = None
    acked_at: float | None = None
    acked_by: str = ""
    verdict: str | None = None
    verdict_kind: str | None = None
    quiet: bool = False  # declared inside a maintenance window

    @property
    def open(self) -> bool:
        return self.ended_at is None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    @property
    def title(self) -> str:
        """The public words for it: no probe names, no addresses, no error texts."""
        return f"{self.check} is down" if self.open else f"{self.check} was down"

    def duration(self, now: float) -> float:
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)

    @property
    def time_to_detect(self) -> float:
        return max(0.0, self.declared_at - self.started_at)


def open_incident(check: str, outage: Outage, *, quiet: bool = False) -> Incident:
    """A new incident (id 0 until the store assigns one)."""
    return Incident(
        id=0,
        check=check,
        started_at=outage.started_at,
        declared_at=outage.declared_at,
        reason=outage.reason,
        probes=outage.probes,
        updated_at=outage.declared_at,
        quiet=quiet,
    )


def update(incident: Incident, *, reason: str, now: float) -> Incident:
    if not incident.open:
        return incident
    return dataclasses.replace(incident, reason=reason or incident.reason, updated_at=now)


def acknowledge(incident: Incident, *, by: str, now: float) -> Incident:
    """Idempotent: the first acknowledgement wins and is kept."""
    if incident.acked:
        return incident
    return dataclasses.replace(incident, acked_at=now, acked_by=by or "someone", updated_at=now)


def attach_verdict(incident: Incident, *, verdict: str, kind: str | None) -> Incident:
    return dataclasses.replace(incident, verdict=verdict, verdict_kind=kind)


def close(incident: Incident, recovery: Recovery) -> Incident:
    if not incident.open:
        return incident
    ended = max(recovery.ended_at, incident.started_at)
    return dataclasses.replace(
        incident, ended_at=ended, recovered_at=recovery.recovered_at, updated_at=recovery.recovered_at
    )
