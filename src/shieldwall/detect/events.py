"""The request event: one type for the live feed and for parsed log lines.

The proxy emits one :class:`RequestEvent` per finished request; the log
readers turn each access-log line into the same type. Everything the detector
computes is a function of a sequence of these, so live and offline verdicts
agree (principle 2 in docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shieldwall.fastinit import fast_init


class Outcome(StrEnum):
    """What happened between the shield and the upstream for this request."""

    OK = "ok"                  # upstream answered
    REFUSED = "refused"        # connect refused / reset before answering
    TIMEOUT = "timeout"        # connect or response timeout
    STALE = "stale"            # no upstream could answer; served from stale cache
    NO_UPSTREAM = "none"       # no healthy upstream, nothing cached: error page
    SHIELD = "shield"          # answered by the shield itself (limit, challenge, block)
    UNKNOWN = "-"              # not known (a plain combined log carries no upstream fields)


@fast_init  # built for every request: a cheaper __init__, same frozen record
@dataclass(frozen=True, slots=True)
class RequestEvent:
    time: float
    """Unix time (seconds) at which the request *started*."""
    client: str
    method: str
    path: str
    query: str
    status: int
    bytes_sent: int
    request_time: float
    """Seconds from first request byte to last response byte."""
    user_agent: str = ""
    referer: str = ""
    session: bool = False
    """The client presented a valid shield session cookie."""
    verified: bool = False
    """The client passed a challenge or is allow-listed."""
    upstream: str = ""
    """host:port of the backend that answered, "" if none."""
    outcome: Outcome = Outcome.UNKNOWN
    upstream_time: float = -1.0
    """Seconds the upstream took to answer its headers; -1 when unknown."""
    decision: str = ""
    """The guard's action ("allow", "limit", ...); "" when unknown."""
    cls: str = ""
    """The guard's class label ("customer", ...); "" when unknown."""


class EventSink(Protocol):
    """Where the proxy sends events. Must be cheap and never block."""

    def __call__(self, event: RequestEvent) -> None: ...
