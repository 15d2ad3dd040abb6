"""Kettle & Kiln: a ceramics-and-tea web shop, its visitors, and what goes wrong.

The shop (nginx in front of one app server, log in ``combined``):

- Catalogue: ten categories (``/c/<cat>?page=N&sort=K``), a few hundred to
  fifteen hundred products (``/p/<slug>-<id>``, popularity Zipf-like), search
  (``/search?q=``), ``/cart``, ``POST /cart/add``, ``/checkout``, ``POST
  /checkout/pay``; a JSON API ``/api/v2/...`` for its mobile app; static files
  on ``/static/...`` served by nginx from disk (they stay 200 when the app dies).
- Shoppers come as sessions (Poisson arrivals whose rate follows the local
  time of day: a lunch shoulder, an evening peak, plus slow minute-to-minute
  wander). A session is a browsing path (home -> category -> product -> cart
  ...), think times lognormal with a heavy tail; a page brings its assets a
  fraction of a second later (all of them on a cold cache, images only after).
  Browsers speak HTTP/2. Some shoppers sit behind a carrier NAT (a handful of
  addresses for many phones), some on IPv6; preconnects that never send a
  request end as ``"-" 408 0`` lines.
- The mobile app calls the API only (no assets) and polls notifications
  every 30 s while open.
- Bots that belong: Googlebot and Bingbot crawl pages, an uptime monitor hits
  ``/healthz`` every minute from three places, a price-comparison service
  pulls ``/feeds/prices.xml`` and then product stock, and a vulnerability
  scanner now and then tries a few dozen paths (404).
- The server's clock is local time with its offset (drawn per seed).

Per seed a schedule is drawn from a menu (see ``MENU``): flash crowds (a TV
mention stepping up within 30 s; a sale building over 10-20 minutes), floods
(a few hundred addresses on one URL; a low-and-slow botnet of 2,000-5,000
addresses, each a page every 5-20 s), randomized floods (random query strings;
random nonexistent paths answered 404), cache busting over several paths,
slowloris (408s when the header timeout cuts them), a backend that dies (502
at once) or hangs (clients give up with 499, the rest get 504 after the read
timeout). Every fourth seed is a quiet day: only bumps that are not incidents
(a newsletter, a crawler spike, a 10-30 s deploy blip of 502s), which also
appear on other days. Windows in the labels are what was made to happen.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shieldwall.detect.families._labels import Event, Labels

FAMILY = "holdout_shop"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CATS = ("teapots", "cups", "bowls", "plates", "vases", "tea-black", "tea-green", "tea-herbal", "gifts", "sale")
WORDS = ("speckled", "celadon", "ash", "river", "moss", "ember", "tenmoku", "shino", "salt", "dusk", "kyoto",
         "sencha", "oolong", "matcha", "rooibos", "earl", "mug", "cup", "pot", "bowl", "plate", "vase", "set")
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
)
APP_UA = ("KilnApp/4.1.2 (iPhone; iOS 18.1; Scale/3.00)", "KilnApp/4.1.0 okhttp/4.12.0 (Android 14)")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
UPTIME = "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"
PRICES = "PriceRunnerBot/3.1 (+https://www.pricerunner.example/bot)"
HOST = "https://kettleandkiln.example"
STATIC = ("/static/css/app.3f9a1c.css", "/static/js/app.77be02.js", "/static/fonts/lora.woff2",
          "/static/img/logo.svg", "/favicon.ico")
MENU = ("tv_mention", "flood", "random_404", "backend_dies", "sale", "low_and_slow", "cache_bust",
        "random_query", "slowloris", "backend_hangs")
BUMPS = ("newsletter", "crawler_spike", "deploy_blip")
VERDICT: dict[str, tuple[str, str | None]] = {
    "tv_mention": ("flash_crowd", None), "sale": ("flash_crowd", None), "flood": ("ddos", "flood"),
    "low_and_slow": ("ddos", "flood"), "random_query": ("ddos", "randomized"), "random_404": ("ddos", "randomized"),
    "cache_bust": ("ddos", "cache_bust"), "slowloris": ("ddos", "slow"), "backend_dies": ("backend_failure", None),
    "backend_hangs": ("backend_failure", None), "newsletter": ("normal", None), "crawler_spike": ("normal", None),
    "deploy_blip": ("normal", None)}


class HoldoutLog:
    """The access log being written: each request stamped with the second it finished (as nginx does)."""

    def __init__(self, tz_minutes: int) -> None:
        self.tz_minutes = tz_minutes
        self.end = math.inf
        """Where the log was cut: requests still in flight then are not in it."""
        self.done: list[float] = []
        self.fields: list[tuple[str, str, int, int, str, str]] = []
        self.owner: list[int] = []
        """Index of the labelled event whose actors sent the request; -1 for everyday traffic."""

    def add(self, done: float, client: str, request: str, status: int, nbytes: int, ref: str, ua: str,
            owner: int = -1) -> None:
        self.done.append(done)
        self.fields.append((client, request, status, nbytes, ref, ua))
        self.owner.append(owner)

    def __len__(self) -> int:
        return len(self.done)

    def _stamp(self, sec: int) -> str:
        g = time.gmtime(sec + self.tz_minutes * 60)
        m = abs(self.tz_minutes)
        tz = f"{'-' if self.tz_minutes < 0 else '+'}{m // 60:02d}{m % 60:02d}"
        return f"{g.tm_mday:02d}/{MONTHS[g.tm_mon - 1]}/{g.tm_year}:{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} {tz}"

    def lines(self) -> Iterator[str]:
        """In completion order: nginx writes a line when the response is done."""
        stamps: dict[int, str] = {}
        for i in np.argsort(np.asarray(self.done), kind="stable").tolist():
            if self.done[i] >= self.end:
                break
            sec = int(self.done[i])
            ts = stamps.get(sec) or stamps.setdefault(sec, self._stamp(sec))
            client, req, status, nb, ref, ua = self.fields[i]
            yield f'{client} - - [{ts}] "{req}" {status} {nb} "{ref}" "{ua}"'

    def write(self, path: Path) -> Path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in self.lines())
        return path


@dataclass
class Shop:
    """The shop's world for one seed: its clock, its catalogue, its backend's bad moments."""

    rnd: random.Random
    log: HoldoutLog
    start: float
    seconds: float
    peak_sessions_s: float
    products: list[str]
    product_cum: list[float]
    nat_pool: list[str]
    limit_req: bool
    read_timeout: float
    outages: list[tuple[float, float, str]] = field(default_factory=list)
    """(start, end, 'dead' | 'hang')."""
    loads: list[tuple[float, float, float]] = field(default_factory=list)
    """(start, end, extra latency factor) while an attack keeps the app busy."""
    wander: list[float] = field(default_factory=list)

    # -- addresses and pages ------------------------------------------------------------------
    def home_ip(self) -> str:
        r = self.rnd
        return f"{r.choice((24, 31, 46, 62, 73, 77, 81, 86, 90, 92, 98, 109, 151, 176, 188, 213))}." \
               f"{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def shopper_ip(self, mobile: float = 0.3) -> str:
        u = self.rnd.random()
        if u < mobile:
            return self.rnd.choice(self.nat_pool)
        if u < mobile + 0.2:
            r = self.rnd
            return f"2a02:{r.randrange(0x1000, 0xffff):x}:{r.randrange(0xffff):x}:{r.randrange(0xffff):x}:" \
                   f"{r.randrange(0xffff):x}:{r.randrange(0xffff):x}:{r.randrange(0xffff):x}:{r.randrange(0xffff):x}"
        return self.home_ip()

    def product(self) -> str:
        return self.products[bisect(self.product_cum, self.rnd.random() * self.product_cum[-1])]

    def category(self) -> str:
        return f"/c/{self.rnd.choice(CATS)}"

    def page(self) -> str:
        u = self.rnd.random()
        if u < 0.55:
            return self.product()
        if u < 0.85:
            return self.category() + (f"?page={self.rnd.randint(2, 6)}" if self.rnd.random() < 0.3 else "")
        return "/" if u < 0.95 else f"/search?q={self.rnd.choice(WORDS)}"

    # -- the shop's rhythm ---------------------------------------------------------------------
    def rate(self, t: float) -> float:
        """Sessions per second: time of day (local) times a slow wander."""
        h = ((t + self.log.tz_minutes * 60) / 3600) % 24
        day = 0.12 + 0.55 * math.exp(-((h - 12.5) / 2.5) ** 2 / 2) + math.exp(-((h - 20.5) / 2.2) ** 2 / 2)
        k = min(int((t - self.start) / 60), len(self.wander) - 1)
        return self.peak_sessions_s * day * self.wander[max(k, 0)]

    # -- serving one request -------------------------------------------------------------------
    def serve(self, t: float, client: str, method: str, target: str, ref: str, ua: str, *, dyn: bool = True,
              dur: float = 0.08, nbytes: int = 20000, owner: int = -1, patience: float = 1e9,
              proto: str = "HTTP/1.1", status: int = 200) -> float | None:
        """Log the request; its completion time when it succeeded, else None (the app failed it)."""
        req = f"{method} {target} {proto}"
        if dyn:
            for a, b, mode in self.outages:
                if a <= t < b and mode == "dead":
                    self.log.add(t + self.rnd.uniform(0.0005, 0.003), client, req, 502, 157, ref, ua, owner)
                    return None
                if a <= t < b:  # hang: served when it un-hangs, if nobody gave up first
                    wait = b - t
                    if wait < min(self.read_timeout, patience):
                        break
                    if patience < self.read_timeout:
                        self.log.add(t + patience, client, req, 499, 0, ref, ua, owner)
                    else:
                        self.log.add(t + self.read_timeout, client, req, 504, 167, ref, ua, owner)
                    return None
            for a, b, f in self.loads:
                if a <= t < b:
                    dur *= f
            for a, b, _mode in self.outages:
                if a <= t < b:
                    dur += b - t
        done = t + dur * self.rnd.lognormvariate(0, 0.5)
        self.log.add(done, client, req, status, 0 if status in (304, 408) else nbytes, ref, ua, owner)
        return done


def _session(shop: Shop, t: float, owner: int, landing: str | None, ref0: str, mobile: float, views_p: float) -> None:
    """One shopper's visit: pages with their assets, think times, retries when the app fails."""
    r = shop.rnd
    ip, ua = shop.shopper_ip(mobile), r.choice(BROWSERS)
    if r.random() < 0.12:  # a preconnect that never sent a request
        shop.log.add(t + 60, ip, "-", 408, 0, "-", "-", owner)
    if r.random() < 0.15:
        _app_session(shop, t, owner, ip)
        return
    cold, ref, target = r.random() > 0.1, ref0, landing or shop.page()
    views = 1 if r.random() < 0.35 else 1 + min(int(r.expovariate(views_p)), 40)
    tries = 0
    while views > 0 and t < shop.start + shop.seconds:
        kind = target.split("/")[1].split("?")[0]
        base = {"search": 0.2, "checkout": 0.4, "cart": 0.1}.get(kind, 0.07)
        status = 404 if kind == "p" and ref.startswith("https://www.google") and r.random() < 0.02 else 200
        done = shop.serve(t, ip, "GET", target, ref, ua, dur=base, nbytes=r.randint(18000, 60000), owner=owner,
                          patience=r.lognormvariate(math.log(12), 0.5), proto="HTTP/2.0", status=status)
        if done is None:
            tries += 1
            if tries > 3 or r.random() < 0.4:
                return
            t += r.uniform(2, 8)
            continue
        tries = 0
        page_url = HOST + target
        a = done + r.uniform(0.02, 0.3)
        assets = list(STATIC) if cold else []
        assets += [f"/static/img/p/{r.randrange(9999)}-480.webp" for _ in range(r.randint(1, 6) if kind in "pc" else 1)]
        for path in assets:
            a += r.expovariate(40)
            shop.serve(a, ip, "GET", path, page_url, ua, dyn=False, dur=0.008, nbytes=r.randint(3000, 120000),
                       owner=owner, proto="HTTP/2.0", status=304 if not cold and r.random() < 0.5 else 200)
        cold = False
        views -= 1
        think = r.lognormvariate(math.log(10), 1.1)
        if r.random() < 0.03:
            think += r.expovariate(1 / 300)
        if think > 1800:
            return
        t = done + think
        ref = page_url
        if kind == "p" and r.random() < 0.12:
            shop.serve(t, ip, "POST", "/cart/add", ref, ua, dur=0.1, nbytes=0, owner=owner, proto="HTTP/2.0",
                       status=302)
            target = "/cart"
        elif kind == "cart" and r.random() < 0.45:
            target = "/checkout"
        elif kind == "checkout":
            shop.serve(t, ip, "POST", "/checkout/pay", ref, ua, dur=0.6, nbytes=900, owner=owner, proto="HTTP/2.0",
                       status=303)
            return
        else:
            target = shop.page()


