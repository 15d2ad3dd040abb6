"""The ``[detect]`` section of the shield's config (owned by the detector).

Every threshold of the rules lives here with a default tuned on the synthetic
training family (``shieldwall.detect.synth``, seeds < 1000) and checked on
the held-out family; docs/DETECT.md says what each one means. An empty
``[detect]`` section gives a working detector.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DetectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True

    # --- windows and feeds -------------------------------------------------
    live_lateness: float = Field(default=0.05, ge=0.0, le=60.0)
    """Live feed: a 1 s window closes this many seconds after its end. A request
    is counted when it finishes, by the process that finished it, stamped with
    the clock at that instant and appended in the same event loop as the tick,
    so every row of a second is in the feed before any tick after it: the slack
    only covers timer jitter (it was 1 s, then 0.25: every verdict came that
    much later for nothing; a flood's switch is two windows plus this)."""
    offline_lateness: float = Field(default=30.0, ge=0.0, le=3600.0)
    """Log feed: reorder buffer in seconds (real logs are out of order by seconds)."""
    idle_gap: int = Field(default=120, ge=61, le=86400)
    """A silence longer than this many seconds is skipped, not replayed as empty
    windows; the baseline does not learn from the gap."""

    # --- baseline ------------------------------------------------------------
    warmup_windows: int = Field(default=15, ge=1)
    """Active windows the baseline must see before new-source shares count."""
    baseline_alpha: float = Field(default=0.02, gt=0.0, le=1.0)
    """EWMA weight of one normal window in the learned baseline."""
    slow_alpha: float = Field(default=1 / 900, gt=0.0, le=0.1)
    """EWMA weight of one normal window in the slow rate baseline (about 15 minutes):
    a crowd that builds over a few minutes teaches the fast baseline, not this one."""
    surge_threshold: float = Field(default=4.0, gt=0.0)
    """A surge: the excess over ``rate_factor`` x the baseline, in the shop's own
    standard deviations per second, accumulated (CUSUM) to at least this much."""
    fast_surge: float = Field(default=3.0, gt=0.0)
    """A ddos second whose surge statistic reaches this many times ``surge_threshold``
    (the cap) opens the incident without waiting for a second window: the big flood
    is named in its first second, the doubtful rise waits for persistence."""
    stall_nats: float = Field(default=9.2, gt=0.0)
    """A stall: a run of nearly empty seconds this improbable in the shop's normal
    traffic (-ln p; 9.2 = one chance in 10,000)."""
    crowd_learning: float = Field(default=0.05, ge=0.0, le=1.0)
    """The baseline learns from flash-crowd windows at this fraction of its normal
    rate: a crowd that lasts many minutes is real demand and becomes the new normal."""
    seen_capacity: int = Field(default=1_000_000, ge=1000)
    """At most this many addresses (and as many prefixes) remembered as seen."""
    ipv4_prefix: int = Field(default=24, ge=8, le=32)
    ipv6_prefix: int = Field(default=48, ge=16, le=128)

    # --- rules ---------------------------------------------------------------
    rate_factor: float = Field(default=3.0, gt=1.0)
    """Traffic is elevated at this many times the baseline rate..."""
    min_elevated_rps: float = Field(default=20.0, ge=0.0)
    """...and at least this many requests per second (quiet sites never alarm)."""
    per_source_factor: float = Field(default=4.0, gt=1.0)
    """A flood by few heavy sources: 10 s per-source p99 over this many times the baseline p99."""
    per_source_min: int = Field(default=40, ge=1)
    """...and at least this many requests per source in 10 s."""
    per_source_min_1s: int = Field(default=15, ge=1)
    """...or a 1 s per-source p99 of at least this many (and ``per_source_factor`` x its
    baseline): heavy hitters show in their first second."""
    heavy_factor: float = Field(default=1.5, gt=1.0)
    """A heavy page-only client: over this many times the baseline 10 s per-source p99..."""
    heavy_min: int = Field(default=15, ge=1)
    """...and at least this many requests in 10 s, all of them pages, not one asset. A
    shopper fetches a page every few seconds plus its assets; a bot that passed one
    challenge hammers pages. Such a client is judged even with a session or a pass."""
    heavy_share: float = Field(default=0.5, gt=0.0, le=1.0)
    """A flood by verified bots: heavy page-only clients made this share of the 10 s
    view's requests (with the rate elevated)."""
    repeat_min: int = Field(default=10, ge=1)
    """A flood by repetition: at least this many page clients this second above the shop's
    usual number repeat one URL and nothing else (``Features.repeaters``)..."""
    repeat_share: float = Field(default=0.3, gt=0.0, le=1.0)
    """...and they are at least this share of the second's page clients (with the rate
    elevated). Thousands of addresses each under every per-address limit, without
    assets to miss (behind a CDN), still re-send the tool's target; shoppers move on."""
    browse_share: float = Field(default=0.25, ge=0.0, le=2.0)
    """A surge browses when at least this share of its extra page requests spread beyond
    the few paths a tool repeats, relative to the shop's own spread (``Features.browse``:
    a crowd's extra visitors land on featured pages and then browse, a flood repeats its
    targets). In a log without assets, heavy page-only clients of a browsing surge are
    addresses carrying many people, not a flood; a surge that does not browse is one
    (there, the fallback of "assets low"). Train: crowds 0.34 at the lowest, floods under
    0.1 in 95% of their windows."""
    asset_share_drop: float = Field(default=0.5, gt=0.0, le=1.0)
    """Page clients that fetch assets fell below this fraction of the baseline share."""
    pageonly_excess: float = Field(default=0.7, gt=0.0, le=1.0)
    """Assets are low also when at least this share of the page clients above the shop's
    usual number fetched no asset (a surge that is not browsing, diluted by regulars)."""
    people_z: float = Field(default=3.0, ge=0.0)
    """A surge of people: page clients in the 10 s view this many of the shop's own
    standard deviations above its usual number. A flash crowd is more people, not
    more lines (a small shop's shopper brings a page and its assets in one burst)..."""
    people_hold_z: float = Field(default=2.0, ge=0.0)
    """An open flash crowd lasts while its page clients stay this many standard
    deviations above the usual number (and ``people_factor`` times it)."""
    people_max_pages: float = Field(default=5.0, gt=0.0)
    """Addresses count people only while the usual page client fetches fewer pages than
    this in 10 s (a browser fetches one or two; a CDN's edge address, everyone's)."""
    people_factor: float = Field(default=1.5, ge=1.0)
    """...and at least this many times the usual number."""
    new_prefix_share: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share of sources from prefixes never seen in the baseline that marks a botnet."""
    top_path_share: float = Field(default=0.6, gt=0.0, le=1.0)
    """Share of page requests on the single top path that marks a single-URL flood."""
    random_min_distinct: int = Field(default=20, ge=1)
    """Randomized: at least this many distinct URLs per second (the lowest rate that can be
    elevated, ``min_elevated_rps``: a random URL is a request, and a small shop's flood at a
    few times its 5-30 req/s never makes 100)..."""
    random_unique_share: float = Field(default=0.5, gt=0.0, le=1.0)
    """...which are at least this share of page requests."""
    cache_bust_min_distinct: int = Field(default=10, ge=1)
    """Cache-busting: at least this many distinct query strings per second (over every
    path), and ``distinct_factor`` x the shop's own."""
    distinct_factor: float = Field(default=5.0, gt=1.0)
    """Distinct-URL and distinct-query counts must also exceed the baseline by this factor."""
    slow_request_seconds: float = Field(default=5.0, gt=0.0)
    """A request that took this long and sent under ``slow_max_bytes`` is a slow request."""
    slow_max_bytes: int = Field(default=1024, ge=0)
    slow_min_count: int = Field(default=10, ge=1)
    """Slow attack: at least this many 408s or slow requests per second..."""
    slow_share: float = Field(default=0.1, gt=0.0, le=1.0)
    """...making at least this share of requests."""
    slow_source_share: float = Field(default=0.2, gt=0.0, le=1.0)
    """The rest of a slow attack: at least this share of a second's requests came from
    addresses that held ``SLOW_SOURCE_MIN`` (10) or more slow connections in the last
    minute -- the tool's excess connections, refused at once by a per-address cap (a
    503 in a plain log) or answered. Normal traffic has none (a browser's idle
    preconnect ends as one 408)."""
    backend_error_share: float = Field(default=0.3, gt=0.0, le=1.0)
    """Backend failure: this share of requests failed at the backend (5xx, refused, timeout)..."""
    backend_min_errors: int = Field(default=5, ge=1)
    """...and at least this many in the last 3 s..."""
    backend_evidence: float = Field(default=0.5, ge=0.0)
    """...and the failure share's excess over ``backend_error_share``, summed over the
    seconds (CUSUM), reached this much: every request failing is enough in one second; a
    third failing for a few seconds (a rolling deploy) is not an outage."""

    stall_min_base_rps: float = Field(default=10.0, ge=0.5)
    """A stall (requests hang: nothing completes) is only judged on a shop whose
    baseline is at least this busy (silence at 2 req/s is just a quiet moment)."""
    stall_share: float = Field(default=0.25, ge=0.0, lt=1.0)
    """A nearly empty second: at most this share of the baseline rate completed. A run
    of them is a stall when it is improbable enough (``stall_nats``)."""

    # --- hysteresis and outputs ---------------------------------------------
    enter_windows: int = Field(default=2, ge=1)
    """Consecutive anomalous windows of one verdict to open an incident."""
    crowd_enter_windows: int = Field(default=5, ge=1)
    """A surge that is a flash crowd only by the absence of attack evidence (no surge of
    people either: a CDN's edge addresses, say) opens only after this many windows (an
    attack after ``enter_windows``): its first seconds may only lack the evidence so far."""
    crowd_blind_windows: int = Field(default=30, ge=1)
    """A surge that looks like a crowd in a log without asset lines (an origin behind a
    CDN) opens only after this many, more people or not: nothing there shows that its
    clients browse. A tool's thousands of volunteers are as many new addresses as a crowd
    and show what they are (each re-sends its one URL) only after a few requests 5-20 s
    apart; evidence from the 10 s view needs the view filled and then a few seconds to
    outweigh the crowd's half-weight votes. A crowd raises no mode; waiting costs nothing."""
    backend_enter_windows: int = Field(default=1, ge=1)
    """A backend failure opens faster: its thresholds are absolute and a dead backend
    must be reported within 2 s."""
    switch_windows: int = Field(default=3, ge=1)
    """Consecutive windows of another verdict to switch an open incident."""
    exit_windows: int = Field(default=10, ge=1)
    """Consecutive normal windows after which the mode goes back to normal."""
    merge_windows: int = Field(default=30, ge=1)
    """Consecutive normal windows to close an incident: an event that pauses for less
    (a hanging backend whose lines thin out, then 504s) stays one incident."""
    slow_merge_windows: int = Field(default=300, ge=1)
    """The same for a slow attack (ddos/slow): it shows only each time the server cuts
    its connections, one header or body timeout apart (up to a few minutes)."""
    stall_merge_windows: int = Field(default=120, ge=1)
    """The same for a backend failure seen so far only as traffic stalling: requests that
    hang end as 504s one proxy read timeout later (nginx's default 60 s, often 90), and
    those are the same outage, not a second one."""
    crowd_min_seconds: float = Field(default=10.0, ge=0.0)
    """A flash crowd shorter than this, or with fewer seconds judged a crowd, is not
    reported: a few shoppers' bursts in adjacent seconds are not a crowd (real demand
    lasts minutes)."""
    relabel_ratio: float = Field(default=1.0, gt=0.0)
    """Attack evidence persisting in an open crowd incident relabels the whole incident
    ddos when it outweighs the crowd evidence since the start by this factor (else the
    attack is a new incident). An attack incident is never relabelled a crowd."""
    elevated_hold: int = Field(default=5, ge=1)
    """Windows the live mode stays ``elevated`` after the last suspicious window."""
    contained_sources: int = Field(default=5, ge=0)
    """An attack from at most this many addresses (slow connections; or a flood whose
    excess those busiest addresses carry) while the shop's own traffic does not fail
    is contained by the per-address caps: reported, but the mode does not rise."""
    suspect_threshold: float = Field(default=0.7, gt=0.0, le=1.0)
    """Clients scoring at least this during a ddos incident are reported as suspects."""
    suspect_pages: int = Field(default=10, ge=1)
    """While a ddos incident is open, a client with a session or a pass that fetched at
    least this many pages in 10 s and not one asset is a suspect (it is challenged
    again: a human passes, a bot that solved once pays again)."""
    suspect_ttl: float = Field(default=300.0, gt=0.0)
    max_suspects_per_window: int = Field(default=2000, ge=0)
    incidents_kept: int = Field(default=100, ge=1)
    """How many closed incidents the live runtime remembers for ``/api/incidents``."""

    # --- request kinds -------------------------------------------------------
    asset_extensions: list[str] = Field(default_factory=lambda: [
        "css", "js", "mjs", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif",
        "woff", "woff2", "ttf", "map"])
    """A request whose path ends in one of these is a page asset, not a page."""
    asset_prefixes: list[str] = Field(default_factory=lambda: ["/static/", "/assets/"])
