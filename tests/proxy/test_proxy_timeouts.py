"""Timeouts and caps against slow attacks, each with raw sockets: slowloris,
slow POST, idle keep-alive, slow read, upstream connect and response
timeouts, connections in total and per client address."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from proxy_backends import Backend, Client, Reply, send_raw, shield_config, status_of

from shieldwall.config import build_config
from shieldwall.proxy.worker import Shield, run_shield

FAST = {
    "header": 0.3, "idle": 0.3, "min_body_rate": 1000.0, "body_grace": 0.3, "send": 0.3,
    "upstream_connect": 0.3, "upstream_response": 0.3,
}


@pytest.fixture
async def shield(backend: Backend) -> AsyncIterator[Shield]:
    async with run_shield(build_config(shield_config([backend.url], timeouts=FAST))) as s:
        yield s


async def _read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    out = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            out += chunk
    return out


async def test_slowloris_header_dribble_gets_408_and_close(shield: Shield, backend: Backend) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", shield.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")
    start = time.monotonic()
    got = b""
    try:
        for i in range(40):  # would take 4 s; the header deadline is 0.3 s
            writer.write(b"X-%d: y\r\n" % i)
            await writer.drain()
            await asyncio.sleep(0.1)
            if reader.at_eof() or reader._buffer:  # type: ignore[attr-defined]
                break
    except ConnectionError:
        pass
    got = await _read_all(reader, 3)
    writer.close()
    assert status_of(got) == 408
    assert b"Connection: close" in got
    assert time.monotonic() - start < 2.5
    assert backend.seen == []
    assert shield.worker.metrics.rejected.get("header_timeout") == 1


async def test_a_silent_connection_is_closed_at_the_header_deadline(shield: Shield) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", shield.port)
    got = await _read_all(reader, 3)
    writer.close()
    assert got == b""


async def test_idle_keep_alive_connection_is_closed(shield: Shield) -> None:
    c = await Client.open(shield.port)
    await c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await c.response())[0] == 200
    start = time.monotonic()
    assert await c.closed(timeout=3)
    assert time.monotonic() - start >= 0.25


async def test_slow_post_below_the_minimum_body_rate_gets_408(shield: Shield, backend: Backend) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", shield.port)
    writer.write(b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
    try:
        for _ in range(30):  # 10 bytes every 0.1 s = 100 B/s, rate floor is 1000 B/s
            writer.write(b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.1)
            if reader._buffer or reader.at_eof():  # type: ignore[attr-defined]
                break
    except ConnectionError:
        pass
    got = await _read_all(reader, 3)
    writer.close()
    assert status_of(got) == 408
    assert backend.seen == []
    assert shield.worker.metrics.rejected.get("body_rate") == 1


async def test_a_fast_enough_post_is_not_cut(shield: Shield, backend: Backend) -> None:
    c = await Client.open(shield.port)
    await c.send(b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n")
    for _ in range(3):  # 1000 bytes every 0.25 s: 4000 B/s
        await c.send(b"y" * 1000)
        await asyncio.sleep(0.25)
    assert (await c.response())[0] == 200
    c.close()
    assert len(backend.seen[0].body) == 3000


async def test_slow_reader_is_cut_off(backend: Backend) -> None:
    big = b"z" * (16 * 1024 * 1024)
    backend.handler = lambda s: Reply(body=big)
    config = build_config(shield_config([backend.url], timeouts=FAST))
    async with run_shield(config) as shield:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", shield.port))
        await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in range(100):  # do not read; wait (bounded) for the shield to give up on us
            if shield.worker.metrics.rejected.get("slow_read"):
                break
            await asyncio.sleep(0.05)
        got = 0
        try:
            async with asyncio.timeout(5):
                while chunk := await loop.sock_recv(sock, 1 << 20):
                    got += len(chunk)
        except ConnectionError:
            pass
        sock.close()
        assert got < len(big)
        assert shield.worker.metrics.rejected.get("slow_read") == 1


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose accept queue is full: SYNs are dropped, connect hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.05)
    yield port
    for s in fillers:
        s.close()
    lsock.close()


async def test_upstream_connect_timeout_is_504(blackhole: int) -> None:
    config = build_config(shield_config([f"http://127.0.0.1:{blackhole}"], timeouts=FAST))
    async with run_shield(config) as shield:
        start = time.monotonic()
        out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 504
        assert time.monotonic() - start < 2


async def test_upstream_connect_timeout_fails_over_to_the_next_backend(
        blackhole: int, backend: Backend) -> None:
    config = build_config(shield_config(
        [f"http://127.0.0.1:{blackhole}", backend.url], timeouts=FAST))
    async with run_shield(config) as shield:
        for _ in range(2):  # one of the two picks lands on the black hole first
            out = await send_raw(shield.port, b"POST /order HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                                              b"Connection: close\r\n\r\nok")
            assert status_of(out) == 200
    assert [s.body for s in backend.seen] == [b"ok", b"ok"]


async def test_upstream_response_timeout_is_504_and_not_retried(backend: Backend) -> None:
    backend.handler = lambda s: Reply(hang=True)
    other = await Backend(lambda s: Reply(hang=True)).start()
    config = build_config(shield_config([backend.url, other.url], timeouts=FAST))
    try:
        async with run_shield(config) as shield:
            out = await send_raw(shield.port, b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert status_of(out) == 504
    finally:
        await other.stop()
    assert len(backend.seen) + len(other.seen) == 1


async def test_total_connection_cap(backend: Backend) -> None:
    config = build_config(shield_config([backend.url], limits={"max_connections": 3}))
    async with run_shield(config) as shield:
        held = [await Client.open(shield.port) for _ in range(3)]
        await asyncio.sleep(0.05)
        out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status_of(out) == 503 and b"Connection: close" in out
        await held[0].send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await held[0].response())[0] == 200
        for c in held:
            c.close()
        assert shield.worker.metrics.rejected["max_connections"] == 1


async def test_per_client_address_connection_cap(
        backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    config = build_config(shield_config([backend.url], limits={"max_connections_per_client": 2}))
    async with run_shield(config) as shield:
        held = [await Client.open(shield.port) for _ in range(2)]
        await asyncio.sleep(0.05)
        out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert status_of(out) == 429
        # the log line names who was refused
        assert "shieldwall[0]: max_connections_per_client client 127.0.0.1\n" in capfd.readouterr().err
        # another loopback address is another client
        reader, writer = await asyncio.open_connection("127.0.0.1", shield.port,
                                                       local_addr=("127.0.0.2", 0))
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(await _read_all(reader, 3)) == 200
        writer.close()
        # closing one frees a place
        held[0].close()
        await asyncio.sleep(0.1)
        out = await send_raw(shield.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status_of(out) == 200
        held[1].close()
