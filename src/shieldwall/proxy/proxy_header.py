"""Reading a PROXY protocol header off an accepted socket, before any
transport (plain or TLS) exists.

A connection from an address in ``proxy_protocol_from`` must start with a
header (shieldwall.http.proxy_protocol decides what one is); the client
address it names replaces the balancer's, so connection caps, the guard,
the access log and the ``X-Forwarded-For`` sent to the shop all see the
shopper. Nothing else changes: the accept loop then parks or adopts the
socket exactly as it does any other.

Bytes are taken from the kernel with ``MSG_PEEK`` first and consumed only
as far as the header goes, so the request (or the TLS ClientHello) behind it
stays in the socket for the transport. The usual case (the balancer wrote
its header right after connecting) costs two ``recv`` calls and no task; a
header still on its way is awaited, up to the header timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from shieldwall.http.proxy_protocol import V2_MAX_PAYLOAD, ProxyHeader, ProxyProtocolError, parse

_PEEK = 16 + V2_MAX_PAYLOAD
"""Never look further than the longest header we accept."""

class AddressSet:
    """Membership of an address in a list of CIDRs, remembered per address
    (a balancer has few addresses; a lookup per accepted connection)."""

    __slots__ = ("_cache", "_nets")

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, addr: object) -> bool:
        if not self._nets or not isinstance(addr, str):
            return False
        got = self._cache.get(addr)
        if got is None:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                got = False
            else:
                got = any(ip.version == n.version and ip in n for n in self._nets)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[addr] = got
        return got

class HeaderEOF(Exception):
    """The peer closed before sending a byte (a balancer's TCP health check)."""

def try_read(sock: socket.socket, got: bytearray) -> ProxyHeader | None:
    """One non-blocking step: peek what is there, consume what belongs to the
    header. Returns the header when complete, None when more must come.
    Raises ProxyProtocolError, HeaderEOF or OSError."""
    try:
        peeked = sock.recv(_PEEK - len(got), socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return None
    if not peeked:
        if got:
            raise ProxyProtocolError(f"connection closed inside the header ({len(got)} bytes)")
        raise HeaderEOF()
    header = parse(bytes(got) + peeked)
    # parse() returned None only if every byte is header (its contract), and
    # a complete header says how far it goes: never take a request byte.
    take = len(peeked) if header is None else header.length - len(got)
    while take > 0:
        chunk = sock.recv(take)
        if not chunk:
            raise ProxyProtocolError("connection closed inside the header")
        got += chunk
        take -= len(chunk)
    return header

async def read_header(loop: asyncio.AbstractEventLoop, sock: socket.socket, got: bytearray,
                      timeout: float) -> ProxyHeader:
    """Wait for the rest of a header (``got`` holds what came so far)."""
    fd = sock.fileno()
    async with asyncio.timeout(timeout):
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _set, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            header = try_read(sock, got)
            if header is not None:
                return header

def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

def client_of(header: ProxyHeader, peer: str) -> str:
    """The address the rest of the shield calls the client."""
    return header.source[0] if header.source is not None else peer
