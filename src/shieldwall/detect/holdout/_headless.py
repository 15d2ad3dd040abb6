"""Northwind: a headless storefront's API origin, its callers, and what goes wrong.

A second held-out family, written late (session 7) from this description and
never from the detector's rules; scored, never tuned on.

The shop is "headless": shoppers load the storefront from a CDN and a
server-side renderer (SSR); the log is the API origin's (nginx ``combined``),
so it holds no asset lines at all, and what it sees of a shopper is:

- one or two ``GET /api/pages/...`` per page view, asked by the renderer from
  its own few egress addresses (4-8 of them, one user agent: ``node-fetch``),
  never by the shopper;
- what the shopper's browser asks itself, from its own address (home, carrier
  NAT, IPv6), with its own user agent and the storefront page as referer:
  cart reads and writes, stock checks on a product page, search-as-you-type
  (one request per typed prefix), an analytics beacon now and then;
- the mobile app (its own user agent, no referer, API only), polling its
  inbox every 60 s while open;
- preconnects to the API that never send a request (``"-" 408 0``).

Bots that belong: an uptime monitor (``/api/health`` every 30 s from two
places), a partner pulling the product feed every 10 minutes, a search
engine's crawl (which reaches the origin as more SSR requests), a scanner.
The server's clock is local time with its offset.

Per seed a schedule is drawn from ``MENU``: an app push that brings app users
within a minute and fades over ten; a product drop (hundreds to thousands of
people on one product page, their browsers checking its stock every few
seconds for minutes before and through the drop, then buying: a crowd that
repeats one URL); a flood on the product API from a few hundred addresses;
random searches from a few hundred addresses; credential stuffing (thousands
of residential addresses, each one login attempt every 20-60 s, 401s); the
database down (the API answers 500 at once); the database slow (the renderer
gives up after 8 s, browsers get 504 after 30 s). Every fourth seed is a
quiet day: only bumps that are not incidents (a cache warm-up job from one
internal address, an e-mail campaign, a rolling deploy where a few requests
fail, one in twenty, while instances restart), which also appear on other
days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from shieldwall.detect.families._labels import Event, Labels
from shieldwall.detect.holdout._shop import BROWSERS, HoldoutLog

FAMILY = "headless_shop"
HOST = "https://northwind.example"
SSR_UA = "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"
APP_UA = ("Northwind/7.3.0 (iPhone; iOS 18.2; Scale/3.00)", "Northwind/7.2.9 (Linux; Android 15) okhttp/4.12.0")
UPTIME = "Better Uptime Bot Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
FEED_UA = "PartnerSync/2.4"
ROUTES = ("home", "collections/men", "collections/women", "collections/kids", "collections/outdoor",
          "collections/sale", "journal", "stores")
TERMS = ("jacket", "boots", "rain", "wool", "fleece", "hiking", "socks", "beanie", "parka", "trail", "kids", "gift")
MENU = ("push", "api_flood", "db_down", "drop", "search_flood", "stuffing", "db_slow")
BUMPS = ("warmup", "campaign", "rolling_deploy")
VERDICT: dict[str, tuple[str, str | None]] = {
    "push": ("flash_crowd", None), "drop": ("flash_crowd", None), "api_flood": ("ddos", "flood"),
    "search_flood": ("ddos", "randomized"), "stuffing": ("ddos", "flood"), "db_down": ("backend_failure", None),
    "db_slow": ("backend_failure", None), "warmup": ("normal", None), "campaign": ("normal", None),
    "rolling_deploy": ("normal", None)}


@dataclass
class Origin:
    """The API origin for one seed: its clock, catalogue, renderer and database's bad moments."""

    rnd: random.Random
    log: HoldoutLog
    start: float
    seconds: float
    views_s: float
    """Page views a second at the day's peak."""
    products: list[int]
    ssr_ips: list[str]
    nat: list[str]
    db: list[tuple[float, float, str]] = field(default_factory=list)
    """(start, end, 'down' | 'slow' | 'deploy')."""
    wander: list[float] = field(default_factory=list)

    def home_ip(self) -> str:
        r = self.rnd
        return f"{r.choice((5, 37, 45, 62, 71, 79, 84, 88, 94, 95, 109, 176, 178, 185, 212))}." \
               f"{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def shopper_ip(self) -> str:
        u = self.rnd.random()
        if u < 0.25:
            return self.rnd.choice(self.nat)
        if u < 0.5:
            r = self.rnd
            return f"2001:{r.randrange(0x4000, 0x4fff):x}:{r.randrange(0xffff):x}:{r.randrange(0xffff):x}::" \
                   f"{r.randrange(1, 0xffff):x}"
        return self.home_ip()

    def product(self) -> int:
        n = len(self.products)
        return self.products[min(int(n * self.rnd.random() ** 2.5), n - 1)]

    def rate(self, t: float) -> float:
        """Page views a second: the local time of day times a slow wander."""
        h = ((t + self.log.tz_minutes * 60) / 3600) % 24
        day = 0.1 + 0.5 * math.exp(-((h - 13) / 2.5) ** 2 / 2) + math.exp(-((h - 21) / 2.0) ** 2 / 2)
        k = max(0, min(int((t - self.start) / 60), len(self.wander) - 1))
        return self.views_s * day * self.wander[k]

    def api(self, t: float, client: str, method: str, target: str, ref: str, ua: str, *, dur: float = 0.05,
            nbytes: int = 2000, owner: int = -1, status: int = 200, patience: float = 1e9) -> float | None:
        """One API request: its completion when the app answered, else None."""
        req = f"{method} {target} HTTP/1.1"
        r = self.rnd
        for a, b, mode in self.db:
            if not a <= t < b:
                continue
            if mode == "down":
                self.log.add(t + r.uniform(0.002, 0.02), client, req, 500, 61, ref, ua, owner)
                return None
            if mode == "deploy" and r.random() < 0.05:
                self.log.add(t + r.uniform(0.001, 0.004), client, req, 502, 157, ref, ua, owner)
                return None
            if mode == "slow":
                slow = r.uniform(5, 60)
                if slow > min(patience, 30.0):
                    if patience < 30.0:
                        self.log.add(t + patience, client, req, 499, 0, ref, ua, owner)
                    else:
                        self.log.add(t + 30.0, client, req, 504, 167, ref, ua, owner)
                    return None
                dur += slow
        done = t + dur * r.lognormvariate(0, 0.6)
        self.log.add(done, client, req, status, nbytes if status != 304 else 0, ref, ua, owner)
        return done


