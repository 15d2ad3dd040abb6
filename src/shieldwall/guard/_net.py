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
from typing import Final, Generic, TypeVar

T = TypeVar("T")


class Identity:
    """Who a client is, network-wise. A plain class (not a frozen dataclass:
    its ``__init__`` went through ``object.__setattr__`` per field, ~6,000
    instructions compiled) made once per address by :class:`IdentityCache`;
    treat it as immutable but for ``lists`` and ``last``."""

    __slots__ = ("address", "bind_prefix", "last", "lists", "prefixes", "value", "version")

    def __init__(self, address: str, version: int, value: int,
                 prefixes: tuple[tuple[int, str], ...]) -> None:
        self.address = address
        """Canonical text of the address (the client field as it came when it is
        not an address; ``version`` is then 0)."""
        self.version = version
        self.value = value
        """The address as an integer (for CIDR tests)."""
        self.prefixes = prefixes
        """(prefix length, canonical network text), longest first."""
        self.bind_prefix = prefixes[0][1] if prefixes else address
        """The prefix that challenge tokens are bound to (the narrowest tier),
        kept rather than computed: read on every challenge and pass check."""
        self.lists: object = None
        """What the gate that owns the cache last found of this address on its
        block and allow lists (shieldwall.guard._gate.GuardGate._lists_for,
        which checks it is current): kept here, not in a dict of its own by
        address, a probe and an insert fewer per new address."""
        self.last: object = None
        """The same gate's memo of this client's last request
        (shieldwall.guard._gate._Last), kept here for the same reason."""

    def __repr__(self) -> str:
        return (f"Identity({self.address!r}, {self.version}, {self.value}, "
                f"{self.prefixes!r})")


def _network_text(version: int, value: int, plen: int) -> str:
    bits = 32 if version == 4 else 128
    net = (value >> (bits - plen)) << (bits - plen)
    if version == 4:
        return _v4_text(net) + "/" + str(plen)
    return f"{ipaddress.IPv6Address(net)}/{plen}"


def _v4_network(address: str, value: int, plen: int) -> str:
    """Canonical text of the /plen network of an IPv4 address (``address``
    its canonical text, ``value`` its value): a /24 is the text up to its
    last dot, then ".0/24"."""
    if plen == 24:
        return address[:address.rfind(".")] + ".0/24"
    shift = 32 - plen
    return _v4_text(value >> shift << shift) + "/" + str(plen)


def _v4_text(value: int) -> str:
    """Dotted quad of an IPv4 address (what ``str(IPv4Address(value))`` gives)."""
    return (str(value >> 24) + "." + str(value >> 16 & 255) + "." + str(value >> 8 & 255)
            + "." + str(value & 255))


def _v4_value(text: str) -> int:
    """The value of IPv4 text in the one form ``ipaddress`` accepts and prints
    (four decimal octets, 0-255, ASCII digits only, no leading zeros), or -1
    for anything else, which the caller gives to ``ipaddress`` instead. Such
    text is already canonical: the address is the text itself. One pass over
    the characters (compiled: native integers, no split, no int() per octet),
    about a twentieth of ``ipaddress.ip_address``, which every request from a
    new address paid (a randomized flood's whole point)."""
    n = len(text)
    if n < 7 or n > 15:
        return -1
    value = 0
    octet = 0
    digits = 0
    dots = 0
    for i in range(n):
        c = ord(text[i])
        if 48 <= c <= 57:
            if digits == 1 and octet == 0:
                return -1  # a leading zero
            octet = octet * 10 + (c - 48)
            if octet > 255:
                return -1
            digits += 1
        elif c == 46 and digits and dots < 3:
            value = value << 8 | octet
            octet = 0
            digits = 0
            dots += 1
        else:
            return -1
    if dots != 3 or not digits:
        return -1
    return value << 8 | octet


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
        text = client.strip("[]") if client and (client[0] == "[" or client[-1] == "]") \
            else client
        value = _v4_value(text)
        if value >= 0:
            return self._v4_identity(text, value)
        return self._parse_slow(client)

    def _v4_identity(self, address: str, value: int) -> Identity:
        if len(self._v4) == 1:  # (the default, /24: one tuple, no list)
            plen = self._v4[0]
            return Identity(address, 4, value, ((plen, _v4_network(address, value, plen)),))
        return Identity(address, 4, value,
                        tuple([(p, _v4_network(address, value, p)) for p in self._v4]))

    def _parse_slow(self, client: str) -> Identity:
        """Through ``ipaddress``: IPv6, IPv4-mapped IPv6, scoped addresses, and
        every odd or bad form (the reference the fast path is tested against)."""
        try:
            addr = ipaddress.ip_address(client.strip("[]"))
        except ValueError:
            return Identity(client, 0, 0, ())
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        value = int(addr)
        if addr.version == 4:
            return self._v4_identity(str(addr), value)
        prefixes = tuple((p, _network_text(6, value, p)) for p in self._v6)
        return Identity(str(addr), 6, value, prefixes)


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


