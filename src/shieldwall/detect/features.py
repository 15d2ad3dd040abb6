"""Features of each closed window, with 10 s and 60 s views and a learned baseline.

The :class:`Featurizer` is the only stateful step between windows and rules:
it keeps running 10 s counters (added when a window enters the view,
subtracted when it leaves, so the cost is per distinct key, not per request),
60 s scalar sums, the EWMA baseline and the bounded sets of sources and
prefixes seen while traffic was normal. The baseline learns only from windows
the detector judged normal (:meth:`Featurizer.learn`), so an attack cannot
teach it that attacks are normal.

Jung, Krishnamurthy and Rabinovich (WWW 2002) is the reference for what
separates a flash crowd from a DoS: a crowd comes mostly from networks seen
before, bunches on a few popular pages and keeps a normal per-client rate; a
DoS comes from new networks, at a high per-client rate, or at random URLs.
"""

from __future__ import annotations

import ipaddress
import math
from collections import _count_elements, deque  # type: ignore[attr-defined]
from dataclasses import asdict, dataclass
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any

from shieldwall.detect.windows import _ASSET, _PAGE, _TRUSTED, Window

if TYPE_CHECKING:
    # (annotations only: `shieldwall analyze` without --config never imports pydantic)
    from shieldwall.detect.settings import DetectSettings

SLOW_SOURCE_MIN = 10
REPEAT_MIN = 3  # at least 2: a client's first second never counts
"""Seconds in which a client asked for the same one page URL, and for nothing else (no
other page, no asset), with pauses under ``REPEAT_GAP`` s, from which it repeats:
a tool re-sends its target; a shopper moves from page to page with their assets."""
REPEAT_GAP = 60
"""Slow requests in 60 s from one address that make it a slow attacker (a browser's
idle preconnect ends as one 408; a carrier NAT's many browsers as a few)."""

MIN_BASE_WINDOWS = 5
"""Windows of normal traffic before a rate can be called elevated at all (the rest of
the baseline -- seen networks, assets -- waits for the full ``warmup_windows``)."""

NO_ASSETS = 0.15
"""Below this baseline share of page clients fetching assets, the log shows no assets:
their absence is missing data, not evidence."""

HEAD_PATHS = 32
"""The 10 s view's busiest page paths (query strings aside) that count as its head; the
rest of its page requests are its tail. A tool's target list is short (one URL to a
few dozen: a plain flood's one to three, a volunteer botnet's ten); people browse
the whole catalogue."""
BROWSE_WALK = 1.75
"""A ``browse`` this far above 1: the surge's tail grew much faster than the shop's people
make it -- paths nobody usually asks for (random paths, a crawler walking the whole
catalogue), not people browsing. (Train crowds: 1.33 at most in any second.)"""
BROWSE_MIN_TAIL = 20.0
"""Page requests the tail of a normal 10 s view must usually hold for ``browse`` to be
judged (a small shop's ten seconds hold fewer pages than there are head paths)."""
BROWSE_MIN_EXCESS = 0.25
"""...and the view's page requests above the usual number, as a share of it."""

SLOW_SHIFT = 1.5
"""A 60 s view this many times the slow mean is demand that has moved, not a busy
second: the slow mean learns such windows only at ``crowd_learning`` weight, so a crowd
that builds over minutes (every one of its seconds still "normal" to a fast baseline
that follows it) cannot teach it. (Train and pool, without it: the slow mean ended
1.3-2.1x where it began over every crowd missed behind a CDN and mid 22's; with it,
at most 1.13x. At 1.3 a mid shop's evening rise outran it: pool mid 23.)"""
SLOW_SURGE = 2.5
"""The 60 s and the 10 s view at least this many times the slow mean are a surge however
the seconds scatter -- where addresses do not count people (lines are the only measure
of demand there), or where the page clients show many more people than usual: a crowd
of shoppers adds fewer lines than people (crawlers, app clients and monitors do not
come with it), and ``rate_factor`` x is a bar for one second, not for ten minutes.
Train and pool behind a CDN: the crowds the CUSUM missed stood 2.75-3.3x the protected
slow mean for 420-650 s; crawler spikes and newsletter bumps (labelled normal) 1.95x at
most, the rest of the quiet stretches 2.45x (the tail of a crowd). Without more people
a small shop's quiet stretches reach 3.8x (bursts): lines alone say nothing there."""
SLOW_SURGE_NOW = 2.0
"""...with this second itself at least this many times it (the 60 s view outlives what
filled it by a minute: the surge is over when its seconds are)."""
SLOW_SURGE_WINDOWS = 60
"""Windows learned before the slow surge is judged (a full 60 s view of normal traffic)."""


