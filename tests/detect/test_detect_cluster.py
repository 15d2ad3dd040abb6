"""The cluster-wide verdict (shieldwall.detect.cluster): a flood spread evenly
over three nodes, each building its own windows, merges back into exactly
the windows one shield seeing everything would have built, so the cluster's
detector says what that shield would say; through a real redis-server,
three judges agree, and without Redis each falls back to its own view."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from shieldwall.detect.cluster import (
    MAX_KEYS,
    STALE_AFTER,
    ClusterJudge,
    decode,
    encode,
    merge,
    severest,
)
from shieldwall.detect.detector import Detector
from shieldwall.detect.settings import DetectSettings
from shieldwall.detect.synth import generate, make_scenario
from shieldwall.detect.windows import FIELDS, Window, WindowBuilder
from shieldwall.drill.procs import Lab
from shieldwall.drill.redis_lab import sentinel_available, start_single
from shieldwall.guard._redis_url import make_client
from shieldwall.guard.decision import Mode

SETTINGS = DetectSettings()


def _builder(det: Detector) -> WindowBuilder:
    return WindowBuilder(lateness=SETTINGS.live_lateness, **det.make_builder_args())


def _windows_by_node(nodes: int) -> tuple[list[Window], list[list[Window]]]:
    events = generate(make_scenario(5, ["flood"], warmup=40, phase_len=(20, 20), gap=(15, 15)))
    det = Detector(SETTINGS)
    whole, parts = _builder(det), [_builder(det) for _ in range(nodes)]
    for i, ev in enumerate(events):
        whole.add_event(ev)
        parts[i % nodes].add_event(ev)  # round robin, as a balancer spreads connections
    end = events[-1].time + 10
    return whole.close_until(end), [p.close_until(end) for p in parts]


def _same(a: Window, b: Window) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        # float sums differ in the last bits with the order they were added in
        assert (x == pytest.approx(y, rel=1e-9)) if isinstance(x, float) else x == y, name


def test_three_nodes_windows_merge_into_the_one_shields_window() -> None:
    whole, parts = _windows_by_node(3)
    by_sec = [{w.sec: w for w in p} for p in parts]
    assert len(whole) > 60
    for w in whole:
        got = merge(w.sec, [decode(encode(p[w.sec])) for p in by_sec if w.sec in p])
        _same(got, w)


def test_the_cluster_detector_says_window_by_window_what_one_shield_would() -> None:
    whole, parts = _windows_by_node(3)
    one, cluster = Detector(SETTINGS), Detector(SETTINGS)
    by_sec = [{w.sec: w for w in p} for p in parts]
    named_one = named_cluster = None
    for w in whole:
        a = one.step(w)
        b = cluster.step(merge(w.sec, [p[w.sec] for p in by_sec if w.sec in p]))
        assert (a.state, a.mode) == (b.state, b.mode)
        fa, fb = a.features.as_dict(), b.features.as_dict()
        assert fa.keys() == fb.keys()
        for k, v in fa.items():
            assert (v == pytest.approx(fb[k], rel=1e-9)) if isinstance(v, float) else v == fb[k], k
        if a.state == "ddos" and named_one is None:
            named_one = w.sec
        if b.state == "ddos" and named_cluster is None:
            named_cluster = w.sec
    assert named_one is not None and named_cluster == named_one


def test_a_window_with_more_sources_than_the_cap_keeps_the_heaviest() -> None:
    w = Window(100)
    for i in range(MAX_KEYS + 1000):
        w.src[f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"] = 1
        w.n += 1
    w.src["203.0.113.9"] = 500
    w.cflags["203.0.113.9"] = 1
    raw = encode(w)
    got = decode(raw)
    assert len(got.src) == MAX_KEYS and got.src["203.0.113.9"] == 500 and got.cflags == {"203.0.113.9": 1}
    assert got.n == w.n and raw.endswith(b'"cut":true}')


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.skipif(not sentinel_available(), reason="needs redis-server (make installs it)")
async def test_three_judges_on_redis_agree_then_fall_back_to_their_own_view(tmp_path: Path) -> None:
    whole, parts = _windows_by_node(3)
    with Lab(tmp_path) as lab:
        port = await asyncio.to_thread(start_single, lab, tmp_path)
        clock = Clock(float(whole[0].sec))
        modes: list[list[Mode]] = [[], [], []]
        judges = [ClusterJudge(SETTINGS, f"redis://127.0.0.1:{port}", "sw:",
                               lambda m, s, i=i: modes[i].append(m), None, clock, feed=f"node{i}")
                  for i in range(3)]
        for j in judges:
            j.client, j._extra = make_client(j.target, 0.5)  # start() without its loop: rounds by hand
        try:
            by_sec = [{w.sec: w for w in p} for p in parts]
            for w in whole:
                clock.t = w.sec + 1 + SETTINGS.live_lateness
                for i, j in enumerate(judges):
                    j.offer([by_sec[i].get(w.sec, Window(w.sec))])
                    await j.round()
                    j._check_health()
                for j in judges:  # everyone's window for this second is in now
                    await j.round()
            assert all(j.healthy for j in judges)
            assert [j.judged for j in judges] == [len(whole)] * 3
            assert all(j.feeds_last == 3 for j in judges)
            assert modes[0] == modes[1] == modes[2] and Mode.UNDER_ATTACK in modes[0]
            # Redis goes away: each judge says so and its own detector's mode is in force
            await asyncio.to_thread(lab.kill, "redis")
            judges[0].local(Mode.ELEVATED, "detector")
            clock.t += STALE_AFTER + 0.5
            with pytest.raises((RedisError, OSError)):
                await judges[0].round()
            judges[0]._check_health()
            st = judges[0].status()
            assert not st["healthy"] and st["in_force"].startswith("local")
            assert modes[0][-1] is Mode.ELEVATED
        finally:
            for j in judges:
                await j.stop()


def test_the_guard_gets_the_severer_of_the_clusters_mode_and_the_nodes_own() -> None:
    """The cluster's verdict for a second waits for every feed's window: a node
    whose own traffic already says flood raises its guard at once; the
    cluster's view still raises a node that sees too little; the mode falls
    only when both have calmed; without Redis the node's own is in force."""
    assert severest(Mode.NORMAL, Mode.UNDER_ATTACK, Mode.ELEVATED) is Mode.UNDER_ATTACK
    sent: list[Mode] = []
    j = ClusterJudge(SETTINGS, "redis://127.0.0.1:1/0", "sw:", lambda m, s: sent.append(m), None,
                     Clock(0.0), feed="n0")
    j.healthy = True
    j.local(Mode.UNDER_ATTACK, "detector")  # the cluster has not judged this second yet
    assert sent[-1] is Mode.UNDER_ATTACK and j.status()["guard_mode"] == "under_attack"
    j.cluster_mode = Mode.ELEVATED
    j.local(Mode.NORMAL, "detector")  # own view calm, the cluster's not: stay raised
    assert sent[-1] is Mode.ELEVATED
    j.cluster_mode = Mode.NORMAL
    j.local(Mode.NORMAL, "detector")
    assert sent[-1] is Mode.NORMAL
    j.cluster_mode = Mode.UNDER_ATTACK
    j.healthy = False  # Redis unreachable: the node's own view only
    j.local(Mode.ELEVATED, "detector")
    assert sent[-1] is Mode.ELEVATED


def test_suspects_come_from_the_view_in_force() -> None:
    """With Redis the cluster's detector names suspects; the node's own
    detector's are passed on only while Redis is unreachable."""
    named: list[str] = []
    j = ClusterJudge(SETTINGS, "redis://127.0.0.1:1/0", "sw:", None,
                     lambda c, score, ttl: named.append(c), Clock(0.0), feed="n0")
    j.healthy = True
    j.local_suspect("198.51.100.1", 0.9, 30.0)
    assert named == []
    j.healthy = False
    j.local_suspect("198.51.100.2", 0.9, 30.0)
    assert named == ["198.51.100.2"]
