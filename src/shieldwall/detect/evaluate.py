"""Scoring the detector on labelled traffic: per-phase checks and a confusion table.

A phase is *found* when an incident with its verdict (and, for ddos, its kind)
overlaps it; the delay is from the phase's observable start (a slow
connection only shows when it is cut) to the event time at which the
hysteresis confirmed the incident. The confusion table counts windows: the
truth is the phase a window falls in, the prediction the detector's state
after hysteresis; the first ``settle`` seconds of a phase and the ``drain``
seconds after it are left out, because both labels are honest there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shieldwall.detect.analyze import Report, analyze
from shieldwall.detect.detector import Incident, StepResult
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.synth import Phase, Scenario, generate, write_log
from shieldwall.detect.windows import Window

DRAIN = 60.0
"""Seconds after a phase during which its after-effects (sessions of a crowd
finishing, cut slow connections) are not counted as baseline."""


@dataclass
class PhaseResult:
    phase: Phase
    incident: Incident | None
    delay: float | None
    """Confirmation time minus observable start, seconds (event time)."""
    kind_ok: bool
    wrong: list[Incident] = field(default_factory=list)
    """Incidents overlapping the phase with another verdict."""

    @property
    def found(self) -> bool:
        return self.incident is not None and self.kind_ok


@dataclass
class Evaluation:
    scenario: Scenario
    report: Report
    phases: list[PhaseResult]
    baseline_incidents: list[Incident]
    confusion: Counter[tuple[str, str]]


def _label(verdict: str, kind: str | None) -> str:
    return f"{verdict}:{kind}" if kind else verdict


def truth_at(sc: Scenario, sec: float, settle: float = 5.0) -> str | None:
    """The label of second ``sec``; None in a phase's settle or drain period."""
    for p in sc.phases:
        if p.observable_start <= sec < p.end:
            return None if sec < p.observable_start + settle else _label(p.verdict, p.attack_kind)
        if p.start <= sec < p.observable_start or p.end <= sec < p.end + DRAIN:
            return None
    return "normal"


def evaluate(sc: Scenario, workdir: Path, *, fmt: str = "access",
             settings: DetectSettings | None = None) -> Evaluation:
    """Write ``sc`` as a log in ``fmt``, analyze it, and score the result."""
    log = workdir / f"synth-{sc.family}-{sc.seed}.log"
    write_log(generate(sc), log, fmt)
    confusion: Counter[tuple[str, str]] = Counter()

    def on_step(w: Window, r: StepResult) -> None:
        truth = truth_at(sc, w.sec)
        if truth is not None:
            confusion[(truth, _label(r.state, r.kind if r.state == "ddos" else None))] += 1

    report = analyze([log], "auto", settings, on_step=on_step)
    log.unlink()
    results = []
    for p in sc.phases:
        overlapping = [i for i in report.incidents if i.start < p.end + 10 and i.end > p.start - 1]
        match = [i for i in overlapping if i.verdict == p.verdict]
        inc = match[0] if match else None
        delay = inc.detected_at - p.observable_start if inc else None
        kind_ok = inc is not None and (p.attack_kind is None or inc.kind == p.attack_kind)
        wrong = [i for i in overlapping if i.verdict != p.verdict]
        results.append(PhaseResult(p, inc, delay, kind_ok, wrong))
    baseline = [i for i in report.incidents
                if not any(i.start < p.end + DRAIN and i.end > p.start - 1 for p in sc.phases)]
    return Evaluation(sc, report, results, baseline, confusion)


def confusion_table(conf: Counter[tuple[str, str]]) -> str:
    """A plain-text table: rows are the truth, columns the detector's state."""
    truths = sorted({t for t, _ in conf})
    preds = sorted({p for _, p in conf} | {"normal"})
    w = max(12, *(len(x) for x in truths + preds)) + 1
    lines = ["truth \\ detected".ljust(w) + "".join(p.rjust(w) for p in preds) + "recall".rjust(9)]
    for t in truths:
        row = [conf[(t, p)] for p in preds]
        total = sum(row)
        recall = conf[(t, t)] / total if total else 0.0
        lines.append(t.ljust(w) + "".join(str(c).rjust(w) for c in row) + f"{recall:9.3f}")
    return "\n".join(lines)
