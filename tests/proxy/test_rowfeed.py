"""The worker's row feed: every reader gets every row once, in order, and the
feed forgets what all readers have taken (bounded even if one stops)."""

from __future__ import annotations

from shieldwall.console import Recorder
from shieldwall.rowfeed import LiveRow, RowFeed


def row(i: int, t: float = 1_000_000.5, decision: str = "allow", status: int = 200,
        outcome: str = "ok", upstream: str = "b:1") -> LiveRow:
    return ((t, f"192.0.2.{i % 250}", f"/p/{i}", "", status, 512, 0.002, "ua", False, False,
             outcome, 0.001), decision, "unknown", upstream)


def test_each_reader_takes_every_row_once_and_taken_rows_are_dropped() -> None:
    feed = RowFeed()
    a, b = feed.reader(), feed.reader()
    for i in range(3):
        feed.push(row(i))
    assert [r[0][2] for r in a()] == ["/p/0", "/p/1", "/p/2"]
    assert len(feed.rows) == 3, "b has not read them yet"
    feed.push(row(3))
    assert [r[0][2] for r in b()] == ["/p/0", "/p/1", "/p/2", "/p/3"]
    assert len(feed.rows) == 1, "rows both readers took are gone"
    assert [r[0][2] for r in a()] == ["/p/3"]
    assert feed.rows == [] and a() == [] and b() == []
    feed.rows.append(row(4))  # the proxy appends to the list itself
    assert [r[0][2] for r in b()] == ["/p/4"] and [r[0][2] for r in a()] == ["/p/4"]


def test_a_reader_made_later_starts_at_the_end_and_the_cap_drops_and_counts() -> None:
    feed = RowFeed(cap=2)
    first = feed.reader()
    feed.push(row(0))
    late = feed.reader()
    feed.push(row(1))
    feed.push(row(2))
    assert feed.dropped == 1
    assert [r[0][2] for r in late()] == ["/p/1"]
    assert [r[0][2] for r in first()] == ["/p/0", "/p/1"]


def test_the_console_counts_the_feeds_rows_at_its_tick() -> None:
    t = [1_000_001.0]
    feed = RowFeed()
    rec = Recorder(lambda: t[0], feed=feed)
    for i in range(4):
        feed.push(row(i))
    feed.push(row(9, decision="limit", status=429, outcome="shield", upstream=""))
    rec.tick()
    [(at, outcomes, classes, _lat)] = rec.view()["seconds"]
    assert at == 1_000_000 and outcomes == {"allowed": 4, "limited": 1}
    assert classes == {"unknown": 5}
    assert rec.view()["backends"] == {"b:1": [4, 0]}
