"""The drills, as data: phases with a shopper rate, attacks and faults.

A scenario is a list of phases sharing the drill's duration. Rates are
relative to the base shopper rate so that "a flood of twenty times the
shoppers' rate" means the same thing at any size: an attack's ``x`` is a
multiple of the shoppers' *request* rate (sessions/s times
``REQUESTS_PER_SESSION``); a phase's ``shoppers_x`` multiplies the session
arrival rate (10 = a flash crowd).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shieldwall.drill.attackers import Kind
from shieldwall.drill.shoppers import AccessMix

REQUESTS_PER_SESSION = 8.9
"""Mean logical requests per session of the default ShopperProfile:
1 landing + 3 assets + 2 x (product + picture) + 0.3 search + 0.35 x (cart + checkout)."""


class FaultAction(StrEnum):
    KILL = "kill"
    FREEZE = "freeze"
    THAW = "thaw"
    RESTART = "restart"
    SLOW = "slow"
    UNSLOW = "unslow"
    KILL_NODE = "kill-node"
    """With ``--nodes``: SIGKILL one shield node (the balancer routes around it)."""
    KILL_REDIS = "kill-redis"
    """With ``--nodes``: SIGKILL the Redis primary (the Sentinel promotes the replica)."""


@dataclass(frozen=True)
class Fault:
    action: FaultAction
    backend: int = 0
    at: float = 0.0
    """When, as a fraction of the phase (0 = at its start)."""
    ms: float = 0.0
    """For SLOW: service time added to every database query."""


@dataclass(frozen=True)
class Assault:
    kind: Kind
    x: float
    """Rate as a multiple of the shoppers' request rate (slow attacks: ignored)."""
    sources: int = 1000
    connections: int = 1000
    interval_s: tuple[float, float] | None = None
    """low-and-slow: seconds between one bot's requests (the rate follows from sources)."""


@dataclass(frozen=True)
class Phase:
    name: str
    share: float
    shoppers_x: float = 1.0
    attacks: tuple[Assault, ...] = ()
    faults: tuple[Fault, ...] = field(default=())
    expect: str = "normal"
    """What the detector should say during this phase (labels for phases.json)."""
    access: AccessMix = field(default_factory=AccessMix)
    """How this phase's new sessions reach the shop (own address, carrier NAT, IPv6)."""


MOBILE_HEAVY = AccessMix(carrier_nat=0.25, ipv6=0.25, nat_pool=2, ipv6_isps=3)
"""Half the sessions from carrier-grade NAT and IPv6 (drill/shoppers.py)."""
DUAL_STACK = AccessMix(ipv6=0.3, ipv6_isps=3)
"""Three in ten sessions over IPv6, the rest from their own IPv4 addresses."""


def _attack_drill(name: str, assault: Assault, expect: str) -> tuple[Phase, ...]:
    return (Phase("calm", 0.3), Phase(name, 0.5, attacks=(assault,), expect=expect),
            Phase("after", 0.2))


