"""The detector: windows -> features -> rules -> hysteresis -> incidents, suspects, mode.

Pure and synchronous. The live runtime and the offline analyzer both build a
:class:`Detector` and push closed windows into :meth:`Detector.step`; neither
adds logic of its own, which is what makes the two feeds agree.

Hysteresis: an incident opens after ``enter_windows`` consecutive windows with
the same non-normal verdict (its start is the first of them), switches verdict
only after ``switch_windows`` consecutive windows of another, and closes after
``exit_windows`` normal windows (its end is the end of the last anomalous one).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shieldwall.detect.features import NO_ASSETS, Features, Featurizer, Prefixer, more_people
from shieldwall.detect.rules import (
    BACKEND_FAILURE,
    DDOS,
    FLASH_CROWD,
    NORMAL,
    WindowVerdict,
    classify,
    lines_surge,
)
from shieldwall.detect.windows import Window
from shieldwall.guard.decision import Mode

if TYPE_CHECKING:
    # (annotations only: `shieldwall analyze` without --config never imports pydantic)
    from shieldwall.detect.settings import DetectSettings


class Hll:
    """HyperLogLog distinct counter (2^12 registers, ~1.6% error), deterministic hashing.
    (crc32 gives 32 bits of entropy: fine up to hundreds of millions of sources.)"""

    P = 12
    M = 1 << P

    def __init__(self) -> None:
        self.reg = bytearray(self.M)

    def add(self, key: str) -> None:
        self.add_all((key,))

    def add_all(self, keys: Iterable[str]) -> None:
        """Add many keys; each key's register and rank are computed once per process
        (the same sources come back second after second: an incident absorbs every
        second's sources)."""
        reg = self.reg
        cache = _HLL_SLOTS
        get = cache.get
        for key in keys:
            slot = get(key)
            if slot is None:
                slot = _hll_slot(key)
                if len(cache) >= _HLL_CACHE_MAX:
                    cache.clear()
                cache[key] = slot
            idx, rank = slot
            if rank > reg[idx]:
                reg[idx] = rank

    def count(self) -> int:
        m = self.M
        zeros = self.reg.count(0)
        est = (0.7213 / (1 + 1.079 / m)) * m * m / sum(2.0 ** -r for r in self.reg)
        if est <= 2.5 * m and zeros:
            est = m * math.log(m / zeros)
        return round(est)


_HLL_CACHE_MAX = 1 << 20
_HLL_SLOTS: dict[str, tuple[int, int]] = {}
"""key -> (register, rank): a pure function of the key, memoised (bounded)."""


def _hll_slot(key: str) -> tuple[int, int]:
    # crc32 spread over 64 bits by an odd multiplier: deterministic across runs and fast
    p = Hll.P
    h = (zlib.crc32(key.encode()) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    idx = h >> (64 - p)
    rest = (h << p) & ((1 << 64) - 1)
    rank = 64 - p + 1 if rest == 0 else (64 - rest.bit_length()) + 1
    return idx, rank


def _coarse(prefix: str) -> str:
    """``a.b.c.0/24`` -> ``a.b.0.0/16``; other prefixes unchanged (memoised, bounded)."""
    v = _COARSE.get(prefix)
    if v is not None:
        return v
    v = prefix
    if prefix.endswith("/24") and prefix.count(".") == 3:
        a, b, _ = prefix.split(".", 2)
        v = f"{a}.{b}.0.0/16"
    if len(_COARSE) >= _HLL_CACHE_MAX:
        _COARSE.clear()
    _COARSE[prefix] = v
    return v


_COARSE: dict[str, str] = {}


SURGE = (DDOS, FLASH_CROWD)
STALL = "stall"
"""The window kind of a backend failure seen only as traffic stalling."""
_SURGE_KINDS = ("flood", "randomized")
"""The ddos kinds that need a surge (``classify``'s ``elevated``); slow connections and
cache busting are judged without one."""


def _class(verdict: str | None) -> str | None:
    """A crowd and an attack are one class of event (a surge) until the evidence says which."""
    return "surge" if verdict in SURGE else verdict


def _vote(v: WindowVerdict) -> float:
    """How much one window says about a surge: its confidence, halved for a crowd
    (a crowd window is the absence of attack evidence, an attack window its presence)."""
    return v.confidence * (0.5 if v.verdict == FLASH_CROWD else 1.0)


def iso(sec: float) -> str:
    return datetime.fromtimestamp(sec, UTC).isoformat().replace("+00:00", "Z")


SLOW_KIND_SECONDS = 5
"""Seconds judged ``ddos/slow`` that make a ddos incident a slow attack (:attr:`Incident.kind`)."""


@dataclass
class Incident:
    start: float
    end: float
    verdict: str
    detected_at: float
    """Event time at which the hysteresis confirmed the incident."""
    kinds: Counter[str] = field(default_factory=Counter)
    confidence: float = 0.0
    evidence: tuple[str, ...] = ()
    peak_rps: float = 0.0
    windows: int = 0
    requests: int = 0
    legit_requests: int = 0
    legit_failed: int = 0
    downtime_seconds: float = 0.0
    """Sum over windows of the share of legitimate requests that failed."""
    sources: Hll = field(default_factory=Hll, repr=False)
    prefixes: Counter[str] = field(default_factory=Counter, repr=False)
    networks: Counter[str] = field(default_factory=Counter, repr=False)
    """The same requests by coarser network (IPv4 /16)."""
    open: bool = True
    votes: dict[str, float] = field(default_factory=dict, repr=False)
    """Weighted windows per verdict since the incident began (a surge's verdict)."""
    judged: Counter[str] = field(default_factory=Counter, repr=False)
    """Windows per verdict of their own (before hysteresis) since the incident began."""
    relabels: int = 0
    threat: bool = False
    """Some window of it threatened the shop as a whole (not contained per address)."""
    stall_only: bool = True
    """A backend failure seen only as traffic stalling (no failed requests)."""
    _best: dict[str | None, tuple[float, float, tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _held: set[str] = field(default_factory=set, repr=False)
    """Sources already in ``sources`` (adding one again changes no register)."""
    _unsettled: dict[str, int] = field(default_factory=dict, repr=False)
    """Requests per source not yet added to ``prefixes``/``networks``, in the order the
    sources were first absorbed (:meth:`settle` adds them)."""
    _prefix: Prefixer | None = field(default=None, repr=False)
    """The detector's source -> network (for :meth:`settle`)."""

    @property
    def kind(self) -> str | None:
        """The most frequent kind of its seconds -- unless it held slow connections for
        a few seconds (``SLOW_KIND_SECONDS``): a slow attack shows what it is only when the
        server cuts its connections (one header or body timeout apart) and while its
        addresses are remembered; between, its excess connections (refused by a
        per-address cap) look like a flood of whatever URL the tool asks for, often for
        longer. No other attack holds connections until the server cuts them."""
        if self.verdict != DDOS or not self.kinds:
            return None
        if self.kinds.get("slow", 0) >= SLOW_KIND_SECONDS:
            return "slow"
        return self.kinds.most_common(1)[0][0]

    @property
    def legit_failed_share(self) -> float:
        return self.legit_failed / self.legit_requests if self.legit_requests else 0.0

    def settle(self) -> None:
        """Add the requests absorbed per source to ``prefixes`` and ``networks``.

        Per second an incident only adds each source's requests to one dict (its
        sources come back second after second); here each source is mapped to its
        network once. The counters come out as if every second had been added to
        them in turn: the same sums, and each network first met where its first
        source was, so the same order (most_common breaks ties by it)."""
        acc = self._unsettled
        if not acc:
            return
        prefix = self._prefix
        assert prefix is not None  # set by the first absorb that filled _unsettled
        pcache = prefix.cache
        prefixes, networks = self.prefixes, self.networks
        pget, nget = prefixes.get, networks.get
        for c, cnt in acc.items():
            p = pcache.get(c) or prefix(c)
            q = _COARSE.get(p) or _coarse(p)
            prefixes[p] = pget(p, 0) + cnt
            networks[q] = nget(q, 0) + cnt
        self._unsettled = {}

    def top_prefixes(self, n: int = 5) -> list[list[Any]]:
        """The networks most requests came from: /24s, or /16s when the sources are
        spread so thin over /24s that their top five hold under a tenth of the requests."""
        self.settle()
        total = sum(self.prefixes.values())
        top = self.prefixes.most_common(n)
        if total and sum(c for _, c in top) < 0.1 * total:
            top = self.networks.most_common(n)
        return [[p, c] for p, c in top]

    def as_json(self) -> dict[str, Any]:
        """The issue's incident schema, exactly."""
        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "verdict": self.verdict,
            "kind": self.kind,
            "confidence": round(self.confidence, 3),
            "evidence": list(self.evidence),
            "peak_rps": float(self.peak_rps),
            "sources": self.sources.count(),
            "top_prefixes": self.top_prefixes(),
            "legit_failed_share": round(self.legit_failed_share, 4),
        }


@dataclass(frozen=True, slots=True)
class StepResult:
    features: Features
    raw: WindowVerdict
    """This window's own verdict, before hysteresis."""
    state: str
    """The verdict after hysteresis (the open incident's, or normal)."""
    kind: str | None
    mode: Mode
    opened: Incident | None = None
    closed: tuple[Incident, ...] = ()
    suspects: tuple[tuple[str, float], ...] = ()


def blind(f: Features) -> bool:
    """Nothing in this log shows whether a surge's clients browse: no asset lines (a CDN
    serves them). More addresses than usual are no proof of people there: a tool's
    thousands of volunteers are as many addresses, and show what they are (each re-sends
    its one URL) only after a few of their requests, 5-20 s apart."""
    return f.warm and f.base_asset_share < NO_ASSETS


def pages_without_assets(c: str, pages: dict[str, int], assets: dict[str, int]) -> bool:
    """Pages and not one asset, in at least two seconds of the 10 s view.

    A browser's assets follow its page within a second or two, later still when
    the page was a challenge it had to solve first: in the second of its first
    page, a new shopper looks exactly like a bot that never fetches assets (and
    during a low-and-slow flood it comes from a network never seen, like every
    volunteer). One second of pages proves nothing; a second one without assets
    does."""
    return pages.get(c, 0) >= 2 and c not in assets


class Detector:
    """One per shield (live) or per analyzed log set (offline)."""

    def __init__(self, settings: DetectSettings, *, score_clients: bool = True) -> None:
        self.s = settings
        self.score_clients = score_clients
        """Per-client suspicion is for the live guard; the offline analyzer turns it off."""
        self.featurizer = Featurizer(settings)
        self.current: Incident | None = None
        self._cand: str | None = None
        self._cand_n = 0
        self._cand_start = 0
        self._cand_windows: list[tuple[Window, Features, WindowVerdict]] = []
        self._normal_run = 0
        self._last_anomaly_end = 0.0
        self._elevated_until = -1
        self.mode = Mode.NORMAL
        self.last: StepResult | None = None
        self._suspect_sent: dict[str, int] = {}
        self.windows = 0
        self._since_gap = 1 << 30
        """Active windows since the last long silence: a stall is not judged while
        traffic comes back after one (it ramps up from nothing)."""
        self._slots: dict[str, tuple[int, int, str, str]] = {}
        """Source -> (HyperLogLog register, rank, network, /16): what an incident counts a
        source for, memoised (bounded)."""

    def make_builder_args(self) -> dict[str, Any]:
        s = self.s
        return {"idle_gap": s.idle_gap, "asset_extensions": s.asset_extensions,
                "asset_prefixes": s.asset_prefixes, "slow_seconds": s.slow_request_seconds,
                "slow_max_bytes": s.slow_max_bytes}

    # -- one window -------------------------------------------------------------
    def step(self, w: Window, *, at_end: bool = False) -> StepResult:
        """Judge one closed window. ``at_end``: offline, one of the last seconds of the
        input, where a fall to silence is the log (or the drill) ending, not a stall;
        likewise a silence longer than ``idle_gap`` in a log (``w.gap``, and the seconds
        around it) is missing data, not an outage."""
        self.windows += 1
        f = self.featurizer.featurize(w)
        v = classify(f, self.s)
        if w.gap:
            self._since_gap = 0
        elif w.n:
            self._since_gap += 1
        if ((at_end or w.gap or self._since_gap < self.s.warmup_windows)
                and v.verdict == BACKEND_FAILURE and f.backend_fails_3 < self.s.backend_min_errors):
            v = WindowVerdict(NORMAL)
        opened: Incident | None = None
        closed: list[Incident] = []
        cur = self.current
        if cur is not None and cur.verdict == BACKEND_FAILURE and v.verdict == FLASH_CROWD:
            # the burst right after a stall is the backlog of hung requests completing
            v = WindowVerdict(NORMAL, evidence=("backlog draining after the backend failure",))
        if (cur is not None and cur.verdict == DDOS and v.verdict == BACKEND_FAILURE and v.kind == STALL
                and self._normal_run < self.s.exit_windows):
            # lines that stop coming while an attack is on are the attack's doing (held
            # connections, a saturated front), or its pause: not a second event
            v = WindowVerdict(NORMAL, evidence=("traffic thinned during the attack", *v.evidence))
        if (cur is not None and cur.verdict == DDOS and v.verdict == FLASH_CROWD
                and 0 < self._normal_run < self.s.exit_windows):
            # A crowd-like second continues an attack only while the attack is on (it
            # merely lacks the attack's evidence that second). Once the attack has
            # paused, busy seconds that look like shoppers are not more of it -- they
            # are the shoppers it held up coming back -- so they neither extend it
            # nor end its pause; after a long pause they are an event of their own.
            v = WindowVerdict(NORMAL, evidence=("crowd-like traffic after the attack paused", *v.evidence))
        if (cur is not None and cur.verdict == DDOS and v.verdict == DDOS and v.kind in _SURGE_KINDS
                and 0 < self._normal_run < self.s.exit_windows and self._remembered(w, f)):
            v = WindowVerdict(NORMAL, evidence=("the paused attack's clients, still in the 10 s view", *v.evidence))
        if cur is None:
            if v.verdict == NORMAL:
                self._cand, self._cand_n, self._cand_windows = None, 0, []
                self.featurizer.learn(w, f)
            else:
                self._candidate(w, f, v)
                if self._cand_n >= self._enter(self._cand_kind(v), f) or self._overwhelming(f, v):
                    opened = self._open(self._cand_verdict(), f.sec)
        else:
            if (v.verdict == NORMAL and cur.verdict == FLASH_CROWD
                    and more_people(f, self.s, self.s.people_hold_z)):
                # a crowd lasts while its people are here: a second without a surge of
                # lines (a small shop's shoppers come in bursts) does not end it
                self._normal_run = 0
                self._cand, self._cand_n = None, 0
                self._absorb(cur, w, f, v)
            elif (v.verdict == NORMAL and cur.verdict == BACKEND_FAILURE
                    and f.backend_fail_share >= self.s.backend_error_share
                    and f.fail_evidence >= self.s.backend_evidence):
                # the backends still fail what reaches them (a quiet shop's hang sends a
                # 504 or two a second, under the count that opens an incident): the same
                # outage goes on
                self._normal_run = 0
                self._cand, self._cand_n = None, 0
                self._absorb(cur, w, f, v)
            elif v.verdict == NORMAL:
                self._normal_run += 1
                self._cand, self._cand_n = None, 0
                if self._normal_run >= max(self._merge(cur), self.s.exit_windows):
                    cur.open = False
                    closed += self._report(cur)
                    self.current = None
                    self._normal_run = 0
            else:
                paused = self._normal_run >= self.s.exit_windows
                # a slow attack pausing between its timeouts is not continued by a flood
                other = v.verdict != cur.verdict or (cur.kind == "slow" and v.kind != "slow"
                                                     and self._normal_run >= self.s.merge_windows)
                if paused and other:
                    # after a pause, a different event is a new incident, not more of this one
                    self._candidate(w, f, v)
                    if self._cand_n >= self._enter(self._cand_kind(v), f):
                        cur.open = False
                        closed += self._report(cur)
                        opened = self._open(self._cand_verdict(), f.sec)
                    else:
                        self._normal_run += 1  # still paused while the new one is a candidate
                elif v.verdict == cur.verdict or (cur.verdict == DDOS and v.verdict == FLASH_CROWD):
                    # an attack goes on until it pauses: a second that merely lacks attack
                    # evidence is not contrary evidence (no flapping between ddos and crowd)
                    self._normal_run = 0
                    self._cand, self._cand_n = None, 0
                    self._absorb(cur, w, f, v)
                    if cur.verdict == FLASH_CROWD == v.verdict and self.s.crowd_learning > 0:
                        self.featurizer.learn(w, f, self.s.crowd_learning)
                else:
                    self._normal_run = 0
                    self._candidate(w, f, v)
                    if self._cand_n >= self._switch_after(cur, f, v):
                        if self._relabel(cur):
                            for cw, cf, cv in self._cand_windows:
                                self._absorb(cur, cw, cf, cv)
                            self._cand, self._cand_n, self._cand_windows = None, 0, []
                        else:
                            cur.open = False
                            cur.end = min(cur.end, float(self._cand_start))
                            closed += self._report(cur)
                            opened = self._open(self._cand_verdict(), f.sec)
        suspects = self._suspects(f, v) if self.score_clients else ()
        mode = self._mode(f, v)
        # an incident paused for exit_windows is normal traffic again (its record stays
        # open merge_windows, so that the same event resuming is not a new incident)
        active = self.active
        state = active.verdict if active is not None else NORMAL
        kind = active.kind if active is not None else None
        res = StepResult(f, v, state, kind, mode, opened, tuple(closed), suspects)
        self.last = res
        return res

    @property
    def active(self) -> Incident | None:
        """The open incident, unless it has paused for ``exit_windows`` normal windows."""
        if self.current is not None and self._normal_run < self.s.exit_windows:
            return self.current
        return None

    def _remembered(self, w: Window, f: Features) -> bool:
        """A surge only the 10 s view still holds: this second's lines are no surge (as
        ``classify`` judges one) and its page clients are no more than the shop's usual
        number in ten seconds. After an attack stops, its thousands of clients stay in the
        10 s view for ten seconds (more people than usual, none of them fetching assets,
        from networks never seen): the shop's own traffic coming back above
        ``min_elevated_rps`` then reads as a flood by people (live, ``make demo``'s recovery
        re-raised ``under_attack`` 5 s after the flood had ended). An attack that goes on
        is in this second too: its lines, or its clients (a low-and-slow flood's hundreds a
        second, each under every limit)."""
        return not lines_surge(f, self.s) and len(w.curl) <= f.base_page_clients

    def _candidate(self, w: Window, f: Features, v: WindowVerdict) -> None:
        """Count a window towards a new incident (consecutive windows of one class)."""
        if _class(v.verdict) != self._cand:
            # a stall began with the first of its nearly empty seconds
            back = f.low_run - 1 if v.kind == STALL and f.low_run > 0 else 0
            self._cand, self._cand_n, self._cand_start = _class(v.verdict), 0, w.sec - back
            self._cand_windows = []
        self._cand_n += 1
        self._cand_windows.append((w, f, v))

    def _cand_verdict(self) -> str:
        """A surge is a crowd or an attack by the weight of the evidence of all its
        windows so far (attack evidence wins a tie), not by its latest second."""
        votes: dict[str, float] = {}
        for _, _, cv in self._cand_windows:
            votes[cv.verdict] = votes.get(cv.verdict, 0.0) + _vote(cv)
        best = max(votes.values())
        for verdict in (DDOS, BACKEND_FAILURE, FLASH_CROWD):
            if votes.get(verdict) == best:
                return verdict
        return self._cand_windows[-1][2].verdict

    def _relabel(self, inc: Incident) -> bool:
        """Attack evidence that persists in an open crowd incident: an attack hiding in
        (or following) a crowd is a new incident, unless the attack evidence outweighs
        the crowd's since the incident began -- then the whole incident was the attack
        from its start (its first seconds only lacked the evidence) and is relabelled."""
        if inc.verdict != FLASH_CROWD or self._cand != _class(DDOS):
            return False
        ddos = inc.votes.get(DDOS, 0.0) + sum(_vote(cv) for _, _, cv in self._cand_windows if cv.verdict == DDOS)
        if ddos < self.s.relabel_ratio * inc.votes.get(FLASH_CROWD, 0.0):
            return False
        inc.verdict = DDOS
        inc.relabels += 1
        inc._best.clear()
        inc.evidence = ()
        return True

    def _overwhelming(self, f: Features, v: WindowVerdict) -> bool:
        """Persistence is for doubtful seconds: a surge so far above the shop's spread
        that it fills the CUSUM in one second (``fast_surge`` x the threshold), with
        attack evidence and not contained per address, opens the incident at once -- as
        the attack it is. Not when the surge's own windows so far say crowd by their weight
        (the CUSUM filled over them, not in this second): then one attack second is
        evidence to weigh like any other, and the surge opens by the weight of all of
        them (an incident opened as a crowd because one second was an attack's was a
        crowd for a second, then an attack)."""
        return (v.verdict == DDOS and f.surge >= self.s.fast_surge * self.s.surge_threshold
                and not self.contained(f, v) and self._cand_verdict() == DDOS)

    def _merge(self, inc: Incident) -> int:
        """Normal windows that close an incident. A slow attack shows only when the
        server cuts its connections, one timeout apart: its record stays open that long."""
        if inc.verdict == DDOS and inc.kind == "slow":
            return max(self.s.merge_windows, self.s.slow_merge_windows)
        if inc.verdict == BACKEND_FAILURE and inc.stall_only:
            # hung requests end as 504s a read timeout after the stall began
            return max(self.s.merge_windows, self.s.stall_merge_windows)
        return self.s.merge_windows

    def _cand_kind(self, v: WindowVerdict) -> str:
        """What the candidate would open as: a surge by the weight of its windows."""
        return self._cand_verdict() if v.verdict in SURGE else v.verdict

    def _enter(self, verdict: str, f: Features | None = None) -> int:
        """Windows that open an incident. A crowd that is only the absence of attack
        evidence waits longer than an attack: its first seconds may only lack the evidence
        so far (the 10 s view still filling), and a crowd raises no mode, so waiting costs
        nothing. A crowd the page clients show (more people than usual) opens as soon --
        except in a log without asset lines (:func:`blind`): there it waits longest, more
        people or not."""
        if verdict == BACKEND_FAILURE:
            return self.s.backend_enter_windows
        if verdict == FLASH_CROWD and f is not None and blind(f):
            return max(self.s.enter_windows, self.s.crowd_enter_windows, self.s.crowd_blind_windows)
        if verdict == FLASH_CROWD and not (f is not None and more_people(f, self.s)):
            return max(self.s.enter_windows, self.s.crowd_enter_windows)
        return self.s.enter_windows

    def _switch_after(self, cur: Incident, f: Features, v: WindowVerdict) -> int:
        """Windows of another verdict that switch an open incident. An attack that the
        per-address caps do not contain needs no more proof after a crowd than after calm
        (``enter_windows``): the crowd's shoppers are the ones it would hurt, and the guard
        acts on the switch. Anything else waits ``switch_windows`` (no flapping).

        And as after calm, a ddos second that stands out at once needs no second window:
        after calm that is the CUSUM filled in one second (:meth:`_overwhelming`); inside a
        crowd the CUSUM is already full of the crowd, so the same ``fast_surge`` x
        ``surge_threshold`` of the shop's standard deviations is asked of this second's
        rise over the crowd's own level (the higher of the last second and the 10 s mean):
        an attack's first second on top of the crowd, not the crowd's own noise."""
        if cur.verdict == FLASH_CROWD and v.verdict == DDOS and not self.contained(f, v):
            if self._stands_out(f):
                return 1
            return self._enter(DDOS)
        return max(self.s.switch_windows, self._enter(v.verdict))

    def _stands_out(self, f: Features) -> bool:
        """This second rose over the traffic just before it (the higher of the last
        second and the 10 s mean) by ``fast_surge`` x ``surge_threshold`` of the shop's
        own standard deviations."""
        level = max(f.rps_prev, f.rps_10)
        return f.rate_sd > 0 and f.rps - level >= self.s.fast_surge * self.s.surge_threshold * f.rate_sd

    def _open(self, verdict: str, sec: int) -> Incident:
        inc = Incident(start=float(self._cand_start), end=float(self._cand_start),
                       verdict=verdict, detected_at=float(sec + 1))
        for cw, cf, cv in self._cand_windows:
            self._absorb(inc, cw, cf, cv)
        self.current = inc
        self._cand, self._cand_n, self._cand_windows = None, 0, []
        self._normal_run = 0
        return inc

    def _absorb(self, inc: Incident, w: Window, f: Features, v: WindowVerdict) -> None:
        inc.end = float(w.sec + 1)
        inc.windows += 1
        inc.requests += w.n
        if v.verdict != NORMAL:
            inc.votes[v.verdict] = inc.votes.get(v.verdict, 0.0) + _vote(v)
            inc.judged[v.verdict] += 1
        if v.verdict == BACKEND_FAILURE and v.kind != STALL:
            inc.stall_only = False
        if v.kind and v.kind != STALL:
            inc.kinds[v.kind] += 1
        inc.peak_rps = max(inc.peak_rps, f.rps)
        if v.verdict == inc.verdict or not inc.evidence:
            # per kind, the evidence of the clearest window (most confident, then busiest);
            # the incident shows the one of its most frequent kind
            best = inc._best.get(v.kind)
            if best is None or (v.confidence, f.rps) >= best[:2]:
                inc._best[v.kind] = (v.confidence, f.rps, v.evidence)
            conf, _, evidence = inc._best[inc.kind] if inc.kind in inc._best else inc._best[v.kind]
            inc.evidence = evidence
            inc.confidence = conf
        inc.legit_requests += f.legit_requests
        inc.legit_failed += f.legit_failed
        if f.legit_requests:
            inc.downtime_seconds += f.legit_failed / f.legit_requests
        # An attack's top prefixes are those of the sources the shop had never seen
        # (a botnet spread one host per network would otherwise rank below the
        # shoppers' home networks).
        src = w.src
        # sources new to the incident (set operations in C): their HyperLogLog register
        # and rank (a pure function of the address, memoised)
        held = inc._held
        new = src.keys() - held
        if new:
            reg = inc.sources.reg
            for c in new:
                idx, rank, _, _ = self._slot(c)
                if rank > reg[idx]:
                    reg[idx] = rank
            if len(held) >= _HLL_CACHE_MAX:
                held.clear()  # only a shortcut: adding a source again is harmless
            held |= new
        # requests per source now, per network when asked (Incident.settle)
        acc = inc._unsettled
        aget = acc.get
        if inc.verdict == DDOS:
            seen = self.featurizer.seen_sources.d
            for c, cnt in src.items():
                if c not in seen:
                    acc[c] = aget(c, 0) + cnt
        else:
            for c, cnt in src.items():
                acc[c] = aget(c, 0) + cnt
        inc._prefix = self.featurizer.prefix
        # the counters are cut back past 50,000 networks: settle before they could be
        # (at most one network per source)
        if len(inc.prefixes) + len(acc) > 50_000:
            inc.settle()
            if len(inc.prefixes) > 50_000:
                inc.prefixes = Counter(dict(inc.prefixes.most_common(10_000)))

    def _slot(self, c: str) -> tuple[int, int, str, str]:
        """What a source stands for (pure functions of the address, memoised): its
        HyperLogLog register and rank, its network and that network's /16."""
        sl = self._slots.get(c)
        if sl is None:
            slots = self._slots
            if len(slots) >= _HLL_CACHE_MAX:
                slots.clear()
            prefix = self.featurizer.prefix
            p = prefix.cache.get(c) or prefix(c)
            sl = slots[c] = (*_hll_slot(c), p, _COARSE.get(p) or _coarse(p))
        return sl

    # -- outputs for the guard -------------------------------------------------------
    def contained(self, f: Features, v: WindowVerdict) -> bool:
        """An attack the per-address caps already hold: it comes from a handful of
        addresses (slow connections from at most ``contained_sources``; or a flood whose
        excess over the baseline those few busiest sources carry) and the shop's own
        traffic is not failing. Such an attack is the guard's per-client business; the
        shop-wide mode is for what threatens the shop as a whole."""
        if f.legit_requests and f.legit_failed > 0.05 * f.legit_requests:
            return False
        n = self.s.contained_sources
        if v.kind == "slow":
            return f.slow_sources <= n
        if f.rps_10 <= 0:
            return False
        excess = max(0.0, 1.0 - f.ref_rps / f.rps_10)
        return n > 0 and excess > 0 and f.top5_share >= 0.8 * excess

    def _mode(self, f: Features, v: WindowVerdict) -> Mode:
        """ddos confirmed -> under_attack; a ddos window not yet confirmed, or an attack
        that just stopped, -> elevated (held a few windows); else normal. A flash crowd
        never raises the mode: elevated challenges unknown clients on expensive routes.
        An attack the per-address caps contain (:meth:`contained`) raises nothing."""
        cur = self.active
        if v.verdict == DDOS and not self.contained(f, v):
            self._elevated_until = f.sec + self.s.elevated_hold
            if cur is not None and cur.verdict == DDOS:
                cur.threat = True
        held = f.sec < self._elevated_until
        if cur is not None and cur.verdict == DDOS and cur.threat:
            self.mode = Mode.UNDER_ATTACK if held else Mode.ELEVATED
        else:
            self.mode = Mode.ELEVATED if held else Mode.NORMAL
        return self.mode

    def _suspects(self, f: Features, v: WindowVerdict) -> tuple[tuple[str, float], ...]:
        """Per-client scores while a ddos incident is open (never during a flash crowd).
        Clients with a session or a pass are exempt, except heavy page-only ones."""
        cur = self.current
        if cur is None or cur.verdict != DDOS or v.verdict != DDOS or self.s.max_suspects_per_window == 0:
            return ()
        fz = self.featurizer
        limit = max(self.s.per_source_min, self.s.per_source_factor * f.base_p99)
        slow_srcs = {c for win in fz._v10 for c in win.slow_src} if v.kind == "slow" else set()
        seen = fz.seen_sources
        seen_p = fz.seen_prefixes
        assets = fz.asset10
        pages = fz.page10
        trusted = fz.trusted10
        prefix = fz.prefix
        out: list[tuple[str, float]] = []
        src10 = fz.src10
        sent = self._suspect_sent
        ttl_windows = int(self.s.suspect_ttl / 2)
        heavy = min(f.heavy_limit, float(self.s.suspect_pages))
        for c in fz._v10[-1].src:  # clients active this second, counted over 10 s
            last = sent.get(c)
            if last is not None and f.sec - last < ttl_windows:
                continue
            cnt = src10[c]
            if c in trusted:
                # A session or a pass exempts a client, unless it hammers pages and
                # never fetches an asset: one solved challenge does not make a bot a
                # shopper (a shopper's pages come with their assets).
                if cnt < heavy or c not in pages or c in assets:
                    continue
                score = 0.75 + 0.2 * min(1.0, cnt / limit)
            elif c in slow_srcs:
                score = 0.95
            else:
                score = 0.3 * min(1.0, cnt / limit)
                if pages_without_assets(c, pages, assets):
                    score += 0.35
                if prefix(c) not in seen_p:
                    score += 0.35
                if c in seen and c in assets:
                    score *= 0.3
            if score >= self.s.suspect_threshold:
                out.append((c, round(score, 3)))
        out.sort(key=lambda cs: -cs[1])
        fresh: list[tuple[str, float]] = []
        for c, score in out:
            sent[c] = f.sec
            fresh.append((c, score))
            if len(fresh) >= self.s.max_suspects_per_window:
                break
        if len(sent) > 500_000:
            cutoff = f.sec - ttl_windows
            self._suspect_sent = {c: t for c, t in sent.items() if t >= cutoff}
        return tuple(fresh)

    def _report(self, inc: Incident) -> list[Incident]:
        """A closed incident as reported: a "crowd" shorter than ``crowd_min_seconds`` is
        a burst of a few shoppers, not a crowd (real demand lasts minutes), and is not
        reported (it never raised the mode). Its length is counted in the seconds judged
        a crowd, not in how long the people hold kept its record open: a few bursts in
        a small shop with people just over their hold level are not demand (train: such
        episodes had 2-3 crowd seconds, every real crowd over 300)."""
        if inc.verdict == FLASH_CROWD and min(inc.end - inc.start,
                                              inc.judged[FLASH_CROWD]) < self.s.crowd_min_seconds:
            return []
        return [inc]

    def finish(self) -> list[Incident]:
        """End of input: close the open incident, if any."""
        if self.current is None:
            return []
        inc = self.current
        inc.open = False
        self.current = None
        if inc.verdict == BACKEND_FAILURE and inc.stall_only and self._normal_run < self.s.exit_windows:
            # traffic fading into the end of the input is the log ending, not an outage
            return []
        return self._report(inc)


__all__ = ["BACKEND_FAILURE", "DDOS", "Detector", "Incident", "StepResult"]
