"""What ``shieldwall analyze`` shows: the Rich timeline and a self-contained HTML page.

The HTML page carries everything inline (CSS and an SVG chart: requests per
second over time, 5xx in red, incidents as shaded bands with their verdict),
so it can be mailed or attached to a ticket and opened anywhere offline.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from rich.table import Table

from shieldwall.detect.analyze import Report
from shieldwall.detect.detector import Incident

COLORS = {"ddos": "#d62728", "flash_crowd": "#ff9f1c", "backend_failure": "#6a4c93"}


def _ts(sec: float) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")


def downtime_minutes(inc: Incident) -> float:
    """Minutes during which legitimate requests failed, weighted by the share that failed."""
    return inc.downtime_seconds / 60.0


def timeline_table(report: Report, revenue_per_minute: float | None = None) -> Table:
    t = Table(title=f"incidents ({report.stats.lines:,} lines, {report.stats.unparsed:,} unparsed)")
    for col in ("#", "start (UTC)", "end", "verdict", "conf.", "peak req/s", "sources",
                "legit failed", "down min"):
        t.add_column(col, overflow="fold")
    if revenue_per_minute is not None:
        t.add_column("revenue at risk", overflow="fold")
    for n, inc in enumerate(report.incidents, 1):
        row = [
            str(n), _ts(inc.start), _ts(inc.end)[11:],
            inc.verdict + (f" ({inc.kind})" if inc.kind else ""), f"{inc.confidence:.2f}",
            f"{inc.peak_rps:,.0f}", f"{inc.sources.count():,}",
            f"{inc.legit_failed_share * 100:.1f}%", f"{downtime_minutes(inc):.2f}",
        ]
        if revenue_per_minute is not None:
            row.append(f"{downtime_minutes(inc) * revenue_per_minute:,.0f}")
        t.add_row(*row)
    return t


def incident_details(report: Report) -> list[str]:
    """Per incident: its evidence and top prefixes, one line each (too long for a table)."""
    out = []
    for n, inc in enumerate(report.incidents, 1):
        out.append(f"#{n} evidence: " + "; ".join(inc.evidence))
        out.append(f"#{n} top prefixes: " + ", ".join(f"{p} ({c:,} req)" for p, c in inc.top_prefixes(5)))
    return out


def render_html(report: Report, title: str, revenue_per_minute: float | None = None) -> str:
    pts = report.series.points()
    W, H, PAD = 1000, 260, 40
    svg: list[str] = []
    if pts:
        t0 = pts[0][0]
        t1 = pts[-1][0] + report.series.width
        span = max(1.0, t1 - t0)
        ymax = max(1.0, max(p[3] for p in pts))

        def x(t: float) -> float:
            return PAD + (t - t0) / span * (W - 2 * PAD)

        def y(v: float) -> float:
            return H - PAD - v / ymax * (H - 2 * PAD)

        for inc in report.incidents:
            x0, x1 = x(inc.start), max(x(inc.end), x(inc.start) + 2)
            color = COLORS.get(inc.verdict, "#888")
            label = html.escape(inc.verdict + (f":{inc.kind}" if inc.kind else ""))
            svg.append(f'<rect x="{x0:.1f}" y="{PAD}" width="{x1 - x0:.1f}" height="{H - 2 * PAD}" '
                       f'fill="{color}" opacity="0.18"><title>{label} {_ts(inc.start)}</title></rect>')
            svg.append(f'<text x="{x0 + 2:.1f}" y="{PAD - 4}" font-size="11" fill="{color}">{label}</text>')
        peak = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, _, _, v in pts)
        mean = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _, _ in pts)
        errs = " ".join(f"{x(t):.1f},{y(e):.1f}" for t, _, e, _ in pts)
        svg.append(f'<polyline points="{peak}" fill="none" stroke="#9ecae1" stroke-width="1"/>')
        svg.append(f'<polyline points="{mean}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
        svg.append(f'<polyline points="{errs}" fill="none" stroke="#d62728" stroke-width="1"/>')
        svg.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>')
        svg.append(f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>')
        svg.append(f'<text x="{PAD}" y="{H - 12}" font-size="11">{_ts(t0)} UTC</text>')
        svg.append(f'<text x="{W - PAD}" y="{H - 12}" font-size="11" text-anchor="end">{_ts(t1)}</text>')
        svg.append(f'<text x="4" y="{PAD + 4}" font-size="11">{ymax:,.0f}</text>')
        svg.append(f'<text x="4" y="{H - PAD}" font-size="11">0</text>')
    rows = []
    for inc in report.incidents:
        money = ""
        if revenue_per_minute is not None:
            money = f"<td>{downtime_minutes(inc) * revenue_per_minute:,.0f}</td>"
        ev = "".join(f"<li>{html.escape(e)}</li>" for e in inc.evidence)
        prefixes = ", ".join(f"{html.escape(p)} ({c:,})" for p, c in inc.top_prefixes(5))
        rows.append(
            f"<tr><td>{_ts(inc.start)}</td><td>{_ts(inc.end)}</td>"
            f"<td style='color:{COLORS.get(inc.verdict, '#000')}'>{html.escape(inc.verdict)}</td>"
            f"<td>{html.escape(inc.kind or '-')}</td><td>{inc.confidence:.2f}</td>"
            f"<td>{inc.peak_rps:,.0f}</td><td>{inc.sources.count():,}</td><td>{prefixes}</td>"
            f"<td>{inc.legit_failed_share * 100:.1f}%</td><td>{downtime_minutes(inc):.2f}</td>{money}"
            f"<td><ul>{ev}</ul></td></tr>")
    money_head = "<th>revenue at risk</th>" if revenue_per_minute is not None else ""
    samples = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in report.stats.samples)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}}
ul{{margin:0;padding-left:1.2em}}.legend span{{margin-right:1.5em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{report.stats.lines:,} lines, {report.stats.unparsed:,} unparsed, {len(report.incidents)} incident(s).</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img"
 aria-label="requests per second over time">{''.join(svg)}</svg>
<p class="legend"><span style="color:#1f77b4">&#9644; mean req/s</span><span style="color:#9ecae1">&#9644; peak req/s</span>
<span style="color:#d62728">&#9644; 5xx/s</span> (bucket {report.series.width} s)</p>
<h2>Incidents</h2>
<table><tr><th>start (UTC)</th><th>end</th><th>verdict</th><th>kind</th><th>confidence</th><th>peak req/s</th>
<th>sources</th><th>top prefixes</th><th>legit failed</th><th>downtime min</th>{money_head}<th>evidence</th></tr>
{''.join(rows) or '<tr><td colspan="12">none</td></tr>'}</table>
{f'<h2>Unparsed lines (first few)</h2><ul>{samples}</ul>' if samples else ''}
</body></html>
"""
