"""A small, fast HTTP/1.1 client for the lab's load generators.

Asyncio streams and httptools' response parser: cheap enough that one
process on a 2-core machine can drive a flood, and able to bind each
connection's *source* address (every session and every bot has its own
address on 127.0.0.0/8, so the shield sees many distinct clients). Every
connection is checked against :func:`netsafety.check_target` before it opens.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import httptools

from shieldwall.drill import netsafety

_checked: set[tuple[str, int]] = set()


class HTTPError(Exception):
    """The exchange failed before a complete response (refused, reset, timeout)."""


class Timeout(HTTPError):
    pass


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k == "set-cookie"]


class _Parse:
    __slots__ = ("body", "done", "headers", "keep", "parser")

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.done = False
        self.keep = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        # asked here: once the message is complete llhttp has reset its flags
        # and says False for every response, so a browser of the drill opened
        # a new connection per request (behind a balancer, a new node each time)
        self.keep = bool(self.parser.should_keep_alive())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def check(host: str, port: int) -> None:
    """Refuse non-lab targets (cached per target)."""
    if (host, port) not in _checked:
        netsafety.check_target(host, port)
        _checked.add((host, port))


@dataclass
class Connection:
    host: str
    port: int
    source: str | None = None
    preamble: bytes = b""
    """Bytes written first on every new connection: the PROXY protocol header a
    load balancer in front of the shield would write for the client it relays."""
    reuse: bool = False
    """Keep the connection for the next request when the server allows it (a
    shopper's browser). Off: one connection per request, what the attacks
    were measured and tested with (their figures predate the keep-alive fix
    and are not re-measured yet)."""
    reader: asyncio.StreamReader | None = field(default=None, repr=False)
    writer: asyncio.StreamWriter | None = field(default=None, repr=False)

    @property
    def open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self, timeout: float) -> None:
        check(self.host, self.port)
        local = (self.source, 0) if self.source else None
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, local_addr=local), timeout)
        except TimeoutError as exc:
            raise Timeout(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise HTTPError(f"connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        sock = self.writer.get_extra_info("socket") if self.writer is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.preamble and self.writer is not None:
            self.writer.write(self.preamble)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None
            self.reader = None

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, method: str, target: str, headers: list[tuple[str, str]] | None = None,
                      body: bytes = b"", timeout: float = 10.0) -> Response:
        """One exchange on this connection (opened if needed); the connection is
        closed on any error and when the server does not keep it alive."""
        try:
            return await asyncio.wait_for(self._exchange(method, target, headers or [], body, timeout),
                                          timeout)
        except TimeoutError as exc:
            self.abort()
            raise Timeout(f"{method} {target} timed out after {timeout:g}s") from exc
        except (OSError, httptools.HttpParserError, asyncio.IncompleteReadError) as exc:
            self.abort()
            raise HTTPError(f"{method} {target}: {exc}") from exc

    async def _exchange(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                        timeout: float) -> Response:
        if not self.open:
            await self.connect(timeout)
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        p = _Parse()
        while not p.done:
            data = await self.reader.read(65536)
            if not data:
                self.abort()
                raise HTTPError(f"{method} {target}: connection closed before a complete response")
            p.parser.feed_data(data)
        status = p.parser.get_status_code()
        keep = p.keep and self.reuse
        if not keep:
            self.close()
        return Response(status, p.headers, b"".join(p.body), keep)


class CookieJar:
    """Name=value cookies of one client (one shield host; paths ignored)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def update(self, response: Response) -> None:
        for raw in response.set_cookies():
            first, *attrs = raw.split(";")
            name, _, value = first.strip().partition("=")
            if not name:
                continue
            expired = any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attrs) or any(
                a.strip().lower().startswith("expires=") and "1970" in a for a in attrs)
            if expired:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def header(self) -> list[tuple[str, str]]:
        if not self.cookies:
            return []
        return [("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))]
