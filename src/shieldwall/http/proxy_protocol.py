"""The PROXY protocol header (v1 text, v2 binary), sans-IO.

A layer-4 load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, a cloud
network load balancer) opens its own connection to the shield, so the peer
address the shield sees is the balancer's. The balancer writes one PROXY
header first, naming the client it relays. This module turns the first bytes
of such a connection into a :class:`ProxyHeader`, or says it needs more, or
raises :class:`ProxyProtocolError`. It owns no socket: the accept path
(shieldwall.proxy.proxy_header) reads, this decides.

The format is HAProxy's published specification (proxy-protocol.txt).
Strict on purpose: the header is the only thing that stands between a
shopper's address and the balancer's, so anything that is not exactly a
header from the spec is refused, never guessed at.

The contract the reader relies on: ``parse(data)`` returns ``None`` only
when every byte of ``data`` is part of a header that is not complete yet.
The reader may therefore consume all of it and wait for more, without ever
taking a byte that belongs to the request (or the TLS handshake) behind it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
"""The 12 bytes every v2 header starts with (no HTTP request can)."""
V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107
"""The spec's longest v1 line, CRLF included ("PROXY TCP6" with two full
IPv6 addresses and two 5-digit ports)."""
V2_MAX_PAYLOAD = 4096
"""Largest v2 address block plus TLVs we accept. The field allows 65,535;
the TLVs known balancers send (ALPN, authority, unique id, SSL, AWS VPC
endpoint, GCP PSC) take a few hundred bytes. A larger header is refused so a
peer cannot make us buffer 64 KiB per connection."""

_V2_HEAD = 16
_CMD_LOCAL = 0x0
_CMD_PROXY = 0x1
_AF_UNSPEC = 0x0
_AF_INET = 0x1
_AF_INET6 = 0x2
_AF_UNIX = 0x3
_STREAM = 0x1
_ADDR_LEN = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}
_V1_CHARS = frozenset(b"PROXY TCP46UNKOW0123456789abcdefABCDEF.:\r\n")
"""Every byte a well-formed v1 line can hold (UNKNOWN lines too, as far as
we accept them: see _parse_v1)."""


class ProxyProtocolError(ValueError):
    """A header that breaks the spec; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    """1 (text) or 2 (binary)."""
    length: int
    """How many bytes the header took; the request starts right after."""
    source: tuple[str, int] | None
    """The client the balancer relays (address, port). None for a v2 LOCAL
    command (the balancer's own health check), a v2 UNSPEC family or a v1
    ``UNKNOWN``: then the connection's own peer is the client."""
    destination: tuple[str, int] | None = None


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it is a proper prefix
    of one. Raises ProxyProtocolError as soon as the bytes cannot begin a
    header (so an HTTP request sent without one is refused at once)."""
    if not data:
        return None
    if data[0] == 0x0D:
        return _parse_v2(data)
    if data[0] == 0x50:  # "P"
        return _parse_v1(data)
    raise ProxyProtocolError("no PROXY protocol header (expected 'PROXY ' or the v2 signature)")


def _parse_v2(data: bytes) -> ProxyHeader | None:
    sig = data[:12]
    if not V2_SIGNATURE.startswith(sig):
        raise ProxyProtocolError("bad v2 signature")
    if len(data) < _V2_HEAD:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"unsupported v2 version {ver_cmd >> 4}")
    cmd = ver_cmd & 0x0F
    if cmd not in (_CMD_LOCAL, _CMD_PROXY):
        raise ProxyProtocolError(f"unknown v2 command {cmd}")
    family, transport = fam >> 4, fam & 0x0F
    if family not in _ADDR_LEN or transport > 2:
        raise ProxyProtocolError(f"unknown v2 address family/transport 0x{fam:02x}")
    if length > V2_MAX_PAYLOAD:
        raise ProxyProtocolError(f"v2 header of {length} bytes is over the limit of {V2_MAX_PAYLOAD}")
    end = _V2_HEAD + length
    if len(data) < end:
        return None
    if cmd == _CMD_LOCAL:
        # The balancer speaking for itself (health checks): the address
        # block, whatever it holds, is to be ignored (the spec says so).
        return ProxyHeader(2, end, None)
    need = _ADDR_LEN[family]
    if length < need:
        raise ProxyProtocolError(f"v2 length {length} is shorter than its address block ({need})")
    _check_tlvs(data, _V2_HEAD + need, end)
    if family == _AF_UNSPEC:
        return ProxyHeader(2, end, None)
    if transport != _STREAM:
        raise ProxyProtocolError("v2 header for a datagram or unspecified transport on a stream listener")
    if family == _AF_INET:
        src = socket.inet_ntop(socket.AF_INET, data[16:20])
        dst = socket.inet_ntop(socket.AF_INET, data[20:24])
        sport, dport = struct.unpack_from("!HH", data, 24)
    elif family == _AF_INET6:
        src = _v6(data[16:32])
        dst = _v6(data[32:48])
        sport, dport = struct.unpack_from("!HH", data, 48)
    else:
        raise ProxyProtocolError("v2 AF_UNIX source addresses are not supported (no client IP)")
    return ProxyHeader(2, end, (src, sport), (dst, dport))


def _v6(raw: bytes) -> str:
    # An IPv4 client relayed over an IPv6 balancer is the IPv4 client: its
    # bans and buckets must be the ones its IPv4 address has.
    ip = ipaddress.IPv6Address(raw)
    mapped = ip.ipv4_mapped
    return str(mapped) if mapped is not None else str(ip)


def _check_tlvs(data: bytes, start: int, end: int) -> None:
    """TLVs are skipped, but they must tile the rest of the header exactly."""
    i = start
    while i < end:
        if end - i < 3:
            raise ProxyProtocolError("v2 TLV truncated")
        (n,) = struct.unpack_from("!H", data, i + 1)
        i += 3 + n
        if i > end:
            raise ProxyProtocolError("v2 TLV longer than the header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    lf = data.find(b"\n", 0, V1_MAX_BYTES)
    line = data if lf < 0 else data[:lf + 1]
    if not (line.startswith(V1_PREFIX) or V1_PREFIX.startswith(line)):
        raise ProxyProtocolError("no PROXY protocol header (expected 'PROXY ' or the v2 signature)")
    if any(b not in _V1_CHARS for b in line):
        raise ProxyProtocolError("v1 line holds a byte the format does not allow")
    if lf < 0:
        if len(data) >= V1_MAX_BYTES:
            raise ProxyProtocolError(f"v1 line longer than {V1_MAX_BYTES} bytes")
        cr = data.find(b"\r")
        if 0 <= cr < len(data) - 1:
            raise ProxyProtocolError("v1 line has a CR not followed by LF")
        return None
    if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
        raise ProxyProtocolError("v1 line must end in CRLF")
    fields = line[:-2].decode("ascii").split(" ")
    if fields[1:2] == ["UNKNOWN"]:
        # The balancer could not tell (a non-TCP client); the spec lets it
        # append anything, we accept only what _V1_CHARS allows.
        return ProxyHeader(1, lf + 1, None)
    if len(fields) != 6:
        raise ProxyProtocolError("v1 line must be 'PROXY TCP4|TCP6 src dst sport dport'")
    _, proto, src, dst, sport, dport = fields
    if proto == "TCP4":
        kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address] = ipaddress.IPv4Address
    elif proto == "TCP6":
        kind = ipaddress.IPv6Address
    else:
        raise ProxyProtocolError(f"v1 protocol {proto!r} is not TCP4, TCP6 or UNKNOWN")
    try:
        s, d = kind(src), kind(dst)
    except ValueError:
        raise ProxyProtocolError(f"v1 {proto} addresses {src!r} {dst!r} are not {proto} addresses") from None
    src_s = str(s.ipv4_mapped) if isinstance(s, ipaddress.IPv6Address) and s.ipv4_mapped else str(s)
    return ProxyHeader(1, lf + 1, (src_s, _port(sport)), (str(d), _port(dport)))


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ProxyProtocolError(f"v1 port {text!r} is not a decimal port without leading zeros")
    value = int(text)
    if value > 65535:
        raise ProxyProtocolError(f"v1 port {value} is over 65535")
    return value


def v1_header(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """A v1 line for a TCP connection (for tests, drills and tools that relay)."""
    proto = "TCP6" if ":" in src[0] else "TCP4"
    return f"PROXY {proto} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def v2_header(src: tuple[str, int] | None, dst: tuple[str, int] | None = None,
              tlvs: bytes = b"") -> bytes:
    """A v2 header: PROXY over TCP for ``src``, or LOCAL when ``src`` is None."""
    if src is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlvs)) + tlvs
    if dst is None:
        dst = ("::" if ":" in src[0] else "0.0.0.0", 0)
    six = ":" in src[0]
    fam = socket.AF_INET6 if six else socket.AF_INET
    block = (socket.inet_pton(fam, src[0]) + socket.inet_pton(fam, dst[0])
             + struct.pack("!HH", src[1], dst[1]))
    return (V2_SIGNATURE + struct.pack("!BBH", 0x21, (0x21 if six else 0x11), len(block) + len(tlvs))
            + block + tlvs)
