"""A tiny shield for the guard's own tests: a real HTTP/1.1 server on
loopback that calls the Gate and the Admission exactly as the proxy does
(decide before any body byte, write the decision's bytes as they are,
observe_response with the upstream's status and headers), in front of a
built-in "shop". Also serves AdminRoutes with the Bearer-token check, so the
CLI can be tested against real sockets. Runs its own event loop in a thread
so blocking clients (selenium, the CLI) can drive it from the test.

:class:`ProxyHarness` puts the real proxy (``run_shield``) in front instead;
the browser, CLI and flood tests use it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qsl

from shieldwall.admin_api import AdminRequest, AdminRoute
from shieldwall.guard.decision import RequestFacts
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


class Harness:
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

    def start(self) -> Harness:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        await self.rt.start()
        shop = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        admin = await asyncio.start_server(self._admin, "127.0.0.1", 0)
        self._servers = [shop, admin]
        self.port = shop.sockets[0].getsockname()[1]
        self.admin_port = admin.sockets[0].getsockname()[1]

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    async def _stop(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self.rt.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await _read_head(reader)
                if req is None:
                    return
                method, target, headers, _ = req
                path, _, query = target.partition("?")
                facts = RequestFacts(
                    client=peer, method=method, path=path, query=query,
                    host=headers.get("host", [""])[0],
                    user_agent=headers.get("user-agent", [""])[0],
                    cookie="; ".join(headers.get("cookie", [])))
                d = self.rt.gate.decide(facts)
                if d.enforced:
                    assert d.response is not None
                    writer.write(d.response)
                    await writer.drain()
                    if d.close:
                        return
                    continue
                shed = await self.rt.admission.acquire("shop", d.cls, d.priority)
                if shed is not None:
                    body = b"busy"
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (shed, len(body), body))
                    await writer.drain()
                    continue
                try:
                    self.upstream_hits += 1
                    if self.upstream_delay:
                        await asyncio.sleep(self.upstream_delay)
                    up_headers: list[tuple[bytes, bytes]] = [
                        (b"Content-Type", b"text/html; charset=utf-8")]
                    if path == "/cart/add":
                        up_headers.append((b"Set-Cookie", b"cart=1; Path=/"))
                    extra = self.rt.gate.observe_response(facts, d, 200, up_headers)
                finally:
                    self.rt.admission.release("shop", 0.001, True)
                out = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(SHOP_PAGE)]
                out += [k + b": " + v for k, v in [*up_headers, *extra]]
                writer.write(b"\r\n".join(out) + b"\r\n\r\n" + SHOP_PAGE)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(task)
            writer.close()

    async def _admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        routes: dict[tuple[str, str], AdminRoute] = {
            (r.method, r.path): r for r in self.rt.admin_routes}
        try:
            req = await _read_head(reader)
            if req is None:
                return
            method, target, headers, body = req
            path, _, query = target.partition("?")
            auth = headers.get("authorization", [""])[0]
            route = routes.get((method, path))
            if route is None:
                status, ctype, payload = 404, "application/json", b'{"error": "no such route"}\n'
            elif route.auth and auth != f"Bearer {self.admin_token}":
                status, ctype, payload = 401, "application/json", b'{"error": "bad token"}\n'
            else:
                resp = await route.handler(AdminRequest(method, path, dict(parse_qsl(query)),
                                                        body, "127.0.0.1"))
                status, ctype, payload = resp.status, resp.content_type, resp.body
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: "
                         f"{len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        finally:
            writer.close()


class ProxyHarness(Harness):
    """The same interface, but the real proxy (``run_shield``) enforces the
    guard's decisions in front of a tiny shop backend, and the proxy's own
    admin listener (with its token check) serves the guard's AdminRoutes."""

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
        await super()._stop()

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
