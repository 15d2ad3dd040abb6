"""The three shops: a small bursty one, a mid-size one with an evening trend, an origin behind a CDN.

Each is ``family(seed) -> (Log, Labels)``. A seed draws the shop (catalogue,
visitors, rates, timezone, server and log style) and its day (which events,
when, how strong). Every fourth seed is a quiet day: bumps that are not
incidents, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from shieldwall.detect.families import _incidents as inc
from shieldwall.detect.families._labels import Event, Labels
from shieldwall.detect.families._log import Log, Rows, Style, tz_string, unix
from shieldwall.detect.families._traffic import (
    Behaviour,
    Known,
    ShopperGen,
    app_clients,
    arrivals,
    crawlers,
    monitors,
    monitors_more,
    scanners,
)
from shieldwall.detect.families._world import Agents, Catalogue, Rng, World

TZ_CHOICES = (0, 0, 60, 60, 120, -300, -240, -420, 330, 540, 600, -180)
"""Server UTC offsets in minutes: Europe, the Americas, India, Japan, Australia, Brazil."""

EVENT_DURATION = {  # seconds, drawn uniformly
    "get_flood_few": (120, 600), "get_flood_many": (120, 600), "randomized_404": (120, 600),
    "randomized_query": (120, 600), "cache_bust": (180, 600), "low_and_slow": (480, 1200),
    "slowloris": (240, 600), "slow_post": (240, 600), "backend_dead": (60, 480),
    "backend_hang": (120, 480),
}
CROWDS = ("flash_step", "flash_build", "flash_mobile")
FLOODS: dict[str, Callable[[float], float]] = {
    "get_flood_few": lambda u: 5 + 20 * u, "get_flood_many": lambda u: 5 + 15 * u,
    "randomized_404": lambda u: 4 + 11 * u, "randomized_query": lambda u: 4 + 11 * u,
    "cache_bust": lambda u: 3 + 7 * u, "low_and_slow": lambda u: 3 + 2 * u,
}
"""Attack traffic as a multiple of the shop's own lines per second, from a uniform draw."""
MAX_FLOOD_LINES = 700_000


@dataclass
class Shape:
    """What distinguishes one family from another (ranges a seed draws from)."""

    name: str
    rps: tuple[float, float]
    hours: tuple[float, float]
    cdn: bool
    diurnal: float
    """Relative rise (or fall) of traffic over the log: 0 flat."""
    menu: tuple[str, ...]
    n_products: tuple[int, int]
    app_share: tuple[float, float]
    local_start_hour: tuple[int, int]


def _seed_rng(name: str, seed: int) -> Rng:
    return np.random.default_rng([sum(name.encode()) * 7919 + len(name), seed])


