"""What the load generators count (pure: times are passed in).

Per phase: legitimate requests, how many were good (2xx/3xx within
``OK_WITHIN_S``), refusals, failures, latency in an HDR histogram, checkouts
started and completed; per second: request and good counts for the
timeline. Attack traffic is counted the same way, without latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

OK_WITHIN_S = 2.0
"""A legitimate request counts as goodput only if answered 2xx/3xx within this."""
REFUSED = frozenset({403, 429, 503})


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, 120_000_000, 3)  # microseconds, up to 2 minutes


@dataclass
class LegitPhase:
    requests: int = 0
    ok: int = 0
    slow: int = 0
    """2xx/3xx but later than OK_WITHIN_S."""
    refused: int = 0
    """Answered 403/429/503 (after any challenge was solved)."""
    failed: int = 0
    """No response: refused connection, reset, timeout."""
    other: int = 0
    challenges: int = 0
    checkouts_started: int = 0
    checkouts_completed: int = 0
    sessions: int = 0
    hist: HdrHistogram = field(default_factory=new_histogram)
    plain: HdrHistogram = field(default_factory=new_histogram)
    """Latency of the answered requests that met no challenge on the way."""
    challenged_requests: int = 0
    """Requests that met a challenge (its solving and the verify hops are in their latency)."""

    def summary(self) -> dict[str, float | int]:
        n = self.hist.get_total_count()
        return {
            "requests": self.requests, "ok": self.ok,
            "goodput": round(self.ok / self.requests, 4) if self.requests else 0.0,
            "slow": self.slow, "refused": self.refused, "failed": self.failed, "other": self.other,
            "challenges_solved": self.challenges, "sessions": self.sessions,
            "p50_ms": round(self.hist.get_value_at_percentile(50) / 1000, 2) if n else 0.0,
            "p99_ms": round(self.hist.get_value_at_percentile(99) / 1000, 2) if n else 0.0,
            "checkouts_started": self.checkouts_started,
            "checkouts_completed": self.checkouts_completed,
            "challenged_requests": self.challenged_requests,
            "p99_ms_unchallenged": (round(self.plain.get_value_at_percentile(99) / 1000, 2)
                                    if self.plain.get_total_count() else 0.0),
        }


class Bins:
    """Counts per whole second since the drill's start."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def add(self, t: float, n: int = 1) -> None:
        i = max(0, int(t))
        if i >= len(self.counts):
            self.counts.extend([0] * (i + 1 - len(self.counts)))
        self.counts[i] += n

    def at(self, i: int) -> int:
        return self.counts[i] if 0 <= i < len(self.counts) else 0


class LegitStats:
    def __init__(self) -> None:
        self.phases: dict[str, LegitPhase] = {}
        self.requests = Bins()
        self.good = Bins()
        self.acknowledged: set[str] = set()
        """Checkout intents (session ids) the shop confirmed to the shopper."""
        self.started: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.exchanges = 0
        self.access: Counter[str] = Counter()
        """Sessions by how they reached the shop (own address, carrier NAT, IPv6)."""
        self.client_addresses: set[str] = set()
        """Every address a shopper's session came from, as the shop should see it
        (its own, its carrier NAT's, or the IPv6 address its balancer hop named)."""
        self.latencies: list[tuple[float, float]] = []
        """(start time, latency) of every answered request, for p99 over any interval."""
        """HTTP exchanges answered (a logical request may take several: redirects, challenges)."""

    def phase(self, name: str) -> LegitPhase:
        ph = self.phases.get(name)
        if ph is None:
            ph = self.phases[name] = LegitPhase()
        return ph

    def record(self, phase: str, t: float, latency: float, status: int | None,
               error: str | None = None, challenged: bool = False) -> bool:
        """One logical request (challenge and redirects folded in); returns goodness.
        ``challenged``: it met a challenge on the way (the split in the report)."""
        ph = self.phase(phase)
        ph.requests += 1
        if challenged:
            ph.challenged_requests += 1
        self.requests.add(t)
        good = False
        if status is None:
            ph.failed += 1
            if error:
                self.errors[error] += 1
        elif 200 <= status < 400:
            if latency <= OK_WITHIN_S:
                ph.ok += 1
                good = True
                self.good.add(t)
            else:
                ph.slow += 1
        elif status in REFUSED:
            ph.refused += 1
        else:
            ph.other += 1
        if status is not None:
            ph.hist.record_value(max(1, int(latency * 1_000_000)))
            if not challenged:
                ph.plain.record_value(max(1, int(latency * 1_000_000)))
            self.latencies.append((t, latency))
        return good

    def p99_between(self, start: float, end: float) -> float | None:
        """p99 latency (ms) of answered requests that started in [start, end)."""
        h = new_histogram()
        for t, lat in self.latencies:
            if start <= t < end:
                h.record_value(max(1, int(lat * 1_000_000)))
        if not h.get_total_count():
            return None
        return round(float(h.get_value_at_percentile(99)) / 1000, 2)

    def total(self) -> LegitPhase:
        out = LegitPhase()
        for ph in self.phases.values():
            for name in ("requests", "ok", "slow", "refused", "failed", "other", "challenges",
                         "checkouts_started", "checkouts_completed", "sessions", "challenged_requests"):
                setattr(out, name, getattr(out, name) + getattr(ph, name))
            out.hist.add(ph.hist)
            out.plain.add(ph.plain)
        return out


@dataclass
class AttackPhase:
    requests: int = 0
    answered: int = 0
    refused: int = 0
    challenged: int = 0
    failed: int = 0
    skipped: int = 0
    """Sends the generator could not make because too many were in flight."""


class AttackStats:
    def __init__(self) -> None:
        self.phases: dict[str, AttackPhase] = {}
        self.sent = Bins()
        self.sources: set[str] = set()

    def phase(self, name: str) -> AttackPhase:
        ph = self.phases.get(name)
        if ph is None:
            ph = self.phases[name] = AttackPhase()
        return ph

    def total(self) -> AttackPhase:
        out = AttackPhase()
        for ph in self.phases.values():
            for name in ("requests", "answered", "refused", "challenged", "failed", "skipped"):
                setattr(out, name, getattr(out, name) + getattr(ph, name))
        return out