@dataclass(frozen=True, slots=True)
class Features:
    """Everything the rules look at for one 1 s window (all plain numbers)."""

    sec: int
    rps: float
    rps_prev: float
    """The previous window's rate (a stall is two silent seconds in a row)."""
    rps_10: float
    rps_60: float
    ref_rps: float
    """The rate judged against: the lower of the fast and the slow baseline."""
    slow_rps: float
    rate_sd: float
    """Standard deviation of a normal second's count for this shop."""
    surge: float
    """CUSUM of the excess over ``rate_factor`` x ``ref_rps`` in standard deviations:
    one busy second proves nothing, a sustained (or huge) excess accumulates."""
    low_run: int
    """Consecutive nearly empty seconds up to this one (a stall candidate)."""
    low_nats: float
    """-ln P(a run this long of nearly empty seconds in normal traffic)."""
    sources: int
    prefixes: int
    new_source_share: float
    """Share of this second's sources never seen while traffic was normal."""
    new_prefix_share: float
    """Share of this second's sources whose network prefix was never seen."""
    req_per_source_mean: float
    """Requests per source over the 10 s view."""
    req_per_source_p99: float
    req_per_source_max: float
    req_per_source_p99_1s: float
    """Requests per source this second, 99th percentile over sources."""
    pages: int
    top_path: str
    top_path_share: float
    """Share of page requests in the 10 s view on the single most requested path."""
    path_entropy: float
    """Entropy of page paths this second over log2(page requests): 0 = one path, 1 = all distinct."""
    distinct_urls: int
    """Distinct page URLs (path and query) this second."""
    url_unique_share: float
    query_path: str
    """The path with the most distinct query strings this second."""
    query_distinct: int
    """Distinct (path, query string) pairs this second, over every path."""
    query_share: float
    """Share of page requests that carry a query string."""
    query_entropy: float
    """Entropy of page query strings this second over log2(requests with a query)."""
    ua_entropy: float
    notfound_share: float
    """Share of page requests answered 404 this second (random nonexistent paths)."""
    new_key_share: float
    """Share of page requests with a query string none of whose parameter names was
    seen in normal traffic (random queries; cache busting randomises the values of the
    shop's own parameters, perhaps with a buster parameter added)."""
    top5_share: float
    """Share of the 10 s view's requests made by its five busiest sources."""
    slow_sources: int
    """Distinct sources of slow requests and 408s over the 10 s view."""
    slow_source_share: float
    """Share of this second's requests from addresses with at least ``SLOW_SOURCE_MIN``
    slow requests or 408s in the last 60 s and at least half of their requests this
    second slow or failed (not answered)."""
    asset_share: float
    """Share of page clients in the 10 s view that also fetched page assets."""
    page_clients: int
    pageonly_clients: int
    """Page clients in the 10 s view, and how many of them fetched no asset."""
    pageonly_excess: float
    """Of the page clients above the shop's usual number, the share that fetched no
    asset (0 without such an excess). A crowd's extra clients browse like the
    regulars; a flood's are page-only -- however many regulars dilute the share."""
    heavy_page_share: float
    """Share of the 10 s view's requests made by heavy page-only clients: at least
    ``heavy_limit`` requests in 10 s, all pages, no asset (sessions and passes
    notwithstanding)."""
    heavy_clients: int
    heavy_trusted: int
    """How many heavy page-only clients, and how many of them held a session or a pass."""
    heavy_limit: float
    session_share: float
    verified_share: float
    error_share: float
    backend_fail_share: float
    own_fail_share: float
    """The failed share of the requests of the light sources of the 10 s view (under
    ``per_source_min_1s`` requests in it, or busy but browsing: a carrier NAT) this
    second, or over the last 3 s when this second holds fewer than
    ``backend_min_errors`` of them and none failed; else (a few failing, or every
    address busy: a CDN's edges) of this second's requests from sources that sent fewer than
    ``per_source_min_1s`` this second. A backend that fails, fails the shop's people;
    refusals that fall on a few busy sources are a per-address cap refusing a tool."""
    backend_fails: int
    backend_fails_3: int
    """Backend failures over the last 3 s (a quiet shop's failing second may hold few requests)."""
    fail_evidence: float
    """CUSUM of the backend-failure share above ``backend_error_share``, second by second:
    a dead backend (every request failing) fills it in one second; a third of requests
    failing for a few seconds (a rolling deploy) barely moves it."""
    timeout_share: float
    latency: float
    upstream_latency: float
    s408: int
    slow: int
    slow_share: float
    error_share_60: float
    legit_requests: int
    legit_failed: int
    # the baseline these were judged against
    warm: bool
    baseline_windows: int
    """Windows the baseline has learned from (``warm`` once ``warmup_windows``)."""
    base_rps: float
    base_p99: float
    base_p99_1s: float
    base_asset_share: float
    base_distinct_urls: float
    base_query_distinct: float
    base_error_share: float
    base_notfound_share: float
    base_slow_share: float
    base_page_clients: float
    """The usual number of page clients in the 10 s view (the lower of a fast and a slow mean)."""
    base_pageonly_clients: float
    base_pages_per_client: float
    people_z: float
    """Page clients in the 10 s view above the usual number, in the shop's own standard
    deviations: a surge of people, not of lines."""
    repeaters: int = 0
    """This second's page clients that have asked for one URL only, and no asset, in at
    least ``REPEAT_MIN`` seconds (pauses under ``REPEAT_GAP`` s): a tool re-sending its
    target. The signal works without assets (behind a CDN) and under every per-address
    rate limit; an address shared by many browsers (a carrier NAT, a CDN's edge) never
    repeats one URL."""
    repeat_share: float = 0.0
    """``repeaters`` over this second's page clients."""
    base_repeaters: float = 0.0
    """The usual number of repeaters in a second (monitors, app clients polling)."""
    browse: float = -1.0
    """How much of the surge browses: the page requests above the usual number in the
    10 s view that fell outside its ``HEAD_PATHS`` busiest paths, over the share the
    usual view has outside them. About 1 when the extra visitors spread over the
    catalogue as the shop's people do (a crowd lands on a few featured pages, then
    browses); about 0 when the extra requests all repeat a fixed few paths (a flood,
    or a randomised query on one path: its paths are still few). -1: not judged (no
    page excess of ``BROWSE_MIN_EXCESS``, or too few pages in the usual tail; and in a
    log that shows assets, which say more about whether a surge browses)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _entropy(counts: dict[str, int], total: int) -> float:
    """Shannon entropy of ``counts`` normalised by log2(total): 1 when every item is distinct."""
    if total <= 1:
        return 0.0
    h = 0.0
    for c in counts.values():
        p = c / total
        h -= p * math.log2(p)
    return h / math.log2(total)


def heavy_limit_of(s: DetectSettings, base_p99: float) -> float:
    """Requests in 10 s from which a page-only client is a heavy hitter."""
    return max(float(s.heavy_min), s.heavy_factor * base_p99)


def shared_browsers(counts: dict[str, int], pages: dict[str, int], assets: dict[str, int],
                    heavy: float) -> set[str]:
    """Busy sources that are many people's browsers on one address, not one heavy bot.

    A carrier-grade NAT (a mobile network puts thousands of subscribers behind a
    few public IPv4 addresses) or an office proxy sends, together, what many
    shoppers send: counted per address it looks like one heavy hitter, and a
    flash crowd on a mobile-heavy shop would be called a flood. What gives such
    an address away is what flooding bots do not do: its pages come with their
    assets, second after second, because every browser behind it fetches them.
    A source qualifies when it sent at least ``heavy`` requests in the 10 s view
    and fetched assets in at least half the seconds in which it fetched pages.
    Such sources are left out of the per-source request rates (they still count
    for every other feature); a bot that fetches assets as often as a browser
    does is treated as the asset share already treats it, as a browser, and the
    guard's per-address limits still apply to it."""
    out: set[str] = set()
    # (only a source that fetched assets can qualify: the intersection, in C, leaves
    # out a flood's page-only thousands)
    for c in counts.keys() & assets.keys():
        if counts[c] >= heavy:
            pg = pages.get(c, 0)
            if pg and 2 * assets[c] >= pg:
                out.add(c)
    return out


