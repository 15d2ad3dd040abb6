"""The lab refuses, in code, to send traffic anywhere but loopback or a
network namespace it made itself."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from shieldwall.drill import netsafety
from shieldwall.drill.attackers import Attack, AttackSpec, Kind
from shieldwall.drill.httpclient import Connection
from shieldwall.drill.netsafety import UnsafeTargetError, check_target
from shieldwall.drill.shoppers import Clock, Shoppers
from shieldwall.drill.stats import AttackStats, LegitStats


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "0.0.0.0", "::", "::ffff:8.8.8.8", "192.168.1.1",
                                  "134744072"])
def test_non_loopback_targets_are_refused(host: str) -> None:
    with pytest.raises(UnsafeTargetError, match="refusing target"):
        check_target(host, 80)


def test_a_hostname_resolving_outside_the_lab_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake_dns(host: str, *a: Any, **kw: Any) -> Any:
        if host == "shop.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with pytest.raises(UnsafeTargetError, match=r"resolves to 93\.184\.216\.34"):
        check_target("shop.example.com", 80)


def test_a_hostname_with_any_address_outside_the_lab_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_dns(host: str, *a: Any, **kw: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 80))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with pytest.raises(UnsafeTargetError):
        check_target("split.example", 80)


def test_unresolvable_names_are_refused() -> None:
    with pytest.raises(UnsafeTargetError, match="does not resolve"):
        check_target("no-such-host.invalid", 80)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.200.3.4", "::1", "localhost"])
def test_loopback_targets_are_accepted(host: str) -> None:
    assert check_target(host, 80)


def test_a_namespace_network_is_accepted_only_while_registered() -> None:
    with pytest.raises(UnsafeTargetError):
        check_target("10.200.0.2", 80)
    netsafety.register_lab_namespace("10.200.0.0/24")
    try:
        assert check_target("10.200.0.2", 80)
    finally:
        netsafety.unregister_lab_namespace("10.200.0.0/24")
    with pytest.raises(UnsafeTargetError):
        check_target("10.200.0.2", 80)


def test_an_attack_refuses_a_non_loopback_target_before_opening_anything() -> None:
    for kind in Kind:
        with pytest.raises(UnsafeTargetError):
            Attack(AttackSpec(kind, 10), "8.8.8.8", 80, AttackStats(), lambda: 0.0, lambda: "x")


async def test_a_connection_refuses_a_non_loopback_target() -> None:
    conn = Connection("10.0.0.1", 80)
    with pytest.raises(UnsafeTargetError):
        await asyncio.wait_for(conn.request("GET", "/"), 5)
    assert not conn.open


def test_shoppers_refuse_a_non_loopback_target() -> None:
    with pytest.raises(UnsafeTargetError):
        Shoppers([("8.8.8.8", 80)], LegitStats(), Clock(), lambda: 1.0)


def test_attack_specs_are_clipped_to_the_hard_caps() -> None:
    from shieldwall.drill import attackers

    spec = AttackSpec(Kind.FLOOD, 1e9, sources=10**9, connections=10**9, max_inflight=10**9).bounded()
    assert spec.rate == attackers.MAX_RATE
    assert spec.sources == attackers.MAX_SOURCES
    assert spec.connections == attackers.MAX_SLOW_CONNECTIONS
    assert spec.max_inflight == attackers.MAX_INFLIGHT
    # slow bots that reconnect cannot exceed the rate cap either
    assert attackers.MAX_SLOW_CONNECTIONS / attackers.RECONNECT_S <= attackers.MAX_RATE


def test_shopper_and_attacker_ranges_are_disjoint_and_classified() -> None:
    assert not netsafety.SHOPPER_NET.overlaps(netsafety.ATTACKER_NET)
    shoppers = netsafety.sources(netsafety.SHOPPER_NET, 500)
    bots = netsafety.sources(netsafety.ATTACKER_NET, 1500)
    assert len(set(bots)) == 1500
    assert {netsafety.who(a) for a in shoppers} == {"shopper"}
    assert {netsafety.who(a) for a in bots} == {"attacker"}
    assert netsafety.who("127.0.0.1") == "other"


def test_bots_come_from_as_many_slash24_networks_as_possible() -> None:
    bots = netsafety.sources(netsafety.ATTACKER_NET, 1000)
    assert len({b.rsplit(".", 1)[0] for b in bots}) == 1000
    shoppers = netsafety.sources(netsafety.SHOPPER_NET, 60000)
    assert len(set(shoppers)) == 60000
    assert len({s.rsplit(".", 1)[0] for s in shoppers}) == 256
    assert not any(s.endswith((".0", ".255")) for s in shoppers)
