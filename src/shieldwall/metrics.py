"""Prometheus exposition of the data path's counters.

The hot path only bumps plain ints in a dict (a labelled prometheus-client
counter costs a lock and a lookup per request); a custom collector turns them
into metric families when /metrics is scraped.

Several workers: each worker writes a JSON snapshot of its counters to the
run directory about once a second; the admin listener runs in worker 0 and
its collector adds the other workers' latest snapshots to its own live
counters. A scrape is thus at most ~1 s behind for workers other than 0, and
a restarted worker's counters restart from 0 (counters, so rate() copes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _bucket(seconds: float) -> int:
    """``bisect_left(LATENCY_BUCKETS, seconds)``, written out so that,
    compiled, each comparison is one of two native floats (bisect boxed the
    float for every comparison). tests/test_metrics.py holds the two equal."""
    if seconds <= 0.01:
        if seconds <= 0.001:
            return 0
        if seconds <= 0.0025:
            return 1
        return 2 if seconds <= 0.005 else 3
    if seconds <= 0.25:
        if seconds <= 0.025:
            return 4
        if seconds <= 0.05:
            return 5
        return 6 if seconds <= 0.1 else 7
    if seconds <= 0.5:
        return 8
    if seconds <= 1.0:
        return 9
    if seconds <= 2.5:
        return 10
    if seconds <= 5.0:
        return 11
    return 12 if seconds <= 10.0 else 13


class Tally:
    """Finished requests of one (status, decision, outcome) that took no
    measurable time (answered in the callback that read them: the early
    refusal), counted as a native int: a flood's thousands of refusals a
    second cost an increment each instead of three dict probes and a
    bucket. :meth:`Metrics.fold` adds them to the counters when they are read."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[str, dict[str, dict[int, int]]] = {}
        """decision -> outcome -> status -> count."""
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.connections_total = 0
        self.rejected: dict[str, int] = {}
        """Connections or requests refused by a limit, by reason."""
        self.stale_hits = 0
        self.retries = 0
        self.refused_early = 0
        """Requests refused from their first bytes, before the head was parsed."""
        self.connections_open: Callable[[], int] = lambda: 0
        self.backends: Callable[[], list[tuple[str, bool, int]]] = list
        """(backend key, healthy, outstanding) for each backend."""
        self.panic: Callable[[], bool] = lambda: False
        """Too few backends pass the health check: requests go to all of them."""
        self.log_dropped: Callable[[], int] = lambda: 0
        """Access-log lines dropped because stdout was not being read."""
        self._tallies: dict[tuple[int, str, str], Tally] = {}
        self._run_n = 0
        self._run_status = 0
        self._run_decision = ""
        self._run_outcome = ""
        """A run of finished requests of the same labels, not yet in ``requests``."""

    def observe(self, status: int, decision: str, outcome: str, seconds: float) -> None:
        # A run of requests of the same labels (a connection's, a flood's,
        # most of a shop's: 200 allow ok) is a native count, added to
        # ``requests`` (three probes of small dicts) when the labels change
        # or the counters are read (fold); the bucket is found by comparisons
        # of native floats.
        if status == self._run_status and decision == self._run_decision \
                and outcome == self._run_outcome:
            self._run_n += 1
        else:
            if self._run_n:
                self._count(self._run_status, self._run_decision, self._run_outcome,
                            self._run_n)
            self._run_status = status
            self._run_decision = decision
            self._run_outcome = outcome
            self._run_n = 1
        self.latency_counts[_bucket(seconds)] += 1
        self.latency_sum += seconds

    def _count(self, status: int, decision: str, outcome: str, n: int) -> None:
        """Add ``n`` to ``requests[decision][outcome][status]`` (a native call when compiled)."""
        by_d = self.requests.get(decision)
        if by_d is None:
            by_d = self.requests[decision] = {}
        by_o = by_d.get(outcome)
        if by_o is None:
            by_o = by_d[outcome] = {}
        by_o[status] = by_o.get(status, 0) + n

    def tally(self, status: int, decision: str, outcome: str) -> Tally:
        """The :class:`Tally` of these labels (one per set: a handful)."""
        key = (status, decision, outcome)
        t = self._tallies.get(key)
        if t is None:
            t = self._tallies[key] = Tally()
        return t

    def fold(self) -> None:
        """Add the current run and the tallies' counts to ``requests`` (the
        tallies' latency: the first bucket, 0 s)."""
        if self._run_n:
            self._count(self._run_status, self._run_decision, self._run_outcome, self._run_n)
            self._run_n = 0
        for (status, decision, outcome), t in self._tallies.items():
            n = t.n
            if n:
                t.n = 0
                self._count(status, decision, outcome, n)
                self.latency_counts[0] += n

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        self.fold()
        return {
            "requests": [[s, d, o, n] for d, by_d in self.requests.items()
                         for o, by_o in by_d.items() for s, n in by_o.items()],
            "latency_counts": self.latency_counts,
            "latency_sum": self.latency_sum,
            "connections_total": self.connections_total,
            "connections_open": self.connections_open(),
            "rejected": self.rejected,
            "stale_hits": self.stale_hits,
            "retries": self.retries,
            "refused_early": self.refused_early,
            "backends": self.backends(),
            "panic": self.panic(),
            "log_dropped": self.log_dropped(),
        }


