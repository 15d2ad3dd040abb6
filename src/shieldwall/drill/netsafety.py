"""Where lab traffic may go, and which addresses stand for whom.

The lab's attackers are real floods; the only thing that keeps them in the
lab is this module. Every target is resolved *before* a socket is opened and
must be loopback (127.0.0.0/8, ::1) or an address inside a network namespace
the lab created itself (registered here by the code that made it). Anything
else raises :class:`UnsafeTargetError` — in code, not by convention.

Shoppers and attackers get disjoint loopback ranges so that the shop can
count, by the true client address, how much attack traffic reached it. The
shield is never told these ranges.
"""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SHOPPER_NET = ipaddress.IPv4Network("127.10.0.0/16")
"""Source addresses of legitimate shoppers (one per session)."""
ATTACKER_NET = ipaddress.IPv4Network("127.64.0.0/10")
"""Source addresses of attackers (127.64.0.0 - 127.127.255.255)."""
SHOPPER_NET6 = ipaddress.IPv6Network("2001:db8::/32")
"""IPv6 shoppers (the documentation prefix, RFC 3849: never routed anywhere).
No packet is ever sent to or from these: they exist only as the client address
in a PROXY protocol header that the lab's edge writes (see EDGE_NET)."""
CARRIER_NAT_NET = ipaddress.IPv4Network("127.10.250.0/24")
"""A mobile carrier's public addresses: many shoppers' sessions share each one
(carrier-grade NAT). Inside SHOPPER_NET, outside what ``sources`` hands out
to one-address-per-session shoppers (their 60,000 addresses end before .235)."""
EDGE_NET = ipaddress.IPv4Network("127.9.0.0/24")
"""The lab's layer-4 balancer hop: connections from here start with a PROXY
protocol header naming the client they carry (the shield is configured to
trust this network, as it would trust a real balancer's addresses)."""
LAB_PROBE = "203.0.113.77"
"""The address the cluster drill's ban probe writes in its PROXY headers (a
documentation address, RFC 5737: never a real client of the lab)."""
LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
LOOPBACK_V6 = ipaddress.IPv6Address("::1")

_namespace_nets: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()


class UnsafeTargetError(ValueError):
    """The lab refused to send traffic to a target outside the lab."""


def register_lab_namespace(net: str) -> None:
    """Allow ``net``: called only by code that created a network namespace
    holding that network (the namespace dies with the lab)."""
    _namespace_nets.add(ipaddress.ip_network(net, strict=False))


def unregister_lab_namespace(net: str) -> None:
    _namespace_nets.discard(ipaddress.ip_network(net, strict=False))


def _allowed(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return _allowed(mapped)
        if addr == LOOPBACK_V6:
            return True
    elif addr in LOOPBACK_V4:
        return True
    return any(addr.version == net.version and addr in net for net in _namespace_nets)


def check_target(host: str, port: int = 80) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if *every* one is inside the lab.

    Raises UnsafeTargetError otherwise (including 0.0.0.0 / ::, which mean
    "this host on any interface", and names that do not resolve)."""
    if not host:
        raise UnsafeTargetError("refusing an empty target host")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeTargetError(f"refusing target {host!r}: it does not resolve ({exc})") from exc
    addrs: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]
        addr = ipaddress.ip_address(raw)
        if addr.is_unspecified:
            raise UnsafeTargetError(
                f"refusing target {host!r}: {addr} is the unspecified address, not a lab host"
            )
        if not _allowed(addr):
            raise UnsafeTargetError(
                f"refusing target {host!r}: it resolves to {addr}, which is neither loopback "
                "(127.0.0.0/8, ::1) nor a network namespace this lab created"
            )
        addrs.append(addr)
    if not addrs:
        raise UnsafeTargetError(f"refusing target {host!r}: no address")
    return addrs


def check_url(url: str) -> None:
    """Check the host of an http:// URL (see :func:`check_target`)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", ""):
        raise UnsafeTargetError(f"refusing target {url!r}: only plain http:// is supported")
    check_target(parts.hostname or "", parts.port or 80)


def sources(net: ipaddress.IPv4Network, count: int, offset: int = 0) -> list[str]:
    """``count`` distinct host addresses of ``net``, spread over its /24 prefixes.

    Address k lands in /24 number ``k mod blocks``, so a thousand bots come
    from a thousand different /24 networks, as the volunteers of a real LOIC
    or HOIC campaign did (a botnet packed into a few /24s would be too easy
    to block by prefix); shoppers likewise come from all 256 /24s of their
    /16. Host octets 0 and 255 are skipped."""
    blocks = max(1, net.num_addresses // 256)
    capacity = blocks * 254
    if offset + count > capacity:
        raise ValueError(f"{net} has fewer than {offset + count} usable addresses")
    base = int(net.network_address)
    out: list[str] = []
    for k in range(offset, offset + count):
        block, host = k % blocks, k // blocks + 1
        out.append(str(ipaddress.IPv4Address(base + block * 256 + host)))
    return out


def who(addr: str) -> str:
    """'shopper', 'attacker' or 'other' for a client address."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return "other"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in SHOPPER_NET6:
            return "shopper"
        if ip.ipv4_mapped is None:
            return "other"
        ip = ip.ipv4_mapped
    if ip in SHOPPER_NET:
        return "shopper"
    if ip in ATTACKER_NET:
        return "attacker"
    return "other"
