"""Who is out there: address spaces, user agents and a shop's catalogue, drawn per seed.

Written from how the internet looks from a shop, not from any detector rule:
households sit in a few national ISPs (IPv4 and IPv6), phones sit behind a
carrier's NAT (a handful of public addresses shared by thousands of phones) or
on the carrier's IPv6, crawlers and monitors come from their operators'
published ranges, botnets and scanners come from everywhere.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

Rng = np.random.Generator

_RESERVED_V4 = {0, 10, 100, 127, 169, 172, 192, 198, 203}


def _public_octet(rng: Rng) -> int:
    while True:
        a = int(rng.integers(1, 224))
        if a not in _RESERVED_V4:
            return a


def _hex4(r: random.Random, n: int) -> list[str]:
    return [f"{r.getrandbits(16):x}" for _ in range(n)]


def py_random(rng: Rng) -> random.Random:
    """A scalar generator seeded from ``rng``: one draw at a time, ~20x cheaper than numpy's."""
    return random.Random(int(rng.integers(1 << 62)))


@dataclass
class World:
    """The address spaces of one seed."""

    rng: Rng
    r: random.Random
    isp16: list[tuple[int, int]] = field(default_factory=list)
    """/16s of the home country's fixed-line ISPs."""
    isp_v6: list[str] = field(default_factory=list)
    """/32s of the same ISPs on IPv6 (``2a02:8108``)."""
    cgnat: list[list[str]] = field(default_factory=list)
    """Per mobile carrier: its few public NAT addresses."""
    mobile_v6: list[str] = field(default_factory=list)
    """/32s of carriers' IPv6 (phones get a /64 each)."""
    v6_share: float = 0.2
    mobile_share: float = 0.35
    cgnat_share: float = 0.6
    """Of mobile clients, the share behind carrier NAT (the rest on IPv6)."""

    @classmethod
    def draw(cls, rng: Rng, *, v6_share: float, mobile_share: float, cgnat_share: float) -> World:
        w = cls(rng, py_random(rng), v6_share=v6_share, mobile_share=mobile_share, cgnat_share=cgnat_share)
        n_isp = int(rng.integers(6, 14))
        for _ in range(n_isp):
            a = _public_octet(rng)
            b0 = int(rng.integers(0, 240))
            w.isp16 += [(a, b0 + i) for i in range(int(rng.integers(2, 12)))]
        w.isp_v6 = [f"2a0{int(rng.integers(1, 10))}:{int(rng.integers(0x1000, 0xffff)):x}"
                    for _ in range(int(rng.integers(3, 8)))]
        for _ in range(int(rng.integers(2, 5))):
            a, b = _public_octet(rng), int(rng.integers(0, 256))
            c = int(rng.integers(0, 250))
            n = int(rng.integers(4, 48))
            w.cgnat.append([f"{a}.{b}.{c + i // 200}.{1 + i % 200}" for i in range(n)])
        w.mobile_v6 = [f"2{int(rng.integers(4, 10))}0{int(rng.integers(1, 9))}:{int(rng.integers(0x1000, 0xffff)):x}"
                       for _ in range(int(rng.integers(2, 4)))]
        return w

    def household(self) -> str:
        """A fresh fixed-line household: an IPv4 in an ISP /16, or an IPv6 /64 of an ISP."""
        r = self.r
        if r.random() < self.v6_share:
            p = self.isp_v6[r.randrange(len(self.isp_v6))]
            h = _hex4(r, 6)
            return f"{p}:{h[0]}:{h[1]}:{h[2]}:{h[3]}:{h[4]}:{h[5]}"
        a, b = self.isp16[r.randrange(len(self.isp16))]
        return f"{a}.{b}.{r.randrange(256)}.{r.randrange(1, 255)}"

    def phone(self) -> str:
        """A phone on a carrier: one of its NAT addresses (shared), or its own IPv6 /64."""
        r = self.r
        if r.random() < self.cgnat_share:
            carrier = self.cgnat[r.randrange(len(self.cgnat))]
            # a carrier's gateways are not used evenly: a few addresses carry most phones
            return carrier[int(len(carrier) * r.random() ** 2.5)]
        p = self.mobile_v6[r.randrange(len(self.mobile_v6))]
        h = _hex4(r, 6)
        return f"{p}:{h[0]}:{h[1]}:{h[2]}:{h[3]}:{h[4]}:{h[5]}"

    def shopper(self) -> tuple[str, bool]:
        """(address, on a phone)."""
        if self.r.random() < self.mobile_share:
            return self.phone(), True
        return self.household(), False

    def anywhere(self, n: int, v6_share: float = 0.05, hosting_share: float = 0.1) -> list[str]:
        """``n`` distinct addresses from all over the internet (a botnet, volunteers, scanners)."""
        rng = self.rng
        out: set[str] = set()
        hosting = [(_public_octet(rng), int(rng.integers(0, 256))) for _ in range(12)]
        while len(out) < n:
            r = rng.random()
            if r < v6_share:
                h = _hex4(self.r, 8)
                out.add(f"2{int(rng.integers(4, 10))}0{int(rng.integers(0, 10))}:" + ":".join(h[1:]))
            elif r < v6_share + hosting_share:
                a, b = hosting[int(rng.integers(len(hosting)))]
                out.add(f"{a}.{b}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}")
            else:
                out.add(f"{_public_octet(rng)}.{int(rng.integers(0, 256))}."
                        f"{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}")
        # sorted first: a set of strings iterates in a per-process hash order, and the same
        # seed must give the same log in every process
        return sorted(sorted(out), key=lambda _: rng.random())


