"""After the fact: access logs in, incidents and a traffic series out.

The same :class:`Detector` as the live shield, fed by the log readers instead
of the proxy's sink. Memory is flat in log size: the reader streams, the
window builder holds only the reorder slack, the detector's sets are bounded,
and the traffic series re-buckets itself to at most ``max_points`` points.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shieldwall.detect._defaults import default_settings
from shieldwall.detect.columns import BuilderArgs, Columns, add_columns, apply_counts
from shieldwall.detect.detector import Detector, Incident, StepResult
from shieldwall.detect.readers import (
    ColumnFeed,
    ReadStats,
    read_batches,
    read_column_batches,
    read_logs,
)
from shieldwall.detect.windows import Window, WindowBuilder

if TYPE_CHECKING:
    from shieldwall.detect.settings import DetectSettings

ENGINES = ("columns", "rows")

TAIL_SECONDS = 6
"""The last seconds of the input: traffic fading there is the log ending, not a stall."""


class Series:
    """Requests and errors over time in buckets that double in width to stay bounded."""

    def __init__(self, max_points: int = 2000) -> None:
        self.width = 1
        self.max_points = max_points
        self.buckets: dict[int, list[float]] = {}
        """bucket start -> [requests, 5xx, peak 1 s rate, anomalous seconds]."""

    def add(self, sec: int, n: int, errors: int, anomalous: bool) -> None:
        if n == 0 and not anomalous:
            return
        key = sec - sec % self.width
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = [0.0, 0.0, 0.0, 0.0]
            if len(self.buckets) > self.max_points:
                self._coarsen()
                b = self.buckets.setdefault(sec - sec % self.width, [0.0, 0.0, 0.0, 0.0])
        b[0] += n
        b[1] += errors
        b[2] = max(b[2], float(n))
        b[3] += anomalous

    def _coarsen(self) -> None:
        self.width *= 2
        merged: dict[int, list[float]] = {}
        for k, (n, e, peak, a) in self.buckets.items():
            m = merged.setdefault(k - k % self.width, [0.0, 0.0, 0.0, 0.0])
            m[0] += n
            m[1] += e
            m[2] = max(m[2], peak)
            m[3] += a
        self.buckets = merged

    def points(self) -> list[tuple[int, float, float, float]]:
        """(bucket start, mean req/s, mean 5xx/s, peak req/s), in time order."""
        w = self.width
        return [(k, v[0] / w, v[1] / w, v[2]) for k, v in sorted(self.buckets.items())]


@dataclass
class Report:
    incidents: list[Incident] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)
    series: Series = field(default_factory=Series)
    late: int = 0
    windows: int = 0
    first: float | None = None
    last: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The issue's schema, exactly."""
        return {"incidents": [i.as_json() for i in self.incidents],
                "lines": self.stats.lines, "unparsed": self.stats.unparsed}


def analyze(
    paths: Iterable[Path], fmt: str = "auto", settings: DetectSettings | None = None,
    on_step: Callable[[Window, StepResult], None] | None = None, *, engine: str = "columns",
    feed: ColumnFeed | None = None,
) -> Report:
    """Run the detector over log files (in the order given).

    ``engine``: ``columns`` (the default) counts what the compiled reader parsed
    column-wise (:func:`~shieldwall.detect.columns.add_columns`); ``rows`` sends every
    line through :meth:`WindowBuilder.add_rows`, the live feed's loop. Both give the
    same windows, so the same verdicts (tests/detect/test_detect_columns.py); ``rows``
    is kept as the reference the bench and the tests compare against.

    ``feed``: the parsing process of the one log, started earlier by the caller (the
    CLI starts it before its own imports); it must be of that log and format."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    paths = list(paths)
    if feed is not None and (engine != "columns" or paths != [feed.path] or fmt != feed.fmt
                             or fmt == "json"):
        raise ValueError(f"the feed of {feed.path} ({feed.fmt}) is not for {paths} ({fmt}, {engine})")
    # The windows' dicts, the features and the steps make no reference cycles: the cyclic
    # collector would only walk the detector's ever larger state, several times a second.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(paths, fmt, settings, on_step, engine, feed)
    finally:
        if was_enabled:
            gc.enable()


def _analyze(paths: list[Path], fmt: str, settings: DetectSettings | None,
             on_step: Callable[[Window, StepResult], None] | None, engine: str,
             feed: ColumnFeed | None) -> Report:
    # (no settings: the defaults, without building the pydantic model when a cache of
    # them is current; _defaults)
    s = settings or default_settings()
    det = Detector(s, score_clients=False)
    builder = WindowBuilder(lateness=s.offline_lateness, **det.make_builder_args())
    report = Report()
    series = report.series

    def process(windows: list[Window], end: float | None = None) -> None:
        for w in windows:
            r = det.step(w, at_end=end is not None and w.sec >= end - TAIL_SECONDS)
            report.incidents.extend(r.closed)
            series.add(w.sec, w.n, w.errors, r.state != "normal")
            if on_step is not None:
                on_step(w, r)

    add_rows = builder.add_rows
    drain = builder.drain
    if len(paths) == 1 and engine == "columns":
        counting = (builder.lateness, BuilderArgs(builder))
        parts = (feed.parts(report.stats, counting) if feed is not None
                 else read_column_batches(paths[0], fmt, report.stats, counting))
        for part in parts:
            if isinstance(part, list):
                add_rows(part)
            elif isinstance(part, Columns):
                add_columns(builder, part)
            else:
                apply_counts(builder, part)
            process(drain())
    elif len(paths) == 1:
        for batch in read_batches(paths[0], fmt, report.stats):
            add_rows(batch)
            process(drain())
    else:
        stream = read_logs(paths, fmt, report.stats)
        while batch := list(islice(stream, 4096)):
            add_rows(batch)
            process(drain())
    process(builder.flush(), end=builder.max_time)
    report.incidents.extend(det.finish())
    report.incidents.sort(key=lambda inc: inc.start)
    report.late = builder.late
    report.windows = det.windows
    pts = series.points()
    if pts:
        report.first, report.last = float(pts[0][0]), float(pts[-1][0] + series.width)
    return report