def write_snapshot(metrics: Metrics, directory: Path, worker: int) -> None:
    tmp = directory / f".worker-{worker}.json.tmp"
    tmp.write_text(json.dumps(metrics.snapshot()))
    os.replace(tmp, directory / f"worker-{worker}.json")


class _Collector:
    def __init__(self, live: Metrics, directory: Path | None, worker: int) -> None:
        self.live = live
        self.directory = directory
        self.worker = worker

    def _snapshots(self) -> list[dict[str, Any]]:
        snaps = [self.live.snapshot()]
        if self.directory is not None:
            for path in sorted(self.directory.glob("worker-*.json")):
                if path.name == f"worker-{self.worker}.json":
                    continue
                try:
                    snaps.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    continue
        return snaps

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snaps = self._snapshots()
        req = CounterMetricFamily("shieldwall_requests", "Finished requests",
                                  labels=["status", "decision", "outcome"])
        totals: dict[tuple[str, str, str], int] = {}
        for s in snaps:
            for status, decision, outcome, n in s["requests"]:
                k = (str(status), decision, outcome)
                totals[k] = totals.get(k, 0) + n
        for k, n in sorted(totals.items()):
            req.add_metric(list(k), n)
        yield req

        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        total_sum = 0.0
        for s in snaps:
            for i, n in enumerate(s["latency_counts"]):
                counts[i] += n
            total_sum += s["latency_sum"]
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip(LATENCY_BUCKETS, counts, strict=False):
            acc += n
            buckets.append((repr(bound), acc))
        acc += counts[-1]
        buckets.append(("+Inf", acc))
        hist = HistogramMetricFamily("shieldwall_request_duration_seconds",
                                     "First request byte to last response byte")
        hist.add_metric([], buckets, total_sum)
        yield hist

        conns = CounterMetricFamily("shieldwall_connections", "Accepted client connections")
        conns.add_metric([], sum(s["connections_total"] for s in snaps))
        yield conns
        open_ = GaugeMetricFamily("shieldwall_connections_open", "Open client connections")
        open_.add_metric([], sum(s["connections_open"] for s in snaps))
        yield open_

        rej = CounterMetricFamily("shieldwall_rejected", "Refused by a limit", labels=["reason"])
        rtot: dict[str, int] = {}
        for s in snaps:
            for reason, n in s["rejected"].items():
                rtot[reason] = rtot.get(reason, 0) + n
        for reason, n in sorted(rtot.items()):
            rej.add_metric([reason], n)
        yield rej

        stale = CounterMetricFamily("shieldwall_stale_hits", "Responses served from the stale cache")
        stale.add_metric([], sum(s["stale_hits"] for s in snaps))
        yield stale
        retries = CounterMetricFamily("shieldwall_upstream_retries", "Requests retried on another backend")
        retries.add_metric([], sum(s["retries"] for s in snaps))
        yield retries

        early = CounterMetricFamily(
            "shieldwall_refused_early",
            "Requests the guard refused from their first bytes, before the head was parsed")
        early.add_metric([], sum(s.get("refused_early", 0) for s in snaps))
        yield early

        up = GaugeMetricFamily("shieldwall_upstream_healthy", "1 when the backend takes traffic",
                               labels=["backend"])
        outst = GaugeMetricFamily("shieldwall_upstream_outstanding", "Requests in flight",
                                  labels=["backend"])
        health: dict[str, bool] = {}
        inflight: dict[str, int] = {}
        for s in snaps:
            for key, healthy, outstanding in s["backends"]:
                health[key] = health.get(key, True) and healthy
                inflight[key] = inflight.get(key, 0) + outstanding
        for key in sorted(health):
            up.add_metric([key], 1.0 if health[key] else 0.0)
            outst.add_metric([key], inflight[key])
        yield up
        yield outst
        panic = GaugeMetricFamily(
            "shieldwall_upstream_panic",
            "1 when too few backends pass the health check and requests go to all of them")
        panic.add_metric([], 1.0 if any(s.get("panic", False) for s in snaps) else 0.0)
        yield panic
        dropped = CounterMetricFamily(
            "shieldwall_access_log_dropped_lines",
            "Access-log lines dropped because stdout was not being read")
        dropped.add_metric([], sum(s.get("log_dropped", 0) for s in snaps))
        yield dropped


def exposition(live: Metrics, directory: Path | None = None, worker: int = 0) -> bytes:
    """The Prometheus text for this worker (plus the others' snapshots).
    prometheus-client is imported on the first scrape: ~3 MB a worker that
    nobody scrapes does not need."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(live, directory, worker))  # type: ignore[arg-type]
    out: bytes = generate_latest(registry)
    return out
