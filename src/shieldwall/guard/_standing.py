"""A client's standing for admission: what it has done, not only what it holds.

When a backend saturates, the admission queue serves the highest standing
first and sheds the lowest. Before any verdict, the class (customer, pass,
unknown, suspect) is not enough: a bot that solved one challenge holds the
same pass as a shopper, and a flood's first requests look like any new
visitor's. What a shopper's browser does and a flood does not:

- it fetches the page's assets right after the page (CSS, scripts,
  pictures), within ``ASSET_FOLLOW_S`` of it;
- it asks for pages at a human rate (a page every few seconds), never a
  dozen in ten seconds without the assets that go with them;
- it has history: a shield session issued a while ago, or assets fetched
  since long before now.

:class:`Conduct` keeps that record per client address (pure, bounded, time
passed in) and :meth:`Conduct.standing` turns it and the class into a
:class:`Standing`. The gate puts the standing into ``Decision.priority``;
:mod:`._admission` orders its queue by it.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Final

from shieldwall.guard.decision import ClientClass


class Standing(IntEnum):
    """Admission ranks, higher served first and shed last. 0: not given
    (the admission then ranks by class alone, see :func:`of_class`)."""

    UNSET = 0
    SUSPECT = 1
    """Named by the detector or by its own 429s: not queued at all."""
    HEAVY = 2
    """Pages at a rate nobody clicks, without their assets (pass or not)."""
    PAGES_ONLY = 3
    """Several pages, never an asset after one, no history."""
    NEW = 4
    """Nothing to judge yet: a first page from an address never seen."""
    PASS = 5
    """Holds a pass (solved a challenge), nothing else known yet."""
    BROWSER = 6
    """Fetched assets right after a page, pages at a human rate."""
    SHOPPER = 7
    """A browser with history (an old session, or seen long before now)."""
    CUSTOMER = 8
    """The shop marked the session (a cart), behaving."""
    CHECKOUT = 9
    """A customer on a checkout route: the very last to be shed."""


PROVEN: Final = Standing.BROWSER
"""From here up a client has shown it is a shopper: it keeps its full queue
deadline under overload and may use the slots kept in reserve."""

ASSET_FOLLOW_S: Final = 2.0
"""An asset fetched within this long after a page of the same client is a
browser rendering that page (a person's browser asks at once; a flood that
rotates paths at its own pace does not)."""
HEAT_TAU_S: Final = 10.0
"""Time constant of the page rate (requests decay by e every 10 s)."""
BROWSER_ASSETS: Final = 2
"""Assets after a page that make a client count as a browser for the
newcomer budget and for a page on trial (a page has a stylesheet, a script,
pictures; a flood that rotates paths rarely asks for two of them within
ASSET_FOLLOW_S of a page)."""
TRIAL_ASSET_S: Final = 5.0
"""On trial, an asset goes on unchecked within this long after the client's
last page that went on (a loaded page's pictures may come late); later it is
no page's asset: a flood that entered on the budget and rotates paths gets
its one page and that page's moment, not a stream of free files."""
BUDGET_BURST_S: Final = 2.0
"""The newcomer budget holds this many seconds of its rate (under 0.5 new
browsers a second in all it holds less than one token: nobody enters free)."""
SURGE_MIN: Final = 50.0
SURGE_X: Final = 10.0
"""New clients beyond the newcomer budget, per second (averaged over
``SURGE_TAU_S``), above max(SURGE_MIN, SURGE_X x the rate of new browsers),
are a surge: the first second of a flood from fresh addresses. A flash crowd
brings new shoppers at a multiple of the shop's usual rate who fetch their
assets, so the rate of new browsers rises with it; a flood from a thousand
fresh addresses arrives at a hundred times that, none of them a browser."""
SURGE_TAU_S: Final = 1.0
SURGE_HOLD_S: Final = 10.0
"""A client checked in a surge stays checked while it keeps coming (each
checked request renews this), until it holds a pass."""
SEEN: Final = 0
ON_TRIAL: Final = 1
BEYOND: Final = 2
"""How a client came to :meth:`Conduct._enter`: known, or new on the budget, or new beyond it."""
MAX_CLIENTS: Final = 65536
"""Records kept at most; the oldest half goes when full (a flood from many
addresses must not grow the memory without bound)."""


def of_class(cls: ClientClass, checkout: bool = False) -> Standing:
    """The standing a class alone gives (callers that know no conduct)."""
    if cls is ClientClass.CUSTOMER:
        return Standing.CHECKOUT if checkout else Standing.CUSTOMER
    if cls is ClientClass.VERIFIED:
        return Standing.PASS
    if cls is ClientClass.UNKNOWN:
        return Standing.NEW
    return Standing.SUSPECT


class Record:
    __slots__ = ("asset_heat", "first", "followed", "heat", "held_until", "last_page", "pages",
                 "stamp", "trial")

    def __init__(self, now: float) -> None:
        self.first = now
        self.pages = 0
        self.heat = 0.0
        """Pages, decaying with HEAT_TAU_S: about the pages of the last 10 s."""
        self.asset_heat = 0.0
        self.stamp = now
        self.followed = 0
        """Assets fetched within ASSET_FOLLOW_S after a page."""
        self.last_page = -math.inf
        self.trial = False
        """Let in without a check on the newcomer budget (see Conduct.admits)."""
        self.held_until = -math.inf
        """Checked until then: it came in a surge (see Conduct.surge_checks)."""


class NewcomerBudget:
    """How many never-seen clients may enter without a check: a token bucket
    refilled at ``factor`` times the recent rate of new browsers.

    The rate is an exponentially weighted count of the clients whose first
    page was followed by its assets (``BROWSER_ASSETS``), with time constant
    ``window_s``, counted in every mode and whether they entered free or
    solved a check first: it follows the shop's own audience, and a flood
    that fetches no assets adds nothing to it. The bucket holds
    ``BUDGET_BURST_S`` seconds of its rate. A shield that has seen no
    browser yet has no budget."""

    __slots__ = ("factor", "granted", "over", "over_stamp", "rate", "refused", "stamp",
                 "tokens", "window_s")

    def __init__(self, factor: float = 2.0, window_s: float = 20.0) -> None:
        self.factor = factor
        self.window_s = window_s
        self.rate = 0.0
        """New browsers per second (EWMA)."""
        self.tokens = 0.0
        self.stamp = -math.inf
        self.granted = 0
        self.refused = 0
        self.over = 0.0
        """Never-seen clients beyond the budget per second (EWMA over SURGE_TAU_S)."""
        self.over_stamp = -math.inf

    def _advance(self, now: float) -> None:
        dt = now - self.stamp
        if dt <= 0.0:
            return
        if self.stamp == -math.inf:
            self.stamp = now
            return
        refill = self.factor * self.rate
        decay = math.exp(-dt / self.window_s)
        # tokens over dt at the (decaying) refill rate: the integral of refill * e^(-t/w)
        self.tokens += refill * self.window_s * (1.0 - decay)
        self.rate *= decay
        cap = self.factor * self.rate * BUDGET_BURST_S
        if self.tokens > cap:
            self.tokens = cap
        self.stamp = now

    def browser(self, now: float) -> None:
        """A new browser arrived (its first page's assets followed it)."""
        self._advance(now)
        self.rate += 1.0 / self.window_s

    def take(self, now: float) -> bool:
        """One never-seen client enters free, if the budget holds a token."""
        if self.factor <= 0.0:
            return False
        self._advance(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.granted += 1
            return True
        self.refused += 1
        self._decay_over(now)
        self.over += 1.0 / SURGE_TAU_S
        return False

    def _decay_over(self, now: float) -> None:
        dt = now - self.over_stamp
        if dt > 0.0:
            self.over *= math.exp(-dt / SURGE_TAU_S)
            self.over_stamp = now

    def surging(self, now: float) -> bool:
        """New clients beyond the budget arrive in a surge (see SURGE_MIN)."""
        self._decay_over(now)
        self._advance(now)
        return self.over > max(SURGE_MIN, SURGE_X * self.rate)

    def status(self) -> dict[str, float]:
        return {"browsers_per_s": round(self.rate, 3),
                "free_per_s": round(self.factor * self.rate, 3),
                "tokens": round(self.tokens, 2), "granted": self.granted,
                "beyond": self.refused, "beyond_per_s": round(self.over, 1)}


class Conduct:
    """What each client address has done lately."""

    def __init__(self, history_s: float = 30.0, heavy_pages: float = 12.0,
                 max_clients: int = MAX_CLIENTS, newcomers: float = 0.0,
                 newcomers_window: float = 20.0) -> None:
        self.history_s = history_s
        self.heavy_pages = heavy_pages
        self.max_clients = max_clients
        self.records: dict[str, Record] = {}
        self.budget = NewcomerBudget(newcomers, newcomers_window)

    def _new(self, client: str, now: float) -> Record:
        if len(self.records) >= self.max_clients:
            for key in list(self.records)[: self.max_clients // 2]:
                del self.records[key]
        rec = self.records[client] = Record(now)
        return rec

    def see(self, client: str, asset: bool, now: float, rec: Record | None = None) -> Record:
        """Count one request of ``client`` that goes to the shop. ``rec``: its
        record when the caller looked it up already this request (None: look)."""
        if rec is None:
            rec = self.records.get(client)
            if rec is None:
                rec = self._new(client, now)
        dt = now - rec.stamp
        if dt > 0.0:
            decay = math.exp(-dt / HEAT_TAU_S)
            rec.heat *= decay
            rec.asset_heat *= decay
            rec.stamp = now
        if asset:
            rec.asset_heat += 1.0
            if now - rec.last_page <= ASSET_FOLLOW_S:
                rec.followed += 1
                if rec.followed == BROWSER_ASSETS:
                    self.budget.browser(now)
        else:
            rec.pages += 1
            rec.heat += 1.0
            rec.last_page = now
        return rec

    def standing(self, cls: ClientClass, rec: Record, now: float, *, checkout: bool = False,
                 allowed: bool = False, session_age: float = -1.0) -> Standing:
        """The rank of a request by ``cls`` whose client did ``rec``.

        ``session_age``: seconds since its shield session was issued (-1: none)."""
        if cls is ClientClass.SUSPECT:
            return Standing.SUSPECT
        if rec.heat >= self.heavy_pages and rec.asset_heat * 2.0 < rec.heat:
            return Standing.HEAVY
        if cls is ClientClass.CUSTOMER:
            return Standing.CHECKOUT if checkout else Standing.CUSTOMER
        history = session_age >= self.history_s
        if rec.followed:
            if history or now - rec.first >= self.history_s:
                return Standing.SHOPPER
            return Standing.BROWSER
        if allowed:
            return Standing.BROWSER
        if rec.pages >= 2 and not history:
            return Standing.PAGES_ONLY
        if cls is ClientClass.VERIFIED:
            return Standing.PASS
        return Standing.NEW

    def _enter(self, client: str, now: float,
               rec: Record | None = None) -> tuple[Record, int]:
        """The record of ``client``, and how it came: SEEN (it was there), or
        never seen, made now, and then ON_TRIAL (it took a token of the
        newcomer budget: let in without a check) or BEYOND (no token).
        ``rec``: as in :meth:`see`."""
        if rec is None:
            rec = self.records.get(client)
        if rec is not None:
            return rec, SEEN
        rec = self._new(client, now)
        if self.budget.take(now):
            rec.trial = True
            return rec, ON_TRIAL
        return rec, BEYOND

    def admits(self, client: str, asset: bool, now: float, rec: Record | None = None) -> bool:
        """Instead of a check: may this unknown client's request go on unchallenged?

        A client never seen before enters on trial if the newcomer budget
        holds a token (its first page, then its assets). On trial, assets go
        on within ``TRIAL_ASSET_S`` of its last page that went on, and so does a page once the client fetched ``BROWSER_ASSETS``
        assets right after a page and keeps fetching at least half as many
        assets as pages (the last ten seconds): what a browser does. Any
        other page of it is challenged (the trial itself stays: a slow asset
        under load does not cost a shopper its standing). A client seen
        before without a trial (it was challenged) never enters free: the
        first seconds of a flood spend the budget once, not per request."""
        rec, entered = self._enter(client, now, rec)
        if entered != SEEN:
            return entered == ON_TRIAL
        if not rec.trial:
            return False
        if rec.pages == 0:
            return True
        if asset:
            return now - rec.last_page <= TRIAL_ASSET_S
        return rec.followed >= BROWSER_ASSETS and rec.asset_heat * 2.0 >= rec.heat

    def surge_checks(self, client: str, now: float, rec: Record | None = None) -> bool:
        """Where no mode or pressure asks for a check: should this unknown
        client be checked because it is one of a surge of new clients?

        A never-seen client takes a token from the newcomer budget (it then
        enters on trial, as in ``admits``); beyond the budget it is checked
        only while new clients beyond it arrive in a surge (``surging``),
        and stays checked while it keeps coming (``SURGE_HOLD_S``) unless it
        holds a pass. The first second of a flood from fresh addresses stops
        at the shield before any verdict; a flash crowd is not a surge."""
        rec, entered = self._enter(client, now, rec)
        if entered == ON_TRIAL:
            return False
        if entered == BEYOND:
            if self.budget.factor <= 0.0 or not self.budget.surging(now):
                return False
            rec.held_until = now + SURGE_HOLD_S
            return True
        if rec.held_until > now:
            rec.held_until = now + SURGE_HOLD_S
            return True
        return False

    def proven(self, client: str) -> bool:
        """Has this client fetched assets right after a page (ever, while kept)?"""
        rec = self.records.get(client)
        return rec is not None and rec.followed > 0

    def sweep(self, now: float, idle_s: float = 600.0) -> None:
        """Forget clients not seen for ``idle_s``."""
        gone = [k for k, r in self.records.items() if now - r.stamp > idle_s]
        for k in gone:
            del self.records[k]
