"""Through the real proxy: with the backend full, a shopper with a cart is
served before any unknown client that was waiting before it."""

from __future__ import annotations

import asyncio
import time

from guard_harness import ProxyHarness
from guard_helpers import cookies_from, fetch, runtime


async def _until(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_customer_is_served_before_any_unknown_when_the_backend_is_full() -> None:
    h = ProxyHarness(runtime(time.time, admission={"limit": 1, "queue_timeout": 30,
                                                   "customer_queue_timeout": 30}))
    h.start()
    try:
        h.released = True
        jar: dict[str, str] = {}
        _, headers, _ = await fetch(h.port, "127.3.0.1", "/cart/add")
        cookie = cookies_from(headers, jar)
        assert "sw_s=" in cookie
        h.released = False
        h.upstream_seen.clear()

        occupant = asyncio.create_task(fetch(h.port, "127.3.1.1", "/hold/first"))
        await _until(lambda: h.upstream_seen == ["/hold/first"])
        waiting = [asyncio.create_task(fetch(h.port, f"127.3.2.{i}", f"/hold/unknown{i}"))
                   for i in range(1, 5)]

        def queued() -> int:
            return int(sum(a["waiting"] for a in h.rt.admission.status().values()))

        await _until(lambda: queued() == 4)
        customer = asyncio.create_task(fetch(h.port, "127.3.0.1", "/hold/customer", cookie))
        await _until(lambda: queued() == 5)
        h.released = True
        results = await asyncio.gather(occupant, *waiting, customer)
        assert [st for st, _, _ in results] == [200] * 6
        assert h.upstream_seen[:2] == ["/hold/first", "/hold/customer"]
        assert sorted(h.upstream_seen[2:]) == [f"/hold/unknown{i}" for i in range(1, 5)]
    finally:
        h.stop()
