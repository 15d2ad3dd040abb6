"""The admin listener: /healthz, /metrics and the parts' AdminRoutes.

A tiny HTTP/1.1 server over llhttp (no framework): one request per
connection, bodies capped, answers with ``Connection: close``. Routes with
``auth=True`` need ``Authorization: Bearer <token>``; with no token
configured they are refused (401) rather than left open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl

import httptools

from shieldwall.admin_api import AdminRequest, AdminResponse, AdminRoute

MAX_ADMIN_BODY = 1024 * 1024
MAX_ADMIN_HEAD = 16384

NO_TOKEN = ("no admin token is configured: set admin.token in the config or "
            "SHIELDWALL_ADMIN_TOKEN in the environment")


def render(resp: AdminResponse) -> bytes:
    phrase = HTTPStatus(resp.status).phrase.encode() if resp.status in HTTPStatus._value2member_map_ else b"Status"
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            % (resp.status, phrase, resp.content_type.encode(), len(resp.body))) + resp.body


class AdminApp:
    def __init__(self, routes: list[AdminRoute], token: str,
                 metrics: Callable[[], bytes], health: Callable[[], AdminResponse]) -> None:
        self.token = token
        self.routes: dict[tuple[str, str], AdminRoute] = {}
        for r in routes:
            self.routes[(r.method.upper(), r.path)] = r
        self.metrics = metrics
        self.health = health
        self.fanout: Callable[[AdminRequest, str, AdminResponse],
                              Awaitable[AdminResponse]] | None = None
        """With several workers, worker 0's public app passes every authenticated
        route's answer here (shieldwall.proxy.fanout) so the others apply it too."""

    async def handle(self, req: AdminRequest, authorization: str) -> AdminResponse:
        if req.method == "GET" and req.path == "/healthz":
            return self.health()
        if req.method == "GET" and req.path == "/metrics":
            return AdminResponse(200, self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        route = self.routes.get((req.method, req.path))
        if route is None:
            if any(p == req.path for _, p in self.routes):
                return AdminResponse.error(405, f"method {req.method} not allowed on {req.path}")
            return AdminResponse.error(404, f"no admin route {req.path}")
        if route.auth:
            if not self.token:
                return AdminResponse.error(401, NO_TOKEN)
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.token):
                return AdminResponse.error(401, "missing or wrong bearer token")
        try:
            resp = await route.handler(req)
        except Exception as exc:  # a route's bug must not kill the listener
            return AdminResponse.error(500, f"{type(exc).__name__}: {exc}")
        if self.fanout is not None and route.auth:
            return await self.fanout(req, authorization, resp)
        return resp


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, app: AdminApp, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        self.app = app
        self.spawn = spawn
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.auth = ""
        self.transport: asyncio.Transport | None = None
        self.done = False
        self.client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else ""

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.size += len(data)
        try:
            if self.size > MAX_ADMIN_BODY + MAX_ADMIN_HEAD:
                raise ValueError("too large")
            self.parser.feed_data(data)
        except (httptools.HttpParserError, ValueError):
            self._reply(AdminResponse.error(400, "bad request"))

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.auth = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        path = (parsed.path or b"/").decode("latin-1")
        query = dict(parse_qsl((parsed.query or b"").decode("latin-1")))
        req = AdminRequest(method, path, query, b"".join(self.body), self.client)
        self.done = True
        self.spawn(self._run(req))

    async def _run(self, req: AdminRequest) -> None:
        self._reply(await self.app.handle(req, self.auth))

    def _reply(self, resp: AdminResponse) -> None:
        self.done = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(render(resp))
            self.transport.close()


def health_ok(draining: Callable[[], bool], backends: Callable[[], list[tuple[str, bool, int]]]
              ) -> Callable[[], AdminResponse]:
    def health() -> AdminResponse:
        bs = backends()
        up = sum(1 for _, ok, _ in bs if ok)
        body = {"status": "draining" if draining() else "ok", "backends_up": up,
                "backends": len(bs)}
        return AdminResponse(200 if not draining() else 503,
                             json.dumps(body, sort_keys=True).encode() + b"\n")
    return health


def protocol_factory(app: AdminApp, spawn: Callable[[Coroutine[Any, Any, None]], object]
                     ) -> Callable[[], asyncio.Protocol]:
    return lambda: _AdminProtocol(app, spawn)
