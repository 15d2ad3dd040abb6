"""Legitimate shoppers: open-loop sessions that behave like people.

Sessions arrive as a Poisson process at a rate per second that the scenario
sets phase by phase, whatever the server does (a slow shop cannot slow the
load down: that is the point of an open loop). Each session has its own
source address on 127.10.0.0/16, keeps its cookies, loads the landing page
and its assets, looks at products, sometimes searches, sometimes adds to
cart and checks out with an idempotency key (retries reuse the key), and
thinks between pages. A challenge page is solved as a browser would
(parse the meta tag, compute, follow the redirect, keep the cookie).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import urlsplit

from shieldwall.drill import challenge as chal
from shieldwall.drill import netsafety
from shieldwall.drill.httpclient import Connection, CookieJar, HTTPError, Response
from shieldwall.drill.stats import LegitStats

MAX_SESSIONS = 5000
"""Hard cap on concurrent sessions, so the generator itself never melts."""
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
ASSETS = ("/static/shop.css", "/static/shop.js", "/img/logo.png")


@dataclass(frozen=True)
class ShopperProfile:
    """How a person shops (drill time is compressed: think times are short)."""

    think_s: tuple[float, float] = (0.3, 1.2)
    products: tuple[int, int] = (1, 3)
    search_p: float = 0.3
    checkout_p: float = 0.35
    timeout_s: float = 10.0
    """A person's patience for one page."""
    checkout_tries: int = 3


class Clock:
    """Drill time: seconds since the start, and the phase now running."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phase = "start"

    def now(self) -> float:
        return time.monotonic() - self.t0


async def solve_async(executor: Executor | None, c: chal.Challenge) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, chal.solve, c.challenge, c.difficulty)


def _path_of(location: str) -> str:
    parts = urlsplit(location)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Browser:
    """One person's browser: one kept-alive connection from one source address."""

    def __init__(self, host: str, port: int, source: str, solver: Executor | None,
                 on_challenge: Callable[[], None] | None = None) -> None:
        self.conn = Connection(host, port, source)
        self.jar = CookieJar()
        self.solver = solver
        self.on_challenge = on_challenge
        self.exchanges = 0
        """HTTP exchanges that got a response (challenge and redirect hops included)."""
        self.base_headers = [("User-Agent", USER_AGENT), ("Accept", "text/html,*/*"),
                             ("Accept-Language", "en-GB,en;q=0.9")]

    def close(self) -> None:
        self.conn.close()

    async def fetch(self, method: str, path: str, body: bytes = b"",
                    headers: list[tuple[str, str]] | None = None, timeout: float = 10.0) -> Response:
        """A page as a person sees it: challenges solved and redirects followed."""
        deadline = time.monotonic() + timeout
        orig = (method, path, body)
        for _ in range(8):
            left = deadline - time.monotonic()
            if left <= 0:
                raise HTTPError(f"{orig[0]} {orig[1]} timed out")
            hdrs = self.base_headers + (headers or []) + self.jar.header()
            if body:
                hdrs.append(("Content-Type", "application/x-www-form-urlencoded"))
            resp = await self.conn.request(method, path, hdrs, body, timeout=left)
            self.exchanges += 1
            self.jar.update(resp)
            c = chal.find(resp.body) if resp.status >= 200 and b"<meta" in resp.body[:8192] else None
            if c is not None:
                if self.on_challenge is not None:
                    self.on_challenge()
                nonce = await asyncio.wait_for(solve_async(self.solver, c), max(0.01, left))
                method, path, body = "GET", c.verify_target(nonce), b""
                continue
            if resp.status in (301, 302, 303, 307, 308) and resp.header("location"):
                loc = _path_of(resp.header("location") or "/")
                if method == "GET" and path.startswith("/.shieldwall/") and orig[0] != "GET":
                    method, path, body = orig  # a browser resubmits the form after the check
                    continue
                if resp.status in (307, 308) and method != "GET":
                    path = loc
                    continue
                method, path, body = "GET", loc, b""
                continue
            return resp
        raise HTTPError(f"{orig[0]} {orig[1]}: too many redirects")


