"""The drill's timeline says when the attack began, when the shield switched
mode (to the tenth of a second, from the shield's own clock) and why, in the
detector's words: pure, from samples, no processes."""

from __future__ import annotations

from typing import Any

from shieldwall.drill.report import headline, render_html
from shieldwall.drill.runner import Sample, _switch
from shieldwall.guard.decision import Mode
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings

EVIDENCE = ("353 req/s = 26.3x the baseline 13", "3% of page clients fetched assets (baseline 100%)")


def _samples(zero: float, switch_at: float) -> dict[int, Sample]:
    """One sample a second; the mode rises at ``switch_at`` (drill seconds)."""
    out = {}
    for t in range(1, 20):
        up = t >= switch_at
        out[t] = Sample(t, "under_attack" if up else "normal", "ddos" if up else "normal",
                        "flood" if up else None, 0, 0, [True, True],
                        mode_since=zero + (switch_at if up else 0.0),
                        evidence=EVIDENCE if up else ())
    return out


def test_the_switch_is_timed_by_the_shields_clock_not_the_sample() -> None:
    zero = 1_000_000.0
    samples = _samples(zero, 10.6)  # flood starts at 9.0; first sample that sees it: t=11
    sw = _switch(samples, 11, zero + 9.0, 9.0)
    assert sw is not None
    assert sw["after_s"] == 1.6 and sw["exact"] is True
    assert sw["mode"] == "under_attack" and sw["verdict"] == "ddos/flood"
    assert sw["evidence"] == list(EVIDENCE)
    assert sw["words"].startswith("mode under_attack 1.6 s after the attack began: detector says ddos/flood")
    assert EVIDENCE[1] in sw["words"]


def test_without_the_shields_clock_the_sample_second_is_used() -> None:
    zero = 1_000_000.0
    samples = _samples(zero, 10.6)
    for s in samples.values():
        s.mode_since = None
    sw = _switch(samples, 11, zero + 9.0, 9.0)
    assert sw is not None and sw["after_s"] == 2.0 and sw["exact"] is False
    assert _switch(samples, None, zero + 9.0, 9.0) is None


def _report(events: list[dict[str, Any]], switch: dict[str, Any]) -> dict[str, Any]:
    legit = {"goodput": 1.0, "ok": 10, "requests": 10, "p99_ms": 90.0, "p50_ms": 20.0,
             "checkouts_completed": 1, "checkouts_started": 1}
    phase = {"name": "flood", "start_s": 9.0, "end_s": 24.0, "legit_goodput": 1.0, "verdict": "ddos",
             "legit": legit, "attack": {"requests": 100}, "attack_reached_backend": 3, "mode": "under_attack",
             "reaction_s": 2.0, "mode_switch": switch}
    return {"scenario": "flood", "against": "shieldwall", "duration_s": 30.0, "legit": legit,
            "attack": {"requests": 100, "sources": 10, "reached_backend": 3},
            "orders": {"expected": 1, "recorded": 1, "duplicated": 0},
            "phases": [phase], "events": events,
            "timeline": [{"t": float(t), "legit_rps": 1.0, "legit_ok_rps": 1.0, "attack_rps": 5.0,
                          "mode": "under_attack" if t >= 11 else "normal"} for t in range(30)]}


def test_the_page_marks_the_attack_and_the_switch_with_the_reason() -> None:
    zero = 1_000_000.0
    sw = _switch(_samples(zero, 10.6), 11, zero + 9.0, 9.0)
    assert sw is not None
    events = [{"t": 9.0, "event": "attack flood x20 from 1000 sources"},
              {"t": 10.6, "event": sw["words"], "mark": "switch"}]
    report = _report(events, sw)
    page = render_html(report)
    assert "attack flood x20 begins" in page
    assert "mode under_attack 1.6 s after the attack began" in page
    assert "What happened when" in page and EVIDENCE[0] in page
    assert any(sw["words"] in line for line in headline(report))


def test_the_guard_says_since_when_its_mode_is_in_force() -> None:
    now = [5000.0]
    guard = GuardRuntime.from_settings(GuardSettings(), clock=lambda: now[0])
    assert guard.status()["mode_since"] == 5000.0
    now[0] = 5003.25
    guard.set_mode(Mode.UNDER_ATTACK, "detector")
    now[0] = 5009.0
    st = guard.status()
    assert st["mode"] == "under_attack" and st["mode_since"] == 5003.25 and st["mode_by"] == "detector"
    guard.set_mode(Mode.UNDER_ATTACK, "detector")  # no change: the time stays
    assert guard.status()["mode_since"] == 5003.25


def test_the_report_splits_the_latency_of_requests_that_met_a_challenge() -> None:
    from shieldwall.drill.stats import LegitStats

    stats = LegitStats()
    for i in range(99):
        stats.record("flood", 10.0 + i * 0.1, 0.050, 200)
    for i in range(11):
        stats.record("flood", 11.0 + i * 0.1, 0.900, 200, challenged=True)
    s = stats.phase("flood").summary()
    assert s["challenged_requests"] == 11 and s["requests"] == 110
    assert s["p99_ms"] >= 899  # the challenged tenth sets the p99 of the whole phase
    assert 49 <= s["p99_ms_unchallenged"] <= 51
    assert stats.total().summary()["p99_ms_unchallenged"] == s["p99_ms_unchallenged"]
