"""The pure core, driven by a fake clock: quorum, incidents, escalation."""

from __future__ import annotations

import random

import pytest

from shieldwall.monitor._duration import format_duration, parse_duration
from shieldwall.monitor._engine import CheckRule, MonitorCore
from shieldwall.monitor._escalation import (
    PageKind,
    Policy,
    Step,
    Window,
    due_pages,
    paging_starts,
    recovery_page,
)
from shieldwall.monitor._quorum import Health, ProbeResult, QuorumTracker

PROBES = ("a", "b", "c")


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


def res(probe: str, at: float, ok: bool, check: str = "shop") -> ProbeResult:
    return ProbeResult(check, probe, at, ok, "" if ok else "status 503")


def run_round(tr: QuorumTracker, at: float, failing: set[str], dt: float = 0.5):
    for p in tr.probes:
        tr.record(res(p, at, p not in failing))
    return tr.close_round(at + dt)


# -- durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("0.2s", 0.2), ("15", 15), (7, 7)],
)
def test_durations_read_as_people_write_them(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "30 x", "5mm", "-3s", "1h-2m", -1])
def test_bad_durations_say_what_is_accepted(bad: str | int) -> None:
    with pytest.raises(ValueError, match='like "250ms", "30s"'):
        parse_duration(bad)


def test_durations_format_short() -> None:
    assert [format_duration(s) for s in (4, 65, 3725, 200000)] == ["4s", "1m 05s", "1h 02m", "2d 07h"]


# -- quorum --------------------------------------------------------------------


def test_a_single_failing_probe_is_a_warning_never_an_outage() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=2)
    for i in range(50):
        rep = run_round(tr, 100.0 + i, {"c"})
        assert rep.health is Health.WARNING and rep.outage is None
    assert not tr.down


def test_outage_needs_the_quorum_for_the_confirmation_rounds() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=3)
    assert run_round(tr, 10.0, {"a", "b"}).health is Health.SUSPECT
    assert run_round(tr, 11.0, {"a", "b", "c"}).health is Health.SUSPECT
    rep = run_round(tr, 12.0, {"b", "c"})
    assert rep.health is Health.DOWN and rep.outage is not None
    assert rep.outage.started_at == 10.0  # the first failure, not the declaration
    assert rep.outage.declared_at == 12.5
    assert rep.outage.probes == ("b", "c")
    assert "b: status 503" in rep.outage.reason


def test_a_passing_round_resets_the_confirmation_streak() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=2)
    for i in range(20):
        failing = {"a", "b"} if i % 2 == 0 else set()
        assert run_round(tr, float(i), failing).outage is None


def test_missing_probes_neither_page_nor_hide_an_outage() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=1)
    tr.record(res("a", 1.0, False))
    rep = tr.close_round(2.0)
    assert rep.missing == ("b", "c") and rep.outage is None and rep.health is Health.WARNING
    tr.record(res("a", 3.0, False))
    tr.record(res("b", 3.0, False))
    rep = tr.close_round(4.0)
    assert rep.outage is not None and rep.missing == ("c",)


def test_a_round_with_no_reports_is_unknown_and_does_not_recover() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=1)
    run_round(tr, 1.0, {"a", "b", "c"})
    rep = tr.close_round(5.0)
    assert rep.health is Health.DOWN and rep.recovery is None


def test_recovery_after_the_recover_rounds_with_the_first_good_time() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=1, recover_rounds=2)
    run_round(tr, 1.0, {"a", "b", "c"})
    assert run_round(tr, 2.0, set()).recovery is None
    rep = run_round(tr, 3.0, {"c"})
    assert rep.recovery is not None and rep.recovery.ended_at == 2.0
    assert rep.health is Health.WARNING


def test_only_the_latest_result_of_a_probe_counts_in_a_round() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=1)
    tr.record(res("a", 1.0, False))
    tr.record(res("a", 1.5, True))
    tr.record(res("a", 1.2, False))  # older, arrives late
    tr.record(res("b", 1.0, False))
    rep = tr.close_round(2.0)
    assert rep.outage is None and [r.probe for r in rep.failing] == ["b"]


def test_results_for_unknown_probes_or_checks_are_refused() -> None:
    tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=1)
    assert not tr.record(res("zz", 1.0, False))
    assert not tr.record(res("a", 1.0, False, check="other"))
    assert tr.record(res("a", 1.0, False))


@pytest.mark.parametrize(("quorum", "confirm"), [(0, 1), (4, 1), (2, 0)])
def test_impossible_quorum_settings_are_refused(quorum: int, confirm: int) -> None:
    with pytest.raises(ValueError):
        QuorumTracker("shop", PROBES, quorum=quorum, confirm_rounds=confirm)


