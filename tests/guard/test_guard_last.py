"""What the gate keeps of an address's last request (issue 10's cheap refusal).

The gate keeps, per address, the buckets its last request took from and its
last 429 (_Last), so a flood's next request finds them without building a
key. What must hold: every decision is the one the gate makes keeping
nothing between requests, whatever happens in between (bans, allow lists,
suspects, mode switches, sweeps, the clock), and a ban, an allow or a
suspect mark takes effect on the very next request.
"""

from __future__ import annotations

import random

from guard_helpers import Clock, facts, parse, runtime

from shieldwall.guard.decision import Action, ClientClass, Decision, Mode
from shieldwall.guard.runtime import GuardRuntime

LIMITS = {
    "routes": [{"name": "search", "match": ["/search*"], "rate": 0.5, "burst": 2}],
    "default_route": {"name": "page", "rate": 2, "burst": 3},
    "strikes_to_suspect": 4,
}
CLIENTS = ["192.0.2.10", "192.0.2.11", "198.51.100.20", "203.0.113.30"]
"""Two of them in one /24: a prefix bucket shared."""


def _seen(d: Decision) -> tuple[object, ...]:
    # (a challenge page carries a token of its own gate's secret and nonce)
    page = d.response if d.action is not Action.CHALLENGE else b"challenge"
    return (d.action, d.cls, d.retry_after, d.reason, page, d.close)


def _ops(seed: int) -> list[tuple[str, object]]:
    rng = random.Random(seed)
    ops: list[tuple[str, object]] = []
    for _ in range(1500):
        r = rng.random()
        if r < 0.75:
            path = rng.choice(["/", "/search", "/search?q=1", "/p/1"])
            ops.append(("decide", (rng.choice(CLIENTS), path)))
        elif r < 0.87:
            ops.append(("advance", rng.choice([0.01, 0.1, 0.3, 0.5, 1.0, 2.5, 11.0])))
        elif r < 0.89:
            ops.append(("ban", rng.choice(CLIENTS)))
        elif r < 0.91:
            ops.append(("unban", rng.choice(CLIENTS)))
        elif r < 0.93:
            ops.append(("allow", rng.choice(CLIENTS)))
        elif r < 0.95:
            ops.append(("unallow", rng.choice(CLIENTS)))
        elif r < 0.97:
            ops.append(("mode", rng.choice([Mode.NORMAL, Mode.ELEVATED, Mode.UNDER_ATTACK])))
        elif r < 0.99:
            ops.append(("suspect", rng.choice(CLIENTS)))
        else:
            ops.append(("sweep", None))
    return ops


def _run(rt: GuardRuntime, clock: Clock, ops: list[tuple[str, object]],
         keep: bool) -> list[tuple[object, ...]]:
    out = []
    for kind, arg in ops:
        if kind == "decide":
            client, target = arg  # type: ignore[misc]
            path, _, query = target.partition("?")
            if not keep:
                rt.gate.forget_last()  # the reference: nothing kept between requests
            out.append(_seen(rt.gate.decide(facts(client=client, path=path, query=query))))
        elif kind == "advance":
            clock.advance(arg)  # type: ignore[arg-type]
        elif kind == "ban":
            rt.ban(str(arg), ttl=5, reason="test")
        elif kind == "unban":
            rt.unban(str(arg))
        elif kind == "allow":
            rt.allow(str(arg), ttl=5, reason="test")
        elif kind == "unallow":
            rt.unallow(str(arg))
        elif kind == "mode":
            rt.set_mode(arg, "operator")  # type: ignore[arg-type]
        elif kind == "suspect":
            rt.mark_suspect(str(arg), 1.0, ttl=3)
        else:
            rt.state.sweep(clock())
    return out


