"""What the incidents add up to: the monthly report and the 90-day bars.

Pure arithmetic over incident records and *observed* spans, so the CLI
report, the status page and the tests compute the same numbers.

* Only time a check was actually watched counts: a round whose probes
  reported covers one interval from its first result (:class:`Coverage`
  joins rounds into spans). Time before the first check, while the monitor
  was stopped, or while every probe was missing is *unknown* (grey), never up.
* Uptime = 1 - down / observed, both within the observed spans.
* Downtime counts the union of incident intervals (two incidents on the same
  check never overlap, but incidents on different checks may; the shop is
  down while any check is).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from shieldwall.monitor._incident import Incident

UTC = dt.UTC


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


Span = tuple[float, float]


def _clip(spans: Sequence[Span], start: float, end: float) -> list[Span]:
    out = []
    for a, b in spans:
        a, b = max(a, start), min(b, end)
        if b > a:
            out.append((a, b))
    return _merge(out)


def _intersect(xs: list[Span], ys: list[Span]) -> list[Span]:
    """Both merged and sorted."""
    out: list[Span] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if b > a:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def _length(spans: Sequence[Span]) -> float:
    return sum(b - a for a, b in spans)


def _incident_spans(incidents: Sequence[Incident], now: float) -> list[Span]:
    return [(i.started_at, i.ended_at if i.ended_at is not None else now) for i in incidents]


def down_seconds(
    incidents: Sequence[Incident], start: float, end: float, now: float, observed: Sequence[Span] | None = None
) -> float:
    """Seconds within [start, end) during which any incident was open (and,
    given ``observed``, the check was watched)."""
    down = _clip(_incident_spans(incidents, now), start, min(end, now))
    if observed is not None:
        down = _intersect(down, _clip(observed, start, min(end, now)))
    return _length(down)


def observed_seconds(observed: Sequence[Span], start: float, end: float, now: float) -> float:
    return _length(_clip(observed, start, min(end, now)))


class Coverage:
    """Joins a check's rounds into observed spans. A round with results
    covers [its first result, + one interval); a round that starts more than
    ``slack`` after the span's end (the monitor was stopped, or every probe
    was missing) starts a new span. Pure: the shell persists each answer."""

    def __init__(self, slack: float) -> None:
        self.slack = slack
        self.span: Span | None = None

    def note(self, start: float, interval: float) -> tuple[bool, Span]:
        """(a new span begins, the span now)."""
        if self.span is not None and self.span[0] <= start <= self.span[1] + self.slack:
            self.span = (self.span[0], max(self.span[1], start + interval))
            return False, self.span
        self.span = (start, start + interval)
        return True, self.span


def month_bounds(month: str) -> tuple[float, float]:
    """[start, end) of "YYYY-MM" in UTC; ValueError otherwise."""
    try:
        year_s, mon_s = month.split("-")
        year, mon = int(year_s), int(mon_s)
        if len(year_s) != 4 or not 1 <= mon <= 12:
            raise ValueError
    except ValueError:
        raise ValueError(f"expected a month as YYYY-MM (e.g. 2026-11), got {month!r}") from None
    start = dt.datetime(year, mon, 1, tzinfo=UTC)
    days = calendar.monthrange(year, mon)[1]
    return start.timestamp(), (start + dt.timedelta(days=days)).timestamp()


@dataclass(frozen=True, slots=True)
class MonthReport:
    month: str
    observed_seconds: float
    down_seconds: float
    incidents: tuple[Incident, ...]
    mttd: float | None
    mttr: float | None
    revenue_per_minute: float

    @property
    def uptime_pct(self) -> float | None:
        if self.observed_seconds <= 0:
            return None
        return 100.0 * (1.0 - self.down_seconds / self.observed_seconds)

    @property
    def minutes_down(self) -> float:
        return self.down_seconds / 60.0

    @property
    def revenue_at_risk(self) -> float:
        return self.minutes_down * self.revenue_per_minute

    @property
    def longest(self) -> float:
        return max((i.duration(i.ended_at or 0.0) for i in self.incidents if i.ended_at), default=0.0)


def month_report(
    incidents: Sequence[Incident],
    month: str,
    *,
    observed: Sequence[Span],
    now: float,
    revenue_per_minute: float = 0.0,
) -> MonthReport:
    """The month's figures. Only time a check was watched (``observed``
    spans, any check) counts, for the uptime and for the minutes down.

    MTTD: first failure to declaration. MTTR: first failure to recovery, over
    the incidents closed in the month.
    """
    start, end = month_bounds(month)
    watched = observed_seconds(observed, start, end, now)
    mine = tuple(
        i
        for i in incidents
        if i.started_at < end and (i.ended_at if i.ended_at is not None else now) >= start
    )
    down = down_seconds(mine, start, end, now, observed)
    detect = [i.time_to_detect for i in mine]
    closed = [i.duration(now) for i in mine if i.ended_at is not None]
    return MonthReport(
        month=month,
        observed_seconds=watched,
        down_seconds=down,
        incidents=mine,
        mttd=sum(detect) / len(detect) if detect else None,
        mttr=sum(closed) / len(closed) if closed else None,
        revenue_per_minute=revenue_per_minute,
    )


@dataclass(frozen=True, slots=True)
class DayBar:
    day: str  # YYYY-MM-DD
    state: str  # "nodata", "up", "partial", "down"
    down_seconds: float
    incidents: int
    observed_seconds: float = 0.0

    @property
    def uptime_pct(self) -> float | None:
        if self.state == "nodata" or self.observed_seconds <= 0:
            return None
        return 100.0 * (1.0 - self.down_seconds / self.observed_seconds)


def daily_bars(
    incidents: Sequence[Incident], *, now: float, observed: Sequence[Span], days: int = 90
) -> list[DayBar]:
    """One bar per UTC day, oldest first, ending today.

    "nodata" (grey) when the check was not watched that day at all; else
    "down" for more than an hour down (or most of the watched time), "partial"
    for any downtime, "up" for none, each over the watched time only.
    """
    today = dt.datetime.fromtimestamp(now, UTC).date()
    bars = []
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        end = start + 86400.0
        watched = observed_seconds(observed, start, end, now)
        if watched <= 0:
            bars.append(DayBar(day.isoformat(), "nodata", 0.0, 0))
            continue
        day_incidents = [
            i
            for i in incidents
            if i.started_at < end and (i.ended_at if i.ended_at is not None else now) > start
        ]
        down = down_seconds(day_incidents, start, end, now, observed)
        state = "down" if down > 3600 or down > watched / 2 else "partial" if down > 0 else "up"
        bars.append(DayBar(day.isoformat(), state, down, len(day_incidents), watched))
    return bars
