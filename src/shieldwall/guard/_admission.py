"""Admission control in front of each backend: a concurrency limit, a queue
ordered by standing, deadlines that keep it from holding stale requests, and
shedding of the lowest standing first.

:class:`AdmissionCore` is the pure policy for one backend (no awaits, an
injected clock): ``offer`` says admit, queue or shed; ``release`` frees a slot
and names the waiters to admit next. The rank of a request is its standing
(:mod:`._standing`: what the client did, not only the pass it holds), given
by the gate as ``priority``; without one (0) the class alone ranks it.

Queue discipline, from what large services do under overload (CoDel's
sojourn target; Facebook's adaptive LIFO, "Fail at Scale", 2015):

- **Overload** is a queue that has not been empty for ``overload_after``
  seconds. A queue that empties now and then is a burst: served in order
  (FIFO within a rank). A standing queue is overload: the newest request of
  a rank goes first (LIFO), because the oldest has likely been given up on
  and serving it would make every request late.
- **Deadlines**: every waiter has one (``queue_timeout``; customers
  ``customer_queue_timeout``) and is answered 503 + Retry-After when it
  passes. Under overload a request that has not shown it is a shopper
  (standing below ``PROVEN``) waits at most ``overload_timeout``: the queue
  never holds a backlog of a flood's requests to send to the shop after the
  verdict.
- **Reserve**: requests below ``PROVEN`` may fill only ``1 - reserve`` of
  the limit, so a shopper's request finds a free slot even while a flood
  that arrived first keeps the rest busy.
- **Full queue**: a newcomer evicts the newest waiter of a lower rank, or is
  shed itself. Suspects are not queued (``queue_suspects = false``).

The limit is fixed, or adaptive. The adaptive signal is per sample window
(``adapt_window`` seconds and at least ``_MIN_SAMPLES`` responses), never per
response: the window's mean latency is compared with a baseline, the 10th
percentile of the window means seen over the last ``baseline_window``
seconds. A window mean already averages the shop's mix of fast and slow
requests, so a fast static file no longer sets a bar every page fails; and
the baseline forgets windows older than ``baseline_window``, so it follows a
mix that changes. A window mean above ``latency_tolerance`` × baseline (or a
window where most responses failed) cuts the limit by the ratio
tolerance × baseline / mean, between 10 % and 50 %; a calm window in which
the backend was saturated adds one slot. The limit stays within
[min_limit, max_limit].

:class:`PriorityAdmission` is the thin asyncio wrapper the proxy calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from shieldwall.guard._standing import PROVEN, Standing, of_class
from shieldwall.guard.decision import ClientClass
from shieldwall.guard.settings import AdmissionSettings

_PROVEN_N: Final = int(PROVEN)
_RANKS = sorted((s for s in Standing if s is not Standing.UNSET), reverse=True)
_BY_VALUE: tuple[Standing, ...] = tuple(sorted(Standing))
"""Standing by its value: ``Standing(n)`` is a call into the Enum machinery
(~4,000 instructions compiled, once per admitted request); an index is a load."""
"""Ranks from the highest (customer in checkout) to the lowest (suspect)."""

_MIN_SAMPLES = 10
"""Responses a sample window needs before its mean says anything."""
_BASELINE_QUANTILE = 0.1


@dataclass(eq=False, slots=True)
class Ticket:
    cls: ClientClass
    rank: Standing
    queued: float
    deadline: float
    state: str = "waiting"
    """"waiting", "admitted", "shed" (evicted or expired) or "cancelled"."""
    waiter: Any = field(default=None)


def rank_of(cls: ClientClass, priority: int) -> Standing:
    """The queue rank of a request: the gate's standing, else the class's."""
    if priority > 0:
        return _BY_VALUE[priority] if priority < len(_BY_VALUE) else Standing.CHECKOUT
    return of_class(cls)


_NO_TICKETS: Final[list[Ticket]] = []
"""What a release with nobody waiting wakes: one shared empty list."""
_MONOTONIC: Final = time.monotonic
"""The clock a caller's ``now`` is read from (see PriorityAdmission.release)."""


