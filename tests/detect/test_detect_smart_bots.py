"""Bots that passed one challenge (a session and a pass) and then hammer pages
without assets: the detector calls it a ddos and names them, never the shoppers.

The bots sit in the shoppers' own networks and spread over many product pages,
at a per-client rate under every absolute per-source threshold, so only their
page-only heavy-hitting gives them away (docs/DETECT.md, "verified heavy hitters")."""

from __future__ import annotations

import math

from shieldwall.detect.events import Outcome, RequestEvent
from shieldwall.detect.runtime import DetectRuntime
from shieldwall.detect.settings import DetectSettings
from shieldwall.guard.decision import Mode

T0 = 1_700_000_000.0
CALM = 60
ATTACK = 20


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _ev(t: float, client: str, path: str, *, verified: bool = False) -> RequestEvent:
    return RequestEvent(time=t, client=client, method="GET", path=path, query="", status=200,
                        bytes_sent=5000, request_time=0.02, user_agent="Mozilla/5.0",
                        session=True, verified=verified, upstream="127.0.0.1:1",
                        outcome=Outcome.OK, upstream_time=0.02)


def _shoppers(start: float, end: float, per_s: float, first: int) -> list[RequestEvent]:
    """Sessions arriving at ``per_s``: a page every 3 s, each with its assets."""
    out: list[RequestEvent] = []
    n = int((end - start) * per_s)
    for i in range(n):
        k = first + i
        client = f"10.0.{k % 40}.{10 + (k // 40) % 180}"
        t = start + i / per_s
        for j, page in enumerate(("/", f"/product/{k % 37}", f"/product/{(k * 7) % 37}")):
            at = t + 3.0 * j
            out.append(_ev(at, client, page))
            out.extend(_ev(at + 0.05, client, a) for a in ("/static/shop.css", "/static/shop.js",
                                                            f"/static/p{k % 37}.png"))
    return out


def _bots(start: float, end: float, n: int = 100, rate: float = 3.6) -> list[RequestEvent]:
    """Each bot in a network the shoppers use, holding a session and a pass, pages only."""
    out: list[RequestEvent] = []
    for b in range(n):
        client = f"10.0.{b % 40}.{200 + b // 40}"
        t = start + b / (n * rate)
        i = 0
        while t < end:
            out.append(_ev(t, client, f"/product/{(b + i) % 37}", verified=True))
            t += 1.0 / rate
            i += 1
    return out


def _run(events: list[RequestEvent], until: float) -> tuple[DetectRuntime, list[Mode],
                                                             dict[str, float], set[str]]:
    events.sort(key=lambda e: e.time + e.request_time)
    clock = FakeClock(T0)
    modes: list[Mode] = []
    suspects: dict[str, float] = {}
    states: set[str] = set()
    rt = DetectRuntime.from_settings(DetectSettings(), clock=clock,
                                     on_mode=lambda m, src: modes.append(m),
                                     on_suspect=lambda c, score, ttl: suspects.__setitem__(c, score))
    rt.on_step = lambda r: states.add(r.state)
    i = 0
    t = math.floor(T0)
    while t < until:
        t += 1.0
        while i < len(events) and events[i].time + events[i].request_time < t:
            rt.sink(events[i])
            i += 1
        clock.t = t
        rt.tick()
    return rt, modes, suspects, states


def test_verified_page_only_heavy_hitters_are_a_ddos_and_are_named_as_suspects() -> None:
    end = T0 + CALM + ATTACK
    shoppers = _shoppers(T0, end, 2.0, 0)
    bots = _bots(T0 + CALM, end)
    _, modes, suspects, states = _run(shoppers + bots, end + 5)
    assert "ddos" in states
    assert Mode.UNDER_ATTACK in modes
    bot_clients = {e.client for e in bots}
    shopper_clients = {e.client for e in shoppers}
    assert not set(suspects) & shopper_clients
    assert len(set(suspects) & bot_clients) >= 0.9 * len(bot_clients)
    assert all(0.7 <= s <= 1.0 for s in suspects.values())


def test_a_flash_crowd_of_shoppers_with_sessions_is_no_ddos_and_names_no_one() -> None:
    end = T0 + CALM + ATTACK
    calm = _shoppers(T0, T0 + CALM, 2.0, 0)
    crowd = _shoppers(T0 + CALM, end, 20.0, 10_000)
    _, modes, suspects, states = _run(calm + crowd, end + 5)
    assert "ddos" not in states
    assert modes == [] and suspects == {}


def test_the_same_bots_at_a_shoppers_pace_are_not_named() -> None:
    """A client that reads a page every couple of seconds without assets (a text
    browser, a reader app) is no heavy hitter."""
    end = T0 + CALM + ATTACK
    shoppers = _shoppers(T0, end, 2.0, 0)
    slow = _bots(T0 + CALM, end, n=20, rate=0.5)
    _, _, suspects, states = _run(shoppers + slow, end + 5)
    assert "ddos" not in states
    assert suspects == {}
