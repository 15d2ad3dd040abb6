"""The data path's counters: the latency bucket written out is bisect's, and
a snapshot counts each (status, decision, outcome) it was told."""

from __future__ import annotations

import random
from bisect import bisect_left

from shieldwall.metrics import LATENCY_BUCKETS, Metrics, _bucket


def test_the_written_out_bucket_is_bisect_left_over_the_bounds() -> None:
    rnd = random.Random(7)
    values = [0.0, 1e-09, 20.0, 1000000000.0, *list(LATENCY_BUCKETS)]
    values += [b * f for b in LATENCY_BUCKETS for f in (0.999999, 1.000001)]
    values += [rnd.uniform(0, 12) for _ in range(2000)] + [rnd.expovariate(100) for _ in range(2000)]
    for v in values:
        assert _bucket(v) == bisect_left(LATENCY_BUCKETS, v), v


def test_observe_counts_by_status_decision_and_outcome() -> None:
    m = Metrics()
    for status, d, o, rt in [(200, "allow", "ok", 0.002), (200, "allow", "ok", 0.3),
                             (429, "limit", "shield", 0.0), (200, "-", "ok", 11.0)]:
        m.observe(status, d, o, rt)
    snap = m.snapshot()
    assert sorted(map(tuple, snap["requests"])) == [
        (200, "-", "ok", 1), (200, "allow", "ok", 2), (429, "limit", "shield", 1)]
    assert snap["latency_counts"][0] == 1 and snap["latency_counts"][1] == 1
    assert snap["latency_counts"][8] == 1 and snap["latency_counts"][-1] == 1
    assert abs(snap["latency_sum"] - 11.302) < 1e-9


def test_a_tally_counts_as_observing_each_of_its_requests_at_zero_seconds() -> None:
    tallied, observed = Metrics(), Metrics()
    t = tallied.tally(429, "limit", "shield")
    assert tallied.tally(429, "limit", "shield") is t  # one per set of labels
    for m in (tallied, observed):
        m.observe(429, "limit", "shield", 0.0)
        m.observe(200, "allow", "ok", 0.02)
    for _ in range(5):
        t.n += 1
        observed.observe(429, "limit", "shield", 0.0)
    assert tallied.snapshot() == observed.snapshot()
    t.n += 2
    snap = tallied.snapshot()  # folded once: read twice, counted once
    assert [429, "limit", "shield", 8] in snap["requests"] and snap["latency_counts"][0] == 8
    assert tallied.snapshot()["requests"] == snap["requests"]


def test_runs_of_the_same_labels_count_as_each_request_would() -> None:
    """observe counts a run of the same labels natively and adds it when the
    labels change or a snapshot is taken: 5,000 random requests in runs, with
    snapshots in between, give the counts of a plain tally."""
    rnd = random.Random(11)
    labels = [(200, "allow", "ok"), (200, "-", "ok"), (429, "limit", "shield"),
              (502, "allow", "bad_response"), (200, "allow", "stale")]
    m = Metrics()
    want: dict[tuple[int, str, str], int] = {}
    for _ in range(500):
        key = rnd.choice(labels)
        for _ in range(rnd.randint(1, 20)):
            m.observe(*key, 0.001)
            want[key] = want.get(key, 0) + 1
        if rnd.random() < 0.1:
            got = {(s, d, o): n for s, d, o, n in m.snapshot()["requests"]}
            assert got == want
    got = {(s, d, o): n for s, d, o, n in m.snapshot()["requests"]}
    assert got == want and m.snapshot()["latency_counts"][0] == sum(want.values())
