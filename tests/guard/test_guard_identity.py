"""Who a client is: the IPv4 text fast path agrees with ``ipaddress``.

IdentityCache parses plain dotted-quad text itself (a randomized flood makes
every request a new address) and gives everything else to ``ipaddress``.
The two must never disagree: on what is an address, its canonical text, its
value and its prefix texts. Each case is parsed both ways and compared, and
against ``ipaddress`` networks computed here, independently of _net.py.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from shieldwall.guard._net import Identity, IdentityCache

_EDGE = [
    "0.0.0.0", "255.255.255.255", "1.2.3.4", "10.0.0.1", "192.0.2.255", "9.9.9.9",
    "256.1.1.1", "1.2.3.256", "1.2.3.999", "1.2.3", "1.2.3.4.5", "1..2.3", ".1.2.3",
    "1.2.3.", "01.2.3.4", "1.02.3.4", "1.2.3.00", "1.2.3.0", "00.0.0.0", "1.2.3.4 ",
    " 1.2.3.4", "1.2.3.+4", "1.2.3.-4", "1.2.3.4\n", "1.2.3.1_0", "1.2.3.\u0663",
    "1.2.3.\u00b2", "\uff11.2.3.4", "1.2.3.0x1", "0x1.2.3.4", "1.2.3.4/24", "1.2.3.4:80",
    "[1.2.3.4]", "[1.2.3.4", "1.2.3.4]", "[[1.2.3.4]]", "", ".", "...", "....",
    "a.b.c.d", "1.2.3.4%eth0", "1234.1.1.1", "1.1.1.1234", "1.1.1.0001",
    "::ffff:1.2.3.4", "::ffff:198.51.100.77", "[::ffff:203.0.113.9]", "::ffff:0:1.2.3.4",
    "::1.2.3.4", "::", "::1", "2001:db8::1", "[2001:db8::1]", "2001:DB8:0:0:0:0:0:1",
    "2001:db8:aa:bb01:1::9", "fe80::1%eth0", "2001:db8::1::2", "2001:db8:::1", "1::",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:0db8:0000:0000:0000:ff00:0042:8329",
    "not-an-ip", "localhost", "unix:/run/sock",
]


def _fields(ident: Identity) -> tuple[object, ...]:
    return ident.address, ident.version, ident.value, ident.prefixes, ident.bind_prefix


def _random_texts(rng: random.Random, n: int) -> list[str]:
    """Random dotted quads, most valid, some bent in the ways a client field can be."""
    out = []
    for _ in range(n):
        octets = [str(rng.choice((rng.randrange(256), rng.randrange(1000), 0, 255)))
                  for _ in range(4)]
        roll = rng.random()
        if roll < 0.05:
            i = rng.randrange(4)
            octets[i] = "0" + octets[i]
        elif roll < 0.08:
            octets.pop(rng.randrange(4))
        elif roll < 0.10:
            octets.append(str(rng.randrange(256)))
        elif roll < 0.12:
            i = rng.randrange(4)
            octets[i] = octets[i][:1] + rng.choice("x -+_/:%") + octets[i][1:]
        out.append(".".join(octets))
    for _ in range(n // 4):
        value = rng.getrandbits(128)
        out.append(str(ipaddress.IPv6Address(value)))
        out.append(str(ipaddress.IPv6Address(value)).upper())
        out.append(f"::ffff:{ipaddress.IPv4Address(value & 0xFFFFFFFF)}")
    return out


@pytest.mark.parametrize("tiers", [([24], [64, 56, 48]), ([32, 24, 16, 8], [128, 64]),
                                   ([20], [56])])
def test_the_fast_path_and_ipaddress_agree(tiers: tuple[list[int], list[int]]) -> None:
    v4, v6 = tiers
    cache = IdentityCache(v4, v6)
    texts = _EDGE + _random_texts(random.Random(10), 20_000)
    fast_taken = 0
    for text in texts:
        got = cache._parse(text)
        assert _fields(got) == _fields(cache._parse_slow(text)), text
        if got.version == 4 and ":" not in text:
            fast_taken += 1
        # and against ipaddress itself, computed here
        try:
            addr = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            assert (got.address, got.version, got.value, got.prefixes) == (text, 0, 0, ())
            assert got.bind_prefix == text
            continue
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        assert got.address == str(addr) and got.version == addr.version
        assert got.value == int(addr)
        tiers_of = v4 if addr.version == 4 else v6
        bare = type(addr)(int(addr))  # (a scope id, "%eth0", is no part of a network)
        want = tuple((p, str(ipaddress.ip_network(f"{bare}/{p}", strict=False)))
                     for p in sorted(tiers_of, reverse=True))
        assert got.prefixes == want, text
        assert got.bind_prefix == want[0][1]
    assert fast_taken > 5_000  # (the random texts did reach the fast path)


def test_identity_keeps_the_configured_ipv6_prefix_and_maps_ipv4_in_ipv6() -> None:
    cache = IdentityCache([24], [56])
    v6 = cache.get("2001:db8:aa:bb01::9")
    assert v6.version == 6 and v6.bind_prefix == "2001:db8:aa:bb00::/56"
    mapped = cache.get("::ffff:198.51.100.77")
    assert mapped.address == "198.51.100.77" and mapped.bind_prefix == "198.51.100.0/24"
    assert _fields(mapped) == _fields(cache.get("198.51.100.77"))
    bad = cache.get("198.51.100.077")
    assert bad.version == 0 and bad.prefixes == () and bad.bind_prefix == "198.51.100.077"
