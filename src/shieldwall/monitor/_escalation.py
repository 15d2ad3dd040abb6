"""Who to wake, and when: the escalation schedule as a pure function.

The IO shell asks :func:`due_pages` on every tick with the set of page keys
already recorded as sent for the incident; the answer is what to send now.
Keys are stable ("step:1", "realert:3", "recovery"), which is what makes a
restarted monitor carry on where it stopped instead of paging twice: a key in
``sent`` is never planned again.

* Steps fire ``after`` their delay from the moment paging starts: the
  declaration, or the end of the maintenance window it fell in. A step whose
  every channel failed (``exhausted``) brings the next step forward to that
  moment: nobody waits out a timer behind a dead SMS gateway.
* Re-alerts go to everyone paged so far, every ``realert_every``, until the
  incident is acknowledged. After a long pause only the latest one is sent,
  never a burst.
* Nothing is paged inside a maintenance window (incidents are still kept).
* An acknowledged incident stops escalating; a closed one gets one recovery
  message (one key: a receiver folds repeats), sent to everyone who was paged,
  and only if someone was.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Step:
    after: float
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Window:
    """A quiet maintenance window, in unix seconds, end excluded."""

    start: float
    end: float
    reason: str = ""

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True, slots=True)
class Policy:
    steps: tuple[Step, ...]
    realert_every: float | None = None
    maintenance: tuple[Window, ...] = field(default_factory=tuple)
    fallback: tuple[str, ...] = ()  # last resort: added to any page whose channels all failed

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an escalation policy needs at least one step")
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError(f"escalation steps must be in order of delay, got {afters}")
        if self.realert_every is not None and self.realert_every <= 0:
            raise ValueError("realert_every must be positive")


class PageKind(enum.StrEnum):
    ALERT = "alert"
    REALERT = "realert"
    RECOVERY = "recovery"
    TEST = "test"  # `shieldwall monitor --test-notify`


@dataclass(frozen=True, slots=True)
class Page:
    key: str
    kind: PageKind
    targets: tuple[str, ...]
    due_at: float
    step: int = -1


def maintenance_at(windows: Iterable[Window], t: float) -> Window | None:
    for w in windows:
        if w.covers(t):
            return w
    return None


def paging_starts(windows: Sequence[Window], declared_at: float) -> float:
    """When paging may begin for an outage declared at ``declared_at``."""
    t = declared_at
    for _ in range(len(windows) + 1):  # windows may chain; each can move t once
        w = maintenance_at(windows, t)
        if w is None:
            return t
        t = w.end
    return t


def _union(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for g in groups:
        for t in g:
            seen.setdefault(t, None)
    return tuple(seen)


def due_pages(
    policy: Policy,
    *,
    declared_at: float,
    acked: bool,
    closed: bool,
    sent: frozenset[str],
    now: float,
    exhausted: Mapping[int, float] | None = None,
) -> list[Page]:
    """The alert and re-alert pages to send at ``now`` for an open incident.

    ``exhausted``: step index -> when every channel of that step had failed."""
    if closed or acked or maintenance_at(policy.maintenance, now) is not None:
        return []
    base = paging_starts(policy.maintenance, declared_at)
    if now < base:
        return []
    pages: list[Page] = []
    failed = exhausted or {}
    for i, step in enumerate(policy.steps):
        due = base + step.after
        if i - 1 in failed:
            due = min(due, max(base, failed[i - 1]))
        if due <= now and f"step:{i}" not in sent:
            pages.append(Page(f"step:{i}", PageKind.ALERT, step.targets, due, i))
    if policy.realert_every is not None:
        n = math.floor((now - base) / policy.realert_every)
        if n >= 1 and f"realert:{n}" not in sent:
            due = base + n * policy.realert_every
            reached = [s.targets for s in policy.steps if base + s.after <= due]
            if reached:
                pages.append(Page(f"realert:{n}", PageKind.REALERT, _union(reached), due))
    return pages


def recovery_page(paged: tuple[str, ...], *, sent: frozenset[str], now: float) -> Page | None:
    """The one recovery message for a closed incident, to everyone ``paged``
    (who has, or will get, a page about it), if anyone was."""
    if "recovery" in sent or not paged:
        return None
    return Page("recovery", PageKind.RECOVERY, paged, now)