def test_kept_buckets_decide_as_keeping_nothing_between_requests() -> None:
    for seed in range(6):
        ops = _ops(seed)
        got, want = [], []
        for keep, into in ((True, got), (False, want)):
            clock = Clock()
            rt = runtime(clock, limits=LIMITS, challenge={"newcomers": 0})
            into.extend(_run(rt, clock, ops, keep))
        assert got == want, seed
        assert sum(1 for d in got if d[0] is Action.LIMIT) > 100


def test_a_ban_an_allow_and_a_suspect_mark_act_on_the_next_refused_request() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 0.01, "burst": 1}})
    assert rt.gate.decide(facts()).action is Action.ALLOW
    d = rt.gate.decide(facts())
    assert d.action is Action.LIMIT and parse(d.response).header("Retry-After") == "100"
    clock.advance(0.2)
    assert rt.gate.decide(facts()).action is Action.LIMIT  # its buckets kept
    assert rt.gate._ids.get("192.0.2.10").last is not None
    rt.ban("192.0.2.10", ttl=60)
    d = rt.gate.decide(facts())
    assert d.action is Action.BLOCK and d.close
    rt.unban("192.0.2.10")
    assert rt.gate.decide(facts()).action is Action.LIMIT
    rt.allow("192.0.2.10", ttl=60)
    d = rt.gate.decide(facts())  # allow-listed: verified, a bucket of its own class
    assert d.cls is ClientClass.VERIFIED
    rt.unallow("192.0.2.10")
    rt.mark_suspect("192.0.2.10", 1.0, ttl=60)
    d = rt.gate.decide(facts())
    assert d.cls is ClientClass.SUSPECT
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    assert rt.gate.decide(facts()).cls is ClientClass.SUSPECT


def test_retry_after_counts_down_and_a_token_is_there_when_it_said() -> None:
    clock = Clock()
    rt = runtime(clock, limits={"default_route": {"name": "page", "rate": 0.25, "burst": 1}})
    assert rt.gate.decide(facts()).action is Action.ALLOW
    seen = []
    for _ in range(8):
        d = rt.gate.decide(facts())
        seen.append(parse(d.response).header("Retry-After") if d.response else d.action)
        clock.advance(0.5)
    assert seen == ["4", "4", "3", "3", "2", "2", "1", "1"]
    assert rt.gate.decide(facts()).action is Action.ALLOW  # 4 s on: a token again
    assert rt.gate.counts["limit"] == 8 and rt.gate.counts["allow"] == 2


def test_the_customer_mark_is_read_from_the_headers_whatever_their_case_and_order() -> None:
    """_marks_customer lowers only names of the two lengths it looks for:
    the same answer as lowering every name (the rule written plainly here)."""
    from shieldwall.guard._gate import _marks_customer

    def plain(headers: list[tuple[bytes, bytes]], cookie: bytes, header: bytes) -> bool:
        for name, value in headers:
            if name.lower() == b"set-cookie":
                v = value.lstrip()
                if v.startswith(cookie + b"="):
                    first, _, attrs = v.partition(b";")
                    if first[len(cookie) + 1:].strip() and \
                            b"max-age=0" not in attrs.lower().replace(b" ", b""):
                        return True
            elif name.lower() == header and value.strip() not in (b"", b"0"):
                return True
        return False

    rng = random.Random(3)
    names = [b"Set-Cookie", b"SET-COOKIE", b"set-cookie", b"X-Shop-Customer", b"x-shop-customer",
             b"Content-Type", b"X-Shop-Customers", b"Set-Cookie2", b"Cache-Control", b"Vary"]
    values = [b"cart=1; Path=/", b" cart=abc", b"cart=; Path=/", b"cart=1; Max-Age=0",
              b"cart=2; max-age = 0", b"theme=dark", b"1", b"0", b"", b" yes "]
    marked = 0
    for _ in range(3000):
        headers = [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(0, 5))]
        want = plain(headers, b"cart", b"x-shop-customer")
        assert _marks_customer(headers, b"cart=", b"x-shop-customer") == want, headers
        marked += want
    assert 300 < marked < 2700
