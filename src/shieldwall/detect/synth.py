"""Labelled synthetic traffic: our own generator, independent of the drill's lab.

A scenario is a timeline of phases over steady baseline shoppers (sessions of
pages followed by their assets, some searches, carts and checkouts):

- ``flash_crowd``: ~10x more shoppers, mostly from networks the shop already
  serves, browsing a few hot pages *with* their assets;
- ``flood``: thousands of sources from new networks hitting one path without
  assets; ``flood_heavy``: tens of sources at a high per-source rate;
- ``randomized``: rotating random paths, queries, agents and referers;
- ``cache_bust``: random query strings on ``/search``;
- ``slow``: slowloris and slow POST connections cut with 408 after a timeout;
- ``backend_failure``: the usual shoppers, but the backends refuse (502) or
  time out (504) most requests; ``backend_hang``: the backends freeze, so
  nothing completes until they thaw (or 504 after 30 s).

Two parameter families: ``train`` (what the thresholds were tuned on) and
``heldout`` (other rates, sizes, catalog and agents) so the rules are judged
on traffic they were not fitted to. Events come out sorted by completion time,
as a proxy would log them.
"""

from __future__ import annotations

import gzip
import json
import random
import string
import time as _time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shieldwall.detect.events import Outcome, RequestEvent

PHASE_LABELS: dict[str, tuple[str, str | None]] = {
    "baseline": ("normal", None),
    "flash_crowd": ("flash_crowd", None),
    "flood": ("ddos", "flood"),
    "flood_heavy": ("ddos", "flood"),
    "randomized": ("ddos", "randomized"),
    "cache_bust": ("ddos", "cache_bust"),
    "slow": ("ddos", "slow"),
    "backend_failure": ("backend_failure", None),
    "backend_hang": ("backend_failure", None),
}
SLOW_TIMEOUT = 10.0
"""Seconds after which the shield cuts a slow connection with 408."""

_BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{v} Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
]
_WORDS = ["shoes", "boots", "jacket", "coat", "shirt", "socks", "hat", "scarf", "gloves", "belt", "bag", "watch", "ring", "lamp", "chair", "table", "desk", "sofa", "bed", "pillow", "towel", "mug", "plate", "bowl", "spoon", "knife", "pan", "pot", "kettle", "oven"]


@dataclass(frozen=True)
class Phase:
    kind: str
    start: float
    end: float

    @property
    def verdict(self) -> str:
        return PHASE_LABELS[self.kind][0]

    @property
    def attack_kind(self) -> str | None:
        return PHASE_LABELS[self.kind][1]

    @property
    def observable_start(self) -> float:
        """When the first evidence can exist: a slow connection is only logged when cut."""
        return self.start + (SLOW_TIMEOUT if self.kind == "slow" else 0.0)


@dataclass(frozen=True)
class Scenario:
    seed: int
    family: str
    t0: float
    duration: float
    phases: tuple[Phase, ...]
    base_rps: float
    params: dict[str, float] = field(default_factory=dict)


def make_scenario(
    seed: int, kinds: Iterable[str], *, family: str = "train", warmup: float = 100.0,
    phase_len: tuple[float, float] = (20.0, 30.0), gap: tuple[float, float] = (40.0, 50.0),
    t0: float = 1_795_000_000.0,
) -> Scenario:
    """Phases one after another, each preceded by a stretch of baseline."""
    rng = random.Random(seed * 7919 + 1)
    heldout = family == "heldout"
    base_rps = rng.uniform(60, 140) if heldout else rng.uniform(25, 60)
    t = warmup
    phases = []
    for k in kinds:
        if k not in PHASE_LABELS or k == "baseline":
            raise ValueError(f"unknown phase kind {k!r}; expected one of {sorted(PHASE_LABELS)}")
        length = rng.uniform(*phase_len)
        phases.append(Phase(k, t0 + t, t0 + t + length))
        t += length + rng.uniform(*gap)
    return Scenario(seed, family, t0, t, tuple(phases), base_rps)


