"""Everyday traffic: shoppers in sessions, app clients, crawlers, monitors, scanners.

A shopper lands on a page (from a search engine, a social post, an e-mail or
typed), the browser fetches the page's CSS, JS, fonts and images within a
second, the shopper reads for a while (seconds to minutes) and clicks on, or
leaves. Returning customers come back from the same networks; their browsers
have the shared assets cached. Phones share carrier NAT addresses.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from itertools import accumulate
from math import exp, log

import numpy as np

from shieldwall.detect.families._log import Rows
from shieldwall.detect.families._world import (
    CRAWLERS,
    MONITORS,
    Agents,
    Catalogue,
    Rng,
    World,
    py_random,
)


def _lognorm(r: random.Random, mu: float, sigma: float) -> float:
    return exp(mu + sigma * r.gauss(0.0, 1.0))


EXTERNAL_REFERERS = (
    ("https://www.google.com/", 45), ("-", 25), ("https://www.bing.com/", 4),
    ("https://l.facebook.com/", 5), ("https://www.instagram.com/", 4), ("https://duckduckgo.com/", 2),
    ("android-app://com.google.android.gm/", 2), ("https://t.co/", 1), ("https://www.pinterest.com/", 2),
)


@dataclass
class Shopper:
    addr: str
    mobile: bool
    ua: str


@dataclass
class Known:
    """Customers who came before: their networks are the shop's regulars."""

    people: list[Shopper]
    cum: list[float]

    @classmethod
    def draw(cls, rng: Rng, world: World, agents: Agents, n: int) -> Known:
        people = []
        for _ in range(n):
            addr, mobile = world.shopper()
            people.append(Shopper(addr, mobile, agents.browser(world.r, mobile)))
        return cls(people, list(accumulate(1.0 / k ** 0.6 for k in range(1, n + 1))))

    def pick(self, r: random.Random) -> Shopper:
        """Loyal customers come back more often than occasional ones."""
        return self.people[min(bisect.bisect(self.cum, r.random() * self.cum[-1]), len(self.people) - 1)]


@dataclass
class Behaviour:
    """How this shop's visitors browse (drawn per seed)."""

    pages_mean: float = 4.0
    bounce: float = 0.4
    think_median: float = 12.0
    backend_median: float = 0.12
    cdn: bool = False
    """Assets served by a CDN: the origin log has no asset lines."""
    p_known: float = 0.4
    p408: float = 0.01
    header_timeout: float = 60.0
    cart_share: float = 0.06


@dataclass
class Focus:
    """What a crowd came for: a featured product or category, and the referer that sent them."""

    pages: list[str] = field(default_factory=list)
    share: float = 0.0
    referers: list[str] = field(default_factory=list)
    query: str = ""


