"""A flood that reconnects for every request, answered before any transport.

An address the guard refused lately (its early window) gets its next
connections' first requests peeked from the socket while the connection is
still parked (shieldwall.proxy.worker.Parking): a refusal is answered there
(the peeked bytes taken off the socket, the answer sent, the socket closed
when the request asked for it) and no uvloop transport is made. What must
hold: the client reads the whole answer and a clean end (not a reset); the
refusal is logged as any other; a request that is let through is decided
once and served; a kept-alive answer leaves the connection usable; a shopper
(another address, under its limits) is never peeked.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy_backends import Backend, shield_config, status_of
from test_proxy_early import SETTINGS

from shieldwall.config import build_config
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import Shield, run_shield

FLOODER = "127.0.0.2"
SHOPPER = "127.0.0.3"


def _req(path: str, close: bool = True) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: shop\r\nUser-Agent: flood\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def _one(port: int, source: str, data: bytes) -> bytes:
    """Connect from ``source``, send ``data``, read to the end; b"<reset>"
    if the end was a reset."""
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            return out + b"<reset>"
        return out


def _kept(port: int, source: str, paths: list[str]) -> list[bytes]:
    """Requests one at a time on one kept-alive connection; each answer read
    by its Content-Length."""
    answers = []
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        for path in paths:
            s.sendall(_req(path, close=False))
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += s.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            n = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                         if ln.lower().startswith(b"content-length:")))
            while len(body) < n:
                body += s.recv(65536)
            answers.append(head + b"\r\n\r\n" + body)
    return answers


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Shield, Backend, GuardRuntime, Path]]:
    backend = await Backend().start()
    rt = GuardRuntime.from_settings(GuardSettings.model_validate(SETTINGS))
    log = tmp_path / "access.log"
    config = build_config(shield_config([backend.url], access_log=str(log)))
    async with run_shield(config, Wiring(gate=rt.gate, admission=rt.admission)) as shield:
        yield shield, backend, rt, log
    await backend.stop()


async def _run(fn: object, *args: object) -> object:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)  # type: ignore[arg-type]


async def test_a_refused_address_reconnecting_per_request_is_answered_without_a_transport(
        rig: tuple[Shield, Backend, GuardRuntime, Path]) -> None:
    shield, backend, _rt, log = rig
    acceptor = shield.worker.acceptor
    first = await _run(_one, shield.port, FLOODER, _req("/limited"))
    second = await _run(_one, shield.port, FLOODER, _req("/limited"))  # refused: now "refusing"
    assert status_of(first) == 200 and status_of(second) == 429  # type: ignore[arg-type]
    assert acceptor.answered_parked == 0  # (not refused before these)
    made = 0
    original = shield.worker.loop.connect_accepted_socket

    async def counting(*a: object, **k: object) -> object:
        nonlocal made
        made += 1
        return await original(*a, **k)  # type: ignore[arg-type]

    shield.worker.loop.connect_accepted_socket = counting  # type: ignore[method-assign]
    try:
        answers = [await _run(_one, shield.port, FLOODER, _req(f"/limited?i={i}"))
                   for i in range(5)]
    finally:
        shield.worker.loop.connect_accepted_socket = original  # type: ignore[method-assign]
    for a in answers:
        assert isinstance(a, bytes)
        assert status_of(a) == 429 and not a.endswith(b"<reset>"), a
        assert b"Retry-After:" in a
        head, _, body = a.partition(b"\r\n\r\n")
        n = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                     if ln.lower().startswith(b"content-length:")))
        assert len(body) == n  # the whole answer, then a clean end
    assert acceptor.answered_parked == 5
    assert made == 0  # no transport for any of them
    assert len(backend.seen) == 1
    await asyncio.sleep(0.05)
    assert not shield.worker.conns and not shield.worker.hot.per_client  # counted out again
    lines = log.read_text().splitlines() if log.exists() else []
    for _ in range(50):  # (the access log is flushed by the worker's tick)
        if len(lines) >= 7:
            break
        await asyncio.sleep(0.05)
        lines = log.read_text().splitlines() if log.exists() else []
    refused = [ln for ln in lines if '" 429 ' in ln]
    assert len(refused) == 6
    assert all(ln.startswith(FLOODER + " ") and " d=limit " in ln for ln in refused)
    assert any('"GET /limited?i=4 HTTP/1.1" 429 ' in ln for ln in refused)


async def test_a_request_let_through_from_a_parked_socket_is_decided_once_and_served(
        rig: tuple[Shield, Backend, GuardRuntime, Path]) -> None:
    shield, backend, rt, _log = rig
    await _run(_one, shield.port, FLOODER, _req("/limited"))
    await _run(_one, shield.port, FLOODER, _req("/limited"))  # refused: now "refusing"
    allowed = rt.gate.counts.get("allow", 0)
    got = await _run(_one, shield.port, FLOODER, _req("/page?x=1"))
    assert status_of(got) == 200  # type: ignore[arg-type]
    assert rt.gate.counts.get("allow", 0) == allowed + 1  # decided once, not twice
    assert backend.seen[-1].target == "/page?x=1"
    assert shield.worker.acceptor.answered_parked == 0


async def test_a_kept_alive_answer_on_a_parked_socket_leaves_the_connection_usable(
        rig: tuple[Shield, Backend, GuardRuntime, Path]) -> None:
    shield, backend, _rt, _log = rig
    await _run(_one, shield.port, FLOODER, _req("/limited"))
    await _run(_one, shield.port, FLOODER, _req("/limited"))
    answers = await _run(_kept, shield.port, FLOODER, ["/limited?a", "/limited?b", "/page"])
    assert isinstance(answers, list)
    assert [status_of(a) for a in answers] == [429, 429, 200]
    assert shield.worker.acceptor.answered_parked <= 1  # (the first, when peeked in time)
    assert backend.seen[-1].target == "/page"


async def test_a_shopper_is_never_peeked_while_a_flooder_is_answered(
        rig: tuple[Shield, Backend, GuardRuntime, Path]) -> None:
    shield, backend, _rt, _log = rig
    await _run(_one, shield.port, FLOODER, _req("/limited"))
    await _run(_one, shield.port, FLOODER, _req("/limited"))
    before = shield.worker.acceptor.answered_parked
    for i in range(3):
        got = await _run(_one, shield.port, SHOPPER, _req(f"/page?i={i}"))
        assert status_of(got) == 200  # type: ignore[arg-type]
        flood = await _run(_one, shield.port, FLOODER, _req(f"/limited?i={i}"))
        assert status_of(flood) == 429  # type: ignore[arg-type]
    assert shield.worker.acceptor.answered_parked == before + 3
    assert [s.target for s in backend.seen[-3:]] == ["/page?i=0", "/page?i=1", "/page?i=2"]
    guard = shield.worker.hot.guard
    assert guard is not None
    assert guard.refusing(FLOODER) and not guard.refusing(SHOPPER)  # (what peek_wanted asks)