def more_people(f: Features, s: DetectSettings, z: float | None = None) -> bool:
    """Page clients in the 10 s view well above this shop's usual number, by its own
    spread (``people_z``, or ``z``) and by ``people_factor``: a surge of people, not of lines."""
    return (f.warm and people_counted(f, s) and f.people_z >= (s.people_z if z is None else z)
            and f.page_clients >= s.people_factor * f.base_page_clients)


def people_counted(f: Features, s: DetectSettings) -> bool:
    """Whether addresses count people here. Behind a CDN or a proxy whose edge addresses
    are all the shop sees, a handful of addresses carries everyone (many pages each in
    10 s, where a shopper's browser fetches one or two): their number does not move
    with demand, and a surge can only be judged on lines."""
    return f.base_pages_per_client < s.people_max_pages


def _histogram(values: Any) -> dict[int, int]:
    """Count -> how many keys have it (one C pass: the counts of a view are small
    integers, far fewer distinct than keys)."""
    hist: dict[int, int] = {}
    _count_elements(hist, values)
    return hist


def _max_kth(hist: dict[int, int], levels: list[int], k: int) -> tuple[int, int]:
    """The largest value of the multiset ``hist`` and its ``k``-th largest (its smallest
    when it holds fewer): ``top[0]`` and ``top[-1]`` of ``nlargest(k, values)``, (0, 0)
    when empty. ``levels``: the keys of ``hist``, largest first."""
    mx = 0
    last = 0
    left = k
    for v in levels:
        m = hist[v]
        if m <= 0:
            continue
        if not mx:
            mx = v
        last = v
        left -= m
        if left <= 0:
            break
    return mx, last


def _top_sum(hist: dict[int, int], levels: list[int], k: int) -> int:
    """``sum(nlargest(k, values))`` of the multiset ``hist``."""
    total = 0
    for v in levels:
        m = min(hist[v], k)
        total += v * m
        k -= m
        if not k:
            break
    return total


class _Seen:
    """A bounded insertion-ordered set: the oldest entries go first when full."""

    __slots__ = ("_cap", "d")

    def __init__(self, cap: int) -> None:
        self.d: dict[str, None] = {}
        """The members (values unused); hot loops test ``key in d`` directly."""
        self._cap = cap

    def __contains__(self, key: object) -> bool:
        return key in self.d

    def __len__(self) -> int:
        return len(self.d)

    def add_all(self, keys: Any) -> None:
        d = self.d
        for k in keys:
            if k in d:
                continue
            d[k] = None
        over = len(d) - self._cap
        if over > 0:
            it = iter(d)
            old = [next(it) for _ in range(over)]
            for k in old:
                del d[k]


class Prefixer:
    """Client address -> network prefix string (``a.b.c.0/24``), cached and bounded."""

    def __init__(self, v4: int = 24, v6: int = 48) -> None:
        self.v4 = v4
        self.v6 = v6
        self.cache: dict[str, str] = {}

    def __call__(self, client: str) -> str:
        p = self.cache.get(client)
        if p is not None:
            return p
        if self.v4 == 24 and client.count(".") == 3 and ":" not in client:
            p = client.rpartition(".")[0] + ".0/24"
        else:
            try:
                ip = ipaddress.ip_address(client)
                bits = self.v4 if ip.version == 4 else self.v6
                p = str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
            except ValueError:
                p = client
        if len(self.cache) > 200_000:
            self.cache.clear()
        self.cache[client] = p
        return p


class _Ewma:
    """An exponentially weighted mean that follows the recent level quickly during
    warm-up (weight at least ``WARM_ALPHA``: a shop whose traffic is still ramping up
    when the shield starts is judged against where it got to, not its average since
    zero) and slowly after it."""

    __slots__ = ("alpha", "n", "value", "warm_alpha", "warmup")

    WARM_ALPHA = 0.25

    def __init__(self, alpha: float, value: float = 0.0, warmup: int = 15,
                 warm_alpha: float = WARM_ALPHA) -> None:
        self.alpha = alpha
        self.n = 0
        self.value = value
        self.warmup = warmup
        self.warm_alpha = warm_alpha

    def update(self, x: float, weight: float = 1.0) -> None:
        self.n += 1
        a = max(1.0 / self.n, self.warm_alpha) if self.n <= self.warmup else self.alpha
        a *= weight
        self.value += a * (x - self.value)


