"""The `detect` part's commands, registered on the root CLI app: ``analyze``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from shieldwall.detect.readers import ColumnFeed


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""
    app.command("analyze")(analyze_cmd)


def analyze_cmd(
    logs: list[Path] = typer.Argument(..., help="Access logs (plain or gzipped), read in this order."),
    fmt: str = typer.Option("auto", "--format", help="combined (nginx/Apache combined, common, "
                            "or shieldwall's access log), json (JSON lines), or auto (per line)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the incidents as JSON here."),
    html_out: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here."),
    revenue_per_minute: float | None = typer.Option(
        None, "--revenue-per-minute", min=0.0, help="Revenue per minute, to price the downtime."),
    config: Path | None = typer.Option(
        None, "--config", help="A shield config (TOML) whose [detect] section tunes the rules."),
) -> None:
    """Tell what happened in access logs: attack, flash crowd or broken backend, when, from where."""
    from shieldwall.detect.readers import FORMATS, ColumnFeed, take_early

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}; expected one of {', '.join(FORMATS)}", param_hint="--format")
    for p in logs:
        if not p.is_file():
            raise typer.BadParameter(f"{p}: no such file", param_hint="LOGS")
    # the parsing process (started before Typer's import by cli.main, or now): its
    # imports and first chunks overlap ours
    feed = take_early(logs[0], fmt) if len(logs) == 1 else None
    if feed is None and len(logs) == 1 and fmt != "json":
        feed = ColumnFeed(logs[0], fmt)
    try:
        _analyze_cmd(logs, fmt, json_out, html_out, revenue_per_minute, config, feed)
    finally:
        if feed is not None:
            feed.close()


def _analyze_cmd(logs: list[Path], fmt: str, json_out: Path | None, html_out: Path | None,
                 revenue_per_minute: float | None, config: Path | None, feed: ColumnFeed | None) -> None:
    from rich.console import Console

    from shieldwall.detect.analyze import analyze
    from shieldwall.detect.report import incident_details, render_html, timeline_table

    console = Console()
    settings = None
    if config is not None:
        from shieldwall.config import ConfigError, load_config

        try:
            settings = load_config(config).detect
        except ConfigError as exc:
            console.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(2) from None
    report = analyze(logs, fmt, settings, feed=feed)
    console.print(timeline_table(report, revenue_per_minute))
    for line in incident_details(report):
        console.print(line, markup=False, highlight=False)
    if report.stats.unparsed:
        console.print(f"[yellow]{report.stats.unparsed:,} line(s) could not be parsed; first ones:[/]")
        for s in report.stats.samples:
            console.print(f"  {s}", markup=False, highlight=False)
    if not report.incidents:
        console.print("no incident: traffic looked normal throughout")
    if json_out is not None:
        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    if html_out is not None:
        title = "shieldwall analyze: " + ", ".join(p.name for p in logs)
        html_out.write_text(render_html(report, title, revenue_per_minute), encoding="utf-8")
