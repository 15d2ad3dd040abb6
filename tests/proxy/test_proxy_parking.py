"""Connections that have not sent a byte are parked (one epoll set, no
transport each: shieldwall.proxy.worker.Parking) and behave exactly as
before: counted in the caps and the metrics, closed at the header deadline
or on drain, forgotten when the client leaves, served once they speak."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from proxy_backends import Backend, Client, shield_config

from shieldwall.config import build_config
from shieldwall.proxy.worker import Parked, Shield, run_shield


@pytest.fixture
async def shield(backend: Backend) -> AsyncIterator[Shield]:
    config = build_config(shield_config([backend.url], timeouts={"header": 30.0, "idle": 30.0}))
    async with run_shield(config) as s:
        yield s


async def _until(cond: object, timeout: float = 3.0) -> None:
    assert callable(cond)
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def _parked(shield: Shield) -> int:
    return sum(isinstance(c.transport, Parked) for c in shield.worker.conns)


async def test_silent_connections_are_parked_and_counted_as_open(shield: Shield) -> None:
    clients = [await Client.open(shield.port) for _ in range(20)]
    await _until(lambda: len(shield.worker.conns) == 20)
    assert _parked(shield) == 20
    assert shield.worker.metrics.connections_open() == 20
    for c in clients:
        c.close()


async def test_a_parked_connection_is_served_when_it_speaks(shield: Shield,
                                                            backend: Backend) -> None:
    c = await Client.open(shield.port)
    await _until(lambda: _parked(shield) == 1)
    await asyncio.sleep(0.05)
    await c.send(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await c.response())[0] == 200
    assert [s.target for s in backend.seen] == ["/late"]
    assert _parked(shield) == 0 and len(shield.worker.conns) == 1
    await c.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")  # keep-alive as ever
    assert (await c.response())[0] == 200
    c.close()


async def test_a_parked_client_that_leaves_is_forgotten(shield: Shield, backend: Backend) -> None:
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", shield.port))
        socks.append(s)
    await _until(lambda: len(shield.worker.conns) == 10)
    socks[0].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    for s in socks:  # the first with a reset, the others with a FIN
        s.close()
    await _until(lambda: not shield.worker.conns and not shield.worker.per_client)
    assert backend.seen == [] and backend.connections == 0


async def test_drain_closes_parked_connections(shield: Shield) -> None:
    c = await Client.open(shield.port)
    await _until(lambda: _parked(shield) == 1)
    await shield.drain(2.0)
    assert await c.closed(timeout=3)
    assert not shield.worker.conns


async def test_a_parked_connection_is_closed_at_the_header_deadline(backend: Backend) -> None:
    config = build_config(shield_config([backend.url], timeouts={"header": 0.3, "idle": 0.3}))
    async with run_shield(config) as shield:
        c = await Client.open(shield.port)
        await _until(lambda: _parked(shield) == 1)
        assert await c.closed(timeout=3)
        await _until(lambda: not shield.worker.conns)