def _app_session(shop: Shop, t: float, owner: int, ip: str) -> None:
    """The mobile app: API calls only, a notification poll every 30 s while it is open."""
    r = shop.rnd
    ua, end = r.choice(APP_UA), t + min(r.lognormvariate(math.log(120), 0.9), 900)
    poll = t + 30
    while t < end:
        pid = shop.product().rsplit("-", 1)[1]
        shop.serve(t, ip, "GET", r.choice(("/api/v2/home", f"/api/v2/products/{pid}", "/api/v2/cart",
                                           f"/api/v2/products?cat={r.choice(CATS)}")), "-", ua,
                   dur=0.04, nbytes=r.randint(900, 9000), owner=owner, patience=15)
        t += r.lognormvariate(math.log(6), 0.9)
        while poll < t and poll < end:
            shop.serve(poll, ip, "GET", f"/api/v2/notifications?since={int(poll) - 30}", "-", ua, dur=0.02,
                       nbytes=120, owner=owner, patience=15)
            poll += 30


def _arrivals(shop: Shop, a: float, b: float, extra: float, shape: tuple[float, float, float] | None) -> Iterator[float]:
    """Session starts in [a, b): the shop's rate times ``extra`` (times a rise-hold-fall ``shape``)."""
    r, t = shop.rnd, a
    top = max(shop.rate(x) for x in np.linspace(a, b, 30)) * extra * 1.2 + 1e-9
    while True:
        t += r.expovariate(top)
        if t >= b:
            return
        f = extra
        if shape is not None:
            rise, hold, fall = shape
            x = t - a
            f *= min(1.0, x / rise) if x < rise else 1.0 if x < rise + hold else max(0.0, 1 - (x - rise - hold) / fall)
        if r.random() * top < shop.rate(t) * f:
            yield t


