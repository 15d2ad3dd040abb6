"""The issue's "done when": a flood from a thousand loopback addresses that
never solves a challenge reaches the backends with nothing once the mode is
under_attack, while a shopper who solves it gets in and is served as a
customer, and all of it holds across two shield processes sharing Redis."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest
from guard_harness import ProxyHarness
from guard_helpers import RedisProc, cookies_from, fetch, runtime

from shieldwall.drill.challenge import find
from shieldwall.guard._tokens import solve
from shieldwall.guard.decision import Mode

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_flood_reaches_no_backend_while_a_shopper_gets_through(
        redis_server: RedisProc) -> None:
    kw = {"redis": {"url": redis_server.url, "sync_interval": 0.02}}
    a = ProxyHarness(runtime(time.time, **kw))
    b = ProxyHarness(runtime(time.time, **kw))
    a.start()
    b.start()
    try:
        a.rt.set_mode(Mode.UNDER_ATTACK, "operator")  # pinned on one, shared with both
        deadline = time.monotonic() + 5
        while b.rt.state.mode is not Mode.UNDER_ATTACK:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

        sem = asyncio.Semaphore(64)
        statuses: dict[int, int] = {}

        async def bot(i: int) -> None:
            source = f"127.1.{i // 250}.{i % 250 + 1}"
            async with sem:
                st, _, _ = await fetch((a if i % 2 else b).port, source,
                                       f"/search?q=bot{i}&r={i * 7919}")
            statuses[st] = statuses.get(st, 0) + 1

        await asyncio.gather(*(bot(i) for i in range(1000)))
        assert a.upstream_hits == 0 and b.upstream_hits == 0
        assert sum(statuses.values()) == 1000 and set(statuses) <= {403, 429}

        # a shopper: challenged on one process, served by both, a customer after the cart
        jar: dict[str, str] = {}
        st, headers, page = await fetch(a.port, "127.2.0.1", "/shop?item=7")
        assert st == 403
        ch = find(page)
        assert ch is not None
        n = await asyncio.to_thread(solve, ch.challenge, ch.difficulty)
        st, headers, _ = await fetch(
            a.port, "127.2.0.1",
            f"{ch.verify}?c={quote(ch.challenge, safe='')}&n={n}&r={quote(ch.redirect, safe='')}")
        assert st == 302 and headers["location"] == ["/shop?item=7"]
        cookie = cookies_from(headers, jar)
        st, headers, _ = await fetch(b.port, "127.2.0.1", "/shop?item=7", cookie)
        assert st == 200
        cookie = cookies_from(headers, jar)
        st, headers, _ = await fetch(b.port, "127.2.0.1", "/cart/add", cookie)
        assert st == 200
        cookie = cookies_from(headers, jar)
        st, _, _ = await fetch(a.port, "127.2.0.1", "/checkout", cookie)
        assert st == 200
        assert a.upstream_hits + b.upstream_hits == 3
        assert a.rt.status()["counters"].get("customer:marked", 0) + \
            b.rt.status()["counters"].get("customer:marked", 0) == 1
    finally:
        a.stop()
        b.stop()
