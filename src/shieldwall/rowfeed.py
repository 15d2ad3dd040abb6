"""One buffer of finished requests per worker, read by every part that counts them.

The proxy appends one tuple per finished request (:data:`LiveRow`) to
:attr:`RowFeed.rows` directly: no function call and no object per request
(a call into a part's ``sink`` from the compiled proxy, plus the
``RequestEvent`` the console's sink asked for, was ~19 % of the default
wiring's instructions per request). Each part (the detector, the console's
recorder) reads the rows it has not seen yet at its own once-a-second tick
through its :meth:`RowFeed.reader`; rows every reader has taken are dropped.
So each part keeps its own timing (the detector's windows close at its
tick, not a second later) and the request is counted once per part, in a
batch.

Bounded: beyond :data:`MAX_ROWS` held rows the proxy drops the row and counts
it in :attr:`RowFeed.dropped` (a reader that stopped ticking cannot grow the
worker without bound).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shieldwall.detect.windows import Row

LiveRow = tuple[Row, str, str, str]
"""The detector's row (``shieldwall.detect.windows.Row``: t_end, client, path,
query, status, bytes, rt, ua, session, verified, outcome, ut), then what the
console also charts: decision (``allow``, ``limit``, ... or ""), client class
("" without a guard) and the upstream's key ("" when none answered). The
detector's part is a tuple of its own, which the detector counts as it is:
copying the leading fields out of one flat row (itemgetter) and freeing the
copy cost ~800 instructions a request, more than the second tuple costs the
proxy."""

MAX_ROWS = 500_000

ConsoleKey = tuple[int, str, str, str, str, str, int, str, int, str]
"""What the console charts of a request: (second, client, agent, path, decision,
outcome, status, class, latency bucket, upstream)."""


def console_groups(rows: Sequence[LiveRow], bounds: Sequence[float]) -> dict[ConsoleKey, int]:
    """The console's first pass over a tick's rows (shieldwall.console's
    Recorder): identical requests collapsed, with their count. Here and
    compiled with the request path because it runs once per request: the
    console's own code then runs once per distinct request (a flood is the
    same few requests many times over).

    A row that differs from the one before it at most in its latency (the
    common case: a connection's requests, a flood's) adds one to a list
    slot: no key tuple and no hashing; the table is looked up only when the
    rest changes. ``bounds``: the latency buckets' upper bounds, ascending
    (the bucket is the first bound >= the request time, as ``bisect_left``)."""
    bl = list(bounds)  # a native list: an item is a load, not a generic __getitem__
    nb = len(bl)
    table: dict[tuple[int, str, str, str, str, str, int, str, str], list[int]] = {}
    counts: list[int] = []
    sec0 = status0 = bucket = 0
    client0 = agent0 = path0 = dec0 = out0 = cls0 = up0 = ""
    for (t_end, client, path, _q, status, _b, rt, agent, _s, _v, outcome, _ut), \
            decision, cls, upstream in rows:
        sec = int(t_end)
        if not counts or sec != sec0 or status != status0 or client != client0 \
                or path != path0 or agent != agent0 or decision != dec0 \
                or outcome != out0 or cls != cls0 or upstream != up0:
            sec0, status0, client0, path0, agent0 = sec, status, client, path, agent
            dec0, out0, cls0, up0 = decision, outcome, cls, upstream
            prefix = (sec, client, agent, path, decision, outcome, status, cls, upstream)
            got = table.get(prefix)
            if got is None:
                got = table[prefix] = [0] * (nb + 1)
            counts = got
        # The first bound >= rt, searched from the last row's bucket: the
        # next request's latency is mostly in the same bucket or the next
        # (a walk from 0 read ~12 bounds a request at 50 ms); as bisect_left,
        # NaN goes to bucket 0 (hence "not <" rather than ">=")
        while bucket > 0 and not bl[bucket - 1] < rt:
            bucket -= 1
        while bucket < nb and bl[bucket] < rt:
            bucket += 1
        n = counts[bucket]  # (not +=: on a list item that is a generic number add)
        counts[bucket] = n + 1
    groups: dict[ConsoleKey, int] = {}
    for (sec, client, agent, path, decision, outcome, status, cls, upstream), per in \
            table.items():
        for bucket in range(nb + 1):
            n = per[bucket]
            if n:
                groups[(sec, client, agent, path, decision, outcome, status, cls, bucket,
                        upstream)] = n
    return groups


def detector_rows(rows: list[LiveRow]) -> list[Row]:
    """The detector's part of each row, the tuples themselves. (Through
    ``Any``: a typed ``r[0]`` unboxes the inner tuple's twelve fields into a
    native struct and boxes them again into a new tuple, ~900 instructions.)"""
    items: list[Any] = rows
    return [r[0] for r in items]


class RowFeed:
    """See the module docstring. Single-threaded: the worker's loop only."""

    def __init__(self, cap: int = MAX_ROWS) -> None:
        self.rows: list[LiveRow] = []
        """Appended to by the proxy; never rebound (the proxy holds the list)."""
        self.cap = cap
        self.dropped = 0
        self._base = 0
        """The running index of ``rows[0]`` (rows taken by every reader are deleted)."""
        self._read: list[int] = []
        """Per reader, the running index up to which it has taken rows."""

    def push(self, row: LiveRow) -> None:
        """For callers that are not the proxy (tests, replays): append within the cap."""
        if len(self.rows) < self.cap:
            self.rows.append(row)
        else:
            self.dropped += 1

    def reader(self) -> Callable[[], list[LiveRow]]:
        """A new reader: a function returning the rows appended since its last call
        (the first call: since the reader was made)."""
        i = len(self._read)
        self._read.append(self._base + len(self.rows))

        def take() -> list[LiveRow]:
            rows = self.rows
            start = self._read[i] - self._base
            out = rows[start:] if start else rows[:]
            end = self._base + len(rows)
            self._read[i] = end
            low = min(self._read)
            if low > self._base:
                del rows[:low - self._base]
                self._base = low
            return out

        return take
