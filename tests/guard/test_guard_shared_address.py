"""Many shoppers behind one address (carrier-grade NAT): each signed session is
limited as itself, the address as a whole at ``shared_address_factor`` times the
limit; a client without a session is limited per address as before."""

from __future__ import annotations

from guard_helpers import Clock, cookie_pair, facts, runtime

from shieldwall.guard.decision import Action, ClientClass

NAT = "100.64.7.9"
PAGE = {"default_route": {"name": "page", "rate": 1, "burst": 3}}


def _sessions(rt: object, n: int) -> list[str]:
    """n browsers behind NAT, each with the session cookie the shield gave it."""
    out = []
    for _ in range(n):
        f = facts(client=NAT, path="/static/x.css")
        d = rt.gate.decide(f)  # type: ignore[attr-defined]
        out.append(cookie_pair(rt.gate.observe_response(f, d, 200, [])[0][1].decode()))  # type: ignore[attr-defined]
    return out


def test_each_session_behind_one_address_gets_its_own_limit_up_to_the_shared_factor() -> None:
    clock = Clock()
    rt = runtime(clock, limits={**PAGE, "shared_address_factor": 4})
    jars = _sessions(rt, 6)
    allowed = [sum(rt.gate.decide(facts(client=NAT, cookie=c)).action is Action.ALLOW for _ in range(5))
               for c in jars]
    # every session its own burst of 3, until the address's 4 x 3 = 12 are spent
    assert allowed == [3, 3, 3, 3, 0, 0]


def test_without_a_session_the_address_is_one_client_and_the_factor_1_restores_that() -> None:
    clock = Clock()
    rt = runtime(clock, limits=PAGE)
    assert sum(rt.gate.decide(facts(client=NAT)).action is Action.ALLOW for _ in range(10)) == 3
    rt1 = runtime(Clock(), limits={**PAGE, "shared_address_factor": 1})
    jars = _sessions(rt1, 3)
    allowed = sum(rt1.gate.decide(facts(client=NAT, cookie=c)).action is Action.ALLOW
                  for c in jars for _ in range(3))
    assert allowed == 3


def test_one_session_over_its_limit_does_not_make_its_address_a_suspect() -> None:
    clock = Clock()
    rt = runtime(clock, limits={**PAGE, "strikes_to_suspect": 3, "shared_address_factor": 8})
    greedy, other = _sessions(rt, 2)
    for _ in range(20):
        rt.gate.decide(facts(client=NAT, cookie=greedy))
    d = rt.gate.decide(facts(client=NAT, cookie=other))
    assert d.action is Action.ALLOW and d.cls is ClientClass.UNKNOWN
    assert rt.status()["suspects"] == 0
