"""Protect before the verdict: when a backend saturates, who waits and who is
shed already favours shoppers, whatever mode the detector has set.

The gate ranks each request by what its client did (docs/GUARD.md,
"Admission"); the admission queue serves by that rank, keeps no stale
backlog, and turns to LIFO under overload."""

from __future__ import annotations

from urllib.parse import quote

from guard_helpers import Clock, challenge_of, cookie_pair, facts, parse, runtime

from shieldwall.guard._admission import AdmissionCore
from shieldwall.guard._standing import PROVEN, Standing
from shieldwall.guard._tokens import solve
from shieldwall.guard.decision import Action, ClientClass, Decision, Mode
from shieldwall.guard.runtime import GuardRuntime
from shieldwall.guard.settings import AdmissionSettings

U = ClientClass.UNKNOWN
ASSETS = ("/static/shop.css", "/static/shop.js", "/static/logo.png")


def _browse(rt: GuardRuntime, clock: Clock, client: str, cookie: str = "") -> Decision:
    """A person's browser: a page, then the assets it references, then a pause."""
    d = rt.gate.decide(facts(client=client, path="/", cookie=cookie))
    for asset in ASSETS:
        rt.gate.decide(facts(client=client, path=asset, cookie=cookie))
    clock.advance(2.0)
    return d


def _session(rt: GuardRuntime, client: str) -> str:
    f = facts(client=client, path="/")
    extra = rt.gate.observe_response(f, rt.gate.decide(f), 200, [])
    return cookie_pair(extra[0][1].decode())


def _pass(rt: GuardRuntime, client: str) -> str:
    """Solve the challenge ``client`` is shown; the pass cookie."""
    d = rt.gate.decide(facts(client=client))
    assert d.action is Action.CHALLENGE
    meta = challenge_of(d.response)
    n = solve(meta["challenge"], meta["difficulty"])
    q = f"c={quote(meta['challenge'], safe='')}&n={n}&r=%2F"
    ok = parse(rt.gate.decide(facts(client=client, path="/.shieldwall/verify", query=q)).response)
    assert ok.status == 302
    return cookie_pair(ok.header("Set-Cookie"))


def _core(**kw: object) -> AdmissionCore:
    return AdmissionCore(AdmissionSettings.model_validate({"limit": 1, "queue_size": 100, **kw}))


# -- the rank: what a client did ----------------------------------------------

def test_a_shopper_with_history_is_served_before_a_new_client_queued_earlier() -> None:
    clock = Clock()
    rt = runtime(clock)
    cookie = _session(rt, "192.0.2.10")
    for _ in range(20):  # half a minute of browsing like a person
        _browse(rt, clock, "192.0.2.10", cookie)
    new = rt.gate.decide(facts(client="203.0.113.5", path="/"))
    shopper = rt.gate.decide(facts(client="192.0.2.10", path="/product/3", cookie=cookie))
    assert new.priority == Standing.NEW and shopper.priority == Standing.SHOPPER

    core = _core()
    core.offer(U, Standing.NEW, 0.0)  # the backend is full
    _, t_new, _ = core.offer(new.cls, new.priority, 0.01)
    _, t_shopper, _ = core.offer(shopper.cls, shopper.priority, 0.02)
    assert core.release(0.05, True, 0.05) == [t_shopper]
    assert core.release(0.05, True, 0.06) == [t_new]


def test_a_pass_holding_page_only_heavy_hitter_sinks_below_an_unverified_browser() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack", challenge={"difficulty": 4})
    bot = "198.51.100.7"
    cookie = _pass(rt, bot)
    first = rt.gate.decide(facts(client=bot, cookie=cookie))
    assert first.cls is ClientClass.VERIFIED and first.priority == Standing.PASS
    rt.set_mode(Mode.NORMAL, "operator")  # (outside normal mode a heavy hitter is challenged: below)
    for _ in range(15):  # pages only, 3 a second: nobody clicks like that
        d = rt.gate.decide(facts(client=bot, path="/", cookie=cookie))
        clock.advance(0.33)
    assert d.action is Action.ALLOW and d.cls is ClientClass.VERIFIED  # the pass still holds
    assert d.priority == Standing.HEAVY

    rt.set_mode(None, "operator")  # auto: unknown browsers are let through in normal mode
    person = _browse(rt, clock, "192.0.2.20")
    person_page = rt.gate.decide(facts(client="192.0.2.20", path="/product/1"))
    assert person.cls is ClientClass.UNKNOWN and person_page.priority == Standing.BROWSER
    assert person_page.priority > d.priority
    assert Standing.NEW > Standing.HEAVY  # below every new client too


