"""A closed connection's framer is freed with it, not left to the cyclic
collector: llhttp's parser holds the framer's bound callbacks (a cycle), so
ClientConnection.connection_lost closes the framer (RequestFramer.close)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import pytest
from proxy_backends import Backend, Client, shield_config

from shieldwall.config import build_config
from shieldwall.http.framing import FramingLimits, RequestFramer
from shieldwall.proxy.worker import Shield, run_shield


@pytest.fixture
async def shield(backend: Backend) -> AsyncIterator[Shield]:
    async with run_shield(build_config(shield_config([backend.url]))) as s:
        yield s


def _framers() -> int:
    return sum(isinstance(o, RequestFramer) for o in gc.get_objects())


async def test_closed_connections_leave_no_framer_for_the_collector(shield: Shield) -> None:
    import asyncio
    gc.collect()
    gc.disable()
    try:
        before = _framers()
        for i in range(30):
            c = await Client.open(shield.port)
            await c.send(b"GET /x%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            assert (await c.response())[0] == 200
            c.close()
        async with asyncio.timeout(5):
            while shield.worker.conns:
                await asyncio.sleep(0.01)
        assert _framers() == before  # (each was a cycle before: 30 left here)
    finally:
        gc.enable()


def test_a_closed_framer_takes_no_more_input() -> None:
    f = RequestFramer(FramingLimits())
    assert [e[0] for e in f.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")]
    f.close()
    assert f.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == []
    assert not f.resting()
