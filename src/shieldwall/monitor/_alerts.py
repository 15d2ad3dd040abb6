"""Delivery through Apprise: any Apprise URL (Twilio SMS and voice, e-mail,
Slack, Telegram, webhooks). Apprise blocks, so the shell calls :func:`deliver`
in a thread pool and the probes keep their schedule."""

from __future__ import annotations

import logging

import apprise

from shieldwall.monitor._escalation import PageKind

log = logging.getLogger("shieldwall.monitor.alerts")

_TYPES = {
    PageKind.ALERT: apprise.NotifyType.FAILURE,
    PageKind.REALERT: apprise.NotifyType.FAILURE,
    PageKind.RECOVERY: apprise.NotifyType.SUCCESS,
}


def valid_url(url: str) -> bool:
    return apprise.Apprise().add(url)


def deliver(urls: list[str], title: str, body: str, kind: PageKind) -> tuple[bool, str]:
    """Send to every URL; (all delivered, what went wrong)."""
    ap = apprise.Apprise()
    bad = [u.split("://", 1)[0] + "://…" for u in urls if not ap.add(u)]
    if bad:
        return False, f"not usable Apprise URLs: {', '.join(bad)}"
    if not urls:
        return False, "no URLs for these targets"
    try:
        ok = bool(ap.notify(body=body, title=title, notify_type=_TYPES[kind]))
    except Exception as e:  # a plugin bug must not kill the monitor
        log.exception("apprise raised")
        return False, f"apprise raised {type(e).__name__}: {e}"
    return ok, "" if ok else "apprise reported a failed delivery (see log)"
