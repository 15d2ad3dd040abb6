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


PROVEN = Standing.BROWSER
"""From here up a client has shown it is a shopper: it keeps its full queue
deadline under overload and may use the slots kept in reserve."""

ASSET_FOLLOW_S = 2.0
"""An asset fetched within this long after a page of the same client is a
browser rendering that page (a person's browser asks at once; a flood that
rotates paths at its own pace does not)."""
HEAT_TAU_S = 10.0
"""Time constant of the page rate (requests decay by e every 10 s)."""
MAX_CLIENTS = 65536
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
    __slots__ = ("asset_heat", "first", "followed", "heat", "last_page", "pages", "stamp")

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


class Conduct:
    """What each client address has done lately."""

    def __init__(self, history_s: float = 30.0, heavy_pages: float = 12.0,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.history_s = history_s
        self.heavy_pages = heavy_pages
        self.max_clients = max_clients
        self.records: dict[str, Record] = {}

    def see(self, client: str, asset: bool, now: float) -> Record:
        """Count one request of ``client`` that goes to the shop."""
        rec = self.records.get(client)
        if rec is None:
            if len(self.records) >= self.max_clients:
                for key in list(self.records)[: self.max_clients // 2]:
                    del self.records[key]
            rec = self.records[client] = Record(now)
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

    def proven(self, client: str) -> bool:
        """Has this client fetched assets right after a page (ever, while kept)?"""
        rec = self.records.get(client)
        return rec is not None and rec.followed > 0

    def sweep(self, now: float, idle_s: float = 600.0) -> None:
        """Forget clients not seen for ``idle_s``."""
        gone = [k for k, r in self.records.items() if now - r.stamp > idle_s]
        for k in gone:
            del self.records[k]
