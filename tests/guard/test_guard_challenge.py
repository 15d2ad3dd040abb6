"""The challenge wire protocol (docs/CHALLENGE.md), verified without a browser."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from guard_helpers import Clock, challenge_of, cookie_pair, facts, parse, runtime

from shieldwall.drill.challenge import find as drill_find
from shieldwall.guard._tokens import leading_zero_bits, solve
from shieldwall.guard.decision import Action, ClientClass, Decision, Mode
from shieldwall.guard.runtime import GuardRuntime

BITS = 8  # small, so the tests spend no time hashing


def _rt(clock: Clock, **kw: object) -> GuardRuntime:
    kw.setdefault("mode", "under_attack")
    ch = dict(kw.pop("challenge", {}))  # type: ignore[call-overload]
    ch.setdefault("difficulty", BITS)
    return runtime(clock, challenge=ch, **kw)


def _verify(rt: GuardRuntime, client: str, c: str, n: int | str, r: str = "/shop?x=1",
            extra: str = "") -> Decision:
    q = f"c={quote(c, safe='')}&n={n}&r={quote(r, safe='')}{extra}"
    return rt.gate.decide(facts(client=client, path="/.shieldwall/verify", query=q))


def test_challenge_page_carries_the_documented_meta_and_headers() -> None:
    rt = _rt(Clock())
    d = rt.gate.decide(facts(path="/shop", query="x=1"))
    assert d.action is Action.CHALLENGE and d.enforced and not d.close
    page = parse(d.response)
    assert page.status == 403
    assert page.header("Content-Type").startswith("text/html")
    assert page.header("Cache-Control") == "no-store"
    meta = challenge_of(d.response)
    assert set(meta) == {"challenge", "difficulty", "verify", "redirect"}
    assert meta["difficulty"] == BITS
    assert meta["verify"] == "/.shieldwall/verify"
    assert meta["redirect"] == "/shop?x=1"
    assert b"<noscript>" in page.body and b"crypto.subtle.digest" in page.body
    # the drill's shoppers read the same page with their own parser
    parsed = drill_find(page.body)
    assert parsed is not None and parsed.challenge == meta["challenge"]


def test_solved_challenge_earns_a_pass_cookie_and_a_redirect() -> None:
    clock = Clock()
    rt = _rt(clock)
    client = "198.51.100.7"
    meta = challenge_of(rt.gate.decide(facts(client=client, path="/shop")).response)
    n = solve(meta["challenge"], meta["difficulty"])
    d = _verify(rt, client, meta["challenge"], n)
    resp = parse(d.response)
    assert resp.status == 302 and resp.header("Location") == "/shop?x=1"
    cookie = resp.header("Set-Cookie")
    assert cookie.startswith("sw_p=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    after = rt.gate.decide(facts(client=client, path="/shop", cookie=cookie_pair(cookie)))
    assert after.action is Action.ALLOW and after.cls is ClientClass.VERIFIED
    # a neighbour in the same /24 may share it (the token is bound to the prefix)
    same_net = rt.gate.decide(facts(client="198.51.100.8", cookie=cookie_pair(cookie)))
    assert same_net.action is Action.ALLOW
    assert rt.status()["counters"]["verify:ok:pow"] == 1


def test_the_smallest_nonce_is_the_documented_answer() -> None:
    import hashlib
    c = "example.challenge"
    n = solve(c, 10)
    assert leading_zero_bits(hashlib.sha256(f"{c}:{n}".encode()).digest()) >= 10
    assert all(leading_zero_bits(hashlib.sha256(f"{c}:{i}".encode()).digest()) < 10
               for i in range(n))


def test_pass_token_from_another_prefix_never_passes() -> None:
    clock = Clock()
    rt = _rt(clock)
    meta = challenge_of(rt.gate.decide(facts(client="198.51.100.7")).response)
    d = _verify(rt, "198.51.100.7", meta["challenge"], solve(meta["challenge"], BITS))
    cookie = cookie_pair(parse(d.response).header("Set-Cookie"))
    elsewhere = rt.gate.decide(facts(client="203.0.113.7", cookie=cookie))
    assert elsewhere.action is Action.CHALLENGE


def test_pass_token_expires() -> None:
    clock = Clock()
    rt = _rt(clock, challenge={"pass_ttl": 60})
    meta = challenge_of(rt.gate.decide(facts()).response)
    d = _verify(rt, "192.0.2.10", meta["challenge"], solve(meta["challenge"], BITS))
    cookie = cookie_pair(parse(d.response).header("Set-Cookie"))
    assert rt.gate.decide(facts(cookie=cookie)).action is Action.ALLOW
    clock.advance(61)
    assert rt.gate.decide(facts(cookie=cookie)).action is Action.CHALLENGE


def test_forged_pass_token_never_passes() -> None:
    clock = Clock()
    rt = _rt(clock)
    meta = challenge_of(rt.gate.decide(facts()).response)
    d = _verify(rt, "192.0.2.10", meta["challenge"], solve(meta["challenge"], BITS))
    name, _, token = cookie_pair(parse(d.response).header("Set-Cookie")).partition("=")
    other = _rt(clock, secret="not-the-same-key")
    assert other.gate.decide(facts(cookie=f"{name}={token}")).action is Action.CHALLENGE
    head, _, mac = token.partition(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert rt.gate.decide(facts(cookie=f"{name}={head}.{flipped}")).action is Action.CHALLENGE


@pytest.mark.parametrize("why", ["forged", "prefix", "expired", "wrong", "difficulty"])
def test_bad_answers_are_refused_with_a_fresh_challenge(why: str) -> None:
    clock = Clock()
    rt = _rt(clock)
    client = "198.51.100.7"
    meta = challenge_of(rt.gate.decide(facts(client=client)).response)
    c = meta["challenge"]
    n = solve(c, BITS)
    if why == "forged":
        head, _, mac = c.partition(".")
        c = head + "." + mac[::-1]
    elif why == "prefix":
        client = "203.0.113.9"
    elif why == "expired":
        clock.advance(rt.settings.challenge.challenge_ttl + 1)
    elif why == "wrong":
        n = next(i for i in range(n + 1, n + 10_000)
                 if leading_zero_bits(__import__("hashlib").sha256(f"{c}:{i}".encode())
                                      .digest()) < BITS)
    elif why == "difficulty":
        rt.mark_suspect(client, 1.0, ttl=600)  # suspects need more bits than were issued
    d = _verify(rt, client, c, n)
    assert d.action is Action.RESPOND
    resp = parse(d.response)
    assert resp.status == 403 and "set-cookie" not in resp.headers
    fresh = challenge_of(d.response)
    assert fresh["challenge"] != meta["challenge"]
    assert rt.status()["counters"][f"verify:fail:{why}"] == 1


def test_suspects_get_a_harder_challenge() -> None:
    clock = Clock()
    rt = _rt(clock, challenge={"suspect_extra": 3})
    rt.mark_suspect("192.0.2.66", 1.0, ttl=60)
    assert challenge_of(rt.gate.decide(facts()).response)["difficulty"] == BITS
    assert challenge_of(rt.gate.decide(facts(client="192.0.2.66")).response)["difficulty"] \
        == BITS + 3


def test_a_pass_below_the_current_difficulty_is_challenged_again() -> None:
    clock = Clock()
    rt = _rt(clock, mode="elevated", challenge={"under_attack_extra": 2})
    meta = challenge_of(rt.gate.decide(facts(path="/search")).response)
    d = _verify(rt, "192.0.2.10", meta["challenge"], solve(meta["challenge"], BITS))
    cookie = cookie_pair(parse(d.response).header("Set-Cookie"))
    assert rt.gate.decide(facts(path="/search", cookie=cookie)).action is Action.ALLOW
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    again = rt.gate.decide(facts(path="/search", cookie=cookie))
    assert again.action is Action.CHALLENGE
    assert challenge_of(again.response)["difficulty"] == BITS + 2


def test_redirect_stays_on_this_site() -> None:
    clock = Clock()
    rt = _rt(clock)
    meta = challenge_of(rt.gate.decide(facts()).response)
    n = solve(meta["challenge"], BITS)
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        d = _verify(rt, "192.0.2.10", meta["challenge"], n, r=evil)
        assert parse(d.response).header("Location") == "/"


def test_nojs_path_is_honoured_only_after_the_server_side_delay() -> None:
    clock = Clock()
    rt = _rt(clock, challenge={"nojs_delay": 5})
    d = rt.gate.decide(facts(path="/shop"))
    assert b'http-equiv="refresh" content="5;url=/.shieldwall/verify?c=' in (d.response or b"")
    c = challenge_of(d.response)["challenge"]
    early = _verify(rt, "192.0.2.10", c, "", extra="&nojs=1")
    resp = parse(early.response)
    assert resp.status == 429 and "set-cookie" not in resp.headers
    clock.advance(5)
    ok = parse(_verify(rt, "192.0.2.10", c, "", extra="&nojs=1").response)
    assert ok.status == 302 and ok.header("Set-Cookie").startswith("sw_p=")
    after = rt.gate.decide(facts(cookie=cookie_pair(ok.header("Set-Cookie"))))
    assert after.action is Action.ALLOW


def test_nojs_path_can_be_switched_off() -> None:
    clock = Clock()
    rt = _rt(clock, challenge={"nojs": False})
    d = rt.gate.decide(facts())
    assert b"http-equiv" not in (d.response or b"")
    clock.advance(60)
    resp = parse(_verify(rt, "192.0.2.10", challenge_of(d.response)["challenge"], "",
                         extra="&nojs=1").response)
    assert resp.status == 403


def test_banned_client_cannot_use_the_verify_endpoint() -> None:
    clock = Clock()
    rt = _rt(clock)
    meta = challenge_of(rt.gate.decide(facts()).response)
    rt.ban("192.0.2.10", ttl=60)
    d = _verify(rt, "192.0.2.10", meta["challenge"], solve(meta["challenge"], BITS))
    assert d.action is Action.BLOCK


def test_nojs_pass_is_short_and_covers_one_address_only() -> None:
    clock = Clock()
    rt = _rt(clock, challenge={"nojs_delay": 5, "nojs_pass_ttl": 120})
    c = challenge_of(rt.gate.decide(facts()).response)["challenge"]
    clock.advance(5)
    ok = parse(_verify(rt, "192.0.2.10", c, "", extra="&nojs=1").response)
    assert "Max-Age=120" in ok.header("Set-Cookie")
    cookie = cookie_pair(ok.header("Set-Cookie"))
    assert rt.gate.decide(facts(cookie=cookie)).action is Action.ALLOW
    assert rt.gate.decide(facts(client="192.0.2.11", cookie=cookie)).action is Action.CHALLENGE
    clock.advance(121)
    assert rt.gate.decide(facts(cookie=cookie)).action is Action.CHALLENGE


def test_suspects_are_not_offered_the_nojs_path() -> None:
    clock = Clock()
    rt = _rt(clock)
    rt.mark_suspect("192.0.2.66", 1.0, ttl=600)
    d = rt.gate.decide(facts(client="192.0.2.66"))
    assert b"http-equiv" not in (d.response or b"")
    clock.advance(60)
    resp = parse(_verify(rt, "192.0.2.66", challenge_of(d.response)["challenge"], "",
                         extra="&nojs=1").response)
    assert resp.status == 403 and "set-cookie" not in resp.headers


def test_answers_are_rate_limited_per_address() -> None:
    clock = Clock()
    rt = _rt(clock)
    statuses = [parse(_verify(rt, "192.0.2.10", "garbage", 1).response).status
                for _ in range(12)]
    assert statuses[:10] == [403] * 10 and statuses[10:] == [429, 429]
    clock.advance(1)
    assert parse(_verify(rt, "192.0.2.10", "garbage", 1).response).status == 403


def test_a_networks_challenge_is_reused_for_half_a_second_with_its_page() -> None:
    """A flood from one network costs one signature per half second, and the
    same request again the same page; another target gets its own page with
    the same token, another class (a suspect: no no-JS path) its own page."""
    clock = Clock()
    rt = _rt(clock)
    first = rt.gate.decide(facts(client="192.0.2.10", path="/shop", query="x=1"))
    again = rt.gate.decide(facts(client="192.0.2.11", path="/shop", query="x=1"))
    assert again.response == first.response
    other = rt.gate.decide(facts(client="192.0.2.10", path="/cart", query="a=1&b=2"))
    assert challenge_of(other.response)["challenge"] == challenge_of(first.response)["challenge"]
    assert challenge_of(other.response)["redirect"] == "/cart?a=1&b=2"
    assert b"r=/cart%3Fa%3D1%26b%3D2" in other.response  # the no-JS link's target
    rt.mark_suspect("192.0.2.10", 1.0, 60)
    sus = rt.gate.decide(facts(client="192.0.2.10", path="/cart", query="a=1&b=2"))
    assert b"nojs=1" not in sus.response and b"nojs=1" in other.response
    clock.advance(0.6)
    later = rt.gate.decide(facts(client="192.0.2.11", path="/shop", query="x=1"))
    assert challenge_of(later.response)["challenge"] != challenge_of(first.response)["challenge"]
