"""The guard behind the real proxy for the guard's own tests: ``run_shield``
with the guard wired in (gate, admission, admin routes) in front of a tiny
shop backend, on loopback, in an event loop of its own in a thread so that
blocking clients (selenium, the CLI) can drive it from the test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from shieldwall.guard.runtime import GuardRuntime

SHOP_PAGE = (b"<!doctype html><html><head><title>Shop</title></head>"
             b"<body><h1>Welcome to the shop</h1></body></html>")


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, list[str]],
                                                             bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    body = b""
    n = int(headers.get("content-length", ["0"])[0])
    if n:
        body = await reader.readexactly(n)
    return method, target, headers, body


class ProxyHarness:
    def __init__(self, rt: GuardRuntime, *, admin_token: str = "",
                 upstream_delay: float = 0.0) -> None:
        self.rt = rt
        self.admin_token = admin_token
        self.upstream_delay = upstream_delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.admin_port = 0
        self.upstream_hits = 0
        self.upstream_seen: list[str] = []
        self.released = False
        """Requests to /hold... wait at the shop until this is set."""
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self._conns: set[asyncio.Task[Any]] = set()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> ProxyHarness:
        self._thread.start()
        self.run(self._start())
        return self

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    async def _stop_base(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self.rt.stop()

    async def _start(self) -> None:
        from contextlib import AsyncExitStack

        from shieldwall.config import build_config
        from shieldwall.proxy.wiring import Wiring
        from shieldwall.proxy.worker import run_shield

        shop = await asyncio.start_server(self._shop, "127.0.0.1", 0)
        shop_port = shop.sockets[0].getsockname()[1]
        config = build_config({
            "listen": "127.0.0.1:0", "access_log": "off",
            "admin": {"listen": "127.0.0.1:0", "token": self.admin_token or "unused-token"},
            "backends": [{"url": f"http://127.0.0.1:{shop_port}"}],
            "upstream": {"health": {"enabled": False}},
        })
        await self.rt.start()
        self._stack = AsyncExitStack()
        shield = await self._stack.enter_async_context(run_shield(config, Wiring(
            gate=self.rt.gate, admission=self.rt.admission, routes=self.rt.admin_routes)))
        self._servers = [shop]
        self.port = shield.port
        self.admin_port = shield.admin_port

    async def _stop(self) -> None:
        await self._stack.aclose()
        await self._stop_base()

    async def _shop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await _read_head(reader)
                if req is None:
                    return
                _, target, _, _ = req
                self.upstream_hits += 1
                self.upstream_seen.append(target)
                while target.startswith("/hold") and not self.released:
                    await asyncio.sleep(0.01)
                if self.upstream_delay:
                    await asyncio.sleep(self.upstream_delay)
                cookie = (b"Set-Cookie: cart=1; Path=/\r\n"
                          if target.startswith("/cart/add") else b"")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                             b"Cache-Control: no-store\r\n" + cookie +
                             b"Content-Length: %d\r\n\r\n" % len(SHOP_PAGE) + SHOP_PAGE)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(task)
            writer.close()
