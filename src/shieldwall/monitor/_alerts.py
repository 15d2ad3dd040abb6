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
    PageKind.TEST: apprise.NotifyType.INFO,
}


def valid_url(url: str) -> bool:
    return apprise.Apprise().add(url)


# where each kind of receiver reads a deduplication key (Apprise URL parameters)
_DEDUP_PARAMS = {
    "pagerduty": ("dedup={k}",),
    "opsgenie": ("alias={k}",),
    "json": ("+X-Dedup-Key={k}", ":dedup_key={k}"),
    "jsons": ("+X-Dedup-Key={k}", ":dedup_key={k}"),
    "xml": ("+X-Dedup-Key={k}",),
    "xmls": ("+X-Dedup-Key={k}",),
    "form": ("+X-Dedup-Key={k}", ":dedup_key={k}"),
    "forms": ("+X-Dedup-Key={k}", ":dedup_key={k}"),
}


def with_dedup(url: str, key: str) -> str:
    """``url`` carrying ``key`` where its receiver folds duplicates by it
    (PagerDuty's dedup_key, Opsgenie's alias, a header and a JSON/form field
    for webhooks); other URLs unchanged (the key is in the message text).
    A key the user set in the URL is left alone."""
    if not key:
        return url
    scheme = url.split("://", 1)[0].lower()
    params = [p.format(k=key) for p in _DEDUP_PARAMS.get(scheme, ())]
    query = url.partition("?")[2]
    have = {q.split("=", 1)[0].lower() for q in query.split("&") if q}
    params = [p for p in params if p.split("=", 1)[0].lower() not in have]
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(params)


def deliver(urls: list[str], title: str, body: str, kind: PageKind, dedup: str = "") -> tuple[bool, str]:
    """Send to every URL of one channel; (all delivered, what went wrong)."""
    ap = apprise.Apprise()
    bad = [u.split("://", 1)[0] + "://…" for u in urls if not ap.add(with_dedup(u, dedup))]
    if bad:
        return False, f"not usable Apprise URLs: {', '.join(bad)}"
    if not urls:
        return False, "no URLs for these targets"
    try:
        result = ap.notify(body=body, title=title, notify_type=_TYPES[kind], log_level=logging.WARNING)
    except Exception as e:  # a plugin bug must not kill the monitor
        log.exception("apprise raised")
        return False, f"apprise raised {type(e).__name__}: {e}"
    if result:
        return True, ""
    # Apprise's own account of why, for this call only (deliveries run side by side)
    said = [str(e.message)[:300] for e in result.logs() if str(e.level).upper() in ("WARNING", "ERROR", "CRITICAL")]
    return False, "; ".join(said[-2:]) or "apprise reported a failed delivery"


def test_every_channel(targets: dict[str, list[str]], *, now: float) -> list[tuple[str, bool, str]]:
    """Send a test page through every channel, side by side; (target, delivered,
    what went wrong) in the order given. For ``--test-notify``."""
    from concurrent.futures import ThreadPoolExecutor

    from shieldwall.monitor._messages import render_test

    def one(name: str) -> tuple[str, bool, str]:
        title, body = render_test(name, now=now)
        key = f"shieldwall-test-{int(now)}-{name}"
        ok, error = deliver(targets[name], title, body + f"\nRef: {key}", PageKind.TEST, key)
        return name, ok, error

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(targets)))) as pool:
        return list(pool.map(one, targets))
