"""The one entry point. Each part registers its own commands, so this file
stays a table of contents: the CLI is a thin client of the parts (and, for
running shields, of the admin API), never a second implementation."""

from __future__ import annotations

import typer

from shieldwall import __version__

app = typer.Typer(
    name="shieldwall",
    help="Keep a shop selling through a flood, a flash crowd or a dead server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's own help layout: Typer's Rich panels (0.29) print every flag as
    # taking a value (`--version <bool>`, `--help <bool>`).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from shieldwall import _build

        typer.echo(f"shieldwall {__version__} ({_build.describe()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """shieldwall: serve, check-config, ban/unban/status/mode, analyze, monitor, drill, demo."""


def _register() -> None:
    from shieldwall.detect import _cli as detect_cli
    from shieldwall.drill import _cli as drill_cli
    from shieldwall.guard import _cli as guard_cli
    from shieldwall.monitor import _cli as monitor_cli
    from shieldwall.proxy import _cli as proxy_cli

    for part in (proxy_cli, guard_cli, detect_cli, monitor_cli, drill_cli):
        part.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