class RateModel:
    """What a normal second's request count looks like for *this* shop: a fast mean
    (minutes) with its variance, a slow mean (tens of minutes) that a crowd building
    over a few minutes cannot teach, and how often a normal second is nearly empty
    (and, after one, how often the next one is too: a small shop's pauses come in runs).

    Counts per second are over-dispersed (a page and its assets arrive together), so
    a second is judged against the spread the shop actually has, never a constant;
    with few windows learned the spread is inflated (an estimate from five seconds is
    not trusted like one from an hour)."""

    __slots__ = ("fast", "low", "low_after_low", "n", "pages", "prev_low", "slow", "slow_var", "var")

    SLOW_CLIP = 2.0
    """Where addresses do not count people (``learn(clip=True)``), the slow mean learns
    a busy second only up to this many of its own standard deviations above itself (a
    winsorized mean): a crowd building over ten minutes behind a CDN's edge addresses
    moves it by a few deviations, not to the crowd's level, while a real change of
    level still gets in, at that pace (and the fast mean follows at once). Where they
    count people, a building crowd already teaches the rate only at crowd weight (its
    seconds have more people than usual), and the lines are left alone."""

    PRIOR_WINDOWS = 30.0
    """Weight, in windows, of the model's prior guess of the empty-second odds."""

    def __init__(self, alpha: float, slow_alpha: float, warmup: int) -> None:
        self.fast = _Ewma(alpha, 0.0, warmup)
        self.var = _Ewma(alpha, 0.0, warmup)
        self.slow = _Ewma(slow_alpha, 0.0, int(1 / slow_alpha), warm_alpha=0.0)
        self.slow_var = _Ewma(slow_alpha, 0.0, int(1 / slow_alpha), warm_alpha=0.0)
        """The spread of a normal second around the slow mean (clipped as the mean is)."""
        self.low = _Ewma(slow_alpha, 0.0, int(1 / slow_alpha), warm_alpha=0.0)
        """Share of normal seconds that were nearly empty (running mean, then slow EWMA)."""
        self.low_after_low = _Ewma(0.05, 0.0, 20, warm_alpha=0.0)
        """Share of nearly empty normal seconds that followed another one."""
        self.pages = _Ewma(alpha, 0.0, warmup)
        """Page requests (not assets) in a normal second: what a stall stops."""
        self.n = 0
        self.prev_low = False

    @property
    def ref(self) -> float:
        """The rate a second is judged against: the lower of the fast and slow means
        (a crowd that built up over minutes has not taught the slow one)."""
        return min(self.fast.value, self.slow.value)

    def sd(self) -> float:
        """Standard deviation of a normal second's count (at least Poisson's)."""
        var = max(self.var.value, self.fast.value, 1.0)
        return math.sqrt(var * (1.0 + 20.0 / max(1, self.n)))

    def slow_sd(self) -> float:
        """Standard deviation around the slow mean (at least Poisson's, widened while few
        windows are learned)."""
        var = max(self.slow_var.value, self.slow.value, 1.0)
        return math.sqrt(var * (1.0 + 20.0 / max(1, self.n)))

    def dispersion(self) -> float:
        return max(1.0, self.var.value / self.fast.value) if self.fast.value > 0 else 1.0

    def is_low(self, x: float, share: float, pages: float) -> bool:
        """A nearly empty second: its lines and its pages at most ``share`` of the usual.
        A stall stops pages (dynamic requests hang); a small shop's lull between bursts
        thins its lines (a page brings its assets in one burst) while pages still come."""
        return x <= share * self.ref and pages <= share * self.pages.value

    def cdf(self, x: float) -> float:
        """P(a normal second has at most ``x`` requests): a negative binomial with this
        shop's mean and variance (a Poisson when it is not over-dispersed)."""
        mu = self.ref
        if mu <= 0:
            return 1.0
        k = int(x)
        if k > 400:
            return 1.0 if k >= mu else 0.0
        d = self.dispersion()
        if d <= 1.0001:
            total = term = math.exp(-mu)
            for i in range(1, k + 1):
                term *= mu / i
                total += term
            return min(1.0, total)
        r = mu / (d - 1.0)
        q = mu / (r + mu)
        term = math.exp(r * math.log(r / (r + mu)))
        total = term
        for i in range(1, k + 1):
            term *= (r + i - 1) / i * q
            total += term
        return min(1.0, total)

    def low_odds(self) -> tuple[float, float]:
        """(share of normal seconds that were nearly empty, share of those that followed
        another): what this shop's own pauses look like, empirically."""
        q1 = self.low.value * self.low.n / (self.low.n + self.PRIOR_WINDOWS)
        m = self.low_after_low.n
        q2 = (self.low_after_low.value * m + 1.0) / (m + 10.0)
        return q1, q2

    def learn(self, x: float, low_share: float, weight: float = 1.0, pages: float = 0.0,
              clip: bool = False, slow_weight: float | None = None, spread: bool = True) -> None:
        """``slow_weight``: the slow mean's weight for this second, if not ``weight``;
        ``spread``: whether it teaches the spreads (not while demand has moved: a crowd's
        deviations, at any weight, would widen them until its own seconds looked ordinary)."""
        # pauses are counted once the mean is known (a shop ramping up from nothing
        # has "empty" seconds that say nothing about its pauses)
        low = self.n >= self.fast.warmup and self.is_low(x, low_share, pages)
        if self.n >= self.fast.warmup and weight >= 1.0:
            self.low.update(float(low))
            if self.prev_low:
                self.low_after_low.update(float(low))
        self.prev_low = low
        self.n += 1
        sw = weight if slow_weight is None else slow_weight
        if spread:
            dev = x - self.fast.value if self.fast.n else 0.0
            self.var.update(dev * dev, weight)
        self.fast.update(x, weight)
        xs = x
        if clip and self.n > self.fast.warmup:
            xs = min(x, self.slow.value + self.SLOW_CLIP * self.slow_sd())
        sdev = xs - self.slow.value if self.slow.n else 0.0
        if spread:
            self.slow_var.update(sdev * sdev, sw)
        self.slow.update(xs, sw)
        self.pages.update(pages, weight)


