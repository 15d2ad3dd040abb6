"""Legitimate shoppers: open-loop sessions that behave like people.

Sessions arrive as a Poisson process at a rate per second that the scenario
sets phase by phase, whatever the server does (a slow shop cannot slow the
load down: that is the point of an open loop). Each session has its own
source address on 127.10.0.0/16, keeps its cookies, loads the landing page
and its assets, looks at products, sometimes searches, sometimes adds to
cart and checks out with an idempotency key (retries reuse the key), and
thinks between pages. A challenge page is solved as a browser would
(parse the meta tag, compute, follow the redirect, keep the cookie).

How a person reaches the shop (:class:`AccessMix`) is part of who they are:

- **own address**: a home line; one public IPv4 address per household, so
  one per session here (127.10.0.0/16).
- **carrier NAT**: a phone on a mobile network. The carrier puts its
  subscribers behind a small pool of public IPv4 addresses (carrier-grade
  NAT, RFC 6598 on the inside), so the shop sees many unrelated people on one
  address at once; each still has its own browser, cookies and connection.
  Here: the pool ``CARRIER_NAT_NET`` (127.10.250.0/24), ``nat_pool``
  addresses of it, each session on one of them.
- **IPv6**: a home or phone on an IPv6 network: its own /64 out of the
  customer's /56 out of its ISP's /32. Loopback has no IPv6 address but ::1,
  so these arrive the way most shops receive traffic anyway: through a
  layer-4 balancer that writes a PROXY protocol v2 header naming the client
  (shieldwall.http.proxy_protocol). The lab's balancer hop is written by the
  client itself, from an address of ``EDGE_NET`` that the shield trusts
  (``proxy_protocol_from``); the shield, its detector and the shop see the
  IPv6 address (2001:db8::/32, never routed), the kernel sees loopback.
  Without an edge (fronts ``none``, ``nginx``) they fall back to an own
  IPv4 address, and the report says so (``access`` counts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from urllib.parse import urlsplit

from shieldwall.drill import challenge as chal
from shieldwall.drill import netsafety
from shieldwall.drill.httpclient import Connection, CookieJar, HTTPError, Response, Timeout
from shieldwall.drill.stats import LegitStats
from shieldwall.http.proxy_protocol import v2_header

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


@dataclass(frozen=True)
class AccessMix:
    """Shares of sessions by how they reach the shop (the rest: own IPv4 address)."""

    carrier_nat: float = 0.0
    ipv6: float = 0.0
    nat_pool: int = 2
    """Public addresses of the carrier's NAT that the shop sees (sessions share them)."""
    ipv6_isps: int = 3
    """ISPs (one /32 each, inside 2001:db8::/32) the IPv6 shoppers come from."""

    def __post_init__(self) -> None:
        if not (self.carrier_nat >= 0.0 and self.ipv6 >= 0.0 and self.carrier_nat + self.ipv6 <= 1.0):
            raise ValueError(f"access shares must be >= 0 and add up to at most 1, not "
                             f"{self.carrier_nat} + {self.ipv6}")
        if not 1 <= self.nat_pool <= 254 or not 1 <= self.ipv6_isps <= 4096:
            raise ValueError(f"nat_pool must be 1..254 and ipv6_isps 1..4096 (got {self.nat_pool}, "
                             f"{self.ipv6_isps})")


OWN, CARRIER_NAT, IPV6 = "own", "carrier_nat", "ipv6"
ACCESS_KINDS = (OWN, CARRIER_NAT, IPV6)


