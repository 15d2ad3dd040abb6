"""Connections to the backends, and the pool that keeps them alive.

The pool is the small interface the client side talks to (``take``,
``connect``, ``give_back``); the client side is the only thing that decides
retries (``balancer.should_retry``), so failover can be exercised against a
scripted backend as well as real sockets.

An :class:`UpstreamConnection` parses responses with llhttp and hands them to
its current owner (a client connection) as calls: ``upstream_head``,
``upstream_body``, ``upstream_end``, ``upstream_failed``. It knows nothing
of clients beyond that.

The response head is not taken header by header: llhttp (strict: CRLF line
ends, no obs-fold, no blank before a colon, no bare CR) validates it with no
per-header callback, and at ``on_headers_complete`` the head is cut from the
bytes as received. Its field lines go on as one block (:attr:`UpstreamConnection.fields`,
hop-by-hop lines left out); the list of ``(name, value)`` pairs is made only
when someone asks (:meth:`UpstreamConnection.header_list`: the guard, the
stale cache). Per-header callbacks cost ~1,500 instructions a header (the
Python call from httptools, two bytes objects, a tuple), and the client side
then rebuilt each line from its pair.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol, cast

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

# hop-by-hop fields of a response (cut_fields)
_CONNECTION: Final = 1
_CONTENT_LENGTH: Final = 2
_TRANSFER_ENCODING: Final = 3
_OTHER: Final = 4

MAX_HEAD: Final = 65536
"""Bytes of a response head (status line and fields) at most: a backend that
sends more without ending its head is a bad response (llhttp has no bound)."""


class Owner(Protocol):
    def upstream_head(self, up: UpstreamConnection, status: int, content_length: int) -> None:
        """The head is in: ``up.status_line``, ``up.fields`` (the lines to
        forward), ``up.header_list()`` and ``up.reason()`` when needed."""
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
        "_cut", "_headers", "_interim", "_lines", "backend", "chunked", "closed",
        "content_length", "fields", "finished", "got_bytes", "head_at", "head_request", "headed",
        "idle_since", "owner", "parser", "pool", "raw", "read_at", "reusable", "status_line",
        "transport", "write_paused",
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
        self.read_at = -1.0
        """The loop's time during the current read, once its owner asked
        (shieldwall.proxy.server._read_at); < 0 at the start of each read."""
        self.write_paused = False
        self.parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.raw = b""
        """The bytes received while the head is not complete (usually the one
        read that holds the whole head, not a copy)."""
        self.head_at = 0
        """Where in :attr:`raw` the current head begins (after an interim 1xx)."""
        self.status_line = b""
        """The status line to send on, CRLF included, as HTTP/1.1."""
        self.fields = b""
        """The head's field lines to forward, each with its CRLF, hop-by-hop
        ones (Connection, Keep-Alive, Content-Length, Transfer-Encoding, ...) left out."""
        self._headers: list[tuple[bytes, bytes]] | None = None
        self._lines: list[bytes] | None = None
        """The forwarded field lines, one by one (for :meth:`header_list`)."""
        self._cut: FieldCut | None = None
        """What the current head's field block came to (shared: see FieldCuts)."""
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
        self.read_at = -1.0
        owner = self.owner
        if owner is None or self.finished:
            # Bytes nobody asked for: the connection's framing is lost.
            self.reusable = False
            self.close()
            return
        self.got_bytes = True
        if not self.headed:
            raw = self.raw
            self.raw = data if not raw else raw + data
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
        if not self.headed and len(self.raw) - self.head_at > MAX_HEAD:
            # (the head still open: what is held is the head so far)
            self.reusable = False
            self.raw = b""
            if self.owner is not None:
                self.owner = None
                self.close()
                owner.upstream_failed(self, BAD_RESPONSE)
            return
        if self.owner is not None:
            self.owner.flush_out()

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self.read_at = -1.0
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
    def on_headers_complete(self) -> None:
        raw = self.raw
        start = self.head_at
        n = len(raw)
        while start < n and (raw[start] == 13 or raw[start] == 10):
            start += 1  # (llhttp skips empty lines before a response)
        # "HTTP/x.y NNN": llhttp took it, so three digits (read here: a call less)
        status = (raw[start + 9] - 48) * 100 + (raw[start + 10] - 48) * 10 + raw[start + 11] - 48
        if status < 200:
            # 1xx interim response: swallowed (we answered Expect ourselves).
            self._interim = True
            self.head_at = raw.find(b"\r\n\r\n", start) + 4
            return
        self.headed = True
        self.raw = b""
        if not self.parser.should_keep_alive():
            self.reusable = False
        eol = start + 12
        while raw[eol] != 13:  # the status line's CR (llhttp took no other)
            eol += 1
        if eol - start == 12:  # no reason phrase: its space is still due (RFC 9112 4)
            self.status_line = b"HTTP/1.1" + raw[start + 8:eol] + b" \r\n"
        elif raw[start + 7] == 49 and raw[start + 5] == 49:  # HTTP/1.1
            self.status_line = raw[start:eol + 2]
        else:
            self.status_line = b"HTTP/1.1" + raw[start + 8:eol + 2]
        # The field block: the worker's last one again when a copy of it
        # follows the status line and the empty line follows the copy (then
        # that empty line is the head's first: the copy holds none, and
        # neither begins nor ends with a CRLF), else found (bytes.find, ~970
        # instructions) and looked up among the worker's recent ones.
        k = eol + 2
        cuts = _CUTS
        cut = cuts.last
        if cut is not None:
            m = cut.block
            end = k + len(m)
            if not (end + 4 <= n and raw[end] == 13 and raw[end + 1] == 10
                    and raw[end + 2] == 13 and raw[end + 3] == 10 and raw[k:end] == m):
                cut = None
        if cut is None:
            end = raw.find(b"\r\n\r\n", start)
            if eol < end:
                block = raw[eol + 2:end]
                cut = cuts.recent.get(block)
                if cut is None:
                    cut = cut_fields(block)
                    cuts.add(cut)
                cuts.last = cut
        if cut is not None:
            self._cut = cut
            self.fields = cut.fields
            self._lines = cut.lines
            self._headers = cut.headers
            self.content_length = cut.length
            self.chunked = cut.chunked
            if cut.close:
                self.reusable = False
        owner = self.owner
        if owner is not None:
            owner.upstream_head(self, status, self.content_length)
            if self.head_request and not self.finished:
                # llhttp cannot be told a response answers HEAD and would wait
                # for the announced body: end here, and do not reuse.
                self.reusable = False
                self.on_message_complete()

    def header_list(self) -> list[tuple[bytes, bytes]]:
        """The forwarded fields as ``(name, value)`` pairs, values as llhttp
        gives them (leading blanks skipped, trailing ones kept); made on the
        first call, and shared with later responses of the same fields (read
        it, do not change it)."""
        got = self._headers
        if got is None:
            got = self._headers = []
            lines = self._lines
            if lines is not None:
                for line in lines:
                    colon = 0
                    while line[colon] != 58:
                        colon += 1
                    got.append((line[:colon], _value(line, colon)))
                cut = self._cut
                if cut is not None and lines is cut.lines:
                    cut.headers = got  # (read only: shared by the worker's connections)
        return got

    def reason(self) -> bytes:
        """The status line's reason phrase."""
        line = self.status_line
        return line[13:len(line) - 2] if len(line) > 14 else b""

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