def _schedule(rng: Rng, menu: tuple[str, ...], seed: int, t0: float, hours: float) -> tuple[list[str], float]:
    """Which events, in order, and the log's end.

    Eight consecutive seeds (a split: six active days of three or four events) go through
    the whole menu, three events a day in turn: every family must include every kind of
    event, and the rotation before (``seed * 3 + j * 5``) never gave the small and mid
    shops' train seeds a low-and-slow flood. Each block of eight starts elsewhere in it."""
    k = 3 + int(rng.integers(0, 2))
    i = seed % 8
    day = i - i // 4  # the quiet days (i = 3, 7) take no events
    start = (seed // 8) * 7 + day * 3
    names = [menu[(start + j) % len(menu)] for j in range(k)]
    names = list(dict.fromkeys(names))
    rng.shuffle(names)
    return names, t0 + hours * 3600


def build(shape: Shape, seed: int, minutes: float | None = None) -> tuple[Log, Labels]:
    """Draw the shop and the day for ``seed``; ``minutes`` shortens the log (fewer events).

    A full day lasts until its events are over: one that would not fit in the drawn
    length makes the day longer (the everyday traffic goes on), never is left out --
    leaving out what did not fit left out the longest events most (crowds, low-and-slow
    floods), and whole splits of a family went without a stepped crowd."""
    rng = _seed_rng(shape.name, seed)
    quiet = seed % 4 == 3
    tz = int(rng.choice(TZ_CHOICES))
    day = int(rng.integers(1, 28))
    month = int(rng.integers(1, 13))
    hour = int(rng.integers(*shape.local_start_hour))
    t0 = unix(2026, month, day, hour, int(rng.integers(0, 60))) - tz * 60
    hours = float(rng.uniform(*shape.hours)) if minutes is None else minutes / 60
    t1 = t0 + hours * 3600
    dur = int(t1 - t0)
    host = f"www.{rng.choice(['nordic', 'urban', 'little', 'blue', 'green', 'happy'])}" \
           f"{rng.choice(['threads', 'boots', 'goods', 'wool', 'shop', 'store'])}.{rng.choice(['com', 'de', 'co.uk', 'fr', 'com.au'])}"
    world = World.draw(rng, v6_share=float(rng.uniform(0.05, 0.4)), mobile_share=float(rng.uniform(0.2, 0.6)),
                       cgnat_share=float(rng.uniform(0.3, 0.9)))
    agents = Agents.draw(rng, host.split(".")[1].capitalize())
    cat = Catalogue.draw(rng, host, int(rng.integers(*shape.n_products)), api=True)
    known = Known.draw(rng, world, agents, int(rng.integers(800, 8000)))
    beh = Behaviour(pages_mean=float(rng.uniform(2.5, 7)), bounce=float(rng.uniform(0.25, 0.55)),
                    think_median=float(rng.uniform(6, 25)), backend_median=float(rng.uniform(0.05, 0.3)),
                    cdn=shape.cdn, p_known=float(rng.uniform(0.25, 0.55)), p408=float(rng.uniform(0.0, 0.03)),
                    header_timeout=float(rng.choice([60, 60, 30, 15])), cart_share=float(rng.uniform(0.03, 0.1)))
    gen = ShopperGen(rng, cat, world, agents, known, beh)

    # how many lines one session makes here (a pilot run, thrown away)
    pilot = Rows()
    gen.sessions(pilot, np.zeros(300))
    per_session = len(pilot.columns()["t"]) / 300
    rps = float(np.exp(rng.uniform(np.log(shape.rps[0]), np.log(shape.rps[1]))))
    app = float(rng.uniform(*shape.app_share))
    shop_share = 0.88 - app

    # the day's shape: a trend over the log and slow wandering minute to minute
    x = np.arange(dur) / max(dur, 1)
    trend = 1.0 + shape.diurnal * float(rng.uniform(0.5, 1.0)) * np.sin(np.pi * x * float(rng.uniform(0.6, 1.0)))
    walk = np.cumsum(rng.normal(0, 0.015, dur // 60 + 2))
    walk = np.exp(walk - walk.mean())
    level = _Level(trend * np.repeat(walk, 60)[:dur], rps * shop_share / per_session, t0)

    rows = Rows()
    gen.sessions(rows, arrivals(rng, t0, level.session_rates()))
    per_app = 8.0
    app_clients(rows, rng, cat, world, agents, t0, rps * app / per_app * level.shape, beh.backend_median)
    crawl = {0: rps * float(rng.uniform(0.01, 0.05)), 1: rps * float(rng.uniform(0.005, 0.03))}
    for ci in (2, 3, 4, 5):
        if rng.random() < 0.5:
            crawl[ci] = rps * float(rng.uniform(0.002, 0.01))
    crawlers(rows, rng, cat, t0, t1, crawl, beh.backend_median)
    mons = [int(i) for i in rng.choice(5, int(rng.integers(1, 4)), replace=False)]
    probes = monitors(rows, rng, t0, t1, mons, str(rng.choice(["/", "/healthz", "/status"])))
    scan_rate = float(rng.uniform(0.5, 4))
    scanners(rows, rng, world, t0, t1, scan_rate)
    t1_drawn = t1

    ctx = inc.Ctx(rng, rows, cat, world, gen, rps, level.session_rate)
    events: list[Event] = []
    t = t0 + float(rng.uniform(12, 20)) * 60
    if quiet:
        bumps = ["crawler_spike", "newsletter_bump", "deploy_blip"]
        rng.shuffle(bumps)
        for b in bumps:
            need = t + (3600 if b == "newsletter_bump" else 1200) + 5 * 60
            if need > t1:
                if minutes is not None:
                    continue  # a log cut short leaves out what does not fit
                t1 = level.extend(rng, need)
            e = _bump(ctx, b, t, beh.backend_median)
            events.append(e)
            t = min(e.end, t + 900) + float(rng.uniform(5, 15)) * 60
    else:
        names, _ = _schedule(rng, shape.menu, seed, t0, hours)
        if rng.random() < 0.5:
            names.insert(int(rng.integers(0, len(names) + 1)), "deploy_blip")
        for name in names:
            longest = 1600.0 if name in CROWDS else 30.0 if name == "deploy_blip" else EVENT_DURATION[name][1]
            if t + longest + 5 * 60 > t1:
                if minutes is not None:
                    continue  # a log cut short leaves out what does not fit
                t1 = level.extend(rng, t + longest + 5 * 60)
            ctx.base_rps = rps * level.shape_at(t)
            e = _event(ctx, name, t, beh, world)
            events.append(e)
            t = e.end + float(rng.uniform(8, 15)) * 60
    if t1 > t1_drawn:
        # the everyday traffic of the longer day: the same shoppers, apps, crawlers, probes
        a = t1_drawn
        gen.sessions(rows, arrivals(rng, a, level.session_rates(a)))
        app_clients(rows, rng, cat, world, agents, a, rps * app / per_app * level.shape[int(a - t0):],
                    beh.backend_median)
        crawlers(rows, rng, cat, a, t1, crawl, beh.backend_median)
        monitors_more(rows, rng, t1, probes)
        scanners(rows, rng, world, a, t1, scan_rate)
    cols = rows.columns()
    for rw in ctx.rewrites:
        cols = rw(cols, rng)
    keep = (cols["t"] >= t0) & (cols["t"] + cols["dur"] < t1)
    cols = {k: v[keep] for k, v in cols.items()}
    style = _style(rng, shape, tz)
    notes = {"rps": round(rps, 1), "per_session": round(per_session, 1), "host": host,
             "v6_share": round(world.v6_share, 2), "mobile_share": round(world.mobile_share, 2),
             "cgnat_addresses": sum(len(c) for c in world.cgnat), "server": style.server,
             "flush": style.flush, "cdn": shape.cdn, "app_share": round(app, 2), "lines": len(cols["t"])}
    if shape.cdn:
        edges = bool(rng.random() < 0.5)
        notes["edge_addresses"] = edges
        if edges:
            _edge_addresses(rng, cols)
    labels = Labels(shape.name, seed, t0, t1, tz_string(tz), events, quiet_day=quiet, notes=notes)
    return Log(cols, style, rng), labels


class _Level:
    """The day's traffic level second by second (a multiple of the shop's mean), longer
    when its events need it: the level then wanders on from where it was."""

    def __init__(self, shape: np.ndarray, sessions_per_level: float, t0: float) -> None:
        self.shape = shape
        self.per = sessions_per_level
        self.t0 = t0

    def shape_at(self, t: float) -> float:
        return float(self.shape[int(np.clip(t - self.t0, 0, len(self.shape) - 1))])

    def session_rate(self, t: float) -> float:
        """Shopper sessions per second at ``t``."""
        return self.per * self.shape_at(t)

    def session_rates(self, a: float | None = None) -> np.ndarray:
        """Sessions per second for every second from ``a`` (the start) to the end."""
        return self.per * self.shape[0 if a is None else int(a - self.t0):]

    def extend(self, rng: Rng, t1: float) -> float:
        """Make the day last until ``t1`` (whole seconds); returns its new end."""
        more = max(1, int(np.ceil(t1 - self.t0)) - len(self.shape))
        walk = np.exp(np.cumsum(rng.normal(0, 0.015, more // 60 + 1)))
        self.shape = np.concatenate([self.shape, self.shape[-1] * np.repeat(walk, 60)[:more]])
        return self.t0 + len(self.shape)


def _style(rng: Rng, shape: Shape, tz: int) -> Style:
    if not shape.cdn and shape.name == "small_shop" and rng.random() < 0.25:
        return Style("apache", tz, dash_zero_bytes=True)
    return Style("nginx", tz, workers=int(rng.integers(1, 9)),
                 flush=float(rng.choice([0.0, 0.0, 1.0, 2.0, 5.0])))


def _edge_addresses(rng: Rng, cols: dict[str, np.ndarray]) -> None:
    """No real-IP module: the origin sees the CDN's edge addresses, a few dozen for everyone."""
    n = int(rng.integers(20, 80))
    edges = np.array([f"172.{int(rng.integers(64, 72))}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"
                      if i % 3 else f"104.{int(rng.integers(16, 32))}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"
                      for i in range(n)], dtype=object)
    pop: dict[str, int] = {}  # each client reaches one POP, which has a few egress addresses
    draw = rng.integers(0, n, len(cols["client"])).tolist()
    which = np.array([pop.setdefault(c, d) for c, d in zip(cols["client"].tolist(), draw, strict=True)])
    cols["client"] = edges[(which + rng.integers(0, 3, len(which))) % n]


def _bump(c: inc.Ctx, name: str, t: float, backend_median: float) -> Event:
    rng = c.rng
    if name == "crawler_spike":
        return inc.crawler_spike(c, t, float(rng.uniform(300, 1200)), backend_median)
    if name == "newsletter_bump":
        return inc.newsletter_bump(c, t)
    return inc.deploy_blip(c, t, float(rng.uniform(10, 30)))


def _event(c: inc.Ctx, name: str, t: float, beh: Behaviour, world: World) -> Event:
    rng = c.rng
    lo, hi = EVENT_DURATION.get(name, (60, 600))
    d = float(rng.uniform(lo, hi))
    u = float(rng.uniform(0, 1))
    if name in FLOODS:
        # a flood's length is bounded so a log stays a few million lines (a big flood is short here)
        d = min(d, max(60.0, MAX_FLOOD_LINES / (c.base_rps * FLOODS[name](u))))
    table: dict[str, Callable[[], Event]] = {
        "get_flood_few": lambda: inc.get_flood(c, t, d, mult=FLOODS[name](u), many=False),
        "get_flood_many": lambda: inc.get_flood(c, t, d, mult=FLOODS[name](u), many=True),
        "randomized_404": lambda: inc.randomized_404(c, t, d, mult=FLOODS[name](u)),
        "randomized_query": lambda: inc.randomized_query(c, t, d, mult=FLOODS[name](u)),
        "cache_bust": lambda: inc.cache_bust(c, t, d, mult=FLOODS[name](u)),
        "low_and_slow": lambda: inc.low_and_slow(c, t, d, mult=FLOODS[name](u)),
        "slowloris": lambda: inc.slowloris(c, t, d, post=False, header_timeout=beh.header_timeout,
                                           limit_conn=bool(rng.random() < 0.5)),
        "slow_post": lambda: inc.slowloris(c, t, d, post=True, header_timeout=beh.header_timeout,
                                           limit_conn=bool(rng.random() < 0.5)),
        "backend_dead": lambda: inc.backend_dead(c, t, d),
        "backend_hang": lambda: inc.backend_hang(c, t, d, read_timeout=float(rng.choice([30, 60, 60, 90])),
                                                 restart=bool(rng.random() < 0.5)),
        "deploy_blip": lambda: inc.deploy_blip(c, t, float(rng.uniform(10, 30))),
        "flash_step": lambda: inc.crowd(c, t, rise=float(rng.uniform(5, 30)), hold=float(rng.uniform(180, 720)),
                                        decay=float(rng.uniform(120, 480)), mult=3 + 7 * u,
                                        p_known=float(rng.uniform(0.5, 0.8)), name="flash_step"),
        "flash_build": lambda: inc.crowd(c, t, rise=float(rng.uniform(120, 480)), hold=float(rng.uniform(180, 600)),
                                         decay=float(rng.uniform(180, 480)), mult=3 + 5 * u,
                                         p_known=float(rng.uniform(0.5, 0.8)), name="flash_build"),
        "flash_mobile": lambda: inc.crowd(c, t, rise=float(rng.uniform(5, 240)), hold=float(rng.uniform(180, 600)),
                                          decay=float(rng.uniform(120, 480)), mult=4 + 6 * u,
                                          p_known=float(rng.uniform(0.1, 0.3)), name="flash_mobile",
                                          world=_mobile_world(c.rng, world)),
    }
    return table[name]()


def _mobile_world(rng: Rng, world: World) -> World:
    """The same country seen through phones: mostly carrier NAT and IPv6 (a TV spot, a viral post)."""
    return World(rng, world.r, world.isp16, world.isp_v6, world.cgnat, world.mobile_v6,
                 v6_share=0.5, mobile_share=0.8, cgnat_share=0.5)


ATTACKS_ALL = ("randomized_404", "low_and_slow", "cache_bust", "flash_step", "backend_dead", "slowloris",
               "flash_build", "backend_hang", "randomized_query", "get_flood_few", "slow_post", "flash_mobile",
               "get_flood_many")

SMALL = Shape("small_shop", rps=(5, 30), hours=(1.0, 2.0), cdn=False, diurnal=0.15,
              menu=ATTACKS_ALL, n_products=(80, 800), app_share=(0.0, 0.08), local_start_hour=(9, 20))
MID = Shape("mid_shop", rps=(100, 400), hours=(1.0, 1.5), cdn=False, diurnal=0.6,
            menu=ATTACKS_ALL, n_products=(800, 6000), app_share=(0.05, 0.2), local_start_hour=(18, 20))
CDN = Shape("cdn_origin", rps=(20, 150), hours=(1.0, 2.0), cdn=True, diurnal=0.3,
            menu=tuple(a for a in ATTACKS_ALL if a not in ("slowloris", "slow_post")),
            n_products=(300, 4000), app_share=(0.05, 0.25), local_start_hour=(8, 20))


def small_shop(seed: int, minutes: float | None = None) -> tuple[Log, Labels]:
    """A small shop, 5-30 lines/s, bursty: a page and its assets together, then a pause."""
    return build(SMALL, seed, minutes)


def mid_shop(seed: int, minutes: float | None = None) -> tuple[Log, Labels]:
    """A mid-size shop, 100-400 lines/s, its evening rising and falling over the log."""
    return build(MID, seed, minutes)


def cdn_origin(seed: int, minutes: float | None = None) -> tuple[Log, Labels]:
    """An origin behind a CDN: no asset lines at all; on half the seeds only edge addresses."""
    return build(CDN, seed, minutes)
