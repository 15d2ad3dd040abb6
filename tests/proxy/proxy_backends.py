"""Real HTTP/1.1 backends on loopback for the proxy tests: each records the
raw bytes and the requests it parsed, so a test can assert exactly what got
through the shield."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import httptools


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"hello"
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunked: bool = False
    delay: float = 0.0
    hang: bool = False
    """Never answer."""
    reset: bool = False
    """Close the connection without answering."""


Handler = Callable[[Seen], Reply | Awaitable[Reply]]


class _Conn(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.b = backend
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.cur: Seen | None = None
        self.body: list[bytes] = []
        self.url = b""
        self.hdrs: list[tuple[str, str]] = []
        self.queue: asyncio.Queue[Seen] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport
        self.b.connections += 1
        self.b.open_conns.add(self)
        if self.b.hold_reading:
            transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.b.open_conns.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.b.raw.extend(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.b.errors.append(str(exc))
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.hdrs = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.hdrs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        seen = Seen(self.parser.get_method().decode(), self.url.decode("latin-1"), self.hdrs,
                    b"".join(self.body))
        self.b.seen.append(seen)
        self.queue.put_nowait(seen)

    async def _serve(self) -> None:
        while True:
            seen = await self.queue.get()
            got = self.b.handler(seen)
            reply = await got if isinstance(got, Awaitable) else got
            if reply.delay:
                await asyncio.sleep(reply.delay)
            assert self.transport is not None
            if reply.hang:
                await asyncio.sleep(3600)
            if reply.reset:
                self.transport.abort()
                return
            head = [f"HTTP/1.1 {reply.status} X"]
            head += [f"{n}: {v}" for n, v in reply.headers]
            no_body = seen.method == "HEAD" or reply.status in (204, 304)
            if reply.chunked:
                head.append("Transfer-Encoding: chunked")
            else:
                head.append(f"Content-Length: {len(reply.body)}")
            out = ("\r\n".join(head) + "\r\n\r\n").encode()
            if not no_body:
                if reply.chunked:
                    step = max(3, len(reply.body) // 7)
                    pieces = [out]
                    for i in range(0, len(reply.body), step):
                        piece = reply.body[i:i + step]
                        pieces.append(b"%x\r\n%s\r\n" % (len(piece), piece))
                    pieces.append(b"0\r\n\r\n")
                    out = b"".join(pieces)
                else:
                    out += reply.body
            self.transport.write(out)


class Backend:
    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda s: Reply())
        self.seen: list[Seen] = []
        self.raw = bytearray()
        self.errors: list[str] = []
        self.connections = 0
        self.open_conns: set[_Conn] = set()
        self.hold_reading = False
        """Do not read requests (to test the shield's flow control)."""
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> Backend:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for c in list(self.open_conns):
                if c.transport is not None:
                    c.transport.abort()
            await self.server.wait_closed()
            self.server = None


async def send_raw(port: int, data: bytes | list[bytes], read_timeout: float = 5.0,
                   pause: float = 0.0) -> bytes:
    """Send bytes on a fresh connection and read until the shield closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        out = b""
        async with asyncio.timeout(read_timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                out += chunk
        return out
    finally:
        writer.close()


def free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def shield_config(backends: list[str], **over: object) -> dict[str, object]:
    """A test config: OS-chosen ports, no access log, no active health checks
    (so backends record only what clients sent), no guard and no detector
    (these tests are about the data path; the parts test themselves through
    it), plus ``over`` merged in."""
    from shieldwall.config import merge

    base: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "access_log": "off",
        "admin": {"listen": "127.0.0.1:0"},
        "backends": [{"url": u} for u in backends],
        "upstream": {"health": {"enabled": False}},
        "guard": {"enabled": False},
        "detect": {"enabled": False},
    }
    return merge(base, dict(over))


def status_of(response: bytes) -> int:
    return int(response[9:12]) if response.startswith(b"HTTP/1.1 ") else 0


def responses(raw: bytes) -> list[bytes]:
    """Split a byte stream of Content-Length framed responses."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append(head + sep + rest[:length])
        raw = rest[length:]
    return out


BAD_ONLY_HEAD_ERRORS = {
    # Cases refused before the head is released (the rest are bad chunks).
    name for name in (
        "content-length and transfer-encoding", "transfer-encoding then content-length",
        "two equal content-lengths", "two different content-lengths", "content-length list",
        "content-length with sign", "content-length not a number", "content-length negative",
        "transfer-encoding gzip only", "transfer-encoding chunked then gzip",
        "transfer-encoding gzip then chunked", "transfer-encoding xchunked", "transfer-encoding twice",
        "space before colon in transfer-encoding", "vertical tab in transfer-encoding",
        "obsolete line folding", "bare LF line ends", "bare LF after a header",
        "bare CR after a header", "bare CR inside a value", "NUL in a value",
        "control character in a value", "DEL in a value", "invalid character in a name",
        "space in the request target", "unknown HTTP version", "missing Host", "two Host headers",
        "request target over the limit", "header block over the limit",
        "too many headers", "declared body over the limit", "websocket upgrade",
        "absolute-form target with another scheme", "absolute-form target with userinfo",
        "absolute-form target with an empty host", "absolute-form target with a bad port",
        "absolute-form target without Host", "authority-form target", "Host with a space",
        "Host with a tab inside", "Host with a slash", "Host with userinfo", "Host with a bad port",
        "empty Host", "NUL in Host", "control character in Host", "bare CR in Host", "DEL in Host",
        "control character in an absolute-form host", "HTTP/0.9 with headers",
        "HTTP/0.9 without headers", "HTTP/0.9 simple request", "HTTP/2.0 on an HTTP/1 connection",
        "bare CRs before the request line", "bare CR after an empty line",
        "bare LF before the request line", "an RTSP request line", "an ICE request line",
    )
}


class Client:
    """A raw keep-alive client connection that reads one response at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(r, w)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 5.0, head_only: bool = False
                       ) -> tuple[int, dict[str, str], bytes]:
        """Read one response (Content-Length, chunked or close-delimited)."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    n, _, v = line.partition(":")
                    headers[n.strip().lower()] = v.strip()
            if head_only or status in (204, 304) or 100 <= status < 200:
                return status, headers, b""
            if "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("transfer-encoding") == "chunked":
                body = b""
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")
                        break
                    body += await self.reader.readexactly(size)
                    await self.reader.readexactly(2)
            else:
                body = await self.reader.read()
            return status, headers, body

    async def closed(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()