class Featurizer:
    """Closed windows in, :class:`Features` out; the same object for both feeds."""

    def __init__(self, settings: DetectSettings) -> None:
        self.s = settings
        self.prefix = Prefixer(settings.ipv4_prefix, settings.ipv6_prefix)
        self.seen_sources = _Seen(settings.seen_capacity)
        self.seen_prefixes = _Seen(settings.seen_capacity)
        a = settings.baseline_alpha
        wu = settings.warmup_windows
        self.rate = RateModel(a, settings.slow_alpha, wu)
        self.base_rps = self.rate.fast
        self.surge = 0.0
        self.low_run = 0
        self.low_nats = 0.0
        self.fail_evidence = 0.0
        self.base_p99 = _Ewma(a, 1.0, wu)
        self.base_p99_1 = _Ewma(a, 1.0, wu)
        self.base_asset = _Ewma(a, 1.0, wu)
        self.base_urls = _Ewma(a, 0.0, wu)
        self.base_qd = _Ewma(a, 0.0, wu)
        self.base_err = _Ewma(a, 0.0, wu)
        self.base_nf = _Ewma(a, 0.0, wu)
        self.base_slow = _Ewma(a, 0.0, wu)
        self.base_pc = _Ewma(a, 0.0, wu)
        self.base_pc_var = _Ewma(a, 0.0, wu)
        self.base_ppc = _Ewma(a, 1.0, wu)
        """Pages per page client in the 10 s view (a browser: one or two)."""
        self.slow_pc = _Ewma(settings.slow_alpha, 0.0, int(1 / settings.slow_alpha), warm_alpha=0.0)
        """People: page clients in the 10 s view, their spread, and a slow mean (as for
        the rate: a crowd building over minutes teaches the fast mean, not the slow)."""
        self.base_po = _Ewma(a, 0.0, wu)
        self.seen_keys = _Seen(10_000)
        """Query parameter names seen in normal traffic."""
        self.learned = 0
        # 10 s view: running counters over the windows in `_v10`
        self._v10: deque[Window] = deque()
        self._flags10: deque[tuple[list[str], list[str], list[str]]] = deque()
        """Per window of the view, its page, asset and trusted clients (to take them out)."""
        self.src10: dict[str, int] = {}
        self.page10: dict[str, int] = {}
        self.asset10: dict[str, int] = {}
        self.trusted10: dict[str, int] = {}
        self.paths10: dict[str, int] = {}
        self._n10 = 0
        self._pages10 = 0
        self._bf3: deque[int] = deque(maxlen=3)
        # 60 s view: scalars only
        self._v60: deque[tuple[int, int]] = deque()
        self._slow60: deque[dict[str, int]] = deque()
        self.slow60: dict[str, int] = {}
        """Slow requests per source over the last 60 s (a slowloris shows only when
        the server cuts its connections, every header timeout)."""
        self._light3: deque[tuple[int, int]] = deque()
        """(requests, failed) of the light sources in each of the last 3 windows."""
        self._n60 = 0
        self._err60 = 0
        self._rep: dict[str, list[Any]] = {}
        """Per recent page client: [its one URL or "" (several, or assets), seconds with
        pages, last such second]; forgotten after ``REPEAT_GAP`` s without a page."""
        self._rep_sweep = 0
        self.base_rep = _Ewma(a, 0.0, wu)
        self.base_pages10 = _Ewma(a, 0.0, wu)
        self.slow_pages10 = _Ewma(settings.slow_alpha, 0.0, int(1 / settings.slow_alpha), warm_alpha=0.0)
        """Page requests in the usual 10 s view: a fast and a slow mean, the lower judged
        against (as for the rate: a crowd building over minutes teaches the fast one)."""
        self.base_tail_share = _Ewma(a, 0.0, wu)
        """The share of them in its tail (``HEAD_PATHS``), learned from every tenth view
        (views that do not overlap: the catalogue's popularity changes slowly, and the
        tail costs a pass over the view's paths)."""

    @property
    def warm(self) -> bool:
        return self.learned >= self.s.warmup_windows

    # -- sliding views ---------------------------------------------------------
    @staticmethod
    def _add(counter: dict[str, int], items: Any, sign: int) -> None:
        get = counter.get
        if sign > 0:
            if not counter:
                counter.update(items)
                return
            for k, v in items:
                counter[k] = get(k, 0) + v
        else:
            for k, v in items:
                left = counter[k] - v
                if left:
                    counter[k] = left
                else:
                    del counter[k]

    def _flags(self, w: Window, sign: int) -> None:
        # one pass over a window's clients when it enters the view, then each view's keys
        # counted by one C call; the same lists take it out again ten windows later
        if sign > 0:
            page: list[str] = []
            asset: list[str] = []
            trusted: list[str] = []
            for c, f in w.cflags.items():
                if f & _PAGE:
                    page.append(c)
                if f & _ASSET:
                    asset.append(c)
                if f & _TRUSTED:
                    trusted.append(c)
            self._flags10.append((page, asset, trusted))
            _count_elements(self.page10, page)
            _count_elements(self.asset10, asset)
            _count_elements(self.trusted10, trusted)
            return
        for dest, keys in zip((self.page10, self.asset10, self.trusted10), self._flags10.popleft(),
                              strict=True):
            for k in keys:
                left = dest[k] - 1
                if left:
                    dest[k] = left
                else:
                    del dest[k]

    def _slide(self, w: Window) -> None:
        self._v10.append(w)
        self._add(self.src10, w.src.items(), 1)
        self._add(self.paths10, w.paths.items(), 1)
        self._flags(w, 1)
        self._n10 += w.n
        self._pages10 += w.pages
        if len(self._v10) > 10:
            old = self._v10.popleft()
            self._add(self.src10, old.src.items(), -1)
            self._add(self.paths10, old.paths.items(), -1)
            self._flags(old, -1)
            self._n10 -= old.n
            self._pages10 -= old.pages
        self._bf3.append(w.bfail)
        self._v60.append((w.n, w.errors))
        self._n60 += w.n
        self._err60 += w.errors
        self._slow60.append(w.slow_src)
        if w.slow_src:
            self._add(self.slow60, w.slow_src.items(), 1)
        if len(self._slow60) > 60:
            gone = self._slow60.popleft()
            if gone:
                self._add(self.slow60, gone.items(), -1)
        if len(self._v60) > 60:
            n, e = self._v60.popleft()
            self._n60 -= n
            self._err60 -= e

    def _repeats(self, w: Window) -> int:
        """This second's page clients that repeat one URL (see ``Features.repeaters``)."""
        rep = self._rep
        sec = w.sec
        old = sec - REPEAT_GAP
        cf = w.cflags
        hits = 0
        get = rep.get
        asset = _ASSET
        for c, u in w.curl.items():
            r = get(c)
            if r is None or r[2] < old:
                # most clients of a flood are new each second: one step, no test
                rep[c] = ["" if cf[c] & asset else u, 1, sec]
                continue
            if r[0] != u or cf[c] & asset:
                r[0] = ""
            n = r[1] = r[1] + 1
            r[2] = sec
            if n >= REPEAT_MIN and r[0]:
                hits += 1
        if sec >= self._rep_sweep:
            self._rep_sweep = sec + REPEAT_GAP
            for c in [c for c, r in rep.items() if r[2] < old]:
                del rep[c]
        return hits

    def _tail(self) -> int:
        """Page requests of the 10 s view outside its ``HEAD_PATHS`` busiest paths: the
        counts sorted in C (a catalogue's few hundred paths), or their histogram when there
        are thousands (random paths: a handful of distinct counts)."""
        paths10 = self.paths10
        n = len(paths10)
        if n <= HEAD_PATHS:
            return 0
        if n > 2000:
            hist = _histogram(paths10.values())
            return self._pages10 - _top_sum(hist, sorted(hist, reverse=True), HEAD_PATHS)
        return sum(sorted(paths10.values())[:-HEAD_PATHS])

    # -- features ----------------------------------------------------------------
    def _rate_stats(self, w: Window) -> tuple[float, float, float, float]:
        """(ref, sd, surge, nats of the empty run) after this window."""
        rate = self.rate
        s = self.s
        n = float(w.n)
        if w.gap or self.learned < MIN_BASE_WINDOWS:
            self.surge = 0.0
            self.low_run = 0
            self.low_nats = 0.0
            return rate.ref, rate.sd(), 0.0, 0.0
        ref = rate.ref
        sd = rate.sd()
        e = (n - s.rate_factor * ref) / sd
        self.surge = min(max(0.0, self.surge + e), 3.0 * s.surge_threshold)
        if rate.is_low(n, s.stall_share, float(w.pages)):
            # how improbable is this run of nearly empty seconds for this shop: each
            # second under its count distribution, or as often as its own pauses
            # (and pauses following pauses) were seen, whichever is likelier
            q1, q2 = rate.low_odds()
            p = max(rate.cdf(n), q2 if self.low_run else q1, 1e-300)
            self.low_run += 1
            self.low_nats = (self.low_nats if self.low_run > 1 else 0.0) - math.log(p)
        else:
            self.low_run = 0
            self.low_nats = 0.0
        return ref, sd, self.surge, self.low_nats

    def featurize(self, w: Window) -> Features:
        self._slide(w)
        ref, sd, surge, nats = self._rate_stats(w)
        n = w.n
        prefix = self.prefix
        pcache = prefix.cache
        seen_s = self.seen_sources.d
        seen_p = self.seen_prefixes.d
        # set operations and maps in C over the window's sources (a flood has thousands)
        src = w.src
        pl = list(map(pcache.get, src))
        if None in pl:
            pl = [p or prefix(c) for c, p in zip(src, pl, strict=True)]
        pfxs = set(pl)
        unseen = set(src).difference(seen_s)
        new_src = len(unseen)
        nsrc = len(src)
        new_pfx = nsrc - sum(map(seen_p.__contains__, pl))
        # per-source rate over 10 s
        counts = self.src10
        nsrc10 = len(counts)
        heavy_limit = heavy_limit_of(self.s, self.base_p99.value)
        # (the top counts from a histogram of the counts: exactly what nlargest gives)
        big: dict[str, int] = {}
        if nsrc10:
            k = max(1, nsrc10 // 100 + 1)
            hist = _histogram(counts.values())
            levels = sorted(hist, reverse=True)
            top5 = _top_sum(hist, levels, 5)
            # a browser's page comes with its assets: one person's page view is a burst
            # of lines from one address (in a small shop the busiest second's p99), so
            # browsing sources are left out from the lowest count any per-source limit
            # could trip (the 1 s floor), not only from the heavy-hitter limit
            floor = min(heavy_limit, float(self.s.per_source_min_1s))
            if levels[0] >= floor:
                # the busy sources, once (heavy hitters below are busier than the floor)
                big = {c: cnt for c, cnt in counts.items() if cnt >= floor}
            shared = shared_browsers(big, self.page10, self.asset10, floor) if big else set()
            if shared:
                rest = dict(hist)
                for c in shared:
                    rest[counts[c]] -= 1
                top_n, kth = _max_kth(rest, levels, k)
            else:
                top_n, kth = _max_kth(hist, levels, k)
            p99 = float(kth)
            mx = float(top_n)
            mean = self._n10 / nsrc10
        else:
            p99 = mx = mean = 0.0
            top5 = 0
            shared = set()
        if not nsrc:
            p99_1 = 0.0
        else:
            hist1 = _histogram(src.values())
            if shared:
                for c in shared:
                    cnt = src.get(c)
                    if cnt is not None:
                        hist1[cnt] -= 1
            p99_1 = float(_max_kth(hist1, sorted(hist1, reverse=True), nsrc // 100 + 1)[1])
        # paths over 10 s
        pages10 = self._pages10
        paths10 = self.paths10
        if pages10 and paths10:
            # the first path with the most pages (as max(key=) picks), found by C calls
            counts_p = list(paths10.values())
            top_n = max(counts_p)
            top_path = next(islice(paths10, counts_p.index(top_n), None))
            top_share = top_n / pages10
        else:
            top_path, top_share = "", 0.0
        # does a surge of pages browse? (judged only when there is one)
        browse = -1.0
        bp = self.base_pages10.value
        if self.slow_pages10.n:
            bp = min(bp, self.slow_pages10.value)
        bt = bp * self.base_tail_share.value
        if (self.warm and self.base_asset.value < NO_ASSETS and bt >= BROWSE_MIN_TAIL
                and pages10 >= (1.0 + BROWSE_MIN_EXCESS) * bp):
            tail = self._tail()
            browse = min(2.0, max(0.0, (tail - bt) / (pages10 - bp) * bp / bt))
        path_h = _entropy(w.paths, w.pages)
        # queries this second
        # distinct query strings over every path (busting spreads over search and
        # category pages); the path with the most of them names it
        qpath, qmax, qd = "", 0, 0
        for path, qs in w.qpaths.items():
            nq = len(qs)
            qd += nq
            if nq > qmax:
                qpath, qmax = path, nq
        # assets over 10 s
        page_clients = self.page10
        if page_clients:
            assets = self.asset10
            with_assets = len(page_clients.keys() & assets.keys())
            asset_share = with_assets / len(page_clients)
        else:
            with_assets = 0
            asset_share = self.base_asset.value if self.learned else 1.0
        n_pc = len(page_clients)
        n_po = n_pc - with_assets
        # people: how far the page clients stand above the shop's usual number, in its
        # own spread (lines are not people: one shopper's page brings a burst of lines)
        ref_pc = min(self.base_pc.value, self.slow_pc.value) if self.slow_pc.n else self.base_pc.value
        # (widened while few windows were learned, as the rate's spread is: an estimate
        # from a minute is not trusted like one from an hour)
        sd_pc = math.sqrt(max(self.base_pc_var.value, ref_pc, 1.0) * (1.0 + 20.0 / max(1, self.learned)))
        extra_pc = n_pc - ref_pc
        people_z = extra_pc / sd_pc if self.warm else 0.0
        # an excess of at least half the usual number (and of a few clients, beyond the
        # shop's own spread) says who came
        po_excess = (min(1.0, max(0.0, (n_po - self.base_po.value) / extra_pc))
                     if self.warm and extra_pc >= max(5.0, 0.5 * ref_pc)
                     and people_z >= self.s.people_z else 0.0)
        # heavy page-only clients (only looked for when the busiest source is one)
        heavy_n = heavy_c = heavy_t = 0
        if mx >= heavy_limit:
            assets10 = self.asset10
            trusted10 = self.trusted10
            for c, cnt in big.items():
                if cnt >= heavy_limit and c in page_clients and c not in assets10:
                    heavy_n += cnt
                    heavy_c += 1
                    if c in trusted10:
                        heavy_t += 1
        # legitimate traffic: seen before, trusted, or behaving like a browser
        # (what is not legitimate, subtracted: integer sums, the same in any order)
        failed = w.failed_src
        other = unseen.difference(self.trusted10).difference(self.asset10)
        legit = sum(src.values()) - sum(map(src.__getitem__, other))
        legit_failed = sum(failed.values())
        if legit_failed and other:
            legit_failed -= sum(map(failed.get, other, repeat(0, len(other))))
        inv = 1.0 / n if n else 0.0
        # failures of the shop's people (a backend fails everyone): the light sources of
        # the 10 s view (and busy addresses that browse: a carrier NAT), this second or,
        # when the few of this second were all served (a small shop's shoppers come in
        # bursts), the last 3 s, when they sent enough to judge by (a few failing now
        # are the backend failing: the fallback below). A per-address cap refusing a tool's excess connections fails the
        # tool's few busy addresses, a dozen a second each (a slow attack before its
        # first timeout), while the shoppers beside it are served. Else (an origin behind
        # a CDN's edges: every address is busy) the sources under the heavy hitters' rate
        # this second.
        own_n, own_failed = n, sum(failed.values())
        light_n, light_failed = own_n, own_failed
        if big:
            for c in big.keys() & src.keys():
                if c not in shared:
                    light_n -= src[c]
                    light_failed -= failed.get(c, 0)
        light3 = self._light3
        light3.append((light_n, light_failed))
        if len(light3) > 3:
            light3.popleft()
        if light_n < self.s.backend_min_errors and not light_failed:
            light_n = sum(x[0] for x in light3)
            light_failed = sum(x[1] for x in light3)
        if light_n >= self.s.backend_min_errors:
            own_n, own_failed = light_n, light_failed
        elif failed:
            heavy_1s = self.s.per_source_min_1s
            for c, cnt in failed.items():
                sent = src.get(c, 0)
                if sent >= heavy_1s:
                    own_n -= sent
                    own_failed -= cnt
        own_fail_share = own_failed / own_n if own_n > 0 else 0.0
        if n:
            # an empty second says nothing about the backends (a hang thins the lines out)
            floor_share = self.s.backend_error_share
            self.fail_evidence = min(max(0.0, self.fail_evidence + w.bfail * inv - floor_share), 3.0)
        # query parameter names never seen in normal traffic
        new_key = 0
        with_q = 0
        if w.queries:
            seen_k = self.seen_keys.d
            for q, cnt in w.queries.items():
                with_q += cnt
                for part in q.split("&"):
                    if part.partition("=")[0] in seen_k:
                        break
                else:
                    new_key += cnt
        top5_share = top5 / self._n10 if self._n10 else 0.0
        slow_srcs = len({c for win in self._v10 if win.slow_src for c in win.slow_src})
        # this second's requests from addresses that held many slow connections lately:
        # the tool's excess connections, refused at once by a per-address cap. Such an
        # address does nothing else: its requests this second are mostly slow or refused.
        # An address that carries many people (a CDN's edge, a carrier NAT) gathers the
        # occasional 408 of each of its browsers -- many in a minute when its traffic
        # grows (a crowd) -- while nearly all of its requests are answered.
        from_slow = 0
        if self.slow60:
            s60 = self.slow60
            lim = SLOW_SOURCE_MIN
            ws, wf = w.slow_src, w.failed_src
            for c, cnt in w.src.items():
                if s60.get(c, 0) >= lim and 2 * (ws.get(c, 0) + wf.get(c, 0)) >= cnt:
                    from_slow += cnt
        repeaters = self._repeats(w)
        return Features(
            sec=w.sec,
            rps=float(n),
            rps_prev=float(self._v10[-2].n) if len(self._v10) > 1 else 0.0,
            rps_10=self._n10 / len(self._v10),
            rps_60=self._n60 / len(self._v60),
            ref_rps=ref,
            slow_rps=self.rate.slow.value,
            rate_sd=sd,
            surge=surge,
            low_run=self.low_run,
            low_nats=nats,
            sources=nsrc,
            prefixes=len(pfxs),
            new_source_share=new_src / nsrc if nsrc else 0.0,
            new_prefix_share=new_pfx / nsrc if nsrc else 0.0,
            req_per_source_mean=mean,
            req_per_source_p99=p99,
            req_per_source_max=mx,
            req_per_source_p99_1s=p99_1,
            pages=w.pages,
            top_path=top_path,
            top_path_share=top_share,
            path_entropy=path_h,
            distinct_urls=len(w.urls),
            url_unique_share=len(w.urls) / w.pages if w.pages else 0.0,
            query_path=qpath,
            query_distinct=qd,
            query_share=sum(w.queries.values()) / w.pages if w.pages else 0.0,
            query_entropy=_entropy(w.queries, sum(w.queries.values())),
            ua_entropy=_entropy(w.uas, n),
            notfound_share=w.nf / w.pages if w.pages else 0.0,
            new_key_share=new_key / with_q if with_q else 0.0,
            top5_share=top5_share,
            slow_sources=slow_srcs,
            slow_source_share=from_slow * (1.0 / n if n else 0.0),
            asset_share=asset_share,
            page_clients=n_pc,
            pageonly_clients=n_po,
            pageonly_excess=po_excess,
            heavy_page_share=heavy_n / self._n10 if self._n10 else 0.0,
            heavy_clients=heavy_c,
            heavy_trusted=heavy_t,
            heavy_limit=heavy_limit,
            session_share=w.sessions * inv,
            verified_share=w.verified * inv,
            error_share=w.errors * inv,
            backend_fail_share=w.bfail * inv,
            own_fail_share=own_fail_share,
            backend_fails=w.bfail,
            backend_fails_3=sum(self._bf3),
            fail_evidence=self.fail_evidence,
            timeout_share=w.timeouts * inv,
            latency=w.rt_sum * inv,
            upstream_latency=w.ut_sum / w.ut_n if w.ut_n else -1.0,
            s408=w.s408,
            slow=w.slow,
            slow_share=w.slow * inv,
            error_share_60=self._err60 / self._n60 if self._n60 else 0.0,
            legit_requests=legit,
            legit_failed=legit_failed,
            warm=self.warm,
            baseline_windows=self.learned,
            base_rps=self.base_rps.value,
            base_p99=self.base_p99.value,
            base_p99_1s=self.base_p99_1.value,
            base_asset_share=self.base_asset.value,
            base_distinct_urls=self.base_urls.value,
            base_query_distinct=self.base_qd.value,
            base_error_share=self.base_err.value,
            base_notfound_share=self.base_nf.value,
            base_slow_share=self.base_slow.value,
            base_page_clients=ref_pc,
            people_z=people_z,
            base_pages_per_client=self.base_ppc.value,
            base_pageonly_clients=self.base_po.value,
            repeaters=repeaters,
            repeat_share=repeaters / len(w.curl) if w.curl else 0.0,
            base_repeaters=self.base_rep.value,
            browse=browse,
        )

    def learn(self, w: Window, f: Features, weight: float = 1.0) -> None:
        """Fold a window into the baseline and the seen sets: fully when judged normal,
        with a small ``weight`` during a flash crowd (so a lasting rise in real demand
        becomes the new normal in minutes, while a short crowd barely moves it)."""
        s = self.s
        if w.gap:
            return
        if (not self.warm and self.learned >= MIN_BASE_WINDOWS and f.rps >= s.min_elevated_rps
                and f.rps > s.rate_factor * self.base_rps.value):
            # a jump while still warming up (a crowd or an attack in the first seconds)
            # is not what normal looks like: do not learn it, and do not count it
            return
        if f.backend_fail_share >= s.backend_error_share and f.own_fail_share < s.backend_error_share:
            # a per-address cap refusing a tool's connections (most requests failed, not
            # the shop's people's: a slow attack before its first timeout, between its
            # waves) is not the shop's normal traffic, though no rule judges it yet: its
            # rate and its addresses teach nothing
            return
        if w.n == 0:
            # an empty second of normal traffic is part of the shop's rate (a small
            # shop has many), but says nothing about sources, paths or assets
            if self.learned:
                self.rate.learn(0.0, s.stall_share, weight)
            return
        self.learned += 1
        # A second judged normal while the shop has many more people than usual is a
        # crowd still building (its lines are not yet a surge): it teaches the rate and
        # the usual people (how many, how many fetch assets) only as fast as a crowd does, so a crowd that
        # builds over minutes cannot teach the baseline that it is normal. Where the
        # addresses do not count people (a CDN's edges), the lines' slow mean is
        # winsorized instead (RateModel.SLOW_CLIP): the only guard such a log allows.
        sw = weight * s.crowd_learning if more_people(f, s) else weight
        # ... and whatever the addresses say, a 60 s view standing well above the slow mean
        # is demand that moved: it teaches the slow means and the spreads -- of the lines
        # and of the people -- only at crowd weight (SLOW_SHIFT)
        slow = self.rate.slow
        moved = len(self._v60) >= 60 and slow.n >= 60 and f.rps_60 >= SLOW_SHIFT * slow.value
        slow_w = min(sw, weight * s.crowd_learning) if moved else sw
        self.rate.learn(f.rps, s.stall_share, sw, float(w.pages), clip=not people_counted(f, s),
                        slow_weight=slow_w, spread=not moved)
        self.base_p99.update(f.req_per_source_p99, weight)
        self.base_p99_1.update(f.req_per_source_p99_1s, weight)
        if self.page10:
            self.base_asset.update(f.asset_share, sw)
        if not moved:
            dev = f.page_clients - self.base_pc.value if self.base_pc.n else 0.0
            self.base_pc_var.update(dev * dev, sw)
        self.base_pc.update(f.page_clients, sw)
        if f.page_clients:
            self.base_ppc.update(self._pages10 / f.page_clients, weight)
        self.slow_pc.update(f.page_clients, slow_w)
        # who the usual people are learns as fast as how many: while there are many more
        # than usual, their page-only share and asset share teach at crowd weight too (a
        # crawler's many addresses fetch pages and no asset: learned at full weight, they
        # became the usual page-only clients in a minute and hid what they are)
        self.base_po.update(f.pageonly_clients, sw)
        self.base_rep.update(f.repeaters, sw)
        self.base_pages10.update(self._pages10, sw)
        self.slow_pages10.update(self._pages10, slow_w)
        if self.learned % 10 == 1 and self._pages10 and self.base_asset.value < NO_ASSETS:
            self.base_tail_share.update(self._tail() / self._pages10, sw)
        self.base_urls.update(f.distinct_urls, weight)
        self.base_qd.update(f.query_distinct, weight)
        self.base_err.update(f.error_share, weight)
        if w.pages:
            self.base_nf.update(f.notfound_share, weight)
        self.base_slow.update(f.slow_share, weight)
        if weight < 1.0:
            return
        if w.queries:
            self.seen_keys.add_all(part.partition("=")[0] for q in w.queries for part in q.split("&"))
        self.seen_sources.add_all(w.src)
        prefix = self.prefix
        pcache = prefix.cache
        self.seen_prefixes.add_all(pcache.get(c) or prefix(c) for c in w.src)