def test_pages_without_their_assets_rank_below_a_new_client_and_a_pass_only_above() -> None:
    clock = Clock()
    rt = runtime(clock)
    flood = [rt.gate.decide(facts(client="198.51.100.9", path="/")).priority
             for _ in range(3) if clock.advance(3.0) is None]
    assert flood == [Standing.NEW, Standing.PAGES_ONLY, Standing.PAGES_ONLY]
    first_visit = rt.gate.decide(facts(client="192.0.2.30", path="/"))
    assert first_visit.priority == Standing.NEW > Standing.PAGES_ONLY


def test_an_asset_long_after_a_page_is_no_browser_evidence() -> None:
    # a flood that rotates paths at its own pace asks for assets too, but not
    # right after its pages
    clock = Clock()
    rt = runtime(clock)
    bot = "198.51.100.11"
    rt.gate.decide(facts(client=bot, path="/"))
    clock.advance(3.0)
    rt.gate.decide(facts(client=bot, path="/static/shop.css"))
    clock.advance(3.0)
    assert rt.gate.decide(facts(client=bot, path="/product/2")).priority == Standing.PAGES_ONLY


def test_a_customer_outranks_shoppers_and_checkout_outranks_everyone() -> None:
    clock = Clock()
    rt = runtime(clock)
    f = facts(client="192.0.2.40")
    extra = rt.gate.observe_response(f, rt.gate.decide(f), 200, [(b"X-Shop-Customer", b"1")])
    cookie = cookie_pair(extra[0][1].decode())
    _browse(rt, clock, "192.0.2.40", cookie)
    browse = rt.gate.decide(facts(client="192.0.2.40", path="/product/1", cookie=cookie))
    pay = rt.gate.decide(facts(client="192.0.2.40", path="/checkout", cookie=cookie))
    assert Standing.SHOPPER < browse.priority == Standing.CUSTOMER < pay.priority


# -- the queue: deadlines, LIFO, reserve ---------------------------------------

def test_no_request_waits_beyond_its_deadline() -> None:
    core = _core(limit=2, queue_timeout=2.0, customer_queue_timeout=5.0, overload_after=0.1,
                 overload_timeout=0.5, adaptive=False)
    timeout = {Standing.NEW: 0.5, Standing.PAGES_ONLY: 0.5, Standing.SHOPPER: 2.0,
               Standing.CUSTOMER: 5.0}
    ranks = [Standing.NEW, Standing.PAGES_ONLY, Standing.NEW, Standing.SHOPPER, Standing.CUSTOMER]
    served = shed = 0
    for i in range(4000):  # 400 requests a second into a backend that serves 50
        now = i * 0.0025
        _, _, evicted = core.offer(U, ranks[i % len(ranks)], now)
        for t in core.expire(now) + evicted:
            shed += 1
            assert now - t.queued <= timeout[t.rank] + 0.0026  # shed at the next step
        if i % 8 == 0:
            for t in core.release(0.02, True, now):
                served += 1
                assert now - t.queued <= timeout[t.rank]
    assert served > 400 and shed > 1000
    assert core.counts["admit:lifo"] > 0


def test_requests_queued_in_a_burst_are_served_in_order() -> None:
    core = _core(overload_after=0.1)
    core.offer(U, Standing.BROWSER, 0.0)
    tickets = [core.offer(U, Standing.BROWSER, 0.01 * i)[1] for i in range(3)]
    served = [core.release(0.01, True, 0.03 + 0.01 * i)[0] for i in range(3)]
    assert served == tickets


def test_under_overload_the_newest_request_of_a_rank_is_served_first() -> None:
    core = _core(overload_after=0.1, overload_timeout=10.0, queue_timeout=10.0)
    core.offer(U, Standing.BROWSER, 0.0)
    tickets = [core.offer(U, Standing.BROWSER, 0.05 * i)[1] for i in range(1, 5)]
    assert core.overloaded(0.3)
    assert core.release(0.01, True, 0.3) == [tickets[-1]]  # LIFO
    assert core.release(0.01, True, 0.31) == [tickets[-2]]
    assert core.counts["admit:lifo"] == 2


def test_under_overload_unproven_waiters_are_shed_after_the_short_deadline() -> None:
    core = _core(overload_after=0.1, overload_timeout=0.5, queue_timeout=2.0)
    core.offer(U, Standing.NEW, 0.0)
    _, new, _ = core.offer(U, Standing.NEW, 0.0)
    _, shopper, _ = core.offer(U, Standing.SHOPPER, 0.0)
    assert core.expire(0.4) == []
    assert core.expire(0.6) == [new]  # the queue stood for 0.6 s: overload
    assert core.expire(1.9) == []
    assert core.expire(2.1) == [shopper]


