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
        summary, or exit 2 and every problem on its own line."""
        try:
            config = load_config(path)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        typer.echo(f"ok: {path}: {config.summary()}")

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
