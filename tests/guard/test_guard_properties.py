"""Properties of the small pieces the decisions stand on, over generated input."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldwall.guard._net import CidrMap, IdentityCache
from shieldwall.guard._tokens import Signer, cookie_value

_v4 = st.integers(0, 2**32 - 1)
_nets = st.lists(st.tuples(_v4, st.integers(8, 32)), max_size=20)


@settings(max_examples=100, deadline=None)
@given(nets=_nets, probes=st.lists(_v4, min_size=1, max_size=20))
def test_cidr_map_agrees_with_a_linear_scan(nets: list[tuple[int, int]],
                                            probes: list[int]) -> None:
    m: CidrMap[str] = CidrMap()
    networks = []
    for value, plen in nets:
        net = ipaddress.IPv4Network((value, plen), strict=False)
        m.put(str(net), str(net))
        networks.append(net)
    ids = IdentityCache([24], [64])
    for p in probes:
        addr = ipaddress.IPv4Address(p)
        containing = [n for n in networks if addr in n]
        want = str(max(containing, key=lambda n: n.prefixlen)) if containing else None
        ident = ids.get(str(addr))
        assert m.lookup(ident.version, ident.value) == want


_cookie_name = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
_cookie_val = st.from_regex(r"[A-Za-z0-9._-]{0,12}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(pairs=st.lists(st.tuples(_cookie_name, _cookie_val), max_size=6), name=_cookie_name)
def test_cookie_value_finds_the_first_cookie_of_that_name(pairs: list[tuple[str, str]],
                                                          name: str) -> None:
    header = "; ".join(f"{k}={v}" for k, v in pairs)
    expected = next((v for k, v in pairs if k == name), "")
    assert cookie_value(header, name) == expected


@settings(max_examples=150, deadline=None)
@given(fields=st.lists(st.from_regex(r"[a-z0-9./:]{0,10}", fullmatch=True), min_size=1,
                       max_size=5),
       pos=st.integers(0, 10_000), ch=st.sampled_from("AQgw_-.0zZ9"))
def test_any_edit_of_a_token_is_refused(fields: list[str], pos: int, ch: str) -> None:
    signer = Signer(b"k" * 32, "pass", cache_size=0)
    token = signer.sign(*fields)
    assert signer.verify(token) == tuple("|".join(fields).split("|"))
    i = pos % len(token)
    edited = token[:i] + ch + token[i + 1:]
    if edited != token:
        assert signer.verify(edited) is None


_nets46 = st.lists(st.one_of(
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.integers(8, 32)),
    st.tuples(st.just(6), st.integers(0, 2**128 - 1), st.integers(16, 128))), max_size=30)


@settings(max_examples=150, deadline=None)
@given(nets=_nets46, drop=st.lists(st.integers(0, 29), max_size=10),
       near=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 2**20)), max_size=30))
def test_cidr_map_agrees_with_a_linear_scan_after_puts_and_removes(
        nets: list[tuple[int, int, int]], drop: list[int],
        near: list[tuple[int, int]]) -> None:
    """Longest match over both versions, every length (on both sides of the
    cover's /16 and /32), with networks removed again, probed inside, beside
    and far from them."""
    m: CidrMap[str] = CidrMap()
    live: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    for version, value, plen in nets:
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
            ipaddress.IPv4Network((value, plen), strict=False) if version == 4
            else ipaddress.IPv6Network((value, plen), strict=False))
        m.put(str(net), str(net))
        live[str(net)] = net
    keys = list(live)
    for i in drop:
        if keys and live.pop(keys[i % len(keys)], None) is not None:
            assert m.remove(keys[i % len(keys)])
    assert len(m) == len(live)
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for i, offset in near:
        if not nets:
            break
        version, value, plen = nets[i % len(nets)]
        bits = 32 if version == 4 else 128
        mask = (1 << bits) - 1
        for v in (value, value + offset, value - offset, value ^ (1 << (bits - 1))):
            probes.append(ipaddress.IPv4Address(v & mask) if version == 4
                          else ipaddress.IPv6Address(v & mask))
    for addr in probes:
        containing = [n for n in live.values() if n.version == addr.version and addr in n]
        want = str(max(containing, key=lambda n: n.prefixlen)) if containing else None
        assert m.lookup(addr.version, int(addr)) == want


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=100))
def test_b64_is_base64url_without_padding(data: bytes) -> None:
    import base64

    from shieldwall.guard._tokens import b64
    assert b64(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