def ipv6_shopper(rng: random.Random, isps: int) -> str:
    """A plausible IPv6 client: ISP /32 (a /36 of 2001:db8::/32 each), customer
    /56, LAN /64, random interface id (privacy addresses, RFC 8981)."""
    isp = rng.randrange(isps)
    customer = rng.getrandbits(20)  # /36 + 20 bits = /56
    lan = rng.getrandbits(8)        # /56 -> /64
    iid = rng.getrandbits(64) or 1
    value = (0x20010DB8 << 96) | (isp << 92) | (customer << 72) | (lan << 64) | iid
    addr = ipaddress.IPv6Address(value)
    assert addr in netsafety.SHOPPER_NET6
    return str(addr)


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
                 on_challenge: Callable[[], None] | None = None, preamble: bytes = b"") -> None:
        self.conn = Connection(host, port, source, preamble, reuse=True)
        self.jar = CookieJar()
        self.solver = solver
        self.on_challenge = on_challenge
        self.exchanges = 0
        """HTTP exchanges that got a response (challenge and redirect hops included)."""
        self.challenges = 0
        """Challenges met (each solved, or given up on at the deadline)."""
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
            reused = self.conn.open
            try:
                resp = await self.conn.request(method, path, hdrs, body, timeout=left)
            except Timeout:
                raise
            except HTTPError:
                # A kept-alive connection that breaks (its server went away, a
                # balancer cut it) is retried once on a new one for a safe
                # method, as browsers do (RFC 9110 9.2.2); a new one is not.
                if not reused or method not in ("GET", "HEAD"):
                    raise
                resp = await self.conn.request(method, path, hdrs, body,
                                               timeout=max(0.01, deadline - time.monotonic()))
            self.exchanges += 1
            self.jar.update(resp)
            c = chal.find(resp.body) if resp.status >= 200 and b"<meta" in resp.body[:8192] else None
            if c is not None:
                self.challenges += 1
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
                 solver: Executor | None = None, seed: int | None = None,
                 access: AccessMix | None = None, edge: str | None = None) -> None:
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
        self.access = access or AccessMix()
        self.edge = edge
        """Source address of the balancer hop the shield trusts (None: no IPv6 path)."""
        if edge is not None and ipaddress.ip_address(edge) not in netsafety.EDGE_NET:
            raise ValueError(f"edge {edge} is not in the lab's edge network {netsafety.EDGE_NET}")
        self.nat_pool = [str(netsafety.CARRIER_NAT_NET.network_address + 1 + i)
                         for i in range(self.access.nat_pool)]
        self.access_rng = random.Random(None if seed is None else seed + 7)
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
        met = b.challenges
        try:
            resp = await b.fetch(method, path, body, headers, timeout=self.profile.timeout_s)
        except (HTTPError, TimeoutError, ValueError) as exc:
            self.stats.record(phase, t, time.monotonic() - start, None, type(exc).__name__,
                              challenged=b.challenges > met)
            return None
        self.stats.record(phase, t, time.monotonic() - start, resp.status,
                          challenged=b.challenges > met)
        return resp

    async def session(self) -> None:
        self.sessions += 1
        sid = uuid.uuid4().hex[:16]
        host, port = self.rng.choice(self.targets)
        kind, source, preamble = self.reach(host, port)
        p = self.profile
        stats = self.stats
        stats.phase(self.clock.phase).sessions += 1
        stats.access[kind] += 1

        def counted() -> None:
            stats.phase(self.clock.phase).challenges += 1

        b = Browser(host, port, source, self.solver, counted, preamble)
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

    def reach(self, host: str, port: int) -> tuple[str, str, bytes]:
        """How this session reaches the shop: (kind, source address to bind,
        bytes to write first on each connection)."""
        a = self.access
        r = self.access_rng.random()
        if r < a.carrier_nat:
            nat = self.access_rng.choice(self.nat_pool)
            self.stats.client_addresses.add(nat)
            return CARRIER_NAT, nat, b""
        if r < a.carrier_nat + a.ipv6 and self.edge is not None:
            client = ipv6_shopper(self.access_rng, a.ipv6_isps)
            # what the balancer writes: the client's address and port, and the
            # address it was connecting to (the shop's public IPv6 address)
            header = v2_header((client, self.access_rng.randint(1024, 65535)), ("2001:db8:ffff::80", port))
            self.stats.client_addresses.add(client)
            return IPV6, self.edge, header
        source = self.sources[self.next_source % len(self.sources)]
        self.next_source += 1
        self.stats.client_addresses.add(source)
        return OWN if r >= a.carrier_nat + a.ipv6 else "ipv6_fallback_v4", source, b""

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