class AdmissionCore:
    def __init__(self, settings: AdmissionSettings, shadow: bool = False) -> None:
        self.s = settings
        self.shadow = shadow
        self._reserve = settings.reserve
        self._limit = 0.0
        self._limit_n = 0
        self._cap_low = 0
        """int(limit), and the slots a rank below PROVEN may fill: read per
        request as native ints, set with the limit (see :attr:`limit`)."""
        self.limit = float(settings.limit)
        self._adaptive = settings.adaptive
        self._overload_after = settings.overload_after
        """Settings read per request, as native fields (an attribute of the
        settings model is a Python lookup each, ~300 instructions)."""
        self.inflight = 0
        self.waiting = 0
        self._queues: dict[Standing, deque[Ticket]] = {r: deque() for r in _RANKS}
        self._live: dict[Standing, int] = {r: 0 for r in _RANKS}
        """Live waiters per rank (the deques also hold tickets no longer waiting)."""
        self.busy_since: float | None = None
        """When the queue last stopped being empty (None: it is empty)."""
        self.pressure_until = -1.0
        """Set by PriorityAdmission.pressure: overloaded until then (hold)."""
        self.baseline = 0.0
        self._history: deque[tuple[float, float]] = deque()
        """(window end, window mean latency) over the last baseline_window."""
        self._win_start: float | None = None
        self._win_sum = 0.0
        self._win_n = 0
        self._win_failed = 0
        self._win_saturated = False
        self._counts: dict[str, int] = {}
        self._n_admit = 0
        """"admit" of the fast path, a native int folded into ``counts`` when read."""

    @property
    def limit(self) -> float:
        """Requests let through to the backend at once (adapted unless fixed)."""
        return self._limit

    @limit.setter
    def limit(self, value: float) -> None:
        self._limit = value
        self._limit_n = int(value)
        self._cap_low = self._cap(Standing.NEW)

    @property
    def counts(self) -> dict[str, int]:
        n = self._n_admit
        if n:
            self._n_admit = 0
            self._counts["admit"] = self._counts.get("admit", 0) + n
        return self._counts

    def _count(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def _full(self) -> bool:
        return self.inflight >= self._limit_n

    def _cap(self, rank: Standing) -> int:
        """Slots requests of this rank may fill (the rest is kept for shoppers)."""
        limit = self._limit_n
        if rank >= PROVEN or self._reserve <= 0.0 or limit < 2:
            return limit
        return max(1, limit - max(1, int(limit * self._reserve)))

    def overloaded(self, now: float) -> bool:
        """The queue has not been empty for ``overload_after`` seconds."""
        since = self.busy_since
        return since is not None and now - since >= self._overload_after

    def _unwait(self, t: Ticket) -> None:
        self.waiting -= 1
        self._live[t.rank] -= 1
        if self.waiting == 0:
            self.busy_since = None

    def _waiting_at_or_above(self, rank: Standing) -> bool:
        live = self._live
        return any(live[r] for r in _RANKS if r >= rank)

    def offer(self, cls: ClientClass, priority: int, now: float) -> tuple[str, Ticket | None,
                                                                          list[Ticket]]:
        """("admit" | "queue" | "shed", the ticket when queued, waiters evicted)."""
        rank = rank_of(cls, priority)
        if self.inflight < self._cap(rank) and (
                self.waiting == 0 or not self._waiting_at_or_above(rank)):
            self.inflight += 1
            self._count("admit")
            return "admit", None, []
        if self.shadow:
            self.inflight += 1
            self._count("shadow:shed")
            return "admit", None, []
        if rank is Standing.SUSPECT and not self.s.queue_suspects:
            self._count("shed:" + rank.name.lower())
            return "shed", None, []
        evicted: list[Ticket] = []
        if self.waiting >= self.s.queue_size:
            victim = self._lowest_below(rank)
            if victim is None:
                self._count("shed:" + rank.name.lower())
                return "shed", None, []
            victim.state = "shed"
            self._unwait(victim)
            self._count("evict:" + victim.rank.name.lower())
            evicted.append(victim)
        timeout = (self.s.customer_queue_timeout if rank >= Standing.CUSTOMER
                   else self.s.queue_timeout)
        if rank < PROVEN and self.overloaded(now):
            timeout = min(timeout, self.s.overload_timeout)
        ticket = Ticket(cls, rank, now, now + timeout)
        self._queues[rank].append(ticket)
        if self.waiting == 0:
            self.busy_since = now
        self.waiting += 1
        self._live[rank] += 1
        self._count("queue")
        return "queue", ticket, evicted

    def _lowest_below(self, rank: Standing) -> Ticket | None:
        """The newest live waiter of a rank strictly lower than ``rank``."""
        for r in reversed(_RANKS):
            if r >= rank:
                return None
            q = self._queues[r]
            while q:
                t = q.pop()
                if t.state == "waiting":
                    return t
        return None

    def cancel(self, ticket: Ticket) -> None:
        """The waiter gave up (deadline, or its client went away)."""
        if ticket.state == "waiting":
            ticket.state = "cancelled"
            self._unwait(ticket)

    def expire(self, now: float) -> list[Ticket]:
        """Shed every waiter past its deadline; under overload also every
        unproven waiter queued longer than ``overload_timeout`` ago."""
        gone = []
        over = self.overloaded(now)
        short = now - self.s.overload_timeout
        for r, q in self._queues.items():
            strict = over and r < PROVEN
            while q and (q[0].state != "waiting" or q[0].deadline <= now
                         or (strict and q[0].queued <= short)):
                t = q.popleft()
                if t.state == "waiting":
                    t.state = "shed"
                    self._unwait(t)
                    self._count("expire:" + r.name.lower())
                    gone.append(t)
        return gone

    def _admit_next(self, now: float) -> list[Ticket]:
        admitted = []
        lifo = self.overloaded(now)
        for r in _RANKS:
            if not self._live[r]:
                continue
            q = self._queues[r]
            cap = self._cap(r)
            while q and self.inflight < cap:
                t = q.pop() if lifo else q.popleft()
                if t.state != "waiting":
                    continue
                t.state = "admitted"
                self._unwait(t)
                self.inflight += 1
                self._count("admit:lifo" if lifo else "admit:queued")
                admitted.append(t)
            if self._full():
                break
        return admitted

    def try_admit(self, cls: ClientClass = ClientClass.UNKNOWN, priority: int = 0) -> bool:
        """Admit at once if a slot is free and nobody waits (the common case),
        else False and nothing changed: the caller goes through ``offer``."""
        n = self.inflight
        if self.waiting == 0 and n < self._limit_n and (
                n < self._cap_low or priority >= _PROVEN_N
                or (priority <= 0 and cls is ClientClass.CUSTOMER)):
            # (below PROVEN every rank has the same cap; the only class whose
            # own rank is PROVEN or above is CUSTOMER: see of_class)
            self.inflight = n + 1
            self._n_admit += 1
            return True
        return False

    def release(self, latency: float, ok: bool, now: float) -> list[Ticket]:
        """A request finished: adapt the limit, admit waiters into free slots."""
        saturated = self._full() or self.waiting > 0
        self.inflight = max(0, self.inflight - 1)
        if self._adaptive:
            self._adapt(latency, ok, saturated, now)
        if self.waiting == 0:
            # Nobody to admit: skip the walk over every rank's queue (the
            # uncontended hot path). Tickets no longer waiting that remain in
            # the queues are dropped by the next expire() or _admit_next().
            return _NO_TICKETS  # (shared, never appended to: no list per request)
        return self._admit_next(now)

    def _adapt(self, latency: float, ok: bool, saturated: bool, now: float) -> None:
        if latency <= 0:
            return  # no answer came (the client left first): says nothing
        if self._win_start is None:
            self._win_start = now
        if ok:
            self._win_sum += latency
            self._win_n += 1
        else:
            self._win_failed += 1
        self._win_saturated = self._win_saturated or saturated
        if (now - self._win_start < self.s.adapt_window
                or self._win_n + self._win_failed < _MIN_SAMPLES):
            return
        mean = self._win_sum / self._win_n if self._win_n else 0.0
        failed = self._win_failed / (self._win_n + self._win_failed)
        sat = self._win_saturated
        self._win_start, self._win_sum, self._win_n = now, 0.0, 0
        self._win_failed, self._win_saturated = 0, False
        self._close_window(mean, failed, sat, now)

    def _close_window(self, mean: float, failed: float, saturated: bool, now: float) -> None:
        s = self.s
        if mean > 0:
            self._history.append((now, mean))
        while self._history and self._history[0][0] < now - s.baseline_window:
            self._history.popleft()
        if self._history:
            means = sorted(m for _, m in self._history)
            self.baseline = means[int(len(means) * _BASELINE_QUANTILE)]
        bar = s.latency_tolerance * self.baseline
        if failed >= 0.5 or (mean > 0 and self.baseline > 0 and mean > bar):
            factor = 0.9 if mean <= bar else min(0.9, max(0.5, bar / mean))
            self.limit = max(float(s.min_limit), self.limit * factor)
            self._count("limit:cut")
        elif saturated:
            self.limit = min(float(s.max_limit), self.limit + 1.0)
            self._count("limit:grow")

    def status(self) -> dict[str, Any]:
        return {"limit": round(self.limit, 2), "inflight": self.inflight,
                "waiting": self.waiting, "baseline_s": round(self.baseline, 6),
                "overloaded": self.busy_since is not None,
                "counters": dict(sorted(self.counts.items()))}


class PriorityAdmission:
    """Implements :class:`shieldwall.guard.decision.Admission`."""

    def __init__(self, settings: AdmissionSettings, *,
                 clock: Callable[[], float] = time.monotonic, shadow: bool = False) -> None:
        self.settings = settings
        self.clock = clock
        self.shadow = shadow
        self.cores: dict[str, AdmissionCore] = {}
        self._all: list[AdmissionCore] = []
        """The cores' values as a list: :meth:`pressure` walks it per request."""
        self._last_key = ""
        self._last_core: AdmissionCore | None = None
        """The core asked for last, by its key (the balancer's own string: an
        identity test): most shops have one backend or two, and a request asks
        twice (try_acquire, release), ~130 instructions a dict probe."""

    def core(self, backend: str) -> AdmissionCore:
        c = self.cores.get(backend)
        if c is None:
            c = self.cores[backend] = AdmissionCore(self.settings, self.shadow)
            self._all.append(c)
        return c

    def _core_of(self, backend: str) -> AdmissionCore:
        core = self._last_core
        if core is None or backend is not self._last_key:
            core = self.cores.get(backend)
            if core is None:
                core = self.core(backend)
            self._last_key = backend
            self._last_core = core
        return core

    def try_acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> bool:
        """The uncontended case, synchronously: no expiry walk, no future, no
        task. Nobody waits, so no waiter can have expired or be passed over."""
        return self._core_of(backend).try_admit(cls, priority)

    async def acquire(self, backend: str, cls: ClientClass, priority: int = 0) -> float | None:
        core = self.core(backend)
        now = self.clock()
        for t in core.expire(now):
            _wake(t, self.settings.retry_after)
        verdict, ticket, evicted = core.offer(cls, priority, now)
        for t in evicted:
            _wake(t, self.settings.retry_after)
        if verdict == "admit":
            return None
        if verdict == "shed" or ticket is None:
            return self.settings.retry_after
        fut: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        ticket.waiter = fut
        try:
            await asyncio.wait({fut}, timeout=max(0.0, ticket.deadline - now))
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() is None:
                self._give_back(backend)
            core.cancel(ticket)
            raise
        if fut.done():
            return fut.result()
        core.cancel(ticket)
        fut.cancel()
        core._count("expire:" + ticket.rank.name.lower())
        return self.settings.retry_after

    def _give_back(self, backend: str) -> None:
        core = self.core(backend)
        core.inflight = max(0, core.inflight - 1)
        for t in core._admit_next(self.clock()):
            _wake(t, None)

    def release(self, backend: str, latency: float, ok: bool, now: float = -1.0) -> None:
        """``now``: the caller's reading of the event loop's clock (monotonic,
        as this one's default), used only while this admission's clock is
        ``time.monotonic``. The clock is read only when something uses it
        (waiters to expire, the adaptive limit's window): a call is ~180
        instructions of a request's few thousand here."""
        core = self._core_of(backend)
        if not core.waiting and not core._adaptive:
            now = 0.0  # (unused below: no waiter, no window)
        elif now < 0.0 or self.clock is not _MONOTONIC:
            now = self.clock()
        if core.waiting:
            for t in core.expire(now):
                _wake(t, self.settings.retry_after)
        for t in core.release(latency, ok, now):
            _wake(t, None)

    def pressure(self) -> bool:
        """A backend is overloaded now, or was within ``overload_hold`` seconds.
        Asked per request of an unproven client: with every queue empty and no
        hold running (the common case) it is False without reading the clock."""
        for core in self._all:
            if core.busy_since is not None or core.pressure_until >= 0.0:
                break
        else:
            return False
        now = self.clock()
        hot = False
        for core in self._all:
            if core.overloaded(now):
                core.pressure_until = now + self.settings.overload_hold
            if now < core.pressure_until:
                hot = True
            elif core.pressure_until >= 0.0:
                core.pressure_until = -1.0  # the hold is over: the quiet case again
        return hot

    def status(self) -> dict[str, Any]:
        return {b: c.status() for b, c in sorted(self.cores.items())}


def _wake(ticket: Ticket, result: float | None) -> None:
    fut = ticket.waiter
    if fut is not None and not fut.done():
        fut.set_result(result)
