"""The `detect` part's commands, registered on the root CLI app: ``analyze``."""

from __future__ import annotations

from pathlib import Path

import typer


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
    from shieldwall.detect import _run
    from shieldwall.detect.readers import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r}; expected one of {', '.join(FORMATS)}", param_hint="--format")
    for p in logs:
        if not p.is_file():
            raise typer.BadParameter(f"{p}: no such file", param_hint="LOGS")
    # the parsing process, started before the command's imports: its imports and
    # first chunks overlap them
    code = _run.run(logs, fmt, json_out, html_out, revenue_per_minute, config,
                    _run.feed_for(logs, fmt))
    if code:
        raise typer.Exit(code)
