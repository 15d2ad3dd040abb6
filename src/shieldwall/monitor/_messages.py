"""The words a person reads at 3 a.m.: short, the facts first, no jargon."""

from __future__ import annotations

import datetime as dt

from shieldwall.monitor._duration import format_duration
from shieldwall.monitor._escalation import Page, PageKind
from shieldwall.monitor._incident import Incident


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(page: Page, incident: Incident, *, now: float, ack_hint: str = "") -> tuple[str, str]:
    """(title, body) for ``page`` about ``incident``."""
    name = incident.check
    verdict = ""
    if incident.verdict:
        verdict = f"\nShield verdict: {incident.verdict}" + (
            f" ({incident.verdict_kind})" if incident.verdict_kind else ""
        )
    if page.kind is PageKind.RECOVERY:
        took = format_duration(incident.duration(now))
        title = f"RECOVERED: {name} is back up after {took}"
        body = (
            f"{name} is answering again. Down for {took} "
            f"(from {_clock(incident.started_at)} to {_clock(incident.ended_at or now)}).\n"
            f"Incident #{incident.id}.{verdict}"
        )
        return title, body
    down_for = format_duration(incident.duration(now))
    prefix = "STILL DOWN" if page.kind is PageKind.REALERT else "DOWN"
    title = f"{prefix}: {name} (incident #{incident.id}, {down_for})"
    body = (
        f"{name} is down since {_clock(incident.started_at)} ({down_for}), "
        f"confirmed by {', '.join(incident.probes) or 'the probes'}.\n"
        f"What the probes see: {incident.reason}{verdict}\n"
        f"Acknowledge to stop the escalation: shieldwall incidents ack {incident.id}{ack_hint}"
    )
    return title, body
