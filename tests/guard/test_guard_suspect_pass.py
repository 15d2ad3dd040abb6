"""A pass token is no shield for a suspect: the bot that solved one challenge and
then hammers pages is challenged again, harder, and limited at the suspect rate
once the detector names it (docs/GUARD.md, "smart bots")."""

from __future__ import annotations

from urllib.parse import quote

from guard_helpers import Clock, challenge_of, cookie_pair, facts, parse, runtime

from shieldwall.guard._tokens import solve
from shieldwall.guard.decision import Action, ClientClass
from shieldwall.guard.runtime import GuardRuntime

BITS = 8
BOT = "198.51.100.7"


def _pass(rt: GuardRuntime, client: str, path: str = "/") -> tuple[str, int]:
    """Solve the challenge ``client`` is shown; the pass cookie and its difficulty."""
    d = rt.gate.decide(facts(client=client, path=path))
    assert d.action is Action.CHALLENGE
    meta = challenge_of(d.response)
    n = solve(meta["challenge"], meta["difficulty"])
    q = f"c={quote(meta['challenge'], safe='')}&n={n}&r={quote(path, safe='')}"
    ok = parse(rt.gate.decide(facts(client=client, path="/.shieldwall/verify", query=q)).response)
    assert ok.status == 302
    return cookie_pair(ok.header("Set-Cookie")), int(meta["difficulty"])


def test_a_verified_client_marked_suspect_is_challenged_again_at_a_higher_difficulty() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack", challenge={"difficulty": BITS, "suspect_extra": 2})
    cookie, bits = _pass(rt, BOT)
    assert bits == BITS
    d = rt.gate.decide(facts(client=BOT, cookie=cookie))
    assert d.action is Action.ALLOW and d.cls is ClientClass.VERIFIED
    rt.mark_suspect(BOT, 0.9, ttl=300)  # the detector: a heavy page-only client
    again = rt.gate.decide(facts(client=BOT, cookie=cookie))
    assert again.action is Action.CHALLENGE and again.cls is ClientClass.SUSPECT
    assert challenge_of(again.response)["difficulty"] == BITS + 2
    # a shopper with the same kind of pass is untouched
    other, _ = _pass(rt, "203.0.113.5")
    assert rt.gate.decide(facts(client="203.0.113.5", cookie=other)).cls is ClientClass.VERIFIED


def test_a_suspect_that_solves_again_stays_suspect_and_is_limited_at_the_suspect_rate() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack", challenge={"difficulty": BITS, "suspect_extra": 2})
    rt.mark_suspect(BOT, 0.9, ttl=300)
    cookie, bits = _pass(rt, BOT)
    assert bits == BITS + 2
    allowed = 0
    for _ in range(60):
        d = rt.gate.decide(facts(client=BOT, cookie=cookie))
        assert d.cls is ClientClass.SUSPECT and d.action is not Action.CHALLENGE
        allowed += d.action is Action.ALLOW
    # page bucket: burst 40 x the suspect factor 0.5 (a verified client gets x2: 80),
    # less the token its challenged request took
    assert allowed == 20 - 1
