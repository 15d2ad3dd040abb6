"""What a new shopper pays during an attack: nothing, while new clients come
no faster than the shop's own audience does (docs/CHALLENGE.md, section 6).

The gate lets a never-seen client in without a check on a budget refilled
at ``newcomers`` times the recent rate of new browsers (clients whose first
page was followed by its assets); on that trial its pages stay free while it
fetches their assets as a browser does. A flood from fresh addresses spends
the budget once in its first second and is checked from then on."""

from __future__ import annotations

from guard_helpers import Clock, facts, runtime

from shieldwall.guard._standing import BUDGET_BURST_S, NewcomerBudget
from shieldwall.guard.decision import Action, Decision, Mode
from shieldwall.guard.runtime import GuardRuntime

ASSETS = ("/static/shop.css", "/static/shop.js", "/static/logo.png")


def _browse(rt: GuardRuntime, client: str, path: str = "/") -> list[Decision]:
    """A browser: a page, then its assets."""
    return [rt.gate.decide(facts(client=client, path=p)) for p in (path, *ASSETS)]


def _calm(rt: GuardRuntime, clock: Clock, per_s: float = 2.0, seconds: float = 30.0) -> None:
    """The shop's audience before the attack: ``per_s`` new browsers a second."""
    n = int(per_s * seconds)
    for i in range(n):
        _browse(rt, f"198.51.{100 + i // 250}.{i % 250}")
        clock.advance(1.0 / per_s)


def test_after_a_calm_a_new_shopper_browses_an_attack_without_a_check() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    budget = rt.status()["newcomers"]
    assert 1.5 < budget["browsers_per_s"] < 2.5  # ~2 a second, as they came
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    shopper = "203.0.113.7"
    first = _browse(rt, shopper)
    assert [d.action for d in first] == [Action.ALLOW] * 4
    clock.advance(1.0)
    page = _browse(rt, shopper, "/product/3")
    assert page[0].action is Action.ALLOW  # it fetched its assets: the next page is free too
    assert rt.gate.counts.get("challenge", 0) == 0
    assert rt.gate.counts["newcomer"] == 8


def test_a_newcomer_that_fetches_no_assets_is_checked_on_its_second_page() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    bot = "203.0.113.66"
    assert rt.gate.decide(facts(client=bot, path="/")).action is Action.ALLOW
    clock.advance(0.3)
    assert rt.gate.decide(facts(client=bot, path="/")).action is Action.CHALLENGE
    clock.advance(0.3)
    assert rt.gate.decide(facts(client=bot, path="/product/1")).action is Action.CHALLENGE


def test_a_flood_from_fresh_addresses_spends_the_budget_once() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    free_per_s = rt.status()["newcomers"]["free_per_s"]
    # 1,000 bots, 300 requests a second, each bot's first request among them
    free = 0
    for i in range(1000):
        if rt.gate.decide(facts(client=f"10.9.{i // 250}.{i % 250}", path="/")).action \
                is Action.ALLOW:
            free += 1
        clock.advance(1 / 300)
    assert free <= free_per_s * (BUDGET_BURST_S + 1000 / 300) + 1
    assert free >= 1
    # from then on every bot is checked: none of them is new any more
    again = [rt.gate.decide(facts(client=f"10.9.{i // 250}.{i % 250}", path="/")).action
             for i in range(1000)]
    assert again.count(Action.CHALLENGE) == 1000


def test_a_shield_that_has_seen_no_browser_checks_every_new_client() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack")
    clock.advance(60.0)
    assert rt.gate.decide(facts(client="203.0.113.7")).action is Action.CHALLENGE
    # bots that never fetch assets build no budget, however many there are
    rt.set_mode(Mode.NORMAL, "operator")
    for i in range(500):
        rt.gate.decide(facts(client=f"10.8.{i // 250}.{i % 250}", path="/"))
        clock.advance(0.05)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    assert rt.status()["newcomers"]["browsers_per_s"] == 0.0
    assert rt.gate.decide(facts(client="203.0.113.8")).action is Action.CHALLENGE