class _Gen:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed)
        self.heldout = sc.family == "heldout"
        rng = self.rng
        nets = 90 if self.heldout else 50
        self.home = [f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
                     for _ in range(nets)]
        self.products = 900 if self.heldout else 400
        self.agents = [b.format(v=rng.randint(5, 125)) for b in _BROWSERS for _ in range(6)]
        self.out: list[RequestEvent] = []

    # -- helpers ---------------------------------------------------------------
    def _ip_home(self) -> str:
        return f"{self.rng.choice(self.home)}.{self.rng.randint(1, 254)}"

    def _ip_new(self) -> str:
        r = self.rng
        return f"{r.randint(1, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def _backend_state(self, t: float) -> tuple[str, float]:
        for p in self.sc.phases:
            if p.kind in ("backend_failure", "backend_hang") and p.start <= t < p.end:
                return ("down" if p.kind == "backend_failure" else "hang"), p.end
        return "up", 0.0

    def _emit(self, t: float, client: str, method: str, path: str, query: str, ua: str,
              referer: str, session: bool, *, rt: float | None = None, status: int = 200,
              nbytes: int | None = None, cached_ok: bool = True) -> bool:
        """One shopper request; returns False when the backend failed it."""
        r = self.rng
        state, until = self._backend_state(t)
        if state == "hang":
            # a frozen backend: requests complete when it thaws, or time out at 30 s
            wait = until - t + r.uniform(0.01, 0.5)
            if wait >= 30.0:
                ev = RequestEvent(t, client, method, path, query, 504, 160, 30.0, ua, referer, session,
                                  False, "127.0.0.1:9001", Outcome.TIMEOUT, -1.0, "allow", "unknown")
            else:
                ev = RequestEvent(t, client, method, path, query, 200, r.randint(2000, 40000),
                                  round(wait, 3), ua, referer, session, False, "127.0.0.1:9001",
                                  Outcome.OK, round(wait, 3), "allow", "unknown")
            self.out.append(ev)
            return False
        if state == "down" and r.random() < (0.95 if self.heldout else 0.85):
            if r.random() < 0.65:
                ev = RequestEvent(t, client, method, path, query, 502, 150, round(r.uniform(0.0005, 0.003), 3),
                                  ua, referer, session, False, "127.0.0.1:9001", Outcome.REFUSED, -1.0,
                                  "allow", "unknown")
            else:
                ev = RequestEvent(t, client, method, path, query, 504, 160, 3.0 + round(r.uniform(0, 0.01), 3),
                                  ua, referer, session, False, "127.0.0.1:9001", Outcome.TIMEOUT, -1.0,
                                  "allow", "unknown")
            self.out.append(ev)
            return False
        if rt is None:
            rt = round(r.lognormvariate(-3.2, 0.6), 3)
        if nbytes is None:
            nbytes = r.randint(2000, 40000)
        if status == 200 and cached_ok and r.random() < 0.1:
            status, nbytes = 304, 0
        self.out.append(RequestEvent(t, client, method, path, query, status, nbytes, rt, ua, referer,
                                     session, False, "127.0.0.1:9001", Outcome.OK,
                                     round(max(0.0, rt - 0.001), 3), "allow", "customer" if session else "unknown"))
        return True

    def _page(self, hot: list[int] | None) -> tuple[str, str, str]:
        r = self.rng
        if hot and r.random() < 0.7:
            pid = r.choice(hot)
            return ("GET", f"/product/{pid}", "") if r.random() < 0.8 else ("GET", "/", "")
        x = r.random()
        if x < 0.12:
            return "GET", "/", ""
        if x < 0.62:
            pid = min(self.products, int(r.paretovariate(1.1)))
            return "GET", f"/product/{pid}", ""
        if x < 0.77:
            return "GET", "/search", "q=" + r.choice(_WORDS)
        if x < 0.92:
            return "GET", f"/category/{r.randint(1, 20)}", ""
        return "GET", "/cart", ""

    def session(self, t: float, *, client: str, hot: list[int] | None = None) -> None:
        r = self.rng
        ua = r.choice(self.agents)
        returning = r.random() < 0.3
        pages = r.randint(2, 7)
        referer = "-"
        for i in range(pages):
            method, path, query = self._page(hot)
            ok = self._emit(t, client, method, path, query, ua, referer, returning and i > 0)
            tries = 0
            while not ok and tries < 2:
                t += r.uniform(1.0, 3.0)
                tries += 1
                ok = self._emit(t, client, method, path, query, ua, referer, returning)
            if ok:
                page_url = f"https://shop.example{path}"
                assets = ["/static/app.js", "/static/app.css", "/static/logo.png"]
                if path.startswith("/product/"):
                    assets.append(f"/img/p{path.rsplit('/', 1)[1]}.jpg")
                assets += [f"/static/icon{j}.svg" for j in range(r.randint(0, 2))]
                for a in assets:
                    self._emit(t + r.uniform(0.03, 0.6), client, "GET", a, "", ua, page_url, returning,
                               rt=round(r.uniform(0.001, 0.02), 3), nbytes=r.randint(500, 90000))
                referer = page_url
            t += r.uniform(1.5, 9.0)
        if r.random() < 0.25:
            self._emit(t, client, "POST", "/checkout", "", ua, referer, True, rt=round(r.uniform(0.1, 0.6), 3))

    # -- traffic sources ------------------------------------------------------------
    def shoppers(self) -> None:
        sc, r = self.sc, self.rng
        per_session = 4.5 * 5.2
        lam = sc.base_rps / per_session
        t = sc.t0 - 30.0  # sessions already under way at the start
        end = sc.t0 + sc.duration
        while t < end:
            t += r.expovariate(lam)
            self.session(t, client=self._ip_home())

    def flash_crowd(self, p: Phase) -> None:
        r = self.rng
        factor = r.uniform(6, 15) if self.heldout else r.uniform(8, 12)
        per_session = 4.5 * 5.2
        hot = [r.randint(1, self.products) for _ in range(r.randint(2, 5))]
        t = p.start
        ramp = r.uniform(2.0, 6.0)
        while t < p.end:
            frac = min(1.0, (t - p.start) / ramp + 0.1)
            lam = frac * factor * self.sc.base_rps / per_session
            t += r.expovariate(lam)
            home = r.random() < (0.8 if self.heldout else 0.85)
            self.session(t, client=self._ip_home() if home else self._ip_new(), hot=hot)

    def _attackers(self, n: int) -> list[str]:
        return [self._ip_new() for _ in range(n)]

    def flood(self, p: Phase, heavy: bool) -> None:
        r = self.rng
        if heavy:
            srcs = self._attackers(r.randint(20, 60) if self.heldout else r.randint(30, 100))
            rate = r.uniform(20, 60)
        else:
            srcs = self._attackers(r.randint(3000, 6000) if self.heldout else r.randint(1000, 3000))
            rate = r.uniform(0.3, 1.0) if self.heldout else r.uniform(0.5, 1.5)
        target = r.choice(["/", "/", "/product/1", "/category/3"])
        ua = r.choice(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "LOIC", "Mozilla/4.0 (compatible; MSIE 8.0)"])
        for ip in srcs:
            t = p.start + r.uniform(0, 1.0 / rate)
            while t < p.end:
                rt = round(r.uniform(0.005, 0.05), 3)
                self.out.append(RequestEvent(t, ip, "GET", target, "", 200, 5120, rt, ua, "-",
                                             False, False, "127.0.0.1:9001", Outcome.OK, rt, "allow", "unknown"))
                t += r.expovariate(rate)

    def randomized(self, p: Phase) -> None:
        r = self.rng
        srcs = self._attackers(r.randint(800, 3000))
        rate = r.uniform(0.5, 1.5)
        uas = [f"Mozilla/5.0 (compatible; bot{j}/{r.randint(1, 9)}.0)" for j in range(40)] + self.agents
        letters = string.ascii_lowercase + string.digits
        for ip in srcs:
            t = p.start + r.uniform(0, 1.0 / rate)
            while t < p.end:
                path = "/" + "".join(r.choices(letters, k=r.randint(5, 12)))
                if r.random() < 0.5:
                    path = f"/product/{r.randint(10_000, 10_000_000)}"
                query = "" if r.random() < 0.4 else f"{r.choice(letters)}={r.getrandbits(40):x}"
                ref = f"https://{''.join(r.choices(letters, k=8))}.example/"
                rt = round(r.uniform(0.01, 0.2), 3)
                self.out.append(RequestEvent(t, ip, "GET", path, query, r.choice([200, 404]), 900, rt,
                                             r.choice(uas), ref, False, False, "127.0.0.1:9001",
                                             Outcome.OK, rt, "allow", "unknown"))
                t += r.expovariate(rate)

    def cache_bust(self, p: Phase) -> None:
        r = self.rng
        srcs = self._attackers(r.randint(300, 1500))
        rate = r.uniform(0.4, 1.2)
        for ip in srcs:
            ua = r.choice(self.agents)
            t = p.start + r.uniform(0, 1.0 / rate)
            while t < p.end:
                q = f"q={r.choice(_WORDS)}&_={r.getrandbits(48)}"
                rt = round(r.uniform(0.3, 1.2), 3)
                self.out.append(RequestEvent(t, ip, "GET", "/search", q, 200, 30000, rt, ua, "-",
                                             False, False, "127.0.0.1:9001", Outcome.OK, rt, "allow", "unknown"))
                t += r.expovariate(rate)

    def slow(self, p: Phase) -> None:
        r = self.rng
        srcs = self._attackers(r.randint(50, 300))
        conns = r.uniform(0.3, 1.0)  # new connections per source per second
        for ip in srcs:
            t = p.start + r.uniform(0, 1.0 / conns)
            while t < p.end:
                post = r.random() < 0.3
                rt = SLOW_TIMEOUT + round(r.uniform(0, 0.05), 3)
                self.out.append(RequestEvent(t, ip, "POST" if post else "GET", "/checkout" if post else "/",
                                             "", 408, 0, rt, "Mozilla/5.0", "-", False, False, "",
                                             Outcome.SHIELD, -1.0, "allow", "unknown"))
                t += r.expovariate(conns)