def _browsers(rng: Rng) -> list[tuple[str, float, bool]]:
    """(user agent, weight, mobile) with versions of the season the seed drew."""
    c = int(rng.integers(118, 132))
    ff = int(rng.integers(118, 133))
    ios = rng.choice(["16_6", "17_1", "17_2_1", "17_4", "17_5_1", "18_0"])
    iosv = str(ios).split("_")[0] + "." + str(ios).split("_")[1]
    return [
        (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Safari/537.36", 24, False),
        (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c - 1}.0.0.0 Safari/537.36", 6, False),
        (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Safari/537.36 Edg/{c}.0.0.0", 8, False),
        (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{ff}.0) Gecko/20100101 Firefox/{ff}.0", 5, False),
        (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Safari/537.36", 6, False),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15", 5, False),
        (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Safari/537.36", 1, False),
        (f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{iosv} Mobile/15E148 Safari/604.1", 22, True),
        (f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{c}.0.6099.119 Mobile/15E148 Safari/604.1", 3, True),
        (f"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 Mobile Safari/537.36", 16, True),
        ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", 4, True),
        (f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{iosv} Mobile/15E148 Safari/604.1", 3, True),
        (f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 309.0.0.28.111 (iPhone14,5; iOS {ios}; de_DE; de; scale=3.00; 1170x2532; 541932461)", 2, True),
    ]


CRAWLERS: list[tuple[str, list[str]]] = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     [f"66.249.{b}.{d}" for b in (64, 66, 68, 70, 72, 79) for d in (1, 9, 33, 65, 97, 129, 161, 200)]),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
     [f"157.55.39.{d}" for d in range(1, 250, 7)] + [f"40.77.167.{d}" for d in range(1, 250, 11)]),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", [f"54.36.148.{d}" for d in range(1, 250, 13)]),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", [f"5.255.253.{d}" for d in range(1, 250, 17)]),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
     [f"17.241.{b}.{d}" for b in (75, 219, 227) for d in range(10, 250, 30)]),
    ("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", [f"185.191.171.{d}" for d in range(1, 40)]),
]

MONITORS: list[tuple[str, list[str], str]] = [
    ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
     ["216.144.250.150", "69.162.124.235", "63.143.42.244", "216.245.221.83"], "HEAD"),
    ("Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", ["178.255.152.2", "185.180.12.65", "43.229.84.12"], "GET"),
    ("Mozilla/5.0 (compatible; StatusCake)", ["37.235.48.42", "134.209.29.111"], "GET"),
    ("ELB-HealthChecker/2.0", ["10.0.1.17", "10.0.2.41"], "GET"),
    ("kube-probe/1.28", ["10.244.0.1"], "GET"),
]


@dataclass
class Agents:
    """User agents of the seed: browsers (weighted), app builds, bots."""

    browsers: list[str]
    weights: np.ndarray
    mobile: np.ndarray
    app: list[str]
    _cum: dict[bool | None, tuple[list[int], list[float]]] = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: Rng, app_name: str) -> Agents:
        b = _browsers(rng)
        w = np.array([x[1] for x in b], float) * rng.uniform(0.5, 1.5, len(b))
        v = f"{int(rng.integers(3, 9))}.{int(rng.integers(0, 30))}"
        app = [f"{app_name}/{v}.0 (iPhone; iOS 17.{int(rng.integers(0, 6))}; Scale/3.00)",
               f"{app_name}/{v}.1 (iPhone; iOS 16.7; Scale/2.00)",
               "okhttp/4.11.0", "okhttp/4.9.3",
               f"Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014) {app_name}/{v}"]
        return cls([x[0] for x in b], w / w.sum(), np.array([x[2] for x in b]), app)

    def browser(self, r: random.Random, mobile: bool | None = None) -> str:
        """A browser agent by market share (of phones, or of desktops, or of all)."""
        cum = self._cum.get(mobile)
        if cum is None:
            idx = [i for i in range(len(self.browsers)) if mobile is None or bool(self.mobile[i]) == mobile]
            cum = self._cum[mobile] = (idx, list(accumulate(float(self.weights[i]) for i in idx)))
        idx, acc = cum
        return self.browsers[idx[min(bisect.bisect(acc, r.random() * acc[-1]), len(idx) - 1)]]


