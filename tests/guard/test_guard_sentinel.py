"""Redis that survives: two guards on a primary + replica watched by a
Sentinel (Debian's redis-server in sentinel mode). The primary is killed in
the middle of a flood of decisions and bans: decisions never wait, the
replica is promoted, both guards resynchronise within seconds and not one
ban is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from guard_helpers import facts, runtime

from shieldwall.drill.procs import Lab
from shieldwall.drill.redis_lab import RedisClusterLab, SentinelRedis, sentinel_available
from shieldwall.guard.decision import Action, Mode
from shieldwall.guard.runtime import GuardRuntime

pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(not sentinel_available(), reason="needs redis-server (make installs it)")]


def _blocks(rt: GuardRuntime, i: int) -> bool:
    return rt.gate.decide(facts(client=f"203.0.{i}.9")).action is Action.BLOCK


async def test_primary_killed_mid_flood_replica_promoted_no_ban_lost(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        redis = SentinelRedis(lab, tmp_path, down_after=0.5)
        await asyncio.to_thread(redis.start)
        kw = {"redis": {"url": redis.url, "sync_interval": 0.02}}
        a, b = runtime(time.time, **kw), runtime(time.time, **kw)
        await a.start()
        await b.start()
        try:
            assert a.status()["store"]["redis"] == "sentinel"
            stop = asyncio.Event()
            slowest = [0.0]
            decided = [0]
            unhealthy_seen = [False]

            async def flood() -> None:
                # shoppers' and attackers' requests keep being decided locally
                n = 0
                while not stop.is_set():
                    for rt in (a, b):
                        t0 = time.perf_counter()
                        rt.gate.decide(facts(client=f"198.51.100.{n % 200}"))
                        slowest[0] = max(slowest[0], time.perf_counter() - t0)
                        decided[0] += 1
                    n += 1
                    if not a.status()["store"]["healthy"]:
                        unhealthy_seen[0] = True
                    await asyncio.sleep(0)

            flooding = asyncio.create_task(flood())
            bans = 60
            old = ""
            promoted_after = 0.0
            for i in range(bans):
                (a if i % 2 == 0 else b).ban(f"203.0.{i}.0/24", ttl=600, reason="flood")
                await asyncio.sleep(0.02)
                if i == 20:
                    # bans 0-20 are on the primary (and maybe not yet on the
                    # replica); the rest are made while it is gone
                    old = await asyncio.to_thread(redis.kill_primary)
            promoted_after = await asyncio.to_thread(redis.wait_promoted, old)
            t_promoted = time.monotonic()
            deadline = t_promoted + 15
            while not all(_blocks(rt, i) for rt in (a, b) for i in range(bans)):
                assert time.monotonic() < deadline, "bans not everywhere 15 s after the promotion"
                await asyncio.sleep(0.05)
            while not (a.status()["store"]["healthy"] and b.status()["store"]["healthy"]):
                assert time.monotonic() < deadline, "not resynchronised 15 s after the promotion"
                await asyncio.sleep(0.05)
            resynced = time.monotonic() - t_promoted
            stop.set()
            await flooding
            new = redis.primary()
            assert new != old
            on_new = await asyncio.to_thread(redis.hkeys, new, "sw:bans")
            assert on_new >= {f"203.0.{i}.0/24" for i in range(bans)}
            assert unhealthy_seen[0]  # the outage was seen (and said) ...
            assert slowest[0] < 0.25  # ... and no decision waited for Redis (0.5 s socket timeouts)
            assert decided[0] > 1000
            print(f"promoted {promoted_after:.2f}s after the kill, resynced {resynced:.2f}s later, "
                  f"{decided[0]} decisions, slowest {slowest[0] * 1000:.2f} ms")
        finally:
            await a.stop()
            await b.stop()


async def test_a_redis_cluster_shares_limits_bans_and_mode(tmp_path: Path) -> None:
    with Lab(tmp_path) as lab:
        cluster = RedisClusterLab(lab, tmp_path)
        await asyncio.to_thread(cluster.start)
        kw: dict[str, object] = {"redis": {"url": cluster.url, "sync_interval": 0.02},
                                 "limits": {"default_route": {"name": "page", "rate": 0.001, "burst": 10}}}
        a, b = runtime(time.time, **kw), runtime(time.time, **kw)
        await a.start()
        await b.start()
        try:
            f = facts()
            assert [a.gate.decide(f).action for _ in range(10)] == [Action.ALLOW] * 10
            await a.sync_now()
            b.gate.decide(f)  # b's first batch for a client it never saw (the overshoot)
            await b.sync_now()
            assert b.gate.decide(f).action is Action.LIMIT
            a.ban("203.0.113.0/24", ttl=600, reason="flood")
            a.set_mode(Mode.UNDER_ATTACK, "operator")
            await a.sync_now()
            await b.sync_now()
            assert not _blocks(b, 0)  # 203.0.0.9 is not in the ban
            assert b.gate.decide(facts(client="203.0.113.9")).action is Action.BLOCK
            assert b.state.mode is Mode.UNDER_ATTACK
            status = b.status()["store"]
            assert status["redis"] == "cluster" and status["healthy"], status
        finally:
            await a.stop()
            await b.stop()