def _bots(shop: Shop, t0: float, t1: float) -> None:
    """The bots that belong: crawlers, the uptime monitor, the price feed, a scanner or two."""
    r = shop.rnd
    for ua, nets, rate in ((GOOGLEBOT, "66.249.{}.{}", r.uniform(0.1, 0.8)), (BINGBOT, "157.55.{}.{}", r.uniform(0.03, 0.2))):
        ips = [nets.format(r.randint(64, 79), r.randint(1, 254)) for _ in range(8)]
        _crawl(shop, t0, t1, rate, ips, ua, -1)
    for k in range(3):
        ip, t = shop.home_ip(), t0 + r.uniform(0, 60)
        while t < t1:
            shop.serve(t, ip, "HEAD" if k == 2 else "GET", "/healthz" if k < 2 else "/", "-", UPTIME, dur=0.01,
                       nbytes=2, patience=30)
            t += 60
    ip, t = shop.home_ip(), t0 + r.uniform(0, 900)
    while t < t1:
        done = shop.serve(t, ip, "GET", "/feeds/prices.xml", "-", PRICES, dur=1.5, nbytes=r.randint(2_000_000, 5_000_000))
        s = (done or t) + 1
        for _ in range(r.randint(20, 80)):
            shop.serve(s, ip, "GET", f"/api/v2/products/{shop.product().rsplit('-', 1)[1]}/stock", "-", PRICES,
                       dur=0.03, nbytes=80)
            s += r.expovariate(2)
        t += 900
    for _ in range(int((t1 - t0) / 3600 * r.uniform(1, 3)) + 1):
        ip, t = shop.home_ip(), r.uniform(t0, t1)
        for _ in range(r.randint(20, 60)):
            shop.serve(t, ip, "GET", r.choice(("/wp-login.php", "/.env", "/admin/", "/phpmyadmin/", "/.git/config",
                                               "/xmlrpc.php", "/backup.zip")), "-", "Mozilla/5.0 zgrab/0.x",
                       dur=0.005, nbytes=150, status=404)
            t += r.expovariate(2)


