"""Prometheus metrics on the monitor's own registry (never the global one, so
several monitors can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shieldwall.monitor._quorum import Health, RoundReport


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.check_up = Gauge(
            "shieldwall_monitor_check_up", "1 when the check is not down by quorum, else 0", ["check"], registry=r
        )
        self.check_health = Gauge(
            "shieldwall_monitor_check_health",
            "1 for the current health of the check (up, warning, suspect, down, unknown)",
            ["check", "health"],
            registry=r,
        )
        self.probe_up = Gauge(
            "shieldwall_monitor_probe_up", "Last result of a probe for a check", ["check", "probe"], registry=r
        )
        self.latency = Histogram(
            "shieldwall_monitor_probe_latency_seconds",
            "Time for a probe to get the full answer",
            ["check", "probe"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.rounds = Counter(
            "shieldwall_monitor_rounds_total", "Closed rounds by resulting health", ["check", "health"], registry=r
        )
        self.warnings = Counter(
            "shieldwall_monitor_probe_warnings_total",
            "Rounds where some probes failed but fewer than the quorum",
            ["check"],
            registry=r,
        )
        self.incidents_open = Gauge("shieldwall_monitor_incidents_open", "Open incidents", registry=r)
        self.incidents = Counter("shieldwall_monitor_incidents_total", "Incidents opened", ["check"], registry=r)
        self.notifications = Counter(
            "shieldwall_monitor_notifications_total", "Pages by kind and outcome", ["kind", "status"], registry=r
        )
        self.undelivered = Gauge(
            "shieldwall_monitor_pages_undelivered",
            "Pages tried and not yet delivered to every channel (alert on > 0: nobody may be woken)",
            registry=r,
        )
        self.undelivered_oldest = Gauge(
            "shieldwall_monitor_page_undelivered_seconds",
            "How long the oldest undelivered page has been owed",
            registry=r,
        )
        self.reports = Counter(
            "shieldwall_monitor_remote_reports_total", "Results received from remote probes", ["probe"], registry=r
        )

    def round(self, rep: RoundReport) -> None:
        self.check_up.labels(rep.check).set(0 if rep.health is Health.DOWN else 1)
        for h in Health:
            self.check_health.labels(rep.check, h.value).set(1 if h is rep.health else 0)
        self.rounds.labels(rep.check, rep.health.value).inc()
        if rep.warning:
            self.warnings.labels(rep.check).inc()
        for res in (*rep.failing, *rep.passing):
            self.probe_up.labels(rep.check, res.probe).set(1 if res.ok else 0)
            if res.latency is not None:
                self.latency.labels(rep.check, res.probe).observe(res.latency)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
