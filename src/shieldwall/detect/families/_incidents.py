"""What happens to a shop: attacks, crowds, outages, and bumps that are none of these.

Each function adds the traffic of one event (or registers how an outage
rewrites the backend's answers) and returns the event's label. Written from
how the tools and people behave: an attack tool's rate is set by its operator
and its URLs by its author; a crowd is people, arriving from the networks the
shop's customers use, going where the link sent them and then browsing; an
outage changes what the backend answers, and people react to that.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from shieldwall.detect.families._labels import Event
from shieldwall.detect.families._log import Rows
from shieldwall.detect.families._traffic import Focus, ShopperGen, arrivals, crawlers
from shieldwall.detect.families._world import Catalogue, Rng, World

Rewrite = Callable[[dict[str, np.ndarray], Rng], dict[str, np.ndarray]]

OLD_AGENTS = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/56.0.2924.87 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.124 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:89.0) Gecko/20100101 Firefox/89.0",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.1; Trident/6.0)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Opera/9.80 (Windows NT 6.0) Presto/2.12.388 Version/12.14",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
)


@dataclass
class Ctx:
    """One shop while its log is being made."""

    rng: Rng
    rows: Rows
    cat: Catalogue
    world: World
    gen: ShopperGen
    base_rps: float
    """Lines per second of the everyday traffic around now (to size events against)."""
    session_rate: Callable[[float], float]
    """Shopper sessions per second the baseline has at a time."""
    rewrites: list[Rewrite] = field(default_factory=list)

    def browser(self) -> str:
        return self.gen.agents.browser(self.gen.r)


def _rand(rng: Rng, n: int, k: int, alphabet: str = string.ascii_lowercase + string.digits) -> list[str]:
    chars = np.array(list(alphabet))
    return ["".join(r) for r in chars[rng.integers(0, len(chars), (n, k))]]


def _ramp_times(rng: Rng, a: float, b: float, n: int, ramp: float) -> np.ndarray:
    """``n`` times in [a, b) with density rising linearly over the first ``ramp`` seconds."""
    u = rng.uniform(0, 1, n)
    t = a + u * (b - a)
    early = t < a + ramp
    # thin the ramp: move a share of early points later
    move = early & (rng.random(n) > (t - a) / max(ramp, 1e-9))
    t[move] = rng.uniform(a + ramp, b, int(move.sum()))
    return np.sort(t)


def get_flood(c: Ctx, a: float, dur: float, *, mult: float, many: bool) -> Event:
    """A plain GET flood: one or a few URLs, one or a few agents, no assets, no referer."""
    rng = c.rng
    n = int(c.base_rps * mult * dur)
    if many:
        srcs = np.array(c.world.anywhere(int(rng.integers(300, 3000)), hosting_share=0.1), dtype=object)
    else:
        srcs = np.array(c.world.anywhere(int(rng.integers(3, 40)), hosting_share=0.8), dtype=object)
    urls = ["/"] + [c.cat.products[int(i)] for i in rng.integers(0, 20, int(rng.integers(0, 3)))]
    agents = list(rng.choice(OLD_AGENTS, int(rng.integers(1, 4)), replace=False))
    t = _ramp_times(rng, a, a + dur, n, float(rng.uniform(2, 15)))
    who = srcs[np.minimum(rng.zipf(1.3, n) - 1, len(srcs) - 1) if not many else rng.integers(0, len(srcs), n)]
    c.rows.add_block(t, rng.lognormal(np.log(0.15), 0.6, n), who, "GET",
                     np.array(urls, dtype=object)[rng.integers(0, len(urls), n)], 200,
                     rng.lognormal(np.log(30000), 0.2, n).astype(np.int64), "-",
                     np.array(agents, dtype=object)[rng.integers(0, len(agents), n)])
    return Event("get_flood_many" if many else "get_flood_few", a, a + dur, "ddos", "flood")


def randomized_404(c: Ctx, a: float, dur: float, *, mult: float) -> Event:
    """Random nonexistent paths (answered 404) with rotating agents: a cache-miss cannon."""
    rng = c.rng
    n = int(c.base_rps * mult * dur)
    srcs = np.array(c.world.anywhere(int(rng.integers(50, 1500))), dtype=object)
    depth = rng.integers(1, 4, n)
    segs = _rand(rng, n, 8)
    segs2 = _rand(rng, n, 5)
    ext = np.array(["", ".php", ".html", "/", ".asp"], dtype=object)[rng.integers(0, 5, n)]
    paths = np.array([f"/{s}" + (f"/{s2}" if d > 1 else "") + (f"/{s[::-1]}" if d > 2 else "") + e
                      for s, s2, d, e in zip(segs, segs2, depth.tolist(), ext, strict=True)], dtype=object)
    agents = np.array(list(OLD_AGENTS) + c.gen.agents.browsers, dtype=object)
    t = _ramp_times(rng, a, a + dur, n, float(rng.uniform(2, 20)))
    c.rows.add_block(t, rng.lognormal(np.log(0.03), 0.6, n), srcs[rng.integers(0, len(srcs), n)], "GET",
                     paths, 404, rng.integers(150, 5200, n), "-", agents[rng.integers(0, len(agents), n)])
    return Event("randomized_404", a, a + dur, "ddos", "randomized")


def randomized_query(c: Ctx, a: float, dur: float, *, mult: float) -> Event:
    """A few URLs with random query strings (random keys and values), rotating agents and referers."""
    rng = c.rng
    n = int(c.base_rps * mult * dur)
    srcs = np.array(c.world.anywhere(int(rng.integers(50, 1000))), dtype=object)
    base = ["/", c.cat.categories[0], c.cat.products[int(rng.integers(0, 5))]][: int(rng.integers(1, 4))]
    keys = _rand(rng, n, int(rng.integers(3, 8)), string.ascii_letters)
    vals = _rand(rng, n, int(rng.integers(4, 10)))
    bases = np.array(base, dtype=object)[rng.integers(0, len(base), n)]
    targets = np.array([f"{b}?{k}={v}" for b, k, v in zip(bases, keys, vals, strict=True)], dtype=object)
    refs = np.array([f"http://www.google.com/?q={v}" if i % 3 == 0 else "-"
                     for i, v in enumerate(_rand(rng, n, 6))], dtype=object)
    agents = np.array(list(OLD_AGENTS) + c.gen.agents.browsers, dtype=object)
    t = _ramp_times(rng, a, a + dur, n, float(rng.uniform(2, 20)))
    c.rows.add_block(t, rng.lognormal(np.log(0.2), 0.6, n), srcs[rng.integers(0, len(srcs), n)], "GET",
                     targets, 200, rng.lognormal(np.log(30000), 0.3, n).astype(np.int64), refs,
                     agents[rng.integers(0, len(agents), n)])
    return Event("randomized_query", a, a + dur, "ddos", "randomized")


def cache_bust(c: Ctx, a: float, dur: float, *, mult: float) -> Event:
    """Search with random words and category pages with random page numbers and sort keys."""
    rng, cat = c.rng, c.cat
    n = int(c.base_rps * mult * dur)
    srcs = np.array(c.world.anywhere(int(rng.integers(150, 800)), hosting_share=0.2), dtype=object)
    agent_of = np.array([c.browser() for _ in range(len(srcs))], dtype=object)
    sorts = np.array(["price_asc", "price_desc", "newest", "rating", "name", "popular", "relevance"], dtype=object)
    cats = [cat.categories[int(i)] for i in rng.integers(0, len(cat.categories), int(rng.integers(2, 6)))]
    words = _rand(rng, n, int(rng.integers(5, 12)), string.ascii_lowercase)
    kind = rng.random(n)
    targets = np.empty(n, dtype=object)
    for i in range(n):
        if kind[i] < 0.5:
            targets[i] = f"/search?q={words[i]}"
        else:
            ch = cats[int(rng.integers(len(cats)))]
            sep = "&" if "?" in ch else "?"
            targets[i] = f"{ch}{sep}page={int(rng.integers(1, 800))}&sort={sorts[int(rng.integers(len(sorts)))]}"
            if rng.random() < 0.5:
                targets[i] += f"&limit={int(rng.choice([24, 36, 48, 96]))}"
    who = rng.integers(0, len(srcs), n)
    t = _ramp_times(rng, a, a + dur, n, float(rng.uniform(3, 30)))
    c.rows.add_block(t, rng.lognormal(np.log(0.45), 0.6, n), srcs[who], "GET", targets, 200,
                     rng.lognormal(np.log(24000), 0.3, n).astype(np.int64), f"https://{cat.host}/",
                     agent_of[who])
    return Event("cache_bust", a, a + dur, "ddos", "cache_bust")


def low_and_slow(c: Ctx, a: float, dur: float, *, mult: float) -> Event:
    """Thousands of volunteers (LOIC/HOIC style), each one request every 5-20 s: under every
    per-address limit, browser agents, plausible referers, no assets."""
    rng, cat = c.rng, c.cat
    period = float(rng.uniform(5, 20))
    total = c.base_rps * mult
    n_addr = int(np.clip(total * period, 2000, 5000))
    if n_addr / period > total * 1.7:  # a small shop: fewer volunteers needed for 3-5x
        n_addr = max(300, int(total * period))
    addrs = c.world.anywhere(n_addr, v6_share=0.1, hosting_share=0.05)
    urls = ["/"] + cat.categories[:3] + [cat.products[int(i)] for i in rng.integers(0, 50, 6)]
    refs = ["https://www.google.com/", f"https://{cat.host}/", f"https://{cat.host}{cat.categories[0]}", "-"]
    join = float(rng.uniform(10, 60))
    ts: list[np.ndarray] = []
    who: list[np.ndarray] = []
    for i in range(n_addr):
        p = period * float(rng.uniform(0.6, 1.4))
        first = a + float(rng.uniform(0, join)) + float(rng.uniform(0, p))
        k = max(0, int((a + dur - first) / p))
        if k == 0:
            continue
        ts.append(first + np.arange(k) * p + rng.normal(0, 0.3, k))
        who.append(np.full(k, i))
    t = np.concatenate(ts)
    w = np.concatenate(who)
    m = len(t)
    addr_arr = np.array(addrs, dtype=object)
    agent_of = np.array([c.browser() for _ in range(n_addr)], dtype=object)
    url_of = rng.integers(0, len(urls), n_addr)
    c.rows.add_block(t, rng.lognormal(np.log(0.15), 0.5, m), addr_arr[w], "GET",
                     np.array(urls, dtype=object)[url_of[w]], 200,
                     rng.lognormal(np.log(32000), 0.3, m).astype(np.int64),
                     np.array(refs, dtype=object)[rng.integers(0, len(refs), m)], agent_of[w])
    return Event("low_and_slow", a, a + dur, "ddos", "flood")


def slowloris(c: Ctx, a: float, dur: float, *, post: bool, header_timeout: float, limit_conn: bool) -> Event:
    """A few addresses hold hundreds of connections open, sending headers (or a POST body)
    a byte at a time; the server cuts each after its timeout (a 408 line) and the tool reopens.
    With ``limit_conn`` the excess connections are refused at once (503)."""
    rng = c.rng
    n_src = int(rng.integers(1, 6))
    srcs = c.world.anywhere(n_src, hosting_share=0.8)
    timeout = float(rng.uniform(60, 240)) if post else header_timeout
    conns = int(rng.integers(150, 1000))
    ua = "-" if not post else OLD_AGENTS[int(rng.integers(len(OLD_AGENTS)))]
    cap = int(rng.integers(10, 50))
    per_src = conns // n_src
    held = min(per_src, cap) if limit_conn else per_src
    for s in srcs:
        # each held connection: opened, cut after `timeout`, reopened
        for _ in range(held):
            t = a + float(rng.uniform(0, 5))
            while t + timeout < a + dur + timeout:
                if post:
                    rows_target, method = ["/account/login", "/checkout", "/contact"][int(rng.integers(3))], "POST"
                else:
                    rows_target, method = f"/?{int(rng.integers(0, 5000))}", "GET"
                c.rows.add(t, timeout, s, method, rows_target, 408, 0, "-", ua, dyn=False)
                t += timeout + float(rng.uniform(0.01, 0.5))
                if t > a + dur:
                    break
        if limit_conn:
            # the tool keeps trying the connections over the cap: refused at once
            n = int((per_src - held) * dur / 10)
            ts = np.sort(rng.uniform(a, a + dur, n))
            c.rows.add_block(ts, np.full(n, 0.0), np.full(n, s, dtype=object), "GET",
                             np.array([f"/?{x}" for x in rng.integers(0, 5000, n)], dtype=object), 503,
                             np.full(n, 197), "-", ua, dyn=False)
    obs = a if limit_conn else a + timeout
    return Event("slow_post" if post else "slowloris", a, a + dur, "ddos", "slow",
                 observable_start=obs)


def crowd(c: Ctx, a: float, *, rise: float, hold: float, decay: float, mult: float, p_known: float,
          world: World | None = None, name: str = "flash_crowd", verdict: str = "flash_crowd",
          referers: list[str] | None = None, query: str = "") -> Event:
    """Extra shoppers: the session rate steps (or builds) to ``mult`` times, holds, then fades.
    Most come from the shop's regular networks; they follow the link to the featured pages
    and then browse like anyone else, fetching assets."""
    rng, cat = c.rng, c.cat
    end = a + rise + hold + decay
    secs = np.arange(int(end - a), dtype=float)
    f = np.where(secs < rise, secs / max(rise, 1.0),
                 np.where(secs < rise + hold, 1.0, 1.0 - (secs - rise - hold) / max(decay, 1.0)))
    base = np.array([c.session_rate(a + s) for s in secs])
    rate = base * (mult - 1.0) * np.clip(f, 0.0, 1.0)
    hot = [cat.products[int(i)] for i in rng.integers(0, len(cat.products), int(rng.integers(1, 4)))]
    if rng.random() < 0.4:
        hot.append(cat.categories[int(rng.integers(len(cat.categories)))])
    focus = Focus(hot, float(rng.uniform(0.4, 0.8)),
                  referers or ["-", "https://l.facebook.com/", "https://www.instagram.com/", "https://t.co/",
                               "https://www.google.com/"], query)
    c.gen.sessions(c.rows, arrivals(rng, a, rate), p_known=p_known, focus=focus, world=world)
    obs = a
    if rise > 60:  # a crowd building over minutes is an event once it has doubled the traffic
        obs = a + rise * min(1.0, 1.0 / max(mult - 1.0, 1.0))
    return Event(name, a, end, verdict, observable_start=obs if obs != a else None)


def _dyn_in(cols: dict[str, np.ndarray], a: float, b: float) -> np.ndarray:
    t = cols["t"]
    return cols["dyn"] & (t >= a) & (t < b)


def _after_failure(cols: dict[str, np.ndarray], rng: Rng, failed: np.ndarray, leave: float) -> np.ndarray:
    """Rows to keep once ``failed`` page views failed: their assets never load, and most of
    those shoppers leave (their later pages never come)."""
    views = set(cols["view"][failed & cols["page"]].tolist())
    views.discard(-1)
    keep = np.ones(len(failed), bool)
    if views:
        vmask = np.isin(cols["view"], np.fromiter(views, np.int64)) & ~cols["page"] & ~cols["dyn"]
        keep &= ~vmask
        gone = {}
        for s, t in zip(cols["sess"][failed].tolist(), cols["t"][failed].tolist(), strict=True):
            if s >= 0 and s not in gone and rng.random() < leave:
                gone[s] = t
        if gone:
            ss = np.fromiter(gone, np.int64)
            tt = np.fromiter(gone.values(), float)
            pos = np.searchsorted(np.sort(ss), cols["sess"])
            srt = np.argsort(ss)
            ss, tt = ss[srt], tt[srt]
            pos = np.clip(pos, 0, len(ss) - 1)
            hit = (ss[pos] == cols["sess"]) & (cols["t"] > tt[pos])
            keep &= ~hit
    return keep


def backend_dead(c: Ctx, a: float, dur: float) -> Event:
    """The application is down (crashed, refused connections): every dynamic request gets a fast
    502 while nginx still serves static files. Shoppers retry once or twice, then leave."""
    b = a + dur
    body = int(c.rng.choice([157, 157, 559, 2400]))

    def rewrite(cols: dict[str, np.ndarray], rng: Rng) -> dict[str, np.ndarray]:
        hit = _dyn_in(cols, a, b)
        keep = _after_failure(cols, rng, hit, leave=0.6)
        # retries: a reload a few seconds later, also failing while the backend is down
        retry = hit & cols["page"] & (rng.random(len(hit)) < 0.5)
        cols["status"][hit] = 502
        cols["dur"][hit] = rng.uniform(0.0003, 0.004, int(hit.sum()))
        cols["nbytes"][hit] = body
        extra = {k: v[retry].copy() for k, v in cols.items()}
        extra["t"] = extra["t"] + rng.uniform(1.5, 10, len(extra["t"]))
        still = extra["t"] < b
        extra["status"][~still] = 200
        extra["dur"][~still] = rng.lognormal(np.log(0.15), 0.5, int((~still).sum()))
        extra["page"][:] = False
        return {k: np.concatenate([v[keep], extra[k]]) for k, v in cols.items()}

    c.rewrites.append(rewrite)
    return Event("backend_dead", a, b, "backend_failure")


def backend_hang(c: Ctx, a: float, dur: float, *, read_timeout: float, restart: bool) -> Event:
    """The application accepts and never answers (deadlock, exhausted DB pool): requests wait
    for nginx's proxy_read_timeout and end as 504; impatient shoppers give up first (499).
    While requests hang, fewer lines are written; then the 504s arrive together. When it is
    restarted, what still hangs is reset (502); when it unfreezes, what hangs completes."""
    b = a + dur

    def rewrite(cols: dict[str, np.ndarray], rng: Rng) -> dict[str, np.ndarray]:
        hit = _dyn_in(cols, a, b)
        keep = _after_failure(cols, rng, hit, leave=0.5)
        idx = np.flatnonzero(hit)
        t = cols["t"][idx]
        giveup = rng.uniform(4, 45, len(idx))
        gives = (rng.random(len(idx)) < 0.4) & (cols["sess"][idx] >= 0) & (giveup < read_timeout)
        end_wait = np.where(gives, giveup, read_timeout)
        status = np.where(gives, 499, 504)
        nbytes = np.where(gives, 0, 167)
        past = t + end_wait > b  # still hanging when the backend comes back
        if restart:
            status[past] = 502
            nbytes[past] = 157
        else:
            status[past] = cols["status"][idx][past]
            nbytes[past] = cols["nbytes"][idx][past]
        end_wait = np.where(past, b - t + (0 if restart else 0.05), end_wait)
        cols["status"][idx] = status
        cols["nbytes"][idx] = nbytes
        cols["dur"][idx] = end_wait
        return {k: v[keep] for k, v in cols.items()}

    c.rewrites.append(rewrite)
    return Event("backend_hang", a, b, "backend_failure", observable_start=a + 5.0)


def deploy_blip(c: Ctx, a: float, dur: float) -> Event:
    """A rolling deploy: for some seconds a share of dynamic requests hit a restarting worker (502)."""
    share = float(c.rng.uniform(0.05, 0.3))

    def rewrite(cols: dict[str, np.ndarray], rng: Rng) -> dict[str, np.ndarray]:
        hit = _dyn_in(cols, a, a + dur) & (rng.random(len(cols["t"])) < share)
        cols["status"][hit] = 502
        cols["dur"][hit] = 0.002
        cols["nbytes"][hit] = 157
        return cols

    c.rewrites.append(rewrite)
    return Event("deploy_blip", a, a + dur, "normal")


def crawler_spike(c: Ctx, a: float, dur: float, backend_median: float) -> Event:
    """A search engine decides to re-crawl the catalogue: one crawler at many times its pace."""
    extra = c.base_rps * float(c.rng.uniform(0.3, 1.0))
    crawlers(c.rows, c.rng, c.cat, a, a, {}, backend_median, spike=(int(c.rng.integers(0, 2)), a, a + dur, extra))
    return Event("crawler_spike", a, a + dur, "normal")


def newsletter_bump(c: Ctx, a: float) -> Event:
    """The weekly e-mail: customers open it over the next minutes, about 1.3-1.7x, fading slowly."""
    mult = float(c.rng.uniform(1.3, 1.7))
    camp = f"?utm_source=newsletter&utm_medium=email&utm_campaign=week{int(c.rng.integers(1, 52))}"
    e = crowd(c, a, rise=float(c.rng.uniform(180, 600)), hold=float(c.rng.uniform(60, 600)),
              decay=float(c.rng.uniform(900, 1800)), mult=mult, p_known=0.9, name="newsletter_bump",
              verdict="normal", referers=["-", "android-app://com.google.android.gm/"], query=camp)
    return Event(e.name, e.start, e.end, "normal")