_COVER4: Final = 16
_COVER6: Final = 32
"""Prefix lengths of the cover (see CidrMap): the /16 or /32 blocks that hold
a network of this length or longer."""


class CidrMap(Generic[T]):
    """CIDR -> value with a lookup cost of one shift and one dict probe per
    distinct prefix length present, instead of a scan over every network.

    The crawler ranges of the default allow list have some fourteen IPv4
    lengths, and nearly every address is in none of them: so the map also
    counts its networks per cover block (an IPv4 /16, an IPv6 /32), and the
    lengths at or past the cover's are probed only when the address's block
    holds one. A miss costs one probe (plus one per shorter length present).
    The probe tables are lists per version, longest first, so a lookup builds
    and hashes no (version, length) key."""

    def __init__(self) -> None:
        self._by_len: dict[tuple[int, int], dict[int, T]] = {}
        self._lens: dict[int, list[int]] = {4: [], 6: []}
        self._items: dict[str, T] = {}
        self._cover4: dict[int, int] = {}
        self._cover6: dict[int, int] = {}
        """Networks per cover block, of those at least the cover's length."""
        self._long4: list[tuple[int, dict[int, T]]] = []
        self._short4: list[tuple[int, dict[int, T]]] = []
        self._long6: list[tuple[int, dict[int, T]]] = []
        self._short6: list[tuple[int, dict[int, T]]] = []
        """(shift, table) per length: at or past the cover's length, or shorter."""

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def _index(self) -> None:
        """Rebuild the per-version probe lists (after a length came or went)."""
        lens4 = self._lens[4]
        lens6 = self._lens[6]
        self._long4 = [(32 - p, self._by_len[(4, p)]) for p in lens4 if p >= _COVER4]
        self._short4 = [(32 - p, self._by_len[(4, p)]) for p in lens4 if p < _COVER4]
        self._long6 = [(128 - p, self._by_len[(6, p)]) for p in lens6 if p >= _COVER6]
        self._short6 = [(128 - p, self._by_len[(6, p)]) for p in lens6 if p < _COVER6]

    def _count(self, version: int, net_value: int, plen: int, step: int) -> None:
        cover_len = _COVER4 if version == 4 else _COVER6
        if plen < cover_len:
            return
        cover = self._cover4 if version == 4 else self._cover6
        block = net_value >> ((32 if version == 4 else 128) - cover_len)
        n = cover.get(block, 0) + step
        if n > 0:
            cover[block] = n
        else:
            cover.pop(block, None)

    def put(self, network: str, value: T) -> str:
        net = parse_network(network)
        key = str(net)
        version = net.version
        table = self._by_len.setdefault((version, net.prefixlen), {})
        bits = 32 if version == 4 else 128
        table[int(net.network_address) >> (bits - net.prefixlen)] = value
        if net.prefixlen not in self._lens[version]:
            self._lens[version] = sorted([*self._lens[version], net.prefixlen], reverse=True)
            self._index()
        if key not in self._items:
            self._count(version, int(net.network_address), net.prefixlen, 1)
        self._items[key] = value
        return key

    def remove(self, network: str) -> bool:
        net = parse_network(network)
        key = str(net)
        if key not in self._items:
            return False
        del self._items[key]
        self._count(net.version, int(net.network_address), net.prefixlen, -1)
        bits = 32 if net.version == 4 else 128
        table = self._by_len[(net.version, net.prefixlen)]
        table.pop(int(net.network_address) >> (bits - net.prefixlen), None)
        if not table:
            del self._by_len[(net.version, net.prefixlen)]
            self._lens[net.version] = [p for p in self._lens[net.version] if p != net.prefixlen]
            self._index()
        return True

    def get_exact(self, network: str) -> T | None:
        return self._items.get(str(parse_network(network)))

    def lookup(self, version: int, value: int) -> T | None:
        """The value of the longest network containing the address, or None."""
        if version == 4:
            if self._cover4 and (value >> (32 - _COVER4)) in self._cover4:
                for shift, table in self._long4:
                    hit = table.get(value >> shift)
                    if hit is not None:
                        return hit
            for shift, table in self._short4:
                hit = table.get(value >> shift)
                if hit is not None:
                    return hit
        elif version == 6:
            if self._cover6 and (value >> (128 - _COVER6)) in self._cover6:
                for shift, table in self._long6:
                    hit = table.get(value >> shift)
                    if hit is not None:
                        return hit
            for shift, table in self._short6:
                hit = table.get(value >> shift)
                if hit is not None:
                    return hit
        return None