def _visit(o: Origin, t: float, owner: int, landing: str | None = None) -> None:
    """One shopper on the storefront: page views (the renderer asks), the browser's own calls."""
    r = o.rnd
    ip, ua = o.shopper_ip(), r.choice(BROWSERS)
    if r.random() < 0.1:
        o.log.add(t + 65, ip, "-", 408, 0, "-", "-", owner)
    views = 1 if r.random() < 0.4 else 2 + min(int(r.expovariate(0.25)), 30)
    page = landing or (f"products/{o.product()}" if r.random() < 0.5 else r.choice(ROUTES))
    cart = 0
    while views > 0 and t < o.start + o.seconds:
        done = o.api(t, r.choice(o.ssr_ips), "GET", f"/api/pages/{page}", "-", SSR_UA, dur=0.06,
                     nbytes=r.randint(4000, 30000), owner=owner, patience=8.0)
        if done is None:
            if r.random() < 0.5:
                return
            t += r.uniform(3, 10)
            views -= 1
            continue
        if r.random() < 0.3:
            o.api(t + 0.01, r.choice(o.ssr_ips), "GET", "/api/recommendations?for=" + page.split("/")[-1], "-",
                  SSR_UA, dur=0.08, nbytes=r.randint(1500, 6000), owner=owner, patience=8.0)
        ref = f"{HOST}/{'' if page == 'home' else page}"
        b = done + r.uniform(0.3, 1.5)
        o.api(b, ip, "GET", "/api/cart", ref, ua, dur=0.02, nbytes=300 + 400 * cart, owner=owner)
        if page.startswith("products/"):
            o.api(b + r.uniform(0.05, 0.4), ip, "GET", f"/api/stock/{page.split('/')[1]}", ref, ua, dur=0.015,
                  nbytes=90, owner=owner)
            if r.random() < 0.1:
                o.api(b + r.uniform(3, 20), ip, "POST", "/api/cart/items", ref, ua, dur=0.08, nbytes=420,
                      owner=owner, status=201)
                cart += 1
        if r.random() < 0.15:
            term, s = r.choice(TERMS), b + r.uniform(1, 5)
            for k in range(2, len(term) + 1):
                o.api(s, ip, "GET", f"/api/search?q={term[:k]}", ref, ua, dur=0.04, nbytes=r.randint(500, 4000),
                      owner=owner)
                s += r.uniform(0.12, 0.4)
        if r.random() < 0.5:
            o.api(b + r.uniform(0.5, 3), ip, "POST", "/api/events", ref, ua, dur=0.005, nbytes=0, owner=owner,
                  status=204)
        views -= 1
        t = done + r.lognormvariate(math.log(12), 1.0)
        if cart and r.random() < 0.35:
            for step, (m, path, st) in enumerate((("GET", "/api/checkout", 200), ("POST", "/api/checkout/payment", 201))):
                o.api(t + 20 * step, ip, m, path, f"{HOST}/checkout", ua, dur=0.3, nbytes=800, owner=owner,
                      status=st)
            return
        page = f"products/{o.product()}" if r.random() < 0.6 else r.choice(ROUTES)


