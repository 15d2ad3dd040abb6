"""Connections to the backends, and the pool that keeps them alive.

The pool is the small interface the client side talks to (``take``,
``connect``, ``give_back``); the client side is the only thing that decides
retries (``balancer.should_retry``), so failover can be exercised against a
scripted backend as well as real sockets.

An :class:`UpstreamConnection` parses responses with llhttp and hands them to
its current owner (a client connection) as calls: ``upstream_head``,
``upstream_body``, ``upstream_end``, ``upstream_failed``. It knows nothing
of clients beyond that.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

import httptools

from shieldwall.proxy.balancer import BackendState

# Ways to fail at a backend; shieldwall.http.errors.UPSTREAM_FAILURES maps
# each to its status, outcome and retry facts.
REFUSED = 1
"""Connect refused or failed: nothing was sent."""
CONNECT_TIMEOUT = 2
RESET = 3
"""Closed or reset before the response was complete."""
TIMEOUT = 4
"""No response (or no progress) within the response timeout."""
BAD_RESPONSE = 5

_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te",
    b"trailer", b"upgrade", b"content-length",
})



class Owner(Protocol):
    def upstream_head(self, up: UpstreamConnection, status: int, reason: bytes,
                      headers: list[tuple[bytes, bytes]], content_length: int) -> None: ...
    def upstream_body(self, data: bytes) -> None: ...
    def upstream_end(self, up: UpstreamConnection) -> None: ...
    def upstream_failed(self, up: UpstreamConnection, kind: int) -> None: ...
    def upstream_pause(self) -> None: ...
    def upstream_resume(self) -> None: ...
    def flush_out(self) -> None: ...


class Pools(Protocol):
    """What a connection and the client side need of the pool (a Protocol,
    not the class: tests drive the client side with a scripted pool, and the
    compiled build checks concrete class types at run time)."""

    keepalive: int
    idle_timeout: float
    connect_timeout: float

    def take(self, backend: BackendState) -> UpstreamConnection | None: ...
    async def connect(self, backend: BackendState) -> UpstreamConnection: ...
    def give_back(self, up: UpstreamConnection, now: float) -> None: ...
    def forget(self, up: UpstreamConnection) -> None: ...
    def sweep(self, now: float) -> None: ...
    def drop_backend(self, key: str) -> None: ...
    def close_all(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_interim", "backend", "chunked", "closed", "content_length", "finished", "got_bytes",
        "head_request", "headed", "headers", "idle_since", "owner", "parser", "pool", "reason",
        "reusable", "transport", "write_paused",
    )

    def __init__(self, pool: Pools, backend: BackendState) -> None:
        self.pool = pool
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.head_request = False
        self.reusable = True
        self.closed = False
        self.idle_since = 0.0
        self.write_paused = False
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.content_length = -1
        self.chunked = False
        self.headed = False
        self.finished = False
        self.got_bytes = False
        self._interim = False

    def start(self, owner: Owner, head_request: bool) -> None:
        """Bind to a client for one exchange."""
        self.owner = owner
        self.head_request = head_request
        self._reset()

    # -- asyncio ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None or self.finished:
            # Bytes nobody asked for: the connection's framing is lost.
            self.reusable = False
            self.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.reusable = False
            if self.owner is not None:
                self.owner = None
                self.close()
                owner.upstream_failed(self, BAD_RESPONSE)
            else:
                self.close()
            return
        if self.owner is not None:
            self.owner.flush_out()

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        owner = self.owner
        self.pool.forget(self)
        if owner is None:
            return
        self.owner = None
        if self.headed and not self.finished and self.content_length < 0 and not self.chunked:
            # A close-delimited body ends here.
            self.finished = True
            owner.upstream_end(self)
        else:
            owner.upstream_failed(self, RESET)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.owner is not None:
            self.owner.upstream_pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.owner is not None:
            self.owner.upstream_resume()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        self.owner = None
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- llhttp callbacks --------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # Most names are ruled out as hop-by-hop by their first letter and
        # length, compared as native ints (a set lookup boxes the int, and
        # lower() is a method call by name: ~800 instructions compiled).
        c = name[0] | 0x20
        size = len(name)
        if (c != 99 and c != 107 and c != 112 and c != 116 and c != 117) or (
                size != 10 and size != 14 and size != 16 and size != 17 and size != 2
                and size != 7):
            self.headers.append((name, value))
            return
        n = name.lower()
        if n in _HOP:
            if n == b"content-length":
                self.content_length = int(value)
            elif n == b"transfer-encoding":
                self.chunked = True
            elif n == b"connection" and value != b"keep-alive" and b"close" in value.lower():
                self.reusable = False
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status: int = self.parser.get_status_code()
        if status < 200:
            # 1xx interim response: swallowed (we answered Expect ourselves).
            self._interim = True
            self.headers = []
            self.reason = b""
            return
        self.headed = True
        if not self.parser.should_keep_alive():
            self.reusable = False
        owner = self.owner
        if owner is not None:
            owner.upstream_head(self, status, self.reason, self.headers, self.content_length)
            if self.head_request and not self.finished:
                # llhttp cannot be told a response answers HEAD and would wait
                # for the announced body: end here, and do not reuse.
                self.reusable = False
                self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        owner = self.owner
        if owner is not None and not self.finished:
            owner.upstream_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.finished:
            return
        self.finished = True
        owner = self.owner
        if owner is not None:
            self.owner = None
            owner.upstream_end(self)


class Pool:
    """Kept-alive connections per backend, and new ones on demand."""

    def __init__(self, keepalive: int, idle_timeout: float, connect_timeout: float) -> None:
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.idle: dict[str, list[UpstreamConnection]] = {}

    def take(self, backend: BackendState) -> UpstreamConnection | None:
        conns = self.idle.get(backend.key)
        while conns:
            up = conns.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                return up
        return None

    async def connect(self, backend: BackendState) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(self, backend),
                                   backend.host, backend.port),
            self.connect_timeout,
        )
        return proto

    def give_back(self, up: UpstreamConnection, now: float) -> None:
        if not up.reusable or up.closed or not up.finished or up.write_paused:
            up.close()
            return
        up.owner = None
        conns = self.idle.setdefault(up.backend.key, [])
        if len(conns) >= self.keepalive:
            up.close()
            return
        up.idle_since = now
        conns.append(up)

    def forget(self, up: UpstreamConnection) -> None:
        conns = self.idle.get(up.backend.key)
        if conns and up in conns:
            conns.remove(up)

    def sweep(self, now: float) -> None:
        """Close connections idle longer than ``idle_timeout`` (shorter than
        the backend's own keep-alive timeout, so we rarely race its close)."""
        for conns in self.idle.values():
            while conns and now - conns[0].idle_since > self.idle_timeout:
                conns.pop(0).close()

    def drop_backend(self, key: str) -> None:
        for up in self.idle.pop(key, []):
            up.close()

    def close_all(self) -> None:
        for key in list(self.idle):
            self.drop_backend(key)
