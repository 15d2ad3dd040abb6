"""The public status page: one HTML document, inline CSS, no scripts, no
external assets, so it renders from a phone on a bad network and reveals
nothing but what shoppers may know."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from shieldwall.monitor._duration import format_duration
from shieldwall.monitor._history import DayBar
from shieldwall.monitor._incident import Incident

_WORDS = {
    "up": ("Operational", "ok"),
    "warning": ("Operational (one vantage point sees trouble)", "warn"),
    "suspect": ("Checking a possible outage", "warn"),
    "down": ("Down", "bad"),
    "unknown": ("No data yet", "none"),
}

_CSS = """
body{font:16px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:860px;margin:0 auto;padding:24px 16px}
h1{font-size:1.5rem;margin:0 0 16px}
.banner{padding:14px 18px;border-radius:8px;color:#fff;font-weight:600;margin-bottom:20px}
.banner.ok{background:#2f9e55}.banner.warn{background:#d99a06}.banner.bad{background:#d13438}.banner.none{background:#7a8394}
.check{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 16px;margin-bottom:14px}
.check h2{font-size:1.05rem;margin:0 0 6px;display:flex;justify-content:space-between}
.state.ok{color:#2f9e55}.state.warn{color:#b07c00}.state.bad{color:#d13438}.state.none{color:#7a8394}
.bars{display:flex;gap:2px;height:34px;align-items:stretch;margin:10px 0 4px}
.bar{flex:1;border-radius:2px;min-width:3px}
.bar.up{background:#3fb866}.bar.partial{background:#f0b429}.bar.down{background:#e5484d}.bar.nodata{background:#d5d9e0}
.legend{display:flex;justify-content:space-between;font-size:.8rem;color:#6b7385}
.note{font-size:.9rem;color:#4a5263;margin:4px 0 0}
ul{margin:6px 0 0;padding-left:20px}li{margin:2px 0}
footer{font-size:.8rem;color:#6b7385;margin-top:24px}
"""


def _clock(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _places(n: int) -> str:
    return f"{n} place" if n == 1 else f"{n} places"


def _where(check: Mapping[str, Any]) -> str:
    """How many vantage points watch it, and how many must agree, in true words."""
    if "places" not in check:
        return ""
    places, probes, quorum = int(check["places"]), int(check["probes"]), int(check["quorum"])
    words = f"Checked from {_places(places)}"
    if probes > 1:
        words += f" by {probes} probes; an outage is declared when {quorum} of them agree"
    return f'<p class="note where">{escape(words)}.</p>'


def _bar(b: DayBar) -> str:
    if b.state == "nodata":
        tip = f"{b.day}: not watched (unknown)"
    else:
        pct = b.uptime_pct or 0.0
        tip = f"{b.day}: {pct:.2f}% up over {format_duration(b.observed_seconds)} watched"
        if b.down_seconds:
            tip += f", down {format_duration(b.down_seconds)} in {b.incidents} incident(s)"
    return f'<div class="bar {b.state}" data-day="{b.day}" data-state="{b.state}" title="{escape(tip)}"></div>'


def _past(recent: Sequence[Incident], now: float) -> list[str]:
    if not recent:
        return []
    rows = []
    for inc in recent:
        if inc.open:
            what = f"ongoing for {format_duration(inc.duration(now))}"
        else:
            what = f"down for {format_duration(inc.duration(now))}"
        rows.append(
            f'<li data-incident="{inc.id}"><b>{escape(inc.check)}</b>: {_clock(inc.started_at)}, {what}</li>'
        )
    return ['<section class="check" id="recent"><h2><span>Recent incidents</span></h2><ul>', *rows, "</ul></section>"]


def _health(check: Mapping[str, Any]) -> str:
    """The quorum's own word (warning, suspect...) when the full view is given."""
    return str(check.get("probe_health", check["health"]))


def render_status_page(
    status: Mapping[str, Any],
    history: Mapping[str, Sequence[DayBar]],
    *,
    now: float,
    recent: Sequence[Incident] = (),
) -> str:
    checks = status["checks"]
    worst = "unknown"
    order = ["unknown", "up", "warning", "suspect", "down"]
    for c in checks:
        if order.index(_health(c)) > order.index(worst):
            worst = _health(c)
    if worst == "down":
        banner, cls = "Some services are down", "bad"
    elif worst in ("warning", "suspect"):
        banner, cls = ("All services operational" if worst == "warning" else "Investigating"), "warn"
    elif worst == "up":
        banner, cls = "All services operational", "ok"
    else:
        banner, cls = "Waiting for the first checks", "none"
    maint = status.get("maintenance")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        '<meta http-equiv=refresh content="30">',
        f"<title>{escape(status['title'])}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{escape(status['title'])}</h1>",
        f'<div class="banner {cls}" id="overall" data-state="{worst}">{escape(banner)}</div>',
    ]
    if maint:
        parts.append(
            f'<p class="note" id="maintenance">Scheduled maintenance until {_clock(maint["until"])}'
            f"{': ' + escape(maint['reason']) if maint['reason'] else ''}.</p>"
        )
    for c in checks:
        health = _health(c)
        word, scls = _WORDS.get(health, _WORDS["unknown"])
        bars = history.get(c["name"], [])
        watched = sum(b.observed_seconds for b in bars)
        uptime = 100.0 * (1 - sum(b.down_seconds for b in bars) / watched) if watched > 0 else None
        told = "no data yet" if uptime is None else f"{uptime:.2f}% uptime over {format_duration(watched)} watched"
        since = ""
        if health == "down" and c.get("since"):
            since = f'<p class="note">Down since {_clock(c["since"])} ({format_duration(now - c["since"])}).</p>'
        parts += [
            f'<section class="check" data-check="{escape(c["name"])}" data-health="{health}">',
            f'<h2><span>{escape(c["name"])}</span><span class="state {scls}">{escape(word)}</span></h2>',
            since,
            '<div class="bars" aria-label="90 days of history">',
            *(_bar(b) for b in bars),
            "</div>",
            f'<div class="legend"><span>{len(bars)} days ago</span>'
            f'<span class="uptime">{escape(told)}</span><span>today</span></div>',
            _where(c),
            "</section>",
        ]
    parts += _past(recent, now)
    places = max((int(c.get("places", 1)) for c in checks), default=1)
    parts.append(f"<footer>Updated {_clock(now)}. Checked from {_places(places)} by shieldwall.</footer>")
    parts.append("</main></body></html>")
    return "\n".join(p for p in parts if p)
