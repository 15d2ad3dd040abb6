"""Failover logic against a scripted pool and fake transports (no sockets):
the client side asks the pool for connections, the script decides what each
connect does, and the test decides when a backend answers or resets."""

from __future__ import annotations

import asyncio
from typing import Any

from shieldwall.config import build_config
from shieldwall.proxy.balancer import BackendState
from shieldwall.proxy.server import ClientConnection
from shieldwall.proxy.upstream import UpstreamConnection
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import Worker


class FakeTransport:
    def __init__(self, peer: tuple[str, int] = ("192.0.2.1", 40000)) -> None:
        self.out = bytearray()
        self.closed = False
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, parts: list[bytes]) -> None:
        for p in parts:
            self.out += p

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return self.peer if key == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True


class ScriptedPool:
    """Each connect takes the next step of the script: "refuse" or "ok"."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.connects: list[tuple[str, str]] = []
        self.made: list[UpstreamConnection] = []

    def take(self, backend: BackendState) -> UpstreamConnection | None:
        return None

    async def connect(self, backend: BackendState) -> UpstreamConnection:
        step = self.script.pop(0)
        self.connects.append((backend.key, step))
        if step == "refuse":
            raise ConnectionRefusedError(111, "refused")
        up = UpstreamConnection(self, backend)  # type: ignore[arg-type]
        up.connection_made(FakeTransport())  # type: ignore[arg-type]
        self.made.append(up)
        return up

    def give_back(self, up: UpstreamConnection, now: float) -> None:
        up.close()

    def forget(self, up: UpstreamConnection) -> None: ...
    def sweep(self, now: float) -> None: ...
    def drop_backend(self, key: str) -> None: ...
    def close_all(self) -> None: ...


def sent(up: UpstreamConnection) -> bytes:
    assert isinstance(up.transport, FakeTransport)
    return bytes(up.transport.out)


async def rig(script: list[str]) -> tuple[Worker, ScriptedPool, ClientConnection, FakeTransport]:
    config = build_config({
        "backends": [{"url": "http://127.0.0.1:1"}, {"url": "http://127.0.0.1:2"}],
        "access_log": "off", "upstream": {"health": {"enabled": False}},
        "guard": {"enabled": False}, "detect": {"enabled": False},
    })
    worker = Worker(config, Wiring())
    pool = ScriptedPool(script)
    worker.pool = pool  # type: ignore[assignment]
    client = ClientConnection(worker, tls=False)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    return worker, pool, client, transport


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_refused_connect_moves_even_a_post_to_the_other_backend_once() -> None:
    _, pool, client, transport = await rig(["refuse", "ok"])
    client.data_received(b"POST /pay HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc")
    await settle()
    assert [s for _, s in pool.connects] == ["refuse", "ok"]
    assert pool.connects[0][0] != pool.connects[1][0]
    (up,) = pool.made
    assert sent(up).startswith(b"POST /pay HTTP/1.1\r\n") and sent(up).endswith(b"\r\n\r\nabc")
    up.data_received(OK)
    assert bytes(transport.out).endswith(OK[-20:])
    assert bytes(transport.out).startswith(b"HTTP/1.1 200 OK\r\n")


async def test_get_reset_before_answer_is_retried_once_then_502() -> None:
    worker, pool, client, transport = await rig(["ok", "ok"])
    client.data_received(b"GET /p HTTP/1.1\r\nHost: s\r\n\r\n")
    await settle()
    first = pool.made[0]
    first.connection_lost(ConnectionResetError())
    await settle()
    assert len(pool.made) == 2 and pool.connects[0][0] != pool.connects[1][0]
    second = pool.made[1]
    assert sent(second) == sent(first)
    second.connection_lost(ConnectionResetError())
    await settle()
    assert len(pool.made) == 2  # once, not more
    assert bytes(transport.out).startswith(b"HTTP/1.1 502 ")
    assert worker.metrics.retries == 1


async def test_post_reset_before_answer_is_never_sent_again() -> None:
    worker, pool, client, transport = await rig(["ok", "ok"])
    client.data_received(b"POST /order HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nok")
    await settle()
    (up,) = pool.made
    assert sent(up).endswith(b"\r\n\r\nok")
    up.connection_lost(ConnectionResetError())
    await settle()
    assert len(pool.made) == 1
    assert bytes(transport.out).startswith(b"HTTP/1.1 502 ")
    assert worker.metrics.retries == 0


async def test_reset_after_the_response_started_cuts_the_client() -> None:
    _, pool, client, transport = await rig(["ok"])
    client.data_received(b"GET /big HTTP/1.1\r\nHost: s\r\n\r\n")
    await settle()
    (up,) = pool.made
    up.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    up.connection_lost(ConnectionResetError())
    await settle()
    assert len(pool.made) == 1
    assert transport.closed
    assert b"502" not in bytes(transport.out)
