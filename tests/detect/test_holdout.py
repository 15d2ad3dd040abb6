"""The held-out family is honest about what it wrote, and the scorer runs on it.

No floor on the detector's score here: the family is held out, its figures go
in the report (bench/detect_holdout.py), never into a pass/fail the detector
could be tuned against.
"""

from __future__ import annotations

from pathlib import Path

from shieldwall.detect.analyze import analyze
from shieldwall.detect.families._labels import Labels
from shieldwall.detect.families.score import Summary, score_report
from shieldwall.detect.holdout import HoldoutLog, headless_shop, holdout_shop


def _honest(log: HoldoutLog, labels: Labels, outages: tuple[str, ...], failures: tuple[int, ...],
            after: float, silent: tuple[str, ...] = ()) -> int:
    """Every line an event's actors sent finishes inside the event (plus a session's or
    a timeout's tail; ``silent`` events send none of their own), and every line with a
    status in ``failures`` inside one of the ``outages`` (plus ``after`` seconds).
    The number of events."""
    for i, e in enumerate(labels.events):
        done = [d for d, o in zip(log.done, log.owner, strict=True) if o == i]
        tail = 1800.0 if e.verdict in ("flash_crowd", "normal") else 90.0  # sessions end by themselves
        if e.name not in silent:
            assert done, e.name
            assert e.start <= min(done) and max(done) <= e.end + tail, e.name
    failed = [d for d, f in zip(log.done, log.fields, strict=True) if f[2] in failures]
    down = [e for e in labels.events if e.name in outages]
    assert all(any(e.start <= d <= e.end + after for e in down) for d in failed)
    return len(labels.events)


def test_event_lines_stay_in_their_windows() -> None:
    """Every line an event's actors sent finishes inside the event (plus a session's or a timeout's tail)."""
    seen = 0
    for seed in (5001, 5002, 5004, 5006):
        log, labels = holdout_shop(seed, minutes=30)
        seen += _honest(log, labels, ("backend_dies", "backend_hangs", "deploy_blip"), (502, 504), 61)
    assert seen, "short logs still carry labelled events"


def test_quiet_day_has_only_bumps_and_lines_are_combined(tmp_path: Path) -> None:
    log, labels = holdout_shop(5003, minutes=15)
    assert labels.quiet_day and not labels.incidents
    lines = list(log.lines())
    assert lines and all(line.count('"') == 6 for line in lines)
    assert all(ln.split("[", 1)[1][21:26] == labels.tz for ln in lines)
    assert any('"-" 408 0 "-" "-"' in ln for ln in lines)


def test_scorer_runs_on_it(tmp_path: Path) -> None:
    log, labels = holdout_shop(5002, minutes=30)
    report = analyze([log.write(tmp_path / "h.log")], "auto", None)
    events, invented, unlabelled = score_report(labels, report.incidents, {})
    assert len(events) == len(labels.incidents) and unlabelled > 0
    assert report.stats.unparsed == 0
    del invented
    assert Summary().invented_per_2h == 0.0


def test_the_late_family_is_honest_about_what_it_wrote() -> None:
    """Northwind (headless_shop): every line an event's actors sent finishes inside
    the event (plus a session's tail), every 500/502/504 falls in a database outage or
    a rolling deploy, and the log holds no asset line (the storefront's CDN serves them)."""
    seen = 0
    outages = ("db_down", "db_slow", "rolling_deploy")  # (the shop's own requests fail then)
    for seed in (5000, 5001, 5002, 5006):
        log, labels = headless_shop(seed, minutes=40)
        seen += _honest(log, labels, outages, (500, 502, 504), 31, silent=outages)
        assert not any(f[1].split(" ")[1].startswith("/static") for f in log.fields if f[1] != "-")
    assert seen


def test_the_late_familys_quiet_day_has_only_bumps() -> None:
    log, labels = headless_shop(5003, minutes=60)
    assert labels.quiet_day and not labels.incidents and labels.events
    lines = list(log.lines())
    assert lines and all(line.count('"') == 6 for line in lines)
    assert all(ln.split("[", 1)[1][21:26] == labels.tz for ln in lines)