def test_a_shopper_finds_a_free_slot_while_unproven_requests_fill_the_rest() -> None:
    core = _core(limit=8, reserve=0.25)
    admitted = [core.offer(U, Standing.NEW, 0.0)[0] for _ in range(10)]
    assert admitted == ["admit"] * 6 + ["queue"] * 4  # two slots kept
    assert core.offer(U, Standing.BROWSER, 0.0)[0] == "admit"
    assert core.try_admit(U, Standing.SHOPPER) is False  # someone waits: ask offer
    assert core.offer(U, Standing.SHOPPER, 0.0)[0] == "admit"
    assert core.offer(U, Standing.SHOPPER, 0.0)[0] == "queue"  # now truly full
    assert PROVEN == Standing.BROWSER


def test_with_no_standing_given_the_class_ranks_the_request() -> None:
    core = _core()
    core.offer(U, 0, 0.0)
    _, unknown, _ = core.offer(U, 0, 0.0)
    _, customer, _ = core.offer(ClientClass.CUSTOMER, 0, 0.0)
    assert core.release(0.01, True, 0.01) == [customer]
    assert (unknown.rank, customer.rank) == (Standing.NEW, Standing.CUSTOMER)


# -- pressure: an overloaded backend raises the bar before any verdict --------

def test_while_a_backend_is_overloaded_new_clients_are_challenged_and_shoppers_are_not() -> None:
    clock = Clock()
    rt = runtime(clock, admission={"limit": 1, "overload_after": 0.0, "overload_hold": 5.0})
    adm_now = [100.0]
    rt.admission.clock = lambda: adm_now[0]
    _browse(rt, clock, "192.0.2.50")  # a shopper in the middle of a visit
    core = rt.admission.core("backend0")
    core.offer(U, Standing.NEW, adm_now[0])
    core.offer(U, Standing.NEW, adm_now[0])  # the queue stands: overload
    assert rt.state.mode.value == "normal"
    new = rt.gate.decide(facts(client="203.0.113.8", path="/"))
    shopper = rt.gate.decide(facts(client="192.0.2.50", path="/product/4"))
    assert new.action is Action.CHALLENGE
    assert shopper.action is Action.ALLOW and shopper.priority == Standing.BROWSER
    core.release(0.01, True, adm_now[0])
    core.release(0.01, True, adm_now[0])  # the queue is empty again
    adm_now[0] += 4.0
    assert rt.gate.decide(facts(client="203.0.113.9")).action is Action.CHALLENGE  # held
    adm_now[0] += 1.5
    assert rt.gate.decide(facts(client="203.0.113.10")).action is Action.ALLOW


def test_a_pass_holding_heavy_hitter_pays_a_suspects_challenge_before_any_verdict() -> None:
    clock = Clock()
    rt = runtime(clock, mode="under_attack", challenge={"difficulty": 4})
    bot = "198.51.100.8"
    cookie = _pass(rt, bot)
    seen = []
    for _ in range(15):  # pages only, 3 a second, with the pass it solved
        d = rt.gate.decide(facts(client=bot, path="/", cookie=cookie))
        seen.append(d.action)
        clock.advance(0.33)
    assert seen[0] is Action.ALLOW  # the pass holds while its pages look human
    assert d.action is Action.CHALLENGE  # then it is heavy: challenged again, harder
    assert challenge_of(d.response)["difficulty"] == 4 + rt.settings.challenge.suspect_extra
    assert b"nojs" not in d.response  # no wait-only path for it
    assert rt.status()["counters"]["challenge:heavy"] >= 1
    assert "198.51.100.8" not in rt.state.suspects  # the detector named nobody

    # in normal mode with no backend overloaded, heavy is only a rank
    rt.set_mode(Mode.NORMAL, "operator")
    calm = rt.gate.decide(facts(client=bot, path="/", cookie=cookie))
    assert calm.action is Action.ALLOW and calm.priority == Standing.HEAVY

    # a person browsing with a pass, assets after every page, is never challenged again
    rt.set_mode(Mode.UNDER_ATTACK, "operator")
    person = "192.0.2.30"
    pcookie = _pass(rt, person)
    for _ in range(15):
        assert _browse(rt, clock, person, pcookie).action is Action.ALLOW