def test_every_failing_pattern_of_three_probes_against_two_of_three() -> None:
    """Exhaustive: all 8 patterns, each held for 3 rounds."""
    for mask in range(8):
        failing = {p for i, p in enumerate(PROBES) if mask & (1 << i)}
        tr = QuorumTracker("shop", PROBES, quorum=2, confirm_rounds=3)
        reps = [run_round(tr, float(i), failing) for i in range(3)]
        declared = [r.outage is not None for r in reps]
        assert declared == ([False, False, True] if len(failing) >= 2 else [False] * 3), failing


# -- escalation ----------------------------------------------------------------

CHAIN = Policy(
    steps=(Step(0, ("chat",)), Step(120, ("sms",)), Step(300, ("voice",))),
    realert_every=600,
)


def keys(pages) -> list[str]:
    return [p.key for p in pages]


def test_chain_pages_chat_at_once_sms_after_two_minutes_voice_after_five() -> None:
    sent: set[str] = set()
    timeline = {}
    for t in range(0, 601, 1):
        for p in due_pages(CHAIN, declared_at=1000.0, acked=False, closed=False, sent=frozenset(sent), now=1000.0 + t):
            timeline[p.key] = (t, p.targets)
            sent.add(p.key)
    assert timeline == {
        "step:0": (0, ("chat",)),
        "step:1": (120, ("sms",)),
        "step:2": (300, ("voice",)),
        "realert:1": (600, ("chat", "sms", "voice")),
    }


def test_an_acknowledged_incident_stops_escalating() -> None:
    sent = frozenset({"step:0"})
    assert due_pages(CHAIN, declared_at=0.0, acked=True, closed=False, sent=sent, now=10_000.0) == []


def test_after_a_long_pause_only_the_latest_realert_is_sent() -> None:
    sent = frozenset({"step:0", "step:1", "step:2", "realert:1"})
    pages = due_pages(CHAIN, declared_at=0.0, acked=False, closed=False, sent=sent, now=3000.0)
    assert keys(pages) == ["realert:5"]


def test_a_sent_key_is_never_planned_again() -> None:
    sent = frozenset({"step:0", "step:1", "step:2", "realert:1"})
    assert due_pages(CHAIN, declared_at=0.0, acked=False, closed=False, sent=sent, now=700.0) == []


def test_maintenance_window_is_quiet_and_paging_starts_at_its_end() -> None:
    pol = Policy(CHAIN.steps, None, (Window(0.0, 1000.0), Window(1000.0, 1500.0)))
    assert paging_starts(pol.maintenance, 10.0) == 1500.0
    assert due_pages(pol, declared_at=10.0, acked=False, closed=False, sent=frozenset(), now=1499.0) == []
    pages = due_pages(pol, declared_at=10.0, acked=False, closed=False, sent=frozenset(), now=1500.0)
    assert keys(pages) == ["step:0"]  # not all three at once


def test_no_pages_during_a_window_even_for_an_incident_declared_before_it() -> None:
    pol = Policy(CHAIN.steps, 600, (Window(100.0, 200.0),))
    got = due_pages(pol, declared_at=0.0, acked=False, closed=False, sent=frozenset({"step:0"}), now=150.0)
    assert got == []
    assert keys(due_pages(pol, declared_at=0.0, acked=False, closed=False, sent=frozenset({"step:0"}), now=200.0)) == ["step:1"]


def test_recovery_goes_once_to_everyone_paged_and_only_if_someone_was() -> None:
    assert recovery_page((), sent=frozenset(), now=1.0) is None
    page = recovery_page(("chat", "sms"), sent=frozenset({"step:0", "step:1"}), now=1.0)
    assert page is not None and page.kind is PageKind.RECOVERY and page.targets == ("chat", "sms")
    assert recovery_page(("chat",), sent=frozenset({"step:0", "recovery"}), now=1.0) is None


def test_steps_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="in order"):
        Policy((Step(60, ("a",)), Step(0, ("b",))))


# -- the whole core --------------------------------------------------------------


def make_core(**kw) -> MonitorCore:
    rule = CheckRule(PROBES, quorum=2, confirm_rounds=2)
    return MonitorCore({"shop": rule}, kw.pop("policy", CHAIN), **kw)


def drive(core: MonitorCore, clock: FakeClock, failing, *, seconds: float, interval: float):
    """Run rounds for ``seconds`` of fake time; returns every page sent."""
    sent = []
    end = clock.t + seconds
    while clock.t < end:
        start = clock()
        for p in PROBES:
            ok = p not in failing(p, start)
            core.record(ProbeResult("shop", p, start, ok, "" if ok else "timeout"))
        core.close_round("shop", clock.advance(0.3))
        sent += deliver_all(core, clock())
        clock.advance(interval - 0.3)
    return sent


def deliver_all(core: MonitorCore, now: float, ok=lambda target: True):  # type: ignore[no-untyped-def]
    """One escalation tick with every channel answering ``ok(target)``;
    returns (now, incident id, page) once per page, when its first channel took it."""
    core.plan(now)
    got = []
    for inc, o, d in core.sends(now):
        first = all(x.attempts == 0 for x in o.deliveries.values())
        core.outcome(inc.id, o.key, d.target, ok=ok(d.target), error="" if ok(d.target) else "refused", now=now)
        if first:
            got.append((now, inc.id, o.page))
    return got