def _crawl(shop: Shop, t0: float, t1: float, rate: float, ips: list[str], ua: str, owner: int) -> None:
    t = t0
    while True:
        t += shop.rnd.expovariate(rate)
        if t >= t1:
            return
        shop.serve(t, shop.rnd.choice(ips), "GET", shop.page(), "-", ua, dur=0.08, nbytes=30000, owner=owner)


def _rand(r: random.Random, n: int) -> str:
    return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _attack(shop: Shop, name: str, a: float, b: float, owner: int, base_lines: float) -> float | None:
    """Make a labelled attack or failure happen in [a, b); returns its observable start when later than ``a``."""
    r = shop.rnd
    if name in ("backend_dies", "deploy_blip"):
        shop.outages.append((a, b, "dead"))
        return None
    if name == "backend_hangs":
        shop.outages.append((a, b, "hang"))
        return None
    if name == "slowloris":
        timeout = r.choice((15.0, 30.0, 60.0))
        for _ in range(r.randint(1, 3)):
            ip, conns = shop.home_ip(), r.randint(100, 400)
            ua = r.choice(BROWSERS)
            for _ in range(conns):
                t = a + r.uniform(0, 5)
                while t < b:
                    shop.log.add(t + timeout, ip, f"GET /?{r.randrange(2000)} HTTP/1.1", 408, 0, "-", ua, owner)
                    t += timeout + r.uniform(0.01, 0.2)
        return a + timeout
    if name == "low_and_slow":
        bots = r.randint(2000, 5000)
        gap = min(20.0, max(5.0, bots / (r.uniform(3, 5) * base_lines)))
        shop.loads.append((a, b, 1.5))
        for _ in range(bots):
            ip, ua, t = shop.home_ip(), r.choice(BROWSERS), a + r.uniform(0, 90)
            while t < b:
                target = shop.page()
                ref = r.choice(("https://www.google.com/", HOST + "/", HOST + shop.page()))
                shop.serve(t, ip, "GET", target, ref, ua, nbytes=r.randint(18000, 60000), owner=owner)
                t += gap * r.uniform(0.7, 1.3)
        return None
    total = base_lines * r.uniform(5, 15)
    addrs = [f"{r.randrange(1, 223)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
             for _ in range(r.randint(150, 500))]
    per_ip = total / len(addrs)
    fixed = r.choice(("/", shop.product(), "/search?q=teapot"))
    fixed_ua = r.choice((BROWSERS[0], "python-requests/2.31.0", "Go-http-client/1.1"))
    shop.loads.append((a, b, {"cache_bust": 4.0, "random_query": 2.0}.get(name, 1.3)))
    paths = [shop.product(), "/", shop.category()]
    t = a
    while True:
        t += r.expovariate(total * min(1.0, (t - a) / 15 + 0.05))
        if t >= b:
            return None
        ip = r.choice(addrs)
        ua, status, dur = fixed_ua, 200, 0.08
        if name == "flood":
            target = fixed
            if shop.limit_req and per_ip > 5 and r.random() > 5 / per_ip:
                shop.log.add(t + 0.001, ip, f"GET {target} HTTP/1.1", 503, 197, "-", ua, owner)
                continue
        elif name == "random_query":
            target, ua = f"{r.choice(paths)}?{_rand(r, 5)}={_rand(r, 8)}", r.choice(BROWSERS)
        elif name == "random_404":
            target, ua, status, dur = f"/{_rand(r, 8)}/{_rand(r, 6)}.html", r.choice(BROWSERS), 404, 0.03
        else:  # cache_bust
            target = r.choice((f"/search?q={_rand(r, 7)}",
                               f"{shop.category()}?page={r.randint(1, 500)}&sort={r.choice(('price', 'new', 'name', _rand(r, 4)))}",
                               f"{shop.product()}?v={_rand(r, 6)}"))
            dur = 0.3
        shop.serve(t, ip, "GET", target, "-", ua, dur=dur, nbytes=r.randint(300, 40000), owner=owner, status=status)