SCENARIOS: dict[str, tuple[Phase, ...]] = {
    "baseline": (Phase("shopping", 1.0),),
    "flash-crowd": (Phase("calm", 0.3), Phase("flash-crowd", 0.5, shoppers_x=10, expect="flash_crowd"),
                    Phase("after", 0.2)),
    # A 10x crowd as a mobile-heavy audience brings it: a quarter of the sessions
    # behind a carrier's NAT (two public addresses for all of them), a quarter over
    # IPv6 (each its own /64, through the balancer hop), the rest from their own
    # addresses; the calm before and after has the same audience.
    "flash-crowd-nat-ipv6": (Phase("calm", 0.3, access=MOBILE_HEAVY),
                             Phase("flash-crowd", 0.5, shoppers_x=10, expect="flash_crowd", access=MOBILE_HEAVY),
                             Phase("after", 0.2, access=MOBILE_HEAVY)),
    "flood": _attack_drill("flood", Assault(Kind.FLOOD, 20), "ddos"),
    # the same flood, with 30% of the shoppers on IPv6 (through a balancer hop
    # that names them in a PROXY v2 header): the shop and every access log must
    # see their own addresses, also behind --nodes' HAProxy
    "flood-ipv6": (Phase("calm", 0.3, access=DUAL_STACK),
                   Phase("flood", 0.5, attacks=(Assault(Kind.FLOOD, 20),), expect="ddos", access=DUAL_STACK),
                   Phase("after", 0.2, access=DUAL_STACK)),
    "randomized": _attack_drill("randomized", Assault(Kind.RANDOMIZED, 20), "ddos"),
    "cache-bust": _attack_drill("cache-bust", Assault(Kind.CACHE_BUST, 10), "ddos"),
    "slowloris": _attack_drill("slowloris", Assault(Kind.SLOWLORIS, 0, connections=1000), "ddos"),
    "slow-post": _attack_drill("slow-post", Assault(Kind.SLOW_POST, 0, connections=1000), "ddos"),
    "smart-bot": _attack_drill("smart-bot", Assault(Kind.SMART_BOT, 20, sources=100), "ddos"),
    # LOIC/HOIC run by thousands of volunteers: 3,000 bots, one page every 5-20 s
    # each (about 240 req/s in all), against a shop three times the default size
    # (about 53 req/s of shoppers): 4-5x the shop's own traffic, and no bot anywhere
    # near a per-address limit. The calm is a little longer than elsewhere (35%) so that
    # in a 50 s drill the detector has finished its 15 s warm-up when the hive fires.
    "low-and-slow": (Phase("calm", 0.35, shoppers_x=3),
                     Phase("low-and-slow", 0.45, shoppers_x=3, expect="ddos",
                           attacks=(Assault(Kind.LOW_AND_SLOW, 0, sources=3000, interval_s=(5.0, 20.0)),)),
                     Phase("after", 0.2, shoppers_x=3)),
    "flood-node-killed": (Phase("calm", 0.3),
                          Phase("flood", 0.5, attacks=(Assault(Kind.FLOOD, 20),),
                                faults=(Fault(FaultAction.KILL_NODE, at=0.4),), expect="ddos"),
                          Phase("after", 0.2)),
    "flood-redis-killed": (Phase("calm", 0.3),
                           Phase("flood", 0.5, attacks=(Assault(Kind.FLOOD, 20),),
                                 faults=(Fault(FaultAction.KILL_REDIS, at=0.4),), expect="ddos"),
                           Phase("after", 0.2)),
    "backend-failure": (
        Phase("calm", 0.15),
        Phase("backend-slow", 0.2, faults=(Fault(FaultAction.SLOW, 1, ms=300.0),), expect="backend_failure"),
        Phase("backend-killed", 0.25, faults=(Fault(FaultAction.UNSLOW, 1), Fault(FaultAction.KILL, 0)),
              expect="backend_failure"),
        Phase("backend-frozen", 0.15, faults=(Fault(FaultAction.RESTART, 0), Fault(FaultAction.FREEZE, 1, 0.1)),
              expect="backend_failure"),
        Phase("recovered", 0.25, faults=(Fault(FaultAction.THAW, 1),)),
    ),
    # The demo's (90 s): its calm (18 s) outlasts the detector's warm-up (15
    # windows), so the crowd and the flood meet the whole detector, people and
    # assets included; at 0.15 (13.5 s) it was never warm (det11a, session 9).
    "mixed": (
        Phase("calm", 0.2),
        Phase("flash-crowd", 0.2, shoppers_x=10, expect="flash_crowd"),
        Phase("randomized-flood", 0.2, attacks=(Assault(Kind.RANDOMIZED, 20),), expect="ddos"),
        Phase("flood+backend-killed", 0.2, attacks=(Assault(Kind.RANDOMIZED, 20),),
              faults=(Fault(FaultAction.KILL, 0),), expect="ddos"),
        Phase("recovery", 0.2, faults=(Fault(FaultAction.RESTART, 0),)),
    ),
}


def timed(name: str, duration: float) -> list[tuple[Phase, float, float]]:
    """(phase, start_s, end_s) for scenario ``name`` over ``duration`` seconds."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    phases = SCENARIOS[name]
    total = sum(p.share for p in phases)
    out: list[tuple[Phase, float, float]] = []
    t = 0.0
    for p in phases:
        end = t + duration * p.share / total
        out.append((p, round(t, 3), round(end, 3)))
        t = end
    return out
