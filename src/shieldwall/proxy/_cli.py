"""The `proxy` part's commands: ``serve`` and ``check-config``."""

from __future__ import annotations

import json
import os
import sys

import typer

from shieldwall.config import ConfigError, build_config, cli_overrides, load_config


def register(app: typer.Typer) -> None:
    """Add this part's commands to ``app``."""

    @app.command("check-config")
    def check_config(path: str = typer.Argument(..., help="The TOML file to check.")) -> None:
        """Validate a config file without starting anything: exit 0 and a
        summary, or exit 2 and every problem on its own line. Backends that
        answer from here are asked the health path once: a 4xx is warned about."""
        try:
            config = load_config(path)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        typer.echo(f"ok: {path}: {config.summary()}")
        hc = config.upstream.health
        if hc.enabled:
            from shieldwall.proxy.health import check_paths

            targets = [(b.key, b.host, b.port) for b in config.backends]
            for warning in check_paths(targets, hc.path, min(1.0, hc.timeout)):
                typer.echo(warning, err=True)

    @app.command("serve")
    def serve(
        config: str | None = typer.Option(None, "--config", help="TOML config file."),
        listen: str | None = typer.Option(None, "--listen", help="host:port to listen on (listen)."),
        backend: list[str] | None = typer.Option(
            None, "--backend", help="Backend URL; repeat for several (backends[].url)."),
        admin: str | None = typer.Option(None, "--admin", help="Admin host:port (admin.listen)."),
        workers: int | None = typer.Option(None, "--workers", help="Worker processes (workers)."),
        mode: str | None = typer.Option(
            None, "--mode",
            help="Pin the guard's mode at start: normal, elevated, under-attack, or auto "
                 "(the detector decides) (guard.mode)."),
    ) -> None:
        """Run the shield in front of the backends."""
        overrides = cli_overrides(listen, backend, admin, workers, mode)
        try:
            if config:
                load_config(config, overrides)
            else:
                build_config(overrides, "command line")
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        # Replace this process (same PID, same signals and pipes) by the lean
        # server entry point, which imports only the data path: the CLI's
        # other commands would cost every worker ~15 MB of RSS.
        sys.stdout.flush()
        sys.stderr.flush()
        spec = json.dumps({"path": config, "overrides": overrides})
        os.execv(sys.executable, [sys.executable, "-m", "shieldwall.proxy.supervisor", spec])
