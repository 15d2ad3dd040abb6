"""Balancing, health, failover and the stale cache: the pure parts with a
fake clock, then the same behaviour through real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from proxy_backends import Backend, Client, Reply, free_port, send_raw, shield_config, status_of

from shieldwall.config import build_config
from shieldwall.proxy.balancer import Balancer, should_retry
from shieldwall.proxy.cache import Entry, StaleCache, cacheable
from shieldwall.proxy.worker import run_shield


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def balancer(clock: FakeClock, **kw: float) -> Balancer:
    b = Balancer(clock, **kw)  # type: ignore[arg-type]
    b.set_backends([("a", "127.0.0.1", 1, 1), ("b", "127.0.0.1", 2, 3)])
    return b


def test_least_outstanding_requests_weighted() -> None:
    bal = balancer(FakeClock())
    a, b = bal.backends
    a.outstanding, b.outstanding = 1, 2  # scores: a (1+1)/1 = 2, b (2+1)/3 = 1
    assert bal.pick() is b
    a.outstanding, b.outstanding = 0, 5  # a 1, b 2
    assert bal.pick() is a
    assert bal.pick(exclude=a) is b


def test_consecutive_failures_eject_then_one_half_open_trial() -> None:
    clock = FakeClock()
    bal = balancer(clock, max_fails=3, eject_time=10.0)
    a, b = bal.backends
    bal.failed(a)
    bal.failed(a)
    bal.succeeded(a)  # a success resets the run
    for _ in range(3):
        bal.failed(a)
    assert a.ejected_until == 1010.0
    b.outstanding = 100
    assert bal.pick() is b  # ejected: never picked, however loaded b is
    clock.now = 1010.5
    assert bal.pick() is a and a.trial  # half-open: one trial...
    assert bal.pick() is b  # ...and only one
    bal.failed(a)  # the trial failed: ejected again at once
    assert a.ejected_until == 1020.5 and not a.trial
    clock.now = 1021
    assert bal.pick() is a
    bal.succeeded(a)
    assert a.healthy and bal.pick() is a


def test_active_health_thresholds() -> None:
    bal = balancer(FakeClock(), healthy_threshold=2, unhealthy_threshold=3)
    a, _ = bal.backends
    assert not bal.probe_result(a, False) and not bal.probe_result(a, False)
    assert bal.probe_result(a, False) and not a.up_by_health
    assert bal.pick(exclude=bal.backends[1]) is None
    assert not bal.probe_result(a, True)
    assert bal.probe_result(a, True) and a.up_by_health


@pytest.mark.parametrize(("method", "has_body", "sent", "attempt", "timed_out", "expected"), [
    ("GET", False, True, 1, False, True),     # reset before answering: once more elsewhere
    ("GET", False, True, 2, False, False),    # only once
    ("GET", False, True, 1, True, False),     # a response timeout is never retried
    ("POST", True, True, 1, False, False),    # a POST that left is never sent again
    ("POST", True, False, 1, False, True),    # a POST whose connect failed never left
    ("PUT", True, True, 1, False, False),     # a body that left cannot be replayed
    ("DELETE", False, True, 1, False, True),
])
def test_retry_rules(method: str, has_body: bool, sent: bool, attempt: int, timed_out: bool,
                     expected: bool) -> None:
    assert should_retry(method, has_body, sent, attempt, timed_out) is expected


def test_stale_cache_budget_lru_and_age_limit() -> None:
    cache = StaleCache(max_bytes=1000, max_object_bytes=300, max_stale=60, refresh=1)
    for i in range(5):
        cache.store(b"k%d" % i, Entry(200, b"OK", [], b"x" * 250, 100.0 + i))
    assert len(cache) == 2 and cache.bytes <= 1000  # 378 bytes each with overhead
    assert cache.get(b"k0", 101) is None and cache.get(b"k4", 101) is not None
    cache.store(b"big", Entry(200, b"OK", [], b"x" * 301, 100))
    assert cache.get(b"big", 101) is None
    assert cache.get(b"k4", 200) is None  # older than max_stale
    assert not cache.wants(b"k3", 103.5) and cache.wants(b"k3", 104.5)
    assert cacheable(200, [(b"Cache-Control", b"max-age=60")])
    assert not cacheable(200, [(b"Set-Cookie", b"a=1")])
    assert not cacheable(200, [(b"Cache-Control", b"private")])
    assert not cacheable(200, [(b"cache-control", b"no-store")])
    assert not cacheable(200, [(b"Vary", b"Cookie")])
    assert not cacheable(404, [])


# -- through real sockets --------------------------------------------------

@pytest.fixture
async def pair() -> AsyncIterator[tuple[Backend, Backend]]:
    a = await Backend().start()
    b = await Backend().start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_idempotent_request_reset_before_answer_is_retried_once_elsewhere(
        pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.handler = lambda s: Reply(reset=True)
    config = build_config(shield_config([a.url, b.url]))
    async with run_shield(config) as shield:
        for i in range(4):
            out = await send_raw(shield.port, b"GET /g%d HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n" % i)
            assert status_of(out) == 200
        assert shield.worker.metrics.retries >= 1
    assert len(b.seen) == 4


async def test_a_post_is_never_sent_twice(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    a.handler = b.handler = lambda s: Reply(reset=True)
    config = build_config(shield_config([a.url, b.url]))
    async with run_shield(config) as shield:
        out = await send_raw(shield.port, b"POST /pay HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n"
                                          b"Connection: close\r\n\r\namount")
        assert status_of(out) == 502
        out = await send_raw(shield.port, b"GET /x HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 502
    posts = [s for s in a.seen + b.seen if s.method == "POST"]
    assert len(posts) == 1
    gets = [s for s in a.seen + b.seen if s.method == "GET"]
    assert len(gets) == 2  # the GET was tried once more, on the other backend


async def test_refused_backend_is_ejected_then_readmitted_by_a_half_open_trial(
        pair: tuple[Backend, Backend]) -> None:
    _, b = pair
    dead_port = free_port()
    config = build_config(shield_config([f"http://127.0.0.1:{dead_port}", b.url],
                                        upstream={"max_fails": 2, "eject_time": 0.4,
                                                  "health": {"enabled": False}}))
    async with run_shield(config) as shield:
        dead = shield.worker.balancer.backends[0]
        for i in range(6):
            out = await send_raw(shield.port, b"POST /p HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n"
                                              b"Connection: close\r\n\r\n%d" % i)
            assert status_of(out) == 200  # a refused connect sent nothing: safe elsewhere
        assert dead.ejected_until > 0
        assert [s.body for s in b.seen] == [b"%d" % i for i in range(6)]
        revived = await Backend().start(dead_port)
        try:
            await asyncio.sleep(0.5)
            for _ in range(4):
                out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
                assert status_of(out) == 200
            assert dead.healthy
            assert len(revived.seen) >= 1
        finally:
            await revived.stop()


async def test_active_health_checks_take_a_backend_out_and_bring_it_back(
        pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    sick = {"on": True}
    a.handler = lambda s: Reply(status=503 if sick["on"] and s.target == "/health" else 200)
    config = build_config(shield_config(
        [a.url, b.url],
        upstream={"health": {"enabled": True, "path": "/health", "interval": 0.05, "timeout": 0.5,
                             "healthy_threshold": 2, "unhealthy_threshold": 2}}))
    async with run_shield(config) as shield:
        state = shield.worker.balancer.backends[0]
        for _ in range(100):
            if not state.up_by_health:
                break
            await asyncio.sleep(0.02)
        assert not state.up_by_health
        before = len([s for s in a.seen if s.target != "/health"])
        c = await Client.open(shield.port)
        for _ in range(6):
            await c.send(b"GET /page HTTP/1.1\r\nHost: s\r\n\r\n")
            assert (await c.response())[0] == 200
        c.close()
        assert len([s for s in a.seen if s.target != "/health"]) == before
        sick["on"] = False
        for _ in range(100):
            if state.up_by_health:
                break
            await asyncio.sleep(0.02)
        assert state.up_by_health
        metrics = await send_raw(shield.admin_port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        assert b'shieldwall_upstream_healthy{backend="127.0.0.1:%d"} 1.0' % a.port in metrics


async def test_stale_copy_is_served_when_no_backend_can_answer(pair: tuple[Backend, Backend]) -> None:
    a, _ = pair

    def handler(s: object) -> Reply:
        target = getattr(s, "target", "")
        if target == "/cart":
            return Reply(body=b"your cart", headers=[("Set-Cookie", "cart=1")])
        if target == "/private":
            return Reply(body=b"secret", headers=[("Cache-Control", "private")])
        return Reply(body=b"product page", headers=[("Cache-Control", "max-age=60")])

    a.handler = handler
    config = build_config(shield_config([a.url], cache={"refresh": 0}))
    async with run_shield(config) as shield:
        for path in (b"/product/1", b"/cart", b"/private"):
            out = await send_raw(shield.port, b"GET %s HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n" % path)
            assert status_of(out) == 200
        await a.stop()
        await asyncio.sleep(1.1)
        c = await Client.open(shield.port)
        await c.send(b"GET /product/1 HTTP/1.1\r\nHost: s\r\n\r\n")
        status, headers, body = await c.response()
        assert (status, body) == (200, b"product page")
        assert headers["x-shieldwall-stale"] == "1"
        assert int(headers["age"]) >= 1
        assert headers["cache-control"] == "max-age=60"
        for path in (b"/cart", b"/private", b"/product/2"):
            await c.send(b"GET %s HTTP/1.1\r\nHost: s\r\n\r\n" % path)
            assert (await c.response())[0] in (502, 503)  # refused, then ejected
        await c.send(b"GET /product/1 HTTP/1.1\r\nHost: other-shop\r\n\r\n")
        assert (await c.response())[0] in (502, 503)  # the host is part of the key
        c.close()
        assert shield.worker.metrics.stale_hits == 1


async def test_a_backend_answering_502_gets_the_stale_copy_served_instead(
        pair: tuple[Backend, Backend]) -> None:
    a, _ = pair
    broken = {"on": False}
    a.handler = lambda s: Reply(status=502, body=b"bad gateway page") if broken["on"] else Reply(
        body=b"catalogue")
    config = build_config(shield_config([a.url], cache={"refresh": 0}))
    async with run_shield(config) as shield:
        c = await Client.open(shield.port)
        await c.send(b"GET /catalogue HTTP/1.1\r\nHost: s\r\n\r\n")
        assert (await c.response())[2] == b"catalogue"
        broken["on"] = True
        await c.send(b"GET /catalogue HTTP/1.1\r\nHost: s\r\n\r\n")
        status, headers, body = await c.response()
        assert (status, body, headers["x-shieldwall-stale"]) == (200, b"catalogue", "1")
        # nothing cached for this one: the backend's own 502 page goes through
        await c.send(b"GET /other HTTP/1.1\r\nHost: s\r\n\r\n")
        status, _, body = await c.response()
        assert (status, body) == (502, b"bad gateway page")
        c.close()


async def test_one_connection_refreshes_the_stale_copy_once_it_is_due(
        pair: tuple[Backend, Backend]) -> None:
    """A keep-alive connection that asks for one URL again and again does not
    ask the cache for each request while its copy is fresh (upstream_head's
    fresh_until), yet refreshes the copy when ``refresh`` has passed: the
    copy served stale is the page as it was after the last refresh."""
    a, _ = pair
    page = {"v": b"v1"}
    a.handler = lambda s: Reply(body=page["v"])
    config = build_config(shield_config([a.url], cache={"refresh": 0.3}))
    async with run_shield(config) as shield:
        c = await Client.open(shield.port)
        for v, then in ((b"v1", 0.0), (b"v2", 0.4), (b"v3", 0.0)):
            page["v"] = v
            await c.send(b"GET /p HTTP/1.1\r\nHost: s\r\n\r\n")
            assert (await c.response())[2] == v
            await asyncio.sleep(then)
        # v2 came within the refresh of v1's copy: not captured; v3 after it
        await a.stop()
        await c.send(b"GET /p HTTP/1.1\r\nHost: s\r\n\r\n")
        status, headers, body = await c.response()
        assert (status, body, headers["x-shieldwall-stale"]) == (200, b"v3", "1")
        c.close()
