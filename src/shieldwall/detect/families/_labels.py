"""What a family says happened: labelled events and the stretches where nothing may be raised.

Labels are written by the family from what it generated, never from what the
detector would say. Times are Unix seconds (UTC) of the traffic itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("normal", "flash_crowd", "ddos", "backend_failure")
KINDS = ("flood", "randomized", "slow", "cache_bust")


@dataclass(frozen=True)
class Event:
    """One thing that happened to the shop, as the family made it happen."""

    name: str
    """What the family did, e.g. ``low_and_slow`` or ``newsletter_bump``."""
    start: float
    end: float
    verdict: str
    kind: str | None = None
    """For ``ddos``: ``flood``, ``randomized``, ``slow`` or ``cache_bust``."""
    observable_start: float | None = None
    """When the event first leaves a trace a log reader could see (a slowloris
    only shows when the server cuts its connections); None: ``start``."""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"event {self.name}: verdict {self.verdict!r} not in {VERDICTS}")
        if (self.verdict == "ddos") != (self.kind is not None):
            raise ValueError(f"event {self.name}: a ddos needs a kind, nothing else has one")
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"event {self.name}: kind {self.kind!r} not in {KINDS}")
        if not self.start < self.end:
            raise ValueError(f"event {self.name}: start {self.start} not before end {self.end}")

    @property
    def seen_from(self) -> float:
        return self.start if self.observable_start is None else self.observable_start

    @property
    def incident(self) -> bool:
        """True for what must be reported; a ``normal`` event is a bump that must not be."""
        return self.verdict != "normal"


@dataclass
class Labels:
    family: str
    seed: int
    start: float
    """First second of traffic."""
    end: float
    tz: str
    """The server's UTC offset as written in the log, e.g. ``+0100``."""
    events: list[Event] = field(default_factory=list)
    quiet_day: bool = False
    """No incident at all may be reported anywhere in this log."""
    notes: dict[str, Any] = field(default_factory=dict)
    """What the seed drew (rates, shares, style), for reading a result."""

    @property
    def incidents(self) -> list[Event]:
        return [e for e in self.events if e.incident]

    def quiet_stretches(self, drain: float) -> list[tuple[float, float]]:
        """Where no incident is allowed: everything but the labelled incidents and
        ``drain`` seconds after each (their after-effects)."""
        out: list[tuple[float, float]] = []
        t = self.start
        for e in sorted(self.incidents, key=lambda e: e.start):
            if e.start > t:
                out.append((t, e.start))
            t = max(t, e.end + drain)
        if t < self.end:
            out.append((t, self.end))
        return out

    def as_json(self) -> dict[str, Any]:
        return {"family": self.family, "seed": self.seed, "start": self.start, "end": self.end,
                "tz": self.tz, "quiet_day": self.quiet_day, "notes": self.notes,
                "events": [asdict(e) for e in self.events]}
