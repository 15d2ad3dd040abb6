"""Proven attackers are banned without an operator: a client the detector
names with a score at or above auto_ban_score, where the settings allow it
(by default only while the nftables set is in use); never an allow-listed one."""

from __future__ import annotations

import asyncio
import time

from guard_helpers import runtime
from test_guard_nftables import _probe, _until_probe, netns  # noqa: F401  (fixture)


def _banned(rt: object) -> list[tuple[str, str]]:
    return [(b["value"], b["source"]) for b in rt.bans()]  # type: ignore[attr-defined]


def test_a_sure_verdict_bans_the_address_and_a_doubtful_one_does_not() -> None:
    rt = runtime(time.time, auto_ban="on", allow=["192.0.2.77"])
    rt.mark_suspect("192.0.2.5", 0.95, 60)
    rt.mark_suspect("192.0.2.6", 0.8, 60)   # a suspect (challenged), not proven
    rt.mark_suspect("192.0.2.77", 0.99, 60)  # allow-listed: never banned
    rt.mark_suspect("192.0.2.5", 0.95, 60)  # once is enough
    assert _banned(rt) == [("192.0.2.5/32", "auto")]
    assert rt.gate.refused_at_accept("192.0.2.5")
    assert not rt.gate.refused_at_accept("192.0.2.6")


def test_by_default_only_where_the_kernel_set_is_in_use() -> None:
    rt = runtime(time.time)  # auto_ban = "nftables", nftables off
    rt.mark_suspect("192.0.2.5", 0.99, 60)
    assert _banned(rt) == []
    off = runtime(time.time, auto_ban="off")
    off.mark_suspect("192.0.2.5", 0.99, 60)
    assert _banned(off) == []


def test_a_peer_workers_sure_suspect_is_banned_here_too() -> None:
    rt = runtime(time.time, auto_ban="on")
    assert rt.peer_suspects([["192.0.2.9", 0.95, time.time() + 60]]) == 1
    assert _banned(rt) == [("192.0.2.9/32", "auto")]


async def test_a_proven_attacker_is_dropped_by_the_kernel(netns: str) -> None:  # noqa: F811
    rt = runtime(time.time, nftables="on", nftables_netns=netns)
    await rt.start()
    try:
        assert _probe(netns, "127.0.0.2") == "open"
        rt.mark_suspect("127.0.0.2", 0.95, 60)
        await _until_probe(netns, "127.0.0.2", "dropped")
        assert _probe(netns, "127.0.0.3") == "open"
        await asyncio.sleep(0)
    finally:
        await rt.stop()