def generate(sc: Scenario) -> list[RequestEvent]:
    """All events of ``sc``, sorted by completion time (start + request time)."""
    g = _Gen(sc)
    g.shoppers()
    for p in sc.phases:
        if p.kind == "flash_crowd":
            g.flash_crowd(p)
        elif p.kind in ("flood", "flood_heavy"):
            g.flood(p, heavy=p.kind == "flood_heavy")
        elif p.kind == "randomized":
            g.randomized(p)
        elif p.kind == "cache_bust":
            g.cache_bust(p)
        elif p.kind == "slow":
            g.slow(p)
    lo, hi = sc.t0, sc.t0 + sc.duration
    evs = [e for e in g.out if lo <= e.time < hi]
    evs.sort(key=lambda e: e.time + e.request_time)
    return evs


# -- writers ---------------------------------------------------------------------------
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def clf_time(t: float) -> str:
    """``22/Nov/2026:03:04:05 +0000`` for Unix time ``t`` (UTC)."""
    g = _time.gmtime(t)
    return f"{g.tm_mday:02d}/{_MONTHS[g.tm_mon - 1]}/{g.tm_year}:{g.tm_hour:02d}:{g.tm_min:02d}:{g.tm_sec:02d} +0000"


def _dash(x: str) -> str:
    return x if x else "-"


