"""The admin listener: /healthz, /metrics, the parts' AdminRoutes and the
operator's console (shieldwall.console).

A tiny HTTP/1.1 server over llhttp: one request per connection, head and
body capped, answers with ``Connection: close``. Routes with ``auth=True``
need ``Authorization: Bearer <token>`` or the console's session cookie; with
no token configured they are refused (401) rather than left open. A change
(any method but GET/HEAD) is refused (403) when it comes from another
origin (``Origin``/``Sec-Fetch-Site``), and with the cookie also without the
session's CSRF token. Every change is written to the console's audit trail
with who made it.

Why not Starlette + uvicorn: ``uvicorn.Server.serve`` installs its own
SIGINT/SIGTERM handlers in the worker (the supervisor's graceful drain owns
those), and this listener needs no routing, middleware or streaming beyond
one request per connection; llhttp is already the data path's parser.
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
from shieldwall.console import Console, ConsoleAuth, cross_site
from shieldwall.proxy.fanout import READ_TIMEOUT, FanOut

MAX_ADMIN_BODY = 1024 * 1024
MAX_ADMIN_HEAD = 16384
MAX_ADMIN_HEADERS = 64
_SAFE = frozenset(("GET", "HEAD"))

NO_TOKEN = ("no admin token is configured: set admin.token in the config or "
            "SHIELDWALL_ADMIN_TOKEN in the environment")


def render(resp: AdminResponse) -> bytes:
    phrase = HTTPStatus(resp.status).phrase.encode() if resp.status in HTTPStatus._value2member_map_ else b"Status"
    extra = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
                     for k, v in resp.headers)
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
            b"X-Frame-Options: DENY\r\n%sConnection: close\r\n\r\n"
            % (resp.status, phrase, resp.content_type.encode(), len(resp.body), extra)
            ) + resp.body


class AdminApp:
    def __init__(self, routes: list[AdminRoute], token: str,
                 metrics: Callable[[], bytes], health: Callable[[], AdminResponse]) -> None:
        self.token = token
        self.routes: dict[tuple[str, str], AdminRoute] = {}
        for r in routes:
            self.routes[(r.method.upper(), r.path)] = r
        self.metrics = metrics
        self.health = health
        self.console: Console | None = None
        self.fanout: Callable[[AdminRequest, str, AdminResponse],
                              Awaitable[AdminResponse]] | None = None
        """With several workers, worker 0's public app passes every authenticated
        route's answer here (shieldwall.proxy.fanout) so the others apply it too."""

    def add_console(self, console: Console) -> None:
        """Serve the operator's console here (worker 0's public listener only)."""
        self.console = console
        for r in console.routes:
            self.routes[(r.method.upper(), r.path)] = r

    def _who(self, req: AdminRequest) -> tuple[str | None, AdminResponse | None]:
        """(who, None) when the request may use an auth route, else (None, the refusal)."""
        if not self.token:
            return None, AdminResponse.error(401, NO_TOKEN)
        h = req.headers
        scheme, _, given = h.get("authorization", "").partition(" ")
        safe = req.method in _SAFE
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              self.token.encode()):
            why = None if safe else cross_site(h)
            if why is not None:
                return None, AdminResponse.error(403, why)
            agent = h.get("user-agent", "").split("/", 1)[0] or "a client"
            return f"token ({agent}) from {req.client or 'a local socket'}", None
        session = self.console.auth.session(h) if self.console is not None else None
        if session is None:
            return None, AdminResponse.error(401, "missing or wrong bearer token")
        if not safe:
            why = cross_site(h)
            if why is not None:
                return None, AdminResponse.error(403, why)
            if not ConsoleAuth.csrf_ok(session, h):
                return None, AdminResponse.error(403, "missing or wrong X-CSRF-Token")
        return f"{session.operator} (console) from {req.client}", None

    async def handle(self, req: AdminRequest) -> AdminResponse:
        if req.method == "GET" and req.path == "/healthz":
            return self.health()
        if req.method == "GET" and req.path == "/metrics":
            return AdminResponse(200, self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        route = self.routes.get((req.method, req.path))
        if route is None:
            if self.console is not None and req.path.startswith("/console") and \
                    self.console.auth.session(req.headers) is None:
                return AdminResponse.error(401, "log in first: /console")
            if any(p == req.path for _, p in self.routes):
                return AdminResponse.error(405, f"method {req.method} not allowed on {req.path}")
            return AdminResponse.error(404, f"no admin route {req.path}")
        who = ""
        if route.auth:
            got, refusal = self._who(req)
            if refusal is not None:
                if self.console is not None and req.method == "GET" and \
                        req.path in ("/console", "/console/") and refusal.status == 401:
                    return self.console.login_page(401)
                return refusal
            who = got or ""
        try:
            resp = await route.handler(req)
        except Exception as exc:  # a route's bug must not kill the listener
            return AdminResponse.error(500, f"{type(exc).__name__}: {exc}")
        if self.fanout is not None and route.auth:
            resp = await self.fanout(req, f"Bearer {self.token}", resp)
        if self.console is not None and route.auth and req.method not in _SAFE:
            self.console.audit(who, req, resp)
        return resp

    async def call(self, method: str, target: str, body: bytes = b"") -> AdminResponse:
        """This listener's answer to one of its own routes, made with the token
        (the console's sampler reads status, verdict and bans this way)."""
        parsed = httptools.parse_url(target.encode())
        path = (parsed.path or b"/").decode("latin-1")
        query = dict(parse_qsl((parsed.query or b"").decode("latin-1")))
        req = AdminRequest(method, path, query, body, "",
                           {"authorization": f"Bearer {self.token}", "user-agent": "console"})
        return await self.handle(req)

    async def gather(self, target: str) -> list[tuple[int, Any]]:
        """GET ``target`` here and on every other worker (their private sockets):
        [(worker, JSON body)] for each that answered 200, this worker first."""
        own = await self.call("GET", target)
        index = self.fanout.peers.index if isinstance(self.fanout, FanOut) else 0
        out: list[tuple[int, Any]] = []
        if own.status == 200:
            out.append((index, json.loads(own.body)))
        if isinstance(self.fanout, FanOut):
            replies = await self.fanout.peers.broadcast("GET", target, b"",
                                                        f"Bearer {self.token}", READ_TIMEOUT)
            out += [(r.worker, r.body) for r in replies
                    if r.status == 200 and isinstance(r.body, dict)]
        return out


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, app: AdminApp, spawn: Callable[[Coroutine[Any, Any, None]], object]) -> None:
        self.app = app
        self.spawn = spawn
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0
        self.headers: dict[str, str] = {}
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
        if len(self.headers) < MAX_ADMIN_HEADERS:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        path = (parsed.path or b"/").decode("latin-1")
        query = dict(parse_qsl((parsed.query or b"").decode("latin-1")))
        req = AdminRequest(method, path, query, b"".join(self.body), self.client, self.headers)
        self.done = True
        self.spawn(self._run(req))

    async def _run(self, req: AdminRequest) -> None:
        self._reply(await self.app.handle(req))

    def _reply(self, resp: AdminResponse) -> None:
        self.done = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(render(resp))
            self.transport.close()


def health_ok(draining: Callable[[], bool], backends: Callable[[], list[tuple[str, bool, int]]],
              panic: Callable[[], bool] = lambda: False) -> Callable[[], AdminResponse]:
    """``/healthz``: 503 only while draining (a balancer should stop sending);
    a shield whose backends are failing still answers (stale pages, a clear
    503 of its own), so it stays 200 and says ``panic`` for the operator."""
    def health() -> AdminResponse:
        bs = backends()
        up = sum(1 for _, ok, _ in bs if ok)
        body = {"status": "draining" if draining() else "ok", "backends_up": up,
                "backends": len(bs), "panic": panic()}
        return AdminResponse(200 if not draining() else 503,
                             json.dumps(body, sort_keys=True).encode() + b"\n")
    return health


def protocol_factory(app: AdminApp, spawn: Callable[[Coroutine[Any, Any, None]], object]
                     ) -> Callable[[], asyncio.Protocol]:
    return lambda: _AdminProtocol(app, spawn)


def attach_console(app: AdminApp) -> Console:
    """Give ``app`` (the public admin listener of worker 0) the operator's console."""
    console = Console(ConsoleAuth(app.token), app.call, app.gather, app.metrics)
    app.add_console(console)
    return console
