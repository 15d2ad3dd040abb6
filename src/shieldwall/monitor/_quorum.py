"""Is the shop down, or is one probe having a bad day? The quorum state machine.

Pure: results go in, a :class:`RoundReport` comes out when the IO shell closes
a round; the time is always passed in, so a fake clock can drive hours of
rounds in microseconds.

Rules, per check:

* A *round* is one interval. Each probe counts once per round, with its latest
  result of that round; a probe that did not report is *missing* (neither up
  nor down: a dead probe must not page anyone, nor hide an outage alone).
* A round *fails* when at least ``quorum`` probes failed in it.
* An outage is declared after ``confirm_rounds`` consecutive failing rounds.
  Its start is the earliest failure of the first failing round, so the
  incident is opened with the time of the first failure, not of the page.
* Fewer failing probes than the quorum is a *warning*: logged and shown, never
  a page.
* Once down, the check recovers after ``recover_rounds`` consecutive rounds
  that do not fail and in which at least one probe passed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's verdict on one check, with what it saw."""

    check: str
    probe: str
    at: float
    ok: bool
    reason: str = ""
    latency: float | None = None
    status: int | None = None
    tls_days_left: float | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "check": self.check,
            "probe": self.probe,
            "at": self.at,
            "ok": self.ok,
            "reason": self.reason,
            "latency": self.latency,
            "status": self.status,
            "tls_days_left": self.tls_days_left,
        }

    @classmethod
    def from_json(cls, data: dict[str, object], probe: str) -> ProbeResult:
        """Parse a remote probe's report; ``probe`` comes from its token, not its body."""

        def num(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{key} must be a number, got {v!r}")
            return float(v)

        check, ok, at = data.get("check"), data.get("ok"), num("at")
        if not isinstance(check, str) or not check:
            raise ValueError(f"check must be a non-empty string, got {check!r}")
        if not isinstance(ok, bool):
            raise ValueError(f"ok must be true or false, got {ok!r}")
        if at is None:
            raise ValueError("at (the time of the check, unix seconds) is required")
        reason = data.get("reason", "")
        status = num("status")
        return cls(
            check=check,
            probe=probe,
            at=at,
            ok=ok,
            reason=str(reason)[:500],
            latency=num("latency"),
            status=int(status) if status is not None else None,
            tls_days_left=num("tls_days_left"),
        )


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    WARNING = "warning"  # some probes fail, fewer than the quorum
    SUSPECT = "suspect"  # a quorum fails, not yet for enough rounds
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Outage:
    started_at: float
    declared_at: float
    reason: str
    probes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recovery:
    ended_at: float
    recovered_at: float


@dataclass(frozen=True, slots=True)
class RoundReport:
    check: str
    round_no: int
    closed_at: float
    health: Health
    failing: tuple[ProbeResult, ...]
    passing: tuple[ProbeResult, ...]
    missing: tuple[str, ...]
    outage: Outage | None = None
    recovery: Recovery | None = None

    @property
    def warning(self) -> bool:
        return self.health is Health.WARNING


def summarize(failing: Iterable[ProbeResult]) -> str:
    """One line a person reads on the phone: which probe saw what."""
    return "; ".join(f"{r.probe}: {r.reason or 'failed'}" for r in failing)


class QuorumTracker:
    """The state of one check across rounds."""

    def __init__(
        self,
        check: str,
        probes: Sequence[str],
        *,
        quorum: int,
        confirm_rounds: int,
        recover_rounds: int = 1,
        down: bool = False,
    ) -> None:
        if not probes:
            raise ValueError("a check needs at least one probe")
        if len(set(probes)) != len(probes):
            raise ValueError(f"probe names must be unique: {list(probes)}")
        if not 1 <= quorum <= len(probes):
            raise ValueError(f"quorum must be between 1 and {len(probes)}, got {quorum}")
        if confirm_rounds < 1 or recover_rounds < 1:
            raise ValueError("confirm_rounds and recover_rounds must be at least 1")
        self.check = check
        self.probes = tuple(probes)
        self.quorum = quorum
        self.confirm_rounds = confirm_rounds
        self.recover_rounds = recover_rounds
        self.down = down
        self.round_no = 0
        self._current: dict[str, ProbeResult] = {}
        self._fail_streak = 0
        self._fail_started: float | None = None
        self._ok_streak = 0
        self._ok_started: float | None = None
        self.health = Health.DOWN if down else Health.UNKNOWN

    def record(self, result: ProbeResult) -> bool:
        """Count ``result`` in the open round; False if it is not for us."""
        if result.check != self.check or result.probe not in self.probes:
            return False
        prev = self._current.get(result.probe)
        if prev is None or result.at >= prev.at:
            self._current[result.probe] = result
        return True

    def reported(self) -> frozenset[str]:
        return frozenset(self._current)

    def complete(self) -> bool:
        """Every probe has reported in this round: it can be closed early."""
        return len(self._current) == len(self.probes)

    def close_round(self, now: float) -> RoundReport:
        results = self._current
        self._current = {}
        self.round_no += 1
        failing = tuple(sorted((r for r in results.values() if not r.ok), key=lambda r: r.probe))
        passing = tuple(sorted((r for r in results.values() if r.ok), key=lambda r: r.probe))
        missing = tuple(p for p in self.probes if p not in results)
        round_fails = len(failing) >= self.quorum
        outage: Outage | None = None
        recovery: Recovery | None = None
        if not self.down:
            if round_fails:
                self._fail_streak += 1
                if self._fail_streak == 1:
                    self._fail_started = min(r.at for r in failing)
                if self._fail_streak >= self.confirm_rounds:
                    assert self._fail_started is not None
                    self.down = True
                    self._ok_streak = 0
                    outage = Outage(
                        started_at=self._fail_started,
                        declared_at=now,
                        reason=summarize(failing),
                        probes=tuple(r.probe for r in failing),
                    )
            else:
                self._fail_streak = 0
                self._fail_started = None
        else:
            if not round_fails and passing:
                self._ok_streak += 1
                if self._ok_streak == 1:
                    self._ok_started = min(r.at for r in passing)
                if self._ok_streak >= self.recover_rounds:
                    assert self._ok_started is not None
                    self.down = False
                    self._fail_streak = 0
                    self._fail_started = None
                    recovery = Recovery(ended_at=self._ok_started, recovered_at=now)
            else:
                self._ok_streak = 0
                self._ok_started = None
        if self.down:
            health = Health.DOWN
        elif round_fails:
            health = Health.SUSPECT
        elif failing:
            health = Health.WARNING
        elif passing:
            health = Health.UP
        else:
            health = Health.UNKNOWN
        self.health = health
        return RoundReport(
            check=self.check,
            round_no=self.round_no,
            closed_at=now,
            health=health,
            failing=failing,
            passing=passing,
            missing=missing,
            outage=outage,
            recovery=recovery,
        )