def _app(o: Origin, t: float, owner: int, landing: int | None = None) -> None:
    """The mobile app open for a while: API calls only, its inbox polled every 60 s."""
    r = o.rnd
    ip, ua = o.shopper_ip(), r.choice(APP_UA)
    end, poll = t + min(r.lognormvariate(math.log(150), 0.8), 1200), t + 60
    first = True
    while t < end and t < o.start + o.seconds:
        pid = landing if first and landing is not None else o.product()
        target = r.choice((f"/api/app/products/{pid}", "/api/app/feed", "/api/app/cart", f"/api/app/products/{pid}"))
        if o.api(t, ip, "GET", target, "-", ua, dur=0.04, nbytes=r.randint(800, 12000), owner=owner,
                 patience=20) is None and r.random() < 0.5:
            return
        first = False
        t += r.lognormvariate(math.log(8), 0.9)
        while poll < t and poll < end:
            o.api(poll, ip, "GET", "/api/app/inbox", "-", ua, dur=0.02, nbytes=150, owner=owner, patience=20)
            poll += 60


def _arrivals(o: Origin, a: float, b: float, level: float, shape: tuple[float, float, float] | None) -> Iterator[float]:
    """Arrival times in [a, b) at the shop's rate times ``level`` (times a rise-hold-fall ``shape``)."""
    r, t = o.rnd, a
    top = max(o.rate(a + (b - a) * k / 20) for k in range(21)) * level * 1.25 + 1e-9
    while True:
        t += r.expovariate(top)
        if t >= b:
            return
        f = level
        if shape is not None:
            rise, hold, fall = shape
            x = t - a
            f *= min(1.0, x / rise) if x < rise else 1.0 if x < rise + hold else max(0.0, 1 - (x - rise - hold) / fall)
        if r.random() * top < o.rate(t) * f:
            yield t