def _duration(r: random.Random, name: str) -> tuple[float, tuple[float, float, float] | None]:
    """How long an item of the menu lasts, and (crowds, newsletter) its rise-hold-fall shape."""
    if name == "tv_mention":
        s = (r.uniform(10, 30), r.uniform(240, 600), r.uniform(120, 300))
    elif name == "sale":
        s = (r.uniform(600, 1200), r.uniform(300, 600), r.uniform(180, 300))
    elif name == "newsletter":
        s = (r.uniform(180, 360), r.uniform(60, 180), r.uniform(600, 1200))
    else:
        lo, hi = {"deploy_blip": (10, 30), "random_404": (120, 360), "crawler_spike": (180, 480),
                  "backend_dies": (120, 480)}.get(name, (180, 480))
        return r.uniform(lo, hi), None
    return sum(s), s


def holdout_shop(seed: int, minutes: float | None = None) -> tuple[HoldoutLog, Labels]:
    """One to two hours of Kettle & Kiln, and what happened in it (see the module docstring)."""
    r = random.Random(seed * 7919 + 17)
    seconds = 60 * (minutes if minutes is not None else r.uniform(60, 120))
    tz = r.choice((-300, -180, 0, 60, 120, 330, 480, 600))
    day0 = 1772323200 + 86400 * (seed % 250)  # 2026-03-01 + n days, UTC midnight
    start = float(day0 + int(r.uniform(9, 21) * 3600) - tz * 60)
    products = [f"/p/{r.choice(WORDS)}-{r.choice(WORDS)}-{1000 + i}" for i in range(r.randint(300, 1500))]
    cum = list(np.cumsum(1 / np.arange(1, len(products) + 1) ** 1.1))
    log = HoldoutLog(tz)
    log.end = start + seconds
    shop = Shop(r, log, start, seconds, r.uniform(0.25, 2.0), products, cum,
                [f"82.132.{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(r.randint(6, 30))],
                r.random() < 0.5, r.choice((30.0, 60.0)))
    w, shop.wander = 0.0, []
    for _ in range(int(seconds / 60) + 2):
        w = 0.9 * w + r.gauss(0, 0.06)
        shop.wander.append(math.exp(w))
    quiet = seed % 4 == 3
    warm, tail = min(900.0, 0.25 * seconds), min(300.0, 0.1 * seconds)
    k = 0 if quiet else max(1, int(seconds / 1800))
    items = [MENU[(3 * seed + j) % len(MENU)] for j in range(k)]
    items += list(BUMPS) if quiet else r.sample(BUMPS, r.randint(0, 2))
    r.shuffle(items)
    drawn = [(n, *_duration(r, n)) for n in items]
    gap = 240.0
    while drawn and sum(d for _, d, _ in drawn) + gap * len(drawn) > seconds - warm - tail:
        drawn.pop()
    slack = seconds - warm - tail - sum(d for _, d, _ in drawn) - gap * len(drawn)
    cuts = sorted(r.uniform(0, slack) for _ in drawn)
    base_lines = shop.peak_sessions_s * 12  # rough lines/s at the evening peak
    events: list[Event] = []
    t, prev = start + warm, 0.0
    for (name, dur, shape), cut in zip(drawn, cuts, strict=True):
        t += cut - prev + (gap if events else 0)
        prev = cut
        a, b = t, t + dur
        owner = len(events)
        seen: float | None = None
        if shape is not None:
            mobile, extra = (0.5, r.uniform(3, 7)) if name == "tv_mention" else (0.3, r.uniform(2.5, 5))
            if name == "newsletter":
                extra = r.uniform(0.4, 0.9)
            landing = {"tv_mention": shop.product() if r.random() < 0.4 else "/", "sale": "/c/sale",
                       "newsletter": f"{shop.category()}?utm_source=newsletter&utm_medium=email"}[name]
            ref = {"tv_mention": "-", "sale": "https://l.instagram.com/", "newsletter": "-"}[name]
            for s in _arrivals(shop, a, b, extra, shape):
                _session(shop, s, owner, landing if r.random() < 0.7 else None, ref, mobile, 0.3)
        elif name == "crawler_spike":
            _crawl(shop, a, b, r.uniform(4, 12), [f"66.249.{r.randint(64, 79)}.{r.randint(1, 254)}" for _ in range(5)],
                   GOOGLEBOT, owner)
        else:
            seen = _attack(shop, name, a, b, owner, base_lines * shop.rate(a) / shop.peak_sessions_s)
        verdict, kind = VERDICT[name]
        events.append(Event(name, a, b, verdict, kind, seen))
        t = b
    for s in _arrivals(shop, start, start + seconds, 1.0, None):
        _session(shop, s, -1, None, r.choice(("https://www.google.com/", "-", "https://duckduckgo.com/")), 0.3, 0.25)
    _bots(shop, start, start + seconds)
    labels = Labels(FAMILY, seed, start, start + seconds, log._stamp(0)[-5:], events, quiet,
                    {"peak_sessions_s": round(shop.peak_sessions_s, 2), "limit_req": shop.limit_req,
                     "read_timeout": shop.read_timeout, "lines": len(log)})
    return log, labels
