"""The console's first pass (shieldwall.rowfeed.console_groups, compiled):
the same groups as the plain one-key-per-row count it replaced."""

from __future__ import annotations

import random
from bisect import bisect_left

from shieldwall.console._recorder import LATENCY_BOUNDS
from shieldwall.rowfeed import LiveRow, console_groups


def _reference(rows: list[LiveRow]) -> dict[tuple[object, ...], int]:
    out: dict[tuple[object, ...], int] = {}
    for (t_end, client, path, _q, status, _b, rt, agent, _s, _v, outcome, _ut), \
            decision, cls, upstream in rows:
        k = (int(t_end), client, agent, path, decision, outcome, status, cls,
             bisect_left(LATENCY_BOUNDS, rt), upstream)
        out[k] = out.get(k, 0) + 1
    return out


def test_groups_match_one_key_per_row() -> None:
    rnd = random.Random(7)
    times = [0.0, 0.0004, LATENCY_BOUNDS[0], LATENCY_BOUNDS[3], 0.0101, 3.0, 1e9, float("nan")]
    rows: list[LiveRow] = []
    for i in range(4000):
        req = (1_800_000_000.0 + i / 900, rnd.choice(["10.0.0.1", "10.0.0.2"]),
               rnd.choice(["/", "/cart"]), "", rnd.choice([200, 404, 503]), 512,
               rnd.choice(times), rnd.choice(["ua", ""]), True, False, "ok", 0.001)
        rest = (rnd.choice(["allow", "limit", ""]), "unknown", "127.0.0.1:1")
        rows.append((req, *rest))
        while rnd.random() < 0.6:  # runs of the same request, as a flood sends them
            rows.append(((*req[:6], rnd.choice(times), *req[7:]), *rest))
    assert console_groups(rows, LATENCY_BOUNDS) == _reference(rows)
    assert console_groups([], LATENCY_BOUNDS) == {}