def _bots(o: Origin, t0: float, t1: float) -> None:
    r = o.rnd
    for _ in range(2):
        ip, t = o.home_ip(), t0 + r.uniform(0, 30)
        while t < t1:
            o.api(t, ip, "GET", "/api/health", "-", UPTIME, dur=0.005, nbytes=15, patience=10)
            t += 30
    ip, t = o.home_ip(), t0 + r.uniform(0, 600)
    while t < t1:
        o.api(t, ip, "GET", "/api/feed/products.json", "-", FEED_UA, dur=2.0, nbytes=r.randint(3_000_000, 8_000_000))
        t += 600
    crawl = r.uniform(0.05, 0.4)  # a search engine's crawl, as the renderer asks for it
    t = t0
    while True:
        t += r.expovariate(crawl)
        if t >= t1:
            break
        o.api(t, r.choice(o.ssr_ips), "GET", f"/api/pages/products/{o.product()}", "-", SSR_UA, dur=0.06,
              nbytes=20000, patience=8.0)
    for _ in range(int((t1 - t0) / 3600 * r.uniform(0.5, 2)) + 1):
        ip, t = o.home_ip(), r.uniform(t0, t1)
        for _ in range(r.randint(15, 50)):
            o.api(t, ip, "GET", r.choice(("/.env", "/api/.git/HEAD", "/wp-admin/", "/api/v1/../../etc/passwd",
                                          "/actuator/health", "/server-status")), "-", "Mozilla/5.0 (scanner)",
                  dur=0.003, nbytes=160, status=404)
            t += r.expovariate(3)


def _rand(r: random.Random, n: int) -> str:
    return "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _happen(o: Origin, name: str, a: float, b: float, owner: int, base: float) -> None:
    """Make one item of the schedule happen in [a, b) (``base``: the shop's API lines a second then)."""
    r = o.rnd
    if name in ("db_down", "db_slow", "rolling_deploy"):
        o.db.append((a, b, {"db_down": "down", "db_slow": "slow"}.get(name, "deploy")))
        return
    if name == "push":  # app users arrive within a minute, fewer and fewer for ten
        n = int(base * r.uniform(60, 150))
        pid = o.product()
        for _ in range(n):
            _app(o, a + min(r.expovariate(1 / 90), b - a - 1), owner, pid if r.random() < 0.6 else None)
        return
    if name == "drop":  # people wait on one product page, their browsers check its stock
        pid, people = o.product(), int(base * r.uniform(40, 120))
        at = a + (b - a) * r.uniform(0.4, 0.6)
        ref = f"{HOST}/products/{pid}"
        for _ in range(people):
            ip, ua = o.shopper_ip(), r.choice(BROWSERS)
            t = a + (at - a) * r.random() ** 0.5
            o.api(t, r.choice(o.ssr_ips), "GET", f"/api/pages/products/{pid}", "-", SSR_UA, dur=0.06,
                  nbytes=24000, owner=owner, patience=8.0)
            every = r.uniform(2.5, 6)
            while t < b:
                t += every * r.uniform(0.8, 1.2)
                o.api(t, ip, "GET", f"/api/stock/{pid}", ref, ua, dur=0.015, nbytes=90, owner=owner)
                if t > at and r.random() < 0.08:
                    o.api(t + 1, ip, "POST", "/api/cart/items", ref, ua, dur=0.1, nbytes=420, owner=owner,
                          status=201 if r.random() < 0.3 else 409)
                    break
        return
    if name == "campaign":
        shape = ((b - a) * 0.2, (b - a) * 0.3, (b - a) * 0.5)
        for s in _arrivals(o, a, b, r.uniform(0.4, 0.8), shape):
            _visit(o, s, owner, "collections/sale" if r.random() < 0.6 else None)
        return
    if name == "warmup":  # one internal address walks every page route once
        ip, t = f"10.0.{r.randrange(4)}.{r.randrange(2, 250)}", a
        for pid in r.sample(o.products, min(len(o.products), r.randint(800, 2500))):
            o.api(t, ip, "GET", f"/api/pages/products/{pid}", "-", "cache-warmer/1.2", dur=0.05, nbytes=20000,
                  owner=owner)
            t += (b - a) / 2500 * r.uniform(0.5, 1.5)
            if t >= b:
                break
        return
    if name == "stuffing":  # residential proxies, each a login now and then
        bots = r.randint(2000, 4000)
        for _ in range(bots):
            ip, ua, t = o.home_ip(), r.choice(BROWSERS), a + r.uniform(0, 60)
            gap = r.uniform(20, 60)
            while t < b:
                o.api(t, ip, "POST", "/api/login", f"{HOST}/account/login", ua, dur=0.25, nbytes=70, owner=owner,
                      status=401)
                t += gap * r.uniform(0.7, 1.3)
        return
    addrs = [f"{r.randrange(1, 223)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
             for _ in range(r.randint(200, 600))]
    total = base * r.uniform(4, 12)
    ua = r.choice((BROWSERS[0], "python-httpx/0.27.0", "Mozilla/5.0"))
    t = a
    while True:
        t += r.expovariate(total * min(1.0, (t - a) / 20 + 0.05))
        if t >= b:
            return
        ip = r.choice(addrs)
        if name == "api_flood":
            o.api(t, ip, "GET", f"/api/products?page={r.randint(1, 3)}", "-", ua, dur=0.08, nbytes=9000, owner=owner)
        else:  # search_flood
            o.api(t, ip, "GET", f"/api/search?q={_rand(r, r.randint(4, 10))}", "-", r.choice(BROWSERS), dur=0.3,
                  nbytes=600, owner=owner)