def _is(line: bytes, name: bytes) -> bool:
    """Whether ``line`` starts with ``name`` (lowercase letters and '-'), in any case."""
    k = len(name) - 1
    while k >= 0 and line[k] | 0x20 == name[k]:  # (compiled: native ints, no generator)
        k -= 1
    return k < 0


def _value(line: bytes, colon: int) -> bytes:
    """The value of field ``line`` whose colon is at ``colon``: after the
    leading blanks, trailing ones kept (as llhttp reports it)."""
    k = colon + 1
    n = len(line)
    while k < n and (line[k] == 32 or line[k] == 9):
        k += 1
    return line[k:]


class FieldCut:
    """What one response field block comes to (:func:`cut_fields`): the
    block to forward, its lines, the pairs once asked for, and the framing
    facts of the hop-by-hop fields."""

    __slots__ = ("block", "chunked", "close", "fields", "headers", "length", "lines")

    def __init__(self, block: bytes, fields: bytes, lines: list[bytes] | None, length: int,
                 chunked: bool, close: bool) -> None:
        self.block = block
        self.fields = fields
        self.lines = lines
        self.headers: list[tuple[bytes, bytes]] | None = None
        """The pairs, made by the first header_list that asks (read only)."""
        self.length = length
        self.chunked = chunked
        self.close = close


