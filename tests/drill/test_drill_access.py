"""How shoppers reach the shop: own address, carrier-grade NAT (many sessions on
one address), IPv6 through the lab's balancer hop (a PROXY v2 header)."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time

import pytest

from shieldwall.drill import netsafety
from shieldwall.drill.shoppers import (
    CARRIER_NAT,
    IPV6,
    OWN,
    AccessMix,
    Clock,
    Shoppers,
    ipv6_shopper,
)
from shieldwall.drill.stats import LegitStats
from shieldwall.http.proxy_protocol import parse


def test_ipv6_shoppers_are_spread_over_their_isps_networks_and_count_as_shoppers() -> None:
    rng = random.Random(3)
    addrs = [ipaddress.IPv6Address(ipv6_shopper(rng, 3)) for _ in range(2000)]
    assert all(netsafety.who(str(a)) == "shopper" for a in addrs)
    isps = {int(a) >> 92 for a in addrs}
    assert len(isps) == 3
    # nearly every session its own /48 (new visitors), within the ISPs' /36s
    assert len({int(a) >> 80 for a in addrs}) > 1700


def test_an_access_mix_must_add_up() -> None:
    with pytest.raises(ValueError, match="add up"):
        AccessMix(carrier_nat=0.7, ipv6=0.5)


async def test_sessions_reach_the_shop_by_nat_ipv6_and_their_own_address() -> None:
    seen: list[tuple[str, bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        first = await reader.read(4096)
        seen.append((peer, first))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    edge = str(netsafety.EDGE_NET.network_address + 1)
    shoppers = Shoppers([("127.0.0.1", port)], LegitStats(), Clock(), lambda: 1.0, seed=5,
                        access=AccessMix(carrier_nat=0.3, ipv6=0.3, nat_pool=2), edge=edge)
    kinds = [shoppers.reach("127.0.0.1", port) for _ in range(1000)]
    counts = {k: sum(1 for kind, _, _ in kinds if kind == k) for k in (OWN, CARRIER_NAT, IPV6)}
    assert 250 <= counts[CARRIER_NAT] <= 350 and 250 <= counts[IPV6] <= 350
    assert {src for kind, src, _ in kinds if kind == CARRIER_NAT} == {"127.10.250.1", "127.10.250.2"}
    own = [src for kind, src, _ in kinds if kind == OWN]
    assert len(set(own)) == len(own)  # a home line: one address per session
    # an IPv6 session's connection starts with the header a balancer writes for it
    _, _, header = next(k for k in kinds if k[0] == IPV6)
    from shieldwall.drill.httpclient import Connection

    c = Connection("127.0.0.1", port, edge, header)
    await c.connect(2.0)
    assert c.writer is not None
    c.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await c.writer.drain()
    t0 = time.monotonic()
    while not seen and time.monotonic() - t0 < 2:
        await asyncio.sleep(0.01)
    c.abort()
    server.close()
    peer, first = seen[0]
    assert peer == edge
    got = parse(first)
    assert got is not None and got.source is not None
    assert ipaddress.ip_address(got.source[0]).version == 6 and netsafety.who(got.source[0]) == "shopper"
    assert first[got.length:].startswith(b"GET / HTTP/1.1")
