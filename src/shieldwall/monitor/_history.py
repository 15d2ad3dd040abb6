"""What the incidents add up to: the monthly report and the 90-day bars.

Pure arithmetic over incident records, so the CLI report, the status page and
the tests compute the same numbers. Downtime counts the union of incident
intervals per check (two incidents on the same check never overlap, but
incidents on different checks may; the shop is down while any check is).
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


def down_seconds(incidents: Sequence[Incident], start: float, end: float, now: float) -> float:
    """Seconds within [start, end) during which any incident was open."""
    spans = []
    for inc in incidents:
        a = max(inc.started_at, start)
        b = min(inc.ended_at if inc.ended_at is not None else now, end)
        if b > a:
            spans.append((a, b))
    return sum(b - a for a, b in _merge(spans))


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
    first_seen: float | None,
    now: float,
    revenue_per_minute: float = 0.0,
) -> MonthReport:
    """The month's figures. Only time the monitor was watching counts as observed.

    MTTD: first failure to declaration. MTTR: first failure to recovery, over
    the incidents closed in the month.
    """
    start, end = month_bounds(month)
    watch_from = max(start, first_seen if first_seen is not None else now)
    watch_to = min(end, now)
    observed = max(0.0, watch_to - watch_from)
    mine = tuple(
        i
        for i in incidents
        if i.started_at < end and (i.ended_at if i.ended_at is not None else now) >= start
    )
    down = down_seconds(mine, start, min(end, now), now)
    detect = [i.time_to_detect for i in mine]
    closed = [i.duration(now) for i in mine if i.ended_at is not None]
    return MonthReport(
        month=month,
        observed_seconds=observed,
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

    @property
    def uptime_pct(self) -> float | None:
        if self.state == "nodata":
            return None
        return 100.0 * (1.0 - self.down_seconds / 86400.0)


def daily_bars(
    incidents: Sequence[Incident], *, now: float, first_seen: float | None, days: int = 90
) -> list[DayBar]:
    """One bar per UTC day, oldest first, ending today.

    "down" means more than an hour down that day, "partial" any downtime.
    """
    today = dt.datetime.fromtimestamp(now, UTC).date()
    bars = []
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        start = dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        end = start + 86400.0
        if first_seen is None or end <= first_seen:
            bars.append(DayBar(day.isoformat(), "nodata", 0.0, 0))
            continue
        day_incidents = [
            i
            for i in incidents
            if i.started_at < end and (i.ended_at if i.ended_at is not None else now) > start
        ]
        down = down_seconds(day_incidents, start, end, now)
        state = "down" if down > 3600 else "partial" if down > 0 else "up"
        bars.append(DayBar(day.isoformat(), state, down, len(day_incidents)))
    return bars