def format_combined(ev: RequestEvent, *, access_fields: bool = True) -> str:
    """One line of docs/ACCESS_LOG.md (``access_fields``) or plain nginx ``combined``."""
    target = ev.path + ("?" + ev.query if ev.query else "")
    line = (f'{ev.client} - - [{clf_time(ev.time)}] "{ev.method} {target} HTTP/1.1" {ev.status} '
            f'{ev.bytes_sent} "{_dash(ev.referer)}" "{_dash(ev.user_agent)}"')
    if not access_fields:
        return line
    ut = f"{ev.upstream_time:.3f}" if ev.upstream_time >= 0 else "-"
    us = str(ev.status) if ev.outcome is Outcome.OK else "-"
    return (f"{line} rt={ev.request_time:.3f} up={_dash(ev.upstream)} ut={ut} us={us} o={ev.outcome.value} "
            f"d={_dash(ev.decision)} c={_dash(ev.cls)} s={int(ev.session)} v={int(ev.verified)}")


def format_json(ev: RequestEvent) -> str:
    return json.dumps({
        "time": ev.time, "client": ev.client, "method": ev.method, "path": ev.path, "query": ev.query,
        "status": ev.status, "bytes_sent": ev.bytes_sent, "request_time": ev.request_time,
        "user_agent": ev.user_agent, "referer": ev.referer, "session": ev.session,
        "verified": ev.verified, "upstream": ev.upstream, "outcome": ev.outcome.value,
        "upstream_time": ev.upstream_time, "decision": ev.decision, "cls": ev.cls,
    })


def write_log(events: Iterable[RequestEvent], path: Path, fmt: str = "access") -> int:
    """Write ``events`` as ``access`` (ACCESS_LOG.md), ``combined`` or ``json`` lines;
    gzipped when ``path`` ends in ``.gz``. Returns the number of lines."""
    opener: IO[str]
    opener = gzip.open(path, "wt", encoding="utf-8") if str(path).endswith(".gz") else open(path, "w", encoding="utf-8")  # noqa: SIM115
    n = 0
    with opener as fh:
        for ev in events:
            if fmt == "json":
                fh.write(format_json(ev))
            else:
                fh.write(format_combined(ev, access_fields=fmt == "access"))
            fh.write("\n")
            n += 1
    return n
