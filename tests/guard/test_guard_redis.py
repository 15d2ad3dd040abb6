"""Two shield processes' guards sharing one real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from guard_helpers import RedisProc, challenge_of, cookie_pair, facts, parse, runtime

from shieldwall.guard._tokens import solve
from shieldwall.guard.decision import Action, ClientClass, Mode
from shieldwall.guard.runtime import GuardRuntime

pytestmark = pytest.mark.redis


def _pair(url: str, **kw: object) -> tuple[GuardRuntime, GuardRuntime]:
    kw.setdefault("redis", {"url": url, "sync_interval": 0.02})
    return runtime(time.time, **kw), runtime(time.time, **kw)


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_limit_is_counted_across_both_processes(redis_server: RedisProc) -> None:
    a, b = _pair(redis_server.url,
                 limits={"default_route": {"name": "page", "rate": 0.001, "burst": 10}})
    await a.start()
    await b.start()
    try:
        f = facts()
        assert [a.gate.decide(f).action for _ in range(10)] == [Action.ALLOW] * 10
        assert a.gate.decide(f).action is Action.LIMIT
        await a.sync_now()
        # b has never seen this client: it spends from its local copy for one
        # batch (the documented overshoot), then learns the shared level
        assert b.gate.decide(f).action is Action.ALLOW
        await b.sync_now()
        assert b.gate.decide(f).action is Action.LIMIT
        # without sharing, b alone would have allowed 10
        alone = runtime(time.time, limits={"default_route": {"name": "page", "rate": 0.001,
                                                             "burst": 10}})
        assert sum(alone.gate.decide(f).action is Action.ALLOW for _ in range(11)) == 10
    finally:
        await a.stop()
        await b.stop()


async def test_a_ban_on_one_blocks_on_the_other_and_mode_is_shared(
        redis_server: RedisProc) -> None:
    a, b = _pair(redis_server.url)
    await a.start()
    await b.start()
    try:
        a.ban("203.0.113.0/24", ttl=600, reason="flood")
        await _until(lambda: b.gate.decide(facts(client="203.0.113.9")).action is Action.BLOCK)
        assert b.bans()[0]["reason"] == "flood"
        b.unban("203.0.113.0/24")
        await _until(lambda: a.gate.decide(facts(client="203.0.113.9")).action is Action.ALLOW)

        a.set_mode(Mode.UNDER_ATTACK, "operator")
        await _until(lambda: b.state.mode is Mode.UNDER_ATTACK and b.state.pinned is not None)
        b.set_mode(Mode.NORMAL, "detector")  # ignored: pinned
        assert b.state.mode is Mode.UNDER_ATTACK
        b.set_mode(None, "operator")  # auto, on the other process
        await _until(lambda: a.state.pinned is None)

        a.allow("198.51.100.0/24", ttl=600)
        b.set_mode(Mode.UNDER_ATTACK, "operator")
        await _until(lambda: b.gate.decide(facts(client="198.51.100.1")).action is Action.ALLOW)
    finally:
        await a.stop()
        await b.stop()


async def test_pass_token_from_one_process_is_accepted_by_the_other(
        redis_server: RedisProc) -> None:
    a, b = _pair(redis_server.url, mode="under_attack", challenge={"difficulty": 8})
    await a.start()
    await b.start()
    try:
        meta = challenge_of(a.gate.decide(facts()).response)
        q = f"c={quote(meta['challenge'])}&n={solve(meta['challenge'], 8)}&r=%2F"
        d = a.gate.decide(facts(path="/.shieldwall/verify", query=q))
        cookie = cookie_pair(parse(d.response).header("Set-Cookie"))
        on_b = b.gate.decide(facts(cookie=cookie))
        assert on_b.action is Action.ALLOW and on_b.cls is ClientClass.VERIFIED
    finally:
        await a.stop()
        await b.stop()


async def test_every_key_has_a_ttl(redis_server: RedisProc) -> None:
    a, _ = _pair(redis_server.url)
    await a.start()
    try:
        a.ban("192.0.2.1", ttl=60)
        a.set_mode(Mode.ELEVATED, "operator")
        for _ in range(3):
            a.gate.decide(facts())
        await a.sync_now()
        await a.sync_now()
        r = aioredis.Redis.from_url(redis_server.url)
        keys = [k async for k in r.scan_iter("*")]
        assert len(keys) >= 5
        for k in keys:
            assert await r.ttl(k) > 0, k
        await r.aclose()
    finally:
        await a.stop()


async def test_redis_lost_mid_run_then_back(redis_server: RedisProc,
                                            caplog: pytest.LogCaptureFixture) -> None:
    a, b = _pair(redis_server.url)
    await a.start()
    await b.start()
    try:
        redis_server.kill()
        await _until(lambda: not a.status()["store"]["healthy"])
        assert "Redis unreachable" in caplog.text and "serving on local state" in caplog.text
        # still deciding on local state (decide is synchronous: it cannot wait on Redis)
        assert a.gate.decide(facts()).action is Action.ALLOW
        a.ban("203.0.113.66", ttl=600, reason="while redis was down")
        assert a.gate.decide(facts(client="203.0.113.66")).action is Action.BLOCK
        assert a.status()["store"]["failures"] >= 1
        redis_server.start()
        await _until(lambda: a.status()["store"]["healthy"] and b.status()["store"]["healthy"])
        # the change made while Redis was gone reaches the other process
        await _until(lambda: b.gate.decide(facts(client="203.0.113.66")).action is Action.BLOCK)
        assert "Redis is back" in caplog.text
    finally:
        await a.stop()
        await b.stop()


async def test_shield_starts_without_redis_and_says_so() -> None:
    rt = runtime(time.time, redis={"url": "unix:///nonexistent/redis.sock"})
    await rt.start()
    try:
        store = rt.status()["store"]
        assert store["kind"] == "redis" and not store["healthy"] and store["last_error"]
        assert rt.gate.decide(facts()).action is Action.ALLOW
    finally:
        await rt.stop()


async def test_store_health_is_a_metric(redis_server: RedisProc) -> None:
    rt = runtime(time.time, redis={"url": redis_server.url, "sync_interval": 0.02})
    await rt.start()
    try:
        assert "shieldwall_guard_store_healthy 1\n" in rt.metrics_text()
        redis_server.kill()
        await _until(lambda: "shieldwall_guard_store_healthy 0\n" in rt.metrics_text())
        text = rt.metrics_text()
        assert 'shieldwall_guard_mode{mode="normal"} 1' in text
    finally:
        await rt.stop()


async def test_shared_detector_mode_is_the_most_severe_verdict(redis_server: RedisProc) -> None:
    a, b = _pair(redis_server.url)
    await a.start()
    await b.start()
    try:
        a.set_mode(Mode.UNDER_ATTACK, "detector")
        await _until(lambda: b.state.mode is Mode.UNDER_ATTACK)
        b.set_mode(Mode.NORMAL, "detector")  # b sees less; a's verdict still stands
        for _ in range(3):
            await b.sync_now()
            await a.sync_now()
        assert a.state.mode is Mode.UNDER_ATTACK and b.state.mode is Mode.UNDER_ATTACK
        a.set_mode(Mode.NORMAL, "detector")
        await _until(lambda: a.state.mode is Mode.NORMAL and b.state.mode is Mode.NORMAL)
    finally:
        await a.stop()
        await b.stop()