def test_budget_off_checks_every_new_client() -> None:
    clock = Clock()
    rt = runtime(clock, challenge={"newcomers": 0})
    _calm(rt, clock)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    assert rt.gate.decide(facts(client="203.0.113.7")).action is Action.CHALLENGE


def test_a_suspect_never_enters_free() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    rt.state.mark_suspect("203.0.113.9", 1.0, clock() + 300)
    assert rt.gate.decide(facts(client="203.0.113.9")).action is Action.CHALLENGE


def test_under_pressure_in_normal_mode_a_newcomer_enters_on_the_budget() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    rt.gate.pressure = lambda: True  # a backend's queue stands
    d = _browse(rt, "203.0.113.7")
    assert [x.action for x in d] == [Action.ALLOW] * 4
    # the budget is spent: the next fresh client pays the check
    for i in range(20):
        rt.gate.decide(facts(client=f"10.7.0.{i}"))
    assert rt.gate.decide(facts(client="203.0.113.8")).action is Action.CHALLENGE


def test_budget_refills_at_its_rate_and_holds_two_seconds_of_it() -> None:
    b = NewcomerBudget(factor=2.0, window_s=20.0)
    t = 0.0
    for _ in range(200):  # 2 new browsers a second for 100 s: rate -> ~2/s
        b.browser(t)
        t += 0.5
    assert 1.9 < b.rate < 2.1
    got = sum(b.take(t) for _ in range(100))
    assert 7 <= got <= 8  # the burst: 2 s (BUDGET_BURST_S) of 2 x ~2/s
    t += 1.0
    got = sum(b.take(t) for _ in range(100))
    assert 3 <= got <= 4  # one second of ~4/s


# -- before any verdict: a surge of new clients --------------------------------

def test_the_first_second_of_a_flood_from_fresh_addresses_is_checked_in_normal_mode() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    assert rt.state.mode is Mode.NORMAL
    first: list[Action] = []
    for i in range(300):  # one second of a flood from 300 fresh addresses
        first.append(rt.gate.decide(facts(client=f"10.9.{i // 250}.{i % 250}")).action)
        clock.advance(1 / 300)
    let_in = first.count(Action.ALLOW)
    assert let_in < 70  # the budget, then the surge's first ~50 before it counts as one
    assert first[-100:].count(Action.ALLOW) <= 2  # the budget's refill (~4/s) only
    assert rt.gate.counts["challenge:surge"] == first.count(Action.CHALLENGE)
    # a bot checked in the surge stays checked while it keeps coming
    held = [i for i, a in enumerate(first) if a is Action.CHALLENGE]
    clock.advance(5.0)
    again = [rt.gate.decide(facts(client=f"10.9.{i // 250}.{i % 250}")).action for i in held]
    assert again.count(Action.CHALLENGE) == len(held)


def test_a_flash_crowd_of_ten_times_the_shoppers_is_not_a_surge() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock, per_s=2.0, seconds=9.0)  # a short calm: the budget is small
    actions: list[Action] = []
    for i in range(400):  # 20 new browsers a second for 20 s
        actions += [d.action for d in _browse(rt, f"203.0.{113 + i // 250}.{i % 250}")]
        clock.advance(0.05)
    assert actions.count(Action.CHALLENGE) == 0
    assert "challenge:surge" not in rt.gate.counts


def test_on_trial_only_the_assets_of_a_page_that_went_on_are_free() -> None:
    clock = Clock()
    rt = runtime(clock)
    _calm(rt, clock)
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    bot = "203.0.113.66"  # a randomized flood's bot that entered on the budget
    assert rt.gate.decide(facts(client=bot, path="/product/3")).action is Action.ALLOW
    clock.advance(1.0)
    assert rt.gate.decide(facts(client=bot, path="/img/p3.png")).action is Action.ALLOW
    clock.advance(1.0)
    assert rt.gate.decide(facts(client=bot, path="/cart")).action is Action.CHALLENGE
    clock.advance(5.0)  # no page of it went on since: its files are no page's assets
    assert rt.gate.decide(facts(client=bot, path="/static/shop.css")).action is Action.CHALLENGE
