"""The PROXY protocol header parser (shieldwall.http.proxy_protocol): what the
spec allows is read exactly, anything else is refused, and a prefix of a
header is never mistaken for a whole one (nor a request byte for a header
byte)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shieldwall.http.proxy_protocol import (
    V1_MAX_BYTES,
    V2_MAX_PAYLOAD,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse,
    v1_header,
    v2_header,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n"


def test_v1_tcp4_names_the_client_and_stops_at_the_line_end() -> None:
    data = b"PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\n" + REQUEST
    got = parse(data)
    assert got == ProxyHeader(1, 44, ("203.0.113.9", 56324), ("192.0.2.1", 443))
    assert data[got.length:] == REQUEST


def test_v1_tcp6_is_canonical_and_mapped_ipv4_is_ipv4() -> None:
    got = parse(b"PROXY TCP6 2001:DB8:0:0::0001 ::1 1 65535\r\n")
    assert got is not None and got.source == ("2001:db8::1", 1) and got.destination == ("::1", 65535)
    got = parse(b"PROXY TCP6 ::ffff:198.51.100.7 ::1 80 80\r\n")
    assert got is not None and got.source == ("198.51.100.7", 80)


def test_v1_unknown_leaves_the_connection_peer_as_the_client() -> None:
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, 15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nGET") == ProxyHeader(1, 31, None)


@pytest.mark.parametrize("line, why", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CRLF"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 ::1 ::1 1 2\r\n", "not TCP4 addresses"),
    (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "not TCP6 addresses"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "not TCP4 addresses"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "leading zeros"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "over 65535"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "must be 'PROXY TCP4|TCP6"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "must be 'PROXY TCP4|TCP6"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "must be 'PROXY TCP4|TCP6"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "byte the format does not allow"),
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    (b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    (REQUEST, "no PROXY protocol header"),
    (b"PROXY TCP4 1.2.3.4\r5.6.7.8", "CR not followed by LF"),
    (b"PROXY UNKNOWN " + b"1" * (V1_MAX_BYTES - 14), "longer than 107"),
])
def test_v1_refuses_anything_off_spec(line: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why.replace("|", r"\|")):
        parse(line)


def test_v1_longest_legal_line_is_accepted() -> None:
    six = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {six} {six} 65535 65535\r\n".encode()
    got = parse(line)
    assert got is not None and got.source == (six, 65535)
    # the spec's worst case: UNKNOWN followed by the longest fields
    unknown = f"PROXY UNKNOWN {six} {six} 65535 65535\r\n".encode()
    assert len(unknown) == V1_MAX_BYTES
    assert parse(unknown) == ProxyHeader(1, V1_MAX_BYTES, None)


def test_v2_ipv4_and_ipv6_with_tlvs_skipped() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"  # ALPN "h2", an empty NOOP
    h4 = v2_header(("203.0.113.9", 50000), ("192.0.2.1", 443), tlvs)
    assert parse(h4 + REQUEST) == ProxyHeader(2, len(h4), ("203.0.113.9", 50000), ("192.0.2.1", 443))
    h6 = v2_header(("2001:db8::7", 1), ("::1", 8080))
    assert len(h6) == 16 + 36
    assert parse(h6) == ProxyHeader(2, 52, ("2001:db8::7", 1), ("::1", 8080))
    mapped = v2_header(("::ffff:198.51.100.7", 9))
    assert parse(mapped) == ProxyHeader(2, 52, ("198.51.100.7", 9), ("::", 0))


def test_v2_local_and_unspec_leave_the_peer_as_the_client() -> None:
    assert parse(v2_header(None)) == ProxyHeader(2, 16, None)
    # LOCAL with an address block: the block is ignored, as the spec says
    local = V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x11, 12) + bytes(12)
    assert parse(local + REQUEST) == ProxyHeader(2, 28, None)
    unspec = V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x00, 0)
    assert parse(unspec) == ProxyHeader(2, 16, None)


def _v2(ver_cmd: int, fam: int, payload: bytes, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", ver_cmd, fam, n) + payload


@pytest.mark.parametrize("data, why", [
    (b"\r\n\r\n\x00\r\nQUIX\n" + bytes(4), "bad v2 signature"),
    (b"\r\nGET / HTTP/1.1", "bad v2 signature"),
    (_v2(0x11, 0x11, bytes(12)), "unsupported v2 version 1"),
    (_v2(0x31, 0x11, bytes(12)), "unsupported v2 version 3"),
    (_v2(0x22, 0x11, bytes(12)), "unknown v2 command 2"),
    (_v2(0x21, 0x41, bytes(12)), "unknown v2 address family"),
    (_v2(0x21, 0x13, bytes(12)), "unknown v2 address family"),
    (_v2(0x21, 0x11, bytes(8)), "shorter than its address block"),
    (_v2(0x21, 0x21, bytes(12)), "shorter than its address block"),
    (_v2(0x21, 0x12, bytes(12)), "datagram"),
    (_v2(0x21, 0x31, bytes(216)), "AF_UNIX"),
    (_v2(0x21, 0x11, bytes(12) + b"\x01\x00"), "TLV truncated"),
    (_v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05ab"), "TLV longer than the header"),
    (_v2(0x21, 0x11, b"", length=V2_MAX_PAYLOAD + 1), "over the limit"),
])
def test_v2_refuses_anything_off_spec(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        parse(data)


def test_a_plain_request_is_refused_at_its_first_byte() -> None:
    with pytest.raises(ProxyProtocolError):
        parse(b"G")


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)
ports = st.integers(0, 65535)
headers = st.one_of(
    st.tuples(ipv4, ipv4, ports, ports).map(lambda t: (v1_header((t[0], t[2]), (t[1], t[3])), t)),
    st.tuples(ipv6, ipv6, ports, ports).map(lambda t: (v1_header((t[0], t[2]), (t[1], t[3])), t)),
    st.tuples(ipv4, ipv4, ports, ports, st.binary(max_size=40)).map(
        lambda t: (v2_header((t[0], t[2]), (t[1], t[3]), b"\xe0" + struct.pack("!H", len(t[4])) + t[4]),
                   t[:4])),
    st.tuples(ipv6, ipv6, ports, ports).map(lambda t: (v2_header((t[0], t[2]), (t[1], t[3])), t)),
)


@given(headers, st.binary(max_size=64))
def test_any_header_reads_back_and_the_bytes_after_it_are_untouched(
        case: tuple[bytes, tuple[str, str, int, int]], rest: bytes) -> None:
    raw, (src, dst, sport, dport) = case
    got = parse(raw + rest)
    assert got is not None
    assert got.length == len(raw)
    assert got.source == (src, sport) and got.destination == (dst, dport)


@given(headers)
def test_every_proper_prefix_asks_for_more(case: tuple[bytes, object]) -> None:
    # The reader consumes a prefix that parse() answered None for: so None
    # must only ever mean "all of this is header, and it is not complete".
    raw = case[0]
    for cut in range(len(raw)):
        assert parse(raw[:cut]) is None


@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_never_crash_and_never_overrun(data: bytes) -> None:
    try:
        got = parse(data)
    except ProxyProtocolError:
        return
    if got is None:
        assert len(data) < 16 + V2_MAX_PAYLOAD
    else:
        assert 0 < got.length <= len(data)
