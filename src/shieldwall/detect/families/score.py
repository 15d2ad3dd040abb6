"""Scoring ``shieldwall analyze`` on a family's labelled logs, as the issue's "Done when" reads.

The log is written to a file and read by :func:`shieldwall.detect.analyze.analyze`,
the function the CLI calls (``on_step`` only records the per-second state).

Matching, and the only slack it allows:

- An incident *belongs* to a labelled incident when it overlaps
  ``[start - GRACE_BEFORE, end + DRAIN]``. ``GRACE_BEFORE`` (5 s): lines are
  stamped when requests finish and a detector works in whole seconds, so an
  edge can move by a few seconds. ``DRAIN`` (90 s): after an event its
  after-effects are real traffic (a crowd's sessions finishing, shoppers
  reloading after an outage, a hang's last 504s, the detector's own hold-off),
  so an incident still open there is the same event, not a new one.
- *Found*: some incident that belongs to it has the labelled verdict. The
  *kind* is judged on the one with the right verdict that overlaps it most.
- *Split*: more than one incident belongs to it (whatever their verdicts).
- *Invented*: an incident that belongs to no labelled incident (a ``normal``
  event -- a crawler spike, a newsletter, a deploy blip -- gives no cover).
  Counted per two hours of the log outside the labelled windows.
- *Flash crowd called ddos* (and the reverse): an incident with that verdict
  belongs to it, or the detector's per-second state said so for any second
  inside ``[start, end]``.
- *Delay*: when the right-verdict incident was confirmed, minus the event's
  ``observable_start``; negative when found before (a hang seen thinning).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from shieldwall.detect.analyze import analyze
from shieldwall.detect.detector import Incident, StepResult
from shieldwall.detect.families import FAMILIES, TEST_SEEDS, TRAIN_SEEDS
from shieldwall.detect.families._labels import Event, Labels
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.windows import Window

GRACE_BEFORE = 5.0
DRAIN = 90.0


@dataclass
class EventScore:
    event: Event
    incidents: list[Incident]
    """Every reported incident that belongs to this event."""
    match: Incident | None
    kind_ok: bool
    cross_seconds: int
    """Seconds inside the event the detector's state was the forbidden verdict
    (ddos during a crowd, flash_crowd during a ddos)."""

    @property
    def found(self) -> bool:
        return self.match is not None

    @property
    def split(self) -> bool:
        return len(self.incidents) > 1

    @property
    def crossed(self) -> bool:
        bad = {"flash_crowd": "ddos", "ddos": "flash_crowd"}.get(self.event.verdict)
        return self.cross_seconds > 0 or any(i.verdict == bad for i in self.incidents)

    @property
    def delay(self) -> float | None:
        return None if self.match is None else self.match.detected_at - self.event.seen_from

    def describe(self) -> str:
        got = ", ".join(f"{i.verdict}{'/' + i.kind if i.kind else ''}" for i in self.incidents) or "nothing"
        return f"{self.event.name} ({self.event.verdict}{'/' + self.event.kind if self.event.kind else ''}): {got}"


@dataclass
class LogScore:
    labels: Labels
    events: list[EventScore]
    invented: list[Incident]
    unlabelled_seconds: float
    lines: int
    unparsed: int
    late: int
    seconds: float
    """Wall time of the analyze run."""

    def as_json(self) -> dict[str, Any]:
        return {"family": self.labels.family, "seed": self.labels.seed, "lines": self.lines,
                "unparsed": self.unparsed, "late": self.late, "analyze_s": round(self.seconds, 2),
                "events": [e.describe() for e in self.events],
                "invented": [f"{i.verdict}{'/' + i.kind if i.kind else ''} at +{i.start - self.labels.start:.0f}s"
                             for i in self.invented]}


def _belongs(inc: Incident, e: Event) -> bool:
    return inc.start < e.end + DRAIN and inc.end > e.start - GRACE_BEFORE


def _overlap(inc: Incident, e: Event) -> float:
    return min(inc.end, e.end + DRAIN) - max(inc.start, e.start - GRACE_BEFORE)


def score_report(labels: Labels, incidents: list[Incident], states: dict[int, str]) -> tuple[list[EventScore], list[Incident], float]:
    """Scores of the labelled incidents, the invented incidents, and the unlabelled seconds."""
    events = []
    for e in labels.incidents:
        mine = [i for i in incidents if _belongs(i, e)]
        right = [i for i in mine if i.verdict == e.verdict]
        match = max(right, key=lambda i: _overlap(i, e)) if right else None
        kind_ok = match is not None and (e.kind is None or match.kind == e.kind)
        bad = {"flash_crowd": "ddos", "ddos": "flash_crowd"}.get(e.verdict)
        cross = sum(1 for s in range(int(e.start), int(e.end)) if bad is not None and states.get(s) == bad)
        events.append(EventScore(e, mine, match, kind_ok, cross))
    invented = [i for i in incidents if not any(_belongs(i, e) for e in labels.incidents)]
    unlabelled = sum(b - a for a, b in labels.quiet_stretches(DRAIN))
    return events, invented, unlabelled


class WritableLog(Protocol):
    """A labelled log that can be written where the analyzer reads it (a family's
    ``Log``, the held-out family's own)."""

    def write(self, path: Path) -> Path: ...


def score_log(log: WritableLog, labels: Labels, workdir: Path,
              settings: DetectSettings | None = None) -> LogScore:
    """Write ``log``, run the analyzer the CLI runs on it, and score it against ``labels``."""
    path = log.write(workdir / f"{labels.family}-{labels.seed}.log")
    states: dict[int, str] = {}

    def on_step(w: Window, r: StepResult) -> None:
        states[w.sec] = r.state

    t = time.perf_counter()
    try:
        report = analyze([path], "auto", settings, on_step=on_step)
    finally:
        path.unlink()
    took = time.perf_counter() - t
    events, invented, unlabelled = score_report(labels, report.incidents, states)
    return LogScore(labels, events, invented, unlabelled, report.stats.lines, report.stats.unparsed,
                    report.late, took)


def run(family: str, seeds: list[int] | tuple[int, ...], *, minutes: float | None = None,
        settings: DetectSettings | None = None) -> list[LogScore]:
    """Generate and score each seed of ``family`` (in a temporary directory)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="shieldwall-families-") as tmp:
        for seed in seeds:
            log, labels = FAMILIES[family](seed, minutes)
            out.append(score_log(log, labels, Path(tmp), settings))
    return out


@dataclass
class Summary:
    """A split of a family, in the issue's terms."""

    logs: int = 0
    hours: float = 0.0
    events: int = 0
    found: int = 0
    ddos: int = 0
    kind_right: int = 0
    split: int = 0
    invented: int = 0
    unlabelled_hours: float = 0.0
    quiet_days: int = 0
    quiet_day_incidents: int = 0
    flash_called_ddos: int = 0
    ddos_called_flash: int = 0
    delays: dict[str, list[float]] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    by_event: Counter[str] = field(default_factory=Counter)
    found_by_event: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, scores: list[LogScore]) -> Summary:
        s = cls()
        for ls in scores:
            lab = ls.labels
            s.logs += 1
            s.hours += (lab.end - lab.start) / 3600
            s.unlabelled_hours += ls.unlabelled_seconds / 3600
            s.invented += len(ls.invented)
            if lab.quiet_day:
                s.quiet_days += 1
                s.quiet_day_incidents += len(ls.invented)
            for inv in ls.invented:
                s.misses.append(f"{lab.family} {lab.seed}: invented {inv.verdict}"
                                f"{'/' + inv.kind if inv.kind else ''} at +{inv.start - lab.start:.0f}s")
            for es in ls.events:
                e = es.event
                s.events += 1
                s.by_event[e.name] += 1
                s.found += es.found
                s.found_by_event[e.name] += es.found and es.kind_ok and not es.split
                if e.verdict == "ddos":
                    s.ddos += 1
                    s.kind_right += es.kind_ok
                s.split += es.split
                if e.verdict == "flash_crowd" and es.crossed:
                    s.flash_called_ddos += 1
                if e.verdict == "ddos" and es.crossed:
                    s.ddos_called_flash += 1
                if es.delay is not None:
                    s.delays.setdefault(e.verdict, []).append(es.delay)
                if not es.found or not es.kind_ok or es.split or es.crossed:
                    s.misses.append(f"{lab.family} {lab.seed}: {es.describe()}")
        return s

    @property
    def invented_per_2h(self) -> float:
        return 2 * self.invented / self.unlabelled_hours if self.unlabelled_hours else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "logs": self.logs, "hours": round(self.hours, 1), "events": self.events,
            "found": self.found, "found_share": round(self.found / self.events, 3) if self.events else None,
            "ddos": self.ddos, "kind_share": round(self.kind_right / self.ddos, 3) if self.ddos else None,
            "split_events": self.split, "invented": self.invented,
            "invented_per_2h": round(self.invented_per_2h, 2),
            "quiet_days": self.quiet_days, "quiet_day_incidents": self.quiet_day_incidents,
            "flash_called_ddos": self.flash_called_ddos, "ddos_called_flash": self.ddos_called_flash,
            "delay_median_s": {k: round(statistics.median(v), 1) for k, v in sorted(self.delays.items())},
            "delay_max_s": {k: round(max(v), 1) for k, v in sorted(self.delays.items())},
            "right_by_event": {k: f"{self.found_by_event[k]}/{n}" for k, n in sorted(self.by_event.items())},
            "done": self.done(), "misses": self.misses,
        }

    def done(self) -> bool:
        """The issue's "Done when", on this split."""
        return (self.found == self.events and (self.ddos == 0 or self.kind_right >= 0.9 * self.ddos)
                and self.split == 0 and self.invented_per_2h <= 1.0 and self.quiet_day_incidents == 0
                and self.flash_called_ddos == 0 and self.ddos_called_flash == 0)


SPLITS = {"train": TRAIN_SEEDS, "test": TEST_SEEDS}
