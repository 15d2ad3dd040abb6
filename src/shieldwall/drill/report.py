"""The drill's outputs: the JSON report, phases.json (labels for the access
log), a self-contained HTML timeline (inline SVG, no external assets) and the
terminal summary."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REQUIRED = {
    "scenario": str, "against": str, "duration_s": float, "legit": dict, "attack": dict,
    "orders": dict, "phases": list, "timeline": list,
}
LEGIT_KEYS = ("requests", "ok", "goodput", "p50_ms", "p99_ms", "checkouts_started", "checkouts_completed")
ATTACK_KEYS = ("requests", "reached_backend", "sources")
ORDER_KEYS = ("expected", "recorded", "duplicated")
PHASE_KEYS = ("name", "start_s", "end_s", "legit_goodput", "verdict")
TIMELINE_KEYS = ("t", "legit_rps", "legit_ok_rps", "attack_rps", "mode")


def schema_errors(report: dict[str, Any]) -> list[str]:
    """Where ``report`` departs from the documented schema (empty when it conforms)."""
    errs: list[str] = []
    for key, typ in REQUIRED.items():
        if not isinstance(report.get(key), typ):
            errs.append(f"{key}: expected {typ.__name__}, got {type(report.get(key)).__name__}")
    sections: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("legit", LEGIT_KEYS), ("attack", ATTACK_KEYS), ("orders", ORDER_KEYS))
    for section, keys in sections:
        sub = report.get(section)
        if isinstance(sub, dict):
            for k in keys:
                if not isinstance(sub.get(k), int | float) or isinstance(sub.get(k), bool):
                    errs.append(f"{section}.{k}: expected a number, got {sub.get(k)!r}")
    lists: tuple[tuple[str, tuple[str, ...]], ...] = (("phases", PHASE_KEYS), ("timeline", TIMELINE_KEYS))
    for listname, keys in lists:
        for i, item in enumerate(report.get(listname) or []):
            for k in keys:
                if k not in item:
                    errs.append(f"{listname}[{i}].{k}: missing")
            for k in ("verdict", "mode"):
                if k in item and item[k] is not None and not isinstance(item[k], str):
                    errs.append(f"{listname}[{i}].{k}: expected a string or null")
    return errs


def write_all(report: dict[str, Any], json_path: Path, html_path: Path | None) -> dict[str, Path]:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    out = {"json": json_path}
    labels = json.dumps(phase_labels(report), indent=2) + "\n"
    dirs = [json_path.parent]
    if report.get("access_log"):  # the labels belong next to the log they label
        dirs.insert(0, Path(str(report["access_log"])).parent)
    for n, d in enumerate(dict.fromkeys(dirs)):
        (d / "phases.json").write_text(labels)
        out["phases" if n == 0 else f"phases_{n}"] = d / "phases.json"
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(report))
        out["html"] = html_path
    return out


def phase_labels(report: dict[str, Any]) -> dict[str, Any]:
    """Known phases in unix time, so the access log can be used as labelled data."""
    zero = float(report.get("clock_zero_unix", 0.0))
    return {
        "scenario": report["scenario"], "against": report["against"],
        "access_log": report.get("access_log"),
        "shopper_net": "127.10.0.0/16", "attacker_net": "127.64.0.0/10",
        "phases": [{"name": p["name"], "start_unix": round(zero + p["start_s"], 3),
                    "end_unix": round(zero + p["end_s"], 3), "expect": p.get("expect"),
                    "attacks": p.get("attacks", []), "faults": p.get("faults", [])}
                   for p in report["phases"]],
        "events": [{"unix": round(zero + e["t"], 3), "event": e["event"]} for e in report.get("events", [])],
    }


_MODE_COLOURS = {"normal": "#d8f0d8", "elevated": "#fbe8b0", "under_attack": "#f6c4c4"}


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: legit goodput, attack rate and mode over time."""
    tl = report["timeline"]
    w, left, right = 960, 60, 60
    pw = w - left - right
    g_top, g_h = 30, 140      # panel 1: shoppers' goodput, per second, 0-100 %
    r_top, r_h = 210, 220     # panel 2: request rates (shoppers left axis, attack right axis)
    h = r_top + r_h + 30
    n = max(1, len(tl))
    max_legit = max([1.0, *(float(p["legit_rps"]) for p in tl)])
    max_attack = max([1.0, *(float(p["attack_rps"]) for p in tl)])

    def x(i: float) -> float:
        return left + pw * i / n

    def yg(v: float) -> float:
        return g_top + g_h * (1 - v)

    def yl(v: float) -> float:
        return r_top + r_h * (1 - v / max_legit)

    def ya(v: float) -> float:
        return r_top + r_h * (1 - v / max_attack)

    parts: list[str] = []
    for i, p in enumerate(tl):  # mode bands behind both panels
        colour = _MODE_COLOURS.get(p.get("mode") or "", "")
        if colour:
            for top, ph in ((g_top, g_h), (r_top, r_h)):
                parts.append(f'<rect x="{x(i):.1f}" y="{top}" width="{pw / n + 0.5:.1f}" height="{ph}" '
                             f'fill="{colour}"><title>{html.escape(str(p.get("mode")))}</title></rect>')
    for p in report["phases"]:  # phase boundaries and names
        xs = x(p["start_s"])
        for top, ph in ((g_top, g_h), (r_top, r_h)):
            parts.append(f'<line x1="{xs:.1f}" y1="{top}" x2="{xs:.1f}" y2="{top + ph}" stroke="#999" '
                         'stroke-dasharray="3,3"/>')
        verdict = p.get("verdict")
        parts.append(f'<text x="{xs + 3:.1f}" y="{g_top + 12}" font-size="11" fill="#333">'
                     f'{html.escape(p["name"])}</text>')
        if verdict:
            parts.append(f'<text x="{xs + 3:.1f}" y="{g_top + 25}" font-size="10" fill="#555">'
                         f'detector: {html.escape(str(verdict))}</text>')
    for e in report.get("events", []):  # the attack begins; the shield switches mode (with why)
        what = str(e.get("event", ""))
        first = what.split(" ", 1)[0]
        if first == "attack" or e.get("mark") == "switch":
            xe = x(float(e["t"]))
            colour = "#c0392b" if first == "attack" else "#6c3483"
            label = (what.split(" from ", 1)[0] + " begins" if first == "attack"
                     else what.split(":", 1)[0])
            y0 = g_top + (38 if first == "attack" else 52)
            parts.append(f'<line x1="{xe:.1f}" y1="{g_top}" x2="{xe:.1f}" y2="{r_top + r_h}" '
                         f'stroke="{colour}" stroke-width="1.5"><title>{html.escape(what)}</title></line>')
            parts.append(f'<text x="{xe + 3:.1f}" y="{y0}" font-size="10" fill="{colour}">'
                         f'{html.escape(label)}</text>')
    for e in report.get("events", []):  # faults: kill, freeze, thaw, restart, slow
        what = str(e.get("event", ""))
        if what.split(" ", 1)[0] in ("kill", "freeze", "thaw", "restart", "slow", "unslow"):
            xe = x(float(e["t"]))
            parts.append(f'<line x1="{xe:.1f}" y1="{r_top + r_h - 40}" x2="{xe:.1f}" y2="{r_top + r_h}" '
                         'stroke="#000" stroke-width="2"/>')
            parts.append(f'<text x="{xe + 3:.1f}" y="{r_top + r_h - 30}" font-size="11">'
                         f'{html.escape(what.split(" (", 1)[0])}</text>')
    good = [(i, p["legit_ok_rps"] / p["legit_rps"]) for i, p in enumerate(tl) if p["legit_rps"] > 0]
    pts = " ".join(f"{x(i + 0.5):.1f},{yg(v):.1f}" for i, v in good)
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#1e8449" stroke-width="2"/>')

    def poly(key: str, scale: Any, colour: str, dash: str = "") -> str:
        pts = " ".join(f"{x(i + 0.5):.1f},{scale(p[key]):.1f}" for i, p in enumerate(tl))
        d = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{d}/>'

    parts.append(poly("attack_rps", ya, "#c0392b"))
    parts.append(poly("legit_rps", yl, "#7f8c8d", "4,2"))
    parts.append(poly("legit_ok_rps", yl, "#1e8449"))
    for top, ph in ((g_top, g_h), (r_top, r_h)):
        parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    for frac in (0, 0.5, 1):
        parts.append(f'<text x="{left - 6}" y="{yg(frac) + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="#1e8449">{frac * 100:.0f}%</text>')
        yy = r_top + r_h * (1 - frac)
        parts.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="#1e8449">{max_legit * frac:.0f}</text>')
        parts.append(f'<text x="{left + pw + 6}" y="{yy + 4:.1f}" font-size="11" fill="#c0392b">'
                     f'{max_attack * frac:.0f}</text>')
    for i in range(0, n + 1, max(1, n // 10)):
        parts.append(f'<text x="{x(i):.1f}" y="{r_top + r_h + 16}" font-size="11" text-anchor="middle">{i}s</text>')
    parts.append(f'<text x="{left}" y="{g_top - 10}" font-size="12" fill="#1e8449">shoppers\' goodput '
                 '(answered 2xx/3xx within 2 s), per second</text>')
    parts.append(f'<text x="{left}" y="{r_top - 10}" font-size="12" fill="#1e8449">shoppers req/s</text>')
    parts.append(f'<text x="{left + pw}" y="{r_top - 10}" font-size="12" fill="#c0392b" text-anchor="end">'
                 'attack req/s</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif">{"".join(parts)}</svg>')
    legit, attack, orders = report["legit"], report["attack"], report["orders"]
    rows = "".join(
        f"<tr><td>{html.escape(p['name'])}</td><td>{p['start_s']:.0f}-{p['end_s']:.0f}s</td>"
        f"<td>{p['legit_goodput'] * 100:.1f}%</td>"
        f"<td>{(p.get('legit') or {}).get('p99_ms', 0):.0f}</td>"
        f"<td>{(p.get('legit') or {}).get('checkouts_completed', 0)}/"
        f"{(p.get('legit') or {}).get('checkouts_started', 0)}</td>"
        f"<td>{(p.get('attack') or {}).get('requests', 0)}</td>"
        f"<td>{p.get('attack_reached_backend') if p.get('attack_reached_backend') is not None else '-'}</td>"
        f"<td>{html.escape(str(p.get('mode') or '-'))}</td>"
        f"<td>{html.escape(str(p.get('verdict') or '-'))}</td></tr>"
        for p in report["phases"])
    legend = ("<p><span style='color:#1e8449'>&#9632; shoppers answered 2xx/3xx within 2 s</span> &nbsp; "
              "<span style='color:#7f8c8d'>&#9632; shoppers' requests</span> &nbsp; "
              "<span style='color:#c0392b'>&#9632; attack requests sent</span> &nbsp; background: mode "
              + " ".join(f"<span style='background:{c}'>&nbsp;{m}&nbsp;</span>" for m, c in _MODE_COLOURS.items())
              + "</p>")
    told = "".join(f"<li>{float(e['t']):.1f} s: {html.escape(str(e['event']))}</li>"
                   for e in report.get("events", [])
                   if str(e.get("event", "")).split(" ", 1)[0] in ("phase", "attack", "kill", "restart",
                                                                    "freeze", "thaw", "slow", "unslow")
                   or e.get("mark") == "switch")
    timeline_words = f"<h2>What happened when</h2><ul>{told}</ul>" if told else ""
    title = f"shieldwall drill: {report['scenario']} against {report['against']}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "td:first-child{text-align:left}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>{report['duration_s']:.0f} s; shoppers' goodput {legit['goodput'] * 100:.2f}% "
        f"({legit['ok']}/{legit['requests']}), p99 {legit['p99_ms']:.0f} ms, checkouts "
        f"{legit['checkouts_completed']}/{legit['checkouts_started']}; attack {attack['requests']} requests "
        f"from {attack['sources']} addresses, {attack['reached_backend']} reached the shop; orders "
        f"expected {orders['expected']}, recorded {orders['recorded']}, duplicated {orders['duplicated']}.</p>"
        f"{svg}{legend}<table><tr><th>phase</th><th>time</th><th>goodput</th><th>p99 ms</th>"
        "<th>checkouts</th><th>attack req</th><th>attack at shop</th><th>mode</th><th>verdict</th></tr>"
        f"{rows}</table>{timeline_words}</body></html>\n"
    )


def summary_table(report: dict[str, Any]) -> Table:
    t = Table(title=f"drill {report['scenario']} against {report['against']} ({report['duration_s']:.0f} s)")
    for col in ("phase", "goodput", "p50 ms", "p99 ms", "checkouts", "attack", "at shop", "mode",
                "verdict"):
        t.add_column(col, justify="left" if col in ("phase", "mode", "verdict") else "right")
    for p in report["phases"]:
        lg = p.get("legit") or {}
        at = p.get("attack") or {}
        reached = p.get("attack_reached_backend")
        t.add_row(p["name"], f"{p['legit_goodput'] * 100:.1f}%", f"{lg.get('p50_ms', 0):.0f}",
                  f"{lg.get('p99_ms', 0):.0f}", f"{lg.get('checkouts_completed', 0)}/{lg.get('checkouts_started', 0)}",
                  str(at.get("requests", 0)), "-" if reached is None else str(reached),
                  str(p.get("mode") or "-"), str(p.get("verdict") or "-"))
    lg, at = report["legit"], report["attack"]
    t.add_row("ALL", f"{lg['goodput'] * 100:.1f}%", f"{lg['p50_ms']:.0f}", f"{lg['p99_ms']:.0f}",
              f"{lg['checkouts_completed']}/{lg['checkouts_started']}", str(at["requests"]),
              str(at["reached_backend"]), "", "", style="bold")
    return t


def print_summary(report: dict[str, Any], console: Console, paths: dict[str, Path]) -> None:
    console.print(summary_table(report))
    o = report["orders"]
    console.print(f"orders: expected {o['expected']}, recorded {o['recorded']}, duplicated {o['duplicated']}, "
                  f"lost {o.get('lost', 0)}; attack sources {report['attack']['sources']}")
    for p in report["phases"]:
        sw = p.get("mode_switch")
        if isinstance(sw, dict):
            console.print(f"{p['name']}: {sw['words']}", markup=False)
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


def headline(report: dict[str, Any]) -> list[str]:
    """The story in a few plain sentences, worst phase first among the hard ones."""
    lines: list[str] = []
    for p in report["phases"]:
        lg = p.get("legit") or {}
        bits = [f"{p['name']}: shoppers' goodput {p['legit_goodput'] * 100:.1f}%",
                f"p99 {lg.get('p99_ms', 0):.0f} ms",
                f"checkouts {lg.get('checkouts_completed', 0)}/{lg.get('checkouts_started', 0)}"]
        at = p.get("attack") or {}
        if at.get("requests"):
            reached = p.get("attack_reached_backend")
            bits.append(f"{at['requests']} attack requests, {reached if reached is not None else '?'} reached the shop")
        if lg.get("refused"):
            bits.append(f"{lg['refused']} shopper requests refused")
        if p.get("reaction_s") is not None and at.get("requests"):
            after = p.get("legit_goodput_after_reaction")
            p99a = p.get("legit_p99_ms_after_reaction")
            stats = ", ".join(x for x in (f"goodput {after * 100:.1f}%" if after is not None else "",
                                          f"p99 {p99a:.0f} ms" if p99a is not None else "") if x)
            if not p["reaction_s"]:
                bits.append("the shield was already on guard")
            else:
                bits.append(f"the shield changed mode after {p['reaction_s']:g} s"
                            + (f" (from then on: {stats})" if stats else ""))
        sw = p.get("mode_switch")
        if isinstance(sw, dict) and sw.get("words"):
            bits.append(str(sw["words"]))
        if p.get("verdict"):
            bits.append(f"detector said {p['verdict']}" + (f"/{p['verdict_kind']}" if p.get("verdict_kind") else ""))
        lines.append("; ".join(bits))
    o = report["orders"]
    lines.append(f"orders: {o['expected']} confirmed to shoppers, {o['recorded']} in the database, "
                 f"{o['duplicated']} duplicated, {o.get('lost', 0)} lost")
    return lines
