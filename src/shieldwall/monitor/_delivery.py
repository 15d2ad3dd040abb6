"""Getting a page through: at least once, per channel, never given up while it matters.

Pure: the shell asks which deliveries to try now, tries them, and reports each
outcome with the time; the retry schedule and the escalation on failure follow
from those times alone, so a fake clock can drive a 30 s outage of the
notification provider in milliseconds.

* A page (one escalation step, a re-alert or the recovery) goes to one or more
  *channels* (the targets of ``[alerts.targets]``), each tried on its own: one
  broken SMS gateway does not hold back the chat message.
* A failed delivery is retried with exponential backoff (``retry_min``
  doubling up to ``retry_max``) for as long as it is owed: a page until it
  arrives or is superseded, never "after 3 attempts".
* Delivery is *at least once*: nothing is recorded as sent before the provider
  said so, so a restart re-sends what it cannot prove was sent. Each page
  carries a deduplication key, stable per incident and step, with which the
  receiver folds duplicates (PagerDuty ``dedup_key``, Opsgenie ``alias``, a
  header and a field for webhooks, a "Ref:" line for people).
* A page whose every channel failed is *exhausted*: the next escalation step
  is due at once (the engine asks :meth:`Outgoing.exhausted_at`) and the
  fallback channels are added to it.
* On one channel, the pages of an incident arrive in order: a recovery
  message waits until that channel has the page it recovers from.
* Superseded (never sent, by design): re-alerts older than the newest one, and
  once the incident closes; every pending page after an acknowledgement (a
  person has it); the pages of an older incident once a newer one opens on the
  same check.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from shieldwall.monitor._escalation import Page, PageKind

RETRY_MIN = 2.0
RETRY_MAX = 60.0


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    SUPERSEDED = "superseded"


def backoff(attempts: int, lo: float = RETRY_MIN, hi: float = RETRY_MAX) -> float:
    """Seconds to wait after the ``attempts``-th failure: lo, 2 lo, 4 lo ... hi."""
    return min(hi, lo * 2.0 ** max(0, attempts - 1))


def dedup_key(instance: str, incident_id: int, page_key: str) -> str:
    """Stable per monitor, incident and step; safe in a URL and a header."""
    return f"shieldwall-{instance}-{incident_id}-{page_key.replace(':', '-')}"


@dataclass(slots=True)
class Delivery:
    """One page to one channel."""

    target: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_try: float = 0.0
    error: str = ""
    sent_at: float | None = None
    fallback: bool = False
    in_flight: bool = False


@dataclass(slots=True)
class Outgoing:
    """A page owed to its channels."""

    incident_id: int
    page: Page
    dedup: str
    created_at: float
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    exhausted: float | None = None  # when every (primary) channel had failed, none delivered

    @property
    def key(self) -> str:
        return self.page.key

    @property
    def pending(self) -> list[Delivery]:
        return [d for d in self.deliveries.values() if d.status is DeliveryStatus.PENDING]

    @property
    def status(self) -> DeliveryStatus:
        states = {d.status for d in self.deliveries.values()}
        if DeliveryStatus.PENDING in states:
            return DeliveryStatus.PENDING
        if DeliveryStatus.SENT in states:
            return DeliveryStatus.SENT
        return DeliveryStatus.SUPERSEDED

    @property
    def attempts(self) -> int:
        return sum(d.attempts for d in self.deliveries.values())

    @property
    def failed_once(self) -> bool:
        """Tried and not yet through: what the status API and the metric call undelivered."""
        return any(d.attempts > 0 for d in self.pending)

    def reached(self) -> tuple[str, ...]:
        """Channels that have this page or will get it (not the superseded ones)."""
        return tuple(d.target for d in self.deliveries.values() if d.status is not DeliveryStatus.SUPERSEDED)

    def supersede(self) -> None:
        for d in self.pending:
            d.status = DeliveryStatus.SUPERSEDED


def new_outgoing(incident_id: int, page: Page, *, instance: str, now: float) -> Outgoing:
    out = Outgoing(incident_id, page, dedup_key(instance, incident_id, page.key), now)
    for t in page.targets:
        out.deliveries.setdefault(t, Delivery(t, next_try=now))
    return out


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_min: float = RETRY_MIN
    retry_max: float = RETRY_MAX
    fallback: tuple[str, ...] = ()


def record_outcome(
    out: Outgoing, target: str, *, ok: bool, error: str, now: float, policy: RetryPolicy
) -> bool:
    """Note one attempt's outcome; True when this made the page exhausted
    (every primary channel failed, none delivered): the caller escalates."""
    d = out.deliveries.get(target)
    if d is None:
        return False
    d.in_flight = False
    if d.status is not DeliveryStatus.PENDING:
        return False  # superseded while in flight: keep the word "superseded"
    d.attempts += 1
    if ok:
        d.status, d.sent_at, d.error = DeliveryStatus.SENT, now, ""
        return False
    d.error = error or "failed"
    d.next_try = now + backoff(d.attempts, policy.retry_min, policy.retry_max)
    if out.exhausted is not None:
        return False
    primaries = [x for x in out.deliveries.values() if not x.fallback]
    if all(x.status is not DeliveryStatus.SENT and x.attempts > 0 for x in primaries):
        out.exhausted = now
        for t in policy.fallback:
            if t not in out.deliveries:
                out.deliveries[t] = Delivery(t, next_try=now, fallback=True)
        return True
    return False


def eligible(outbox: Iterable[Outgoing], now: float) -> list[tuple[Outgoing, Delivery]]:
    """Deliveries to try now, in order: per channel, an incident's pages go
    out one after the other (a page waits while an earlier one to the same
    channel is still owed)."""
    busy: set[str] = set()
    out: list[tuple[Outgoing, Delivery]] = []
    for o in outbox:
        for d in o.deliveries.values():
            if d.status is not DeliveryStatus.PENDING:
                continue
            if d.target in busy:
                continue
            busy.add(d.target)
            if not d.in_flight and d.next_try <= now:
                out.append((o, d))
    return out


def paged_channels(outbox: Iterable[Outgoing]) -> tuple[str, ...]:
    """Everyone a recovery message is owed to: each channel that has, or will
    get, a page about the incident."""
    seen: dict[str, None] = {}
    for o in outbox:
        if o.page.kind is not PageKind.RECOVERY:
            for t in o.reached():
                seen.setdefault(t, None)
    return tuple(seen)