_WORDS = ["linen", "shirt", "dress", "boots", "sneaker", "wool", "scarf", "coat", "jacket", "leather", "bag", "belt", "denim", "jeans", "hoodie", "cotton", "tee", "summer", "winter", "kids", "sale", "gift", "watch", "ring", "silver", "gold", "socks", "cap", "trainers", "sandals", "blazer", "skirt", "knit", "vintage", "eco", "organic", "classic", "slim", "relaxed"]


@dataclass
class Catalogue:
    """A shop's pages and the assets each page pulls in, with how popular each page is."""

    host: str
    products: list[str]
    product_images: list[list[str]]
    categories: list[str]
    thumbs_per_category: int
    shared_assets: list[tuple[str, int]]
    """(path, bytes) every page pulls in: CSS, JS, fonts, logo."""
    popularity: np.ndarray
    """Zipf weights over ``products`` (index 0 the hottest)."""
    cat_popularity: np.ndarray
    queries: list[str]
    info: list[str]
    api: bool
    scheme: str

    @classmethod
    def draw(cls, rng: Rng, host: str, n_products: int, *, api: bool) -> Catalogue:
        scheme = str(rng.choice(["shopify", "woo", "magento"]))
        words = list(_WORDS)

        def slug(k: int) -> str:
            return "-".join(str(w) for w in rng.choice(words, k, replace=False))

        ids = rng.choice(np.arange(1000, 99999), n_products, replace=False)
        if scheme == "shopify":
            products = [f"/products/{slug(3)}-{i}" for i in ids]
            categories = [f"/collections/{slug(2)}" for _ in range(int(rng.integers(8, 40)))]
        elif scheme == "woo":
            products = [f"/product/{slug(3)}-{i}/" for i in ids]
            categories = [f"/product-category/{slug(1)}/{slug(1)}/" for _ in range(int(rng.integers(8, 40)))]
        else:
            products = [f"/{slug(3)}-{i}.html" for i in ids]
            categories = [f"/{slug(1)}/{slug(2)}.html" for _ in range(int(rng.integers(8, 40)))]
        def h() -> str:
            return f"{int(rng.integers(1 << 28, 1 << 32)):08x}"

        shared = [(f"/static/css/app.{h()}.css", int(rng.integers(20_000, 90_000))),
                  (f"/static/js/vendor.{h()}.js", int(rng.integers(60_000, 300_000))),
                  (f"/static/js/app.{h()}.js", int(rng.integers(15_000, 120_000))),
                  ("/static/fonts/inter-var.woff2", int(rng.integers(30_000, 90_000))),
                  ("/static/img/logo.svg", int(rng.integers(2_000, 12_000)))]
        shared += [(f"/static/js/chunk-{h()}.js", int(rng.integers(3_000, 40_000)))
                   for _ in range(int(rng.integers(0, 4)))]
        images = [[f"/media/catalog/{i}_{k}.jpg" for k in range(int(rng.integers(2, 9)))] for i in ids]
        a = rng.uniform(0.8, 1.2)
        pop = 1.0 / np.arange(1, n_products + 1) ** a
        catp = 1.0 / np.arange(1, len(categories) + 1) ** rng.uniform(0.6, 1.1)
        queries = [" ".join(str(w) for w in rng.choice(words, int(rng.integers(1, 3)), replace=False))
                   for _ in range(300)]
        info = ["/about", "/contact", "/shipping", "/returns", "/faq", "/privacy", "/blog",
                f"/blog/{slug(4)}", f"/blog/{slug(3)}"]
        return cls(host, products, images, categories, int(rng.integers(12, 36)), shared,
                   pop / pop.sum(), catp / catp.sum(), queries, info, api, scheme)