class Shoppers:
    """Open-loop Poisson session arrivals against ``targets``."""

    def __init__(self, targets: list[tuple[str, int]], stats: LegitStats, clock: Clock,
                 rate: Callable[[], float], profile: ShopperProfile | None = None,
                 solver: Executor | None = None, seed: int | None = None) -> None:
        for host, port in targets:
            netsafety.check_target(host, port)
        self.targets = targets
        self.stats = stats
        self.clock = clock
        self.rate = rate
        self.profile = profile or ShopperProfile()
        self.solver = solver
        self.rng = random.Random(seed)
        self.sources = netsafety.sources(netsafety.SHOPPER_NET, 60000)
        self.next_source = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.sessions = 0
        self.dropped = 0
        self.leftover = 0
        """Sessions still running when the grace period ended (cancelled, not counted further)."""
        """Arrivals not started because MAX_SESSIONS were already running."""

    async def run(self, until: float, grace: float = 8.0) -> None:
        """Spawn sessions until drill time ``until``; then give running ones ``grace`` seconds."""
        while True:
            r = max(0.01, self.rate())
            await asyncio.sleep(self.rng.expovariate(r))
            if self.clock.now() >= until:
                break
            if len(self.tasks) >= MAX_SESSIONS:
                self.dropped += 1
                continue
            task = asyncio.create_task(self.session())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
        self.leftover = len(self.tasks)
        for t in list(self.tasks):
            t.cancel()

    async def think(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.profile.think_s))

    async def get(self, b: Browser, method: str, path: str, body: bytes = b"",
                  headers: list[tuple[str, str]] | None = None) -> Response | None:
        phase, t = self.clock.phase, self.clock.now()
        start = time.monotonic()
        try:
            resp = await b.fetch(method, path, body, headers, timeout=self.profile.timeout_s)
        except (HTTPError, TimeoutError, ValueError) as exc:
            self.stats.record(phase, t, time.monotonic() - start, None, type(exc).__name__)
            return None
        self.stats.record(phase, t, time.monotonic() - start, resp.status)
        return resp

    async def session(self) -> None:
        self.sessions += 1
        sid = uuid.uuid4().hex[:16]
        source = self.sources[self.next_source % len(self.sources)]
        self.next_source += 1
        host, port = self.rng.choice(self.targets)
        p = self.profile
        stats = self.stats
        stats.phase(self.clock.phase).sessions += 1

        def counted() -> None:
            stats.phase(self.clock.phase).challenges += 1

        b = Browser(host, port, source, self.solver, counted)
        try:
            await self.get(b, "GET", "/")
            for asset in ASSETS:
                await self.get(b, "GET", asset)
            picked = [self.rng.randint(1, 40) for _ in range(self.rng.randint(*p.products))]
            for pid in picked:
                await self.think()
                await self.get(b, "GET", f"/product/{pid}")
                await self.get(b, "GET", f"/img/p{pid}.png")
            if self.rng.random() < p.search_p:
                await self.think()
                await self.get(b, "GET", f"/search?q=Product+{self.rng.randint(1, 40)}")
            if self.rng.random() < p.checkout_p:
                await self.think()
                await self.get(b, "POST", "/cart/add", f"product={picked[0]}".encode())
                await self.think()
                await self.checkout(b, sid, picked)
        finally:
            stats.exchanges += b.exchanges
            b.close()

    async def checkout(self, b: Browser, sid: str, picked: list[int]) -> None:
        ph = self.stats.phase(self.clock.phase)
        ph.checkouts_started += 1
        self.stats.started.add(sid)
        key = uuid.uuid4().hex
        body = f"session={sid}&items={'-'.join(map(str, picked))}".encode()
        for attempt in range(self.profile.checkout_tries):
            if attempt:
                await asyncio.sleep(0.5 * attempt)
            resp = await self.get(b, "POST", "/checkout", body, [("Idempotency-Key", key)])
            if resp is not None and resp.status in (200, 201):
                ph.checkouts_completed += 1
                self.stats.acknowledged.add(sid)
                return
            if resp is not None and resp.status == 400:
                return
