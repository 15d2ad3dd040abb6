"""Who is this client, network-wise: its address and its prefix tiers, and
fast membership tests of addresses in sets of CIDRs.

A flood spread over an IPv6 /48 is one actor, so a client is counted under its
address and under each configured prefix (IPv4 /24; IPv6 /64, /56, /48).
Parsing an address costs more than the rest of a decision, so identities are
cached in a bounded dict (cleared when full: an attacker with random sources
only costs us the parse he would have cost anyway).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Identity:
    address: str
    """Canonical text of the address ("" when the client field is not an address)."""
    version: int
    value: int
    """The address as an integer (for CIDR tests)."""
    prefixes: tuple[tuple[int, str], ...]
    """(prefix length, canonical network text), longest first."""

    @property
    def bind_prefix(self) -> str:
        """The prefix that challenge tokens are bound to (the narrowest tier)."""
        return self.prefixes[0][1] if self.prefixes else self.address


def _network_text(version: int, value: int, plen: int) -> str:
    bits = 32 if version == 4 else 128
    net = (value >> (bits - plen)) << (bits - plen)
    addr = ipaddress.IPv4Address(net) if version == 4 else ipaddress.IPv6Address(net)
    return f"{addr}/{plen}"


class IdentityCache:
    def __init__(self, v4: list[int], v6: list[int], size: int = 65536) -> None:
        self._v4 = sorted(v4, reverse=True)
        self._v6 = sorted(v6, reverse=True)
        self._size = size
        self._cache: dict[str, Identity] = {}

    def get(self, client: str) -> Identity:
        ident = self._cache.get(client)
        if ident is None:
            ident = self._parse(client)
            if len(self._cache) >= self._size:
                self._cache.clear()
            self._cache[client] = ident
        return ident

    def _parse(self, client: str) -> Identity:
        try:
            addr = ipaddress.ip_address(client.strip("[]"))
        except ValueError:
            return Identity(client, 0, 0, ())
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        value = int(addr)
        tiers = self._v4 if addr.version == 4 else self._v6
        prefixes = tuple((p, _network_text(addr.version, value, p)) for p in tiers)
        return Identity(str(addr), addr.version, value, prefixes)


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR in canonical form; raises ValueError with a clear message."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR "
                         "(e.g. 192.0.2.7, 198.51.100.0/24 or 2001:db8::/48)") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(f"{mapped}/32")
    return net


class CidrMap(Generic[T]):
    """CIDR -> value with a lookup cost of one shift and one dict probe per
    distinct prefix length present (a handful), instead of a scan over every
    network."""

    def __init__(self) -> None:
        self._by_len: dict[tuple[int, int], dict[int, T]] = {}
        self._lens: dict[int, list[int]] = {4: [], 6: []}
        self._items: dict[str, T] = {}

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def put(self, network: str, value: T) -> str:
        net = parse_network(network)
        key = str(net)
        version = net.version
        table = self._by_len.setdefault((version, net.prefixlen), {})
        bits = 32 if version == 4 else 128
        table[int(net.network_address) >> (bits - net.prefixlen)] = value
        if net.prefixlen not in self._lens[version]:
            self._lens[version] = sorted([*self._lens[version], net.prefixlen], reverse=True)
        self._items[key] = value
        return key

    def remove(self, network: str) -> bool:
        net = parse_network(network)
        key = str(net)
        if key not in self._items:
            return False
        del self._items[key]
        bits = 32 if net.version == 4 else 128
        table = self._by_len[(net.version, net.prefixlen)]
        table.pop(int(net.network_address) >> (bits - net.prefixlen), None)
        if not table:
            del self._by_len[(net.version, net.prefixlen)]
            self._lens[net.version] = [p for p in self._lens[net.version] if p != net.prefixlen]
        return True

    def get_exact(self, network: str) -> T | None:
        return self._items.get(str(parse_network(network)))

    def lookup(self, version: int, value: int) -> T | None:
        """The value of the longest network containing the address, or None."""
        if version == 0:
            return None
        bits = 32 if version == 4 else 128
        by_len = self._by_len
        for plen in self._lens[version]:
            hit = by_len[(version, plen)].get(value >> (bits - plen))
            if hit is not None:
                return hit
        return None
