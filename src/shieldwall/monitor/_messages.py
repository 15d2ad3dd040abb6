"""The words a person reads at 3 a.m.: short, the facts first, no jargon."""

from __future__ import annotations

import datetime as dt

from shieldwall.monitor._duration import format_duration
from shieldwall.monitor._escalation import Page, PageKind
from shieldwall.monitor._incident import Incident


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(
    page: Page,
    incident: Incident,
    *,
    now: float,
    ack_hint: str = "",
    dedup: str = "",
    late_since: float | None = None,
) -> tuple[str, str]:
    """(title, body) for ``page`` about ``incident``. ``dedup``: the key a
    person (or a receiver) folds repeats by; ``late_since``: when this page was
    first due, when earlier attempts failed."""
    tail = ""
    if late_since is not None:
        tail += f"\nSent late: the first attempt was at {_clock(late_since)} and failed."
    if dedup:
        tail += f"\nRef: {dedup}"
    title, body = _words(page, incident, now=now, ack_hint=ack_hint)
    return title, body + tail


def render_test(channel: str, *, now: float) -> tuple[str, str]:
    return (
        f"TEST: shieldwall monitor can reach {channel}",
        f"A test page sent at {_clock(now)} by `shieldwall monitor --test-notify`. Nothing is down.",
    )


def _words(page: Page, incident: Incident, *, now: float, ack_hint: str) -> tuple[str, str]:
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
    if not incident.open:
        prefix = "WAS DOWN"  # a page that arrives after the recovery it precedes
    title = f"{prefix}: {name} (incident #{incident.id}, {down_for})"
    body = (
        f"{name} is down since {_clock(incident.started_at)} ({down_for}), "
        f"confirmed by {', '.join(incident.probes) or 'the probes'}.\n"
        f"What the probes see: {incident.reason}{verdict}\n"
        f"Acknowledge to stop the escalation: shieldwall incidents ack {incident.id}{ack_hint}"
    )
    return title, body