def flapping(rng: random.Random):
    def failing(probe: str, t: float) -> set[str]:
        return {"c"} if probe == "c" and rng.random() < 0.5 else set()

    return failing


def test_one_hour_with_one_flapping_probe_sends_zero_alerts() -> None:
    """The figure for the report: one simulated hour, 30 s rounds and 1 s rounds."""
    for interval in (30.0, 1.0):
        clock = FakeClock()
        core = make_core()
        rng = random.Random(7)
        warnings = 0
        end = clock.t + 3600
        pages = []
        while clock.t < end:
            start = clock()
            for p in PROBES:
                ok = not (p == "c" and rng.random() < 0.5)
                core.record(ProbeResult("shop", p, start, ok, "" if ok else "timeout"))
            out = core.close_round("shop", clock.advance(0.3))
            warnings += out.report.warning
            assert out.opened is None
            pages += deliver_all(core, clock())
            clock.advance(interval - 0.3)
        assert pages == []
        rounds = 3600 / interval
        print(f"\none simulated hour, {interval:g}s rounds: {rounds:.0f} rounds, {warnings} warnings, {len(pages)} alerts")
        assert 0.3 * rounds < warnings < 0.7 * rounds  # it really flapped


def test_a_real_outage_in_the_hour_pages_escalates_and_recovers_once() -> None:
    clock = FakeClock()
    core = make_core()
    t0 = clock.t
    down_from, down_to = t0 + 600, t0 + 1200

    def failing(probe: str, t: float) -> set[str]:
        return {"a", "b", "c"} if down_from <= t < down_to else set()

    sent = drive(core, clock, failing, seconds=3600, interval=10.0)
    kinds = [(round(t - down_from), p.key) for t, _, p in sent]
    assert kinds == [(10, "step:0"), (130, "step:1"), (310, "step:2"), (600, "recovery")]
    assert {i for _, i, _ in sent} == {1}


def test_acknowledging_stops_the_chain_but_not_the_recovery() -> None:
    clock = FakeClock()
    core = make_core()
    t0 = clock.t
    acked = False

    def failing(probe: str, t: float) -> set[str]:
        nonlocal acked
        if t >= t0 + 60 and not acked:
            inc = core.open_incident("shop")
            assert inc is not None
            core.acknowledge(inc.id, by="ops", now=t)
            acked = True
        return {"a", "b"} if t < t0 + 900 else set()

    sent = drive(core, clock, failing, seconds=1200, interval=10.0)
    assert [p.key for _, _, p in sent] == ["step:0", "recovery"]
    assert sent[-1][2].targets == ("chat",)


def test_resumed_core_continues_the_chain_without_repeating() -> None:
    clock = FakeClock()
    core = make_core()
    drive(core, clock, lambda p, t: {"a", "b", "c"}, seconds=150, interval=10.0)
    inc = core.open_incident("shop")
    assert inc is not None and core.planned(inc.id) == {"step:0", "step:1"}
    # a new process: same incident and its pages from the store
    again = make_core(resume=[(inc, core.outbox(inc.id))])
    assert again.trackers["shop"].down
    later = drive(again, clock, lambda p, t: {"a", "b", "c"} if t < inc.started_at + 400 else set(), seconds=400, interval=10.0)
    assert [p.key for _, _, p in later] == ["step:2", "recovery"]
    assert {i for _, i, _ in later} == {inc.id}
    assert make_core(resume=[(inc, [])], next_id=1)._next_id == inc.id + 1


def test_an_incident_inside_maintenance_is_kept_but_quiet() -> None:
    clock = FakeClock()
    t0 = clock.t
    pol = Policy(CHAIN.steps, 600, (Window(t0, t0 + 3600),))
    core = make_core(policy=pol)
    sent = drive(core, clock, lambda p, t: {"a", "b"} if t < t0 + 1000 else set(), seconds=1800, interval=10.0)
    assert sent == []
    inc = core.incident(1)
    assert inc is None  # closed, and no recovery message since nobody was paged
    assert core.trackers["shop"].round_no == 180 and not core.trackers["shop"].down


def test_an_incident_declared_in_maintenance_is_marked_quiet() -> None:
    clock = FakeClock()
    t0 = clock.t
    core = make_core(policy=Policy(CHAIN.steps, 600, (Window(t0, t0 + 3600),)))
    drive(core, clock, lambda p, t: {"a", "b"}, seconds=100, interval=10.0)
    inc = core.open_incident("shop")
    assert inc is not None and inc.quiet and inc.started_at == t0


def test_updates_carry_the_new_reason() -> None:
    core = make_core()
    for i, reason in enumerate(["status 503", "status 503", "timeout"]):
        for p in PROBES:
            core.record(ProbeResult("shop", p, float(i), False, reason))
        out = core.close_round("shop", i + 0.5)
    assert out.updated is not None and "timeout" in out.updated.reason