def _duration(r: random.Random, name: str) -> float:
    lo, hi = {"push": (600, 900), "drop": (600, 1200), "db_down": (120, 420), "db_slow": (180, 480),
              "rolling_deploy": (40, 90), "warmup": (180, 420), "campaign": (1200, 1800)}.get(name, (180, 480))
    return r.uniform(lo, hi)


def headless_shop(seed: int, minutes: float | None = None) -> tuple[HoldoutLog, Labels]:
    """One to two hours of Northwind's API origin, and what happened in it (see the module docstring)."""
    r = random.Random(seed * 104729 + 3)
    seconds = 60 * (minutes if minutes is not None else r.uniform(60, 120))
    tz = r.choice((-480, -300, 0, 60, 120, 540))
    day0 = 1780272000 + 86400 * (seed % 200)
    start = float(day0 + int(r.uniform(10, 22) * 3600) - tz * 60)
    log = HoldoutLog(tz)
    log.end = start + seconds
    o = Origin(r, log, start, seconds, r.uniform(0.5, 4.0), list(range(10000, 10000 + r.randint(200, 2000))),
               [f"18.{r.randrange(150, 200)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(r.randint(4, 8))],
               [f"100.{r.randrange(64, 128)}.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(r.randint(8, 40))])
    w = 0.0
    for _ in range(int(seconds / 60) + 2):
        w = 0.92 * w + r.gauss(0, 0.05)
        o.wander.append(math.exp(w))
    quiet = seed % 4 == 3
    warm, tail = min(900.0, 0.25 * seconds), min(300.0, 0.1 * seconds)
    k = 0 if quiet else max(1, int(seconds / 1800))
    items = [MENU[(2 * seed + j) % len(MENU)] for j in range(k)]
    items += list(BUMPS) if quiet else r.sample(BUMPS, r.randint(0, 2))
    r.shuffle(items)
    drawn = [(n, _duration(r, n)) for n in items]
    gap = 300.0
    while drawn and sum(d for _, d in drawn) + gap * len(drawn) > seconds - warm - tail:
        drawn.pop()
    slack = seconds - warm - tail - sum(d for _, d in drawn) - gap * len(drawn)
    cuts = sorted(r.uniform(0, slack) for _ in drawn)
    events: list[Event] = []
    t, prev = start + warm, 0.0
    for (name, dur), cut in zip(drawn, cuts, strict=True):
        t += cut - prev + (gap if events else 0)
        prev = cut
        a, b = t, t + dur
        base = o.rate(a) * 4.0  # API lines a second: ~4 per page view
        _happen(o, name, a, b, len(events), base)
        verdict, kind = VERDICT[name]
        events.append(Event(name, a, b, verdict, kind))
        t = b
    for s in _arrivals(o, start, start + seconds, 1.0, None):
        if r.random() < 0.2:
            _app(o, s, -1)
        else:
            _visit(o, s, -1)
    _bots(o, start, start + seconds)
    labels = Labels(FAMILY, seed, start, start + seconds, log._stamp(0)[-5:], events, quiet,
                    {"views_s": round(o.views_s, 2), "ssr_ips": len(o.ssr_ips), "lines": len(log)})
    return log, labels