class FieldCuts:
    """The field blocks a worker's backends sent lately, and what each came to.

    A backend repeats a few field blocks byte for byte (Date is the field
    that moves, once a second) on all its connections. Remembered per
    connection, as before, the block a shopper's connection saw last is
    seconds old when a shop has many shoppers each asking now and then:
    at 1,000 kept-alive connections asking about once a second every
    response was cut again (callgrind, bench/proxy_callgrind.py --cache
    1000). Remembered for the worker, a block is cut once a second. Bounded:
    a backend whose every block is new (a request id, a fresh session
    cookie) costs a lookup and an insert a response, and the memory of
    :data:`MAX` blocks."""

    MAX: Final = 64

    def __init__(self) -> None:
        self.last: FieldCut | None = None
        self.recent: dict[bytes, FieldCut] = {}

    def add(self, cut: FieldCut) -> None:
        recent = self.recent
        if len(recent) >= FieldCuts.MAX:
            recent.clear()
        recent[cut.block] = cut


_CUTS: Final = FieldCuts()
"""The worker's (one per process: a worker is one)."""


def cut_fields(block: bytes) -> FieldCut:
    """The field lines of ``block`` (the head between the status line and
    the empty line, valid for llhttp) to forward, and the framing facts
    of the hop-by-hop ones. A name is ruled out as hop-by-hop by its
    first letter and where its colon is, then compared byte by byte
    without case: native ints, no lower() (a method call by name) and
    no set lookup (a hash of a new bytes object).

    Cutting and pairing cost ~7,000 instructions a response: a pure
    function of the block, remembered for the worker (FieldCuts)."""
    lines = block.split(b"\r\n")
    kept: list[bytes] = []
    dropped = False
    close = False
    chunked = False
    length = -1
    for line in lines:
        c = line[0] | 0x20
        size = len(line)
        hop = 0
        if c == 99:  # c
            if size > 10 and line[10] == 58 and _is(line, b"connection"):
                hop = _CONNECTION
            elif size > 14 and line[14] == 58 and _is(line, b"content-length"):
                hop = _CONTENT_LENGTH
        elif c == 116:  # t
            if size > 17 and line[17] == 58 and _is(line, b"transfer-encoding"):
                hop = _TRANSFER_ENCODING
            elif (size > 2 and line[2] == 58 and _is(line, b"te")) \
                    or (size > 7 and line[7] == 58 and _is(line, b"trailer")):
                hop = _OTHER
        elif c == 107:  # k
            if size > 10 and line[10] == 58 and _is(line, b"keep-alive"):
                hop = _OTHER
        elif c == 112:  # p
            if size > 16 and line[16] == 58 and _is(line, b"proxy-connection"):
                hop = _OTHER
        elif c == 117 and size > 7 and line[7] == 58 and _is(line, b"upgrade"):  # u
            hop = _OTHER
        if not hop:
            kept.append(line)
            continue
        dropped = True
        if hop == _CONTENT_LENGTH:
            # digits only (llhttp refuses anything else), trailing blanks allowed
            k = 15
            n = 0
            while k < size and (line[k] == 32 or line[k] == 9):
                k += 1
            while k < size and 48 <= line[k] <= 57:
                n = n * 10 + line[k] - 48
                k += 1
            length = n
        elif hop == _TRANSFER_ENCODING:
            chunked = True
        elif hop == _CONNECTION:
            value = _value(line, 10)
            if value != b"keep-alive" and b"close" in value.lower():
                close = True
    if not dropped:
        return FieldCut(block, block + b"\r\n", lines, length, chunked, close)
    if kept:
        return FieldCut(block, b"\r\n".join(kept) + b"\r\n", kept, length, chunked, close)
    return FieldCut(block, b"", None, length, chunked, close)



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
        # asyncio.timeout, not wait_for: wait_for runs the connect as a task of
        # its own, one more turn of the loop before the request is sent, and a
        # turn is 10-50 ms with 1,000 connections busy (a cold pool's p99)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, proto = await loop.create_connection(
                lambda: UpstreamConnection(self, backend), backend.host, backend.port)
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
