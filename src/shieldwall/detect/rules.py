"""Transparent rules: one window's :class:`Features` in, a verdict with evidence out.

Order matters and is the policy: a slow attack, cache busting, randomized
URLs and floods are checked first (attack evidence wins), then a flash crowd
(elevated rate that looks like shoppers: assets fetched, normal per-client
rate, known networks), then a backend failure (backends failing while the
traffic itself looks normal, or a stall: nothing completes any more). Every verdict carries its reasons in words
with the numbers that tripped them, and the health of the backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shieldwall.detect.features import (
    BROWSE_WALK,
    MIN_BASE_WINDOWS,
    NO_ASSETS,
    REPEAT_MIN,
    SLOW_SURGE,
    SLOW_SURGE_NOW,
    SLOW_SURGE_WINDOWS,
    Features,
    more_people,
    people_counted,
)

if TYPE_CHECKING:
    # (annotations only: `shieldwall analyze` without --config never imports pydantic)
    from shieldwall.detect.settings import DetectSettings

NORMAL = "normal"
FLASH_CROWD = "flash_crowd"
DDOS = "ddos"
BACKEND_FAILURE = "backend_failure"
VERDICTS = (NORMAL, FLASH_CROWD, DDOS, BACKEND_FAILURE)
KINDS = ("flood", "randomized", "slow", "cache_bust")


@dataclass(frozen=True, slots=True)
class WindowVerdict:
    verdict: str
    kind: str | None = None
    confidence: float = 1.0
    evidence: tuple[str, ...] = field(default=())


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _num(x: float) -> str:
    return f"{x:,.0f}"


def _confidence(hits: int, of: int) -> float:
    """0.6 for the minimum evidence, up to 0.99 when every supporting signal agrees."""
    return round(min(0.99, 0.6 + 0.39 * hits / max(1, of)), 2)


def stalled(f: Features, s: DetectSettings) -> bool:
    """Nothing (or nearly nothing) completes, for longer than this shop's normal pauses
    make plausible: its requests hang at the backends or the front."""
    # two seconds at least: the first may be partial, and one odd second proves nothing
    return (f.warm and f.ref_rps >= s.stall_min_base_rps and f.low_run >= 2
            and f.low_nats >= s.stall_nats)


def backend_failing(f: Features, s: DetectSettings) -> bool:
    """This second's requests mostly failed at the backend, enough of them lately, and for
    long enough given how many (one second of a dead backend is enough; a third of the
    requests failing must persist: a rolling deploy fails some requests for seconds), and
    the failures fall on the shop's people, not only on a few sources sending dozens a
    second (a per-address cap refusing a tool's excess connections: 503 in a plain log)."""
    return (f.backend_fail_share >= s.backend_error_share and f.backend_fails_3 >= s.backend_min_errors
            and f.fail_evidence >= s.backend_evidence and f.own_fail_share >= s.backend_error_share)


def _backend_words(f: Features, s: DetectSettings) -> str:
    if backend_failing(f, s):
        return (f"backends failing: {_pct(f.backend_fail_share)} of requests refused, timed out "
                f"or 500/502/503/504 ({_pct(f.timeout_share)} timeouts)")
    return f"backends healthy ({_pct(f.error_share)} 5xx)"


def lines_surge(f: Features, s: DetectSettings) -> bool:
    """This second's lines are a surge: ``rate_factor`` x the baseline (and at least
    ``min_elevated_rps``), persisting against the shop's own spread -- once the
    baseline has a few windows. One busy second proves nothing."""
    return (f.baseline_windows >= MIN_BASE_WINDOWS and f.surge >= s.surge_threshold
            and f.rps >= max(s.rate_factor * f.ref_rps, s.min_elevated_rps))


def classify(f: Features, s: DetectSettings) -> WindowVerdict:
    """The verdict of one window. Pure: the same features always give the same answer."""
    if stalled(f, s):
        return WindowVerdict(BACKEND_FAILURE, "stall", _confidence(1 + (f.low_nats >= 2 * s.stall_nats), 2), (
            f"traffic stalled: {f.rps:.0f} requests completed this second, {f.low_run} nearly empty "
            f"seconds in a row (baseline {f.ref_rps:.0f} req/s; odds in normal traffic "
            f"1 in {math.exp(min(f.low_nats, 700.0)):,.0f}): requests hang at the backends or the front",))
    if f.rps <= 0:
        return WindowVerdict(NORMAL)
    # A rate jump is judged once the baseline has a few windows (the rest of the
    # baseline -- seen networks, assets -- only after the full warm-up).
    have_base = f.baseline_windows >= MIN_BASE_WINDOWS
    base_rps = f.ref_rps if have_base else 0.0
    elevated = lines_surge(f, s)
    # ... or lines well above the slow mean for a minute and still this second, where
    # addresses do not count people (a CDN's edges) or where they show many more people
    # than usual: a crowd adds fewer lines than people, and the per-second spread says
    # nothing about a shift that lasts (SLOW_SURGE)
    if (not elevated and f.warm and f.baseline_windows >= SLOW_SURGE_WINDOWS
            and (not people_counted(f, s) or more_people(f, s))
            and f.slow_rps > 0 and f.rps_60 >= SLOW_SURGE * f.slow_rps and f.rps_10 >= SLOW_SURGE * f.slow_rps
            and f.rps >= max(s.min_elevated_rps, SLOW_SURGE_NOW * f.slow_rps)):
        elevated = True
    # ... or people: page clients ``rate_factor`` x the usual number, well outside the shop's
    # own spread (the 10 s view is their persistence). A shopper's page brings a burst of
    # assets, a tool's request is one line: thousands of volunteers each under every
    # per-address limit raise the lines 3-5x and the people ten times more.
    people_surge = (have_base and f.warm and people_counted(f, s) and f.rps >= s.min_elevated_rps
                    and f.people_z >= s.people_z and f.page_clients >= s.rate_factor * f.base_page_clients)
    # (for the attack rules only: shoppers raise the lines at least as much as the people,
    # each bringing pages and assets; people up tenfold while the lines are not even
    # tripled are clients that each send little -- volunteers, a crawler's many addresses)
    lines_elevated = elevated
    elevated = elevated or people_surge
    rate_words = (f"{_num(f.rps)} req/s = {f.rps / base_rps:.1f}x the baseline {base_rps:.0f}"
                  if base_rps > 0 else f"{_num(f.rps)} req/s (no baseline yet)")
    base_asset = f.base_asset_share if f.warm else 1.0
    assets_low = f.asset_share < s.asset_share_drop * base_asset
    # The clients above the usual number fetch no asset while the regulars do: however
    # many regulars dilute the share, the surge itself is not browsing.
    if f.warm and base_asset >= NO_ASSETS and f.pageonly_excess >= s.pageonly_excess:
        assets_low = True
    # A log without asset lines (an origin behind a CDN, an API) has no asset signal at
    # all: rules that need one fall back on the others.
    no_assets = f.warm and base_asset < NO_ASSETS
    # There, where the surge goes says what its assets would have: its extra page
    # requests repeating a fixed few paths (``Features.browse``) are not browsing.
    repeats_paths = no_assets and 0.0 <= f.browse < s.browse_share
    new_prefixes = f.warm and f.new_prefix_share >= s.new_prefix_share
    backends = _backend_words(f, s)
    per_source_limit = max(s.per_source_min, s.per_source_factor * (f.base_p99 if f.warm else 0.0))
    heavy_sources = (f.req_per_source_p99 >= per_source_limit
                     or f.req_per_source_p99_1s >= max(s.per_source_min_1s,
                                                       s.per_source_factor * (f.base_p99_1s if f.warm else 0.0)))
    asset_words = (f"{_pct(f.asset_share)} of page clients fetched assets "
                   f"(baseline {_pct(base_asset)})")
    if repeats_paths:
        asset_words = (f"no asset lines in this log; the extra page requests repeat a few paths "
                       f"(browse {f.browse:.2f}: their share beyond the 32 busiest paths vs the shop's own)")

    # slow: 408s and long requests that carry almost nothing
    # (relative to the shop's own share: browsers' idle preconnects end as 408s too)
    slow_floor = max(s.slow_share, s.distinct_factor * (f.base_slow_share if f.warm else 0.0))
    if f.slow >= s.slow_min_count and f.slow_share >= slow_floor:
        ev = [f"{_num(f.slow)} slow requests/s ({_num(f.s408)} 408s) = {_pct(f.slow_share)} of requests"]
        if f.latency > 0:
            ev.append(f"mean request time {f.latency:.1f} s")
        hits = 1 + (f.s408 > 0) + new_prefixes
        if new_prefixes:
            ev.append(f"{_pct(f.new_prefix_share)} of sources from networks never seen")
        ev.append(backends)
        return WindowVerdict(DDOS, "slow", _confidence(hits, 3), tuple(ev))

    # the rest of a slow attack: its excess connections refused at once (a per-address
    # cap answering 503) or answered, from the addresses holding slow ones. Normal
    # traffic has no such address at all, so a fifth of the requests is plenty, with
    # or without a surge: behind a cap the tool's 408s come in bursts one header
    # timeout apart (a few seconds over the slow floor), its 503s every second.
    if f.slow_source_share >= s.slow_source_share:
        ev = [f"{_pct(f.slow_source_share)} of requests from addresses that held slow connections "
              f"in the last minute ({_num(f.slow_sources)} in 10 s)", rate_words, backends]
        return WindowVerdict(DDOS, "slow", _confidence(1 + elevated + backend_failing(f, s), 3), tuple(ev))

    # cache busting: many distinct query strings on one path, no browser behind them
    qd_floor = max(s.cache_bust_min_distinct, s.distinct_factor * (f.base_query_distinct if f.warm else 0.0))
    # parameter names the shop never used are random queries (randomized), not busting
    random_keys = f.warm and f.new_key_share >= 0.5
    # no browser behind them: assets low, or (a log without assets) networks never seen,
    # or far more distinct queries than the shop ever had in a second
    not_browsing = assets_low or (no_assets and (new_prefixes or f.query_distinct >= 2 * qd_floor))
    if (f.query_distinct >= qd_floor and f.query_distinct >= 0.5 * f.distinct_urls and not_browsing
            and not random_keys):
        ev = [f"{_num(f.query_distinct)} distinct query strings per second, most on {f.query_path} "
              f"(baseline {f.base_query_distinct:.0f}; query-string entropy {f.query_entropy:.2f})",
              asset_words, rate_words]
        hits = 1 + assets_low + new_prefixes + elevated
        if new_prefixes:
            ev.append(f"{_pct(f.new_prefix_share)} of sources from networks never seen")
        ev.append(backends)
        return WindowVerdict(DDOS, "cache_bust", _confidence(hits, 4), tuple(ev))

    # most page requests carry a query string and nearly every one is different
    random_queries = f.query_share >= 0.5 and f.query_entropy >= 0.9
    url_floor = max(s.random_min_distinct, s.distinct_factor * (f.base_distinct_urls if f.warm else 0.0))
    # nonexistent paths: the share of pages answered 404 far above the shop's own
    not_found = f.warm and f.notfound_share >= max(0.3, s.distinct_factor * f.base_notfound_share)
    # Randomness itself is the evidence: paths the shop does not have (404s) or query
    # strings nobody could have cached. Distinct real pages without assets, from networks
    # never seen, are a crawler walking the catalogue (or a flood, for the flood rule):
    # the backlog after a hang and a crawler spike spread over as many URLs.
    randomized = (elevated and f.distinct_urls >= url_floor
                  and f.url_unique_share >= s.random_unique_share
                  and (random_queries or random_keys or not_found))
    if randomized:
        ev = [f"{_num(f.distinct_urls)} distinct URLs per second ({_pct(f.url_unique_share)} of "
              f"page requests, baseline {f.base_distinct_urls:.0f})",
              f"user-agent entropy {f.ua_entropy:.2f}, query-string entropy {f.query_entropy:.2f}",
              asset_words, rate_words]
        if random_keys:
            ev.append(f"{_pct(f.new_key_share)} of query strings carry parameter names never seen")
        if not_found:
            ev.append(f"{_pct(f.notfound_share)} of pages answered 404 (baseline {_pct(f.base_notfound_share)})")
        hits = 1 + assets_low + new_prefixes + (f.ua_entropy > 0.5)
        if new_prefixes:
            ev.append(f"{_pct(f.new_prefix_share)} of sources from networks never seen")
        ev.append(backends)
        return WindowVerdict(DDOS, "randomized", _confidence(hits, 4), tuple(ev))

    # clients that passed a challenge (or hold a session) and then hammer pages without
    # ever fetching an asset: a shopper's session or pass does not make a bot a shopper
    # Where the log shows no asset at all every client is page-only, and the busy ones are
    # addresses that carry many people (a CDN's edges, a carrier NAT): heavy page-only
    # clients are a flood's only where the surge does not browse (``Features.browse``).
    # (a tail that grew far faster than people make it is paths nobody asks for: not browsing)
    browsing = s.browse_share <= f.browse < BROWSE_WALK
    heavy_pages = f.heavy_page_share >= s.heavy_share and not (no_assets and browsing)
    # thousands of light clients, each re-sending one URL (no navigation, no asset)
    repeating = (f.warm and f.repeaters - f.base_repeaters >= s.repeat_min
                 and f.repeat_share >= s.repeat_share)
    if elevated and (heavy_sources or heavy_pages or repeating
                     or (assets_low and (new_prefixes or f.top_path_share >= s.top_path_share))
                     or repeats_paths):
        ev = [rate_words]
        hits = 1
        if heavy_pages:
            hits += 1
            ev.append(f"{_pct(f.heavy_page_share)} of requests in 10 s from {f.heavy_clients} clients "
                      f"fetching {f.heavy_limit:.0f}+ pages in 10 s and no asset "
                      f"({f.heavy_trusted} of them with a session or a pass)")
        if heavy_sources:
            hits += 1
            ev.append(f"p99 {f.req_per_source_p99:.0f} requests per source in 10 s, max "
                      f"{f.req_per_source_max:.0f} (baseline p99 {f.base_p99:.0f}); "
                      f"p99 {f.req_per_source_p99_1s:.0f} in 1 s (baseline {f.base_p99_1s:.0f})")
        if repeating:
            hits += 1
            ev.append(f"{_pct(f.repeat_share)} of this second's page clients ({f.repeaters}, "
                      f"usually {f.base_repeaters:.0f}) re-sent one URL and nothing else in "
                      f"{REPEAT_MIN}+ seconds")
        if assets_low or repeats_paths:
            hits += 1
            ev.append(asset_words)
        if new_prefixes:
            hits += 1
            ev.append(f"{_pct(f.new_prefix_share)} of sources from networks never seen "
                      f"({_pct(f.new_source_share)} new addresses)")
        if f.top_path_share >= s.top_path_share:
            hits += 1
            ev.append(f"{_pct(f.top_path_share)} of page requests on {f.top_path}")
        ev.append(backends)
        return WindowVerdict(DDOS, "flood", _confidence(hits, 5), tuple(ev))

    # a crowd is more people, not only more lines; and people browse: where the log shows
    # assets, a surge whose extra clients fetch none is not a crowd (nor, without more
    # evidence, yet an attack: a tool's volunteers re-send their URL soon enough)
    people = not f.warm or not people_counted(f, s) or more_people(f, s)
    if lines_elevated and people and not assets_low:
        ev = [rate_words,
              f"{_pct(f.new_source_share)} of sources new, but only {_pct(f.new_prefix_share)} "
              f"from networks never seen" if f.warm else f"{_num(f.sources)} sources",
              f"{_num(f.page_clients)} page clients in 10 s (usually {f.base_page_clients:.0f})",
              asset_words,
              f"{f.req_per_source_mean:.1f} requests per source in 10 s (p99 {f.req_per_source_p99:.0f})",
              f"{_pct(f.top_path_share)} of page requests on {f.top_path or '-'}",
              backends]
        hits = 1 + (not assets_low) + (not new_prefixes) + (not heavy_sources)
        return WindowVerdict(FLASH_CROWD, None, _confidence(hits, 4), tuple(ev))

    surge = f.rps >= s.min_elevated_rps and f.rps > s.rate_factor * f.ref_rps
    if backend_failing(f, s) and not surge:
        ev = [backends,
              f"traffic normal: {rate_words}, {_pct(f.new_prefix_share)} of sources from new networks",
              f"mean upstream time {f.upstream_latency:.2f} s" if f.upstream_latency >= 0
              else f"mean request time {f.latency:.2f} s"]
        hits = 1 + (f.backend_fail_share >= 0.6) + (not new_prefixes)
        return WindowVerdict(BACKEND_FAILURE, None, _confidence(hits, 3), tuple(ev))

    return WindowVerdict(NORMAL)