class ShopperGen:
    """Generates shopper sessions for one shop (scalar draws from ``random.Random``: fast)."""

    def __init__(self, rng: Rng, cat: Catalogue, world: World, agents: Agents, known: Known,
                 b: Behaviour) -> None:
        self.rng, self.cat, self.world, self.agents, self.known, self.b = rng, cat, world, agents, known, b
        self.r = py_random(rng)
        self._ext = [ref for ref, _ in EXTERNAL_REFERERS]
        self._ext_cum = list(accumulate(float(w) for _, w in EXTERNAL_REFERERS))
        self._cum_prod = list(accumulate(cat.popularity.tolist()))
        self._cum_cat = list(accumulate(cat.cat_popularity.tolist()))

    @staticmethod
    def _pick(cum: list[float], u: float) -> int:
        return min(bisect.bisect(cum, u * cum[-1]), len(cum) - 1)

    def _choose_page(self, first: bool, focus: Focus | None) -> tuple[str, str, int | None]:
        """(kind, target, product index)."""
        r, cat = self.r, self.cat
        if focus is not None and focus.pages and r.random() < (focus.share if first else focus.share / 3):
            tgt = focus.pages[r.randrange(len(focus.pages))]
            return ("focus", tgt + focus.query if first else tgt, None)
        u = r.random()
        if first:
            if u < 0.3:
                return "home", "/", None
            if u < 0.8:
                p = self._pick(self._cum_prod, r.random())
                return "product", cat.products[p], p
            if u < 0.95:
                return "category", cat.categories[self._pick(self._cum_cat, r.random())], None
            return "info", cat.info[r.randrange(len(cat.info))], None
        if u < 0.5:
            p = self._pick(self._cum_prod, r.random())
            return "product", cat.products[p], p
        if u < 0.72:
            c = cat.categories[self._pick(self._cum_cat, r.random())]
            if r.random() < 0.25:
                c += f"?page={r.randrange(2, 6)}"
            return "category", c, None
        if u < 0.82:
            q = cat.queries[min(int(r.paretovariate(0.6)) - 1, len(cat.queries) - 1)].replace(" ", "+")
            return "search", f"/search?q={q}", None
        if u < 0.88:
            return "home", "/", None
        if u < 0.94:
            return "cart", "/cart", None
        if u < 0.97:
            return "account", ("/account", "/account/login", "/account/orders")[r.randrange(3)], None
        return "info", cat.info[r.randrange(len(cat.info))], None

    def sessions(self, rows: Rows, arrivals: np.ndarray, *, p_known: float | None = None,
                 focus: Focus | None = None, world: World | None = None) -> None:
        """One session per arrival time."""
        r, b = self.r, self.b
        pk = b.p_known if p_known is None else p_known
        w = world or self.world
        for t0 in arrivals.tolist():
            if r.random() < pk:
                s = self.known.pick(r)
                returning = True
            else:
                addr, mobile = w.shopper()
                s = Shopper(addr, mobile, self.agents.browser(r, mobile))
                returning = False
            self.session(rows, float(t0), s, returning, focus)

    def session(self, rows: Rows, t: float, s: Shopper, returning: bool, focus: Focus | None) -> None:
        r, b, cat = self.r, self.b, self.cat
        sess = rows.new_session()
        if r.random() < b.bounce:
            n = 1
        else:
            n = 2 + int(log(1.0 - r.random()) / log(1.0 - 1.0 / max(1.5, b.pages_mean - 1)))
        n = min(n, 60)
        bw = _lognorm(r, log(2.5e6 if s.mobile else 8e6), 0.6)  # bytes/s
        if focus is not None and focus.referers:
            ref = focus.referers[r.randrange(len(focus.referers))]
        else:
            ref = self._ext[self._pick(self._ext_cum, r.random())]
        seen_images: set[str] = set()
        host = cat.host
        if r.random() < b.p408:
            # a preconnected socket the browser never used: nginx closes it with "-" 408
            rows.add(t + b.header_timeout, 0.0, s.addr, "", "", 408, 0, "-", "-", dyn=False, sess=sess)
        lmed = log(b.backend_median)
        for k in range(n):
            kind, target, prod = self._choose_page(k == 0, focus)
            view = rows.new_view()
            mult = 2.2 if kind == "search" else 1.4 if kind in ("cart", "account") else 1.0
            dur = _lognorm(r, lmed + log(mult), 0.55)
            status = 200
            if kind == "product" and r.random() < 0.004:
                status = 404
            nb = int(_lognorm(r, log(4000 if status == 404 else 32000 if kind != "search" else 26000), 0.35))
            dur += nb / bw
            rows.add(t, dur, s.addr, "GET", target, status, nb, ref, s.ua, dyn=True, sess=sess,
                     view=view, page=True)
            page_url = f"https://{host}{target}"
            if not b.cdn and status == 200:
                self._assets(rows, t + dur, s, k == 0, returning, kind, prod, page_url, bw, sess, view,
                             seen_images)
            if kind == "product" and r.random() < b.cart_share * 2:
                # add to cart: a POST answered with a redirect, then the cart page
                tp = t + dur + _lognorm(r, log(6.0), 0.7)
                rows.add(tp, _lognorm(r, lmed + log(1.8), 0.5), s.addr, "POST",
                         "/cart/add", 302, 0, page_url, s.ua, dyn=True, sess=sess, view=view)
                t = tp
            ref = page_url
            think = min(900.0, max(1.0, _lognorm(r, log(b.think_median), 0.9)))
            t += dur + think

    def _assets(self, rows: Rows, t: float, s: Shopper, first: bool, returning: bool, kind: str,
                prod: int | None, page_url: str, bw: float, sess: int, view: int,
                seen: set[str]) -> None:
        r, cat = self.r, self.cat
        start = t + r.uniform(0.01, 0.2)
        css_url = ""
        for path, size in cat.shared_assets:
            if first and not returning:
                status, nb = 200, size
            elif first:
                u = r.random()
                if u < 0.55:
                    continue  # fresh in the browser's cache
                status, nb = (304, 0) if u < 0.85 else (200, size)
            elif r.random() < 0.03:
                status, nb = 304, 0
            else:
                continue
            ta = start + r.expovariate(1 / 0.08)
            ref = css_url if path.endswith(".woff2") and css_url else page_url
            rows.add(ta, 0.0005 + nb / bw, s.addr, "GET", path, status, nb, ref, s.ua, dyn=False,
                     sess=sess, view=view)
            if path.endswith(".css"):
                css_url = f"https://{cat.host}{path}"
        if first and not returning and r.random() < 0.6:
            rows.add(start + r.expovariate(1 / 0.3), 0.0004, s.addr, "GET", "/favicon.ico", 200,
                     r.randrange(1000, 16000), page_url, s.ua, dyn=False, sess=sess, view=view)
        images: list[str]
        spread = 0.25
        if kind == "product" and prod is not None:
            images = cat.product_images[prod]
        elif kind in ("category", "home", "focus", "search"):
            cnt = cat.thumbs_per_category if kind != "home" else max(6, cat.thumbs_per_category // 2)
            if kind == "search":
                cnt = r.randrange(0, cnt)
            images = [cat.product_images[self._pick(self._cum_prod, r.random())][0] for _ in range(cnt)]
            spread = 1.2  # lazy-loaded thumbnails come as the shopper scrolls
        else:
            images = []
        for img in images:
            if img in seen:
                continue
            seen.add(img)
            if returning and r.random() < 0.3:
                continue
            nb = int(_lognorm(r, log(45000), 0.6))
            ta = start + 0.05 + r.expovariate(1 / spread)
            rows.add(ta, 0.0005 + nb / bw, s.addr, "GET", img, 200, nb, page_url, s.ua, dyn=False,
                     sess=sess, view=view)


def arrivals(rng: Rng, t0: float, rate: np.ndarray) -> np.ndarray:
    """Poisson arrivals for a per-second rate starting at ``t0``."""
    counts = rng.poisson(np.maximum(rate, 0.0))
    secs = np.repeat(np.arange(len(rate), dtype=float), counts)
    return np.sort(t0 + secs + rng.random(len(secs)))


def app_clients(rows: Rows, rng: Rng, cat: Catalogue, world: World, agents: Agents,
                t0: float, rate: np.ndarray, backend_median: float) -> None:
    """Mobile-app sessions: JSON API calls in small parallel bursts, never an asset."""
    r = py_random(rng)
    lmed = log(backend_median * 0.8)
    for t in arrivals(rng, t0, rate).tolist():
        addr = world.phone() if r.random() < 0.8 else world.household()
        ua = agents.app[r.randrange(len(agents.app))]
        sess = rows.new_session()
        calls = 1 + int(log(1.0 - r.random()) / log(0.85))
        for k in range(min(calls, 50)):
            burst = ["/api/v2/home", "/api/v2/config"] if k == 0 else []
            u = r.random()
            if u < 0.4:
                burst.append(f"/api/v2/products?category={r.randrange(1, 40)}&page={r.randrange(1, 4)}")
            elif u < 0.8:
                burst.append(f"/api/v2/products/{r.randrange(1000, 99999)}")
            else:
                burst.append("/api/v2/cart")
            for j, path in enumerate(burst):
                rows.add(t + 0.02 * j, _lognorm(r, lmed, 0.5), addr, "GET",
                         path, 200, int(_lognorm(r, log(3500), 0.8)), "-", ua, dyn=True, sess=sess)
            if r.random() < 0.3:
                rows.add(t + 0.05, 0.01, addr, "POST", "/api/v2/events", 204, 0, "-", ua, dyn=True, sess=sess)
            t += min(300.0, max(0.5, _lognorm(r, log(6.0), 0.9)))


def crawlers(rows: Rows, rng: Rng, cat: Catalogue, t0: float, t1: float, rates: dict[int, float],
             backend_median: float, *, spike: tuple[int, float, float, float] | None = None) -> None:
    """Search-engine and SEO crawlers: long-tail pages at their own pace, robots.txt, sitemaps.

    ``spike`` = (crawler index, start, end, extra req/s): a crawler that decides to re-crawl."""
    plan = [(i, t0, t1, r) for i, r in rates.items()]
    if spike is not None:
        plan.append(spike)
    for ci, a, b, r in plan:
        ua, addrs = CRAWLERS[ci]
        n = int(rng.poisson(r * (b - a)))
        if n == 0:
            continue
        ts = np.sort(rng.uniform(a, b, n))
        who = rng.integers(0, len(addrs), n)
        kinds = rng.random(n)
        zs = rng.normal(0, 1, n)
        lm = float(np.log(backend_median * 1.3))
        for t, w, kd, z in zip(ts.tolist(), who.tolist(), kinds.tolist(), zs.tolist(), strict=True):
            if kd < 0.01:
                tgt, st, nb = "/robots.txt", 200, 180
            elif kd < 0.03:
                tgt, st, nb = "/sitemap.xml", 200, 12000
            elif kd < 0.2:
                tgt = cat.categories[int(rng.integers(len(cat.categories)))] + f"?page={int(rng.integers(1, 30))}"
                st, nb = 200, 30000
            elif kd < 0.23:
                tgt, st, nb = f"/products/old-item-{int(rng.integers(1, 9999))}", 404, 4200
            else:
                tgt, st, nb = cat.products[int(rng.integers(len(cat.products)))], 200, 33000
            rows.add(t, float(np.exp(lm + 0.5 * float(z))), addrs[w], "GET", tgt,
                     st, nb, "-", ua, dyn=True)


Probe = tuple[str, str, str, str, float, float]
"""One probe address's schedule: (address, agent, method, URL, period, its next check)."""


def monitors(rows: Rows, rng: Rng, t0: float, t1: float, which: list[int], path: str) -> list[Probe]:
    """Uptime checks: the same URL from each probe address on a fixed period. Returns the
    probes' schedules, so that a longer day goes on with them (:func:`monitors_more`)."""
    probes: list[Probe] = []
    for mi in which:
        ua, addrs, method = MONITORS[mi]
        period = float(rng.choice([10.0, 15.0, 30.0])) if ua.startswith(("ELB", "kube")) \
            else float(rng.choice([60.0, 60.0, 120.0, 300.0]))
        for addr in addrs:
            ts = np.arange(t0 + rng.uniform(0, period), t1, period)
            tgt = "/healthz" if ua.startswith(("ELB", "kube")) else path
            _probe_rows(rows, rng, ts, addr, ua, method, tgt)
            probes.append((addr, ua, method, tgt, period, float(ts[-1]) + period if len(ts) else t1))
    return probes


def monitors_more(rows: Rows, rng: Rng, t1: float, probes: list[Probe]) -> list[Probe]:
    """The same probes on the same periods, from where they were, until ``t1``."""
    out: list[Probe] = []
    for addr, ua, method, tgt, period, nxt in probes:
        ts = np.arange(nxt, t1, period)
        _probe_rows(rows, rng, ts, addr, ua, method, tgt)
        out.append((addr, ua, method, tgt, period, float(ts[-1]) + period if len(ts) else nxt))
    return out


def _probe_rows(rows: Rows, rng: Rng, ts: np.ndarray, addr: str, ua: str, method: str, tgt: str) -> None:
    for t in ts.tolist():
        rows.add(t + float(rng.normal(0, 0.05)), float(rng.uniform(0.003, 0.03)), addr, method, tgt,
                 200, 0 if method == "HEAD" else (2 if tgt == "/healthz" else 31000), "-", ua, dyn=True)


SCAN_PATHS = ("/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/phpmyadmin/", "/admin/",
              "/wp-content/plugins/revslider/temp/update_extract/revslider/", "/config.php", "/.aws/credentials",
              "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/luci", "/actuator/health",
              "/server-status", "/boaform/admin/formLogin", "/owa/auth/logon.aspx", "/.DS_Store",
              "/backup.zip", "/wp-includes/wlwmanifest.xml", "/api/.env", "/solr/admin/info/system")
SCAN_AGENTS = ("python-requests/2.31.0", "Go-http-client/1.1", "Mozilla/5.0 zgrab/0.x", "curl/7.68.0",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36")


def scanners(rows: Rows, rng: Rng, world: World, t0: float, t1: float, per_hour: float) -> None:
    """Vulnerability scanners: one address, a few dozen to a few hundred probes, mostly 404."""
    n = int(rng.poisson(per_hour * (t1 - t0) / 3600))
    for _ in range(n):
        a = float(rng.uniform(t0, max(t0, t1 - 300)))
        addr = world.anywhere(1, hosting_share=0.7)[0]
        ua = SCAN_AGENTS[int(rng.integers(len(SCAN_AGENTS)))]
        k = int(rng.integers(20, 300))
        gap = float(rng.uniform(0.05, 1.5))
        for j in range(k):
            p = SCAN_PATHS[int(rng.integers(len(SCAN_PATHS)))]
            if rng.random() < 0.5:
                p = f"/{['old', 'new', 'wp', 'blog', 'test', 'site'][int(rng.integers(6))]}{p}"
            rows.add(a + j * gap * float(rng.uniform(0.5, 1.5)), 0.003, addr, "GET", p,
                     403 if p.endswith(".env") else 404, int(rng.integers(150, 4500)), "-", ua, dyn=True)
