"""A connection from a banned address is closed at accept: no response, no
request reaches the shop; other addresses are served; a shadowed block rule
closes nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest
from proxy_backends import Backend, shield_config

from shieldwall.config import build_config
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import GuardSettings
from shieldwall.proxy.wiring import Wiring
from shieldwall.proxy.worker import run_shield

REQ = b"GET /p HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"


def _exchange(port: int, source: str) -> bytes:
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(REQ)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            return b"<reset>"
        return out


@pytest.mark.parametrize("shadow", [False, True])
async def test_a_banned_address_is_closed_at_accept(shadow: bool) -> None:
    backend = await Backend().start()
    rt = GuardRuntime.from_settings(GuardSettings.model_validate(
        {"shadow": ["block"] if shadow else [], "allow_crawlers": False}))
    rt.ban("127.0.0.2", ttl=60)
    try:
        async with run_shield(build_config(shield_config([backend.url])),
                              Wiring(gate=rt.gate, admission=rt.admission)) as shield:
            loop = asyncio.get_running_loop()
            banned = await loop.run_in_executor(None, _exchange, shield.port, "127.0.0.2")
            served = await loop.run_in_executor(None, _exchange, shield.port, "127.0.0.1")
    finally:
        await backend.stop()
    assert served.startswith(b"HTTP/1.1 200")
    if shadow:  # the rule only counts: served too
        assert banned.startswith(b"HTTP/1.1 200")
        assert rt.gate.counts.get("block:accept", 0) == 0
        assert len(backend.seen) == 2
    else:
        assert banned in (b"", b"<reset>")
        assert rt.gate.counts["block:accept"] == 1
        assert len(backend.seen) == 1
